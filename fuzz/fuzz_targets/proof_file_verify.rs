//! Property: offline verification of arbitrary bytes never panics, and every
//! batch it accepts carries a valid host signature over its own commitment.
#![no_main]

use std::sync::OnceLock;

use gonka_engine::crypto::{self, Domain, HostKey};
use gonka_engine::proofs::{Difficulty, PowVersion, VerifyOptions, decode_proof_file, verify_proof_file};
use gonka_kernels::Precision;
use libfuzzer_sys::fuzz_target;

fn validator() -> &'static HostKey {
    static KEY: OnceLock<HostKey> = OnceLock::new();
    KEY.get_or_init(|| HostKey::from_ikm(&[9u8; 32]))
}

fuzz_target!(|data: &[u8]| {
    // Verify against the seed the file names, so the fuzzer can reach the
    // checks past the Sprint comparison.
    let decoded = decode_proof_file(data).ok();
    let seed = decoded.as_ref().map(|b| b.sprint_seed).unwrap_or([0u8; 32]);
    let pow = match decoded.map(|b| b.difficulty) {
        Some(Difficulty::V2 { .. }) => PowVersion::V2,
        _ => PowVersion::V1,
    };
    let opts = VerifyOptions {
        sprint_seed: seed,
        pow,
        r_target: None,
        sample: 2,
        validator: validator(),
        precision: Precision::F32,
        threads: 1,
        batch: 2,
        params: None,
        difficulty: None,
    };
    if verify_proof_file(data, &opts).is_ok() {
        let batch = decode_proof_file(data).expect("an accepted file decodes");
        assert!(
            crypto::verify(Domain::ProofBatch, &batch.pubkey, &batch.commitment(), &batch.signature).is_ok(),
            "accepted a batch without a valid host signature"
        );
    }
});
