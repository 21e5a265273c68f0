//! The whole network in one process: the same seed gives the same run bit
//! for bit, and with a fifth of the hosts adversarial the chain stays safe
//! (one final block per height, one state root among honest replicas) and
//! fair (no fraudulent batch accepted, no genuine batch rejected).

use gonka_engine::sim::{SimConfig, SimReport, run};

fn small(seed: u64) -> SimConfig {
    SimConfig { hosts: 12, epochs: 2, seed, threads: 2, ..SimConfig::default() }
}

fn assert_safe(r: &SimReport) {
    assert_eq!(r.conflicting_commits, 0, "two different blocks final at one height");
    assert_eq!(r.root_mismatches, 0, "honest replicas disagree on a state root");
    assert_eq!(r.halted, 0, "a replica halted on a state-root mismatch");
    // Each restart rebuilt a replica from its snapshot; a piece of state the
    // snapshot missed shows up above as a halt or a root mismatch.
    assert!(r.restarts >= r.height, "a host restarts from its snapshot every block: {} restarts", r.restarts);
    for e in &r.epochs {
        assert_eq!(e.bad_accepted, 0, "epoch {}: a fraudulent batch was accepted", e.epoch);
        assert_eq!(e.good_rejected, 0, "epoch {}: a genuine batch was rejected", e.epoch);
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    println!("simulation seeds 0 and 1");
    let a = run(small(0)).expect("simulation runs");
    let b = run(small(0)).expect("simulation runs");
    assert_eq!(a.digest, b.digest, "same seed, different runs:\n{}\n{}", a.render(), b.render());
    assert_eq!(a.epochs, b.epochs);
    assert_eq!(a.epochs.len(), 2, "both epochs ran:\n{}", a.render());
    assert_safe(&a);
    let c = run(small(1)).expect("simulation runs");
    assert_ne!(a.digest, c.digest, "another seed must give another run");
}

/// The acceptance run: 50 hosts, 20 % adversarial (fabricated proofs, wrong
/// outputs, lazy and colluding validators, a colluding executor, a smaller
/// model, skipped validation, inflated counts, duplicate nonces, an
/// equivocating proposer), users sending inference requests, an honest
/// minority partitioned for part of the run, 10 epochs.
#[test]
fn fifty_hosts_a_fifth_adversarial_ten_epochs() {
    let _heavy = crate::HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    println!("simulation seed 0");
    let r =
        run(SimConfig { hosts: 50, adversarial_percent: 20, epochs: 10, seed: 0, ..SimConfig::default() })
            .expect("simulation runs");
    println!("{}", r.render());
    assert_eq!(r.epochs.len(), 10, "all epochs finished");
    assert_safe(&r);
    let bad = r.roles.iter().filter(|role| role.submits_bad_batch()).count() as u32;
    for e in r.epochs.iter().filter(|e| e.beacon) {
        assert_eq!(e.bad_rejected + e.bad_refused, bad, "epoch {}: every bad batch stopped", e.epoch);
        assert_eq!(e.good_undecided, 0, "epoch {}: every honest batch decided", e.epoch);
    }
    assert!(r.honest_withheld.is_empty(), "honest hosts lost earnings: {:?}", r.honest_withheld);
    let honest = r.strategies.iter().find(|s| s.role == "honest").expect("honest hosts").pay_per_work();
    for s in r.strategies.iter().filter(|s| s.role != "honest" && s.work > 0) {
        assert!(
            s.pay_per_work() < honest,
            "{} earns more per unit of work than honesty:\n{}",
            s.role,
            r.render()
        );
    }
    assert!(r.validation_overhead() > 0.0, "tasks were checked:\n{}", r.render());
    assert!(r.epochs.iter().filter(|e| e.beacon).count() >= 9, "the beacon works:\n{}", r.render());
    assert!(r.epochs.iter().any(|e| e.penalized > 0), "the equivocator is caught");
}
