//! Tests of the consensus state machine: single-host rules driven by hand
//! (`machine`), whole networks of hosts under delays, drops, partitions and
//! Byzantine weight (`network`, on the `harness`), and cost figures
//! (`cost`). Randomness comes from a fixed seed, printed by each test.

mod cost;
mod harness;
mod machine;
mod network;

use std::sync::Arc;

use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::{Consensus, HeightContext, SigCache, TimeoutParams, proposer};
use crate::crypto::HostKey;
use crate::crypto::votes::EpochHosts;

/// The seed of every test's randomness unless a test says otherwise.
pub(super) const SEED: u64 = 0;

/// Host `i`'s key, derived from the seed.
pub(super) fn host_key(i: usize) -> HostKey {
    HostKey::from_ikm(&tagged_hash("test/consensus-host", &[&SEED.to_le_bytes(), &(i as u64).to_le_bytes()]))
}

/// The epoch of hosts `0..weights.len()` with these weights.
pub(super) fn epoch(weights: &[u64]) -> Arc<EpochHosts> {
    let list: Vec<_> = weights.iter().enumerate().map(|(i, &w)| (host_key(i).public_key(), w)).collect();
    Arc::new(EpochHosts::new(&list).expect("valid test host list"))
}

/// The context of `height` in `hosts` with `seed` for the proposer draw.
pub(super) fn context(hosts: &Arc<EpochHosts>, height: u64, seed: Hash32) -> HeightContext {
    HeightContext { height, hosts: Arc::clone(hosts), proposer_seed: seed }
}

/// A voting host `i`.
pub(super) fn voter(i: usize, cache: &SigCache) -> Consensus {
    Consensus::new(Some(host_key(i)), TimeoutParams::default(), cache.clone())
}

/// A proposer seed under which `want(round) ` holds for the proposers of
/// rounds `0..want.len()` at `height`.
pub(super) fn seed_where(hosts: &EpochHosts, height: u64, want: &[&dyn Fn(u32) -> bool]) -> Hash32 {
    (0u64..10_000)
        .map(|i| tagged_hash("test/proposer-seed", &[&SEED.to_le_bytes(), &i.to_le_bytes()]))
        .find(|seed| {
            want.iter().enumerate().all(|(round, ok)| ok(proposer(seed, height, round as u32, hosts)))
        })
        .expect("some seed in 10 000 draws gives the wanted proposers")
}

/// A block hash for tests.
pub(super) fn block(name: &str) -> Hash32 {
    tagged_hash("test/block", &[name.as_bytes()])
}
