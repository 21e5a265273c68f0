//! The Tendermint rules for one height, over weighted tallies.
//!
//! Each rule is one method named after what it does, guarded exactly as in
//! the Tendermint paper (Buchman, Kwon, Milosevic, 2018, Algorithm 1; line
//! numbers in brackets), with "2f + 1 messages" read as "more than two thirds
//! of the weight" and "f + 1 messages" as "more than one third". After any
//! input, [`HeightState::drive`] applies the rules until none fires.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use blst::min_pk::{AggregateSignature, Signature as BlsSignature};
use gonka_kernels::encoding::Hash32;

use super::messages::{Equivocation, Message, Proposal, Vote, VoteKind, vote_message};
use super::proposer::proposer_by_weight;
use super::rounds::{Added, CastVote, ProposalRecord, RoundState, Value, full_vote};
use super::{
    Action, ConsensusError, HeightContext, MAX_FUTURE_ROUNDS, RETAINED_PAST_ROUNDS, ROUND_SKIP, SigCache,
    Step, Timeout, TimeoutParams,
};
use crate::crypto::votes::VoteSet;
use crate::crypto::{Domain, HostKey, PublicKeyBytes};

/// What the rules need from the host around them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env<'a> {
    /// The signing key, when this host votes in the height's epoch.
    pub key: Option<&'a HostKey>,
    /// Timeout durations.
    pub timeouts: TimeoutParams,
    /// Signature checks.
    pub cache: &'a SigCache,
}

/// What happened to a message that passed the checks that can reject it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Verified and recorded (or counted towards a round skip).
    Accepted,
    /// Stale, duplicate or outside the stored rounds: nothing to do.
    Ignored,
}

/// One host's state for the height being decided.
#[derive(Debug)]
pub(crate) struct HeightState {
    pub ctx: HeightContext,
    /// Compressed keys in host order, shared between heights of one epoch.
    pub keys: Arc<Vec<PublicKeyBytes>>,
    /// Weights in host order, shared likewise.
    pub weights: Arc<Vec<u64>>,
    total: u128,
    /// This host's index, when it votes in this epoch.
    pub me: Option<u32>,
    /// The current round and step.
    pub round: u32,
    pub step: Step,
    /// The round and block of this host's latest precommit for a block: it
    /// prevotes no other block without a POL at or after that round.
    pub locked: Option<(u32, Hash32)>,
    /// The latest round and block seen with the proposal and > 2/3 prevotes:
    /// what this host re-proposes.
    pub valid: Option<(u32, Hash32)>,
    /// The round and block decided.
    pub decided: Option<(u32, Hash32)>,
    rounds: BTreeMap<u32, RoundState>,
    /// Highest round each host has been seen voting in, and the weight of
    /// hosts by that round: what round skipping counts.
    highest_round: Vec<Option<u32>>,
    weight_by_highest: BTreeMap<u32, u128>,
    /// This host's own messages: at most one proposal per round and one
    /// vote per round and kind, ever.
    pub proposals_sent: BTreeMap<u32, Proposal>,
    pub votes_sent: BTreeMap<(u32, VoteKind), Vote>,
    /// Hosts already reported for equivocation at this height.
    reported: BTreeSet<u32>,
}

impl HeightState {
    /// A fresh height, before round 0 starts.
    pub fn new(
        ctx: HeightContext,
        keys: Arc<Vec<PublicKeyBytes>>,
        weights: Arc<Vec<u64>>,
        me: Option<u32>,
    ) -> Self {
        let total = ctx.hosts.total_weight();
        let hosts = keys.len();
        Self {
            ctx,
            keys,
            weights,
            total,
            me,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            decided: None,
            rounds: BTreeMap::new(),
            highest_round: vec![None; hosts],
            weight_by_highest: BTreeMap::new(),
            proposals_sent: BTreeMap::new(),
            votes_sent: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    fn height(&self) -> u64 {
        self.ctx.height
    }

    /// The proposer of `round` at this height.
    pub fn proposer_of(&self, round: u32) -> u32 {
        proposer_by_weight(&self.ctx.proposer_seed, self.height(), round, &self.weights)
    }

    /// Whether votes of `round` are kept: not too far ahead, and recent or
    /// needed (the locked and valid rounds, and the POL round the current
    /// proposal names, however old).
    fn stores(&self, round: u32) -> bool {
        let floor = self.round.saturating_sub(RETAINED_PAST_ROUNDS);
        let named = self
            .rounds
            .get(&self.round)
            .and_then(|rs| rs.proposal.as_ref())
            .and_then(|p| p.proposal.pol_round);
        let kept = round >= floor
            || self.locked.is_some_and(|(r, _)| r == round)
            || self.valid.is_some_and(|(r, _)| r == round)
            || named == Some(round);
        kept && round <= self.round.saturating_add(MAX_FUTURE_ROUNDS)
    }

    fn schedule(&self, env: &Env<'_>, step: Step, now_ms: u64, out: &mut Vec<Action>) {
        let at_ms = now_ms.saturating_add(env.timeouts.duration_ms(step, self.round));
        out.push(Action::ScheduleTimeout(Timeout { height: self.height(), round: self.round, step, at_ms }));
    }

    /// StartRound [11–21]: enter `round` at the propose step; its proposer
    /// re-proposes its valid value or asks the node for a block.
    pub fn start_round(&mut self, env: &Env<'_>, round: u32, now_ms: u64, out: &mut Vec<Action>) {
        self.round = round;
        self.step = Step::Propose;
        self.prune();
        // Every host waits for the proposal, the proposer included, so that
        // a node that never answers BuildBlock cannot stall its own round.
        self.schedule(env, Step::Propose, now_ms, out);
        if self.me.is_some() && self.me == Some(self.proposer_of(round)) {
            match self.valid {
                Some((valid_round, block)) => self.send_proposal(env, block, Some(valid_round), out),
                None => out.push(Action::BuildBlock { height: self.height(), round }),
            }
        }
        self.drive(env, now_ms, out);
    }

    /// Drops rounds too far behind, keeping the locked and valid rounds.
    fn prune(&mut self) {
        let floor = self.round.saturating_sub(RETAINED_PAST_ROUNDS);
        let keep = |r: u32| r >= floor;
        let locked = self.locked.map(|(r, _)| r);
        let valid = self.valid.map(|(r, _)| r);
        self.rounds.retain(|&r, _| keep(r) || Some(r) == locked || Some(r) == valid);
        self.proposals_sent.retain(|&r, _| keep(r));
        self.votes_sent.retain(|&(r, _), _| keep(r));
    }

    /// The node's block for the round this host proposes in.
    pub fn propose(&mut self, env: &Env<'_>, round: u32, block: Hash32, now_ms: u64, out: &mut Vec<Action>) {
        let mine = self.me.is_some() && self.me == Some(self.proposer_of(round));
        if !mine || round != self.round || self.step != Step::Propose || self.decided.is_some() {
            return;
        }
        self.send_proposal(env, block, None, out);
        self.drive(env, now_ms, out);
    }

    fn send_proposal(&mut self, env: &Env<'_>, block: Hash32, pol_round: Option<u32>, out: &mut Vec<Action>) {
        let (Some(me), Some(key)) = (self.me, env.key) else { return };
        if self.proposals_sent.contains_key(&self.round) {
            return;
        }
        let p = Proposal::signed(key, me, self.height(), self.round, block, pol_round);
        self.proposals_sent.insert(self.round, p.clone());
        let rs = self.rounds.entry(self.round).or_default();
        if rs.proposal.is_none() {
            rs.proposal = Some(ProposalRecord { proposal: p.clone(), block_valid: true });
        }
        out.push(Action::Broadcast(Message::Proposal(p)));
    }

    /// Signs and sends this host's vote of `kind` in the current round, at
    /// most once per round and kind whatever the rules ask later.
    fn cast(&mut self, env: &Env<'_>, kind: VoteKind, block: Value, out: &mut Vec<Action>) {
        let (Some(me), Some(key)) = (self.me, env.key) else { return };
        if self.votes_sent.contains_key(&(self.round, kind)) {
            return;
        }
        let vote = Vote::signed(key, me, self.height(), self.round, kind, block);
        self.votes_sent.insert((self.round, kind), vote.clone());
        let weight = self.weights.get(me as usize).copied().unwrap_or(0);
        let cast = CastVote { block, signature: vote.signature };
        self.rounds.entry(self.round).or_default().book_mut(kind).add(me, weight, cast);
        self.note_round(me, self.round);
        out.push(Action::Broadcast(Message::Vote(vote)));
    }

    /// Checks a proposal of this height; `Ok(true)` when it is new and valid
    /// to record, `Ok(false)` when there is nothing to do.
    pub fn check_proposal(&self, env: &Env<'_>, p: &Proposal) -> Result<bool, ConsensusError> {
        let (height, round) = (p.height, p.round);
        let Some(pk) = self.keys.get(p.proposer as usize) else {
            let hosts = self.keys.len();
            return Err(ConsensusError::NotMember { what: "proposal", height, host: p.proposer, hosts });
        };
        if !self.stores(round) {
            return Ok(false);
        }
        if let Some(pol_round) = p.pol_round.filter(|&r| r >= round) {
            return Err(ConsensusError::BadPolRound { height, round, pol_round });
        }
        let expected = self.proposer_of(round);
        if p.proposer != expected {
            return Err(ConsensusError::WrongProposer { height, round, expected, found: p.proposer });
        }
        let first = self.rounds.get(&round).and_then(|rs| rs.proposal.as_ref());
        if first.is_some_and(|f| f.proposal.block == p.block && f.proposal.pol_round == p.pol_round) {
            return Ok(false);
        }
        env.cache.verify(Domain::BlockVote, pk, &p.message(), &p.signature).map_err(|source| {
            ConsensusError::BadSignature { what: "proposal", height, round, host: p.proposer, source }
        })?;
        if first.is_some() {
            return Err(ConsensusError::ConflictingProposal { height, round, proposer: p.proposer });
        }
        Ok(true)
    }

    /// Records a proposal whose block the node checked, then applies the rules.
    pub fn add_proposal(
        &mut self,
        env: &Env<'_>,
        p: &Proposal,
        block_valid: bool,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Result<Outcome, ConsensusError> {
        if !self.check_proposal(env, p)? {
            return Ok(Outcome::Ignored);
        }
        let record = ProposalRecord { proposal: p.clone(), block_valid };
        self.rounds.entry(p.round).or_default().proposal = Some(record);
        self.drive(env, now_ms, out);
        Ok(Outcome::Accepted)
    }

    /// Checks and records a vote of this height, reports an equivocation,
    /// skips ahead when > 1/3 of the weight is in a later round [55], then
    /// applies the rules.
    pub fn add_vote(
        &mut self,
        env: &Env<'_>,
        v: &Vote,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Result<Outcome, ConsensusError> {
        let (height, round, voter) = (v.height, v.round, v.voter);
        let (Some(pk), Some(&weight)) = (self.keys.get(voter as usize), self.weights.get(voter as usize))
        else {
            let hosts = self.keys.len();
            return Err(ConsensusError::NotMember { what: v.kind.name(), height, host: voter, hosts });
        };
        if self.stores(round) {
            // A copy of a counted vote, or a value with no room to count it,
            // changes nothing and costs no pairing.
            let book = self.rounds.get(&round).map(|rs| rs.book(v.kind));
            if book.is_some_and(|b| !b.would_count(voter, weight, &v.block)) {
                return Ok(Outcome::Ignored);
            }
        } else if round <= self.round || self.highest_round[voter as usize].is_some_and(|r| r >= round) {
            // Pruned, or too far ahead to store and no news for round skipping.
            return Ok(Outcome::Ignored);
        }
        env.cache.verify(Domain::BlockVote, pk, &v.message(), &v.signature).map_err(|source| {
            ConsensusError::BadSignature { what: v.kind.name(), height, round, host: voter, source }
        })?;
        self.note_round(voter, round);
        if let Some(target) = self.skip_target() {
            self.start_round(env, target, now_ms, out);
        }
        if self.decided.is_none() && self.stores(round) {
            let cast = CastVote { block: v.block, signature: v.signature };
            let book = self.rounds.entry(round).or_default().book_mut(v.kind);
            if let Added::Conflict(first) = book.add(voter, weight, cast)
                && self.reported.insert(voter)
            {
                let first = full_vote(height, round, v.kind, voter, &first);
                // Canonical order, so that every host reports the same evidence.
                let (a, b) = if first.block <= v.block { (first, v.clone()) } else { (v.clone(), first) };
                out.push(Action::Evidence(Equivocation { a, b }));
            }
        }
        self.drive(env, now_ms, out);
        Ok(Outcome::Accepted)
    }

    /// The prevotes that make this host's valid value valid: the POL a
    /// re-proposal of it names, which peers need to accept that proposal.
    pub fn pol_votes(&self) -> Vec<Vote> {
        let Some((round, block)) = self.valid else { return Vec::new() };
        let Some(rs) = self.rounds.get(&round) else { return Vec::new() };
        let value = Some(block);
        rs.prevotes
            .voters_for(&value)
            .map(|(voter, cast)| full_vote(self.height(), round, VoteKind::Prevote, voter, cast))
            .collect()
    }

    fn note_round(&mut self, voter: u32, round: u32) {
        let Some(slot) = self.highest_round.get_mut(voter as usize) else { return };
        if slot.is_some_and(|r| r >= round) {
            return;
        }
        let weight = u128::from(self.weights.get(voter as usize).copied().unwrap_or(0));
        if let Some(old) = slot.replace(round)
            && let Some(w) = self.weight_by_highest.get_mut(&old)
        {
            *w -= weight;
            if *w == 0 {
                self.weight_by_highest.remove(&old);
            }
        }
        *self.weight_by_highest.entry(round).or_default() += weight;
    }

    /// The highest round `R` above the current one such that hosts holding
    /// more than a third of the weight have voted in round `R` or later.
    fn skip_target(&self) -> Option<u32> {
        let mut seen = 0u128;
        for (&round, &w) in self.weight_by_highest.iter().rev() {
            if round <= self.round {
                return None;
            }
            seen += w;
            if ROUND_SKIP.is_met(seen, self.total) {
                return Some(round);
            }
        }
        None
    }

    /// A timeout the node delivers [57–66].
    pub fn on_timeout(&mut self, env: &Env<'_>, t: Timeout, now_ms: u64, out: &mut Vec<Action>) {
        if t.height != self.height() || t.round != self.round || self.decided.is_some() {
            return;
        }
        match (t.step, self.step) {
            (Step::Propose, Step::Propose) => {
                self.cast(env, VoteKind::Prevote, None, out);
                self.step = Step::Prevote;
            }
            (Step::Prevote, Step::Prevote) => {
                self.cast(env, VoteKind::Precommit, None, out);
                self.step = Step::Precommit;
            }
            (Step::Precommit, _) => {
                if let Some(next) = self.round.checked_add(1) {
                    self.start_round(env, next, now_ms, out);
                }
                return;
            }
            _ => return,
        }
        self.drive(env, now_ms, out);
    }

    /// Applies the rules until none fires.
    pub fn drive(&mut self, env: &Env<'_>, now_ms: u64, out: &mut Vec<Action>) {
        while self.decided.is_none() {
            if self.commit_if_final(env, out) {
                return;
            }
            let fired = self.prevote_on_proposal(env, out)
                || self.lock_on_polka(env, out)
                || self.precommit_nil_on_nil_polka(env, out)
                || self.schedule_vote_timeouts(env, now_ms, out);
            if !fired {
                return;
            }
        }
    }

    /// [22–33]: at the propose step, prevote the round's proposal if its
    /// block is valid and the lock allows it (no lock, a lock on it, or a POL
    /// at or after the lock's round), else nil.
    fn prevote_on_proposal(&mut self, env: &Env<'_>, out: &mut Vec<Action>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some(record) = self.rounds.get(&self.round).and_then(|rs| rs.proposal.clone()) else {
            return false;
        };
        let block = record.proposal.block;
        let allowed = match record.proposal.pol_round {
            None => self.locked.is_none_or(|(_, l)| l == block),
            Some(pol_round) => {
                let polka = pol_round < self.round
                    && self
                        .rounds
                        .get(&pol_round)
                        .is_some_and(|rs| rs.prevotes.has_quorum_for(&Some(block), self.total));
                if !polka {
                    // Wait for the POL, or for the propose timeout.
                    return false;
                }
                self.locked.is_none_or(|(r, l)| r <= pol_round || l == block)
            }
        };
        let vote = (record.block_valid && allowed).then_some(block);
        self.cast(env, VoteKind::Prevote, vote, out);
        self.step = Step::Prevote;
        true
    }

    /// [36–43]: > 2/3 prevotes for the round's valid proposal, the first time
    /// at the prevote step or later: at the prevote step lock on it and
    /// precommit it; in any case it becomes the valid value.
    fn lock_on_polka(&mut self, env: &Env<'_>, out: &mut Vec<Action>) -> bool {
        if self.step == Step::Propose {
            return false;
        }
        let (round, total) = (self.round, self.total);
        let Some(rs) = self.rounds.get_mut(&round) else { return false };
        let Some(block) = rs.proposal.as_ref().filter(|p| p.block_valid).map(|p| p.proposal.block) else {
            return false;
        };
        if rs.pol_applied || !rs.prevotes.has_quorum_for(&Some(block), total) {
            return false;
        }
        rs.pol_applied = true;
        if self.step == Step::Prevote {
            self.locked = Some((round, block));
            self.cast(env, VoteKind::Precommit, Some(block), out);
            self.step = Step::Precommit;
        }
        self.valid = Some((round, block));
        true
    }

    /// [44–46]: > 2/3 prevotes for nil at the prevote step: precommit nil.
    fn precommit_nil_on_nil_polka(&mut self, env: &Env<'_>, out: &mut Vec<Action>) -> bool {
        let nil_polka =
            self.rounds.get(&self.round).is_some_and(|rs| rs.prevotes.has_quorum_for(&None, self.total));
        if self.step != Step::Prevote || !nil_polka {
            return false;
        }
        self.cast(env, VoteKind::Precommit, None, out);
        self.step = Step::Precommit;
        true
    }

    /// [34–35, 47–48]: the first time > 2/3 of the weight prevoted (at the
    /// prevote step) or precommitted in this round, whatever for, start the
    /// matching timeout.
    fn schedule_vote_timeouts(&mut self, env: &Env<'_>, now_ms: u64, out: &mut Vec<Action>) -> bool {
        let (step, total) = (self.step, self.total);
        let Some(rs) = self.rounds.get_mut(&self.round) else { return false };
        let mut due = Vec::new();
        if step == Step::Prevote && !rs.prevote_timeout_set && rs.prevotes.has_quorum_any(total) {
            rs.prevote_timeout_set = true;
            due.push(Step::Prevote);
        }
        if !rs.precommit_timeout_set && rs.precommits.has_quorum_any(total) {
            rs.precommit_timeout_set = true;
            due.push(Step::Precommit);
        }
        for &s in &due {
            self.schedule(env, s, now_ms, out);
        }
        !due.is_empty()
    }

    /// [49–54]: > 2/3 precommits for one block in any round decide it. The
    /// block need not have been seen: the certificate proves that hosts of
    /// more than a third of the weight, hence an honest one, checked it, and
    /// the node fetches its body.
    fn commit_if_final(&mut self, env: &Env<'_>, out: &mut Vec<Action>) -> bool {
        let total = self.total;
        let found = self
            .rounds
            .iter()
            .find_map(|(&r, rs)| rs.precommits.quorum_value(total).flatten().map(|b| (r, b)));
        let Some((round, block)) = found else { return false };
        self.decided = Some((round, block));
        if let Some(finality) = self.certificate(env, round, &block) {
            out.push(Action::Commit { height: self.height(), round, block, finality });
        }
        true
    }

    /// The aggregate of the precommits for `block` in `round`. Every counted
    /// vote verified when it arrived, so the points come from the cache (a
    /// hash each) unless it evicted them meanwhile.
    fn certificate(&self, env: &Env<'_>, round: u32, block: &Hash32) -> Option<VoteSet> {
        let rs = self.rounds.get(&round)?;
        let message = vote_message(self.height(), round, VoteKind::Precommit, Some(block));
        let mut signers = vec![0u8; self.keys.len().div_ceil(8)];
        let mut points: Vec<BlsSignature> = Vec::new();
        let value = Some(*block);
        for (voter, cast) in rs.precommits.voters_for(&value) {
            let pk = self.keys.get(voter as usize)?;
            // A vote that no longer verifies cannot exist; leaving it out
            // keeps the aggregate valid.
            if let Ok(point) = env.cache.verify_point(Domain::BlockVote, pk, &message, &cast.signature) {
                points.push(point);
                signers[voter as usize / 8] |= 1 << (voter % 8);
            }
        }
        let refs: Vec<&BlsSignature> = points.iter().collect();
        let aggregate = AggregateSignature::aggregate(&refs, false).ok()?;
        Some(VoteSet { message, signers, signature: aggregate.to_signature().compress() })
    }
}
