//! The model a node serves until the inference engine lands: a
//! deterministic stand-in whose text is a function of the task (its id,
//! model and prompt commitment), so that the executor's output commitment,
//! the checkers' recomputation and the text the user receives all agree,
//! and a wrong text is detectable. It is not a language model; it keeps the
//! whole request path (API → chain → executor → relay back → checks →
//! settlement) real while the model behind it is replaced.

use gonka_kernels::encoding::{Hash32, tagged_hash};

use crate::agent::tasks::{TaskCheat, TaskOutput, TaskRunner};
use crate::crypto::PublicKeyBytes;
use crate::tasks::{Finished, Task};

/// Words the stand-in draws from.
const WORDS: [&str; 16] = [
    "proof", "weight", "sprint", "block", "host", "epoch", "beacon", "nonce", "model", "vote", "task",
    "check", "seed", "batch", "chain", "reward",
];

/// The deterministic stand-in model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StandInModel;

impl StandInModel {
    /// The completion of `task`: between one and `max_tokens` words.
    pub fn text(task: &Task) -> String {
        let seed = tagged_hash("gonka/stand-in", &[&task.id, &task.prompt, &task.model.to_le_bytes()]);
        let n = 1 + u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]) % task.max_tokens.clamp(1, 64);
        (0..n)
            .map(|i| {
                let h = tagged_hash("gonka/stand-in-word", &[&seed, &i.to_le_bytes()]);
                WORDS[h[0] as usize % WORDS.len()]
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The output commitment of a completion text.
    pub fn commitment(text: &str) -> Hash32 {
        tagged_hash("gonka/completion", &[text.as_bytes()])
    }
}

impl TaskRunner for StandInModel {
    fn run(&self, task: &Task, cheat: Option<TaskCheat>) -> TaskOutput {
        let mut text = Self::text(task);
        if cheat.is_some() {
            text.push_str(" forged");
        }
        let output = Self::commitment(&text);
        let tokens = text.split(' ').count() as u32;
        TaskOutput { output, artifact: tagged_hash("gonka/stand-in-artifact", &[&output]), tokens }
    }

    fn check(&self, task: &Task, result: &Finished, _checker: &PublicKeyBytes) -> bool {
        result.output == Self::commitment(&Self::text(task))
    }
}
