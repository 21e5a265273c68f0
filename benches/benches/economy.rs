//! Block application with inference tasks at scale: 1000 hosts, 1000 users,
//! a block of 1000 requests, a block of 1000 finishes, and the block that
//! settles them, against one BLS signature verification (the reference:
//! every transaction costs at least one, outside these figures since the
//! replica's signature memo is warm).
//!
//! `cargo bench -p gonka-benches --bench economy`.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use gonka_engine::chain::genesis::GenesisAccount;
use gonka_engine::chain::types::{Block, SignedTransaction, Transaction};
use gonka_engine::chain::{Chain, Genesis, GenesisHost};
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::crypto::{Domain, HostKey, verify};
use gonka_engine::params::ChainParams;
use gonka_engine::tasks::{InferenceFinish, InferenceRequest, Task};
use gonka_kernels::encoding::tagged_hash;

const N: usize = 1000;

fn key(label: &str, i: usize) -> HostKey {
    HostKey::from_ikm(&tagged_hash(label, &[&(i as u64).to_le_bytes()]))
}

struct Setup {
    genesis: Genesis,
    cache: SigCache,
    hosts: Vec<HostKey>,
    requests: Vec<SignedTransaction>,
}

fn setup() -> Setup {
    let hosts: Vec<HostKey> = (0..N).map(|i| key("bench/host", i)).collect();
    let users: Vec<HostKey> = (0..N).map(|i| key("bench/user", i)).collect();
    let mut accounts: Vec<GenesisAccount> =
        users.iter().map(|u| GenesisAccount { key: u.public_key(), balance: 1 << 40 }).collect();
    accounts.sort_unstable_by_key(|a| a.key);
    let params = ChainParams::tiny();
    let genesis = Genesis {
        params,
        seed: [5; 32],
        hosts: hosts.iter().map(|k| GenesisHost::new(k, 10)).collect(),
        accounts,
        reserve: 0,
    };
    let requests = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let body = InferenceRequest {
                nonce: 0,
                model: (i % 2) as u32,
                prompt: tagged_hash("bench/prompt", &[&(i as u64).to_le_bytes()]),
                max_tokens: 32,
                max_cost: 10_000,
            };
            SignedTransaction::sign(u, Transaction::InferenceRequest(body))
        })
        .collect();
    Setup { genesis, cache: SigCache::default(), hosts, requests }
}

fn chain(s: &Setup) -> Chain {
    Chain::from_genesis(&s.genesis, s.cache.clone()).expect("valid genesis")
}

fn apply(chain: &mut Chain, block: &Block) {
    let r = chain.apply_trusted(block, 0).expect("block extends the tip");
    assert!(r.receipts.iter().all(|x| x.is_ok()), "every transaction applies");
}

/// The finishes of every open task, each signed by its executor.
fn finishes(s: &Setup, chain: &mut Chain) -> Vec<SignedTransaction> {
    let world = chain.world_mut_for_queries();
    let mut tasks: Vec<Task> = world.query::<&Task>().iter(world).cloned().collect();
    tasks.sort_unstable_by_key(|t| t.id);
    tasks
        .iter()
        .map(|t| {
            let body = InferenceFinish { task: t.id, output: [1; 32], artifact: [2; 32], tokens: 16 };
            SignedTransaction::sign(&s.hosts[t.executor as usize], Transaction::InferenceFinish(body))
        })
        .collect()
}

fn economy(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("economy::apply");
    g.sample_size(10);
    let one = &s.hosts[0];
    let (pk, sig) = (one.public_key(), one.sign(Domain::Transaction, b"reference"));
    g.bench_function(BenchmarkId::from_parameter("one signature verification (reference)"), |b| {
        b.iter(|| verify(Domain::Transaction, black_box(&pk), b"reference", black_box(&sig)).expect("valid"))
    });
    // Warm the signature memo and build the later blocks once.
    let mut c0 = chain(&s);
    let requests = c0.build_block(0, 0, s.requests.clone());
    apply(&mut c0, &requests);
    let txs = finishes(&s, &mut c0);
    let fin = c0.build_block(0, 0, txs);
    apply(&mut c0, &fin);
    let mut empties = Vec::new();
    for _ in 0..c0.params().economy.task_validation_blocks {
        let b = c0.build_block(0, 0, Vec::new());
        apply(&mut c0, &b);
        empties.push(b);
    }
    g.bench_function(BenchmarkId::from_parameter(format!("block of {N} requests")), |b| {
        b.iter_batched(|| chain(&s), |mut c| apply(&mut c, &requests), BatchSize::PerIteration)
    });
    g.bench_function(BenchmarkId::from_parameter(format!("block of {N} finishes")), |b| {
        b.iter_batched(
            || {
                let mut c = chain(&s);
                apply(&mut c, &requests);
                c
            },
            |mut c| apply(&mut c, &fin),
            BatchSize::PerIteration,
        )
    });
    let (last, before) = empties.split_last().expect("a validation window");
    g.bench_function(BenchmarkId::from_parameter(format!("block settling {N} tasks")), |b| {
        b.iter_batched(
            || {
                let mut c = chain(&s);
                apply(&mut c, &requests);
                apply(&mut c, &fin);
                before.iter().for_each(|e| apply(&mut c, e));
                c
            },
            |mut c| apply(&mut c, last),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, economy);
criterion_main!(benches);
