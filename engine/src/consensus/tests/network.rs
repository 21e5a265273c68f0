//! Whole networks: agreement and liveness of honest hosts under delays,
//! drops and a healing partition; safety against Byzantine weight just under
//! a third, and the fork the same attack achieves just over it.

use super::SEED;
use super::harness::{Net, NetConfig};
use crate::consensus::{Step, proposer};

#[test]
fn honest_hosts_commit_the_same_block_at_every_height() {
    let mut cfg = NetConfig::new(SEED, &[10, 20, 30, 5, 50, 15, 70]);
    cfg.drop_per_mille = 50;
    cfg.relay_per_mille = 100;
    let mut net = Net::new(cfg, 8);
    assert!(net.run(120_000), "8 heights within 120 s of simulated time: {:?}", net.positions());
    net.assert_agreement();
    assert!(net.evidence.is_empty(), "honest hosts never equivocate: {:?}", net.evidence);
    let stats: Vec<_> = net.hosts.iter().map(|h| h.stats()).collect();
    assert!(stats.iter().all(|s| s.rejected == 0), "honest traffic is never rejected: {stats:?}");
    println!("cache {:?}", net.cache_totals());
}

#[test]
fn live_once_a_partition_heals() {
    // Neither side holds more than two thirds of the weight: nothing can be
    // committed until the partition heals at 20 s; then every height is.
    let heal_ms = 20_000;
    let mut cfg = NetConfig::new(SEED + 1, &[10, 10, 10, 10, 10, 10]);
    cfg.partition = Some((vec![0, 1, 2], heal_ms));
    cfg.drop_per_mille = 30;
    let mut net = Net::new(cfg, 4);
    assert!(!net.run(heal_ms - 1), "no height can be final inside a partition");
    assert!(net.commits.is_empty());
    assert!(net.run(heal_ms + 60_000), "live after the heal: {:?}", net.positions());
    net.assert_agreement();
    let first = net.commits[&1].values().map(|c| c.at_ms).min().unwrap_or(0);
    assert!(first >= heal_ms, "first commit at {first} ms, before the heal");
}

#[test]
fn byzantine_weight_under_a_third_never_forks_and_is_reported() {
    // Total 300; the two Byzantine hosts hold 99 (< 1/3), equivocate every
    // proposal and vote towards the two halves of the honest hosts.
    for seed in SEED..SEED + 3 {
        let mut cfg = NetConfig::new(seed, &[50, 49, 40, 40, 40, 40, 41]);
        cfg.byzantine = vec![0, 1];
        cfg.relay_per_mille = 200;
        cfg.drop_per_mille = 20;
        let mut net = Net::new(cfg, 6);
        assert!(net.run(240_000), "seed {seed}: honest weight 201/300 stays live: {:?}", net.positions());
        assert!(net.forks().is_empty(), "seed {seed}: two different blocks final at one height");
        net.assert_agreement();
        assert!(!net.evidence.is_empty(), "seed {seed}: the equivocations are reported");
        for (reporter, e) in &net.evidence {
            let voter =
                e.verify(&net.epoch, &crate::crypto::cache::SigCache::default()).expect("evidence verifies");
            assert!(
                net.is_byzantine(voter as usize),
                "seed {seed}: host {reporter} reported honest host {voter}"
            );
        }
        println!("seed {seed}: {} reports", net.evidence.len());
    }
}

#[test]
fn the_same_attack_forks_with_a_third_of_the_weight() {
    // What makes the test above meaningful: with 101 of 301 (> 1/3) the
    // split attack between two partitioned halves does produce two different
    // final blocks, so the harness's adversary is strong enough to break
    // safety whenever the bound allows it.
    let mut cfg = NetConfig::new(SEED, &[101, 50, 50, 50, 50]);
    cfg.byzantine = vec![0];
    cfg.partition = Some((vec![1, 2], u64::MAX));
    let epoch = super::epoch(&cfg.weights);
    cfg.proposer_seed = super::seed_where(&epoch, 1, &[&|p| p == 0]);
    let mut net = Net::new(cfg, 1);
    net.run(30_000);
    assert_eq!(net.forks(), vec![1], "both halves commit their own block");
    assert_eq!(proposer(&net.cfg.proposer_seed, 1, 0, &net.epoch), 0);
}

#[test]
fn exactly_two_thirds_of_the_weight_cannot_commit() {
    // 200 of 300 online is exactly two thirds: no height is ever final, and
    // no round even reaches its precommit step (that needs > 2/3 prevotes).
    let mut cfg = NetConfig::new(SEED, &[100, 100, 100]);
    cfg.offline = vec![2];
    let mut net = Net::new(cfg, 1);
    assert!(!net.run(60_000));
    assert!(net.commits.is_empty(), "exactly 2/3 committed: {:?}", net.commits);
    for i in [0, 1] {
        assert_eq!(net.positions()[i], (Some(1), 0, Step::Prevote), "host {i} waits in round 0");
    }
    // One unit more is enough.
    let mut cfg = NetConfig::new(SEED, &[101, 100, 99]);
    cfg.offline = vec![2];
    let mut net = Net::new(cfg, 2);
    assert!(net.run(60_000), "201 of 300 commits");
    net.assert_agreement();
}

#[test]
fn round_timeouts_grow_with_the_round() {
    // Proposers never build, so every round ends in nil and timeouts.
    let mut cfg = NetConfig::new(SEED, &[1, 1, 1, 1]);
    cfg.build_blocks = false;
    let params = cfg.timeouts;
    let mut net = Net::new(cfg, 1);
    net.run(40_000);
    let mut rounds = 0;
    for &(_, t, at) in net.scheduled.iter().filter(|(h, _, _)| *h == 0) {
        assert_eq!(t.at_ms - at, params.duration_ms(t.step, t.round), "{t:?}");
        rounds = rounds.max(t.round);
    }
    assert!(rounds >= 5, "only {rounds} rounds ran");
    let propose: Vec<u64> = (0..=rounds).map(|r| params.duration_ms(Step::Propose, r)).collect();
    assert!(propose.windows(2).all(|w| w[1] > w[0]), "{propose:?}");
    assert!(net.hosts.iter().all(|h| h.round().abs_diff(rounds) <= 1), "{:?}", net.positions());
}
