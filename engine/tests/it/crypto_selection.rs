//! Auditable selection: the selection rate over many tasks stays within
//! binomial bounds, anyone can verify a claim, and forged claims fail;
//! weighted draws follow their weights.

use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::selection::{
    DrawStream, Probability, select, selection_signature, verify_selection,
};
use gonka_kernels::encoding::tagged_hash;

const SEED: u64 = 0;

fn task(i: u64) -> [u8; 32] {
    tagged_hash("test/task", &[&SEED.to_le_bytes(), &i.to_le_bytes()])
}

/// `|observed − n·p| ≤ 5σ` with `σ² = n·p·(1 − p)`, in integers: `(obs·den − n·num)² ≤ 25·n·num·(den − num)`.
fn within_five_sigma(observed: u64, n: u64, num: u64, den: u64) -> bool {
    let diff = (observed * den).abs_diff(n * num) as u128;
    diff * diff <= 25 * u128::from(n) * u128::from(num) * u128::from(den - num)
}

#[test]
fn selection_rate_is_binomial_and_claims_verify() {
    println!("selection seed {SEED}");
    let host = HostKey::from_ikm(&tagged_hash("test/selector", &[&SEED.to_le_bytes()]));
    let pk = host.public_key();
    // p = 1/10 as exact fixed point of weight share 30/300.
    let p = Probability::from_ratio(30, 300).expect("non-zero denominator");
    let n = 3000u64;
    let mut selected = 0u64;
    for i in 0..n {
        let sig = selection_signature(&host, &task(i));
        let chosen = select(&sig, p);
        if i < 50 {
            // Checking a claim costs one verification; do it on a prefix.
            assert_eq!(verify_selection(&pk, &task(i), &sig, p).expect("own signature"), chosen);
        }
        selected += u64::from(chosen);
    }
    println!("selected {selected} of {n} at p = 1/10");
    assert!(within_five_sigma(selected, n, 1, 10), "{selected} of {n} is outside 5σ of 1/10");
}

#[test]
fn forged_selection_claims_are_rejected() {
    let host = HostKey::from_ikm(&[1; 32]);
    let other = HostKey::from_ikm(&[2; 32]);
    let p = Probability::ONE;
    // Another host's signature, a signature over another task, another domain, garbage.
    let claims = [
        selection_signature(&other, &task(1)),
        selection_signature(&host, &task(2)),
        host.sign(gonka_engine::crypto::Domain::Transaction, &task(1)),
        [0xAA; 96],
    ];
    for (i, sig) in claims.iter().enumerate() {
        assert!(verify_selection(&host.public_key(), &task(1), sig, p).is_err(), "forged claim {i} accepted");
    }
}

#[test]
fn weighted_draws_follow_the_weights() {
    let weights = [1u64, 2, 3, 4];
    let mut draws = DrawStream::new(&task(0), "proposer");
    let mut counts = [0u64; 4];
    let n = 20_000u64;
    for _ in 0..n {
        counts[draws.weighted_index(&weights).expect("positive weights")] += 1;
    }
    println!("draw counts {counts:?} for weights {weights:?}");
    for (c, w) in counts.iter().zip(weights) {
        assert!(within_five_sigma(*c, n, w, 10), "count {c} for weight {w}/10 is outside 5σ");
    }
}
