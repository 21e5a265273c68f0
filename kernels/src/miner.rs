//! The Sprint miner: all cores run batched forward passes over disjoint nonce
//! ranges until a deadline or a cancel, collecting every nonce the Sprint
//! function ([`SprintFunction`]) calls a proof.
//!
//! ```text
//!  consecutive ranges ──► producer thread: SprintFunction::prepare (inputs, permutations)
//!                                   │ bounded channel (2 batches per worker)
//!                 ┌─────────────────┼─────────────────┐
//!              worker 0          worker 1   …      worker N−1   (SprintFunction::run)
//!                 └──── proofs, counters ───► caller thread: progress callback
//! ```
//!
//! Inputs for the next batches are generated while the workers compute, so
//! the cores never wait on ChaCha. Each worker runs its whole batch on its own
//! core (no barrier per matrix product); the weights are shared read-only.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel;

use crate::sprint::{Scored, SprintFunction};

/// One proof: a nonce and its score (v1: its distance, f64 as the spec computes it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proof {
    /// The nonce.
    pub nonce: u64,
    /// Its score; a proof by the function's rule.
    pub score: f64,
}

/// How the miner spreads its work.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    /// Nonces per batch and worker.
    pub batch: usize,
    /// Worker threads (one per core is best).
    pub threads: usize,
    /// First nonce; ranges are handed out upward from it.
    pub first_nonce: u64,
}

/// Stops a Sprint: a deadline, a flag another thread may set, or both.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    deadline: Option<Instant>,
    cancel: Arc<AtomicBool>,
}

impl StopSignal {
    /// Stops at `deadline`.
    pub fn at(deadline: Instant) -> Self {
        Self { deadline: Some(deadline), cancel: Arc::default() }
    }

    /// Stops after `d` from now.
    pub fn after(d: Duration) -> Self {
        Self::at(Instant::now() + d)
    }

    /// Asks every worker to stop as soon as it can.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The flag behind [`Self::cancel`], e.g. for a Ctrl-C handler.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Whether mining must stop now.
    pub fn is_stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// A snapshot for progress display.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Nonces whose distance was computed.
    pub nonces: u64,
    /// Proofs found so far.
    pub proofs: u64,
    /// Time since mining started.
    pub elapsed: Duration,
}

impl Progress {
    /// Nonces per second so far.
    pub fn rate(&self) -> f64 {
        self.nonces as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The outcome of a Sprint.
#[derive(Clone, Debug)]
pub struct MineReport {
    /// Every proof found, sorted by nonce.
    pub proofs: Vec<Proof>,
    /// Nonces fully computed (cancelled batches do not count).
    pub nonces: u64,
    /// Wall time of mining, without model init.
    pub elapsed: Duration,
    /// Time from the start to the last completed batch: the window the
    /// counted nonces were computed in. A batch cut short by the deadline is
    /// not counted, so throughput is `nonces / active`, not `/ elapsed`.
    pub active: Duration,
}

/// One batch of prepared work.
struct Work<P> {
    first: u64,
    prepared: P,
}

/// How often the caller's progress callback runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Mines `f` until `stop` fires, calling `on_progress` about twice a second
/// on the calling thread.
pub fn mine<F: SprintFunction>(
    f: &F,
    cfg: &MinerConfig,
    stop: &StopSignal,
    on_progress: &mut dyn FnMut(&Progress),
) -> MineReport {
    let _span = tracy_client::span!("mine");
    let threads = cfg.threads.max(1);
    let batch = cfg.batch.max(1);
    let nonces_done = AtomicU64::new(0);
    let proofs_found = AtomicU64::new(0);
    let proofs = Mutex::new(Vec::new());
    let start = Instant::now();
    let live = AtomicUsize::new(threads);
    let last_done_ns = AtomicU64::new(0);
    let (tx, rx) = channel::bounded::<Work<F::Prepared>>(2 * threads);
    std::thread::scope(|scope| {
        scope.spawn(|| produce(f, cfg.first_nonce, batch, stop, tx));
        for _ in 0..threads {
            let rx = rx.clone();
            let (proofs, nonces_done, proofs_found, live, last_done_ns) =
                (&proofs, &nonces_done, &proofs_found, &live, &last_done_ns);
            scope.spawn(move || {
                // Counted down on every exit, a panic included, so the caller never waits forever.
                let _alive = LiveGuard(live);
                let mut scratch = F::Scratch::default();
                let mut out = vec![Scored::default(); batch];
                let cancelled = || stop.is_stopped();
                for work in rx.iter() {
                    let _span = tracy_client::span!("mine_batch");
                    if !f.run(&work.prepared, &mut scratch, &mut out, &cancelled) {
                        break;
                    }
                    let found: Vec<Proof> = (0..batch)
                        .filter(|&i| out[i].proof)
                        .map(|i| Proof { nonce: work.first + i as u64, score: out[i].score })
                        .collect();
                    nonces_done.fetch_add(batch as u64, Ordering::Relaxed);
                    last_done_ns.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    proofs_found.fetch_add(found.len() as u64, Ordering::Relaxed);
                    if !found.is_empty() {
                        proofs.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
                    }
                }
            });
        }
        drop(rx);
        // The caller's thread reports progress until every worker is done.
        let snapshot = || Progress {
            nonces: nonces_done.load(Ordering::Relaxed),
            proofs: proofs_found.load(Ordering::Relaxed),
            elapsed: start.elapsed(),
        };
        let mut last_report = Instant::now();
        while live.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(20));
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                on_progress(&snapshot());
            }
        }
        on_progress(&snapshot());
    });
    let elapsed = start.elapsed();
    let mut proofs = proofs.into_inner().unwrap_or_else(|e| e.into_inner());
    proofs.sort_by_key(|p| p.nonce);
    let active = Duration::from_nanos(last_done_ns.into_inner());
    MineReport { proofs, nonces: nonces_done.into_inner(), elapsed, active }
}

/// Prepares batches for consecutive nonce ranges until `stop` fires or the
/// workers are gone.
fn produce<F: SprintFunction>(
    f: &F,
    first_nonce: u64,
    batch: usize,
    stop: &StopSignal,
    tx: channel::Sender<Work<F::Prepared>>,
) {
    let mut next = first_nonce;
    while !stop.is_stopped() {
        let Some(end) = next.checked_add(batch as u64) else { break };
        let nonces: Vec<u64> = (next..end).collect();
        let mut pending = Work { first: next, prepared: f.prepare(&nonces) };
        next = end;
        // Wait for room, but look at the stop signal now and then.
        loop {
            match tx.send_timeout(pending, Duration::from_millis(50)) {
                Ok(()) => break,
                Err(channel::SendTimeoutError::Timeout(w)) if !stop.is_stopped() => pending = w,
                Err(_) => return,
            }
        }
    }
}

/// Decrements the count of live workers when a worker ends.
struct LiveGuard<'a>(&'a AtomicUsize);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}
