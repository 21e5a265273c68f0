//! SmolLM2-135M-Instruct (the GGUF file `tools/fetch-model.sh` fetches)
//! against golden logits from an independent float64 numpy implementation
//! (`tools/reference/smollm2_reference.py` → `tests/golden/smollm2.json`).
//!
//! Tolerance: logits within `LOGIT_TOLERANCE` of the reference. The
//! reference's own float32 run differs from float64 by at most 8.4e-5 at any
//! position; ours sums in another order and decodes every weight in f32, so
//! the bound leaves room for that and no more.
//!
//! Without the model file the tests print a skip line, unless
//! `GONKA_REQUIRE_MODEL=1` (CI sets it), then they fail.

use std::path::PathBuf;

use gonka_kernels::llm::gguf::default_model_path;
use gonka_kernels::llm::llama::{Llama, LlamaScratch, Outputs, Products, SeqStep};
use gonka_kernels::llm::load::load_gguf;
use serde_json::Value;

/// Largest |ours − reference| accepted for any logit.
const LOGIT_TOLERANCE: f64 = 2e-3;
/// The same for the validator's 16-bit products, whose activations are
/// rounded to 16 bits per block of 32: the worst difference measured was
/// 1.04e-2, and this leaves three times that.
const INT16_LOGIT_TOLERANCE: f64 = 3e-2;

fn model() -> Option<Llama> {
    let path: PathBuf = default_model_path();
    if !path.exists() {
        assert!(
            std::env::var("GONKA_REQUIRE_MODEL").as_deref() != Ok("1"),
            "model file {} missing (run tools/fetch-model.sh)",
            path.display()
        );
        eprintln!("skipping: {} missing (run tools/fetch-model.sh)", path.display());
        return None;
    }
    let (_, model) = load_gguf(&path).expect("the fetched model loads");
    Some(model)
}

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("golden JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

/// Each golden prompt's name, its reference entry, and the logits of every
/// position from `model`, on the executor's products or the check's.
fn golden_runs(model: &Llama, g: &Value, check: bool) -> Vec<(String, Value, Vec<f32>)> {
    let mut s = LlamaScratch::default();
    let prompts = g["prompts"].as_array().expect("prompts");
    prompts
        .iter()
        .map(|prompt| {
            let tokens = ids(&prompt["ids"]);
            let mut cache = model.new_cache();
            let seqs = &mut [SeqStep { cache: &mut cache, tokens: &tokens, outputs: Outputs::All }];
            let out = if check { model.step_check(seqs, &mut s) } else { model.step(seqs, &mut s) };
            let name = prompt["name"].as_str().expect("name").to_string();
            (name, prompt.clone(), out.expect("prompt fits").logits)
        })
        .collect()
}

/// The largest difference of a position's top eight from the reference,
/// failing past `tolerance`.
fn top8_worst(row: &[f32], want: &Value, tolerance: f64, at: &str) -> f64 {
    let mut worst = 0f64;
    for pair in want["top8"].as_array().expect("top8") {
        let (id, logit) = (pair[0].as_u64().expect("id") as usize, f(&pair[1]));
        let diff = (row[id] as f64 - logit).abs();
        worst = worst.max(diff);
        assert!(diff <= tolerance, "{at} token {id}: {} vs {logit}", row[id]);
    }
    worst
}

#[test]
fn logits_match_the_reference_at_every_position() {
    let Some(model) = model() else { return };
    let g = golden();
    let vocab = model.config().vocab;
    let stride = g["logit_ids"]["stride"].as_u64().expect("stride") as u32;
    let logit_ids: Vec<u32> =
        (0..g["logit_ids"]["count"].as_u64().expect("count") as u32).map(|j| j * stride).collect();
    let mut worst = 0f64;
    for (name, prompt, logits) in golden_runs(&model, &g, false) {
        let tokens = ids(&prompt["ids"]);
        for (pos, want) in prompt["positions"].as_array().expect("positions").iter().enumerate() {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            worst = worst.max(top8_worst(row, want, LOGIT_TOLERANCE, &format!("{name} position {pos}")));
            let margin = f(&want["top8"][0][1]) - f(&want["top8"][1][1]);
            if margin > 2.0 * LOGIT_TOLERANCE {
                assert_eq!(
                    argmax(row) as u64,
                    want["argmax"].as_u64().expect("argmax"),
                    "{name} position {pos}"
                );
            }
        }
        let last = &logits[(tokens.len() - 1) * vocab..tokens.len() * vocab];
        for (id, want) in logit_ids.iter().zip(prompt["last"]["logits_at_ids"].as_array().expect("logits")) {
            let diff = (last[*id as usize] as f64 - f(want)).abs();
            worst = worst.max(diff);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{name} last position token {id}: {} vs {}",
                last[*id as usize],
                f(want)
            );
        }
        let mean = last.iter().map(|&v| v as f64).sum::<f64>() / vocab as f64;
        assert!((mean - f(&prompt["last"]["mean"])).abs() <= LOGIT_TOLERANCE, "{name}: mean logit {mean}");
    }
    eprintln!("largest logit difference from the float64 reference: {worst:.2e}");
}

/// The validator's 16-bit products against the same reference: their
/// logits move by little more than the f32 products' (see the module
/// documentation of `qmatmul::int16`).
#[test]
fn int16_check_logits_stay_near_the_reference() {
    let Some(mut model) = model() else { return };
    model.set_check_products(Products::Int16);
    let g = golden();
    let vocab = model.config().vocab;
    let mut worst = 0f64;
    for (name, prompt, logits) in golden_runs(&model, &g, true) {
        for (pos, want) in prompt["positions"].as_array().expect("positions").iter().enumerate() {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            worst =
                worst.max(top8_worst(row, want, INT16_LOGIT_TOLERANCE, &format!("{name} position {pos}")));
        }
    }
    eprintln!("int16 products: largest logit difference from the float64 reference: {worst:.2e}");
}

#[test]
fn greedy_generation_with_the_cache_reproduces_the_reference() {
    let Some(model) = model() else { return };
    let g = golden();
    let mut s = LlamaScratch::default();
    for prompt in g["prompts"].as_array().expect("prompts") {
        let name = prompt["name"].as_str().expect("name");
        let tokens = ids(&prompt["ids"]);
        let want = ids(&prompt["greedy"]["ids"]);
        let mut cache = model.new_cache();
        let mut next = tokens.clone();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let out = model
                .step(&mut [SeqStep { cache: &mut cache, tokens: &next, outputs: Outputs::Last }], &mut s)
                .expect("fits");
            let t = argmax(&out.logits) as u32;
            got.push(t);
            next = vec![t];
        }
        assert_eq!(got, want, "{name}: greedy continuation differs");
    }
}

/// A quick throughput printer for development (`--ignored --nocapture`);
/// the benchmark of record is `benches/inference`.
#[test]
#[ignore]
fn print_decode_throughput() {
    let Some(model) = model() else { return };
    let mut s = LlamaScratch::default();
    let prompt: Vec<u32> = (0..64u32).map(|i| 1000 + i * 7).collect();
    let batches: Vec<usize> = std::env::var("BATCHES")
        .map(|v| v.split(',').filter_map(|b| b.parse().ok()).collect())
        .unwrap_or_else(|_| vec![1, 8, 32]);
    for batch in batches {
        let mut caches: Vec<_> = (0..batch).map(|_| model.new_cache()).collect();
        let t0 = std::time::Instant::now();
        {
            let mut steps: Vec<SeqStep<'_>> = caches
                .iter_mut()
                .map(|cache| SeqStep { cache, tokens: &prompt, outputs: Outputs::Last })
                .collect();
            model.step(&mut steps, &mut s).expect("fits");
        }
        let prefill = t0.elapsed().as_secs_f64();
        let steps_n = 48;
        let t1 = std::time::Instant::now();
        for _ in 0..steps_n {
            let mut steps: Vec<SeqStep<'_>> = caches
                .iter_mut()
                .map(|cache| SeqStep { cache, tokens: &[42], outputs: Outputs::Last })
                .collect();
            model.step(&mut steps, &mut s).expect("fits");
        }
        let decode = t1.elapsed().as_secs_f64();
        eprintln!(
            "batch {batch}: prefill {:.0} tokens/s, decode {:.1} tokens/s ({:.1} ms/step)",
            (batch * prompt.len()) as f64 / prefill,
            (batch * steps_n) as f64 / decode,
            decode / steps_n as f64 * 1e3
        );
    }
}

/// A check's pass for development (`--ignored --nocapture`): 166 rows with
/// the head on the last 128, as `gonka infer eval --cost-only` checks.
#[test]
#[ignore]
fn print_check_pass() {
    let Some(mut model) = model() else { return };
    // INT16=1: the validator's 16-bit integer products; else f32.
    let int16 = std::env::var("INT16").is_ok_and(|v| v == "1");
    model.set_check_products(if int16 { Products::Int16 } else { Products::F32 });
    let mut s = LlamaScratch::default();
    let input: Vec<u32> = (0..166u32).map(|i| 1000 + i * 7).collect();
    let reps = std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut times = Vec::new();
    for _ in 0..reps {
        let mut cache = model.new_cache();
        let t = std::time::Instant::now();
        model
            .step_check(
                &mut [SeqStep { cache: &mut cache, tokens: &input, outputs: Outputs::Tail(128) }],
                &mut s,
            )
            .expect("fits");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    eprintln!("check pass, 166 rows, head on 128: median {:.1} ms of {reps}", times[reps / 2]);
}

/// The per-position work of a check for development (`--ignored
/// --nocapture`): the token rule and the record of each position of a real
/// completion (the longest golden prompt, 128 tokens sampled at temperature
/// 0.8, top-p 0.95), on one thread.
#[test]
#[ignore]
fn print_judging() {
    use gonka_kernels::llm::artifact::{DigestBasis, generate, record};
    use gonka_kernels::llm::sampling::{SamplerScratch, SamplingParams, sample, token_gap};
    let Some(model) = model() else { return };
    let g = golden();
    let prompt = g["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| ids(&p["ids"]))
        .max_by_key(Vec::len)
        .expect("a prompt");
    let p = SamplingParams { temperature: 0.8, top_p: 0.95, seed: 3 };
    let mut s = LlamaScratch::default();
    let done = generate(&model, &prompt, &p, 128, &[], &mut s).expect("fits");
    let n = done.output.len();
    let mut input = prompt.clone();
    input.extend_from_slice(&done.output[..n - 1]);
    let mut cache = model.new_cache();
    let out = model
        .step(&mut [SeqStep { cache: &mut cache, tokens: &input, outputs: Outputs::Tail(n) }], &mut s)
        .expect("fits");
    let (v, d) = (model.config().vocab, model.config().d_model);
    let basis = DigestBasis::new(d);
    let mut sampler = SamplerScratch::default();
    let position = |i: usize| (prompt.len() + i) as u32;
    let per_position = |f: &mut dyn FnMut(&[f32], usize)| {
        let t = std::time::Instant::now();
        for i in 0..n {
            f(&out.logits[i * v..(i + 1) * v], i);
        }
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    };
    let sampling =
        per_position(&mut |l, i| assert_eq!(sample(l, &p, position(i), &mut sampler), done.output[i]));
    let gap = per_position(&mut |l, i| {
        std::hint::black_box(token_gap(l, &p, position(i), done.output[i], 0.02, &mut sampler));
    });
    let rec = per_position(&mut |l, i| {
        std::hint::black_box(record(l, &out.hidden[i * d..(i + 1) * d], &basis));
    });
    eprintln!("{n} positions, each: sample {sampling:.3} ms, token gap {gap:.3} ms, record {rec:.3} ms");
    let exps = per_position(&mut |l, _| {
        std::hint::black_box(gonka_kernels::llm::sampling::RowStats::new(l, 0.8));
    });
    let plain = per_position(&mut |l, _| {
        std::hint::black_box(gonka_kernels::llm::sampling::RowStats::new(l, 1.0));
    });
    let digest = per_position(&mut |_, i| {
        std::hint::black_box(basis.digest(&out.hidden[i * d..(i + 1) * d]));
    });
    eprintln!("of which: row statistics {exps:.3} ms (temperature 1: {plain:.3} ms), digest {digest:.3} ms");
}
