//! Property: decoding arbitrary bytes as a proof file never panics, and any
//! batch it accepts survives a re-encode: encoding is a fixed point after one
//! round (compared as bytes, since a NaN distance is not equal to itself).
#![no_main]

use gonka_engine::proofs::{decode_proof_file, encode_proof_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_proof_file(data) {
        let once = encode_proof_file(&batch);
        let again = decode_proof_file(&once).expect("a re-encoded batch decodes");
        assert_eq!(encode_proof_file(&again), once, "re-encoding must be stable");
    }
});
