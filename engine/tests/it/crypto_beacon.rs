//! The beacon pipeline end to end: a weighted Joint-Feldman DKG with
//! complaints, justifications and disqualification; threshold partials and
//! recovery; the Sprint seed commit–reveal with a withheld reveal.

use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::beacon::{
    BeaconError, BeaconPartials, BeaconRound, SeedCommit, SeedReveal, SeedRound, SeedWindows,
    seed_commitment, verify_beacon,
};
use gonka_engine::crypto::dkg::{
    Dealing, Disqualification, Dkg, DkgComplaint, DkgConfig, DkgError, DkgMember, DkgMessage, DkgOutcome,
    complaints, group_shares,
};
use gonka_engine::crypto::scalar::Scalar;
use gonka_engine::crypto::threshold::{PartialSignature, ThresholdError, recover};
use gonka_engine::crypto::wire::{decode, encode};
use gonka_engine::crypto::{Domain, verify};
use gonka_kernels::encoding::tagged_hash;

const SEED: u64 = 0;
const EPOCH: u64 = 12;
const WEIGHTS: [u64; 5] = [50, 40, 30, 20, 10];
const SLOTS: u32 = 15;
/// Deal by height 10, complain by 20, justify by 30.
const CONFIG: DkgConfig = DkgConfig {
    epoch: EPOCH,
    slots: SLOTS,
    threshold: SLOTS / 2 + 1,
    deal_deadline: 10,
    complaint_deadline: 20,
    justification_deadline: 30,
};

struct Net {
    keys: Vec<HostKey>,
    dealings: Vec<Dealing>,
    dkg: Dkg,
}

fn net() -> Net {
    println!("DKG seed {SEED}");
    let keys: Vec<HostKey> = (0..WEIGHTS.len() as u64)
        .map(|i| HostKey::from_ikm(&tagged_hash("test/dkg-host", &[&SEED.to_le_bytes(), &i.to_le_bytes()])))
        .collect();
    let members: Vec<DkgMember> = keys
        .iter()
        .zip(WEIGHTS)
        .map(|(k, weight)| DkgMember { public_key: k.public_key(), weight })
        .collect();
    let dkg = Dkg::new(CONFIG, &members).expect("valid configuration");
    let dealings = (0..keys.len() as u64)
        .map(|i| {
            Dealing::from_seed(
                &tagged_hash("test/dkg-dealer", &[&SEED.to_le_bytes(), &i.to_le_bytes()]),
                CONFIG.threshold,
            )
        })
        .collect();
    Net { keys, dealings, dkg }
}

impl Net {
    fn deal(&mut self, dealer: u32) {
        let d = self.dealings[dealer as usize].deal(&self.dkg, dealer, &self.keys[dealer as usize]);
        self.dkg.apply(5, dealer, &DkgMessage::Deal(d)).expect("deal in time");
    }

    /// Every member files the complaints its shares call for.
    fn complain(&mut self) -> Vec<(u32, DkgComplaint)> {
        let mut all = Vec::new();
        for me in 0..self.keys.len() as u32 {
            for c in complaints(&self.dkg, me, &self.keys[me as usize]) {
                self.dkg.apply(15, me, &DkgMessage::Complaint(c.clone())).expect("complaint in time");
                all.push((me, c));
            }
        }
        all
    }

    fn partials(&self, outcome: &DkgOutcome, msg: &[u8]) -> Vec<PartialSignature> {
        (0..self.keys.len() as u32)
            .flat_map(|me| group_shares(&self.dkg, outcome, me, &self.keys[me as usize]).expect("own shares"))
            .map(|s| s.sign(Domain::BeaconShare, msg).expect("non-zero share"))
            .collect()
    }

    /// The group secret of the qualified dealers, which no host knows; for checking only.
    fn group_secret(&self, outcome: &DkgOutcome) -> Scalar {
        outcome.qualified.iter().fold(Scalar::ZERO, |acc, &d| acc + self.dealings[d as usize].constant())
    }
}

fn beacon_round(outcome: &DkgOutcome, previous: &[u8; 32]) -> BeaconRound {
    BeaconRound::new(EPOCH, previous, outcome.public.clone(), outcome.slots.clone(), 100)
}

/// The member holding `slot`.
fn owner(outcome: &DkgOutcome, slot: u32) -> u32 {
    outcome.slots.iter().position(|r| r.contains(&slot)).expect("slot of some member") as u32
}

/// One message per partial, from its owner, as a block would carry them.
fn messages(outcome: &DkgOutcome, partials: &[PartialSignature]) -> Vec<(u32, BeaconPartials)> {
    partials
        .iter()
        .map(|p| (owner(outcome, p.slot), BeaconPartials { epoch: EPOCH, partials: vec![p.clone()] }))
        .collect()
}

fn add_block(
    round: &mut BeaconRound,
    height: u64,
    msgs: &[(u32, BeaconPartials)],
) -> Vec<Result<(), BeaconError>> {
    let refs: Vec<(u32, &BeaconPartials)> = msgs.iter().map(|(m, b)| (*m, b)).collect();
    round.add_block(height, &refs)
}

#[test]
fn honest_dkg_and_beacon_match_the_group_secret() {
    let mut net = net();
    assert_eq!(net.dkg.slots_of(0), Some(0..5), "50/150 of 15 slots");
    assert_eq!(net.dkg.slots_of(4), Some(14..15));
    for d in 0..5 {
        net.deal(d);
    }
    assert!(net.complain().is_empty(), "honest deals draw no complaint");
    let outcome = net.dkg.finish(31).expect("finished");
    assert_eq!(outcome.qualified, vec![0, 1, 2, 3, 4]);
    let secret = net.group_secret(&outcome);
    assert_eq!(outcome.public.group_public_key(), secret.public_key().expect("non-zero").compress());

    let previous = [0xAB; 32];
    let mut round = beacon_round(&outcome, &previous);
    let partials = net.partials(&outcome, round.message());
    let t = CONFIG.threshold as usize;
    let block = messages(&outcome, &partials[..t - 1]);
    assert!(
        add_block(&mut round, 100, &block).iter().all(Result::is_ok),
        "honest partials verify in a batch"
    );
    assert!(matches!(round.finish(), Err(BeaconError::Threshold(ThresholdError::NotEnoughPartials { .. }))));
    let last = &partials[t - 1];
    let msg = BeaconPartials { epoch: EPOCH, partials: vec![last.clone()] };
    round.add(101, owner(&outcome, last.slot), &msg).expect("valid");
    let beacon = round.finish().expect("t partials");
    let direct =
        secret.to_secret_key().expect("non-zero").sign(round.message(), Domain::BeaconShare.tag(), &[]);
    assert_eq!(beacon.signature, direct.compress(), "recovery must equal the group key's own signature");
    let value = verify_beacon(&outcome.public.group_public_key(), EPOCH, &previous, &beacon.signature)
        .expect("anyone verifies the beacon");
    assert_eq!(value, beacon.value);
    assert!(
        verify_beacon(&outcome.public.group_public_key(), EPOCH + 1, &previous, &beacon.signature).is_err()
    );
}

#[test]
fn any_t_of_n_partials_give_the_same_signature() {
    let mut net = net();
    for d in 0..5 {
        net.deal(d);
    }
    let outcome = net.dkg.finish(31).expect("finished");
    let msg = b"any message";
    let partials = net.partials(&outcome, msg);
    let t = CONFIG.threshold as usize;
    let reference = recover(t, &partials[..t]).expect("t partials");
    // Fixed-seed shuffles of the 15 partials: every prefix of t recovers the same σ.
    for round in 0..20u64 {
        let mut order: Vec<usize> = (0..partials.len()).collect();
        for i in (1..order.len()).rev() {
            let h = tagged_hash(
                "test/shuffle",
                &[&SEED.to_le_bytes(), &round.to_le_bytes(), &(i as u64).to_le_bytes()],
            );
            let j = (u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let chosen: Vec<PartialSignature> = order[..t].iter().map(|&i| partials[i].clone()).collect();
        assert_eq!(recover(t, &chosen).expect("t partials"), reference, "shuffle {round} differs");
        assert!(recover(t, &chosen[..t - 1]).is_err(), "t − 1 partials must not recover");
    }
    verify(Domain::BeaconShare, &outcome.public.group_public_key(), msg, &reference)
        .expect("group signature");
}

#[test]
fn a_dealer_with_a_bad_share_and_no_answer_is_disqualified() {
    let mut net = net();
    for d in [0, 2, 3] {
        net.deal(d);
    }
    // Dealer 1 corrupts the share of slot 9 (member 2's first slot); dealer 4 never deals.
    let mut bad = net.dealings[1].deal(&net.dkg, 1, &net.keys[1]);
    bad.encrypted_shares[9][0] ^= 1;
    net.dkg.apply(6, 1, &DkgMessage::Deal(bad)).expect("well-formed deal");
    let filed = net.complain();
    assert_eq!(filed.len(), 1, "exactly the victim complains: {filed:?}");
    assert_eq!((filed[0].0, filed[0].1.dealer), (2, 1));

    let outcome = net.dkg.finish(31).expect("finished");
    assert_eq!(outcome.qualified, vec![0, 2, 3]);
    assert_eq!(
        outcome.disqualified,
        vec![(1, Disqualification::UnansweredComplaint { complainer: 2 }), (4, Disqualification::NoDeal)]
    );
    let secret = net.group_secret(&outcome);
    assert_eq!(outcome.public.group_public_key(), secret.public_key().expect("non-zero").compress());
    let msg = b"after disqualification";
    let partials = net.partials(&outcome, msg);
    let sig = recover(CONFIG.threshold as usize, &partials[3..]).expect("enough partials");
    verify(Domain::BeaconShare, &outcome.public.group_public_key(), msg, &sig).expect("group signature");
}

#[test]
fn justifications_clear_honest_dealers_and_convict_lying_ones() {
    let mut net = net();
    for d in 0..5 {
        net.deal(d);
    }
    // Member 3 complains falsely about dealer 0; dealer 0 answers with the true shares.
    net.dkg.apply(12, 3, &DkgMessage::Complaint(DkgComplaint { epoch: EPOCH, dealer: 0 })).expect("in time");
    let answer = net.dealings[0].justify(&net.dkg, 3);
    net.dkg.apply(25, 0, &DkgMessage::Justification(answer)).expect("in time");
    // Member 4 complains about dealer 1, which answers with a wrong share.
    net.dkg.apply(12, 4, &DkgMessage::Complaint(DkgComplaint { epoch: EPOCH, dealer: 1 })).expect("in time");
    let mut lie = net.dealings[1].justify(&net.dkg, 4);
    lie.shares[0] = Scalar::from_u64(1).to_le_bytes();
    net.dkg.apply(25, 1, &DkgMessage::Justification(lie)).expect("a wrong answer is still recorded");
    let outcome = net.dkg.finish(31).expect("finished");
    assert_eq!(outcome.qualified, vec![0, 2, 3, 4]);
    assert_eq!(outcome.disqualified, vec![(1, Disqualification::BadJustification { complainer: 4 })]);
    let msg = b"justified";
    let partials = net.partials(&outcome, msg);
    let sig = recover(CONFIG.threshold as usize, &partials).expect("enough partials");
    verify(Domain::BeaconShare, &outcome.public.group_public_key(), msg, &sig).expect("group signature");
}

#[test]
fn dkg_messages_out_of_place_are_rejected() {
    let mut net = net();
    let deal = net.dealings[0].deal(&net.dkg, 0, &net.keys[0]);
    let late = net.dkg.apply(11, 0, &DkgMessage::Deal(deal.clone()));
    assert!(matches!(late, Err(DkgError::Late { round: "deal", height: 11, deadline: 10 })));
    let other_epoch =
        DkgMessage::Deal(gonka_engine::crypto::dkg::DkgDeal { epoch: EPOCH - 1, ..deal.clone() });
    assert!(matches!(net.dkg.apply(5, 0, &other_epoch), Err(DkgError::WrongEpoch { .. })));
    assert!(matches!(
        net.dkg.apply(5, 9, &DkgMessage::Deal(deal.clone())),
        Err(DkgError::UnknownSender { .. })
    ));
    let mut short = deal.clone();
    short.commitments.pop();
    assert!(matches!(net.dkg.apply(5, 0, &DkgMessage::Deal(short)), Err(DkgError::BadDeal { .. })));
    let mut junk = deal.clone();
    junk.commitments[1] = [0u8; 48];
    assert!(matches!(net.dkg.apply(5, 0, &DkgMessage::Deal(junk)), Err(DkgError::BadDeal { .. })));
    net.dkg.apply(5, 0, &DkgMessage::Deal(deal.clone())).expect("valid deal");
    assert!(matches!(net.dkg.apply(6, 0, &DkgMessage::Deal(deal)), Err(DkgError::Duplicate { .. })));

    let complaint = |dealer| DkgMessage::Complaint(DkgComplaint { epoch: EPOCH, dealer });
    assert!(matches!(net.dkg.apply(12, 1, &complaint(2)), Err(DkgError::NotAccepted { .. })), "no deal yet");
    assert!(matches!(net.dkg.apply(12, 0, &complaint(0)), Err(DkgError::NotAccepted { .. })), "self");
    assert!(matches!(net.dkg.apply(21, 1, &complaint(0)), Err(DkgError::Late { .. })));
    let unasked = net.dealings[0].justify(&net.dkg, 1);
    assert!(matches!(
        net.dkg.apply(25, 0, &DkgMessage::Justification(unasked)),
        Err(DkgError::NotAccepted { .. })
    ));
    assert!(matches!(net.dkg.finish(30), Err(DkgError::NotFinished { .. })));

    // The wire decoder round-trips and bounds DKG messages.
    let msg = DkgMessage::Complaint(DkgComplaint { epoch: EPOCH, dealer: 3 });
    assert_eq!(decode::<DkgMessage>(&encode(&msg)).expect("own encoding"), msg);
}

#[test]
fn bad_beacon_partials_are_rejected() {
    let mut net = net();
    for d in 0..5 {
        net.deal(d);
    }
    let outcome = net.dkg.finish(31).expect("finished");
    let mut round = beacon_round(&outcome, &[0; 32]);
    let partials = net.partials(&outcome, round.message());
    let one = |p: &PartialSignature| BeaconPartials { epoch: EPOCH, partials: vec![p.clone()] };
    let from = |p: &PartialSignature| owner(&outcome, p.slot);
    let early = round.add(99, from(&partials[0]), &one(&partials[0]));
    assert!(matches!(early, Err(BeaconError::OutsideWindow { .. })), "too early");
    // Member 1 sends slot 0's partial, which member 0 owns.
    assert!(matches!(
        round.add(100, 1, &one(&partials[0])),
        Err(BeaconError::Threshold(ThresholdError::UnknownSlot { slot: 0, .. }))
    ));
    // In one block: slot 1 carries slot 2's signature, slots 3 and 6 are honest.
    let mut forged = partials[1].clone();
    forged.signature = partials[2].signature;
    let block = vec![
        (from(&partials[3]), one(&partials[3])),
        (from(&forged), one(&forged)),
        (from(&partials[6]), one(&partials[6])),
    ];
    let results = add_block(&mut round, 100, &block);
    assert!(results[0].is_ok() && results[2].is_ok(), "honest partials survive a bad neighbour: {results:?}");
    assert!(matches!(results[1], Err(BeaconError::Threshold(ThresholdError::BadPartial { slot: 1, .. }))));
    assert_eq!(round.partial_count(), 2);
    // A partial of another epoch's message.
    let mut old_round =
        BeaconRound::new(EPOCH - 1, &[0; 32], outcome.public.clone(), outcome.slots.clone(), 0);
    assert!(
        old_round.add(0, from(&partials[4]), &one(&partials[4])).is_err(),
        "no carry-over between epochs"
    );
    round.add(100, from(&partials[0]), &one(&partials[0])).expect("valid");
    assert!(matches!(
        round.add(100, from(&partials[0]), &one(&partials[0])),
        Err(BeaconError::Duplicate { .. })
    ));
    let twice = BeaconPartials { epoch: EPOCH, partials: vec![partials[4].clone(), partials[4].clone()] };
    assert!(matches!(round.add(100, from(&partials[4]), &twice), Err(BeaconError::Duplicate { .. })));
    assert_eq!(round.partial_count(), 3);
    assert_eq!(decode::<BeaconPartials>(&encode(&one(&partials[0]))).expect("roundtrip"), one(&partials[0]));
}

#[test]
fn seed_commit_reveal_reports_the_withholder() {
    let keys: Vec<HostKey> = (0..4u8).map(|i| HostKey::from_ikm(&[i + 1; 32])).collect();
    let pks: Vec<_> = keys.iter().map(HostKey::public_key).collect();
    let windows = SeedWindows { epoch: EPOCH, commit_deadline: 10, reveal_open: 11, reveal_close: 20 };
    let mut round = SeedRound::new(windows, pks.clone()).expect("valid windows");
    assert_eq!(round.partials_open(), 21);
    let values: Vec<[u8; 32]> = (0..4u8).map(|i| [0x10 + i; 32]).collect();
    for h in 0..4u32 {
        let c = SeedCommit {
            epoch: EPOCH,
            commitment: seed_commitment(EPOCH, &pks[h as usize], &values[h as usize]),
        };
        round.commit(5, h, &c).expect("in time");
    }
    let c = SeedCommit { epoch: EPOCH, commitment: [0; 32] };
    assert!(matches!(round.commit(5, 0, &c), Err(BeaconError::Duplicate { .. })), "no second commitment");
    let reveal = |h: usize| SeedReveal { epoch: EPOCH, value: values[h] };
    assert!(matches!(round.reveal(10, 0, &reveal(0)), Err(BeaconError::OutsideWindow { .. })), "early");
    assert!(matches!(round.reveal(21, 0, &reveal(0)), Err(BeaconError::OutsideWindow { .. })), "late");
    // Host 1 tries to reveal host 0's value: commitments bind the host.
    assert!(matches!(round.reveal(12, 1, &reveal(0)), Err(BeaconError::BadReveal { host: 1 })));
    for h in [0usize, 1, 3] {
        round.reveal(12, h as u32, &reveal(h)).expect("valid reveal");
    }
    // Host 2 withholds.
    let sigma = [5u8; 96];
    assert!(round.finish(20, &sigma).is_err(), "reveals still open");
    let out = round.finish(21, &sigma).expect("window closed");
    assert_eq!(out.revealed, vec![0, 1, 3]);
    assert_eq!(out.non_revealers, vec![2]);
    assert_eq!(out, round.finish(30, &sigma).expect("deterministic"));
    assert_ne!(
        out.sprint_seed,
        round.finish(21, &[6u8; 96]).expect("closed").sprint_seed,
        "σ_e enters the seed"
    );
}

#[test]
fn beacon_and_dkg_wire_formats_are_frozen() {
    // Change these hashes only with a new wire version.
    let p = PartialSignature { slot: 3, signature: [9u8; 96] };
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "deal",
            encode(&DkgMessage::Deal(gonka_engine::crypto::dkg::DkgDeal {
                epoch: 1,
                commitments: vec![[1u8; 48]],
                encrypted_shares: vec![[2u8; 32], [3u8; 32]],
            })),
            "86d77c4d0695cb3b726d63f2dff08a86a1446acb6670935add28b79c8c2e763a",
        ),
        (
            "complaint",
            encode(&DkgMessage::Complaint(DkgComplaint { epoch: 1, dealer: 2 })),
            "1e902701aac8910f16ad8625d8e089fdf8d7e7e1d36457ff1075b425a55954ed",
        ),
        (
            "partials",
            encode(&BeaconPartials { epoch: 1, partials: vec![p] }),
            "b581117660c27b13bbb33fc1fff3c01933a67319a75d030aa29def39c0ca0626",
        ),
        (
            "commit",
            encode(&SeedCommit { epoch: 1, commitment: [4u8; 32] }),
            "828845338a2a5ea8b1f57d988abb0dbde437724da8a803e9b00365c8d303d549",
        ),
        (
            "reveal",
            encode(&SeedReveal { epoch: 1, value: [5u8; 32] }),
            "52d5bbd003fcb9c449024c37fa6a26d6ccd4c8f0c7f8dbc7ab26b850071ced2c",
        ),
    ];
    crate::assert_frozen(&cases);
}
