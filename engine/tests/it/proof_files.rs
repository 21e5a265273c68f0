//! Proof files end to end on the `tiny` model: an honest batch verifies; forged,
//! truncated, oversized, wrong-version and hostile files are rejected with a
//! clear error and never a panic.

use gonka_engine::crypto::HostKey;
use gonka_engine::proofs::{
    Difficulty, FORMAT_VERSION, MAX_PROOF_FILE_BYTES, PowVersion, ProofBatch, ProofEntry, ProofFileError,
    V2_NONCES_PER_PROOF, VerifyError, VerifyOptions, decode_proof_file, encode_proof_file, merkle_root,
    verify_proof_file,
};
use gonka_kernels::config::TINY;
use gonka_kernels::miner::{MinerConfig, StopSignal, mine};
use gonka_kernels::model::Model;
use gonka_kernels::pow::{default_r_target, node_seed};
use gonka_kernels::sprint::{SprintV1, SprintV2};
use gonka_kernels::{Hash32, Precision};

const SEED: Hash32 = [0x11; 32];

/// Mines `tiny` until at least `want` proofs exist (one in ~900 nonces).
fn honest_batch(key: &HostKey, want: usize) -> ProofBatch {
    let model = Model::generate(&TINY, &SEED);
    let r = default_r_target(TINY.vocab);
    let f = SprintV1::new(&model, SEED, node_seed(&key.public_key()), r, Precision::Bf16);
    let cfg = MinerConfig { batch: 256, threads: 2, first_nonce: 0 };
    let mut proofs = Vec::new();
    let mut tried = 0;
    let mut first = 0u64;
    while proofs.len() < want {
        let stop = StopSignal::after(std::time::Duration::from_millis(300));
        let rep = mine(&f, &MinerConfig { first_nonce: first, ..cfg.clone() }, &stop, &mut |_| {});
        tried += rep.nonces;
        first += 1 << 32;
        proofs.extend(rep.proofs.iter().map(|p| ProofEntry { nonce: p.nonce, score: p.score }));
    }
    ProofBatch::new_signed(key, SEED, &TINY, Difficulty::v1(r), tried, proofs)
}

fn options(validator: &HostKey) -> VerifyOptions<'_> {
    VerifyOptions {
        sprint_seed: SEED,
        pow: PowVersion::V1,
        r_target: None,
        sample: 50,
        validator,
        precision: Precision::F32,
        threads: 2,
        batch: 16,
        params: None,
        difficulty: None,
    }
}

#[test]
fn honest_batch_verifies_and_roundtrips() {
    let host = HostKey::from_ikm(&[1u8; 32]);
    let batch = honest_batch(&host, 5);
    let bytes = encode_proof_file(&batch);
    assert_eq!(decode_proof_file(&bytes).expect("decodes"), batch);
    let validator = HostKey::from_ikm(&[2u8; 32]);
    let report = verify_proof_file(&bytes, &options(&validator)).expect("an honest batch verifies");
    assert_eq!(report.proofs, batch.proofs.len());
    assert!(
        report.verdict.mismatches.is_empty(),
        "honest bf16 proofs recomputed in f32: {:?}",
        report.verdict
    );
    assert!(report.verdict.max_abs_diff < 2e-3, "honest noise {}", report.verdict.max_abs_diff);
}

#[test]
fn fabricated_proofs_are_caught() {
    let host = HostKey::from_ikm(&[3u8; 32]);
    let honest = honest_batch(&host, 2);
    // Claim many random nonces as proofs, signed properly: only recomputation can tell.
    let mut proofs = honest.proofs.clone();
    proofs.extend((0..40u64).map(|i| ProofEntry { nonce: (7 << 40) + i * 3, score: 1.0 }));
    let forged = ProofBatch::new_signed(&host, SEED, &TINY, honest.difficulty, honest.nonces_tried, proofs);
    let validator = HostKey::from_ikm(&[4u8; 32]);
    let err =
        verify_proof_file(&encode_proof_file(&forged), &options(&validator)).expect_err("forgery must fail");
    assert!(matches!(err, VerifyError::Fraudulent { .. }), "expected a fraud verdict, got {err}");
}

#[test]
fn tampering_breaks_the_signature() {
    let host = HostKey::from_ikm(&[5u8; 32]);
    let mut batch = honest_batch(&host, 1);
    batch.proofs[0].score -= 1e-3;
    let validator = HostKey::from_ikm(&[6u8; 32]);
    let err = verify_proof_file(&encode_proof_file(&batch), &options(&validator)).expect_err("tampered");
    assert!(matches!(err, VerifyError::Signature(_)), "got {err}");
}

#[test]
fn semantic_violations_are_named() {
    let host = HostKey::from_ikm(&[7u8; 32]);
    let validator = HostKey::from_ikm(&[8u8; 32]);
    let r = default_r_target(TINY.vocab);
    let sign = |proofs: Vec<ProofEntry>, r: f32| {
        let mut b = ProofBatch::new_signed(&host, SEED, &TINY, Difficulty::v1(r), 0, vec![]);
        // Bypass new_signed's sorting to plant the violation, then re-sign.
        b.proofs = proofs;
        b.signature = host.sign(gonka_engine::crypto::Domain::ProofBatch, &b.commitment());
        encode_proof_file(&b)
    };
    let e = |n, d| ProofEntry { nonce: n, score: d };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (sign(vec![e(5, 1.0), e(5, 1.0)], r), "duplicate nonce"),
        (sign(vec![e(6, 1.0), e(5, 1.0)], r), "not sorted"),
        (sign(vec![e(5, 1.9)], r), "not a proof"),
        (sign(vec![e(5, f64::NAN)], r), "not a proof"),
        (sign(vec![e(5, 1.0)], 1.9), "difficulty"),
        (sign(vec![], r), "no proofs"),
    ];
    for (bytes, want) in cases {
        let err = verify_proof_file(&bytes, &options(&validator)).expect_err(want);
        assert!(err.to_string().contains(want), "error {err:?} should mention {want:?}");
    }
    let mut other_sprint =
        ProofBatch::new_signed(&host, [0x22; 32], &TINY, Difficulty::v1(r), 0, vec![e(1, 1.0)]);
    other_sprint.signature = host.sign(gonka_engine::crypto::Domain::ProofBatch, &other_sprint.commitment());
    let err =
        verify_proof_file(&encode_proof_file(&other_sprint), &options(&validator)).expect_err("wrong sprint");
    assert!(matches!(err, VerifyError::WrongSprint { .. }));
}

#[test]
fn malformed_files_give_clear_errors() {
    let host = HostKey::from_ikm(&[9u8; 32]);
    let good = encode_proof_file(&ProofBatch::new_signed(
        &host,
        SEED,
        &TINY,
        Difficulty::v1(default_r_target(TINY.vocab)),
        0,
        vec![ProofEntry { nonce: 1, score: 1.0 }],
    ));
    assert_eq!(decode_proof_file(&[]), Err(ProofFileError::TruncatedHeader { len: 0 }));
    assert_eq!(decode_proof_file(&good[..10]), Err(ProofFileError::TruncatedHeader { len: 10 }));
    assert!(matches!(decode_proof_file(&good[..good.len() - 1]), Err(ProofFileError::LengthMismatch { .. })));
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(decode_proof_file(&longer), Err(ProofFileError::LengthMismatch { .. })));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(matches!(decode_proof_file(&magic), Err(ProofFileError::BadMagic { .. })));
    let mut version = good.clone();
    version[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        decode_proof_file(&version),
        Err(ProofFileError::UnsupportedVersion { found: FORMAT_VERSION + 1 })
    );
    let huge = vec![0u8; MAX_PROOF_FILE_BYTES + 1];
    assert!(matches!(decode_proof_file(&huge), Err(ProofFileError::TooLarge { .. })));
    // A payload whose vector length points far outside the buffer.
    let mut hostile = good.clone();
    let n = hostile.len();
    for b in &mut hostile[n - 24..n - 16] {
        *b = 0xff;
    }
    let r = decode_proof_file(&hostile);
    assert!(r.is_err() || r.as_ref().is_ok_and(|b| b.proofs.len() <= 1), "hostile payload: {r:?}");
    // Every truncation and every single-byte corruption: an error or a batch, never a panic.
    for cut in 0..good.len() {
        let _ = decode_proof_file(&good[..cut]);
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x5a;
        let _ = decode_proof_file(&bad);
    }
}

#[test]
fn merkle_root_commits_to_every_proof() {
    let a = [
        ProofEntry { nonce: 1, score: 1.0 },
        ProofEntry { nonce: 2, score: 1.1 },
        ProofEntry { nonce: 3, score: 1.2 },
    ];
    let mut b = a;
    b[2].score = 1.2000001;
    assert_ne!(merkle_root(&a), merkle_root(&b));
    assert_ne!(merkle_root(&a[..2]), merkle_root(&a));
    assert_ne!(merkle_root(&[]), merkle_root(&a[..1]));
}

/// Mines `tiny` with v2 until at least `want` proofs exist.
fn honest_v2_batch(key: &HostKey, want: usize) -> ProofBatch {
    let model = gonka_kernels::v2::Model::generate(&TINY, &SEED).expect("tiny is a valid v2 config");
    let f = SprintV2::new(&model, SEED, node_seed(&key.public_key()), V2_NONCES_PER_PROOF);
    let (mut proofs, mut tried, mut first) = (Vec::new(), 0, 0u64);
    while proofs.len() < want {
        let stop = StopSignal::after(std::time::Duration::from_millis(300));
        let rep = mine(&f, &MinerConfig { batch: 256, threads: 2, first_nonce: first }, &stop, &mut |_| {});
        tried += rep.nonces;
        first += 1 << 32;
        proofs.extend(rep.proofs.iter().map(|p| ProofEntry { nonce: p.nonce, score: p.score }));
    }
    let difficulty = Difficulty::V2 { nonces_per_proof: V2_NONCES_PER_PROOF };
    ProofBatch::new_signed(key, SEED, &TINY, difficulty, tried, proofs)
}

#[test]
fn v2_batches_verify_exactly_and_forgeries_fail() {
    let host = HostKey::from_ikm(&[21u8; 32]);
    let honest = honest_v2_batch(&host, 5);
    let validator = HostKey::from_ikm(&[22u8; 32]);
    let opts = VerifyOptions { pow: PowVersion::V2, ..options(&validator) };
    let report = verify_proof_file(&encode_proof_file(&honest), &opts).expect("an honest v2 batch verifies");
    assert_eq!(report.verdict.max_abs_diff, 0.0, "v2 recomputation is bit-exact");
    // Forged nonces claiming a passing score: only recomputation can tell.
    let mut proofs = honest.proofs.clone();
    proofs.extend((0..20u64).map(|i| ProofEntry { nonce: (9 << 40) + i, score: 1e-4 }));
    let forged = ProofBatch::new_signed(&host, SEED, &TINY, honest.difficulty, honest.nonces_tried, proofs);
    let err = verify_proof_file(&encode_proof_file(&forged), &opts).expect_err("forgery must fail");
    assert!(matches!(err, VerifyError::Fraudulent { .. }), "expected a fraud verdict, got {err}");
}
