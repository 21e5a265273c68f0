//! Property: any sequence of blocks of money and task transactions — built
//! from the input, signed by the right genesis keys so they pass the
//! envelope, naming tasks the chain holds open so the sequence gets deep —
//! and of empty blocks that carry the chain through check windows, disputes,
//! expiry, settlement and epoch closes, keeps the money invariants
//! (`Chain::check_money`: supply = genesis + minted, escrow = Σ task escrow,
//! pending = Σ host earnings), mints only at an epoch's close and then
//! exactly that epoch's subsidy, keeps every open task indexed under its
//! status, and two replicas applying the same blocks hold the same state root.
//!
//! Input, a list of operations:
//!
//! ```text
//!  op = k:u8 < 0x40  → (k & 15) + 1 empty blocks
//!     | k:u8 ≥ 0x40  → one block of 1 + k % 8 transactions, each six bytes:
//!       kind who what lo hi nonce
//!  kind % 7: 0 transfer  1 request  2 finish  3 check  4 dispute vote  5 report  6 serve models
//!  nonce ≥ 0xf0: a wrong nonce (next + (nonce & 15) − 2); otherwise the sender's next
//! ```
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use gonka_engine::chain::genesis::GenesisAccount;
use gonka_engine::chain::types::{SignedTransaction, Transaction};
use gonka_engine::chain::{Chain, Genesis, GenesisHost};
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::crypto::selection::{Probability, select, selection_probability, selection_signature};
use gonka_engine::crypto::{HostKey, PublicKeyBytes};
use gonka_engine::params::{Amount, ChainParams};
use gonka_engine::tasks::{
    DisputeVote, InferenceFinish, InferenceRequest, Task, TaskCheck, TaskIndex, TaskStatus,
};
use gonka_kernels::encoding::tagged_hash;
use libfuzzer_sys::fuzz_target;

/// Most blocks one input may build: two `tiny` epochs, so two closes and
/// the second epoch's dummy plan, at a few milliseconds a block.
const MAX_BLOCKS: u64 = 80;
/// Host weights: unequal, so subsidy shares and selection odds round.
const WEIGHTS: [u64; 4] = [7, 10, 13, 20];

/// The genesis hosts' keys, then the users' (ascending, as the genesis lists them).
fn keys() -> &'static (Vec<HostKey>, Vec<HostKey>) {
    static KEYS: OnceLock<(Vec<HostKey>, Vec<HostKey>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let hosts = (0..4u8).map(|i| HostKey::from_ikm(&[i + 1; 32])).collect();
        let mut users: Vec<HostKey> = (0..4u8).map(|i| HostKey::from_ikm(&[i + 0x40; 32])).collect();
        users.sort_by_key(|k| k.public_key());
        (hosts, users)
    })
}

/// One memo of verified signatures for every run: verification is a pure
/// function, and repeating it would dominate each run.
fn cache() -> &'static SigCache {
    static CACHE: OnceLock<SigCache> = OnceLock::new();
    CACHE.get_or_init(SigCache::default)
}

fn genesis() -> &'static Genesis {
    static GENESIS: OnceLock<Genesis> = OnceLock::new();
    GENESIS.get_or_init(|| {
        let (hosts, users) = keys();
        Genesis {
            params: ChainParams::tiny(),
            seed: [7; 32],
            hosts: hosts.iter().zip(WEIGHTS).map(|(k, w)| GenesisHost::new(k, w)).collect(),
            accounts: users
                .iter()
                .map(|k| GenesisAccount { key: k.public_key(), balance: 1_000_000 })
                .collect(),
            reserve: 5_000_000,
        }
    })
}

/// Two accounts nobody funded at genesis.
fn stranger(i: u8) -> PublicKeyBytes {
    let h = tagged_hash("fuzz/stranger", &[&[i]]);
    let mut key = [0u8; 48];
    key[..32].copy_from_slice(&h);
    key
}

/// The input's bytes, read front to back.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn spec(&mut self) -> Option<[u8; 6]> {
        let spec: [u8; 6] = self.0.get(..6)?.try_into().ok()?;
        self.0 = &self.0[6..];
        Some(spec)
    }
}

/// The open tasks whose status `want` accepts, ids ascending.
fn tasks(chain: &mut Chain, want: fn(&TaskStatus) -> bool) -> Vec<Task> {
    let world = chain.world_mut_for_queries();
    let mut tasks: Vec<Task> =
        world.query::<&Task>().iter(world).filter(|t| want(&t.status)).cloned().collect();
    tasks.sort_by_key(|t| t.id);
    tasks
}

/// The nonce a transaction from `key` carries: its next (counting this
/// block's earlier transactions) or, for `mode ≥ 0xf0`, a wrong one.
fn nonce(chain: &Chain, next: &mut BTreeMap<PublicKeyBytes, u64>, key: &PublicKeyBytes, mode: u8) -> u64 {
    let n = next.entry(*key).or_insert_with(|| chain.ledger().nonce(key));
    if mode >= 0xf0 {
        return (*n + u64::from(mode & 15)).saturating_sub(2);
    }
    *n += 1;
    *n - 1
}

/// Whether host `h` is selected to check `task` at the task's rate.
fn selected(chain: &Chain, h: usize, task: &Task, rate: u64) -> bool {
    let voting = chain.voting();
    let weight_of = |id: u32| voting.position(id).map_or(0, |p| voting.weights[p]);
    let total = u64::try_from(voting.total_weight()).unwrap_or(u64::MAX);
    let others = total - weight_of(task.executor);
    selection_probability(Probability::from_raw(rate), weight_of(h as u32), others)
        .is_some_and(|p| select(&selection_signature(&keys().0[h], &task.id), p))
}

/// One transaction from six bytes; `None` when it names a task and none is open.
fn transaction(
    chain: &mut Chain,
    spec: [u8; 6],
    next: &mut BTreeMap<PublicKeyBytes, u64>,
) -> Option<SignedTransaction> {
    let (hosts, users) = keys();
    let [kind, who, what, lo, hi, mode] = spec;
    let amount = u16::from_le_bytes([lo, hi]);
    let pick = |list: &[Task], i: u8| list.get(usize::from(i) % list.len().max(1)).cloned();
    let (key, body) = match kind % 7 {
        0 => {
            let key = if who % 8 < 4 { &hosts[usize::from(who % 4)] } else { &users[usize::from(who % 4)] };
            let to = match what % 10 {
                x @ 0..4 => hosts[usize::from(x)].public_key(),
                x @ 4..8 => users[usize::from(x - 4)].public_key(),
                x => stranger(x),
            };
            let amount = Amount::from(amount) << (what >> 4);
            (key, Transaction::Transfer { to, amount, nonce: nonce(chain, next, &key.public_key(), mode) })
        }
        1 => {
            let key =
                if who & 0x80 == 0 { &users[usize::from(who % 4)] } else { &hosts[usize::from(who % 4)] };
            let prompt = tagged_hash("fuzz/prompt", &[&spec]);
            let nonce = nonce(chain, next, &key.public_key(), mode);
            let max_cost = Amount::from(hi) << (what >> 4);
            let r = InferenceRequest {
                nonce,
                model: u32::from(what % 3),
                prompt,
                max_tokens: u32::from(lo),
                max_cost,
            };
            (key, Transaction::InferenceRequest(r))
        }
        2 => {
            let t = pick(&tasks(chain, |s| matches!(s, TaskStatus::Requested)), who)?;
            let key =
                if what & 0x80 == 0 { &hosts[t.executor as usize] } else { &hosts[usize::from(what % 4)] };
            let tokens = u32::from(amount) % (t.max_tokens + 8);
            let (output, artifact) =
                (tagged_hash("fuzz/output", &[&spec]), tagged_hash("fuzz/artifact", &[&spec]));
            (key, Transaction::InferenceFinish(InferenceFinish { task: t.id, output, artifact, tokens }))
        }
        3 => {
            let t = pick(&tasks(chain, |s| matches!(s, TaskStatus::Finished(_))), who)?;
            let TaskStatus::Finished(f) = &t.status else { return None };
            let chosen: Vec<usize> =
                (0..4).filter(|&h| h as u32 != t.executor && selected(chain, h, &t, f.rate)).collect();
            let h = match chosen.get(usize::from(what) % chosen.len().max(1)) {
                Some(&h) if what & 0x80 == 0 => h,
                _ => usize::from(what % 4),
            };
            let c =
                TaskCheck { task: t.id, selection: selection_signature(&hosts[h], &t.id), pass: lo & 1 == 0 };
            (&hosts[h], Transaction::TaskCheck(c))
        }
        4 => {
            let t = pick(&tasks(chain, |s| matches!(s, TaskStatus::Disputed(..))), who)?;
            (
                &hosts[usize::from(what % 4)],
                Transaction::DisputeVote(DisputeVote { task: t.id, fraud: lo & 1 == 1 }),
            )
        }
        5 => {
            let t = pick(&tasks(chain, |s| matches!(s, TaskStatus::Finished(_))), who)?;
            let payer = users.iter().find(|k| k.public_key() == t.payer);
            let key = match payer {
                Some(k) if what & 0x80 == 0 => k,
                _ => &users[usize::from(what % 4)],
            };
            (key, Transaction::Report { task: t.id, nonce: nonce(chain, next, &key.public_key(), mode) })
        }
        _ => {
            let key = &hosts[usize::from(who % 4)];
            (
                key,
                Transaction::ServeModels {
                    models: u64::from(what),
                    nonce: nonce(chain, next, &key.public_key(), mode),
                },
            )
        }
    };
    Some(SignedTransaction::sign(key, body))
}

/// Every open task is indexed once, under the index its status belongs to.
fn check_index(chain: &mut Chain, height: u64) {
    let index = chain.world().resource::<TaskIndex>().clone();
    let all = tasks(chain, |_| true);
    assert_eq!(index.by_id.len(), all.len(), "height {height}: indexed tasks ≠ task entities");
    let (mut requested, mut finished, mut disputed) = (0, 0, 0);
    for t in &all {
        assert!(index.by_id.contains_key(&t.id), "height {height}: an open task is not indexed");
        match &t.status {
            TaskStatus::Requested => {
                requested += 1;
                assert!(index.hanging.contains(&(t.requested, t.id)), "height {height}: request not hanging");
            }
            TaskStatus::Finished(_) => {
                finished += 1;
                assert!(index.settle.iter().any(|k| k.1 == t.id), "height {height}: never settles");
            }
            TaskStatus::Disputed(_, d) => {
                disputed += 1;
                assert!(index.disputes.contains(&(d.until, t.id)), "height {height}: dispute not indexed");
            }
        }
    }
    assert_eq!(index.hanging.len(), requested, "height {height}: stale hanging entries");
    assert_eq!(index.settle.len(), finished, "height {height}: stale settlement entries");
    assert_eq!(index.disputes.len(), disputed, "height {height}: stale dispute entries");
}

/// One block on both replicas, then every property.
fn step(a: &mut Chain, b: &mut Chain, txs: Vec<SignedTransaction>) {
    let before = a.ledger().clone();
    let block = a.build_block(0, 0, txs);
    let ra = a.apply_trusted(&block, 0).expect("a block built on the tip applies");
    let rb = b.apply_trusted(&block, 0).expect("a block built on the tip applies");
    assert_eq!(ra.state_root, rb.state_root, "replicas diverged at height {}", ra.height);
    assert_eq!(ra.receipts, rb.receipts, "replicas' receipts differ at height {}", ra.height);
    if let Err(e) = a.check_money() {
        panic!("money invariant broken at height {}: {e}", ra.height);
    }
    let closes = (ra.height + 1).is_multiple_of(a.params().epoch_blocks);
    let minted = if closes { before.next_subsidy } else { 0 };
    assert_eq!(
        a.ledger().supply(),
        before.supply() + minted,
        "height {}: supply moved by other than the subsidy",
        ra.height
    );
    check_index(a, ra.height);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut a = Chain::from_genesis(genesis(), cache().clone()).expect("valid genesis");
    let mut b = Chain::from_genesis(genesis(), cache().clone()).expect("valid genesis");
    while let Some(op) = input.byte() {
        if a.next_height() >= MAX_BLOCKS {
            break;
        }
        if op < 0x40 {
            for _ in 0..=op & 15 {
                step(&mut a, &mut b, Vec::new());
            }
            continue;
        }
        let mut next = BTreeMap::new();
        let mut txs = Vec::new();
        for _ in 0..=op % 8 {
            let Some(spec) = input.spec() else { break };
            txs.extend(transaction(&mut a, spec, &mut next));
        }
        step(&mut a, &mut b, txs);
    }
});
