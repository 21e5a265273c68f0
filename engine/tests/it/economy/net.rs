//! The test network of the economy tests: two replicas of a `tiny` chain
//! with funded users and a funded reserve, the transactions' builders, and
//! the checks every block must pass.

use std::collections::BTreeMap;
use std::rc::Rc;

use gonka_engine::chain::genesis::GenesisAccount;
use gonka_engine::chain::types::{SignedTransaction, Transaction};
use gonka_engine::chain::{ApplyReport, Chain, Genesis, GenesisHost, TxError};
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::crypto::selection::{Probability, select, selection_probability, selection_signature};
use gonka_engine::crypto::{HostKey, PublicKeyBytes};
use gonka_engine::params::{Amount, ChainParams, EconomyParams};
use gonka_engine::rewards::rate::decay;
use gonka_engine::rewards::{Earnings, EpochWork};
use gonka_engine::tasks::routing::{Candidate, route};
use gonka_engine::tasks::{
    DisputeVote, Finished, InferenceFinish, InferenceRequest, Serves, Task, TaskCheck, TaskIndex, TaskStatus,
    task_id,
};
use gonka_kernels::encoding::{Hash32, tagged_hash};

pub(super) const SEED: u8 = 0;
/// Each user's genesis balance.
pub(super) const FUNDS: Amount = 1_000_000;
/// The reserve at genesis.
pub(super) const RESERVE: Amount = 10_000_000;
/// Genesis users: enough that a test finds a task id with the routing and
/// selection it needs among their first requests.
pub(super) const USERS: usize = 16;

pub(super) fn host_key(i: usize) -> HostKey {
    HostKey::from_ikm(&tagged_hash("test/economy-host", &[&[SEED], &(i as u64).to_le_bytes()]))
}

pub(super) fn user_key(i: usize) -> HostKey {
    HostKey::from_ikm(&tagged_hash("test/economy-user", &[&[SEED], &(i as u64).to_le_bytes()]))
}

/// `tiny` without dummy requests, so the only tasks are the test's own.
pub(super) fn quiet() -> ChainParams {
    ChainParams {
        economy: EconomyParams { dummy_requests: 0, ..EconomyParams::tiny() },
        ..ChainParams::tiny()
    }
}

/// Two replicas of one chain, the genesis hosts' keys and the users' keys.
pub(super) struct Net {
    pub(super) a: Chain,
    pub(super) b: Chain,
    pub(super) hosts: Vec<Rc<HostKey>>,
    pub(super) users: Vec<Rc<HostKey>>,
}

impl Net {
    pub(super) fn new(params: ChainParams, weights: &[u64]) -> Self {
        println!("economy test keys from seed {SEED}");
        let hosts: Vec<Rc<HostKey>> = (0..weights.len()).map(|i| Rc::new(host_key(i))).collect();
        let mut users: Vec<Rc<HostKey>> = (0..USERS).map(|i| Rc::new(user_key(i))).collect();
        users.sort_by_key(|k| k.public_key());
        let genesis = Genesis {
            params,
            seed: [SEED; 32],
            hosts: hosts.iter().zip(weights).map(|(k, &w)| GenesisHost::new(k, w)).collect(),
            accounts: users.iter().map(|k| GenesisAccount { key: k.public_key(), balance: FUNDS }).collect(),
            reserve: RESERVE,
        };
        let cache = SigCache::default();
        let a = Chain::from_genesis(&genesis, cache.clone()).expect("valid genesis");
        let b = Chain::from_genesis(&genesis, cache).expect("valid genesis");
        Self { a, b, hosts, users }
    }

    /// One block with `txs` on both replicas; the replicas agree and the
    /// money and the task indexes are consistent after it.
    pub(super) fn apply(&mut self, txs: Vec<SignedTransaction>) -> ApplyReport {
        let block = self.a.build_block(0, 0, txs);
        let ra = self.a.apply_trusted(&block, 0).expect("block extends the tip");
        let rb = self.b.apply_trusted(&block, 0).expect("block extends the tip");
        assert_eq!(ra.state_root, rb.state_root, "replicas diverged at height {}", ra.height);
        assert_eq!(ra.receipts, rb.receipts, "replicas' receipts differ at height {}", ra.height);
        if let Err(e) = self.a.check_money() {
            panic!("money invariant broken at height {}: {e}", ra.height);
        }
        check_task_index(&mut self.a, ra.height);
        // Replica b restarts from its own snapshot after every block (batch
        // contents kept aside, as the store keeps them): a piece of state the
        // snapshot misses makes the replicas diverge at a later block.
        let snapshot = self.b.snapshot(false);
        let batches: BTreeMap<_, _> = snapshot
            .batches_elsewhere()
            .map(|k| (k, self.a.batch(k).expect("replica a has every batch")))
            .collect();
        self.b = Chain::restore(&snapshot, self.b.sig_cache().clone(), |k| batches.get(&k).cloned())
            .unwrap_or_else(|e| panic!("restart at height {}: {e}", ra.height));
        ra
    }

    /// One block whose transactions must all succeed.
    pub(super) fn apply_ok(&mut self, txs: Vec<SignedTransaction>) -> ApplyReport {
        let r = self.apply(txs);
        for (i, x) in r.receipts.iter().enumerate() {
            assert!(x.is_ok(), "transaction {i} at height {} failed: {x:?}", r.height);
        }
        r
    }

    /// Empty blocks until `height` is the next one.
    pub(super) fn run_to(&mut self, height: u64) {
        while self.a.next_height() < height {
            self.apply(Vec::new());
        }
    }

    pub(super) fn user(&self, i: usize) -> PublicKeyBytes {
        self.users[i].public_key()
    }

    /// The genesis user holding `key`, if any.
    pub(super) fn user_index(&self, key: &PublicKeyBytes) -> Option<usize> {
        self.users.iter().position(|k| k.public_key() == *key)
    }

    pub(super) fn balance(&self, key: &PublicKeyBytes) -> Amount {
        self.a.ledger().balance(key)
    }

    pub(super) fn nonce(&self, key: &PublicKeyBytes) -> u64 {
        self.a.ledger().nonce(key)
    }

    pub(super) fn task(&mut self, id: &Hash32) -> Option<Task> {
        let world = self.a.world_mut_for_queries();
        world.query::<&Task>().iter(world).find(|t| t.id == *id).cloned()
    }

    pub(super) fn finished(&mut self, id: &Hash32) -> Finished {
        match self.task(id).map(|t| t.status) {
            Some(TaskStatus::Finished(f)) => f,
            other => panic!("task {} is not finished: {other:?}", hex::encode(id)),
        }
    }

    pub(super) fn host<C: bevy_ecs::component::Component + Copy>(&self, id: usize) -> Option<C> {
        let entity = self.a.registry().entity(id as u32).expect("a registered host");
        self.a.world().get::<C>(entity).copied()
    }

    pub(super) fn work(&self, id: usize) -> EpochWork {
        self.host::<EpochWork>(id).expect("every host has its work")
    }

    pub(super) fn earnings(&self, id: usize) -> Amount {
        self.host::<Earnings>(id).expect("every host has earnings").0
    }

    /// The executor and intermediary the chain draws for task `id`.
    pub(super) fn route(&self, id: &Hash32, model: u32) -> (u32, u32) {
        let beacon = self.a.beacon().previous;
        let (ids, weights) = (self.a.voting().ids.clone(), self.a.voting().weights.clone());
        let roster: Vec<Candidate> = ids
            .iter()
            .zip(weights)
            .map(|(&id, weight)| Candidate {
                id,
                weight,
                serves: self.host::<Serves>(id as usize).map_or(0, |s| s.current),
            })
            .collect();
        route(&beacon, id, model, &roster).expect("some host serves the model")
    }

    /// Whether host `host` is selected to check task `id` run by `executor` at `rate`.
    pub(super) fn selected(&self, host: usize, id: &Hash32, executor: u32, rate: Probability) -> bool {
        let voting = self.a.voting();
        let weight_of = |h: u32| voting.position(h).map_or(0, |p| voting.weights[p]);
        let others = u64::try_from(voting.total_weight()).expect("small weights") - weight_of(executor);
        let p = selection_probability(rate, weight_of(host as u32), others).expect("weight to draw from");
        select(&selection_signature(&self.hosts[host], id), p)
    }

    /// The first user whose request with its next nonce gets an executor for
    /// which `want(executor, selected non-executors, unselected non-executors)`
    /// holds (at rate one, the rate of every host without reputation).
    pub(super) fn find_task(
        &mut self,
        want: impl Fn(u32, &[usize], &[usize]) -> bool,
    ) -> (usize, Hash32, u32) {
        for u in 0..self.users.len() {
            let id = task_id(&self.user(u), self.nonce(&self.user(u)));
            let (executor, _) = self.route(&id, 0);
            let others = (0..self.hosts.len()).filter(|&h| h as u32 != executor);
            let (yes, no): (Vec<usize>, Vec<usize>) =
                others.partition(|&h| self.selected(h, &id, executor, Probability::ONE));
            if want(executor, &yes, &no) {
                return (u, id, executor);
            }
        }
        panic!("no user's next request has the routing and selection the test needs");
    }

    /// A task with exactly two of the other hosts selected: (user, id, executor, selected, unselected).
    pub(super) fn two_selected(&mut self) -> (usize, Hash32, usize, [usize; 2], usize) {
        let (u, id, executor) = self.find_task(|_, yes, no| yes.len() == 2 && no.len() == 1);
        let others: Vec<usize> = (0..self.hosts.len()).filter(|&h| h as u32 != executor).collect();
        let (yes, no): (Vec<usize>, Vec<usize>) =
            others.into_iter().partition(|&h| self.selected(h, &id, executor, Probability::ONE));
        (u, id, executor as usize, [yes[0], yes[1]], no[0])
    }
}

/// Every task entity is indexed once, under the index its status belongs to.
pub(super) fn check_task_index(chain: &mut Chain, height: u64) {
    let index = chain.world().resource::<TaskIndex>().clone();
    let world = chain.world_mut_for_queries();
    let mut tasks: Vec<(bevy_ecs::entity::Entity, Task)> =
        world.query::<(bevy_ecs::entity::Entity, &Task)>().iter(world).map(|(e, t)| (e, t.clone())).collect();
    tasks.sort_by_key(|t| t.1.id);
    assert_eq!(
        index.by_id.len(),
        tasks.len(),
        "height {height}: task index and task entities differ in number"
    );
    let (mut hanging, mut settling, mut disputed) = (0, 0, 0);
    for (entity, t) in &tasks {
        assert_eq!(
            index.by_id.get(&t.id),
            Some(entity),
            "height {height}: task {} not indexed",
            hex::encode(t.id)
        );
        match &t.status {
            TaskStatus::Requested => {
                hanging += 1;
                assert!(index.hanging.contains(&(t.requested, t.id)), "height {height}: request not hanging");
                assert_eq!(t.escrow, t.max_cost, "height {height}: a request holds its max cost");
            }
            TaskStatus::Finished(f) => {
                settling += 1;
                assert!(
                    index.settle.iter().any(|k| k.1 == t.id),
                    "height {height}: finished task {} has no settlement",
                    hex::encode(t.id)
                );
                assert_eq!(t.escrow, t.max_cost, "height {height}: a finished task holds its max cost");
                assert!(f.cost <= t.max_cost, "height {height}: cost above max cost");
            }
            TaskStatus::Disputed(_, d) => {
                disputed += 1;
                assert!(index.disputes.contains(&(d.until, t.id)), "height {height}: dispute not indexed");
                assert_eq!(t.escrow, t.max_cost + d.report_fee, "height {height}: dispute escrow");
            }
        }
    }
    assert_eq!(index.hanging.len(), hanging, "height {height}: stale hanging entries");
    assert_eq!(index.settle.len(), settling, "height {height}: stale settlement entries");
    assert_eq!(index.disputes.len(), disputed, "height {height}: stale dispute entries");
}

pub(super) fn transfer(key: &HostKey, to: PublicKeyBytes, amount: Amount, nonce: u64) -> SignedTransaction {
    SignedTransaction::sign(key, Transaction::Transfer { to, amount, nonce })
}

pub(super) fn request(
    key: &HostKey,
    nonce: u64,
    model: u32,
    max_tokens: u32,
    max_cost: Amount,
) -> SignedTransaction {
    let prompt = tagged_hash("test/prompt", &[&nonce.to_le_bytes()]);
    let r = InferenceRequest { nonce, model, prompt, max_tokens, max_cost };
    SignedTransaction::sign(key, Transaction::InferenceRequest(r))
}

pub(super) fn finish(key: &HostKey, task: Hash32, tokens: u32) -> SignedTransaction {
    let (output, artifact) = (tagged_hash("test/output", &[&task]), tagged_hash("test/artifact", &[&task]));
    let f = InferenceFinish { task, output, artifact, tokens };
    SignedTransaction::sign(key, Transaction::InferenceFinish(f))
}

pub(super) fn check(key: &HostKey, task: Hash32, pass: bool) -> SignedTransaction {
    let c = TaskCheck { task, selection: selection_signature(key, &task), pass };
    SignedTransaction::sign(key, Transaction::TaskCheck(c))
}

pub(super) fn vote(key: &HostKey, task: Hash32, fraud: bool) -> SignedTransaction {
    SignedTransaction::sign(key, Transaction::DisputeVote(DisputeVote { task, fraud }))
}

pub(super) fn report(key: &HostKey, task: Hash32, nonce: u64) -> SignedTransaction {
    SignedTransaction::sign(key, Transaction::Report { task, nonce })
}

pub(super) fn refused(r: &ApplyReport, i: usize, want: impl Fn(&TxError) -> bool, what: &str) {
    match &r.receipts[i] {
        Err(e) if want(e) => {}
        other => panic!("height {}: {what} must be refused, got {other:?}", r.height),
    }
}

pub(super) fn not_allowed(e: &TxError) -> bool {
    matches!(e, TxError::NotAllowed { .. })
}

pub(super) fn invalid(e: &TxError) -> bool {
    matches!(e, TxError::Invalid { .. })
}

/// Subsidies of the first epochs of `tiny`.
pub(super) fn subsidies(n: usize) -> Vec<Amount> {
    let e = EconomyParams::tiny();
    std::iter::successors(Some(e.epoch_subsidy), |&s| Some(decay(s, e.subsidy_decay))).take(n).collect()
}
