//! Weighted aggregate votes end to end: honest sets verify with their exact
//! weight; rogue keys, duplicate and unknown signers, malformed bitmaps,
//! wrong messages and replays from another epoch are rejected.

use blst::min_pk::{AggregatePublicKey, PublicKey, SecretKey};
use gonka_engine::crypto::votes::{
    EpochHosts, MAX_VOTE_MESSAGE_BYTES, Threshold, VoteError, VoteSet, VoteSetBuilder, verify_vote_set,
};
use gonka_engine::crypto::wire::{WireError, decode, encode};
use gonka_engine::crypto::{Domain, HostKey, verify_possession};
use gonka_kernels::encoding::tagged_hash;

const SEED: u8 = 0;

fn keys(n: usize) -> Vec<HostKey> {
    println!("host keys from seed {SEED}");
    (0..n)
        .map(|i| HostKey::from_ikm(&tagged_hash("test/host", &[&[SEED], &(i as u64).to_le_bytes()])))
        .collect()
}

fn hosts(keys: &[HostKey], weights: &[u64]) -> EpochHosts {
    let list: Vec<_> = keys.iter().zip(weights).map(|(k, &w)| (k.public_key(), w)).collect();
    EpochHosts::new(&list).expect("valid host list")
}

/// The block-vote message of an epoch: the epoch is part of what is signed.
fn block_message(epoch: u64, height: u64) -> Vec<u8> {
    [b"block".as_slice(), &epoch.to_le_bytes(), &height.to_le_bytes()].concat()
}

fn vote_set(keys: &[HostKey], hosts: &EpochHosts, signers: &[usize], msg: &[u8]) -> VoteSet {
    let mut b = VoteSetBuilder::new(hosts, Domain::BlockVote, msg);
    for &i in signers {
        b.add(i, &keys[i].sign(Domain::BlockVote, msg)).expect("honest vote");
    }
    b.finish().expect("non-empty")
}

#[test]
fn honest_vote_sets_verify_with_exact_weight() {
    let k = keys(10);
    let weights = [10u64, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    let h = hosts(&k, &weights);
    let msg = block_message(7, 100);
    let set = vote_set(&k, &h, &[9, 8, 7, 6], &msg);
    let tally =
        verify_vote_set(&h, Domain::BlockVote, &msg, &set, Threshold::DISPUTE).expect("340 of 550 > 1/2");
    assert_eq!((tally.signers, tally.signed_weight, tally.total_weight), (4, 340, 550));
    assert!(matches!(
        verify_vote_set(&h, Domain::BlockVote, &msg, &set, Threshold::FINALITY),
        Err(VoteError::InsufficientWeight { signed: 340, total: 550, num: 2, den: 3 })
    ));
}

#[test]
fn finality_threshold_is_exact_at_two_thirds() {
    // Total 300: 200 signed is exactly 2/3 and fails, 201 passes.
    let k = keys(3);
    let msg = block_message(1, 1);
    let h = hosts(&k, &[200, 1, 99]);
    let at = vote_set(&k, &h, &[0], &msg);
    assert!(matches!(
        verify_vote_set(&h, Domain::BlockVote, &msg, &at, Threshold::FINALITY),
        Err(VoteError::InsufficientWeight { signed: 200, total: 300, .. })
    ));
    let above = vote_set(&k, &h, &[0, 1], &msg);
    let t = verify_vote_set(&h, Domain::BlockVote, &msg, &above, Threshold::FINALITY).expect("201 of 300");
    assert_eq!(t.signed_weight, 201);
    // Disputes: exactly half fails, one more passes.
    let h = hosts(&k, &[150, 1, 149]);
    let half = vote_set(&k, &h, &[0], &msg);
    assert!(verify_vote_set(&h, Domain::BlockVote, &msg, &half, Threshold::DISPUTE).is_err());
    let more = vote_set(&k, &h, &[0, 1], &msg);
    assert!(verify_vote_set(&h, Domain::BlockVote, &msg, &more, Threshold::DISPUTE).is_ok());
}

#[test]
fn builder_rejects_duplicate_unknown_and_bad_votes() {
    let k = keys(4);
    let h = hosts(&k, &[1, 1, 1, 1]);
    let msg = block_message(3, 9);
    let mut b = VoteSetBuilder::new(&h, Domain::BlockVote, &msg);
    assert!(matches!(b.finish(), Err(VoteError::EmptySet)));
    b.add(0, &k[0].sign(Domain::BlockVote, &msg)).expect("first vote");
    assert!(matches!(
        b.add(0, &k[0].sign(Domain::BlockVote, &msg)),
        Err(VoteError::DuplicateSigner { index: 0 })
    ));
    assert!(matches!(
        b.add(4, &k[0].sign(Domain::BlockVote, &msg)),
        Err(VoteError::UnknownSigner { index: 4, .. })
    ));
    // Host 2's slot with host 1's signature, a wrong message, a wrong domain.
    assert!(matches!(b.add(2, &k[1].sign(Domain::BlockVote, &msg)), Err(VoteError::BadSignature(_))));
    assert!(b.add(2, &k[2].sign(Domain::BlockVote, b"other")).is_err());
    assert!(b.add(2, &k[2].sign(Domain::DisputeVote, &msg)).is_err());
    assert_eq!(b.signed_weight(), 1);
}

#[test]
fn malformed_bitmaps_and_wrong_messages_are_rejected() {
    let k = keys(10);
    let h = hosts(&k, &[1; 10]);
    let msg = block_message(5, 50);
    let set = vote_set(&k, &h, &[0, 1, 2, 3, 4, 5, 6, 7, 8], &msg);
    let check = |s: &VoteSet, m: &[u8]| verify_vote_set(&h, Domain::BlockVote, m, s, Threshold::FINALITY);
    check(&set, &msg).expect("honest set");

    let mut longer = set.clone();
    longer.signers.push(0);
    assert!(matches!(
        check(&longer, &msg),
        Err(VoteError::BitmapLength { found: 3, expected: 2, hosts: 10 })
    ));
    let mut padding = set.clone();
    padding.signers[1] |= 0b0000_0100; // host 10 of 10
    assert!(matches!(check(&padding, &msg), Err(VoteError::UnknownSigner { index: 10, hosts: 10 })));
    let mut empty = set.clone();
    empty.signers = vec![0, 0];
    assert!(matches!(check(&empty, &msg), Err(VoteError::EmptySet)));
    // Claiming an extra signer (host 9 did not sign) breaks the pairing check.
    let mut extra = set.clone();
    extra.signers[1] |= 0b0000_0010;
    assert!(matches!(check(&extra, &msg), Err(VoteError::BadSignature(_))));
    // Dropping a signer to shed its weight does too.
    let mut fewer = set.clone();
    fewer.signers[0] &= !1;
    assert!(matches!(check(&fewer, &msg), Err(VoteError::BadSignature(_))));

    // A set signed in a previous epoch, replayed now: the message names the epoch.
    let old = vote_set(&k, &h, &[0, 1, 2, 3, 4, 5, 6, 7, 8], &block_message(4, 50));
    assert!(matches!(check(&old, &msg), Err(VoteError::WrongMessage { .. })));
    // Relabelling the old set with today's message does not verify.
    let mut relabelled = old;
    relabelled.message = msg.clone();
    assert!(matches!(check(&relabelled, &msg), Err(VoteError::BadSignature(_))));
    // Same message and signers, another domain.
    assert!(verify_vote_set(&h, Domain::DisputeVote, &msg, &set, Threshold::FINALITY).is_err());
}

#[test]
fn host_lists_reject_duplicates_and_invalid_keys() {
    let k = keys(2);
    let pk = k[0].public_key();
    assert!(matches!(EpochHosts::new(&[(pk, 1), (pk, 2)]), Err(VoteError::BadHostList(_))));
    assert!(matches!(
        EpochHosts::new(&[(pk, 1), ([0u8; 48], 2)]),
        Err(VoteError::BadHostKey { index: 1, .. })
    ));
    assert!(matches!(EpochHosts::new(&[]), Err(VoteError::BadHostList(_))));
    assert!(matches!(EpochHosts::new(&[(pk, 0)]), Err(VoteError::BadHostList(_))));
}

#[test]
fn a_rogue_key_forges_aggregates_but_has_no_proof_of_possession() {
    // The attacker registers pk_rogue = g^x − pk_victim; then g^x signs for both.
    let k = keys(1);
    let victim = &k[0];
    let x = SecretKey::key_gen(&[0x42; 32], &[]).expect("32 bytes");
    let mut rogue = AggregatePublicKey::from_public_key(&x.sk_to_pk());
    let victim_pk = PublicKey::from_bytes(&victim.public_key()).expect("valid");
    rogue.sub_aggregate(&AggregatePublicKey::from_public_key(&victim_pk));
    let rogue_pk = rogue.to_public_key().compress();

    let h = EpochHosts::new(&[(victim.public_key(), 50), (rogue_pk, 50)]).expect("a subgroup point");
    let msg = block_message(1, 1);
    let forged = VoteSet {
        message: msg.clone(),
        signers: vec![0b11],
        signature: x.sign(&msg, Domain::BlockVote.tag(), &[]).compress(),
    };
    let tally = verify_vote_set(&h, Domain::BlockVote, &msg, &forged, Threshold::FINALITY);
    assert!(tally.is_ok(), "without proofs of possession the victim's weight is forged");

    // Registration stops it: the attacker cannot sign for pk_rogue's unknown secret.
    let attempt = x.sign(&rogue_pk, Domain::ProofOfPossession.tag(), &[]).compress();
    assert!(verify_possession(&rogue_pk, &attempt).is_err(), "a rogue key must fail its proof of possession");
    verify_possession(&victim.public_key(), &victim.proof_of_possession()).expect("honest key registers");
}

#[test]
fn vote_set_wire_roundtrip_bounds_and_frozen_format() {
    let set = VoteSet { message: b"fixed".to_vec(), signers: vec![0b1010_0101, 0x01], signature: [7u8; 96] };
    let bytes = encode(&set);
    assert_eq!(decode::<VoteSet>(&bytes).expect("own encoding"), set);
    // Frozen format: change this hash only with a new wire version.
    assert_eq!(
        hex::encode(tagged_hash("test/frozen", &[&bytes])),
        "0be023a601f98cf801bd54a863334379dbe3915f0dd2b5b82cc9a96a8102816f",
        "the VoteSet encoding changed"
    );
    assert!(matches!(decode::<VoteSet>(&bytes[..bytes.len() - 1]), Err(WireError::Malformed { .. })));
    assert!(matches!(decode::<VoteSet>(&vec![0u8; 1 << 20]), Err(WireError::TooLarge { .. })));
    let long = VoteSet { message: vec![0; MAX_VOTE_MESSAGE_BYTES + 1], ..set };
    assert!(matches!(
        decode::<VoteSet>(&encode(&long)),
        Err(WireError::FieldTooLong { field: "message", .. })
    ));
}
