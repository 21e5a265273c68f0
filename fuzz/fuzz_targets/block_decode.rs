//! Property: decoding arbitrary bytes as a block or a final block never
//! panics; whatever decodes respects the bounds, re-encodes to a fixed
//! point, and its hashes (header, transactions root) can be computed.
#![no_main]

use gonka_engine::chain::types::{Block, FinalBlock, MAX_BLOCK_TRANSACTIONS, transactions_root};
use gonka_engine::crypto::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = decode::<Block>(data) {
        assert!(block.transactions.len() <= MAX_BLOCK_TRANSACTIONS);
        let once = encode(&block);
        let again = decode::<Block>(&once).expect("a re-encoded block decodes");
        assert_eq!(encode(&again), once, "re-encoding must be stable");
        let _ = (block.header.hash(), transactions_root(&block.transactions));
    }
    if let Ok(fb) = decode::<FinalBlock>(data) {
        let once = encode(&fb);
        assert_eq!(encode(&decode::<FinalBlock>(&once).expect("re-encoded final block decodes")), once);
    }
});
