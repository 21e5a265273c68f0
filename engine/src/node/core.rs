//! One host's protocol logic, free of sockets and clocks: messages and
//! timeouts in, [`Output`]s out. The runtime ([`super::runtime`]) feeds it
//! from the network and a timer; tests feed it directly.
//!
//! ```text
//!  peer message ─► on_message ─┐                         ┌─► Broadcast / Send / Ban
//!  timeout      ─► on_timeout ─┼─► Consensus ─► actions ─┼─► Schedule(timeout)
//!  tick         ─► tick       ─┘        │                └─► Committed (status line)
//!                                Commit ─► Chain::apply ─► ChainStore::commit ─► Agent ─► txs (gossip)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use gonka_kernels::encoding::{Hash32, tagged_hash};
use gonka_kernels::llm::artifact::Artifact;

use super::addresses::{AddressBook, HostAddress};
use super::inference::{ModelRunner, TaskResult};
use super::messages::{MAX_SYNC_BLOCKS, NodeMessage};
use crate::agent::{Agent, Behavior, ModelCache};
use crate::chain::types::{Block, FinalBlock, SignedTransaction, Transaction};
use crate::chain::{ApplyReport, Chain};
use crate::consensus::{Action, Consensus, HeightContext, Message, Timeout, TimeoutParams};
use crate::crypto::{Domain, HostKey};
use crate::inference::mining::ServerMiner;
use crate::inference::payload::InferencePayload;
use crate::sim::host::Mempool;
use crate::store::ChainStore;

/// Most block bodies kept for the heights being decided.
const MAX_BODIES: usize = 256;
/// Receivers of a vote that pass it on, on average.
const RELAY_PEERS: u64 = 2;
/// Votes and proposals remembered as relayed.
const MAX_RELAYED: usize = 1 << 14;

/// A peer, by its public key bytes (the net layer's identity).
pub type PeerKey = Vec<u8>;

/// What the runtime must do for the core.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send to every connected peer.
    Broadcast(Arc<NodeMessage>),
    /// Send to one peer.
    Send(PeerKey, Arc<NodeMessage>),
    /// Pass on to every peer but the one it came from (gossip).
    Relay(PeerKey, Arc<NodeMessage>),
    /// Call [`NodeCore::on_timeout`] with this when its time comes.
    Schedule(Timeout),
    /// The peer sent something invalid: disconnect and ban it.
    Ban(PeerKey, String),
    /// A block was applied and stored.
    Committed(CommitInfo),
    /// The node stopped: its replica or its store failed.
    Halted(String),
}

/// What a committed block did, for the status line.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    /// Height.
    pub height: u64,
    /// Epoch.
    pub epoch: u64,
    /// Round it was decided in.
    pub round: u32,
    /// Transactions in it, and those that failed.
    pub transactions: (usize, usize),
    /// The state root after it.
    pub state_root: Hash32,
    /// Where the epoch stands: beacon, sprint, validation or serving.
    pub phase: &'static str,
    /// Voting weights now, in voting-list order.
    pub weights: Vec<u64>,
    /// Tasks that ended in it.
    pub tasks_ended: usize,
}

/// One host: replica, store, consensus, agent and mempool.
#[derive(Debug)]
pub struct NodeCore {
    chain: Chain,
    store: ChainStore,
    consensus: Consensus,
    agent: Agent,
    models: ModelCache,
    mempool: Mempool,
    bodies: BTreeMap<Hash32, Arc<Block>>,
    /// Heights peers said they need next: who is ahead of us.
    peer_heights: BTreeMap<PeerKey, u64>,
    /// The outstanding sync request: (peer, first height, asked at).
    syncing: Option<(PeerKey, u64, u64)>,
    /// (height, round, step) at the last tick: unchanged means stuck.
    progress: Option<(Option<u64>, u32, crate::consensus::Step)>,
    /// API requests waiting for their completion, by task id.
    waiters: BTreeMap<Hash32, Waiter>,
    /// Runs this host's tasks and checks others' on the model server.
    runner: Arc<ModelRunner>,
    /// When each result the runner wants was last asked for.
    fetch_asked: BTreeMap<Hash32, u64>,
    /// Votes and proposals already passed on.
    relayed: gonka_net::peer::SeenCache,
    /// Where hosts said they can be reached (this host's own record included).
    addresses: AddressBook,
    /// Prompts this host passed on as a task's intermediary: when, and the
    /// host that sent it (partial outputs go back to it).
    forwarded: BTreeMap<Hash32, (u64, PeerKey)>,
    halted: Option<String>,
}

/// A completion an API request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The task.
    pub task: Hash32,
    /// The executor's output tokens (their hash is the task's output commitment on chain).
    pub output: Vec<u32>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Tokens the chain charged.
    pub tokens: u32,
    /// Whether the cost hit the request's limit.
    pub cancelled: bool,
}

#[derive(Debug)]
struct Waiter {
    reply: flume::Sender<Result<Completion, String>>,
    /// The request, for the executor.
    payload: InferencePayload,
    /// When the executor was last sent the prompt.
    prompt_sent_ms: Option<u64>,
    /// When the executor was last asked for the output.
    asked_ms: Option<u64>,
    /// When the request was sent.
    since_ms: u64,
    /// Where provisional output tokens go while the task runs.
    partial: Option<flume::Sender<Vec<u32>>>,
    /// Output tokens passed to `partial` so far.
    streamed: u32,
}

/// How often a prompt or an output request is sent again while unanswered.
const RESEND_MS: u64 = 2_000;

/// How long an intermediary remembers a prompt it passed on.
const FORWARD_MEMORY_MS: u64 = 60_000;

/// How long an API request waits for its task before giving up.
const API_WAIT_MS: u64 = 120_000;

impl NodeCore {
    /// A host with the key of material `ikm` on `chain` (as loaded from
    /// `store`), mining `nonces_per_sprint` nonces per Sprint on `threads` cores.
    pub fn new(
        chain: Chain,
        store: ChainStore,
        key: HostKey,
        timeouts: TimeoutParams,
        nonces_per_sprint: u64,
        threads: usize,
        runner: Arc<ModelRunner>,
    ) -> Self {
        // The agent's secrets (seed reveals, DKG dealings) come from this
        // host's own signature, so a restarted host derives the same ones.
        let entropy = tagged_hash("gonka/agent-entropy", &[&key.sign(Domain::LocalSecret, b"agent entropy")]);
        let consensus_key = key.duplicate();
        let consensus = Consensus::new(Some(consensus_key), timeouts, chain.sig_cache().clone());
        let agent = Agent::new(key, entropy, Behavior::honest(nonces_per_sprint), threads)
            .with_runner(Arc::clone(&runner) as Arc<dyn crate::agent::tasks::TaskRunner>)
            // The Sprint runs on the model server's idle capacity, in slices,
            // so neither consensus nor requests wait for it.
            .with_miner(Arc::new(ServerMiner::new(Arc::clone(runner.server()), threads)));
        Self {
            chain,
            store,
            consensus,
            agent,
            models: ModelCache::default(),
            mempool: Mempool::default(),
            bodies: BTreeMap::new(),
            peer_heights: BTreeMap::new(),
            syncing: None,
            progress: None,
            waiters: BTreeMap::new(),
            runner,
            fetch_asked: BTreeMap::new(),
            relayed: gonka_net::peer::SeenCache::new(MAX_RELAYED),
            addresses: AddressBook::default(),
            forwarded: BTreeMap::new(),
            halted: None,
        }
    }

    /// The replica.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Mutable replica access for reads that need queries.
    pub fn chain_mut(&mut self) -> &mut Chain {
        &mut self.chain
    }

    /// The store.
    pub fn store(&self) -> &ChainStore {
        &self.store
    }

    /// Why the node stopped, if it did.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Transactions waiting for a block.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// Signs this host's peer address as of `now_unix_ms`; peers learn it
    /// from [`NodeCore::on_connected`] and gossip.
    pub fn announce(&mut self, addr: std::net::SocketAddr, now_unix_ms: u64) {
        let record = HostAddress::sign(self.agent.key(), addr, now_unix_ms);
        self.addresses.take([record], |_| true);
    }

    /// Where host `key` said it can be reached, for a dial when this host must
    /// send to it without a connection.
    pub fn address_of(&self, key: &[u8]) -> Option<std::net::SocketAddr> {
        self.addresses.addr(key)
    }

    /// A new connection: the peer gets every address record held here.
    pub fn on_connected(&mut self, peer: &[u8]) -> Vec<Output> {
        self.addresses
            .chunks()
            .into_iter()
            .map(|c| Output::Send(peer.to_vec(), Arc::new(NodeMessage::Addresses(c))))
            .collect()
    }

    /// Starts deciding the next height; the agent acts on the loaded state.
    pub fn start(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        let txs = self.agent.on_block(&mut self.chain, &self.models);
        for tx in txs {
            self.gossip(tx, &mut out);
        }
        self.start_height(now_ms, &mut out);
        out
    }

    /// A transaction from this host's users (the API).
    pub fn submit(&mut self, tx: SignedTransaction) -> Vec<Output> {
        let mut out = Vec::new();
        self.gossip(tx, &mut out);
        out
    }

    /// An API request: `tx` (an inference request for `task`) goes to the
    /// network, and `reply` gets the completion once the task is finished
    /// on chain and its executor sent the text.
    pub fn submit_api(
        &mut self,
        tx: SignedTransaction,
        task: Hash32,
        payload: InferencePayload,
        reply: flume::Sender<Result<Completion, String>>,
        partial: Option<flume::Sender<Vec<u32>>>,
        now_ms: u64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let waiter = Waiter {
            reply,
            payload,
            prompt_sent_ms: None,
            asked_ms: None,
            since_ms: now_ms,
            partial,
            streamed: 0,
        };
        self.waiters.insert(task, waiter);
        self.gossip(tx, &mut out);
        out
    }

    /// Task `id` as the state holds it, or as the store last saw it with its end.
    fn task_view(&self, id: &Hash32) -> Option<(crate::tasks::Task, Option<crate::tasks::TaskEnd>)> {
        if let Some(t) = self.chain.task(id) {
            return Some((t.clone(), None));
        }
        let txn = self.store.read().ok()?;
        let record = crate::store::tables::TASKS.get_owned(&txn, id).ok().flatten()?;
        Some((record.task, record.end.map(|e| e.1)))
    }

    /// The public key of registry host `id`.
    fn host_key(&self, id: u32) -> Option<crate::crypto::PublicKeyBytes> {
        let e = self.chain.registry().entity(id)?;
        self.chain.world().get::<crate::hosts::HostPublicKey>(e).map(|k| k.0)
    }

    /// Moves API requests along: the prompt to the executor once the task is
    /// on chain, the output back once it is finished.
    fn serve_waiters(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        use crate::tasks::{TaskEnd, TaskStatus};
        self.stream_partials(out);
        let me = self.agent.key().public_key();
        let mut done = Vec::new();
        let ids: Vec<Hash32> = self.waiters.keys().copied().collect();
        for id in ids {
            let Some(w) = self.waiters.get(&id) else { continue };
            if now_ms > w.since_ms + API_WAIT_MS {
                done.push((
                    id,
                    Err("no completion in time: the task was not finished, or its output not delivered"
                        .into()),
                ));
                continue;
            }
            // Not on chain yet: wait.
            let Some((task, end)) = self.task_view(&id) else { continue };
            if let Some(end @ (TaskEnd::Expired | TaskEnd::Convicted)) = end {
                done.push((id, Err(format!("task {} {}", hex::encode(id), end.name()))));
                continue;
            }
            let Some(executor) = self.host_key(task.executor) else { continue };
            // Through the drawn intermediary, so the executor does not learn
            // which host the user asked; this host, when drawn, is the
            // intermediary itself.
            let prompt_to = match self.host_key(task.intermediary) {
                Some(relay) if relay != me => relay,
                _ => executor,
            };
            let Some(w) = self.waiters.get_mut(&id) else { continue };
            match &task.status {
                TaskStatus::Requested if executor == me => {
                    if w.prompt_sent_ms.is_none() {
                        w.prompt_sent_ms = Some(now_ms);
                        self.runner.deliver_prompt(&task, w.payload.clone());
                    }
                }
                TaskStatus::Requested => {
                    if w.prompt_sent_ms.is_none_or(|at| now_ms > at + RESEND_MS) {
                        w.prompt_sent_ms = Some(now_ms);
                        let msg = NodeMessage::Prompt { task: id, payload: w.payload.clone() };
                        out.push(Output::Send(prompt_to.to_vec(), Arc::new(msg)));
                    }
                }
                TaskStatus::Finished(f) | TaskStatus::Disputed(f, _) => {
                    if executor == me {
                        if let Some(r) = self.runner.completion(&id) {
                            done.push((id, Ok(completion(id, &r.output, &r.payload, f))));
                        }
                    } else if w.asked_ms.is_none_or(|at| now_ms > at + RESEND_MS) {
                        w.asked_ms = Some(now_ms);
                        out.push(Output::Send(
                            executor.to_vec(),
                            Arc::new(NodeMessage::GetTaskOutput { task: id }),
                        ));
                    }
                }
            }
        }
        for (id, result) in done {
            if let Some(w) = self.waiters.remove(&id) {
                let _ = w.reply.send(result);
            }
        }
        self.forwarded.retain(|_, (at, _)| now_ms <= *at + FORWARD_MEMORY_MS);
        self.fetch_for_checks(now_ms, out);
    }

    /// Asks executors for the outputs this host was selected to check.
    fn fetch_for_checks(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let wanted = self.runner.wanted();
        self.fetch_asked.retain(|t, _| wanted.iter().any(|(w, _)| w == t));
        for (task, executor) in wanted {
            if self.fetch_asked.get(&task).is_some_and(|&at| now_ms <= at + RESEND_MS) {
                continue;
            }
            let Some(key) = self.host_key(executor) else { continue };
            self.fetch_asked.insert(task, now_ms);
            out.push(Output::Send(key.to_vec(), Arc::new(NodeMessage::GetTaskOutput { task })));
        }
    }

    /// An executor's output arrived: for an API request waiting on it, and for
    /// a check this host must make. Its hashes must match the chain.
    fn on_task_output(
        &mut self,
        task: Hash32,
        payload: InferencePayload,
        output: Vec<u32>,
        artifact: Vec<u8>,
    ) {
        let Some((t, _)) = self.task_view(&task) else { return };
        let (crate::tasks::TaskStatus::Finished(f) | crate::tasks::TaskStatus::Disputed(f, _)) = &t.status
        else {
            return;
        };
        let Some(artifact) = Artifact::decode(&artifact) else { return };
        let result = TaskResult { payload, output, artifact };
        if !result.matches(&t, f) {
            tracing::debug!(task = %hex::encode(task), "an output that does not match its commitments");
            return;
        }
        if let Some(w) = self.waiters.remove(&task) {
            let _ = w.reply.send(Ok(completion(task, &result.output, &result.payload, f)));
        }
        if self.runner.wants(&task) {
            self.runner.deliver_result(&task, result);
        }
    }

    /// A peer asks for the completion of a task this host executed.
    fn on_get_task_output(&mut self, peer: &[u8], task: Hash32, out: &mut Vec<Output>) {
        let Some(r) = self.runner.completion(&task) else { return };
        let msg = NodeMessage::TaskOutput {
            task,
            payload: r.payload.clone(),
            output: r.output.clone(),
            artifact: r.artifact.encode(),
        };
        out.push(Output::Send(peer.to_vec(), Arc::new(msg)));
    }

    /// A task's request: run when this host is its executor, passed on to
    /// the executor when this host is its intermediary, dropped otherwise.
    /// Only while the task waits for its executor, and only a payload that
    /// hashes to the task's prompt commitment.
    fn on_prompt(
        &mut self,
        from: &[u8],
        task: Hash32,
        payload: InferencePayload,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let me = self.chain.registry().id_of(&self.agent.key().public_key());
        let Some(t) = self.chain.task(&task) else { return };
        if me.is_none() || !matches!(t.status, crate::tasks::TaskStatus::Requested) {
            return;
        }
        if Some(t.executor) == me {
            let t = t.clone();
            self.runner.deliver_prompt(&t, payload);
        } else if Some(t.intermediary) == me && payload.commitment() == t.prompt {
            // At most once per resend period: the asking host resends, and so
            // may an attacker; this host's forwards stay bounded either way.
            if self.forwarded.get(&task).is_some_and(|(at, _)| now_ms <= at + RESEND_MS / 2) {
                return;
            }
            let Some(executor) = self.host_key(t.executor) else { return };
            self.forwarded.insert(task, (now_ms, from.to_vec()));
            tracing::info!(task = %hex::encode(task), executor = t.executor, "prompt passed on as the task's intermediary");
            out.push(Output::Send(executor.to_vec(), Arc::new(NodeMessage::Prompt { task, payload })));
        }
    }

    /// Provisional output tokens of `task` from `from`: to this host's API
    /// waiter when it has one and `from` is the task's executor or
    /// intermediary (in order, or not at all: the final output fills gaps),
    /// on to the asking host when this host passed the prompt on and `from`
    /// is the executor.
    fn on_partial(
        &mut self,
        from: &[u8],
        task: Hash32,
        offset: u32,
        tokens: Vec<u32>,
        out: &mut Vec<Output>,
    ) {
        let Some(t) = self.chain.task(&task) else { return };
        let (executor, intermediary) = (self.host_key(t.executor), self.host_key(t.intermediary));
        let me = self.agent.key().public_key();
        let trusted = |k: Option<crate::crypto::PublicKeyBytes>| k.is_some_and(|k| k[..] == *from);
        if let Some(w) = self.waiters.get_mut(&task) {
            let count = tokens.len() as u32;
            if (trusted(executor) || trusted(intermediary) || from == me)
                && offset == w.streamed
                && let Some(p) = &w.partial
                && p.try_send(tokens).is_ok()
            {
                if w.streamed == 0 {
                    tracing::info!(task = %hex::encode(task), "streaming the output as it is made");
                }
                w.streamed += count;
            }
            return;
        }
        if trusted(executor)
            && let Some((_, origin)) = self.forwarded.get(&task)
        {
            out.push(Output::Send(origin.clone(), Arc::new(NodeMessage::Partial { task, offset, tokens })));
        }
    }

    /// The output tokens this host's runs produced since the last call go
    /// to each task's intermediary (or to this host's own waiter).
    fn stream_partials(&mut self, out: &mut Vec<Output>) {
        let me = self.agent.key().public_key();
        for (task, offset, tokens) in self.runner.take_partials() {
            let Some(t) = self.chain.task(&task) else { continue };
            match self.host_key(t.intermediary) {
                Some(relay) if relay != me && !self.waiters.contains_key(&task) => {
                    out.push(Output::Send(
                        relay.to_vec(),
                        Arc::new(NodeMessage::Partial { task, offset, tokens }),
                    ));
                }
                _ => self.on_partial(&me, task, offset, tokens, out),
            }
        }
    }

    /// Address records from a peer: those new here go on to the other peers.
    fn on_addresses(&mut self, peer: &[u8], records: Vec<HostAddress>, out: &mut Vec<Output>) {
        let me = self.agent.key().public_key();
        let registry = self.chain.registry();
        let kept = self.addresses.take(records, |k| *k != me && registry.id_of(k).is_some());
        if !kept.is_empty() {
            out.push(Output::Relay(peer.to_vec(), Arc::new(NodeMessage::Addresses(kept))));
        }
    }

    fn gossip(&mut self, tx: SignedTransaction, out: &mut Vec<Output>) {
        let tx = Arc::new(tx);
        self.mempool.add(tx.id(), Arc::clone(&tx));
        out.push(Output::Broadcast(Arc::new(NodeMessage::Tx(Box::new((*tx).clone())))));
    }

    fn start_height(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let height = self.chain.next_height();
        if self.halted.is_some() || self.consensus.height() == Some(height) {
            return;
        }
        let ctx = HeightContext {
            height,
            hosts: Arc::clone(&self.chain.voting().hosts),
            proposer_seed: self.chain.proposer_seed(),
        };
        let actions = self.consensus.start_height(ctx, now_ms);
        self.act(actions, now_ms, out);
    }

    /// A message from `peer`.
    pub fn on_message(&mut self, peer: &[u8], msg: NodeMessage, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        match msg {
            NodeMessage::Tx(tx) => {
                // Gossip: a transaction new to this host goes on to its other peers.
                let id = tx.id();
                if !self.mempool.knows(&id) {
                    out.push(Output::Relay(peer.to_vec(), Arc::new(NodeMessage::Tx(tx.clone()))));
                    self.mempool.add(id, Arc::new(*tx));
                }
            }
            NodeMessage::Vote(v) => {
                // Votes of the height being decided go on once, each from about
                // RELAY_PEERS of its receivers (drawn by the vote and this host's
                // key), so that a vote sent to part of the network (an
                // equivocator's) reaches the rest at a cost linear in the peers.
                let draw = tagged_hash("gonka/relay-draw", &[&v.signature, &self.agent.key().public_key()]);
                let peers = self.peer_heights.len().max(1) as u64;
                let chosen = u64::from(u16::from_le_bytes([draw[0], draw[1]])) * peers < RELAY_PEERS * 65_536;
                if chosen
                    && self.consensus.height() == Some(v.height)
                    && self.relayed.insert(tagged_hash("gonka/relayed", &[&v.signature]))
                {
                    out.push(Output::Relay(peer.to_vec(), Arc::new(NodeMessage::Vote(v.clone()))));
                }
                let actions = self.consensus.on_vote(&v, now_ms);
                self.act(actions, now_ms, &mut out);
            }
            NodeMessage::Proposal(p) => {
                if p.0.height == self.chain.next_height()
                    && self.relayed.insert(tagged_hash("gonka/relayed", &[&p.0.signature]))
                {
                    out.push(Output::Relay(peer.to_vec(), Arc::new(NodeMessage::Proposal(p.clone()))));
                }
                let (proposal, block) = *p;
                let valid = proposal.height == self.chain.next_height()
                    && block.header.hash() == proposal.block
                    && self.chain.check_proposal(&block).is_ok();
                if block.header.hash() == proposal.block && self.bodies.len() < MAX_BODIES {
                    self.bodies.insert(proposal.block, Arc::new(block));
                }
                let actions = self.consensus.on_proposal(&proposal, valid, now_ms);
                self.act(actions, now_ms, &mut out);
            }
            NodeMessage::Status { next_height } => {
                self.peer_heights.insert(peer.to_vec(), next_height);
                self.maybe_sync(now_ms, false, &mut out);
            }
            NodeMessage::GetBlocks { from, count } => {
                let mut blocks = Vec::new();
                for height in from..from.saturating_add(u64::from(count.min(MAX_SYNC_BLOCKS))) {
                    match self.store.final_block(height) {
                        Ok(Some(fb)) => blocks.push(fb),
                        _ => break,
                    }
                }
                if !blocks.is_empty() {
                    out.push(Output::Send(peer.to_vec(), Arc::new(NodeMessage::Blocks(blocks))));
                }
            }
            NodeMessage::Blocks(blocks) => {
                self.catch_up(peer, blocks, now_ms, &mut out);
            }
            NodeMessage::GetTaskOutput { task } => self.on_get_task_output(peer, task, &mut out),
            NodeMessage::TaskOutput { task, payload, output, artifact } => {
                self.on_task_output(task, payload, output, artifact)
            }
            NodeMessage::Prompt { task, payload } => self.on_prompt(peer, task, payload, now_ms, &mut out),
            NodeMessage::Partial { task, offset, tokens } => {
                self.on_partial(peer, task, offset, tokens, &mut out);
            }
            NodeMessage::Addresses(records) => self.on_addresses(peer, records, &mut out),
        }
        out
    }

    /// Asks the most advanced peer for the blocks we miss, one request at a
    /// time. `stuck`: this host's consensus did not move since the last tick.
    fn maybe_sync(&mut self, now_ms: u64, stuck: bool, out: &mut Vec<Output>) {
        let next = self.chain.next_height();
        if let Some((_, from, at)) = &self.syncing
            && *from == next
            && now_ms < at + 2_000
        {
            return;
        }
        let ahead = self.peer_heights.iter().filter(|(_, h)| **h > next).max_by_key(|(_, h)| **h);
        let Some((peer, &their)) = ahead else {
            self.syncing = None;
            return;
        };
        // One height behind is normal during a round; ask when a block is
        // surely final, or when this host's round stands still: the
        // precommits that decided the height may never reach it (the peers
        // ahead have moved on and no longer send them), and the peers ahead
        // may need this host's votes for the next height.
        if their <= next + 1 && self.consensus.height() == Some(next) && self.syncing.is_none() && !stuck {
            return;
        }
        let count = u32::try_from(their - next).unwrap_or(u32::MAX).min(MAX_SYNC_BLOCKS);
        self.syncing = Some((peer.clone(), next, now_ms));
        tracing::debug!(from = next, count, their, "asking a peer for blocks");
        out.push(Output::Send(peer.clone(), Arc::new(NodeMessage::GetBlocks { from: next, count })));
    }

    /// Applies final blocks a peer sent, in order; a block whose finality
    /// does not verify bans the peer.
    fn catch_up(&mut self, peer: &[u8], blocks: Vec<FinalBlock>, now_ms: u64, out: &mut Vec<Output>) {
        self.syncing = None;
        tracing::debug!(
            blocks = blocks.len(),
            first = blocks.first().map(|b| b.block.header.height),
            next = self.chain.next_height(),
            "blocks from a peer"
        );
        for fb in blocks {
            let height = fb.block.header.height;
            if height != self.chain.next_height() {
                continue;
            }
            // Checked here, not left to the consensus: it may have decided this
            // height from the precommits without ever receiving the block.
            let hash = fb.block.header.hash();
            let hosts = Arc::clone(&self.chain.voting().hosts);
            let cache = self.chain.sig_cache().clone();
            if let Err(e) =
                crate::consensus::verify_finality(&hosts, height, fb.round, &hash, &fb.finality, &cache)
            {
                out.push(Output::Ban(peer.to_vec(), format!("sync block {height}: {e}")));
                return;
            }
            self.bodies.insert(hash, Arc::new(fb.block.clone()));
            self.commit(height, fb.round, hash, fb.finality, now_ms, out);
            if self.halted.is_some() {
                return;
            }
        }
        self.maybe_sync(now_ms, false, out);
    }

    /// A scheduled timeout fired.
    pub fn on_timeout(&mut self, t: Timeout, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_none() {
            let actions = self.consensus.on_timeout(t, now_ms);
            self.act(actions, now_ms, &mut out);
        }
        out
    }

    /// Periodic: announce our height (laggards sync from us), resend our
    /// consensus messages when nothing moved since the last tick, sync if behind.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        let next_height = self.chain.next_height();
        out.push(Output::Broadcast(Arc::new(NodeMessage::Status { next_height })));
        let progress = (self.consensus.height(), self.consensus.round(), self.consensus.step());
        let stuck = self.progress.replace(progress) == Some(progress);
        if stuck {
            for m in self.consensus.rebroadcast() {
                match m {
                    Message::Proposal(p) => {
                        if let Some(block) = self.bodies.get(&p.block) {
                            let block = (**block).clone();
                            out.push(Output::Broadcast(Arc::new(NodeMessage::Proposal(Box::new((
                                p, block,
                            ))))));
                        }
                    }
                    Message::Vote(v) => out.push(Output::Broadcast(Arc::new(NodeMessage::Vote(v)))),
                }
            }
            // Transactions not yet in a block go out again (a peer may have joined since).
            for tx in self.mempool.take(64) {
                out.push(Output::Broadcast(Arc::new(NodeMessage::Tx(Box::new(tx)))));
            }
        }
        self.maybe_sync(now_ms, stuck, &mut out);
        self.serve_waiters(now_ms, &mut out);
        out
    }

    fn act(&mut self, actions: Vec<Action>, now_ms: u64, out: &mut Vec<Output>) {
        let mut pending = VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            match action {
                Action::BuildBlock { height, round } => {
                    let me = self.chain.registry().id_of(&self.agent.key().public_key());
                    let Some(me) = me.and_then(|id| self.chain.voting().position(id)) else { continue };
                    let max = self.chain.params().max_block_transactions as usize;
                    let block = self.chain.build_block(round, me as u32, self.mempool.take(max));
                    let hash = block.header.hash();
                    self.bodies.insert(hash, Arc::new(block));
                    pending.extend(self.consensus.propose(height, round, hash, now_ms));
                }
                Action::CheckProposal(p) => {
                    let valid = self
                        .bodies
                        .get(&p.block)
                        .is_some_and(|b| b.header.hash() == p.block && self.chain.check_proposal(b).is_ok());
                    pending.extend(self.consensus.on_proposal(&p, valid, now_ms));
                }
                Action::Broadcast(Message::Proposal(p)) => {
                    let Some(block) = self.bodies.get(&p.block) else { continue };
                    let block = (**block).clone();
                    out.push(Output::Broadcast(Arc::new(NodeMessage::Proposal(Box::new((p, block))))));
                }
                Action::Broadcast(Message::Vote(v)) => {
                    out.push(Output::Broadcast(Arc::new(NodeMessage::Vote(v))));
                }
                Action::ScheduleTimeout(t) => out.push(Output::Schedule(t)),
                Action::Commit { height, round, block, finality } => {
                    self.commit(height, round, block, finality, now_ms, out);
                    if self.halted.is_some() {
                        return;
                    }
                }
                Action::Evidence(e) => {
                    let tx = SignedTransaction::sign(self.agent.key(), Transaction::Equivocation(e));
                    self.gossip(tx, out);
                }
            }
        }
    }

    fn commit(
        &mut self,
        height: u64,
        round: u32,
        hash: Hash32,
        finality: crate::crypto::votes::VoteSet,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(block) = self.bodies.get(&hash).cloned() else {
            // Decided without its body: a peer will send it with the final block.
            return;
        };
        let fb = FinalBlock { block: (*block).clone(), round, finality };
        let report = match self.chain.apply(&fb) {
            Ok(r) => r,
            Err(e) => return self.halt(format!("block {height}: {e}"), out),
        };
        if let Err(e) = self.store.commit(&mut self.chain, &fb, &report) {
            return self.halt(format!("storing block {height}: {e}"), out);
        }
        let ids: Vec<Hash32> = fb.block.transactions.iter().map(SignedTransaction::id).collect();
        self.mempool.remove_included(&ids);
        self.bodies.retain(|_, b| b.header.height > height);
        out.push(Output::Committed(self.commit_info(height, round, &report)));
        let txs = self.agent.on_block(&mut self.chain, &self.models);
        for tx in txs {
            self.gossip(tx, out);
        }
        self.serve_waiters(now_ms, out);
        self.start_height(now_ms, out);
    }

    fn commit_info(&self, height: u64, round: u32, report: &ApplyReport) -> CommitInfo {
        let failed = report.receipts.iter().filter(|r| r.is_err()).count();
        CommitInfo {
            height,
            epoch: self.chain.clock().epoch,
            round,
            transactions: (report.receipts.len(), failed),
            state_root: report.state_root,
            phase: phase(&self.chain.sprint(), height),
            weights: self.chain.voting().weights.clone(),
            tasks_ended: report.closed_tasks.len(),
        }
    }

    fn halt(&mut self, why: String, out: &mut Vec<Output>) {
        self.halted = Some(why.clone());
        out.push(Output::Halted(why));
    }
}

/// The epoch's phase at `height`: the beacon until the Sprint seed is
/// known, then the Sprint, its validation, and serving until the epoch ends.
fn phase(sprint: &crate::sprints::Sprint, height: u64) -> &'static str {
    match sprint.seed {
        None => "beacon",
        Some(_) if height < sprint.start => "beacon",
        Some(_) if height <= sprint.end => "sprint",
        Some(_) if height <= sprint.validation_end => "validation",
        Some(_) => "serving",
    }
}

/// The reply to an API request from the executor's output.
fn completion(
    task: Hash32,
    output: &[u32],
    payload: &InferencePayload,
    f: &crate::tasks::Finished,
) -> Completion {
    Completion {
        task,
        output: output.to_vec(),
        prompt_tokens: payload.prompt.len() as u32,
        tokens: f.tokens,
        cancelled: f.cancelled,
    }
}
