//! Chain-store benches: blocks of 1 000 signed transactions written to and
//! read from LMDB as rkyv archives (the engine's `BLOCKS` table), against the
//! same data as serde types encoded with bincode 1 into another table of the
//! same environment (the reference, measured in the same run).
//!
//! `cargo bench -p gonka-benches --bench store` (add `-- --quick` for a look).
//!
//! - `store::write`: one block per write transaction, committed (and so
//!   fsynced) as the node commits a final block; rkyv `Table::put` against
//!   `bincode::serialize` + `put_bytes`. Throughput is blocks/s.
//! - `store::encode`: the formats' CPU share of a write, without LMDB:
//!   `rkyv::to_bytes` (what `put` does first) against `bincode::serialize`.
//! - `store::read`: one block of a 64-block store per iteration, within one
//!   read transaction, each followed by the same walk over every transaction
//!   (sum of amounts, count of kinds, a byte of each key and signature):
//!   rkyv validated in place (`get`), unvalidated (`get_unchecked`),
//!   deserialised (`get_owned`), and bincode (`get_bytes` + deserialise).
//!
//! The blocks are built once, outside the measured closures: 1 000
//! transactions signed with real BLS keys of 1 000 distinct senders (95%
//! transfers, 4% inference requests, 1% model announcements), shared by 64
//! headers that chain by parent hash. The encoded sizes are printed once.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use gonka_engine::chain::types::{
    ArchivedBlock, ArchivedTransaction, Block, BlockHeader, SignedTransaction, Transaction, transactions_root,
};
use gonka_engine::crypto::HostKey;
use gonka_engine::store::tables::{BLOCKS, FORMAT_VERSION};
use gonka_engine::tasks::InferenceRequest;
use gonka_kernels::encoding::tagged_hash;
use gonka_storage::{Store, StoreOptions, Table, TableDef, keys};
use rkyv::rancor::BoxedError;
use serde::{Deserialize, Serialize};
use serde_big_array::BigArray;

/// Transactions per block.
const TXS: usize = 1000;
/// Distinct blocks (headers) built, and blocks in the read store.
const BLOCK_COUNT: u64 = 64;

/// The engine's `blocks` table beside a table of the bincode mirror, so both
/// formats live in one LMDB environment.
static BENCH_TABLES: [TableDef; 2] = [
    *BLOCKS.def(),
    TableDef {
        name: "blocks_bincode",
        doc: "the same blocks as serde types, bincode 1 encoded (bench reference)",
        key: "height u64 BE",
        value: "SerdeBlock (bincode)",
    },
];
/// Values are raw bincode bytes: only `put_bytes` and `get_bytes` are used.
const BINCODE_BLOCKS: Table<()> = Table::new(&BENCH_TABLES[1]);

/// The serde mirror of [`Block`]: the same fields and bytes.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SerdeBlock {
    header: SerdeHeader,
    transactions: Vec<SerdeTransaction>,
}

/// The mirror of [`BlockHeader`].
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SerdeHeader {
    chain: [u8; 32],
    height: u64,
    round: u32,
    parent: [u8; 32],
    state_root: [u8; 32],
    transactions_root: [u8; 32],
    proposer: u32,
}

/// The mirror of [`SignedTransaction`]; the 48- and 96-byte arrays are
/// written as fixed-size tuples (no length prefix), as rkyv stores them.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SerdeTransaction {
    #[serde(with = "BigArray")]
    sender: [u8; 48],
    body: SerdeBody,
    #[serde(with = "BigArray")]
    signature: [u8; 96],
}

/// The mirror of the [`Transaction`] kinds the bench builds.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum SerdeBody {
    Transfer {
        #[serde(with = "BigArray")]
        to: [u8; 48],
        amount: u128,
        nonce: u64,
    },
    ServeModels {
        models: u64,
        nonce: u64,
    },
    InferenceRequest {
        nonce: u64,
        model: u32,
        prompt: [u8; 32],
        max_tokens: u32,
        max_cost: u128,
    },
}

fn mirror(block: &Block) -> SerdeBlock {
    let h = &block.header;
    let header = SerdeHeader {
        chain: h.chain,
        height: h.height,
        round: h.round,
        parent: h.parent,
        state_root: h.state_root,
        transactions_root: h.transactions_root,
        proposer: h.proposer,
    };
    let transactions = block
        .transactions
        .iter()
        .map(|tx| SerdeTransaction {
            sender: tx.sender,
            body: match &tx.body {
                Transaction::Transfer { to, amount, nonce } => {
                    SerdeBody::Transfer { to: *to, amount: *amount, nonce: *nonce }
                }
                Transaction::ServeModels { models, nonce } => {
                    SerdeBody::ServeModels { models: *models, nonce: *nonce }
                }
                Transaction::InferenceRequest(r) => SerdeBody::InferenceRequest {
                    nonce: r.nonce,
                    model: r.model,
                    prompt: r.prompt,
                    max_tokens: r.max_tokens,
                    max_cost: r.max_cost,
                },
                other => panic!("the bench builds no {} transactions", other.kind()),
            },
            signature: tx.signature,
        })
        .collect();
    SerdeBlock { header, transactions }
}

/// What every read variant computes from a block: the same work on each.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Touch {
    height: u64,
    /// Transfer amounts, request escrows and model masks, summed.
    value: u128,
    /// Transfers, model announcements, inference requests.
    kinds: [u32; 3],
    /// First byte of each sender xor last byte of each signature, xored.
    bytes: u8,
}

fn touch_archived(block: &ArchivedBlock) -> Touch {
    let mut t = Touch { height: block.header.height.to_native(), ..Touch::default() };
    for tx in block.transactions.iter() {
        t.bytes ^= tx.sender[0] ^ tx.signature[95];
        match &tx.body {
            ArchivedTransaction::Transfer { amount, .. } => {
                t.value = t.value.wrapping_add(amount.to_native());
                t.kinds[0] += 1;
            }
            ArchivedTransaction::ServeModels { models, .. } => {
                t.value = t.value.wrapping_add(u128::from(models.to_native()));
                t.kinds[1] += 1;
            }
            ArchivedTransaction::InferenceRequest(r) => {
                t.value = t.value.wrapping_add(r.max_cost.to_native());
                t.kinds[2] += 1;
            }
            _ => {}
        }
    }
    t
}

fn touch_owned(block: &Block) -> Touch {
    let mut t = Touch { height: block.header.height, ..Touch::default() };
    for tx in &block.transactions {
        t.bytes ^= tx.sender[0] ^ tx.signature[95];
        match &tx.body {
            Transaction::Transfer { amount, .. } => {
                t.value = t.value.wrapping_add(*amount);
                t.kinds[0] += 1;
            }
            Transaction::ServeModels { models, .. } => {
                t.value = t.value.wrapping_add(u128::from(*models));
                t.kinds[1] += 1;
            }
            Transaction::InferenceRequest(r) => {
                t.value = t.value.wrapping_add(r.max_cost);
                t.kinds[2] += 1;
            }
            _ => {}
        }
    }
    t
}

fn touch_serde(block: &SerdeBlock) -> Touch {
    let mut t = Touch { height: block.header.height, ..Touch::default() };
    for tx in &block.transactions {
        t.bytes ^= tx.sender[0] ^ tx.signature[95];
        match &tx.body {
            SerdeBody::Transfer { amount, .. } => {
                t.value = t.value.wrapping_add(*amount);
                t.kinds[0] += 1;
            }
            SerdeBody::ServeModels { models, .. } => {
                t.value = t.value.wrapping_add(u128::from(*models));
                t.kinds[1] += 1;
            }
            SerdeBody::InferenceRequest { max_cost, .. } => {
                t.value = t.value.wrapping_add(*max_cost);
                t.kinds[2] += 1;
            }
        }
    }
    t
}

fn hash_of(label: &str, i: u64) -> [u8; 32] {
    tagged_hash(label, &[&i.to_le_bytes()])
}

/// [`BLOCK_COUNT`] blocks at heights `0..`, chained by parent hash, sharing
/// one body of [`TXS`] signed transactions.
fn blocks() -> Vec<Block> {
    let transactions: Vec<SignedTransaction> = (0..TXS as u64)
        .map(|i| {
            let sender = HostKey::from_ikm(&hash_of("bench/store/sender", i));
            let body = if i % 25 == 0 {
                Transaction::InferenceRequest(InferenceRequest {
                    nonce: i,
                    model: (i % 3) as u32,
                    prompt: hash_of("bench/store/prompt", i),
                    max_tokens: 4096,
                    max_cost: 1_000_000 + u128::from(i),
                })
            } else if i % 100 == 1 {
                Transaction::ServeModels { models: 0b101, nonce: i }
            } else {
                let to = HostKey::from_ikm(&hash_of("bench/store/receiver", i % 97)).public_key();
                Transaction::Transfer { to, amount: 1_000_000_000 * u128::from(i + 1), nonce: i }
            };
            SignedTransaction::sign(&sender, body)
        })
        .collect();
    let chain = hash_of("bench/store/genesis", 0);
    let root = transactions_root(&transactions);
    let mut parent = chain;
    (0..BLOCK_COUNT)
        .map(|height| {
            let header = BlockHeader {
                chain,
                height,
                round: 0,
                parent,
                state_root: hash_of("bench/store/state", height),
                transactions_root: root,
                proposer: (height % 7) as u32,
            };
            parent = header.hash();
            Block { header, transactions: transactions.clone() }
        })
        .collect()
}

fn open(dir: &Path) -> Store {
    // A map large enough for every block the benches write, so that no
    // measured commit pays for a remap (it costs address space, not disk).
    let options = StoreOptions {
        initial_map_bytes: 8 << 30,
        ..StoreOptions::new("gonka-bench-store", FORMAT_VERSION, &BENCH_TABLES)
    };
    Store::open(dir, options).expect("open the bench store")
}

fn store(c: &mut Criterion) {
    let blocks = blocks();
    let mirrors: Vec<SerdeBlock> = blocks.iter().map(mirror).collect();
    let id = |params: &str, note: &str| BenchmarkId::from_parameter(format!("{params} txs={TXS}{note}"));

    // Reads: a store holding every block in both formats, checked first.
    let read_dir = tempfile::tempdir().expect("temp dir");
    let read_store = open(read_dir.path());
    read_store
        .write(|txn| {
            for (block, serde) in blocks.iter().zip(&mirrors) {
                let key = keys::u64(block.header.height);
                BLOCKS.put(txn, &key, block)?;
                BINCODE_BLOCKS.put_bytes(txn, &key, &bincode::serialize(serde).expect("bincode encodes"))?;
            }
            Ok(())
        })
        .expect("fill the read store");
    let txn = read_store.read().expect("read transaction");
    for (h, (block, serde)) in (0..BLOCK_COUNT).zip(blocks.iter().zip(&mirrors)) {
        let key = keys::u64(h);
        let archived = BLOCKS.get(&txn, &key).expect("valid archive").expect("present");
        let bytes = BINCODE_BLOCKS.get_bytes(&txn, &key).expect("get").expect("present");
        let decoded: SerdeBlock = bincode::deserialize(bytes).expect("bincode decodes");
        assert_eq!(&decoded, serde, "bincode round trip");
        let want = touch_owned(block);
        assert_eq!(touch_archived(archived), want);
        assert_eq!(touch_serde(&decoded), want);
    }
    let key = keys::u64(0);
    let rkyv_bytes = BLOCKS.get_bytes(&txn, &key).expect("get").expect("present").len();
    let bincode_bytes = BINCODE_BLOCKS.get_bytes(&txn, &key).expect("get").expect("present").len();
    // rkyv lays each transaction inline in the block's vector, its body as
    // large as the largest `Transaction` variant.
    println!(
        "encoded block of {TXS} txs: rkyv {rkyv_bytes} B ({:.1} B/tx; an archived body is {} B inline), \
         bincode {bincode_bytes} B ({:.1} B/tx), rkyv/bincode {:.3}",
        rkyv_bytes as f64 / TXS as f64,
        size_of::<ArchivedTransaction>(),
        bincode_bytes as f64 / TXS as f64,
        rkyv_bytes as f64 / bincode_bytes as f64
    );

    let mut g = c.benchmark_group("store::write");
    g.throughput(Throughput::Elements(1));
    // Milliseconds a commit, dominated by the fsync: flat sampling (the same
    // iterations in every sample) suits routines this long.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    let write_dir = tempfile::tempdir().expect("temp dir");
    let write_store = open(write_dir.path());
    let mut height = 0u64;
    g.bench_function(id("format=rkyv", ""), |b| {
        b.iter(|| {
            let block = &blocks[(height % BLOCK_COUNT) as usize];
            let key = keys::u64(height);
            write_store.write(|txn| BLOCKS.put(txn, &key, block)).expect("commit");
            height += 1;
        })
    });
    let mut height = 0u64;
    g.bench_function(id("format=bincode", " (reference)"), |b| {
        b.iter(|| {
            let block = &mirrors[(height % BLOCK_COUNT) as usize];
            let key = keys::u64(height);
            write_store
                .write(|txn| {
                    let bytes = bincode::serialize(block).expect("bincode encodes");
                    BINCODE_BLOCKS.put_bytes(txn, &key, &bytes)
                })
                .expect("commit");
            height += 1;
        })
    });
    g.finish();
    drop(write_store);

    // The formats' share of a write, without LMDB: encoding one block.
    let mut g = c.benchmark_group("store::encode");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function(id("format=rkyv", ""), |b| {
        b.iter(|| rkyv::to_bytes::<BoxedError>(black_box(&blocks[0])).expect("rkyv encodes").len())
    });
    g.bench_function(id("format=bincode", " (reference)"), |b| {
        b.iter(|| bincode::serialize(black_box(&mirrors[0])).expect("bincode encodes").len())
    });
    g.finish();

    let mut g = c.benchmark_group("store::read");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let mut height = 0u64;
    let mut next = move || {
        height = (height + 1) % BLOCK_COUNT;
        keys::u64(height)
    };
    g.bench_function(id("format=rkyv access=validated", ""), |b| {
        b.iter(|| {
            let block = BLOCKS.get(&txn, &next()).expect("valid archive").expect("present");
            touch_archived(black_box(block))
        })
    });
    g.bench_function(id("format=rkyv access=unchecked", ""), |b| {
        b.iter(|| {
            // SAFETY: every key of `BLOCKS` in this store was written by
            // `BLOCKS.put` of a `Block` in this process, in this run, and
            // `get` validated each one above in this same transaction `txn`.
            let block = unsafe { BLOCKS.get_unchecked(&txn, &next()) }.expect("get").expect("present");
            touch_archived(black_box(block))
        })
    });
    g.bench_function(id("format=rkyv access=owned", ""), |b| {
        b.iter(|| {
            let block = BLOCKS.get_owned(&txn, &next()).expect("valid archive").expect("present");
            touch_owned(black_box(&block))
        })
    });
    g.bench_function(id("format=bincode access=owned", " (reference)"), |b| {
        b.iter(|| {
            let bytes = BINCODE_BLOCKS.get_bytes(&txn, &next()).expect("get").expect("present");
            let block: SerdeBlock = bincode::deserialize(bytes).expect("bincode decodes");
            touch_serde(black_box(&block))
        })
    });
    g.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
