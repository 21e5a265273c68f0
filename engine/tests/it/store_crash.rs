//! Crash safety: a writer process killed with SIGKILL at random moments
//! while it commits block after block. Every reopen finds the last
//! committed block with a state whose root is the one recorded with it, and
//! the blocks on disk replay from genesis to the recorded roots.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gonka_engine::chain::Chain;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::sim::SimRng;
use gonka_engine::sim::producer::Producer;
use gonka_engine::store::tables::FINALITY;
use gonka_engine::store::{ChainStore, StoreConfig};
use gonka_storage::keys;

use crate::store::{genesis, ikms};

/// The writer's store directory; set only in the child.
const CHILD_DIR: &str = "GONKA_STORE_CRASH_DIR";
/// Blocks the whole run must commit.
const TARGET_BLOCKS: u64 = 320;

fn config() -> StoreConfig {
    StoreConfig { snapshot_every_blocks: 5, retention_epochs: 2, ..StoreConfig::default() }
}

/// The writer: resumes from the store and commits blocks until killed (or
/// the target), printing each committed height.
#[test]
#[ignore = "the child process of `a_writer_killed_at_random_points_always_reopens_consistent`"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let store = ChainStore::open(Path::new(&dir), config()).expect("store opens");
    let chain = store.load_or_init(&genesis(), SigCache::default()).expect("store loads");
    let mut producer = Producer::new(chain, &ikms(), 256, 1);
    while producer.chain().next_height() < TARGET_BLOCKS {
        let (fb, report) = producer.next(Vec::new()).expect("block applies");
        store.commit(producer.chain(), &fb, &report).expect("block stored");
        println!("committed {}", report.height);
    }
}

/// Opens the store the child left and checks it; returns its tip.
fn check_reopen(dir: &Path, cache: &SigCache) -> Option<u64> {
    let store = ChainStore::open(dir, config()).expect("a killed writer's store reopens");
    let tip = store.tip_height().expect("tip reads");
    // `load` checks the state's height against the last block and its root
    // against the root recorded with that block.
    let chain = store.load(cache.clone()).expect("the state loads");
    if let Some(chain) = chain {
        assert_eq!(chain.next_height(), tip.map_or(0, |h| h + 1), "state and last block disagree");
    }
    tip
}

#[test]
fn a_writer_killed_at_random_points_always_reopens_consistent() {
    let seed = 0;
    println!("crash test seed {seed}");
    let mut rng = SimRng::new(seed, "store-crash");
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = SigCache::default();
    let exe = std::env::current_exe().expect("test binary");
    let (mut kills, mut reopens) = (0u32, 0u32);
    let started = Instant::now();
    let mut tip = None;
    while tip.is_none_or(|h| h + 1 < TARGET_BLOCKS) {
        assert!(started.elapsed() < Duration::from_secs(600), "the writer makes no progress (tip {tip:?})");
        let mut child = Command::new(&exe)
            .args([
                "store_crash::crash_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("writer starts");
        // Let it commit a few blocks, then kill it at a random moment.
        let commits = rng.range(1, 12);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < commits {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("committed") => seen += 1,
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rng.range(0, 20_000)));
        // `kill` sends SIGKILL on Unix: no destructor, no flush, no abort of the open transaction.
        let _ = child.kill();
        let status = child.wait().expect("writer ends");
        kills += u32::from(status.code().is_none());
        let now = check_reopen(dir.path(), &cache);
        assert!(now >= tip, "the store went back from {tip:?} to {now:?}");
        tip = now;
        reopens += 1;
    }
    println!(
        "{reopens} reopens after {kills} kills, {} blocks, {:?}",
        tip.map_or(0, |h| h + 1),
        started.elapsed()
    );
    assert!(kills >= 20, "only {kills} writers were killed mid-run");
    // The blocks on disk replay from genesis to the roots recorded with them.
    let store = ChainStore::open(dir.path(), config()).expect("store opens");
    let mut replay = Chain::from_genesis(&genesis(), cache).expect("valid genesis");
    let txn = store.read().expect("read");
    for height in 0..TARGET_BLOCKS {
        let fb = store.final_block(height).expect("read").expect("every block is stored");
        let root = replay.apply(&fb).expect("stored block applies").state_root;
        let recorded = FINALITY.get(&txn, &keys::u64(height)).expect("read").expect("finality");
        assert_eq!(recorded.state_root, root, "height {height}: the replay's root differs");
    }
}
