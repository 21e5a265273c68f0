//! Property: a block of arbitrary (decoded) transactions — signed by a
//! genesis host or not — applied to a chain state never panics, and the
//! state keeps its invariants: the voting weight is the sum of the host
//! weights, the height moves up by one, and two replicas applying the same
//! blocks hold the same state root.
#![no_main]

use std::sync::OnceLock;

use gonka_engine::chain::types::{SignedTransaction, Transaction};
use gonka_engine::chain::{Chain, Genesis, GenesisHost};
use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::crypto::wire::decode;
use gonka_engine::hosts::Weight;
use gonka_engine::params::ChainParams;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static Vec<HostKey> {
    static KEYS: OnceLock<Vec<HostKey>> = OnceLock::new();
    KEYS.get_or_init(|| (0..4u8).map(|i| HostKey::from_ikm(&[i + 1; 32])).collect())
}

/// One memo of verified signatures for every run: verification is a pure
/// function, and the genesis checks would otherwise dominate each run.
fn cache() -> &'static SigCache {
    static CACHE: OnceLock<SigCache> = OnceLock::new();
    CACHE.get_or_init(SigCache::default)
}

fn genesis() -> &'static Genesis {
    static GENESIS: OnceLock<Genesis> = OnceLock::new();
    GENESIS.get_or_init(|| Genesis {
        params: ChainParams::tiny(),
        seed: [7; 32],
        hosts: keys().iter().map(|k| GenesisHost::new(k, 10)).collect(),
        accounts: Vec::new(),
        reserve: 0,
    })
}

fuzz_target!(|data: &[u8]| {
    // Input: a list of chunks, each either a whole encoded transaction or a
    // body re-signed by genesis host (first byte % 4) so it passes the envelope.
    let mut txs = Vec::new();
    let mut rest = data;
    while rest.len() > 3 && txs.len() < 16 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let signer = rest[2];
        let end = (3 + len).min(rest.len());
        let chunk = &rest[3..end];
        rest = &rest[end..];
        if let Ok(tx) = decode::<SignedTransaction>(chunk) {
            let body: Transaction = tx.body.clone();
            txs.push(if signer & 0x80 == 0 { tx } else { SignedTransaction::sign(&keys()[signer as usize % 4], body) });
        }
    }
    let mut a = Chain::from_genesis(genesis(), cache().clone()).expect("valid genesis");
    let mut b = Chain::from_genesis(genesis(), SigCache::new(64)).expect("valid genesis");
    for round in 0..2 {
        let blk = a.build_block(0, 0, if round == 0 { txs.clone() } else { Vec::new() });
        let height = blk.header.height;
        let ra = a.apply_trusted(&blk, 0).expect("a block built on the tip applies");
        let rb = b.apply_trusted(&blk, 0).expect("a block built on the tip applies");
        assert_eq!(ra.state_root, rb.state_root, "replicas diverged");
        assert_eq!(a.tip().height, Some(height), "height must move up by one");
        assert_eq!(ra.receipts.len(), blk.transactions.len(), "one receipt per transaction");
        let world = a.world_mut_for_queries();
        let sum: u128 = world.query::<&Weight>().iter(world).map(|w| u128::from(w.0)).sum();
        let voting = a.voting();
        let voting_sum: u128 = voting.weights.iter().map(|&w| u128::from(w)).sum();
        assert_eq!(voting.total_weight(), voting_sum, "voting total is the sum of its weights");
        assert!(voting_sum <= sum, "voting weight {voting_sum} exceeds the hosts' {sum}");
    }
});
