//! Property: decoding arbitrary bytes as a signed transaction never panics;
//! whatever decodes respects its kind's bounds, re-encodes to a fixed point,
//! and its id and signing message can be computed.
#![no_main]

use gonka_engine::chain::types::{SignedTransaction, signing_message};
use gonka_engine::crypto::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = decode::<SignedTransaction>(data) {
        let once = encode(&tx);
        let again = decode::<SignedTransaction>(&once).expect("a re-encoded transaction decodes");
        assert_eq!(encode(&again), once, "re-encoding must be stable");
        let _ = (tx.id(), signing_message(&tx.sender, &tx.body), tx.body.kind());
    }
});
