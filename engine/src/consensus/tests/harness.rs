//! A deterministic simulated network of consensus hosts.
//!
//! Events (deliveries, timeouts, block builds, rebroadcasts, height starts)
//! sit in one queue ordered by time and then by insertion, and every random
//! choice (delays, drops, relays) comes from one seeded generator, so a run
//! is a pure function of its configuration and seed.
//!
//! Byzantine hosts run the honest state machine, but the network rewrites
//! what they send: a proposal goes to side A as is and to side B with
//! another block, and every vote for a block goes to side A as is and to
//! side B for the other block — the split attack against safety. Honest
//! hosts relay some messages they receive (gossip), which is how the two
//! versions of a Byzantine vote meet at one host and become evidence.

use crate::sim::SimRng;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::{context, epoch, host_key};
use crate::consensus::{
    Action, Consensus, Equivocation, Message, Proposal, SigCache, Step, Timeout, TimeoutParams, Vote,
    VoteKind, verify_finality,
};
use crate::crypto::HostKey;
use crate::crypto::cache::SigCacheStats;
use crate::crypto::votes::{EpochHosts, VoteSet};

/// How the network behaves.
#[derive(Clone, Debug)]
pub(super) struct NetConfig {
    pub seed: u64,
    pub weights: Vec<u64>,
    /// Hosts whose messages are rewritten by the split attack.
    pub byzantine: Vec<usize>,
    /// Hosts that never run.
    pub offline: Vec<usize>,
    /// Uniform delivery delay range, in ms.
    pub delay_ms: (u64, u64),
    pub drop_per_mille: u64,
    /// Chance that a host relays a message it received to one random host.
    pub relay_per_mille: u64,
    /// Honest hosts on side A of the partition (the rest are on side B), and
    /// when it heals; Byzantine hosts reach both sides. Messages across it
    /// wait until it heals (`u64::MAX`: never).
    pub partition: Option<(Vec<usize>, u64)>,
    pub rebroadcast_ms: u64,
    /// Whether proposers answer BuildBlock.
    pub build_blocks: bool,
    pub timeouts: TimeoutParams,
    pub proposer_seed: Hash32,
    /// One signature cache for all hosts (a simulation) or one each (real nodes).
    pub shared_cache: bool,
}

impl NetConfig {
    /// A friendly network over `weights`.
    pub fn new(seed: u64, weights: &[u64]) -> Self {
        Self {
            seed,
            weights: weights.to_vec(),
            byzantine: Vec::new(),
            offline: Vec::new(),
            delay_ms: (5, 150),
            drop_per_mille: 0,
            relay_per_mille: 0,
            partition: None,
            rebroadcast_ms: 1000,
            build_blocks: true,
            timeouts: TimeoutParams::default(),
            proposer_seed: tagged_hash("test/net-seed", &[&seed.to_le_bytes()]),
            shared_cache: true,
        }
    }
}

#[derive(Debug)]
enum EventKind {
    Deliver {
        to: usize,
        msg: Message,
    },
    Timeout {
        host: usize,
        t: Timeout,
    },
    Build {
        host: usize,
        height: u64,
        round: u32,
    },
    Rebroadcast {
        host: usize,
    },
    StartHeight {
        host: usize,
        height: u64,
    },
    /// Block sync: the host fetches the certificate of a height others committed.
    Sync {
        host: usize,
        height: u64,
    },
}

#[derive(Debug)]
struct Event {
    at: u64,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A committed block as one host saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Committed {
    pub round: u32,
    pub block: Hash32,
    pub at_ms: u64,
    pub finality: VoteSet,
}

/// The simulated network and what it observed.
#[derive(Debug)]
pub(super) struct Net {
    pub cfg: NetConfig,
    pub now: u64,
    rng: SimRng,
    keys: Vec<HostKey>,
    pub hosts: Vec<Consensus>,
    pub epoch: Arc<EpochHosts>,
    /// The distinct caches: one shared, or one per host.
    caches: Vec<SigCache>,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    pub target_height: u64,
    /// height → host → what it committed.
    pub commits: BTreeMap<u64, BTreeMap<usize, Committed>>,
    /// (reporter, evidence).
    pub evidence: Vec<(usize, Equivocation)>,
    /// (host, height, round, kind) → the value it signed; checked on every send.
    signed_votes: BTreeMap<(usize, u64, u32, VoteKind), Option<Hash32>>,
    signed_proposals: BTreeMap<(usize, u64, u32), Hash32>,
    /// (host, timeout, when it was scheduled).
    pub scheduled: Vec<(usize, Timeout, u64)>,
}

impl Net {
    /// Hosts `0..weights.len()` sharing one signature cache, all starting
    /// height 1 at time 0.
    pub fn new(cfg: NetConfig, target_height: u64) -> Self {
        let total: u64 = cfg.weights.iter().sum();
        println!("consensus network seed {}: {} hosts, total weight {total}", cfg.seed, cfg.weights.len());
        let epoch = epoch(&cfg.weights);
        let n = cfg.weights.len();
        let caches: Vec<SigCache> =
            (0..if cfg.shared_cache { 1 } else { n }).map(|_| SigCache::default()).collect();
        let hosts = (0..n)
            .map(|i| Consensus::new(Some(host_key(i)), cfg.timeouts, caches[i % caches.len()].clone()))
            .collect();
        let mut net = Self {
            rng: SimRng::new(cfg.seed, "consensus-harness"),
            cfg,
            now: 0,
            keys: (0..n).map(host_key).collect(),
            hosts,
            epoch,
            caches,
            queue: BinaryHeap::new(),
            seq: 0,
            target_height,
            commits: BTreeMap::new(),
            evidence: Vec::new(),
            signed_votes: BTreeMap::new(),
            signed_proposals: BTreeMap::new(),
            scheduled: Vec::new(),
        };
        for host in net.honest().into_iter().chain(net.cfg.byzantine.clone()) {
            net.push(0, EventKind::StartHeight { host, height: 1 });
            let first = net.rng.range(1, net.cfg.rebroadcast_ms);
            net.push(first, EventKind::Rebroadcast { host });
        }
        net
    }

    fn runs(&self, i: usize) -> bool {
        !self.cfg.offline.contains(&i)
    }

    pub fn is_byzantine(&self, i: usize) -> bool {
        self.cfg.byzantine.contains(&i)
    }

    /// Hosts that run and follow the protocol.
    pub fn honest(&self) -> Vec<usize> {
        (0..self.hosts.len()).filter(|&i| self.runs(i) && !self.is_byzantine(i)).collect()
    }

    fn push(&mut self, at: u64, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Reverse(Event { at, seq: self.seq, kind }));
    }

    /// Runs until every honest host committed the target height or the clock
    /// passes `until_ms`. Returns whether the target was reached.
    pub fn run(&mut self, until_ms: u64) -> bool {
        while !self.reached_target() {
            let Some(Reverse(event)) = self.queue.pop() else { return false };
            if event.at > until_ms {
                self.queue.push(Reverse(event));
                return false;
            }
            self.now = event.at;
            self.handle(event.kind);
        }
        true
    }

    fn reached_target(&self) -> bool {
        let done = self
            .commits
            .get(&self.target_height)
            .map_or(0, |c| c.keys().filter(|&&h| !self.is_byzantine(h)).count());
        done == self.honest().len()
    }

    fn handle(&mut self, kind: EventKind) {
        let now = self.now;
        match kind {
            EventKind::Deliver { to, msg } => {
                let valid = true;
                let actions = self.hosts[to].on_message(&msg, valid, now);
                self.apply(to, actions);
                if self.rng.chance(self.cfg.relay_per_mille as u32) {
                    let other = self.rng.range(0, self.hosts.len() as u64 - 1) as usize;
                    if other != to {
                        self.send(to, other, msg);
                    }
                }
            }
            EventKind::Timeout { host, t } => {
                let actions = self.hosts[host].on_timeout(t, now);
                self.apply(host, actions);
            }
            EventKind::Build { host, height, round } => {
                let b =
                    tagged_hash("test/built", &[&height.to_le_bytes(), &round.to_le_bytes(), &[host as u8]]);
                let actions = self.hosts[host].propose(height, round, b, now);
                self.apply(host, actions);
            }
            EventKind::Rebroadcast { host } => {
                for m in self.hosts[host].rebroadcast() {
                    self.broadcast(host, m);
                }
                let next = now + self.cfg.rebroadcast_ms;
                self.push(next, EventKind::Rebroadcast { host });
                // A host that sees its height committed elsewhere fetches it.
                let behind = self.hosts[host].height().filter(|_| self.hosts[host].decided().is_none());
                if let Some(height) = behind.filter(|h| self.commits.contains_key(h)) {
                    let at = now + self.rng.range(self.cfg.delay_ms.0, self.cfg.delay_ms.1);
                    self.push(at, EventKind::Sync { host, height });
                }
            }
            EventKind::Sync { host, height } => {
                let source = self.commits.get(&height).and_then(|by_host| {
                    by_host.iter().find(|(h, _)| !self.is_byzantine(**h)).map(|(_, c)| c.clone())
                });
                if let Some(c) = source {
                    let actions = self.hosts[host].on_finality(height, c.round, c.block, c.finality);
                    let actions =
                        actions.unwrap_or_else(|e| panic!("an honest host's certificate is valid: {e}"));
                    self.apply(host, actions);
                }
            }
            EventKind::StartHeight { host, height } => {
                let ctx = context(&self.epoch, height, self.cfg.proposer_seed);
                let actions = self.hosts[host].start_height(ctx, now);
                self.apply(host, actions);
            }
        }
    }

    fn apply(&mut self, host: usize, actions: Vec<Action>) {
        let mut work: Vec<Action> = actions.into_iter().rev().collect();
        while let Some(a) = work.pop() {
            match a {
                Action::BuildBlock { height, round } => {
                    if self.cfg.build_blocks {
                        let at = self.now + 1;
                        self.push(at, EventKind::Build { host, height, round });
                    }
                }
                Action::Broadcast(m) => {
                    self.record_signed(host, &m);
                    self.broadcast(host, m);
                }
                Action::ScheduleTimeout(t) => {
                    self.scheduled.push((host, t, self.now));
                    self.push(t.at_ms, EventKind::Timeout { host, t });
                }
                Action::CheckProposal(p) => {
                    let more = self.hosts[host].on_proposal(&p, true, self.now);
                    work.extend(more.into_iter().rev());
                }
                Action::Commit { height, round, block, finality } => {
                    let tally =
                        verify_finality(&self.epoch, height, round, &block, &finality, &SigCache::default());
                    assert!(
                        tally.is_ok(),
                        "host {host}'s certificate for height {height} must verify: {tally:?}"
                    );
                    let c = Committed { round, block, at_ms: self.now, finality };
                    let first = self.commits.entry(height).or_default().insert(host, c);
                    assert!(first.is_none(), "host {host} committed height {height} twice");
                    if height < self.target_height {
                        let at = self.now + 1;
                        self.push(at, EventKind::StartHeight { host, height: height + 1 });
                    }
                }
                Action::Evidence(e) => self.evidence.push((host, e)),
            }
        }
    }

    /// The invariant "a host never signs two different votes (or proposals)
    /// at one (height, round, kind)", checked on everything honest hosts send.
    fn record_signed(&mut self, host: usize, m: &Message) {
        match m {
            Message::Vote(v) => {
                let prior = self.signed_votes.insert((host, v.height, v.round, v.kind), v.block);
                assert!(
                    prior.is_none_or(|b| b == v.block),
                    "seed {}: host {host} signed two different {:?}s at height {} round {}",
                    self.cfg.seed,
                    v.kind,
                    v.height,
                    v.round
                );
            }
            Message::Proposal(p) => {
                let prior = self.signed_proposals.insert((host, p.height, p.round), p.block);
                assert!(
                    prior.is_none_or(|b| b == p.block),
                    "host {host} proposed twice at {}/{}",
                    p.height,
                    p.round
                );
            }
        }
    }

    fn on_side_a(&self, i: usize) -> bool {
        match &self.cfg.partition {
            Some((side_a, _)) => side_a.contains(&i),
            None => i.is_multiple_of(2),
        }
    }

    fn broadcast(&mut self, from: usize, m: Message) {
        let (for_a, for_b) = if self.is_byzantine(from) { self.split(from, &m) } else { (m.clone(), m) };
        for to in 0..self.hosts.len() {
            if to == from {
                continue;
            }
            let msg = if self.is_byzantine(to) || self.on_side_a(to) { for_a.clone() } else { for_b.clone() };
            self.send(from, to, msg);
        }
    }

    /// The split attack: side B gets the same message for the twin block.
    fn split(&self, from: usize, m: &Message) -> (Message, Message) {
        let key = &self.keys[from];
        let other = match m {
            Message::Proposal(p) => Message::Proposal(Proposal::signed(
                key,
                p.proposer,
                p.height,
                p.round,
                twin(&p.block),
                p.pol_round,
            )),
            Message::Vote(v) => match v.block {
                Some(b) => {
                    Message::Vote(Vote::signed(key, v.voter, v.height, v.round, v.kind, Some(twin(&b))))
                }
                None => m.clone(),
            },
        };
        (m.clone(), other)
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        if !self.runs(to) || self.rng.chance(self.cfg.drop_per_mille as u32) {
            return;
        }
        let delay = self.rng.range(self.cfg.delay_ms.0, self.cfg.delay_ms.1);
        let mut at = self.now + delay;
        if let Some((_, heal_ms)) = &self.cfg.partition {
            let crosses = !self.is_byzantine(from)
                && !self.is_byzantine(to)
                && self.on_side_a(from) != self.on_side_a(to);
            if crosses && self.now < *heal_ms {
                if *heal_ms == u64::MAX {
                    return;
                }
                at = at.max(heal_ms + delay);
            }
        }
        self.push(at, EventKind::Deliver { to, msg });
    }

    /// Heights at which two honest hosts committed different blocks.
    pub fn forks(&self) -> Vec<u64> {
        self.commits
            .iter()
            .filter(|(_, by_host)| {
                let mut blocks =
                    by_host.iter().filter(|(h, _)| !self.is_byzantine(**h)).map(|(_, c)| c.block);
                let first = blocks.next();
                blocks.any(|b| Some(b) != first)
            })
            .map(|(&h, _)| h)
            .collect()
    }

    /// Asserts that every honest host committed every height up to the
    /// target and that they agree.
    pub fn assert_agreement(&self) {
        assert!(self.forks().is_empty(), "seed {}: honest hosts committed different blocks", self.cfg.seed);
        for h in 1..=self.target_height {
            let by_host =
                self.commits.get(&h).map_or(0, |c| c.keys().filter(|&&i| !self.is_byzantine(i)).count());
            assert_eq!(
                by_host,
                self.honest().len(),
                "seed {}: height {h} committed by too few honest hosts",
                self.cfg.seed
            );
        }
    }

    /// The caches' counters, summed.
    pub fn cache_totals(&self) -> SigCacheStats {
        self.caches.iter().map(SigCache::stats).fold(SigCacheStats::default(), |a, s| SigCacheStats {
            hits: a.hits + s.hits,
            verified: a.verified + s.verified,
            failed: a.failed + s.failed,
            evicted: a.evicted + s.evicted,
            entries: a.entries + s.entries,
        })
    }

    /// The steps and rounds hosts are in now.
    pub fn positions(&self) -> Vec<(Option<u64>, u32, Step)> {
        self.hosts.iter().map(|c| (c.height(), c.round(), c.step())).collect()
    }
}

/// The block a Byzantine host shows side B in place of `b`.
pub(super) fn twin(b: &Hash32) -> Hash32 {
    tagged_hash("test/twin", &[b])
}
