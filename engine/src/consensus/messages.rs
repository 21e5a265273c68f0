//! The consensus wire messages, the exact bytes each one signs, the
//! equivocation evidence, and the finality check a syncing host or the chain
//! runs on a committed block's certificate.
//!
//! Both votes and proposals are signed under [`Domain::BlockVote`]; their
//! signed bytes start with different headers, so one can never be read as
//! the other. A block's finality certificate is the aggregate of the
//! precommits for it, so it is an ordinary [`VoteSet`] over
//! [`vote_message`]`(h, r, Precommit, Some(block))`.
//!
//! ```text
//!  vote      "gonka/block-vote/v1"     ‖ kind (1 = prevote, 2 = precommit) ‖ u64_le h ‖ u32_le r ‖ 0x00          (nil)
//!                                                                                          ‖ 0x01 ‖ block  (a block)
//!  proposal  "gonka/block-proposal/v1" ‖ u64_le h ‖ u32_le r ‖ block ‖ 0x00 | 0x01 ‖ u32_le pol_round
//! ```

use gonka_kernels::encoding::Hash32;
use rkyv::{Archive, Deserialize, Serialize};

use super::ConsensusError;
use crate::crypto::cache::SigCache;
use crate::crypto::votes::{
    EpochHosts, MAX_VOTE_MESSAGE_BYTES, Threshold, VoteError, VoteSet, VoteSetBuilder, VoteTally,
    verify_vote_set_cached,
};
use crate::crypto::wire::{WireError, WireMessage};
use crate::crypto::{Domain, HostKey, SignatureBytes};

/// First bytes of every signed vote.
const VOTE_HEADER: &[u8] = b"gonka/block-vote/v1";
/// First bytes of every signed proposal.
const PROPOSAL_HEADER: &[u8] = b"gonka/block-proposal/v1";
/// Longest signed vote: header, kind, height, round, presence byte, block.
const VOTE_MESSAGE_MAX_BYTES: usize = VOTE_HEADER.len() + 1 + 8 + 4 + 1 + 32;
// A finality certificate carries the signed vote as its message.
const _: () = assert!(VOTE_MESSAGE_MAX_BYTES <= MAX_VOTE_MESSAGE_BYTES);

/// Largest encoded [`Message`]: a proposal (about 160 bytes) with headroom.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Largest encoded [`Equivocation`]: two votes with headroom.
pub const MAX_EVIDENCE_BYTES: usize = 1024;

/// Which of the two votes of a round.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteKind {
    /// First vote: the block this host will accept in the round, or nil.
    Prevote,
    /// Second vote: the block this host saw > 2/3 prevote for, or nil.
    Precommit,
}

impl VoteKind {
    /// The byte that distinguishes the kinds in the signed message.
    fn code(self) -> u8 {
        match self {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        }
    }

    /// Its name in errors.
    pub fn name(self) -> &'static str {
        match self {
            VoteKind::Prevote => "prevote",
            VoteKind::Precommit => "precommit",
        }
    }
}

/// A proposer's block for one round.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Hash of the proposed block.
    pub block: Hash32,
    /// The earlier round in which > 2/3 prevoted this block, when the
    /// proposer re-proposes its valid value; `None` for a new block.
    pub pol_round: Option<u32>,
    /// The proposer's host index.
    pub proposer: u32,
    /// Its signature over [`proposal_message`].
    pub signature: SignatureBytes,
}

/// One host's prevote or precommit.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The block voted for; `None` is a vote for nil.
    pub block: Option<Hash32>,
    /// The voter's host index.
    pub voter: u32,
    /// Its signature over [`vote_message`].
    pub signature: SignatureBytes,
}

/// Anything one host sends another about consensus.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A proposal.
    Proposal(Proposal),
    /// A vote.
    Vote(Vote),
}

/// Proof that a host signed two different votes at one `(height, round,
/// kind)`. The chain removes the equivocator's weight and its epoch rewards.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// One vote.
    pub a: Vote,
    /// The other.
    pub b: Vote,
}

/// The bytes a vote signs under [`Domain::BlockVote`]; distinct for each
/// height, round, kind and value, nil included (at most 65 bytes).
pub fn vote_message(height: u64, round: u32, kind: VoteKind, block: Option<&Hash32>) -> Vec<u8> {
    let mut m = Vec::with_capacity(VOTE_MESSAGE_MAX_BYTES);
    m.extend_from_slice(VOTE_HEADER);
    m.push(kind.code());
    m.extend_from_slice(&height.to_le_bytes());
    m.extend_from_slice(&round.to_le_bytes());
    match block {
        None => m.push(0),
        Some(b) => {
            m.push(1);
            m.extend_from_slice(b);
        }
    }
    m
}

/// The bytes a proposal signs under [`Domain::BlockVote`].
pub fn proposal_message(height: u64, round: u32, block: &Hash32, pol_round: Option<u32>) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROPOSAL_HEADER.len() + 8 + 4 + 32 + 5);
    m.extend_from_slice(PROPOSAL_HEADER);
    m.extend_from_slice(&height.to_le_bytes());
    m.extend_from_slice(&round.to_le_bytes());
    m.extend_from_slice(block);
    match pol_round {
        None => m.push(0),
        Some(r) => {
            m.push(1);
            m.extend_from_slice(&r.to_le_bytes());
        }
    }
    m
}

impl Vote {
    /// A vote signed by `key`, the key of host `voter`.
    pub fn signed(
        key: &HostKey,
        voter: u32,
        height: u64,
        round: u32,
        kind: VoteKind,
        block: Option<Hash32>,
    ) -> Self {
        let signature = key.sign(Domain::BlockVote, &vote_message(height, round, kind, block.as_ref()));
        Self { height, round, kind, block, voter, signature }
    }

    /// The bytes it signs.
    pub fn message(&self) -> Vec<u8> {
        vote_message(self.height, self.round, self.kind, self.block.as_ref())
    }
}

impl Proposal {
    /// A proposal signed by `key`, the key of host `proposer`.
    pub fn signed(
        key: &HostKey,
        proposer: u32,
        height: u64,
        round: u32,
        block: Hash32,
        pol_round: Option<u32>,
    ) -> Self {
        let signature = key.sign(Domain::BlockVote, &proposal_message(height, round, &block, pol_round));
        Self { height, round, block, pol_round, proposer, signature }
    }

    /// The bytes it signs.
    pub fn message(&self) -> Vec<u8> {
        proposal_message(self.height, self.round, &self.block, self.pol_round)
    }
}

impl Message {
    /// Height of the message.
    pub fn height(&self) -> u64 {
        match self {
            Message::Proposal(p) => p.height,
            Message::Vote(v) => v.height,
        }
    }

    /// Round of the message.
    pub fn round(&self) -> u32 {
        match self {
            Message::Proposal(p) => p.round,
            Message::Vote(v) => v.round,
        }
    }
}

impl Equivocation {
    /// Checks the evidence against the epoch's hosts: the same voter, height,
    /// round and kind, two different values, both signatures valid. Returns
    /// the equivocating host's index.
    pub fn verify(&self, hosts: &EpochHosts, cache: &SigCache) -> Result<u32, ConsensusError> {
        let (a, b) = (&self.a, &self.b);
        let not = |why| Err(ConsensusError::NotEquivocation { why });
        if a.voter != b.voter {
            return not("the votes are from different hosts");
        }
        if (a.height, a.round, a.kind) != (b.height, b.round, b.kind) {
            return not("the votes are for different heights, rounds or kinds");
        }
        if a.block == b.block {
            return not("the votes are for the same value");
        }
        let pk = hosts.public_key(a.voter as usize).ok_or(ConsensusError::NotMember {
            what: "equivocation",
            height: a.height,
            host: a.voter,
            hosts: hosts.len(),
        })?;
        for v in [a, b] {
            cache.verify(Domain::BlockVote, &pk, &v.message(), &v.signature).map_err(|source| {
                ConsensusError::BadSignature {
                    what: v.kind.name(),
                    height: v.height,
                    round: v.round,
                    host: v.voter,
                    source,
                }
            })?;
        }
        Ok(a.voter)
    }
}

/// A finality certificate signed by `signers` (their voting-list positions
/// and keys): every one precommits `block` at `(height, round)`. For hosts
/// that finalize without a network (tests, tools, benches); the result
/// passes [`verify_finality`] only when the signers hold more than two
/// thirds of the weight.
pub fn certify(
    hosts: &EpochHosts,
    height: u64,
    round: u32,
    block: &Hash32,
    signers: &[(usize, &HostKey)],
) -> Result<VoteSet, VoteError> {
    let message = vote_message(height, round, VoteKind::Precommit, Some(block));
    let mut builder = VoteSetBuilder::new(hosts, Domain::BlockVote, &message);
    for &(position, key) in signers {
        builder.add(position, &key.sign(Domain::BlockVote, &message))?;
    }
    builder.finish()
}

/// Checks a finality certificate: `set` aggregates precommits for `block` at
/// `(height, round)` from hosts holding more than two thirds of the epoch's
/// weight.
pub fn verify_finality(
    hosts: &EpochHosts,
    height: u64,
    round: u32,
    block: &Hash32,
    set: &VoteSet,
    cache: &SigCache,
) -> Result<VoteTally, ConsensusError> {
    let message = vote_message(height, round, VoteKind::Precommit, Some(block));
    verify_vote_set_cached(hosts, Domain::BlockVote, &message, set, Threshold::FINALITY, cache)
        .map_err(|source| ConsensusError::Finality { height, round, source })
}

impl WireMessage for Message {
    const KIND: &'static str = "consensus message";
    const MAX_BYTES: usize = MAX_MESSAGE_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        // Every field has a fixed size.
        Ok(())
    }
}

impl WireMessage for Equivocation {
    const KIND: &'static str = "equivocation";
    const MAX_BYTES: usize = MAX_EVIDENCE_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        // Every field has a fixed size.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::wire::{decode, encode};
    use gonka_kernels::encoding::tagged_hash;

    fn key(i: u8) -> HostKey {
        HostKey::from_ikm(&[i; 32])
    }

    #[test]
    fn signed_messages_are_distinct_and_bounded() {
        let b = [7u8; 32];
        let all = [
            vote_message(1, 0, VoteKind::Prevote, Some(&b)),
            vote_message(1, 0, VoteKind::Precommit, Some(&b)),
            vote_message(1, 0, VoteKind::Prevote, None),
            vote_message(1, 0, VoteKind::Precommit, None),
            vote_message(1, 1, VoteKind::Prevote, Some(&b)),
            vote_message(2, 0, VoteKind::Prevote, Some(&b)),
            vote_message(1, 0, VoteKind::Prevote, Some(&[8u8; 32])),
            proposal_message(1, 0, &b, None),
            proposal_message(1, 0, &b, Some(0)),
        ];
        let distinct: std::collections::BTreeSet<&Vec<u8>> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "every signed message must differ");
        assert!(all.iter().all(|m| m.len() <= MAX_VOTE_MESSAGE_BYTES));
        assert_eq!(
            vote_message(u64::MAX, u32::MAX, VoteKind::Precommit, Some(&b)).len(),
            VOTE_MESSAGE_MAX_BYTES
        );
    }

    #[test]
    fn encodings_fit_their_limits_and_round_trip() {
        let k = key(1);
        let p = Proposal::signed(&k, u32::MAX, u64::MAX, u32::MAX, [0xff; 32], Some(u32::MAX));
        let v = Vote::signed(&k, u32::MAX, u64::MAX, u32::MAX, VoteKind::Precommit, Some([0xff; 32]));
        for m in [Message::Proposal(p), Message::Vote(v.clone())] {
            let bytes = encode(&m);
            assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
            assert_eq!(decode::<Message>(&bytes).expect("round trip"), m);
        }
        let e = Equivocation { a: v.clone(), b: Vote { block: None, ..v } };
        let bytes = encode(&e);
        assert!(bytes.len() <= MAX_EVIDENCE_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode::<Equivocation>(&bytes).expect("round trip"), e);
    }

    #[test]
    fn hostile_bytes_are_rejected_without_panic() {
        let seed = 0u64;
        println!("hostile-bytes seed {seed}");
        let k = key(2);
        let good = encode(&Message::Vote(Vote::signed(&k, 3, 10, 2, VoteKind::Prevote, Some([1; 32]))));
        let mut rejected = 0usize;
        // Every truncation, every single-byte corruption of the tag bytes,
        // random byte strings, and an oversized input.
        for len in 0..good.len() {
            rejected += usize::from(decode::<Message>(&good[..len]).is_err());
        }
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                // A flipped payload byte can still decode (to another vote);
                // it must never panic, and what decodes must re-encode.
                if let Ok(m) = decode::<Message>(&bad) {
                    assert_eq!(decode::<Message>(&encode(&m)).expect("re-encodes"), m);
                }
            }
        }
        for i in 0..2000u64 {
            let h = tagged_hash("test/hostile", &[&seed.to_le_bytes(), &i.to_le_bytes()]);
            let len = usize::from(h[0]) % 200;
            let bytes: Vec<u8> = (0..len).map(|j| h[j % 32] ^ (j as u8)).collect();
            rejected += usize::from(decode::<Message>(&bytes).is_err());
            let _ = decode::<Equivocation>(&bytes);
        }
        assert!(rejected > 2000, "truncations and noise are rejected ({rejected})");
        let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(decode::<Message>(&huge), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn frozen_wire_format() {
        // Guards against an accidental change of the archived encodings.
        let k = key(5);
        let v = Vote::signed(&k, 4, 100, 3, VoteKind::Precommit, Some([9; 32]));
        let p = Proposal::signed(&k, 4, 100, 3, [9; 32], Some(1));
        let e = Equivocation { a: v.clone(), b: Vote::signed(&k, 4, 100, 3, VoteKind::Precommit, None) };
        let digest = |bytes: &[u8]| hex::encode(tagged_hash("test/frozen", &[bytes]));
        let got =
            [digest(&encode(&Message::Vote(v))), digest(&encode(&Message::Proposal(p))), digest(&encode(&e))];
        let want = [
            "79a88b9d6b7b5d8678d12f09244b14f2fb33ac6107a6554d0d840ffb0d462933",
            "2d1f594a05cfd9928449c7cf3ab4648a12913840363a048296d460f48ce1015a",
            "ee27e619bd619805496b99cf5dda4e0997dd68136bc365768099ceeb5241a401",
        ];
        assert_eq!(got, want, "an archived consensus type changed its encoding");
    }

    #[test]
    fn equivocation_verification() {
        let keys: Vec<HostKey> = (1..=3).map(key).collect();
        let list: Vec<_> = keys.iter().map(|k| (k.public_key(), 1)).collect();
        let hosts = EpochHosts::new(&list).expect("valid hosts");
        let a = Vote::signed(&keys[1], 1, 5, 0, VoteKind::Prevote, Some([1; 32]));
        let b = Vote::signed(&keys[1], 1, 5, 0, VoteKind::Prevote, None);
        assert_eq!(
            Equivocation { a: a.clone(), b: b.clone() }
                .verify(&hosts, &SigCache::default())
                .expect("evidence"),
            1
        );
        let same = Equivocation { a: a.clone(), b: a.clone() };
        assert!(matches!(
            same.verify(&hosts, &SigCache::default()),
            Err(ConsensusError::NotEquivocation { .. })
        ));
        let other_round = Vote::signed(&keys[1], 1, 5, 1, VoteKind::Prevote, None);
        let e = Equivocation { a: a.clone(), b: other_round };
        assert!(matches!(
            e.verify(&hosts, &SigCache::default()),
            Err(ConsensusError::NotEquivocation { .. })
        ));
        let other_kind = Vote::signed(&keys[1], 1, 5, 0, VoteKind::Precommit, None);
        assert!(Equivocation { a: a.clone(), b: other_kind }.verify(&hosts, &SigCache::default()).is_err());
        // Someone else's signature under host 1's name is no evidence against it.
        let forged = Vote { voter: 1, ..Vote::signed(&keys[2], 2, 5, 0, VoteKind::Prevote, None) };
        let e = Equivocation { a: a.clone(), b: forged };
        assert!(matches!(
            e.verify(&hosts, &SigCache::default()),
            Err(ConsensusError::BadSignature { host: 1, .. })
        ));
        let outsider = Equivocation { a: Vote { voter: 9, ..a.clone() }, b: Vote { voter: 9, ..b } };
        assert!(matches!(
            outsider.verify(&hosts, &SigCache::default()),
            Err(ConsensusError::NotMember { host: 9, .. })
        ));
    }
}
