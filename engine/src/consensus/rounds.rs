//! Per-round records of one height: the proposal and the weighted tallies of
//! prevotes and precommits.
//!
//! A book counts each voter's weight at most once per value, and once in the
//! weight that voted at all. A voter that signs several values in one round
//! (an equivocator) is counted for each of them, as the Tendermint paper
//! counts messages: that is safe — the quorum-intersection argument only
//! needs honest hosts to sign one value — and it is needed for liveness, so
//! that a POL that honest hosts on one side saw with an equivocator's votes
//! can be seen by the other side too, whatever version reached it first.
//! A voter keeps at most [`MAX_VALUES_PER_VOTER`] values; when full, a new
//! value replaces the least-supported one only if other voters support it
//! more, so junk values cannot crowd out the one that matters.

use std::collections::BTreeMap;

use gonka_kernels::encoding::Hash32;

use super::messages::{Proposal, Vote, VoteKind};
use crate::crypto::SignatureBytes;
use crate::crypto::votes::Threshold;

/// Values one voter may have counted in one book: its first vote and two
/// conflicting ones — enough for the two versions of a split vote plus one
/// slot to contest.
pub(crate) const MAX_VALUES_PER_VOTER: usize = 3;

/// A value voted for: a block, or nil.
pub(crate) type Value = Option<Hash32>;

/// One signed vote, as counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CastVote {
    pub block: Value,
    pub signature: SignatureBytes,
}

/// What adding a vote to a book did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// The voter's first vote in this book.
    New,
    /// The voter had already voted for another value (its first vote is
    /// here): an equivocation, counted all the same.
    Conflict(CastVote),
    /// Nothing: the same value again, or no room worth making.
    Unchanged,
}

/// The votes of one kind in one round.
#[derive(Debug, Default)]
pub(crate) struct VoteBook {
    /// Each voter's counted votes, its first vote first.
    votes: BTreeMap<u32, Vec<CastVote>>,
    by_value: BTreeMap<Value, u128>,
    total: u128,
}

impl VoteBook {
    /// Whether adding `voter`'s vote for `value` would change the book, so
    /// that a caller can skip the pairing when it would not.
    pub fn would_count(&self, voter: u32, weight: u64, value: &Value) -> bool {
        match self.votes.get(&voter) {
            None => true,
            Some(cast) if cast.iter().any(|c| c.block == *value) => false,
            Some(cast) if cast.len() < MAX_VALUES_PER_VOTER => true,
            Some(cast) => {
                self.weakest(cast, weight).is_some_and(|(_, support)| self.weight_for(value) > support)
            }
        }
    }

    /// The replaceable value of a full voter with the least support from
    /// other voters: its index and that support.
    fn weakest(&self, cast: &[CastVote], weight: u64) -> Option<(usize, u128)> {
        cast.iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| (i, self.weight_for(&c.block).saturating_sub(u128::from(weight))))
            .min_by_key(|&(_, support)| support)
    }

    /// Counts `vote` of `voter` with `weight`; see the module docs.
    pub fn add(&mut self, voter: u32, weight: u64, vote: CastVote) -> Added {
        if !self.would_count(voter, weight, &vote.block) {
            return Added::Unchanged;
        }
        let w = u128::from(weight);
        let Some(cast) = self.votes.get(&voter) else {
            *self.by_value.entry(vote.block).or_default() += w;
            self.total += w;
            self.votes.insert(voter, vec![vote]);
            return Added::New;
        };
        let first = cast[0].clone();
        let evict =
            if cast.len() < MAX_VALUES_PER_VOTER { None } else { self.weakest(cast, weight).map(|(i, _)| i) };
        if let Some(i) = evict
            && let Some(cast) = self.votes.get_mut(&voter)
        {
            let old = cast.remove(i);
            if let Some(t) = self.by_value.get_mut(&old.block) {
                *t -= w;
            }
        }
        *self.by_value.entry(vote.block).or_default() += w;
        self.votes.entry(voter).or_default().push(vote);
        Added::Conflict(first)
    }

    /// Weight that voted for `value`.
    pub fn weight_for(&self, value: &Value) -> u128 {
        self.by_value.get(value).copied().unwrap_or(0)
    }

    /// Whether more than two thirds of `total` voted for `value`.
    pub fn has_quorum_for(&self, value: &Value, total: u128) -> bool {
        Threshold::FINALITY.is_met(self.weight_for(value), total)
    }

    /// Whether more than two thirds of `total` voted, whatever for.
    pub fn has_quorum_any(&self, total: u128) -> bool {
        Threshold::FINALITY.is_met(self.total, total)
    }

    /// A value more than two thirds of `total` voted for, if any. Two can
    /// only exist when more than a third of the weight equivocated.
    pub fn quorum_value(&self, total: u128) -> Option<Value> {
        self.by_value.iter().find(|&(_, &w)| Threshold::FINALITY.is_met(w, total)).map(|(v, _)| *v)
    }

    /// Voters for `value` and their signed votes for it, in host order.
    pub fn voters_for<'a>(&'a self, value: &'a Value) -> impl Iterator<Item = (u32, &'a CastVote)> + 'a {
        self.votes
            .iter()
            .filter_map(move |(&i, cast)| cast.iter().find(|c| c.block == *value).map(|c| (i, c)))
    }
}

/// The proposal of a round and whether the node found its block valid.
#[derive(Clone, Debug)]
pub(crate) struct ProposalRecord {
    pub proposal: Proposal,
    pub block_valid: bool,
}

/// Everything recorded about one round.
#[derive(Debug, Default)]
pub(crate) struct RoundState {
    pub proposal: Option<ProposalRecord>,
    pub prevotes: VoteBook,
    pub precommits: VoteBook,
    /// The prevote timeout of this round was scheduled.
    pub prevote_timeout_set: bool,
    /// The precommit timeout of this round was scheduled.
    pub precommit_timeout_set: bool,
    /// The > 2/3-prevotes-for-the-proposal rule ran in this round.
    pub pol_applied: bool,
}

impl RoundState {
    /// The book of `kind`.
    pub fn book(&self, kind: VoteKind) -> &VoteBook {
        match kind {
            VoteKind::Prevote => &self.prevotes,
            VoteKind::Precommit => &self.precommits,
        }
    }

    /// The book of `kind`, to add to.
    pub fn book_mut(&mut self, kind: VoteKind) -> &mut VoteBook {
        match kind {
            VoteKind::Prevote => &mut self.prevotes,
            VoteKind::Precommit => &mut self.precommits,
        }
    }
}

/// Rebuilds the full vote from a book entry.
pub(crate) fn full_vote(height: u64, round: u32, kind: VoteKind, voter: u32, cast: &CastVote) -> Vote {
    Vote { height, round, kind, block: cast.block, voter, signature: cast.signature }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(block: Value) -> CastVote {
        CastVote { block, signature: [0; 96] }
    }

    #[test]
    fn voters_count_once_per_value_and_quorums_are_exact() {
        let mut book = VoteBook::default();
        let b = Some([1u8; 32]);
        assert_eq!(book.add(0, 100, cast(b)), Added::New);
        assert_eq!(book.add(0, 100, cast(b)), Added::Unchanged);
        assert_eq!(book.add(1, 100, cast(b)), Added::New);
        // 200 of 300 is exactly two thirds: not a quorum.
        assert!(!book.has_quorum_for(&b, 300) && !book.has_quorum_any(300));
        assert_eq!(book.quorum_value(300), None);
        assert_eq!(book.add(2, 1, cast(None)), Added::New);
        assert!(book.has_quorum_any(300), "201 of 300 voted");
        assert!(!book.has_quorum_for(&b, 300));
        assert!(book.has_quorum_for(&b, 299) && book.quorum_value(299) == Some(b));
        assert_eq!(book.voters_for(&b).map(|(i, _)| i).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn an_equivocator_counts_for_each_value_but_not_twice_in_the_total() {
        let mut book = VoteBook::default();
        let (b, c) = (Some([1u8; 32]), Some([2u8; 32]));
        book.add(0, 10, cast(b));
        assert_eq!(book.add(0, 10, cast(c)), Added::Conflict(cast(b)));
        assert_eq!((book.weight_for(&b), book.weight_for(&c), book.total), (10, 10, 10));
        // Full: junk without support cannot displace anything; a value
        // others support can displace the least-supported extra value.
        assert_eq!(book.add(0, 10, cast(Some([3u8; 32]))), Added::Conflict(cast(b)));
        assert_eq!(book.add(0, 10, cast(Some([4u8; 32]))), Added::Unchanged, "no room for unsupported junk");
        book.add(1, 50, cast(None));
        assert!(book.would_count(0, 10, &None));
        assert_eq!(book.add(0, 10, cast(None)), Added::Conflict(cast(b)));
        assert_eq!(book.weight_for(&None), 60);
        assert_eq!(book.weight_for(&b), 10, "the first vote stays");
        assert_eq!(
            book.weight_for(&c) + book.weight_for(&Some([3u8; 32])),
            10,
            "one of the extras made room"
        );
        assert_eq!(book.total, 60);
    }
}
