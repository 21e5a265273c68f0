//! What signature checks cost, with and without the shared cache. The
//! figures in `docs/consensus.md` come from
//! `cargo test -p gonka-engine consensus::tests::cost -- --include-ignored --nocapture`.

use std::time::Instant;

use super::harness::{Net, NetConfig};
use super::{SEED, host_key};
use crate::consensus::{SigCache, VoteKind, vote_message};
use crate::crypto::{Domain, SignatureBytes, verify};

#[test]
fn a_cached_vote_costs_a_hash_instead_of_a_pairing() {
    let n = 100u32;
    let key = host_key(0);
    let pk = key.public_key();
    let votes: Vec<(Vec<u8>, SignatureBytes)> = (0..n)
        .map(|round| {
            let m = vote_message(1, round, VoteKind::Prevote, None);
            let s = key.sign(Domain::BlockVote, &m);
            (m, s)
        })
        .collect();
    let t = Instant::now();
    for (m, s) in &votes {
        verify(Domain::BlockVote, &pk, m, s).expect("valid vote");
    }
    let uncached = t.elapsed().as_secs_f64();
    let cache = SigCache::default();
    let t = Instant::now();
    for (m, s) in &votes {
        cache.verify(Domain::BlockVote, &pk, m, s).expect("valid vote");
    }
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..10 {
        for (m, s) in &votes {
            cache.verify(Domain::BlockVote, &pk, m, s).expect("valid vote");
        }
    }
    let hits = t.elapsed().as_secs_f64() / 10.0;
    let per_s = |secs: f64| f64::from(n) / secs;
    println!(
        "votes verified per second: {:.0} without the cache, {:.0} on first sight through it, {:.0} from it (hits)",
        per_s(uncached),
        per_s(first),
        per_s(hits)
    );
    assert_eq!(cache.stats().verified, u64::from(n));
    assert!(hits * 10.0 < uncached, "a hit must be far cheaper than a pairing");
}

/// Runs `hosts` equal hosts to `heights` with one shared cache or one cache
/// per host, and prints pairings and wall time per height.
fn simulate(hosts: usize, heights: u64, shared: bool) -> u64 {
    let mut cfg = NetConfig::new(SEED, &vec![1; hosts]);
    cfg.shared_cache = shared;
    let t = Instant::now();
    let mut net = Net::new(cfg, heights);
    assert!(net.run(600_000), "{hosts} hosts reach height {heights}");
    net.assert_agreement();
    let secs = t.elapsed().as_secs_f64();
    let s = net.cache_totals();
    println!(
        "{hosts} hosts, {} cache{}: {:.1} pairings and {:.0} cache hits per height, {:.2} s wall per height",
        if shared { "one shared" } else { "a private" },
        if shared { "" } else { " each" },
        s.verified as f64 / heights as f64,
        s.hits as f64 / heights as f64,
        secs / heights as f64
    );
    s.verified
}

#[test]
fn sharing_the_cache_divides_pairings_by_the_host_count() {
    let shared = simulate(12, 2, true);
    let private = simulate(12, 2, false);
    assert!(private > 8 * shared, "{private} pairings with private caches vs {shared} shared");
}

#[test]
#[ignore = "a few seconds to a minute; prints the figures of docs/consensus.md"]
fn simulation_cost_figures() {
    simulate(50, 3, true);
    simulate(50, 3, false);
    simulate(200, 2, true);
}
