//! One host's state machine driven by hand: locking, unlocking on a later
//! POL, re-proposal of the valid value, round skipping, evidence, rejections
//! and the future-height buffer.

use super::{block, context, epoch, host_key, seed_where, voter};
use crate::consensus::{
    Action, ConsensusError, MAX_BUFFERED_MESSAGES, Message, Proposal, SigCache, Step, Timeout, Vote, VoteKind,
};

fn sent_votes(actions: &[Action]) -> Vec<Vote> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(Message::Vote(v)) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

fn vote(i: usize, height: u64, round: u32, kind: VoteKind, b: Option<[u8; 32]>) -> Vote {
    Vote::signed(&host_key(i), i as u32, height, round, kind, b)
}

fn timeout(round: u32, step: Step) -> Timeout {
    Timeout { height: 1, round, step, at_ms: 0 }
}

#[test]
fn locks_refuses_other_blocks_relocks_on_a_later_pol_and_reproposes() {
    println!("seed {}", super::SEED);
    let hosts = epoch(&[1, 1, 1, 1]);
    // Host 0 does not propose in rounds 0 and 1 and proposes in round 2.
    let seed = seed_where(&hosts, 1, &[&|p| p != 0, &|p| p != 0, &|p| p == 0]);
    let prop = |round: u32, b, pol| {
        let p = crate::consensus::proposer(&seed, 1, round, &hosts) as usize;
        Proposal::signed(&host_key(p), p as u32, 1, round, b, pol)
    };
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, seed), 0);
    let (b, other) = (block("B"), block("C"));

    // Round 0: B with > 2/3 prevotes: lock on B and precommit it.
    let a = c.on_proposal(&prop(0, b, None), true, 1);
    assert_eq!(sent_votes(&a).iter().map(|v| v.block).collect::<Vec<_>>(), vec![Some(b)]);
    c.on_vote(&vote(1, 1, 0, VoteKind::Prevote, Some(b)), 2);
    let a = c.on_vote(&vote(2, 1, 0, VoteKind::Prevote, Some(b)), 3);
    assert_eq!(c.locked(), Some((0, b)));
    assert_eq!(sent_votes(&a)[0].kind, VoteKind::Precommit);
    assert_eq!(sent_votes(&a)[0].block, Some(b));
    // Nil precommits from the others: no decision, the precommit timeout ends the round.
    c.on_vote(&vote(1, 1, 0, VoteKind::Precommit, None), 4);
    let a = c.on_vote(&vote(2, 1, 0, VoteKind::Precommit, None), 5);
    assert!(a.iter().any(|x| matches!(x, Action::ScheduleTimeout(t) if t.step == Step::Precommit)));
    c.on_timeout(timeout(0, Step::Precommit), 6);
    assert_eq!((c.round(), c.step()), (1, Step::Propose));

    // Round 1: a new block without POL is refused by the locked host.
    let a = c.on_proposal(&prop(1, other, None), true, 7);
    assert_eq!(sent_votes(&a)[0].block, None, "locked on B, it prevotes nil for C");
    // The others prevote C: a POL for C in a later round moves the lock.
    for i in 1..=3 {
        c.on_vote(&vote(i, 1, 1, VoteKind::Prevote, Some(other)), 8);
    }
    assert_eq!(c.locked(), Some((1, other)), "relocked on the later POL");
    assert_eq!(c.valid(), Some((1, other)));
    c.on_vote(&vote(1, 1, 1, VoteKind::Precommit, None), 9);
    c.on_vote(&vote(2, 1, 1, VoteKind::Precommit, None), 9);

    // Round 2: host 0 proposes; it re-proposes its valid value with its POL round.
    let a = c.on_timeout(timeout(1, Step::Precommit), 10);
    assert!(
        !a.iter().any(|x| matches!(x, Action::BuildBlock { .. })),
        "a valid value is re-proposed, not rebuilt"
    );
    let proposal = a.iter().find_map(|x| match x {
        Action::Broadcast(Message::Proposal(p)) => Some(p.clone()),
        _ => None,
    });
    let p = proposal.expect("host 0 proposes in round 2");
    assert_eq!((p.round, p.block, p.pol_round), (2, other, Some(1)));
}

#[test]
fn a_pol_round_newer_than_the_lock_unlocks() {
    let hosts = epoch(&[1, 1, 1, 1]);
    let seed = seed_where(&hosts, 1, &[&|p| p != 0, &|p| p != 0, &|p| p != 0]);
    let prop = |round: u32, b, pol| {
        let p = crate::consensus::proposer(&seed, 1, round, &hosts) as usize;
        Proposal::signed(&host_key(p), p as u32, 1, round, b, pol)
    };
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, seed), 0);
    let (b, other) = (block("B"), block("C"));
    c.on_proposal(&prop(0, b, None), true, 1);
    c.on_vote(&vote(1, 1, 0, VoteKind::Prevote, Some(b)), 2);
    c.on_vote(&vote(2, 1, 0, VoteKind::Prevote, Some(b)), 2);
    assert_eq!(c.locked(), Some((0, b)));
    c.on_vote(&vote(1, 1, 0, VoteKind::Precommit, None), 3);
    c.on_vote(&vote(2, 1, 0, VoteKind::Precommit, None), 3);
    c.on_timeout(timeout(0, Step::Precommit), 4);
    // Round 1: host 0 never sees the proposal; the others prevote C (a POL
    // it sees only as votes), the round ends in nil for host 0.
    c.on_timeout(timeout(1, Step::Propose), 5);
    for i in 1..=3 {
        c.on_vote(&vote(i, 1, 1, VoteKind::Prevote, Some(other)), 6);
    }
    assert_eq!(c.locked(), Some((0, b)), "no proposal seen, no relock");
    c.on_timeout(timeout(1, Step::Prevote), 7);
    c.on_vote(&vote(1, 1, 1, VoteKind::Precommit, None), 8);
    c.on_vote(&vote(2, 1, 1, VoteKind::Precommit, None), 8);
    c.on_timeout(timeout(1, Step::Precommit), 9);
    // Round 2: C re-proposed with POL round 1 ≥ lock round 0: prevote C.
    let a = c.on_proposal(&prop(2, other, Some(1)), true, 10);
    assert_eq!(sent_votes(&a)[0].block, Some(other));
    // An invalid block is refused even with a POL.
    let mut d = voter(0, &cache);
    d.start_height(context(&hosts, 1, seed), 0);
    let a = d.on_proposal(&prop(0, b, None), false, 1);
    assert_eq!(sent_votes(&a)[0].block, None, "an invalid block gets a nil prevote");
}

#[test]
fn never_signs_two_votes_of_a_kind_in_a_round() {
    let hosts = epoch(&[1, 1, 1, 1]);
    let seed = seed_where(&hosts, 1, &[&|p| p != 0]);
    let p = crate::consensus::proposer(&seed, 1, 0, &hosts) as usize;
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, seed), 0);
    let mut sent = sent_votes(&c.on_timeout(timeout(0, Step::Propose), 1000));
    sent.extend(sent_votes(&c.on_timeout(timeout(0, Step::Propose), 1001)));
    // The proposal arriving after the nil prevote changes nothing.
    let late = Proposal::signed(&host_key(p), p as u32, 1, 0, block("B"), None);
    sent.extend(sent_votes(&c.on_proposal(&late, true, 1002)));
    for i in 1..=3 {
        sent.extend(sent_votes(&c.on_vote(&vote(i, 1, 0, VoteKind::Prevote, Some(block("B"))), 1003)));
    }
    sent.extend(sent_votes(&c.on_timeout(timeout(0, Step::Prevote), 1004)));
    let prevotes: Vec<_> = sent.iter().filter(|v| v.kind == VoteKind::Prevote).collect();
    let precommits: Vec<_> = sent.iter().filter(|v| v.kind == VoteKind::Precommit).collect();
    assert_eq!(prevotes.len(), 1, "{sent:?}");
    assert_eq!(prevotes[0].block, None);
    assert_eq!(precommits.len(), 1, "{sent:?}");
    // The rebroadcast carries the very same signed votes of its own (and the
    // POL of its valid value: the others' prevotes for B).
    let again: Vec<Vote> = c
        .rebroadcast()
        .into_iter()
        .filter_map(|m| if let Message::Vote(v) = m { Some(v) } else { None })
        .collect();
    let own: Vec<&Vote> = again.iter().filter(|v| v.voter == 0).collect();
    assert_eq!(own.len(), 2, "{again:?}");
    assert!(own.iter().all(|v| sent.contains(v)), "{again:?}");
    assert_eq!(again.iter().filter(|v| v.voter != 0 && v.block == Some(block("B"))).count(), 3);
}

#[test]
fn skips_to_a_round_where_over_a_third_of_the_weight_is() {
    let hosts = epoch(&[1, 1, 1, 1]);
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, [0; 32]), 0);
    c.on_vote(&vote(1, 1, 5, VoteKind::Prevote, None), 1);
    assert_eq!(c.round(), 0, "a quarter of the weight is not enough");
    c.on_vote(&vote(2, 1, 4, VoteKind::Prevote, None), 2);
    assert_eq!(c.round(), 4, "half the weight is at round 4 or later");
    // Far beyond the stored rounds, votes still count towards skipping.
    c.on_vote(&vote(1, 1, 1000, VoteKind::Precommit, None), 3);
    c.on_vote(&vote(3, 1, 1000, VoteKind::Prevote, None), 4);
    assert_eq!(c.round(), 1000);
}

#[test]
fn equivocation_is_reported_once() {
    let hosts = epoch(&[1, 1, 1, 1]);
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, [0; 32]), 0);
    let mut evidence = Vec::new();
    for b in [Some(block("B")), None, Some(block("C")), Some(block("B"))] {
        for a in c.on_vote(&vote(2, 1, 0, VoteKind::Precommit, b), 1) {
            if let Action::Evidence(e) = a {
                evidence.push(e);
            }
        }
    }
    assert_eq!(evidence.len(), 1, "one report per equivocating host");
    assert_eq!(evidence[0].verify(&hosts, &SigCache::default()).expect("valid evidence"), 2);
    assert_eq!(c.stats().evidence, 1);
}

#[test]
fn rejects_outsiders_forgeries_and_wrong_proposers() {
    let hosts = epoch(&[1, 1, 1, 1]);
    let seed = seed_where(&hosts, 1, &[&|p| p != 3]);
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, seed), 0);
    let outsider = Vote { voter: 7, ..vote(1, 1, 0, VoteKind::Prevote, None) };
    assert!(matches!(c.try_on_vote(&outsider, 1), Err(ConsensusError::NotMember { host: 7, .. })));
    let forged = Vote { voter: 2, ..vote(1, 1, 0, VoteKind::Prevote, None) };
    assert!(matches!(c.try_on_vote(&forged, 1), Err(ConsensusError::BadSignature { host: 2, .. })));
    let wrong = Proposal::signed(&host_key(3), 3, 1, 0, block("B"), None);
    assert!(matches!(
        c.try_on_proposal(&wrong, true, 1),
        Err(ConsensusError::WrongProposer { found: 3, .. })
    ));
    let p = crate::consensus::proposer(&seed, 1, 0, &hosts) as usize;
    let bad_pol = Proposal::signed(&host_key(p), p as u32, 1, 0, block("B"), Some(0));
    assert!(matches!(c.try_on_proposal(&bad_pol, true, 1), Err(ConsensusError::BadPolRound { .. })));
    let stale = vote(1, 0, 0, VoteKind::Prevote, None);
    assert!(c.try_on_vote(&stale, 1).expect("stale is not an error").is_empty());
    let far = vote(1, 3, 0, VoteKind::Prevote, None);
    assert!(matches!(c.try_on_vote(&far, 1), Err(ConsensusError::HeightTooFar { height: 3, .. })));
    let s = c.stats();
    assert_eq!((s.rejected, s.ahead, s.ignored, s.accepted), (4, 1, 1, 0), "{s:?}");
    // An observer follows without ever signing.
    let mut o = crate::consensus::Consensus::new(None, Default::default(), cache.clone());
    let a = o.start_height(context(&hosts, 1, seed), 0);
    assert!(sent_votes(&o.on_timeout(timeout(0, Step::Propose), 1)).is_empty());
    assert!(a.iter().all(|x| matches!(x, Action::ScheduleTimeout(_))));
}

#[test]
fn holds_the_next_height_boundedly_and_replays_it() {
    let hosts = epoch(&[1, 1, 1, 1]);
    let seed = seed_where(&hosts, 2, &[&|p| p != 0]);
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, seed), 0);
    let p = crate::consensus::proposer(&seed, 2, 0, &hosts) as usize;
    let early = Proposal::signed(&host_key(p), p as u32, 2, 0, block("next"), None);
    assert!(c.on_proposal(&early, true, 1).is_empty());
    c.on_vote(&vote(1, 2, 0, VoteKind::Prevote, Some(block("next"))), 1);
    assert_eq!((c.buffered(), c.stats().buffered), (2, 2));
    let a = c.start_height(context(&hosts, 2, seed), 2);
    assert!(
        a.iter().any(|x| matches!(x, Action::CheckProposal(q) if *q == early)),
        "the proposal comes back"
    );
    assert_eq!((c.buffered(), c.stats().accepted), (0, 1), "the vote is replayed");
    // The buffer is bounded.
    let held = vote(1, 3, 0, VoteKind::Prevote, None);
    for _ in 0..MAX_BUFFERED_MESSAGES {
        c.try_on_vote(&held, 3).expect("room in the buffer");
    }
    assert!(matches!(c.try_on_vote(&held, 3), Err(ConsensusError::BufferFull { .. })));
    assert_eq!(c.buffered(), MAX_BUFFERED_MESSAGES);
}

#[test]
fn a_pol_older_than_the_kept_rounds_is_taken_when_a_proposal_names_it() {
    // Regression guard: votes of pruned rounds are ignored, except those of
    // the POL round the current proposal names.
    let hosts = epoch(&[1, 1, 1, 1]);
    let (far, old) = (20u32, 2u32);
    let seed = (0u8..=255).map(|i| [i; 32]).find(|s| crate::consensus::proposer(s, 1, far, &hosts) != 0);
    let seed = seed.expect("a seed where host 0 does not propose round 20");
    let cache = SigCache::default();
    let mut c = voter(0, &cache);
    c.start_height(context(&hosts, 1, seed), 0);
    c.on_vote(&vote(1, 1, far, VoteKind::Prevote, None), 1);
    c.on_vote(&vote(2, 1, far, VoteKind::Prevote, None), 1);
    assert_eq!(c.round(), far, "skipped to round 20");
    let b = block("B");
    let late = vote(1, 1, old, VoteKind::Prevote, Some(b));
    assert!(c.try_on_vote(&late, 2).expect("stale, not an error").is_empty(), "round 2 is pruned");
    let p = crate::consensus::proposer(&seed, 1, far, &hosts) as usize;
    let a = c.on_proposal(&Proposal::signed(&host_key(p), p as u32, 1, far, b, Some(old)), true, 3);
    assert!(sent_votes(&a).is_empty(), "waits for the POL of round 2");
    let mut sent = Vec::new();
    for i in 1..=3 {
        sent.extend(sent_votes(&c.on_vote(&vote(i, 1, old, VoteKind::Prevote, Some(b)), 4)));
    }
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].round, sent[0].block), (far, Some(b)), "the old POL counts once named");
}
