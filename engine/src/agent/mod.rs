//! The host's local work on the chain (local host state): after each block
//! it reads its replica and produces the transactions its roles call for —
//! seed commit and reveal, DKG rounds and beacon partials, mining the Sprint
//! and submitting the batch, validating other hosts' batches.
//!
//! ```text
//!  epoch offset:  0 ─ seed commit, DKG deal ─ complaints ─ justifications ─ reveal ─ partials
//!  seed known  ─► mine the Sprint ─► commitment + batch
//!  Sprint over ─► recompute a sample of every other batch ─► one validation report
//! ```
//!
//! [`Behavior`] lets the simulator turn a host into an adversary; an honest
//! node runs [`Behavior::honest`]. Inference tasks (run, check, dispute) are
//! in [`tasks`].

pub mod tasks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gonka_kernels::encoding::{Hash32, tagged_hash};
use gonka_kernels::pow::node_seed;
use gonka_kernels::sprint::{Scored, SprintV2};
use gonka_kernels::validate::{ValidationParams, judge, recompute};

use crate::chain::Chain;
use crate::chain::types::{BatchVerdict, SignedTransaction, Transaction};
use crate::crypto::beacon::{BeaconPartials, SeedCommit, SeedReveal, seed_commitment};
use crate::crypto::dkg::{Dealing, DkgMessage, complaints, group_shares};
use crate::crypto::{Domain, HostKey, PublicKeyBytes};
use crate::proofs::components::{BatchContents, BatchKey, BatchStatus};
use crate::proofs::{Difficulty, ProofBatch, ProofEntry, sample_indices};
use crate::sprints::BeaconStatus;

/// How a host behaves; everything but [`Behavior::honest`] is an attack the
/// simulator plays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behavior {
    /// Nonces the host computes per Sprint (its compute).
    pub nonces_per_sprint: u64,
    /// Claims nonces it never computed as proofs.
    pub fabricate_proofs: bool,
    /// Commits to more proofs than its batch holds.
    pub inflate_count: bool,
    /// Repeats nonces in its batch.
    pub duplicate_nonces: bool,
    /// Accepts every batch without recomputing.
    pub lazy_validator: bool,
    /// Accepts the batches of these hosts (registry indices) unchecked and
    /// rejects everyone else's.
    pub colluders: Option<Vec<u32>>,
    /// Sends no validation report and checks no task.
    pub skip_validation: bool,
    /// Cheats on the inference tasks drawn to it.
    pub task_cheat: Option<tasks::TaskCheat>,
}

impl Behavior {
    /// An honest host computing `nonces_per_sprint` nonces per Sprint.
    pub fn honest(nonces_per_sprint: u64) -> Self {
        Self { nonces_per_sprint, ..Self::default() }
    }
}

/// Sprint models by seed, and recomputed nonces, shared by the hosts of one
/// process: generation and recomputation are pure functions of (seed, host
/// key, nonce), so sharing changes no result — it only spares a simulator
/// from recomputing, per validator, the proofs every validator samples.
#[derive(Clone, Debug, Default)]
pub struct ModelCache {
    models: Arc<Mutex<BTreeMap<Hash32, Arc<gonka_kernels::v2::Model>>>>,
    scores: Arc<Mutex<BTreeMap<ScoreKey, Scored>>>,
}

/// A recomputed nonce: Sprint seed, host key, nonce.
type ScoreKey = (Hash32, PublicKeyBytes, u64);

/// Most recomputed nonces a [`ModelCache`] remembers (one Sprint's samples).
const MAX_REMEMBERED_SCORES: usize = 1 << 20;

impl ModelCache {
    /// Scores of `nonces` of host `pubkey` under `f`, computing only those not remembered.
    fn recompute(
        &self,
        f: &SprintV2<'_>,
        seed: &Hash32,
        pubkey: &PublicKeyBytes,
        nonces: &[u64],
        threads: usize,
    ) -> Vec<Scored> {
        let known: Vec<Option<Scored>> = {
            let map = self.scores.lock().unwrap_or_else(|e| e.into_inner());
            nonces.iter().map(|&n| map.get(&(*seed, *pubkey, n)).copied()).collect()
        };
        let missing: Vec<u64> =
            nonces.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(&n, _)| n).collect();
        let fresh = if missing.is_empty() { Vec::new() } else { recompute(f, &missing, 64, threads) };
        let mut map = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() + fresh.len() > MAX_REMEMBERED_SCORES {
            map.clear();
        }
        for (&n, s) in missing.iter().zip(&fresh) {
            map.insert((*seed, *pubkey, n), *s);
        }
        let mut fresh = fresh.into_iter();
        known.into_iter().map(|k| k.or_else(|| fresh.next()).unwrap_or_default()).collect()
    }

    /// The model of `seed` for the chain's shape, generated once.
    pub fn get(&self, chain: &Chain, seed: &Hash32) -> Option<Arc<gonka_kernels::v2::Model>> {
        let config = chain.params().pow_shape.named_config()?;
        let mut map = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = map.get(seed) {
            return Some(Arc::clone(m));
        }
        let model = Arc::new(gonka_kernels::v2::Model::generate(&config, seed).ok()?);
        // Only the current Sprint's model is needed.
        map.clear();
        map.insert(*seed, Arc::clone(&model));
        Some(model)
    }
}

/// What the host has already done this epoch.
#[derive(Clone, Debug, Default)]
struct Done {
    epoch: u64,
    seed_commit: bool,
    reveal: bool,
    deal: bool,
    complaints: bool,
    justified: bool,
    partials: bool,
    /// The commitment and batch mined this epoch, and the height each was last sent at.
    mined: Option<Mined>,
    validated: bool,
}

/// A mined Sprint: the commitment goes first; the batch once the
/// commitment is on chain (a batch without one is refused).
#[derive(Clone, Debug)]
struct Mined {
    commitment: SignedTransaction,
    batch: SignedTransaction,
    commitment_sent: u64,
    batch_sent: Option<u64>,
}

/// Blocks to wait for a transaction to land before sending it again (gossip can lose it).
const RESEND_BLOCKS: u64 = 3;

/// One host's agent.
#[derive(Debug)]
pub struct Agent {
    key: HostKey,
    entropy: Hash32,
    behavior: Behavior,
    threads: usize,
    done: Done,
    runner: Arc<dyn tasks::TaskRunner>,
    miner: Arc<dyn SprintMiner>,
    tasks: tasks::TaskMemory,
}

/// One host's share of a Sprint: nonces `0..nonces` under `sprint_seed`.
#[derive(Debug, Clone)]
pub struct SprintJob {
    /// The Sprint's model.
    pub model: Arc<gonka_kernels::v2::Model>,
    /// The Sprint's seed.
    pub sprint_seed: Hash32,
    /// The host's node seed.
    pub node_seed: Hash32,
    /// The difficulty: one proof per this many nonces on average.
    pub nonces_per_proof: u64,
    /// Nonces to score.
    pub nonces: u64,
}

/// Nonces `0..scored` of a job were scored; these are the proofs among them.
#[derive(Debug, Clone, PartialEq)]
pub struct MinedNonces {
    /// How many nonces were scored, from nonce 0.
    pub scored: u64,
    /// The proofs among them, by nonce.
    pub proofs: Vec<ProofEntry>,
}

/// Where the agent's Sprint work runs. It may answer "not yet" (`None`): a
/// node mines in slices on its model server's idle capacity, and the agent
/// asks again after the next block.
pub trait SprintMiner: std::fmt::Debug + Send + Sync {
    /// The proofs among the job's nonces, once all are scored; or, with
    /// `finish` (the Sprint is about to close), the proofs among those scored
    /// so far, and the job stops. The Sprint is bound by time, not by a
    /// count: what a host scored by its end is what it has.
    fn mine(&self, job: &SprintJob, finish: bool) -> Option<MinedNonces>;
}

/// Mines the whole job at once on the calling thread's `threads` workers
/// (the simulator, tests).
#[derive(Debug, Clone, Copy)]
pub struct MineNow {
    /// Worker threads.
    pub threads: usize,
}

impl SprintMiner for MineNow {
    fn mine(&self, job: &SprintJob, _finish: bool) -> Option<MinedNonces> {
        let f = SprintV2::new(&job.model, job.sprint_seed, job.node_seed, job.nonces_per_proof);
        let nonces: Vec<u64> = (0..job.nonces).collect();
        let scored = recompute(&f, &nonces, 64, self.threads);
        let proofs = nonces
            .iter()
            .zip(&scored)
            .filter(|(_, s)| s.proof)
            .map(|(&nonce, s)| ProofEntry { nonce, score: s.score })
            .collect();
        Some(MinedNonces { scored: job.nonces, proofs })
    }
}

/// Blocks before a Sprint's last block at which a host stops mining and
/// submits what it has: 30% of the Sprint, at least four blocks. Both the
/// commitment and then the batch must land inside the Sprint, each gossiped
/// to a proposer and included (a block or two on a sparse network), with
/// room for one of them to be resent.
fn finish_margin(sprint_blocks: u64) -> u64 {
    (sprint_blocks * 3 / 10).max(4)
}

impl Agent {
    /// An agent for `key`; `entropy` seeds its secret seed values and DKG
    /// polynomials (a node draws it from the OS; the simulator from its seed).
    pub fn new(key: HostKey, entropy: Hash32, behavior: Behavior, threads: usize) -> Self {
        Self {
            key,
            entropy,
            behavior,
            threads: threads.max(1),
            done: Done::default(),
            runner: Arc::new(tasks::SimulatedInference::default()),
            miner: Arc::new(MineNow { threads: threads.max(1) }),
            tasks: Default::default(),
        }
    }

    /// The same agent mining its Sprints with `miner`.
    pub fn with_miner(mut self, miner: Arc<dyn SprintMiner>) -> Self {
        self.miner = miner;
        self
    }

    /// The same agent running and checking tasks with `runner`.
    pub fn with_runner(mut self, runner: Arc<dyn tasks::TaskRunner>) -> Self {
        self.runner = runner;
        self
    }

    /// The host's key.
    pub fn key(&self) -> &HostKey {
        &self.key
    }

    /// Its behaviour.
    pub fn behavior(&self) -> &Behavior {
        &self.behavior
    }

    fn secret(&self, what: &str, epoch: u64) -> Hash32 {
        tagged_hash("gonka/agent-secret", &[&self.entropy, what.as_bytes(), &epoch.to_le_bytes()])
    }

    fn tx(&self, body: Transaction) -> SignedTransaction {
        SignedTransaction::sign(&self.key, body)
    }

    /// The transactions this host sends after its replica applied a block.
    pub fn on_block(&mut self, chain: &mut Chain, models: &ModelCache) -> Vec<SignedTransaction> {
        let next = chain.next_height();
        let params = chain.params().clone();
        let epoch = params.epoch_of(next);
        if self.done.epoch != epoch {
            self.done = Done { epoch, ..Done::default() };
        }
        let mut out = Vec::new();
        let Some(id) = chain.registry().id_of(&self.key.public_key()) else { return out };
        let pos = chain.voting().position(id).map(|p| p as u32);
        if let Some(pos) = pos {
            self.beacon_work(chain, pos, next, &mut out);
        }
        self.task_work(chain, id, next, &mut out);
        let sprint = chain.sprint();
        if let Some(seed) = sprint.seed
            && sprint.epoch == epoch
        {
            if next <= sprint.end {
                // Mining stops early enough for the commitment to land in the Sprint.
                let finish = next + finish_margin(sprint.end - sprint.start) >= sprint.end;
                out.extend(self.submit(chain, models, &seed, epoch, id, next, finish));
            }
            let voting_weight = pos.map_or(0, |p| chain.voting().weights[p as usize]);
            if !self.done.validated && voting_weight > 0 && next > sprint.end && next <= sprint.validation_end
            {
                self.done.validated = true;
                if !self.behavior.skip_validation {
                    out.extend(self.validate(chain, models, &seed, epoch, id));
                }
            }
        }
        out
    }

    /// Seed commit–reveal, DKG rounds and beacon partials.
    fn beacon_work(&mut self, chain: &Chain, pos: u32, next: u64, out: &mut Vec<SignedTransaction>) {
        let params = chain.params();
        let epoch = params.epoch_of(next);
        let offset = next - params.epoch_start(epoch);
        let value = self.secret("seed-value", epoch);
        if !self.done.seed_commit && offset < params.seed_commit_blocks {
            self.done.seed_commit = true;
            let commitment = seed_commitment(epoch, &self.key.public_key(), &value);
            out.push(self.tx(Transaction::SeedCommit(SeedCommit { epoch, commitment })));
        }
        if !self.done.reveal && (params.reveal_open_offset()..=params.reveal_close_offset()).contains(&offset)
        {
            self.done.reveal = true;
            out.push(self.tx(Transaction::SeedReveal(SeedReveal { epoch, value })));
        }
        let beacon = chain.beacon();
        let (Some(member), Some(dkg)) = (beacon.member_of(pos), beacon.dkg.as_ref()) else { return };
        let cfg = *dkg.config();
        let dealing = Dealing::from_seed(&self.secret("dkg-dealing", epoch), cfg.threshold);
        if !self.done.deal && next <= cfg.deal_deadline {
            self.done.deal = true;
            out.push(self.tx(Transaction::Dkg(DkgMessage::Deal(dealing.deal(dkg, member, &self.key)))));
        }
        if !self.done.complaints && next > cfg.deal_deadline && next <= cfg.complaint_deadline {
            self.done.complaints = true;
            for c in complaints(dkg, member, &self.key) {
                out.push(self.tx(Transaction::Dkg(DkgMessage::Complaint(c))));
            }
        }
        if !self.done.justified && next > cfg.complaint_deadline && next <= cfg.justification_deadline {
            self.done.justified = true;
            for complainer in dkg.complainers_of(member) {
                out.push(
                    self.tx(Transaction::Dkg(DkgMessage::Justification(dealing.justify(dkg, complainer)))),
                );
            }
        }
        if !self.done.partials
            && beacon.status == BeaconStatus::Pending
            && let (Some(outcome), Some(round)) = (beacon.outcome.as_ref(), beacon.beacon_round.as_ref())
            && next >= params.epoch_start(epoch) + params.partials_open_offset()
        {
            self.done.partials = true;
            if let Ok(shares) = group_shares(dkg, outcome, member, &self.key) {
                let partials =
                    shares.iter().filter_map(|s| s.sign(Domain::BeaconShare, round.message())).collect();
                out.push(self.tx(Transaction::BeaconPartials(BeaconPartials { epoch, partials })));
            }
        }
    }

    /// Mines once per Sprint, then sends the commitment, and the batch once
    /// the commitment is on chain; either again when it has not landed.
    fn submit(
        &mut self,
        chain: &Chain,
        models: &ModelCache,
        seed: &Hash32,
        epoch: u64,
        me: u32,
        next: u64,
        finish: bool,
    ) -> Vec<SignedTransaction> {
        if self.done.mined.is_none() {
            let Some((commitment, batch)) = self.mine(chain, models, seed, epoch, finish) else {
                return Vec::new();
            };
            self.done.mined = Some(Mined {
                commitment: commitment.clone(),
                batch,
                commitment_sent: next,
                batch_sent: None,
            });
            return vec![commitment];
        }
        let Some(m) = self.done.mined.as_mut() else { return Vec::new() };
        let world = chain.world();
        let status = world
            .resource::<crate::proofs::components::BatchIndex>()
            .0
            .get(&BatchKey { epoch, host: me })
            .and_then(|&e| world.get::<BatchStatus>(e).copied());
        match status {
            None if next >= m.commitment_sent + RESEND_BLOCKS => {
                m.commitment_sent = next;
                vec![m.commitment.clone()]
            }
            Some(BatchStatus::Committed) if m.batch_sent.is_none_or(|h| next >= h + RESEND_BLOCKS) => {
                m.batch_sent = Some(next);
                vec![m.batch.clone()]
            }
            _ => Vec::new(),
        }
    }

    /// Mines this host's nonces of the Sprint: its commitment and batch transactions.
    fn mine(
        &self,
        chain: &Chain,
        models: &ModelCache,
        seed: &Hash32,
        epoch: u64,
        finish: bool,
    ) -> Option<(SignedTransaction, SignedTransaction)> {
        let params = chain.params();
        let Difficulty::V2 { nonces_per_proof } = params.pow_difficulty else { return None };
        let model = models.get(chain, seed)?;
        let mut n = self.behavior.nonces_per_sprint;
        let mut proofs: Vec<ProofEntry> = if self.behavior.fabricate_proofs {
            // Claims without work: every nonce a multiple of the difficulty, a perfect score.
            (0..n / nonces_per_proof.max(1))
                .map(|k| ProofEntry { nonce: k * nonces_per_proof, score: 0.0 })
                .collect()
        } else {
            let job = SprintJob {
                model: Arc::clone(&model),
                sprint_seed: *seed,
                node_seed: node_seed(&self.key.public_key()),
                nonces_per_proof,
                nonces: n,
            };
            let mined = self.miner.mine(&job, finish)?;
            n = mined.scored;
            mined.proofs
        };
        proofs.truncate(params.max_batch_proofs as usize);
        if proofs.is_empty() {
            return None;
        }
        let config = params.pow_shape.named_config().expect("validated at genesis");
        let mut batch = ProofBatch::new_signed(&self.key, *seed, &config, params.pow_difficulty, n, proofs);
        if self.behavior.duplicate_nonces && !batch.proofs.is_empty() {
            let first = batch.proofs[0];
            batch.proofs.insert(0, first);
            batch.signature = self.key.sign(Domain::ProofBatch, &batch.commitment());
        }
        let mut claimed = batch.proofs.len() as u64;
        if self.behavior.inflate_count {
            claimed *= 2;
        }
        Some((
            self.tx(Transaction::ProofCommitment { epoch, commitment: batch.commitment(), proofs: claimed }),
            self.tx(Transaction::ProofBatch(batch)),
        ))
    }

    /// Judges every other submitted batch of the Sprint by a recomputed sample.
    fn validate(
        &self,
        chain: &mut Chain,
        models: &ModelCache,
        seed: &Hash32,
        epoch: u64,
        me: u32,
    ) -> Option<SignedTransaction> {
        let sample = chain.params().validation_sample as usize;
        let world = chain.world_mut_for_queries();
        let mut q = world.query::<(&BatchKey, &BatchStatus, &BatchContents)>();
        let mut batches: Vec<(u32, Arc<ProofBatch>)> = q
            .iter(world)
            .filter(|(k, s, _)| k.epoch == epoch && k.host != me && **s == BatchStatus::Submitted)
            .map(|(k, _, c)| (k.host, Arc::clone(&c.0)))
            .collect();
        batches.sort_unstable_by_key(|b| b.0);
        if batches.is_empty() {
            return None;
        }
        let model = models.get(chain, seed)?;
        let verdicts = batches
            .iter()
            .map(|(host, batch)| {
                let accept = match &self.behavior.colluders {
                    Some(friends) => friends.contains(host),
                    None if self.behavior.lazy_validator => true,
                    None => self.judge(models, &model, seed, batch, sample),
                };
                BatchVerdict { host: *host, accept }
            })
            .collect();
        Some(self.tx(Transaction::ProofValidation { epoch, verdicts }))
    }

    /// Recomputes the sample this host's signature picks; accepts unless the
    /// binomial test calls it fraud.
    fn judge(
        &self,
        models: &ModelCache,
        model: &gonka_kernels::v2::Model,
        seed: &Hash32,
        batch: &ProofBatch,
        sample: usize,
    ) -> bool {
        let Difficulty::V2 { nonces_per_proof } = batch.difficulty else { return false };
        let sig = self.key.sign(Domain::ValidationSample, &batch.commitment());
        let picked = sample_indices(&sig, batch.proofs.len(), sample);
        let claims: Vec<(u64, f64)> =
            picked.iter().map(|&i| (batch.proofs[i].nonce, batch.proofs[i].score)).collect();
        let nonces: Vec<u64> = claims.iter().map(|c| c.0).collect();
        let f = SprintV2::new(model, *seed, node_seed(&batch.pubkey), nonces_per_proof);
        let recomputed = models.recompute(&f, seed, &batch.pubkey, &nonces, self.threads);
        judge(&f, &claims, &recomputed, &ValidationParams::exact()).is_ok_and(|v| !v.fraudulent)
    }
}
