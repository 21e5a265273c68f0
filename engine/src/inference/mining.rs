//! A Sprint mined in slices on the model server's idle capacity: each slice
//! scores a few nonces and returns, so a request that arrives mid-Sprint
//! waits for one slice, not for the Sprint.
//!
//! The slice size adapts to keep a slice near [`SLICE_TARGET`]: small enough
//! that inference latency barely notices, large enough that the per-slice
//! overhead (thread start, model bind) stays small.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gonka_kernels::encoding::Hash32;
use gonka_kernels::sprint::SprintV2;
use gonka_kernels::v2::Model;
use gonka_kernels::validate::recompute;

use super::server::IdleWork;
use crate::proofs::ProofEntry;

/// How long one slice should take.
pub const SLICE_TARGET: Duration = Duration::from_millis(20);

/// Nonces of the first slice, before the rate is known.
const FIRST_SLICE: u64 = 8;

/// What a Sprint has found so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SprintProgress {
    /// Nonces scored.
    pub nonces: u64,
    /// Proofs found, by nonce.
    pub proofs: Vec<ProofEntry>,
    /// Slices run.
    pub slices: u64,
    /// Time spent in slices.
    pub busy: Duration,
    /// Whether every nonce of the range is scored.
    pub done: bool,
    /// Whether the end was logged.
    pub reported: bool,
}

/// A Sprint over nonces `first..end` for one host, as idle work.
#[derive(Debug)]
pub struct SprintSlices {
    model: Arc<Model>,
    sprint_seed: Hash32,
    node_seed: Hash32,
    nonces_per_proof: u64,
    next: u64,
    end: u64,
    slice: u64,
    threads: usize,
    progress: Arc<Mutex<SprintProgress>>,
}

impl SprintSlices {
    /// Mines `first..end` on `threads` cores; `progress` is shared with the caller.
    pub fn new(
        model: Arc<Model>,
        sprint_seed: Hash32,
        node_seed: Hash32,
        nonces_per_proof: u64,
        range: std::ops::Range<u64>,
        threads: usize,
    ) -> (Self, Arc<Mutex<SprintProgress>>) {
        let progress = Arc::new(Mutex::new(SprintProgress::default()));
        let me = Self {
            model,
            sprint_seed,
            node_seed,
            nonces_per_proof,
            next: range.start,
            end: range.end,
            slice: FIRST_SLICE,
            threads: threads.max(1),
            progress: Arc::clone(&progress),
        };
        (me, progress)
    }
}

impl IdleWork for SprintSlices {
    fn slice(&mut self) -> bool {
        if self.next >= self.end {
            return false;
        }
        let count = self.slice.min(self.end - self.next);
        let nonces: Vec<u64> = (self.next..self.next + count).collect();
        let f = SprintV2::new(&self.model, self.sprint_seed, self.node_seed, self.nonces_per_proof);
        let start = Instant::now();
        let per_thread = (count as usize).div_ceil(self.threads).max(1);
        let scored = recompute(&f, &nonces, per_thread, self.threads);
        let took = start.elapsed();
        self.next += count;
        // Aim the next slice at the target from this one's rate, changing by at most 2× a step.
        let rate = count as f64 / took.as_secs_f64().max(1e-6);
        let want = (rate * SLICE_TARGET.as_secs_f64()).round() as u64;
        self.slice = want.clamp((self.slice / 2).max(1), self.slice * 2);
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.nonces += count;
        p.slices += 1;
        p.busy += took;
        p.proofs.extend(
            nonces
                .iter()
                .zip(&scored)
                .filter(|(_, s)| s.proof)
                .map(|(&nonce, s)| ProofEntry { nonce, score: s.score }),
        );
        p.done = self.next >= self.end;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gonka_kernels::config::TINY;

    #[test]
    fn the_server_miner_answers_once_the_sprint_is_mined_and_matches_mining_at_once() {
        use crate::agent::{MineNow, SprintJob, SprintMiner};
        let seed = [5u8; 32];
        let model = Arc::new(Model::generate(&TINY, &seed).expect("tiny model"));
        let job =
            SprintJob { model, sprint_seed: seed, node_seed: [6; 32], nonces_per_proof: 8, nonces: 300 };
        let served = Arc::new(super::super::ServedModel::tiny(0, "tiny").expect("tiny"));
        let server = Arc::new(super::super::Server::start(served, super::super::ServerConfig::default()));
        let miner = ServerMiner::new(server, 1);
        assert!(miner.mine(&job, false).is_none(), "the first call only starts the job");
        let deadline = Instant::now() + Duration::from_secs(60);
        let proofs = loop {
            if let Some(p) = miner.mine(&job, false) {
                break p;
            }
            assert!(Instant::now() < deadline, "300 tiny nonces not mined in 60 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(Some(proofs), MineNow { threads: 1 }.mine(&job, false));
    }

    #[test]
    fn a_finished_sprint_keeps_the_nonces_scored_so_far() {
        use crate::agent::{MineNow, SprintJob, SprintMiner};
        let seed = [7u8; 32];
        let model = Arc::new(Model::generate(&TINY, &seed).expect("tiny model"));
        let job = SprintJob {
            model: Arc::clone(&model),
            sprint_seed: seed,
            node_seed: [8; 32],
            nonces_per_proof: 4,
            nonces: 1 << 40,
        };
        let served = Arc::new(super::super::ServedModel::tiny(0, "tiny").expect("tiny"));
        let server = Arc::new(super::super::Server::start(served, super::super::ServerConfig::default()));
        let miner = ServerMiner::new(server, 1);
        assert!(miner.mine(&job, false).is_none(), "the first call only starts the job");
        std::thread::sleep(Duration::from_millis(300));
        assert!(miner.mine(&job, false).is_none(), "2^40 nonces are not done");
        let got = miner.mine(&job, true).expect("finishing answers at once");
        assert!(got.scored > 0 && got.scored < job.nonces, "{} scored", got.scored);
        assert_eq!(miner.mine(&job, false), Some(got.clone()), "the same answer after the finish");
        // Exactly the proofs among the scored prefix.
        let prefix = SprintJob { nonces: got.scored, model, ..job };
        assert_eq!(Some(got), MineNow { threads: 1 }.mine(&prefix, false));
    }

    #[test]
    fn slices_find_the_same_proofs_as_one_pass() {
        let seed = [3u8; 32];
        let model = Arc::new(Model::generate(&TINY, &seed).expect("tiny model"));
        let node = [4u8; 32];
        let (mut work, progress) = SprintSlices::new(Arc::clone(&model), seed, node, 8, 0..200, 2);
        while work.slice() {}
        let p = progress.lock().expect("not poisoned").clone();
        assert!(p.done && p.nonces == 200 && p.slices > 1, "{p:?}");
        let f = SprintV2::new(&model, seed, node, 8);
        let nonces: Vec<u64> = (0..200).collect();
        let want: Vec<u64> = nonces
            .iter()
            .zip(recompute(&f, &nonces, 16, 1))
            .filter(|(_, s)| s.proof)
            .map(|(&n, _)| n)
            .collect();
        let got: Vec<u64> = p.proofs.iter().map(|e| e.nonce).collect();
        assert_eq!(got, want, "sliced mining found other proofs");
        assert!(!want.is_empty(), "no proof at one in 8: the test would not check anything");
    }
}

/// The agent's Sprint miner on a model server: the first call starts the
/// job as the server's idle work, later calls answer once every nonce is
/// scored. A new Sprint replaces the old one.
#[derive(Debug)]
pub struct ServerMiner {
    server: Arc<super::Server>,
    threads: usize,
    current: Mutex<Option<(JobKey, Arc<Mutex<SprintProgress>>)>>,
}

/// What identifies a job: its seed, host and size.
type JobKey = (Hash32, Hash32, u64, u64);

impl ServerMiner {
    /// Mines on `server`'s idle capacity with `threads` workers per slice.
    pub fn new(server: Arc<super::Server>, threads: usize) -> Self {
        Self { server, threads: threads.max(1), current: Mutex::new(None) }
    }
}

impl crate::agent::SprintMiner for ServerMiner {
    fn mine(&self, job: &crate::agent::SprintJob, finish: bool) -> Option<crate::agent::MinedNonces> {
        let key = (job.sprint_seed, job.node_seed, job.nonces_per_proof, job.nonces);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, progress)) = current.as_ref()
            && *k == key
        {
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            if finish && !p.done {
                // Time is up: the nonces scored so far are the Sprint's.
                p.done = true;
                if let Err(e) = self.server.set_idle_work(None) {
                    tracing::warn!("cannot stop mining: {e}");
                }
            }
            if !p.done {
                return None;
            }
            if !p.reported {
                p.reported = true;
                tracing::info!(
                    nonces = p.nonces,
                    of = job.nonces,
                    proofs = p.proofs.len(),
                    slices = p.slices,
                    busy_ms = p.busy.as_millis() as u64,
                    "Sprint mined"
                );
            }
            return Some(crate::agent::MinedNonces { scored: p.nonces, proofs: p.proofs.clone() });
        }
        let (work, progress) = SprintSlices::new(
            Arc::clone(&job.model),
            job.sprint_seed,
            job.node_seed,
            job.nonces_per_proof,
            0..job.nonces,
            self.threads,
        );
        if let Err(e) = self.server.set_idle_work(Some(Box::new(work))) {
            tracing::warn!("cannot mine: {e}");
            return None;
        }
        tracing::info!(nonces = job.nonces, "Sprint mining started on the model server's idle capacity");
        *current = Some((key, progress));
        None
    }
}
