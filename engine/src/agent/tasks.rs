//! The host's side of inference tasks: run the tasks drawn to it, learn by
//! its selection signature which finished tasks it must check, check them,
//! and vote on disputes by re-verifying.
//!
//! Running and checking a task go through [`TaskRunner`]; the simulator's
//! [`SimulatedInference`] stands in for the batched model server, whose
//! outputs and log-probability artifacts it models as commitments.

use std::collections::{BTreeMap, BTreeSet};

use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::Agent;
use crate::chain::Chain;
use crate::chain::types::{SignedTransaction, Transaction};
use crate::crypto::PublicKeyBytes;
use crate::crypto::selection::{Probability, select, selection_probability, selection_signature};
use crate::tasks::{DisputeVote, Finished, InferenceFinish, Task, TaskCheck, TaskStatus};

/// How an executor cheats on its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskCheat {
    /// Returns outputs it never computed.
    WrongOutputs,
    /// Serves a smaller, cheaper model than the one requested.
    SmallerModel,
}

/// What running a task produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskOutput {
    /// Output commitment.
    pub output: Hash32,
    /// Validation-artifact commitment.
    pub artifact: Hash32,
    /// Tokens billed.
    pub tokens: u32,
}

/// Runs tasks and checks other hosts' results.
///
/// Both calls may answer "not yet" (`None`): a real model runs on its own
/// thread, and the agent asks again after the next block until it answers.
pub trait TaskRunner: std::fmt::Debug + Send + Sync {
    /// Runs `task` (cheating as `cheat` says, in a simulation).
    fn run(&self, task: &Task, cheat: Option<TaskCheat>) -> Option<TaskOutput>;
    /// Recomputes `task` and compares with the executor's result: whether it matches.
    fn check(&self, task: &Task, result: &Finished, checker: &PublicKeyBytes) -> Option<bool>;
}

/// A model of inference for the simulator: an honest output is a function
/// of the task; a wrong one never matches it; a smaller model's output
/// passes a check with probability `smaller_model_pass_ppm` (its logits are
/// close); an honest output fails a check with probability
/// `false_mismatch_ppm` (non-determinism of the hardware). Every draw is a
/// hash of the checker and the task, so runs repeat exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimulatedInference {
    /// Chance, per million checks, that an honest output fails.
    pub false_mismatch_ppm: u32,
    /// Chance, per million checks, that a smaller model's output passes.
    pub smaller_model_pass_ppm: u32,
}

impl Default for SimulatedInference {
    fn default() -> Self {
        Self { false_mismatch_ppm: 1_000, smaller_model_pass_ppm: 20_000 }
    }
}

impl SimulatedInference {
    fn output(task: &Task, kind: &str) -> Hash32 {
        tagged_hash("gonka/sim-output", &[kind.as_bytes(), &task.id, &task.prompt, &task.model.to_le_bytes()])
    }

    fn draw(checker: &PublicKeyBytes, task: &Task) -> u32 {
        let h = tagged_hash("gonka/sim-check", &[checker, &task.id]);
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % 1_000_000
    }
}

impl TaskRunner for SimulatedInference {
    fn run(&self, task: &Task, cheat: Option<TaskCheat>) -> Option<TaskOutput> {
        let kind = match cheat {
            None => "honest",
            Some(TaskCheat::WrongOutputs) => "wrong",
            Some(TaskCheat::SmallerModel) => "smaller",
        };
        let output = Self::output(task, kind);
        let h = tagged_hash("gonka/sim-tokens", &[&task.id]);
        let tokens = 1 + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % task.max_tokens.max(1);
        Some(TaskOutput { output, artifact: tagged_hash("gonka/sim-artifact", &[&output]), tokens })
    }

    fn check(&self, task: &Task, result: &Finished, checker: &PublicKeyBytes) -> Option<bool> {
        let draw = Self::draw(checker, task);
        Some(if result.output == Self::output(task, "honest") {
            draw >= self.false_mismatch_ppm
        } else if result.output == Self::output(task, "smaller") {
            draw < self.smaller_model_pass_ppm
        } else {
            false
        })
    }
}

/// What the host did about each open task.
#[derive(Clone, Debug, Default)]
pub(super) struct TaskMemory {
    /// Tasks it finished, and the height it last sent the finish at.
    finished: BTreeMap<Hash32, u64>,
    /// Tasks whose selection it has decided.
    checked: BTreeSet<Hash32>,
    /// Disputes it voted in.
    voted: BTreeSet<Hash32>,
}

impl Agent {
    /// The task transactions of this host after a block.
    pub(super) fn task_work(
        &mut self,
        chain: &mut Chain,
        me: u32,
        next: u64,
        out: &mut Vec<SignedTransaction>,
    ) {
        let voting = chain.voting().clone();
        let weight_of = |id: u32| voting.position(id).map_or(0, |p| voting.weights[p]);
        let my_weight = weight_of(me);
        let total = u64::try_from(voting.total_weight()).unwrap_or(u64::MAX);
        let world = chain.world_mut_for_queries();
        let mut q = world.query::<&Task>();
        let mut tasks: Vec<Task> =
            q.iter(world).filter(|t| t.executor == me || my_weight > 0).cloned().collect();
        tasks.sort_unstable_by_key(|t| t.id);
        let open: BTreeSet<Hash32> = tasks.iter().map(|t| t.id).collect();
        let memory = &mut self.tasks;
        memory.finished.retain(|id, _| open.contains(id));
        memory.checked.retain(|id| open.contains(id));
        memory.voted.retain(|id| open.contains(id));
        let mut bodies = Vec::new();
        for task in &tasks {
            match &task.status {
                TaskStatus::Requested if task.executor == me => {
                    let sent = self.tasks.finished.get(&task.id).copied();
                    if sent.is_none_or(|h| next >= h + super::RESEND_BLOCKS) {
                        let Some(o) = self.runner.run(task, self.behavior.task_cheat) else { continue };
                        self.tasks.finished.insert(task.id, next);
                        bodies.push(Transaction::InferenceFinish(InferenceFinish {
                            task: task.id,
                            output: o.output,
                            artifact: o.artifact,
                            tokens: o.tokens,
                        }));
                    }
                }
                TaskStatus::Finished(f) if task.executor != me && next <= f.checks_until => {
                    if !self.tasks.checked.insert(task.id) || self.behavior.skip_validation {
                        continue;
                    }
                    let others = total.saturating_sub(weight_of(task.executor));
                    let Some(p) = selection_probability(Probability::from_raw(f.rate), my_weight, others)
                    else {
                        continue;
                    };
                    let selection = selection_signature(&self.key, &task.id);
                    if select(&selection, p) {
                        let Some(pass) = self.verdict(task, f) else {
                            // Not decided yet: ask again after the next block.
                            self.tasks.checked.remove(&task.id);
                            continue;
                        };
                        bodies.push(Transaction::TaskCheck(TaskCheck { task: task.id, selection, pass }));
                    }
                }
                TaskStatus::Disputed(f, d)
                    if task.executor != me
                        && next <= d.until
                        && !self.behavior.skip_validation
                        && self.tasks.voted.insert(task.id) =>
                {
                    let Some(pass) = self.verdict(task, f) else {
                        self.tasks.voted.remove(&task.id);
                        continue;
                    };
                    bodies.push(Transaction::DisputeVote(DisputeVote { task: task.id, fraud: !pass }));
                }
                _ => {}
            }
        }
        out.extend(bodies.into_iter().map(|b| self.tx(b)));
    }

    /// Whether this host calls the result a match: lazy hosts and
    /// colluders (for their partners) say yes without recomputing.
    fn verdict(&self, task: &Task, f: &Finished) -> Option<bool> {
        if self.behavior.lazy_validator {
            return Some(true);
        }
        if self.behavior.colluders.as_ref().is_some_and(|c| c.contains(&task.executor)) {
            return Some(true);
        }
        self.runner.check(task, f, &self.key.public_key())
    }
}
