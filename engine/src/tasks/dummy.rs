//! Prompts of dummy requests: questions of the shapes users ask, drawn from
//! a stream seeded by the beacon, so every host can reproduce (and the
//! intermediary can send) the prompt a dummy request commits to.

use gonka_kernels::encoding::Hash32;

use crate::crypto::selection::DrawStream;

const OPENERS: [&str; 8] = [
    "Explain",
    "Summarize",
    "Write a short note about",
    "List three facts about",
    "Compare",
    "Describe",
    "Give an example of",
    "What is the difference between",
];

const TOPICS: [&str; 24] = [
    "photosynthesis",
    "the water cycle",
    "binary search",
    "public-key cryptography",
    "the French revolution",
    "plate tectonics",
    "compound interest",
    "the immune system",
    "hash tables",
    "supply and demand",
    "the speed of light",
    "volcanoes",
    "recursion",
    "the Roman empire",
    "climate and weather",
    "vaccines",
    "sorting algorithms",
    "black holes",
    "the printing press",
    "neural networks",
    "ocean tides",
    "inflation",
    "DNA replication",
    "electric motors",
];

const STYLES: [&str; 6] =
    ["", " in simple words", " for a ten-year-old", " in one paragraph", " with an example", " step by step"];

/// The prompt of dummy request `k` of the plan seeded by `seed`.
pub fn dummy_prompt(seed: &Hash32, k: u64) -> String {
    let mut draw = DrawStream::new(seed, &format!("prompt {k}"));
    let mut pick = |n: usize| draw.below(n as u128) as usize;
    let opener = OPENERS[pick(OPENERS.len())];
    let a = TOPICS[pick(TOPICS.len())];
    let style = STYLES[pick(STYLES.len())];
    if opener == "Compare" || opener == "What is the difference between" {
        let b = TOPICS[pick(TOPICS.len())];
        let end = if opener == "Compare" { "." } else { "?" };
        format!("{opener} {a} and {b}{style}{end}")
    } else {
        format!("{opener} {a}{style}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_repeat_per_seed_and_vary_across_requests() {
        let seed = [3u8; 32];
        assert_eq!(dummy_prompt(&seed, 0), dummy_prompt(&seed, 0));
        let distinct: std::collections::BTreeSet<String> = (0..50).map(|k| dummy_prompt(&seed, k)).collect();
        assert!(distinct.len() > 40, "50 prompts, {} distinct", distinct.len());
        assert!(distinct.iter().all(|p| p.len() > 10 && p.is_ascii()));
    }
}
