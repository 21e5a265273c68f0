//! [`Consensus`]: one host's consensus state, routing each input to the
//! height being decided, the future-height buffer, or the bin.

use std::sync::Arc;

use gonka_kernels::encoding::Hash32;

use super::buffer::{FutureBuffer, Held};
use super::height::{Env, HeightState, Outcome};
use super::messages::{Message, Proposal, Vote, VoteKind};
use super::proposer::weights;
use super::{
    Action, ConsensusError, HeightContext, MAX_BUFFERED_MESSAGES, MAX_FUTURE_HEIGHTS, SigCache, Step,
    Timeout, TimeoutParams, verify_finality,
};
use crate::crypto::votes::VoteSet;
use crate::crypto::{HostKey, PublicKeyBytes};

/// What a host's consensus has done with its inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsensusStats {
    /// Messages verified and recorded.
    pub accepted: u64,
    /// Messages with nothing to do: stale, duplicate, or outside the stored rounds.
    pub ignored: u64,
    /// Messages rejected as faults of their sender (non-member, bad
    /// signature, wrong proposer, …).
    pub rejected: u64,
    /// Messages held for a future height.
    pub buffered: u64,
    /// Messages dropped because the future-height buffer was full.
    pub dropped: u64,
    /// Messages for heights past the buffered ones: peers are ahead, and
    /// this host should fetch the blocks it misses (see [`Consensus::on_finality`]).
    pub ahead: u64,
    /// Equivocations reported.
    pub evidence: u64,
    /// Heights committed.
    pub commits: u64,
}

/// A host's signing identity.
struct Identity {
    key: HostKey,
    public_key: PublicKeyBytes,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?})", self.key)
    }
}

/// Where a message of some height goes.
enum Route {
    Current,
    Hold,
    Stale,
}

/// One host's consensus state for the height being decided; see the
/// module docs for the protocol. Every handler returns the actions to carry
/// out, in order.
#[derive(Debug)]
pub struct Consensus {
    me: Option<Identity>,
    timeouts: TimeoutParams,
    cache: SigCache,
    state: Option<HeightState>,
    buffer: FutureBuffer,
    /// This host's precommit that decided the previous height, rebroadcast
    /// so that peers still at that height can decide it too.
    last_precommit: Option<Vote>,
    stats: ConsensusStats,
}

impl Consensus {
    /// A host with its key, or an observer (`None`) that follows and commits
    /// without voting. Each height finds the host's index in its epoch's
    /// list by key; a host outside the list observes that epoch's heights.
    pub fn new(me: Option<HostKey>, timeouts: TimeoutParams, cache: SigCache) -> Self {
        let me = me.map(|key| Identity { public_key: key.public_key(), key });
        Self {
            me,
            timeouts,
            cache,
            state: None,
            buffer: FutureBuffer::new(MAX_BUFFERED_MESSAGES),
            last_precommit: None,
            stats: ConsensusStats::default(),
        }
    }

    /// Starts deciding `ctx.height` at round 0, then takes up the messages
    /// held for it (proposals come back as [`Action::CheckProposal`]).
    pub fn start_height(&mut self, ctx: HeightContext, now_ms: u64) -> Vec<Action> {
        let height = ctx.height;
        let previous = self.state.take();
        self.last_precommit = previous.as_ref().and_then(|st| {
            let (round, block) = st.decided?;
            st.votes_sent.get(&(round, VoteKind::Precommit)).filter(|v| v.block == Some(block)).cloned()
        });
        // Keys and weights are shared by the heights of one epoch.
        let (keys, weights) = match previous {
            Some(st) if Arc::ptr_eq(&st.ctx.hosts, &ctx.hosts) => (st.keys, st.weights),
            _ => {
                let keys: Vec<PublicKeyBytes> =
                    (0..ctx.hosts.len()).filter_map(|i| ctx.hosts.public_key(i)).collect();
                (Arc::new(keys), Arc::new(weights(&ctx.hosts)))
            }
        };
        // The epoch's list decides this host's index: it changes when weights do.
        let me = self
            .me
            .as_ref()
            .and_then(|m| keys.iter().position(|k| *k == m.public_key))
            .map(|i| u32::try_from(i).expect("host lists are below 2^32"));
        let mut out = Vec::new();
        let mut st = HeightState::new(ctx, keys, weights, me);
        st.start_round(&self.env(), 0, now_ms, &mut out);
        self.state = Some(st);
        for held in self.buffer.take_height(height) {
            match held {
                Held::Vote(v) => out.extend(self.on_vote(&v, now_ms)),
                Held::Proposal(p) => match self.check_held_proposal(&p) {
                    Ok(true) => out.push(Action::CheckProposal(p)),
                    Ok(false) => self.stats.ignored += 1,
                    Err(_) => self.stats.rejected += 1,
                },
            }
        }
        out
    }

    fn check_held_proposal(&self, p: &Proposal) -> Result<bool, ConsensusError> {
        match &self.state {
            Some(st) => st.check_proposal(&self.env(), p),
            None => Ok(false),
        }
    }

    /// The node's answer to [`Action::BuildBlock`]: propose `block` in
    /// `(height, round)` if this host is still at its propose step there.
    pub fn propose(&mut self, height: u64, round: u32, block: Hash32, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let (env, st) = self.split();
        if let Some(st) = st.filter(|st| st.ctx.height == height) {
            st.propose(&env, round, block, now_ms, &mut out);
        }
        self.count_commits(&out);
        out
    }

    /// A proposal from a peer; `block_valid` says whether the node checked
    /// its block body (parent, state root, decoding) and found it valid.
    /// Errors are counted in [`Self::stats`]; see [`Self::try_on_proposal`].
    pub fn on_proposal(&mut self, p: &Proposal, block_valid: bool, now_ms: u64) -> Vec<Action> {
        self.try_on_proposal(p, block_valid, now_ms).unwrap_or_default()
    }

    /// As [`Self::on_proposal`], returning why a proposal was rejected, for
    /// the node to penalise the peer that sent it.
    pub fn try_on_proposal(
        &mut self,
        p: &Proposal,
        block_valid: bool,
        now_ms: u64,
    ) -> Result<Vec<Action>, ConsensusError> {
        let mut out = Vec::new();
        let result = match self.route(p.height) {
            Ok(Route::Current) => match self.split() {
                (env, Some(st)) => st.add_proposal(&env, p, block_valid, now_ms, &mut out),
                (_, None) => Ok(Outcome::Ignored),
            },
            Ok(Route::Hold) => return self.hold(Held::Proposal(p.clone()), p.height).map(|()| out),
            Ok(Route::Stale) => Ok(Outcome::Ignored),
            Err(e) => Err(e),
        };
        self.record(result).map(|()| {
            self.count_commits(&out);
            out
        })
    }

    /// A vote from a peer. Errors are counted in [`Self::stats`]; see
    /// [`Self::try_on_vote`].
    pub fn on_vote(&mut self, v: &Vote, now_ms: u64) -> Vec<Action> {
        self.try_on_vote(v, now_ms).unwrap_or_default()
    }

    /// As [`Self::on_vote`], returning why a vote was rejected.
    pub fn try_on_vote(&mut self, v: &Vote, now_ms: u64) -> Result<Vec<Action>, ConsensusError> {
        let mut out = Vec::new();
        let result = match self.route(v.height) {
            Ok(Route::Current) => match self.split() {
                (env, Some(st)) => st.add_vote(&env, v, now_ms, &mut out),
                (_, None) => Ok(Outcome::Ignored),
            },
            Ok(Route::Hold) => return self.hold(Held::Vote(v.clone()), v.height).map(|()| out),
            Ok(Route::Stale) => Ok(Outcome::Ignored),
            Err(e) => Err(e),
        };
        self.record(result).map(|()| {
            self.count_commits(&out);
            out
        })
    }

    /// Any message from a peer; a proposal's block was checked as for
    /// [`Self::on_proposal`].
    pub fn on_message(&mut self, m: &Message, block_valid: bool, now_ms: u64) -> Vec<Action> {
        match m {
            Message::Proposal(p) => self.on_proposal(p, block_valid, now_ms),
            Message::Vote(v) => self.on_vote(v, now_ms),
        }
    }

    /// A finality certificate for the current height obtained outside the
    /// vote exchange — from block sync, or from the next block's record of
    /// it — when this host missed the precommits. It is checked with
    /// [`verify_finality`](super::verify_finality) and then committed as if
    /// this host had collected the precommits itself. Certificates for other
    /// heights, or once the height is decided, are ignored.
    pub fn on_finality(
        &mut self,
        height: u64,
        round: u32,
        block: Hash32,
        finality: VoteSet,
    ) -> Result<Vec<Action>, ConsensusError> {
        let Some(st) = self.state.as_mut().filter(|st| st.ctx.height == height && st.decided.is_none())
        else {
            self.stats.ignored += 1;
            return Ok(Vec::new());
        };
        if let Err(e) = verify_finality(&st.ctx.hosts, height, round, &block, &finality, &self.cache) {
            self.stats.rejected += 1;
            return Err(e);
        }
        st.decided = Some((round, block));
        self.stats.commits += 1;
        Ok(vec![Action::Commit { height, round, block, finality }])
    }

    /// A timeout scheduled earlier has come due. Timeouts of other heights,
    /// rounds or steps are ignored.
    pub fn on_timeout(&mut self, t: Timeout, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if let (env, Some(st)) = self.split() {
            st.on_timeout(&env, t, now_ms, &mut out);
        }
        self.count_commits(&out);
        out
    }

    /// What the node sends again periodically and to peers that connect:
    /// this host's own proposal and votes of the current, previous and valid
    /// rounds, the precommit that decided the previous height, and the POL
    /// of its valid value (everyone's prevotes for it). Messages can be lost;
    /// the protocol is live once every message between honest hosts is
    /// eventually delivered, and this is what makes it so without a general
    /// gossip of other hosts' votes.
    pub fn rebroadcast(&self) -> Vec<Message> {
        let mut out: Vec<Message> = self.last_precommit.iter().cloned().map(Message::Vote).collect();
        let Some(st) = &self.state else { return out };
        let mut rounds = vec![st.round];
        rounds.extend(st.round.checked_sub(1));
        rounds.extend(st.valid.map(|(r, _)| r));
        rounds.extend(st.decided.map(|(r, _)| r));
        rounds.sort_unstable();
        rounds.dedup();
        for r in rounds {
            out.extend(st.proposals_sent.get(&r).cloned().map(Message::Proposal));
            for kind in [VoteKind::Prevote, VoteKind::Precommit] {
                out.extend(st.votes_sent.get(&(r, kind)).cloned().map(Message::Vote));
            }
        }
        let own = |v: &Vote| st.me == Some(v.voter);
        out.extend(st.pol_votes().into_iter().filter(|v| !own(v)).map(Message::Vote));
        out
    }

    fn env(&self) -> Env<'_> {
        Env { key: self.me.as_ref().map(|m| &m.key), timeouts: self.timeouts, cache: &self.cache }
    }

    /// The rules' environment and the current height's state, borrowed together.
    fn split(&mut self) -> (Env<'_>, Option<&mut HeightState>) {
        let Self { me, timeouts, cache, state, .. } = self;
        (Env { key: me.as_ref().map(|m| &m.key), timeouts: *timeouts, cache }, state.as_mut())
    }

    fn route(&self, height: u64) -> Result<Route, ConsensusError> {
        let Some(st) = &self.state else { return Ok(Route::Hold) };
        let current = st.ctx.height;
        if height < current || (height == current && st.decided.is_some()) {
            Ok(Route::Stale)
        } else if height == current {
            Ok(Route::Current)
        } else if height - current <= MAX_FUTURE_HEIGHTS {
            Ok(Route::Hold)
        } else {
            Err(ConsensusError::HeightTooFar { height, current, max: MAX_FUTURE_HEIGHTS })
        }
    }

    fn hold(&mut self, m: Held, height: u64) -> Result<(), ConsensusError> {
        if !self.buffer.push(m) {
            self.stats.dropped += 1;
            return Err(ConsensusError::BufferFull { height, capacity: MAX_BUFFERED_MESSAGES });
        }
        self.stats.buffered += 1;
        Ok(())
    }

    fn record(&mut self, result: Result<Outcome, ConsensusError>) -> Result<(), ConsensusError> {
        match result {
            Ok(Outcome::Accepted) => self.stats.accepted += 1,
            Ok(Outcome::Ignored) => self.stats.ignored += 1,
            Err(e) => {
                match e {
                    ConsensusError::HeightTooFar { .. } => self.stats.ahead += 1,
                    _ => self.stats.rejected += 1,
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn count_commits(&mut self, out: &[Action]) {
        for a in out {
            match a {
                Action::Commit { .. } => self.stats.commits += 1,
                Action::Evidence(_) => self.stats.evidence += 1,
                _ => {}
            }
        }
    }

    /// The height being decided, once one has started.
    pub fn height(&self) -> Option<u64> {
        self.state.as_ref().map(|st| st.ctx.height)
    }

    /// The current round (0 before a height starts).
    pub fn round(&self) -> u32 {
        self.state.as_ref().map_or(0, |st| st.round)
    }

    /// The current step.
    pub fn step(&self) -> Step {
        self.state.as_ref().map_or(Step::Propose, |st| st.step)
    }

    /// The round and block this host is locked on.
    pub fn locked(&self) -> Option<(u32, Hash32)> {
        self.state.as_ref().and_then(|st| st.locked)
    }

    /// The latest round and block seen with > 2/3 prevotes and the proposal.
    pub fn valid(&self) -> Option<(u32, Hash32)> {
        self.state.as_ref().and_then(|st| st.valid)
    }

    /// The round and block decided at the current height.
    pub fn decided(&self) -> Option<(u32, Hash32)> {
        self.state.as_ref().and_then(|st| st.decided)
    }

    /// This host's index when it votes at the current height.
    pub fn voter_index(&self) -> Option<u32> {
        self.state.as_ref().and_then(|st| st.me)
    }

    /// The proposer of `round` at the current height.
    pub fn proposer_of(&self, round: u32) -> Option<u32> {
        self.state.as_ref().map(|st| st.proposer_of(round))
    }

    /// Messages held for future heights.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Counters since the host started.
    pub fn stats(&self) -> ConsensusStats {
        self.stats
    }
}
