//! Property: decoding arbitrary bytes as a proof file never panics, and any
//! batch it accepts encodes back to exactly the same bytes.
#![no_main]

use gonka_engine::proofs::{decode_proof_file, encode_proof_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_proof_file(data) {
        let again = encode_proof_file(&batch);
        assert_eq!(decode_proof_file(&again).as_ref(), Ok(&batch), "re-encoded batch must decode to itself");
    }
});
