//! Property: offline verification of arbitrary bytes never panics and never
//! accepts a batch whose host signature it did not check.
#![no_main]

use std::sync::OnceLock;

use gonka_engine::crypto::HostKey;
use gonka_engine::proofs::{VerifyOptions, decode_proof_file, verify_proof_file};
use gonka_kernels::Precision;
use libfuzzer_sys::fuzz_target;

fn validator() -> &'static HostKey {
    static KEY: OnceLock<HostKey> = OnceLock::new();
    KEY.get_or_init(|| HostKey::from_ikm(&[9u8; 32]))
}

fuzz_target!(|data: &[u8]| {
    // Verify against the seed the file names, so the fuzzer can reach the
    // checks past the Sprint comparison.
    let seed = decode_proof_file(data).map(|b| b.sprint_seed).unwrap_or([0u8; 32]);
    let opts = VerifyOptions {
        sprint_seed: seed,
        r_target: None,
        sample: 2,
        validator: validator(),
        precision: Precision::F32,
        threads: 1,
        batch: 2,
        params: None,
    };
    if verify_proof_file(data, &opts).is_ok() {
        // Reaching a pass means the bytes carried a valid BLS signature over
        // their commitment, which random inputs cannot forge.
        panic!("arbitrary bytes passed verification");
    }
});
