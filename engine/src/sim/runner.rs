//! The event loop of the simulation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::host::{Mempool, Role, SimHost};
use super::network::{EventQueue, Network, Partition, SimRng};
use super::report::{EpochRow, SimReport, StrategyRow};
use super::users::Users;
use super::{SimConfig, SimError};
use crate::agent::{Agent, Behavior, ModelCache};
use crate::chain::snapshot::StateSnapshot;
use crate::chain::types::{Block, FinalBlock, SignedTransaction, Transaction};
use crate::chain::{Chain, Genesis, GenesisHost};
use crate::consensus::{Action, Consensus, HeightContext, Message, Proposal, Timeout, TimeoutParams, Vote};
use crate::crypto::HostKey;
use crate::crypto::cache::SigCache;
use crate::hosts::{HostId, Penalized, Weight};
use crate::proofs::components::{BatchContents, BatchKey, BatchStatus};
use crate::store::{ChainStore, StoreConfig};

/// Every host's weight at genesis unless the configuration gives weights.
const GENESIS_WEIGHT: u64 = 10;

/// Most final blocks one sync message carries.
const SYNC_BATCH: u64 = 64;

/// The reserve at genesis: pays dummy requests and bounties.
const SIM_RESERVE: u128 = 1 << 50;

/// About how many times each vote is relayed (see `World::relay`).
const RELAY_PEERS: u64 = 50;

/// What travels between hosts.
#[derive(Clone, Debug)]
enum NetMsg {
    /// A proposal with the block it names.
    Proposal(Arc<Proposal>, Arc<Block>),
    /// A vote.
    Vote(Arc<Vote>),
    /// A vote passed on by another host (not passed on again).
    RelayedVote(Arc<Vote>),
    /// A gossiped transaction and its id.
    Tx(Hash32, Arc<SignedTransaction>),
    /// Final blocks sent to a host that fell behind (block sync).
    Sync(Vec<Arc<FinalBlock>>),
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        msg: NetMsg,
    },
    /// One message arriving at several hosts at the same time.
    DeliverMany {
        to: Vec<usize>,
        msg: NetMsg,
    },
    Timeout {
        host: usize,
        timeout: Timeout,
    },
    StartHeight {
        host: usize,
        height: u64,
    },
    /// Periodic: resend own messages; ask a peer for blocks if behind.
    Tick {
        host: usize,
    },
}

/// Everything shared by the hosts of one run.
struct World {
    config: SimConfig,
    queue: EventQueue<Event>,
    net: Network,
    hosts: Vec<SimHost>,
    models: ModelCache,
    /// The first final block seen at each height, and its state root after it.
    decided: BTreeMap<u64, (Hash32, Option<Hash32>)>,
    /// Every final block, by height, as the first host to commit it holds it.
    finals: BTreeMap<u64, Arc<FinalBlock>>,
    relay_rng: SimRng,
    /// Each host's (height, round, step) at its last tick.
    progress: BTreeMap<usize, (Option<u64>, u32, crate::consensus::Step)>,
    /// Transaction ids of each final block, computed once for all hosts.
    block_ids: BTreeMap<Hash32, Arc<Vec<Hash32>>>,
    /// An equivocating proposer's twin of each block it proposed.
    twins: BTreeMap<Hash32, Hash32>,
    /// Every block body ever proposed (a host that commits a block it missed
    /// fetches it from here, as it would from a peer).
    bodies: BTreeMap<Hash32, Arc<Block>>,
    report: SimReport,
    target_height: u64,
    rounds: BTreeMap<u64, u32>,
    started: Instant,
    users: Users,
    /// The host that keeps a chain store, and the store.
    store: Option<(usize, ChainStore)>,
    /// Each host's first epoch with its earnings withheld.
    first_withheld: Vec<Option<u64>>,
}

/// Runs the simulation to its end and reports.
pub fn run(config: SimConfig) -> Result<SimReport, SimError> {
    let t0 = Instant::now();
    let mut w = setup(config)?;
    for host in 0..w.hosts.len() {
        w.queue.push(0, Event::StartHeight { host, height: 0 });
        w.queue.push(w.tick_ms(), Event::Tick { host });
    }
    while let Some(event) = w.queue.pop() {
        if w.done() {
            break;
        }
        w.handle(event);
    }
    w.finish(t0.elapsed());
    Ok(w.report)
}

fn setup(config: SimConfig) -> Result<World, SimError> {
    if config.hosts == 0 {
        return Err(SimError::Config("at least one host".into()));
    }
    let mut rng = SimRng::new(config.seed, "roles");
    let adversaries = config.hosts * config.adversarial_percent as usize / 100;
    let mut order: Vec<usize> = (0..config.hosts).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.range(0, i as u64) as usize);
    }
    let mut roles = vec![Role::Honest; config.hosts];
    for (k, &h) in order.iter().take(adversaries).enumerate() {
        roles[h] = Role::ADVERSARIES[k % Role::ADVERSARIES.len()];
    }
    let keys: Vec<[u8; 32]> = (0..config.hosts).map(|i| super::host_key_material(config.seed, i)).collect();
    let weights = match &config.genesis_weights {
        Some(w) if w.len() == config.hosts => w.clone(),
        Some(w) => {
            let why = format!("{} genesis weights for {} hosts", w.len(), config.hosts);
            return Err(SimError::Config(why));
        }
        None => vec![GENESIS_WEIGHT; config.hosts],
    };
    let users = Users::new(config.seed, config.users, config.requests_per_epoch, config.report_permille);
    let genesis = Genesis {
        params: config.params.clone(),
        seed: tagged_hash("gonka/sim-genesis", &[&config.seed.to_le_bytes()]),
        hosts: keys.iter().zip(&weights).map(|(k, &w)| GenesisHost::new(&HostKey::from_ikm(k), w)).collect(),
        accounts: users.accounts(),
        reserve: SIM_RESERVE,
    };
    let cache = SigCache::default();
    let coalition: Vec<u32> =
        (0..config.hosts).filter(|&h| roles[h] != Role::Honest).map(|h| h as u32).collect();
    let mut hosts = Vec::with_capacity(config.hosts);
    let p = &config.params;
    let timeouts = TimeoutParams {
        propose_ms: p.timeout_propose_ms,
        prevote_ms: p.timeout_vote_ms,
        precommit_ms: p.timeout_vote_ms,
        step_ms: p.timeout_step_ms,
    };
    for (i, ikm) in keys.iter().enumerate() {
        let n = config.nonces_per_sprint;
        let mut behavior = Behavior::honest(rng.range(n / 2, n * 2));
        match roles[i] {
            Role::FabricatedProofs => behavior.fabricate_proofs = true,
            Role::InflatedCount => behavior.inflate_count = true,
            Role::DuplicateNonces => behavior.duplicate_nonces = true,
            Role::LazyValidator => behavior.lazy_validator = true,
            Role::ColludingValidator => behavior.colluders = Some(coalition.clone()),
            Role::WrongOutputs | Role::ColludingExecutor => {
                behavior.task_cheat = Some(crate::agent::tasks::TaskCheat::WrongOutputs)
            }
            Role::SmallerModel => behavior.task_cheat = Some(crate::agent::tasks::TaskCheat::SmallerModel),
            Role::SkipsValidation => behavior.skip_validation = true,
            _ => {}
        }
        let entropy = tagged_hash("gonka/sim-entropy", &[ikm]);
        hosts.push(SimHost {
            index: i,
            role: roles[i],
            chain: Chain::from_genesis(&genesis, cache.clone())?,
            consensus: Consensus::new(Some(HostKey::from_ikm(ikm)), timeouts, cache.clone()),
            agent: Agent::new(HostKey::from_ikm(ikm), entropy, behavior, config.threads)
                .with_runner(Arc::new(config.inference)),
            mempool: Mempool::default(),
            halted: None,
        });
    }
    let mut network = config.network.clone();
    if config.partition_minority {
        // A fifth of the honest hosts lose the rest for a third of the second epoch.
        let honest: Vec<usize> = (0..config.hosts).filter(|&h| roles[h] == Role::Honest).collect();
        let minority: Vec<usize> = honest.iter().copied().take(honest.len() / 5).collect();
        let epoch_ms = p.epoch_blocks * p.block_interval_ms.max(1);
        network.partitions.push(Partition { from_ms: epoch_ms, until_ms: epoch_ms + epoch_ms / 3, minority });
    }
    let target_height = config.epochs * p.epoch_blocks - 1;
    let target_height = config.max_blocks.map_or(target_height, |m| target_height.min(m.saturating_sub(1)));
    let mut strategies: Vec<StrategyRow> = Vec::new();
    for role in std::iter::once(Role::Honest).chain(Role::ADVERSARIES) {
        let hosts = roles.iter().filter(|&&r| r == role).count() as u32;
        if hosts > 0 {
            strategies.push(StrategyRow { role: role.name(), hosts, ..StrategyRow::default() });
        }
    }
    let report = SimReport {
        hosts: config.hosts,
        adversaries,
        block_interval_ms: p.block_interval_ms,
        roles: roles.clone(),
        strategies,
        ..SimReport::default()
    };
    let relay_rng = SimRng::new(config.seed, "relay");
    let store = match (&config.store, roles.iter().position(|&r| r == Role::Honest)) {
        (Some(dir), Some(host)) => {
            let store = ChainStore::open(dir, StoreConfig::default())?;
            if store.tip_height()?.is_some() {
                return Err(SimError::Config(format!("the store {} already holds blocks", dir.display())));
            }
            store.load_or_init(&genesis, cache.clone())?;
            Some((host, store))
        }
        _ => None,
    };
    Ok(World {
        net: Network::new(network, config.seed),
        config,
        queue: EventQueue::default(),
        hosts,
        models: ModelCache::default(),
        decided: BTreeMap::new(),
        bodies: BTreeMap::new(),
        finals: BTreeMap::new(),
        twins: BTreeMap::new(),
        block_ids: BTreeMap::new(),
        progress: BTreeMap::new(),
        relay_rng,
        report,
        target_height,
        rounds: BTreeMap::new(),
        started: Instant::now(),
        first_withheld: vec![None; roles.len()],
        users,
        store,
    })
}

impl World {
    /// How often a host resends its messages and checks whether it fell behind.
    fn tick_ms(&self) -> u64 {
        self.config.params.timeout_propose_ms.max(1)
    }

    /// When a host made no progress since its last tick it resends its
    /// consensus messages (lost ones are what stalls a round); when the
    /// network already finalized its height, a peer sends it the final
    /// blocks it misses, up to [`SYNC_BATCH`] at a time.
    fn tick(&mut self, host: usize) {
        let now = self.queue.now_ms();
        self.queue.push(now + self.tick_ms(), Event::Tick { host });
        let c = &self.hosts[host].consensus;
        let progress = (c.height(), c.round(), c.step());
        let stuck = self.progress.insert(host, progress) == Some(progress);
        if stuck {
            for m in self.hosts[host].consensus.rebroadcast() {
                match m {
                    Message::Proposal(p) => {
                        if let Some(block) = self.bodies.get(&p.block).cloned() {
                            let p = Arc::new(p);
                            self.broadcast(host, NetMsg::Proposal(Arc::clone(&p), Arc::clone(&block)));
                        }
                    }
                    Message::Vote(v) => {
                        let v = Arc::new(v);
                        self.broadcast(host, NetMsg::Vote(Arc::clone(&v)));
                    }
                }
            }
        }
        let height = self.hosts[host].chain.next_height();
        let blocks: Vec<Arc<FinalBlock>> =
            self.finals.range(height..height + SYNC_BATCH).map(|(_, fb)| Arc::clone(fb)).collect();
        if blocks.first().is_some_and(|fb| fb.block.header.height == height) {
            // Any peer that applied them can serve them.
            let last = height + blocks.len() as u64;
            let peer = self
                .hosts
                .iter()
                .position(|h| h.index != host && h.online() && h.chain.next_height() >= last);
            if let Some(peer) = peer
                && let Some(at) = self.net.send(peer, host, now)
            {
                self.queue.push(at, Event::Deliver { to: host, msg: NetMsg::Sync(blocks) });
            }
        }
    }

    /// Starts `height` on this host if it is the one its replica needs next.
    fn start_height(&mut self, host: usize, height: u64) -> Vec<Action> {
        let now = self.queue.now_ms();
        let h = &mut self.hosts[host];
        if !h.online() || h.chain.next_height() != height || height > self.target_height {
            return Vec::new();
        }
        if h.consensus.height() == Some(height) {
            return Vec::new();
        }
        let ctx = HeightContext {
            height,
            hosts: Arc::clone(&h.chain.voting().hosts),
            proposer_seed: h.chain.proposer_seed(),
        };
        h.consensus.start_height(ctx, now)
    }

    /// Applies final blocks a peer sent, in order, starting each next height at once.
    fn catch_up(&mut self, host: usize, blocks: Vec<Arc<FinalBlock>>) {
        for fb in blocks {
            let h = &mut self.hosts[host];
            let height = fb.block.header.height;
            if !h.online() || height != h.chain.next_height() {
                continue;
            }
            if h.consensus.height() != Some(height) {
                let actions = self.start_height(host, height);
                self.act(host, actions);
            }
            let hash = fb.block.header.hash();
            self.bodies.entry(hash).or_insert_with(|| Arc::new(fb.block.clone()));
            let h = &mut self.hosts[host];
            let actions =
                h.consensus.on_finality(height, fb.round, hash, fb.finality.clone()).unwrap_or_default();
            self.act(host, actions);
        }
        let next = self.hosts[host].chain.next_height();
        let actions = self.start_height(host, next);
        self.act(host, actions);
    }

    /// Whether every online host has applied the target height.
    fn done(&self) -> bool {
        self.hosts
            .iter()
            .filter(|h| h.online())
            .all(|h| h.chain.tip().height.is_some_and(|t| t >= self.target_height))
    }

    fn handle(&mut self, event: Event) {
        let now = self.queue.now_ms();
        let (host, actions) = match event {
            Event::StartHeight { host, height } => (host, self.start_height(host, height)),
            Event::Tick { host } => {
                if self.hosts[host].online() {
                    self.tick(host);
                }
                return;
            }
            Event::Timeout { host, timeout } => {
                if !self.hosts[host].online() {
                    return;
                }
                (host, self.hosts[host].consensus.on_timeout(timeout, now))
            }
            Event::DeliverMany { to, msg } => {
                for to in to {
                    self.handle(Event::Deliver { to, msg: msg.clone() });
                }
                return;
            }
            Event::Deliver { to, msg } => {
                if !self.hosts[to].online() {
                    return;
                }
                let h = &mut self.hosts[to];
                let actions = match msg {
                    NetMsg::Tx(id, tx) => {
                        h.mempool.add(id, tx);
                        Vec::new()
                    }
                    NetMsg::Vote(v) => {
                        let actions = h.consensus.on_vote(&v, now);
                        self.relay(to, v);
                        actions
                    }
                    NetMsg::RelayedVote(v) => h.consensus.on_vote(&v, now),
                    NetMsg::Sync(blocks) => {
                        self.catch_up(to, blocks);
                        return;
                    }
                    NetMsg::Proposal(p, block) => {
                        // A proposal for a later height is held by the consensus and
                        // comes back as `Action::CheckProposal` once the host gets there.
                        let valid = p.height == h.chain.next_height()
                            && block.header.hash() == p.block
                            && h.chain.check_proposal(&block).is_ok();
                        self.bodies.entry(p.block).or_insert(block);
                        h.consensus.on_proposal(&p, valid, now)
                    }
                };
                (to, actions)
            }
        };
        self.act(host, actions);
    }

    /// Carries out a host's consensus actions.
    fn act(&mut self, host: usize, actions: Vec<Action>) {
        let mut pending = std::collections::VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            let now = self.queue.now_ms();
            match action {
                Action::BuildBlock { height, round } => {
                    let h = &self.hosts[host];
                    let me = h
                        .chain
                        .voting()
                        .position(h.chain.registry().id_of(&h.agent.key().public_key()).unwrap_or(u32::MAX));
                    let Some(me) = me else { continue };
                    let block = h.build_block(round, me as u32);
                    let hash = block.header.hash();
                    self.bodies.insert(hash, Arc::new(block));
                    pending.extend(self.hosts[host].consensus.propose(height, round, hash, now));
                }
                Action::CheckProposal(p) => {
                    let h = &mut self.hosts[host];
                    let valid = self
                        .bodies
                        .get(&p.block)
                        .is_some_and(|b| b.header.hash() == p.block && h.chain.check_proposal(b).is_ok());
                    pending.extend(h.consensus.on_proposal(&p, valid, now));
                }
                Action::Broadcast(Message::Proposal(p)) => {
                    let Some(block) = self.bodies.get(&p.block).cloned() else { continue };
                    if self.hosts[host].role == Role::EquivocatingProposer {
                        self.equivocate_proposal(host, &p, &block);
                    } else {
                        let p = Arc::new(p);
                        self.broadcast(host, NetMsg::Proposal(Arc::clone(&p), Arc::clone(&block)));
                    }
                }
                Action::Broadcast(Message::Vote(v)) => {
                    if self.hosts[host].role == Role::EquivocatingProposer && v.block.is_some() {
                        // The other half sees a vote for the twin block (or nil).
                        let twin = v.block.and_then(|b| self.twins.get(&b).copied());
                        let key = self.hosts[host].agent.key();
                        let other = Arc::new(Vote::signed(key, v.voter, v.height, v.round, v.kind, twin));
                        let v = Arc::new(v);
                        self.broadcast_split(host, |to| {
                            NetMsg::Vote(if to % 2 == 0 { Arc::clone(&v) } else { Arc::clone(&other) })
                        });
                    } else {
                        let v = Arc::new(v);
                        self.broadcast(host, NetMsg::Vote(Arc::clone(&v)));
                    }
                }
                Action::ScheduleTimeout(t) => self.queue.push(t.at_ms, Event::Timeout { host, timeout: t }),
                Action::Commit { height, round, block, finality } => {
                    self.commit(host, height, round, block, finality)
                }
                Action::Evidence(e) => {
                    let tx = Arc::new(SignedTransaction::sign(
                        self.hosts[host].agent.key(),
                        Transaction::Equivocation(e),
                    ));
                    self.gossip(host, tx);
                }
            }
        }
    }

    /// An equivocating proposer sends its block to half the hosts and a twin
    /// (same header, no transactions) to the other half.
    fn equivocate_proposal(&mut self, host: usize, p: &Proposal, block: &Arc<Block>) {
        let mut twin = (**block).clone();
        twin.transactions.clear();
        twin.header.transactions_root = crate::chain::types::transactions_root(&twin.transactions);
        let twin_hash = twin.header.hash();
        let twin = Arc::new(twin);
        self.bodies.insert(twin_hash, Arc::clone(&twin));
        self.twins.insert(p.block, twin_hash);
        let key = self.hosts[host].agent.key();
        let q = Arc::new(Proposal::signed(key, p.proposer, p.height, p.round, twin_hash, p.pol_round));
        let p = Arc::new(p.clone());
        let block = Arc::clone(block);
        self.broadcast_split(host, |to| {
            if to % 2 == 0 {
                NetMsg::Proposal(Arc::clone(&p), Arc::clone(&block))
            } else {
                NetMsg::Proposal(Arc::clone(&q), Arc::clone(&twin))
            }
        });
    }

    /// Gossip: a host passes a vote of its current height it received first
    /// hand on to one random peer, with probability [`RELAY_PEERS`]` / N`, so
    /// that each vote is relayed about [`RELAY_PEERS`] times whatever the size
    /// of the network. This is how a vote sent to only part of the network (an
    /// equivocator's) reaches the rest. Relayed copies are not relayed again.
    fn relay(&mut self, host: usize, v: Arc<Vote>) {
        let h = &self.hosts[host];
        if h.consensus.height() != Some(v.height) || h.role != Role::Honest {
            return;
        }
        let n = self.hosts.len() as u64;
        if self.relay_rng.range(0, n - 1) >= RELAY_PEERS {
            return;
        }
        let to = self.relay_rng.range(0, n - 1) as usize;
        let now = self.queue.now_ms();
        if to != host
            && let Some(at) = self.net.send(host, to, now)
        {
            self.queue.push(at, Event::Deliver { to, msg: NetMsg::RelayedVote(v) });
        }
    }

    /// Sends `msg` to every other host: one queue entry per distinct arrival
    /// time, not per host (the queue is the simulator's cost at 1000 hosts).
    fn broadcast(&mut self, from: usize, msg: NetMsg) {
        let now = self.queue.now_ms();
        let mut arrivals: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for to in 0..self.hosts.len() {
            if to != from
                && let Some(at) = self.net.send(from, to, now)
            {
                arrivals.entry(at).or_default().push(to);
            }
        }
        for (at, to) in arrivals {
            self.queue.push(at, Event::DeliverMany { to, msg: msg.clone() });
        }
    }

    /// Sends each other host its own message (an equivocator's split).
    fn broadcast_split(&mut self, from: usize, msg: impl Fn(usize) -> NetMsg) {
        let now = self.queue.now_ms();
        for to in 0..self.hosts.len() {
            if to != from
                && let Some(at) = self.net.send(from, to, now)
            {
                self.queue.push(at, Event::Deliver { to, msg: msg(to) });
            }
        }
    }

    fn gossip(&mut self, from: usize, tx: Arc<SignedTransaction>) {
        let id = tx.id();
        self.hosts[from].mempool.add(id, Arc::clone(&tx));
        self.broadcast(from, NetMsg::Tx(id, tx));
    }

    fn commit(
        &mut self,
        host: usize,
        height: u64,
        round: u32,
        hash: Hash32,
        finality: crate::crypto::votes::VoteSet,
    ) {
        let Some(block) = self.bodies.get(&hash).cloned() else { return };
        let first = *self.decided.entry(height).or_insert((hash, None));
        if first.0 != hash {
            self.report.conflicting_commits += 1;
        }
        let fb = FinalBlock { block: (*block).clone(), round, finality };
        let fb = Arc::new(fb);
        self.finals.entry(height).or_insert_with(|| Arc::clone(&fb));
        // The Sprint window is reset by the epoch's last block: read it before.
        let had_sprint = self.hosts[host].chain.sprint().seed.is_some();
        let t = Instant::now();
        let applied = self.hosts[host].chain.apply(&fb);
        if host == self.reference() {
            self.report.replica_blocks.0 += 1;
            self.report.replica_blocks.1 += t.elapsed();
        }
        match applied {
            Err(e) => {
                self.report.halted += 1;
                self.hosts[host].halted = Some(e.to_string());
                return;
            }
            Ok(r) => {
                if let Some((keeper, store)) = &self.store
                    && *keeper == host
                    && let Err(e) = store.commit(&mut self.hosts[host].chain, &fb, &r)
                {
                    self.report.halted += 1;
                    self.hosts[host].halted = Some(format!("chain store: {e}"));
                    return;
                }
                if let Err(e) = self.maybe_restart(host, height) {
                    self.report.halted += 1;
                    self.hosts[host].halted = Some(e);
                    return;
                }
                let entry = self.decided.get_mut(&height).expect("inserted above");
                match entry.1 {
                    None => entry.1 = Some(r.state_root),
                    Some(root) if root != r.state_root && self.hosts[host].role == Role::Honest => {
                        self.report.root_mismatches += 1;
                    }
                    _ => {}
                }
            }
        }
        self.rounds.entry(height).or_insert(round);
        let ids = Arc::clone(
            self.block_ids
                .entry(hash)
                .or_insert_with(|| Arc::new(block.transactions.iter().map(SignedTransaction::id).collect())),
        );
        let h = &mut self.hosts[host];
        h.mempool.remove_included(&ids);
        let mut txs = h.agent.on_block(&mut h.chain, &self.models);
        if host == self.reference() {
            // The users reach the network through this host.
            txs.extend(self.users.act(&mut self.hosts[host].chain));
            self.report.requests = self.users.sent;
        }
        for tx in txs {
            self.gossip(host, Arc::new(tx));
        }
        if host == self.reference() {
            self.observe_epoch(height, had_sprint);
        }
        let next = height + 1;
        let at = self.queue.now_ms() + self.config.params.block_interval_ms;
        self.queue.push(at, Event::StartHeight { host, height: next });
    }

    /// The honest online host whose replica the report reads.
    /// Rebuilds host `host`'s chain from the encoding of its own snapshot
    /// when it is the restarting host and `height` is due.
    fn maybe_restart(&mut self, host: usize, height: u64) -> Result<(), String> {
        let every = self.config.restart_every_blocks;
        let last_honest = self.hosts.iter().rposition(|h| h.role == Role::Honest);
        if every == 0 || !(height + 1).is_multiple_of(every) || last_honest != Some(host) {
            return Ok(());
        }
        let chain = &mut self.hosts[host].chain;
        let bytes = crate::crypto::wire::encode(&chain.snapshot(true));
        let snapshot = rkyv::from_bytes::<StateSnapshot, rkyv::rancor::Error>(&bytes)
            .map_err(|e| format!("snapshot at height {height} does not decode: {e}"))?;
        let restored =
            Chain::restore(&snapshot, chain.sig_cache().clone(), |_| None).map_err(|e| e.to_string())?;
        *chain = restored;
        self.report.restarts += 1;
        Ok(())
    }

    fn reference(&self) -> usize {
        self.hosts.iter().position(|h| h.role == Role::Honest && h.halted.is_none()).unwrap_or(0)
    }

    /// At an epoch's last block: its row of the table, from the reference replica.
    fn observe_epoch(&mut self, height: u64, beacon: bool) {
        let p = self.config.params.clone();
        if !(height + 1).is_multiple_of(p.epoch_blocks) {
            return;
        }
        let epoch = p.epoch_of(height);
        let roles: Vec<Role> = self.hosts.iter().map(|h| h.role).collect();
        let reference = self.reference();
        let chain = &mut self.hosts[reference].chain;
        let world = chain.world_mut_for_queries();
        let mut row = EpochRow { epoch, beacon, ..EpochRow::default() };
        let mut q = world.query::<(&BatchKey, &BatchStatus, Option<&BatchContents>)>();
        for (key, status, _) in q.iter(world).filter(|(k, _, _)| k.epoch == epoch) {
            let role = roles.get(key.host as usize).copied().unwrap_or(Role::Honest);
            match (role.submits_bad_batch(), status) {
                (false, BatchStatus::Accepted) => row.good_accepted += 1,
                (false, BatchStatus::Rejected) => row.good_rejected += 1,
                (false, _) if role == Role::Honest => row.good_undecided += 1,
                (true, BatchStatus::Accepted) => row.bad_accepted += 1,
                (true, BatchStatus::Rejected) => row.bad_rejected += 1,
                (true, _) => row.bad_refused += 1,
                _ => {}
            }
        }
        let mut hq = world.query::<(&HostId, &Weight, Option<&Penalized>)>();
        for (id, weight, penalized) in hq.iter(world) {
            if roles.get(id.0 as usize) == Some(&Role::Honest) {
                row.honest_weight += weight.0;
            } else {
                row.adversary_weight += weight.0;
            }
            if penalized.is_some_and(|p| p.epoch == epoch) {
                row.penalized += 1;
            }
        }
        self.observe_economy(epoch, beacon, &mut row);
        let start = p.epoch_start(epoch);
        let rounds: Vec<u32> = self.rounds.range(start..=height).map(|(_, &r)| r).collect();
        row.blocks = rounds.len() as u32;
        row.first_round_blocks = rounds.iter().filter(|&&r| r == 0).count() as u32;
        row.max_round = rounds.iter().copied().max().unwrap_or(0);
        if let Some(f) = self.config.on_epoch {
            f(&row, self.started.elapsed().as_secs_f64());
        }
        self.report.epochs.push(row);
    }

    /// The epoch's payouts by strategy, read from the reference replica
    /// right after the epoch's close.
    fn observe_economy(&mut self, epoch: u64, sprint: bool, row: &mut EpochRow) {
        let reference = self.reference();
        let world = self.hosts[reference].chain.world_mut_for_queries();
        let mut q = world.query::<(&HostId, &crate::rewards::Payout)>();
        let mut payouts: Vec<(u32, crate::rewards::Payout)> =
            q.iter(world).filter(|(_, p)| p.epoch == epoch).map(|(i, p)| (i.0, *p)).collect();
        payouts.sort_unstable_by_key(|p| p.0);
        let finished: u64 = payouts.iter().map(|(_, p)| u64::from(p.work.finished)).sum();
        let tokens: u64 = payouts.iter().map(|(_, p)| p.work.tokens).sum();
        let mean_tokens = tokens as f64 / finished.max(1) as f64;
        for (id, p) in &payouts {
            let Some(host) = self.hosts.get(*id as usize) else { continue };
            let role = host.role;
            row.tasks += p.work.finished;
            row.checks += p.work.checks;
            row.frauds += p.work.frauds;
            if let Some(why) = p.withheld {
                if role == Role::Honest {
                    row.honest_withheld += 1;
                    self.report.honest_withheld.push((epoch, *id, why, p.work));
                } else {
                    row.adversaries_withheld += 1;
                }
            }
            let b = host.agent.behavior();
            let nonces = if sprint && !b.fabricate_proofs { b.nonces_per_sprint } else { 0 };
            let run = match b.task_cheat {
                None => p.work.tokens as f64,
                Some(crate::agent::tasks::TaskCheat::SmallerModel) => p.work.tokens as f64 / 4.0,
                Some(crate::agent::tasks::TaskCheat::WrongOutputs) => 0.0,
            };
            let checked = if b.lazy_validator { 0.0 } else { f64::from(p.work.checks) * mean_tokens };
            let work = u128::from(nonces) + (run + checked) as u128;
            let first = &mut self.first_withheld[*id as usize];
            if p.withheld.is_some() && first.is_none() {
                *first = Some(epoch);
            }
            let Some(s) = self.report.strategies.iter_mut().find(|s| s.role == role.name()) else { continue };
            s.host_epochs += 1;
            s.work += work;
            match p.withheld {
                None => s.released += p.earned,
                Some(_) => {
                    s.withheld_epochs += 1;
                    s.forfeited += p.earned;
                    if *first == Some(epoch) {
                        s.detected_hosts += 1;
                        s.epochs_to_detection += epoch + 1;
                    }
                }
            }
        }
    }

    fn finish(&mut self, wall: std::time::Duration) {
        self.report.wall = wall;
        self.report.simulated_ms = self.queue.now_ms();
        self.report.messages = (self.net.delivered, self.net.lost);
        self.report.height =
            self.hosts.iter().filter(|h| h.online()).filter_map(|h| h.chain.tip().height).min().unwrap_or(0);
        let reference = self.reference();
        self.report.system_times = self.hosts[reference].chain.system_times();
        let mut parts: Vec<u8> = Vec::new();
        for r in &self.report.epochs {
            parts.extend_from_slice(format!("{r:?}").as_bytes());
        }
        for (h, (hash, root)) in &self.decided {
            parts.extend_from_slice(&h.to_le_bytes());
            parts.extend_from_slice(hash);
            parts.extend_from_slice(&root.unwrap_or([0; 32]));
        }
        parts.extend_from_slice(&self.report.simulated_ms.to_le_bytes());
        parts.extend_from_slice(&self.report.messages.0.to_le_bytes());
        parts.extend_from_slice(&self.report.messages.1.to_le_bytes());
        self.report.digest = tagged_hash("gonka/sim-report", &[&parts]);
    }
}
