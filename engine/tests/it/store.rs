//! The chain store: a host that stops at any block and reloads its store
//! agrees with a replica that never stopped; history is pruned past the
//! retention; a failed write poisons the handle; corrupted values are named
//! by table and key; stored formats are frozen.

use std::path::Path;

use gonka_engine::chain::types::FinalBlock;
use gonka_engine::chain::{Chain, Genesis, GenesisHost};
use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::params::ChainParams;
use gonka_engine::sim::producer::Producer;
use gonka_engine::store::tables::*;
use gonka_engine::store::{ChainStore, ChainStoreError, StoreConfig};
use gonka_kernels::encoding::{Hash32, tagged_hash};
use gonka_storage::keys;

const SEED: u8 = 0;
const HOSTS: usize = 4;

fn ikm(i: usize) -> Hash32 {
    tagged_hash("test/store-host", &[&[SEED], &(i as u64).to_le_bytes()])
}

pub(crate) fn genesis() -> Genesis {
    Genesis {
        params: ChainParams::tiny(),
        seed: [SEED; 32],
        hosts: (0..HOSTS).map(|i| GenesisHost::new(&HostKey::from_ikm(&ikm(i)), 10)).collect(),
        accounts: Vec::new(),
        reserve: 1_000_000_000,
    }
}

pub(crate) fn ikms() -> Vec<Hash32> {
    (0..HOSTS).map(ikm).collect()
}

fn config() -> StoreConfig {
    StoreConfig { snapshot_every_blocks: 7, retention_epochs: 2, ..StoreConfig::default() }
}

fn open(dir: &Path) -> ChainStore {
    ChainStore::open(dir, config()).expect("store opens")
}

/// A producer on the store's latest state.
fn resume(store: &ChainStore, cache: &SigCache) -> Producer {
    let chain = store.load_or_init(&genesis(), cache.clone()).expect("store loads");
    Producer::new(chain, &ikms(), 512, 1)
}

/// `n` more blocks from `producer`, each stored.
fn commit_blocks(store: &ChainStore, producer: &mut Producer, n: u64) {
    for _ in 0..n {
        let (fb, report) = producer.next(Vec::new()).expect("the producer's block applies");
        store.commit(producer.chain(), &fb, &report).expect("block stored");
    }
}

#[test]
fn a_host_restarting_from_its_store_agrees_with_one_that_never_stopped() {
    println!("store test keys from seed {SEED}");
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = SigCache::default();
    let mut replica = Chain::from_genesis(&genesis(), cache.clone()).expect("valid genesis");
    let epoch = replica.params().epoch_blocks;
    let blocks = 4 * epoch + 5;
    let mut store = open(dir.path());
    let mut producer = resume(&store, &cache);
    let mut finals: Vec<FinalBlock> = Vec::new();
    for height in 0..blocks {
        let (fb, report) = producer.next(Vec::new()).expect("the producer's block applies");
        store.commit(producer.chain(), &fb, &report).expect("block stored");
        let r = replica.apply(&fb).expect("the replica applies the final block");
        assert_eq!(r.state_root, report.state_root, "height {height}: the replicas diverged");
        finals.push(fb);
        // Stop at uneven intervals, so restarts hit every phase of the epoch.
        if height % 11 == 3 || height % 17 == 0 {
            drop(producer);
            drop(store);
            store = open(dir.path());
            producer = resume(&store, &cache);
            assert_eq!(
                producer.chain().state_root(),
                report.state_root,
                "height {height}: reload changed the state"
            );
        }
    }
    assert_eq!(store.tip_height().expect("tip"), Some(blocks - 1));
    // Every stored block replays from genesis to the roots recorded with it.
    let mut replay = Chain::from_genesis(&genesis(), cache.clone()).expect("valid genesis");
    for (height, fb) in finals.iter().enumerate() {
        let stored = store.final_block(height as u64).expect("read").expect("every block is stored");
        assert_eq!(&stored, fb, "height {height}: the stored block differs");
        let root = replay.apply(&stored).expect("stored block applies").state_root;
        let txn = store.read().expect("read");
        let recorded = FINALITY.get(&txn, &keys::u64(height as u64)).expect("read").expect("finality stored");
        assert_eq!(recorded.state_root, root, "height {height}: recorded root differs from the replay's");
    }
    let txn = store.read().expect("read");
    // Epoch records: the weights match the replica's, every epoch had batches.
    let closed: Vec<u64> = EPOCHS
        .iter(&txn)
        .expect("read")
        .map(|e| e.map(|(k, _)| keys::read_u64(k).expect("epoch key")))
        .collect::<Result<_, _>>()
        .expect("epochs decode");
    assert_eq!(closed, vec![0, 1, 2, 3], "one record per closed epoch");
    let last = EPOCHS.get_owned(&txn, &keys::u64(3)).expect("read").expect("epoch 3");
    for &(id, _, w) in &last.weights {
        let entity = replica.registry().entity(id).expect("host");
        let weight = replica.world().get::<gonka_engine::hosts::Weight>(entity).expect("weight").0;
        assert_eq!(w, weight, "host {id}: recorded weight differs from the replica's");
    }
    assert!(last.weights.iter().all(|w| w.2 > 0), "every honest host earned weight: {:?}", last.weights);
    // Retention 2: at the close of epoch 3 the batches and reports of epochs 0 and 1 went.
    let batch_epochs: Vec<u64> = PROOF_BATCHES
        .iter(&txn)
        .expect("read")
        .map(|e| e.map(|(k, _)| keys::read_u64_u32(k).expect("key").0))
        .collect::<Result<_, _>>()
        .expect("decode");
    assert!(batch_epochs.iter().all(|&e| e >= 2), "pruned batches remain: {batch_epochs:?}");
    assert!(batch_epochs.contains(&3), "the last epoch's batches are kept: {batch_epochs:?}");
    let report_epochs: Vec<u64> = VALIDATIONS
        .iter(&txn)
        .expect("read")
        .map(|e| e.map(|(k, _)| keys::read_u64_u32(k).expect("key").0))
        .collect::<Result<_, _>>()
        .expect("decode");
    assert!(!report_epochs.is_empty() && report_epochs.iter().all(|&e| e >= 2), "reports {report_epochs:?}");
    // Snapshots every 7 blocks, none before the start of epoch 3 (2 + 1).
    let snapshot_heights: Vec<u64> = SNAPSHOTS
        .iter(&txn)
        .expect("read")
        .map(|e| e.map(|(k, _)| keys::read_u64(k).expect("key")))
        .collect::<Result<_, _>>()
        .expect("decode");
    assert!(!snapshot_heights.is_empty(), "snapshots are written");
    assert!(snapshot_heights.iter().all(|h| (h + 1) % 7 == 0 && *h >= 3 * epoch), "{snapshot_heights:?}");
    // Dummy requests made tasks; ended ones carry their end.
    let tasks = TASKS.len(&txn).expect("read");
    let ended = CLOSED_TASKS.len(&txn).expect("read");
    println!("{tasks} task records, {ended} ended, snapshots at {snapshot_heights:?}");
    assert!(tasks > 0 && ended > 0, "the dummy requests' tasks are recorded");
    drop(txn);
    // An old snapshot restores to the state the replica had at its height.
    let h = *snapshot_heights.last().expect("one snapshot");
    let old = store.load_snapshot(h, cache.clone()).expect("snapshot loads").expect("present");
    let txn = store.read().expect("read");
    let recorded = FINALITY.get(&txn, &keys::u64(h)).expect("read").expect("finality");
    assert_eq!(old.state_root(), recorded.state_root, "snapshot {h} restores to its block's root");
}

#[test]
fn a_failed_write_poisons_the_handle_and_the_store_keeps_its_last_block() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = SigCache::default();
    let store = open(dir.path());
    let mut producer = resume(&store, &cache);
    commit_blocks(&store, &mut producer, 3);
    // Block 3 never reaches the store; storing block 4 after it must fail whole.
    producer.next(Vec::new()).expect("applies");
    let (fb, report) = producer.next(Vec::new()).expect("applies");
    let err = store.commit(producer.chain(), &fb, &report).expect_err("a gap in the blocks is refused");
    println!("{err}");
    assert!(err.to_string().contains("block 4 stored after block 2"), "{err}");
    let again = store.tip_height().expect_err("a poisoned store refuses reads");
    assert!(again.to_string().contains("poisoned") || again.to_string().contains("unusable"), "{again}");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.tip_height().expect("tip"), Some(2), "the reopened store ends at the last commit");
    let chain = store.load(cache).expect("loads").expect("state");
    assert_eq!(chain.next_height(), 3);
}

#[test]
fn corrupted_values_are_named_by_table_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = SigCache::default();
    let store = open(dir.path());
    let mut producer = resume(&store, &cache);
    commit_blocks(&store, &mut producer, 3);
    store
        .store()
        .write(|txn| {
            BLOCKS.put_bytes(txn, &keys::u64(1), &[0xff; 7])?;
            STATE.put_bytes(txn, SINGLE, b"not a state")
        })
        .expect("raw write");
    let err = store.final_block(1).expect_err("a garbage block is an error");
    let text = err.to_string();
    assert!(text.contains("blocks") && text.contains(&hex::encode(keys::u64(1))), "{text}");
    let err = store.load(cache.clone()).expect_err("a garbage state is an error");
    let text = err.to_string();
    assert!(text.contains("state") && text.contains(&hex::encode(SINGLE)), "{text}");
    // The other blocks still read.
    assert!(store.final_block(2).expect("block 2 reads").is_some());
}

#[test]
fn a_store_of_another_chain_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = SigCache::default();
    let store = open(dir.path());
    store.load_or_init(&genesis(), cache.clone()).expect("initialised");
    let other = Genesis { seed: [9; 32], ..genesis() };
    match store.load_or_init(&other, cache) {
        Err(ChainStoreError::OtherChain { .. }) => {}
        other => panic!("another chain's genesis must be refused, got {other:?}"),
    }
}

#[test]
fn stored_formats_are_frozen() {
    use gonka_engine::chain::snapshot::{BatchContents, BatchSnapshot};
    use gonka_engine::chain::types::BatchVerdict;
    use gonka_engine::crypto::votes::VoteSet;
    use gonka_engine::crypto::wire::encode;
    use gonka_engine::proofs::components::{BatchCommitment, BatchKey, BatchStatus, BatchTally};
    use gonka_engine::proofs::{Difficulty, ModelShape, ProofBatch, ProofEntry};
    use gonka_engine::rewards::{EpochWork, Payout, Withheld};
    use gonka_engine::tasks::{Check, Dispute, Finished, Task, TaskEnd, TaskStatus};
    use gonka_engine::validations::ValidationReport;
    // Change these hashes only together with `FORMAT_VERSION`.
    assert_eq!(FORMAT_VERSION, 1, "a new format version needs new frozen hashes");
    let finished = Finished {
        height: 9,
        output: [1; 32],
        artifact: [2; 32],
        tokens: 17,
        cost: 1234,
        cancelled: false,
        rate: 250_000,
        checks_until: 13,
    };
    let dispute = Dispute {
        opened: 10,
        until: 20,
        report_fee: 5,
        fraud: 30,
        clear: 10,
        eligible: 70,
        votes: [(1, true), (3, false)].into_iter().collect(),
    };
    let task = Task {
        id: [3; 32],
        payer: [4; 48],
        model: 1,
        prompt: [5; 32],
        max_tokens: 64,
        max_cost: 9999,
        escrow: 9999,
        requested: 8,
        intermediary: 2,
        executor: 0,
        status: TaskStatus::Disputed(finished, dispute),
        checks: vec![Check { validator: 1, pass: false }],
    };
    let work = EpochWork { assigned: 3, finished: 2, tokens: 40, checks: 1, ..EpochWork::default() };
    let payout = Payout { epoch: 2, earned: 777, withheld: Some(Withheld::TooLittleWork), work };
    let commitment = BatchCommitment { commitment: [6; 32], proofs: 2, height: 30 };
    let tally = BatchTally { accept: 20, reject: 1, validating: 30 };
    let epoch = EpochRecord {
        epoch: 2,
        close_height: 119,
        batches: vec![BatchOutcome { host: 1, commitment, status: BatchStatus::Accepted, tally }],
        weights: vec![(0, [7; 48], 5), (1, [8; 48], 2)],
        payouts: vec![(1, payout)],
        penalized: vec![0],
    };
    let batch = ProofBatch {
        sprint_seed: [9; 32],
        shape: ModelShape::of(&gonka_kernels::config::TINY),
        pubkey: [10; 48],
        difficulty: Difficulty::V2 { nonces_per_proof: 256 },
        nonces_tried: 600,
        proofs: vec![ProofEntry { nonce: 3, score: 0.001 }, ProofEntry { nonce: 9, score: 0.002 }],
        signature: [11; 96],
    };
    // The genesis state of the test chain, plus one of everything its
    // collections hold.
    let mut state =
        Chain::from_genesis(&genesis(), SigCache::default()).expect("valid genesis").snapshot(true);
    state.tasks.push(task.clone());
    state.batches.push(BatchSnapshot {
        key: BatchKey { epoch: 2, host: 1 },
        commitment,
        status: BatchStatus::Submitted,
        tally,
        contents: BatchContents::Inline(Box::new(batch)),
    });
    state.hosts[0].payout = Some(payout);
    let report = ValidationReport {
        epoch: 2,
        validator: 3,
        verdicts: vec![BatchVerdict { host: 1, accept: true }],
        height: 31,
    };
    let finality = FinalityRecord {
        round: 1,
        finality: VoteSet { message: vec![1, 2, 3], signers: vec![0b1011], signature: [12; 96] },
        state_root: [13; 32],
    };
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "finality record",
            encode(&finality),
            "56a52164d72ae7eb7e44fd62bbd354859f9fdc89188de3c13bda1b18ce5fe278",
        ),
        (
            "transaction location",
            encode(&TxLocation { height: 5, index: 2, ok: true }),
            "92956cfd7da1137bcfde0fcd34b8814fb5ee7f092c5e7be982b2642b3c772075",
        ),
        (
            "task record",
            encode(&TaskRecord { task, end: Some((40, TaskEnd::Convicted)) }),
            "c20e473fae4ae09371e69db52f2b15cd4c03ccea8268f612d22dd645adcb157d",
        ),
        (
            "task end",
            encode(&TaskEnd::Expired),
            "b376f2bfc5e4559a1836ff15002722f565ecf40d6c33075d49eb92950bf22ded",
        ),
        ("epoch record", encode(&epoch), "e5993212debadc78269b3f94ffd223b573b77c1306fcff4bafefe2877bddda88"),
        (
            "validation report",
            encode(&report),
            "be1a249a99876b1127f571a1eca46c94d033fda78a065cdb20c51d4736d9d376",
        ),
        (
            "state snapshot",
            encode(&state),
            "4d290b8b29937cbb11d55b4ecb3739b4a732421f54fd3c69a510c36881aedbf1",
        ),
    ];
    crate::assert_frozen(&cases);
}

#[test]
fn a_store_of_another_format_version_is_refused_with_both_versions_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = gonka_storage::StoreOptions::new(SCHEMA, FORMAT_VERSION + 1, TABLES);
    drop(gonka_storage::Store::open(dir.path(), options).expect("a store of the next version"));
    let err = ChainStore::open(dir.path(), config()).expect_err("another format version is refused");
    let text = err.to_string();
    assert!(text.contains(&format!("version {}", FORMAT_VERSION + 1)), "{text}");
    assert!(text.contains(&format!("version {FORMAT_VERSION}")), "{text}");
}

/// `cargo test -p gonka-engine --test it write_store_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes seed files under fuzz/; run by hand when a stored format changes"]
fn write_store_fuzz_seeds() {
    // One stored value of every table after a little more than an epoch.
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        ChainStore::open(dir.path(), StoreConfig { snapshot_every_blocks: 5, ..config() }).expect("opens");
    let mut producer = resume(&store, &SigCache::default());
    let epoch = producer.chain().params().epoch_blocks;
    commit_blocks(&store, &mut producer, epoch + 25);
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/store_value_decode");
    std::fs::create_dir_all(&seeds).expect("seed directory");
    let txn = store.read().expect("read");
    for (selector, def) in TABLES.iter().enumerate() {
        // Read as `u8` archives (any non-empty value validates as one): the
        // iteration only serves to find a key.
        let table: gonka_storage::Table<u8> = gonka_storage::Table::new(def);
        let mut entries = table.iter(&txn).expect("read");
        let Some(Ok((key, _))) = entries.next() else { panic!("table {} is empty", def.name) };
        let bytes = table.get_bytes(&txn, key).expect("read").expect("present");
        let mut seed = vec![selector as u8];
        seed.extend_from_slice(bytes);
        std::fs::write(seeds.join(def.name), seed).expect("the seed directory is writable");
    }
}
