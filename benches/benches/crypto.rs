//! Crypto benches: aggregate vote-set verification against its reference, a
//! single signature verification; threshold recovery (Lagrange + MSM); the
//! selection check per task.
//!
//! `cargo bench -p gonka-benches --bench crypto`. The target is a
//! 1000-signer vote set under 5 ms on one core, i.e. bound by the pairing
//! (the `verify/single` reference), not by summing public keys.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gonka_engine::crypto::beacon::{BeaconPartials, BeaconRound};
use gonka_engine::crypto::scalar::Scalar;
use gonka_engine::crypto::selection::{Probability, selection_signature, verify_selection};
use gonka_engine::crypto::threshold::{
    PartialSignature, PublicPolynomial, ShareKey, lagrange_at_zero, recover,
};
use gonka_engine::crypto::votes::{EpochHosts, Threshold, VoteSet, VoteSetBuilder, verify_vote_set};
use gonka_engine::crypto::{Domain, HostKey, verify};
use gonka_kernels::encoding::tagged_hash;

const MSG: &[u8] = b"block vote: epoch 1, height 1";

fn keys(n: usize) -> Vec<HostKey> {
    (0..n as u64).map(|i| HostKey::from_ikm(&tagged_hash("bench/host", &[&i.to_le_bytes()]))).collect()
}

fn vote_set(keys: &[HostKey], hosts: &EpochHosts) -> VoteSet {
    let mut b = VoteSetBuilder::new(hosts, Domain::BlockVote, MSG);
    for (i, k) in keys.iter().enumerate() {
        b.add(i, &k.sign(Domain::BlockVote, MSG)).expect("honest vote");
    }
    b.finish().expect("non-empty")
}

fn votes(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto::verify");
    g.sample_size(20);
    let all = keys(1000);
    let one = &all[0];
    let (pk, sig) = (one.public_key(), one.sign(Domain::BlockVote, MSG));
    g.bench_function(BenchmarkId::from_parameter("single (reference)"), |b| {
        b.iter(|| verify(Domain::BlockVote, black_box(&pk), MSG, black_box(&sig)).expect("valid"))
    });
    for n in [100usize, 1000] {
        let list: Vec<_> = all[..n].iter().map(|k| (k.public_key(), 1)).collect();
        let hosts = EpochHosts::new(&list).expect("valid hosts");
        let set = vote_set(&all[..n], &hosts);
        g.bench_function(BenchmarkId::from_parameter(format!("vote_set signers={n}")), |b| {
            b.iter(|| {
                verify_vote_set(&hosts, Domain::BlockVote, MSG, black_box(&set), Threshold::FINALITY)
                    .expect("valid")
            })
        });
    }
    g.finish();
}

fn threshold(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto::threshold");
    g.sample_size(20);
    let (t, n) = (67usize, 100u32);
    let coeffs: Vec<Scalar> =
        (0..t as u64).map(|k| Scalar::hash_to(&k.to_le_bytes(), b"bench-coefficient")).collect();
    let partials: Vec<PartialSignature> = (0..n)
        .map(|s| {
            let x = Scalar::from_u64(u64::from(s) + 1);
            let v = coeffs.iter().rev().fold(Scalar::ZERO, |acc, &a| acc * x + a);
            ShareKey::new(s, v).sign(Domain::BeaconShare, MSG).expect("non-zero share")
        })
        .collect();
    let chosen = &partials[n as usize - t..];
    let xs: Vec<u64> = chosen.iter().map(|p| u64::from(p.slot) + 1).collect();
    g.bench_function(BenchmarkId::from_parameter(format!("lagrange t={t}")), |b| {
        b.iter(|| lagrange_at_zero(black_box(&xs)).expect("distinct"))
    });
    g.bench_function(BenchmarkId::from_parameter(format!("recover t={t} n={n}")), |b| {
        b.iter(|| recover(t, black_box(chosen)).expect("t partials"))
    });
    g.finish();
}

/// Beacon production for 100 hosts of one slot each, t = 51: the share keys
/// (once per epoch), then one block carrying t partials, verified with one
/// batch check (reference: one check per partial), and the recovery of σ_e.
fn beacon(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto::beacon");
    g.sample_size(10);
    let (t, n) = (51usize, 100u32);
    let coeffs: Vec<Scalar> =
        (0..t as u64).map(|k| Scalar::hash_to(&k.to_le_bytes(), b"bench-beacon")).collect();
    let public = PublicPolynomial::commit(&coeffs).expect("non-zero coefficients");
    let member_slots: Vec<_> = (0..n).map(|s| s..s + 1).collect();
    let round = BeaconRound::new(1, &[0u8; 32], public.clone(), member_slots, 0);
    let partials: Vec<PartialSignature> = (0..n)
        .map(|s| {
            let x = Scalar::from_u64(u64::from(s) + 1);
            let v = coeffs.iter().rev().fold(Scalar::ZERO, |acc, &a| acc * x + a);
            ShareKey::new(s, v).sign(Domain::BeaconShare, round.message()).expect("non-zero share")
        })
        .collect();
    let msgs: Vec<BeaconPartials> =
        partials.iter().map(|p| BeaconPartials { epoch: 1, partials: vec![p.clone()] }).collect();
    let block: Vec<(u32, &BeaconPartials)> = msgs.iter().take(t).zip(0..).map(|(m, i)| (i, m)).collect();
    g.bench_function(BenchmarkId::from_parameter(format!("share keys n={n} t={t}")), |b| {
        b.iter(|| (0..n).map(|s| public.share_public_key(s)).collect::<Vec<_>>())
    });
    let mut warm = round.clone();
    warm.precompute_share_keys();
    g.bench_function(BenchmarkId::from_parameter(format!("block of {t} partials (batch) + recover")), |b| {
        b.iter(|| {
            let mut r = warm.clone();
            assert!(r.add_block(0, black_box(&block)).iter().all(Result::is_ok));
            r.finish().expect("t partials")
        })
    });
    g.bench_function(
        BenchmarkId::from_parameter(format!("{t} partials one by one (reference) + recover")),
        |b| {
            b.iter(|| {
                let mut r = warm.clone();
                for &(member, m) in &block {
                    r.add(0, member, black_box(m)).expect("valid partial");
                }
                r.finish().expect("t partials")
            })
        },
    );
    g.finish();
}

fn selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto::selection");
    g.sample_size(20);
    let k = &keys(1)[0];
    let task = [3u8; 32];
    let sig = selection_signature(k, &task);
    let pk = k.public_key();
    let p = Probability::from_ratio(1, 10).expect("non-zero denominator");
    g.bench_function(BenchmarkId::from_parameter("verify claim"), |b| {
        b.iter(|| verify_selection(&pk, &task, black_box(&sig), p).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, votes, threshold, beacon, selection);
criterion_main!(benches);
