//! `gonka infer`: the inference engine on its own — a chat completion for a
//! person (`chat`), throughput and latency figures (`bench`), and the study
//! of what validation tells apart (`eval`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use gonka_engine::inference::mining::SprintSlices;
use gonka_engine::inference::{Event, GenerateRequest, ServedModel, Server, ServerConfig};
use gonka_kernels::gemm::Precision;
use gonka_kernels::llm::artifact::{Claim, Thresholds, Verdict, check, generate};
use gonka_kernels::llm::gguf::default_model_path;
use gonka_kernels::llm::llama::{LlamaScratch, Outputs, Products, SeqStep};
use gonka_kernels::llm::sampling::SamplingParams;
use gonka_kernels::llm::tokenizer::ChatMessage;
use serde_json::json;

/// `gonka infer …`.
#[derive(Debug, Subcommand)]
pub enum InferCommand {
    /// Streams a chat completion of one user message.
    Chat(ChatArgs),
    /// Measures prefill and decode throughput, time to first token, and the
    /// latency a request sees while a Sprint mines on the same cores.
    Bench(BenchArgs),
    /// Measures validation: honest pass rates across precisions and batch
    /// sizes, detection of cheats, and the validator's cost.
    Eval(EvalArgs),
}

/// Runs a `gonka infer` command.
pub fn run(c: &InferCommand) -> anyhow::Result<()> {
    match c {
        InferCommand::Chat(a) => chat(a),
        InferCommand::Bench(a) => bench(a),
        InferCommand::Eval(a) => eval(a),
    }
}

fn load(path: &Option<PathBuf>) -> anyhow::Result<ServedModel> {
    let path = path.clone().unwrap_or_else(default_model_path);
    let start = Instant::now();
    let m = ServedModel::load_gguf(&path, "SmolLM2-135M-Instruct")
        .with_context(|| format!("loading {}", path.display()))?;
    eprintln!(
        "loaded {} ({:.1} MB of weights) in {:.2} s",
        path.display(),
        m.llama.weight_bytes() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(m)
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The user's message.
    message: String,
    /// The GGUF file (default: the fetched SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Nucleus mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn chat(a: &ChatArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let model = Arc::new(load(&a.model)?);
    let prompt = model.encode_chat(&[ChatMessage::new("user", a.message.clone())])?;
    let server = Server::start(Arc::clone(&model), ServerConfig::default());
    let params = SamplingParams { temperature: a.temperature, top_p: a.top_p, seed: a.seed };
    let rx = server.submit(GenerateRequest { prompt: prompt.clone(), params, max_tokens: a.max_tokens })?;
    let mut out = std::io::stdout().lock();
    for event in rx.iter() {
        match event {
            Event::Token { text, .. } => {
                write!(out, "{text}")?;
                out.flush()?;
            }
            Event::Done(g) => {
                let decode = g.total.saturating_sub(g.time_to_first_token).as_secs_f64();
                writeln!(out)?;
                eprintln!(
                    "{} prompt tokens, {} generated ({:?}); first token after {:.0} ms, then {:.1} tokens/s",
                    prompt.len(),
                    g.output.len(),
                    g.finish,
                    g.time_to_first_token.as_secs_f64() * 1e3,
                    (g.output.len().saturating_sub(1)) as f64 / decode.max(1e-9)
                );
            }
            Event::Failed(e) => anyhow::bail!("generation failed: {e}"),
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The GGUF file (default: the fetched SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Batch sizes for decode throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batches: Vec<usize>,
    /// Tokens decoded per sequence.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Prompt length for the prefill figure.
    #[arg(long, default_value_t = 256)]
    prompt_tokens: usize,
    /// Repetitions; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Requests timed for the latency-under-Sprint figure (0: skip it).
    #[arg(long, default_value_t = 8)]
    sprint_requests: usize,
    /// Activation precision: f32 or bf16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Print one JSON object (for scripts) instead of lines.
    #[arg(long)]
    json: bool,
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn precision(s: &str) -> anyhow::Result<Precision> {
    match s {
        "f32" => Ok(Precision::F32),
        "bf16" => Ok(Precision::Bf16),
        other => anyhow::bail!("precision {other:?}: f32 or bf16"),
    }
}

/// A prompt of `n` ordinary tokens (a text repeated), for throughput runs.
fn filler(model: &ServedModel, n: usize) -> anyhow::Result<Vec<u32>> {
    let text = "The history of printing starts with woodblocks and movable type, and the press changed how \
                people shared knowledge across Europe and the world. ";
    let mut out = Vec::with_capacity(n);
    let unit = model.encode_text(text)?;
    while out.len() < n {
        out.extend_from_slice(&unit);
    }
    out.truncate(n);
    Ok(out)
}

fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    let mut served = load(&a.model)?;
    served.llama.set_precision(precision(&a.precision)?);
    let model = Arc::new(served);
    let llama = &model.llama;
    let mut s = LlamaScratch::default();
    let threads = rayon::current_num_threads();
    // Prefill: one sequence, logits for its last token.
    let prompt = filler(&model, a.prompt_tokens)?;
    let mut prefill = Vec::new();
    for _ in 0..a.runs {
        let mut cache = llama.new_cache();
        let t = Instant::now();
        llama.step(&mut [SeqStep { cache: &mut cache, tokens: &prompt, outputs: Outputs::Last }], &mut s)?;
        prefill.push(prompt.len() as f64 / t.elapsed().as_secs_f64());
    }
    let prefill = median(prefill);
    // Decode: `b` sequences of a 32-token prompt, one token each per step.
    let short = filler(&model, 32)?;
    let mut decode = Vec::new();
    for &b in &a.batches {
        let mut rates = Vec::new();
        for _ in 0..a.runs {
            let mut caches: Vec<_> = (0..b).map(|_| llama.new_cache()).collect();
            let mut steps: Vec<SeqStep<'_>> = caches
                .iter_mut()
                .map(|cache| SeqStep { cache, tokens: &short, outputs: Outputs::Last })
                .collect();
            llama.step(&mut steps, &mut s)?;
            let t = Instant::now();
            for i in 0..a.tokens {
                let tok = [short[i % short.len()]];
                let mut steps: Vec<SeqStep<'_>> = caches
                    .iter_mut()
                    .map(|cache| SeqStep { cache, tokens: &tok, outputs: Outputs::Last })
                    .collect();
                llama.step(&mut steps, &mut s)?;
            }
            rates.push((b * a.tokens) as f64 / t.elapsed().as_secs_f64());
        }
        decode.push((b, median(rates)));
    }
    // Time to first token and latency through the server, idle and during a Sprint.
    let server = Server::start(Arc::clone(&model), ServerConfig::default());
    let request = |seed: u64| GenerateRequest {
        prompt: filler(&model, 64).unwrap_or_default(),
        params: SamplingParams { temperature: 0.7, top_p: 0.95, seed },
        max_tokens: 32,
    };
    let latencies = |server: &Server, n: usize| -> anyhow::Result<(f64, f64)> {
        let (mut ttft, mut total) = (Vec::new(), Vec::new());
        for i in 0..n {
            let g = server.generate(request(i as u64))?;
            ttft.push(g.time_to_first_token.as_secs_f64() * 1e3);
            total.push(g.total.as_secs_f64() * 1e3);
            // Let the Sprint get back to its slices between requests.
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok((median(ttft), median(total)))
    };
    let n = a.sprint_requests.max(1);
    let idle = latencies(&server, n)?;
    let mut sprint = None;
    if a.sprint_requests > 0 {
        let config = gonka_kernels::config::SMALL;
        let seed = [7u8; 32];
        let pow = Arc::new(gonka_kernels::v2::Model::generate(&config, &seed).context("Sprint model")?);
        let (work, progress) = SprintSlices::new(pow, seed, [9; 32], 64, 0..u64::MAX, threads);
        server.set_idle_work(Some(Box::new(work)))?;
        std::thread::sleep(Duration::from_millis(300));
        let busy = latencies(&server, n)?;
        server.set_idle_work(None)?;
        let p = progress.lock().map_err(|_| anyhow::anyhow!("progress lock"))?.clone();
        sprint = Some((
            busy,
            p.nonces as f64 / p.busy.as_secs_f64().max(1e-9),
            p.slices,
            p.busy / p.slices.max(1) as u32,
        ));
    }
    if a.json {
        println!(
            "{}",
            json!({
                "threads": threads,
                "precision": a.precision,
                "prefill_tokens_per_s": prefill,
                "prompt_tokens": a.prompt_tokens,
                "decode_tokens_per_s": decode.iter().map(|(b, r)| json!({"batch": b, "tokens_per_s": r})).collect::<Vec<_>>(),
                "ttft_ms_idle": idle.0, "latency_ms_idle": idle.1,
                "ttft_ms_sprint": sprint.map(|s| s.0.0), "latency_ms_sprint": sprint.map(|s| s.0.1),
                "sprint_nonces_per_s": sprint.map(|s| s.1),
            })
        );
        return Ok(());
    }
    println!("threads {threads}, activations {}", a.precision);
    println!("prefill ({} tokens): {prefill:.0} tokens/s", a.prompt_tokens);
    for (b, r) in &decode {
        println!("decode batch {b:>2}: {r:.1} tokens/s aggregate ({:.1} per sequence)", r / *b as f64);
    }
    println!(
        "request (64-token prompt, 32 tokens), idle: first token {:.0} ms, done {:.0} ms",
        idle.0, idle.1
    );
    if let Some(((ttft, total), rate, slices, per)) = sprint {
        println!(
            "same request during a Sprint: first token {ttft:.0} ms, done {total:.0} ms \
             ({:.2}× and {:.2}×); the Sprint ran {slices} slices of {:.1} ms at {rate:.0} nonces/s",
            ttft / idle.0,
            total / idle.1,
            per.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The GGUF file (default: the fetched SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Completions per honest configuration.
    #[arg(long, default_value_t = 64)]
    completions: usize,
    /// Most tokens per completion.
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Executors to run, by name (`f32, batch 1;bf16, batch 32`; default all four).
    #[arg(long, value_delimiter = ';')]
    executors: Vec<String>,
    /// Skip the cheats and the cost figure.
    #[arg(long)]
    honest_only: bool,
    /// Only the validator's cost figure.
    #[arg(long)]
    cost_only: bool,
    /// The validator's products: f32, bf16 (activations rounded to bf16),
    /// int16 (16-bit activations per block of 32 times the integer quants,
    /// the VNNI check kernel), or int8 (activations rounded to 8 bits per
    /// block of 32 before f32 products: what an 8-bit kernel would see).
    #[arg(long, default_value = "f32")]
    validator: String,
}

const PROMPTS: [&str; 8] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a hash function is in two sentences.",
    "List three fruits that are red.",
    "How do I reverse a string in Python?",
    "Why is the sky blue?",
    "Give me a name for a friendly robot.",
    "What is 12 times 7?",
];

struct Case {
    prompt: Vec<u32>,
    params: SamplingParams,
}

fn cases(model: &ServedModel, n: usize) -> anyhow::Result<Vec<Case>> {
    (0..n)
        .map(|i| {
            let msg = ChatMessage::new("user", PROMPTS[i % PROMPTS.len()]);
            let params = SamplingParams { temperature: 0.8, top_p: 0.95, seed: i as u64 };
            Ok(Case { prompt: model.encode_chat(&[msg])?, params })
        })
        .collect()
}

/// Completions of every case from `model` at `batch` concurrent requests.
fn complete(
    model: &Arc<ServedModel>,
    cases: &[Case],
    batch: usize,
    tokens: usize,
) -> anyhow::Result<Vec<gonka_engine::inference::Generated>> {
    let server =
        Server::start(Arc::clone(model), ServerConfig { max_seqs: batch, ..ServerConfig::default() });
    let rxs: Vec<_> = cases
        .iter()
        .map(|c| {
            server.submit(GenerateRequest { prompt: c.prompt.clone(), params: c.params, max_tokens: tokens })
        })
        .collect::<Result<_, _>>()?;
    rxs.into_iter()
        .map(|rx| {
            rx.iter()
                .find_map(|e| match e {
                    Event::Done(g) => Some(Ok(*g)),
                    Event::Failed(e) => Some(Err(anyhow::anyhow!(e))),
                    Event::Token { .. } => None,
                })
                .unwrap_or_else(|| Err(anyhow::anyhow!("the server stopped")))
        })
        .collect()
}

fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    let mut base = load(&a.model)?;
    // Every validator but int16 multiplies in f32.
    base.llama.set_check_products(Products::F32);
    match a.validator.as_str() {
        "int8" => base.llama.set_int8_activations(true),
        "int16" => base.llama.set_check_products(Products::Int16),
        other => base.llama.set_precision(precision(other)?),
    }
    let validator = &base.llama;
    // The executor side of the cheats and of the cost figure: f32, whatever
    // the validator's activations.
    let honest_model = Arc::new(load(&a.model)?);
    let cases = cases(&base, a.completions)?;
    let stop = base.stop_tokens.clone();
    let thresholds = Thresholds::default();
    let mut s = LlamaScratch::default();
    let judge = Judge { model: validator, stop: &stop, thresholds, max_tokens: a.tokens };
    if a.cost_only {
        return cost(a, &honest_model.llama, &judge, &cases, &stop, &mut s);
    }
    println!("validator: --validator {}, thresholds {thresholds:?}", a.validator);
    println!(
        "{:<16} {:>6} {:>7}   p50 / p99 / max over completions of their worst: {:>20} {:>16} {:>20}",
        "executor", "cases", "passed", "Δ logprob", "digest bits", "token gap"
    );
    for (name, prec, batch) in [
        ("f32, batch 1", Precision::F32, 1),
        ("f32, batch 32", Precision::F32, 32),
        ("bf16, batch 1", Precision::Bf16, 1),
        ("bf16, batch 32", Precision::Bf16, 32),
    ] {
        if !a.executors.is_empty() && !a.executors.iter().any(|e| e == name) {
            continue;
        }
        let mut m = load(&a.model)?;
        m.llama.set_precision(prec);
        let done = complete(&Arc::new(m), &cases, batch, a.tokens)?;
        let (mut pass, mut lp, mut bits, mut gap) = (0, Vec::new(), Vec::new(), Vec::new());
        for (c, g) in cases.iter().zip(&done) {
            let r = judge.run(c, &g.output, &g.artifact, c.params, &mut s)?;
            pass += usize::from(r.verdict == Verdict::Pass);
            lp.push(f64::from(r.worst_logprob));
            bits.push(f64::from(r.worst_bits));
            gap.push(r.worst_token_gap);
        }
        let q = |v: &[f64]| {
            format!("{:.3} / {:.3} / {:.3}", quantile(v, 0.5), quantile(v, 0.99), quantile(v, 1.0))
        };
        println!("{name:<16} {:>6} {pass:>7}   {:>68} {:>16} {:>20}", cases.len(), q(&lp), q(&bits), q(&gap));
    }
    if a.honest_only {
        return Ok(());
    }
    // Cheats, each on every case, against the f32 executor's honest completions.
    let honest = complete(&honest_model, &cases, 32, a.tokens)?;
    let mut skipped = load(&a.model)?;
    skipped.llama.skip_last_layers(4);
    let cheap = complete(&Arc::new(skipped), &cases, 32, a.tokens)?;
    println!("{:<34} {:>6} {:>8}", "cheat", "cases", "caught");
    let mut caught = [0usize; 4];
    let mut same_under_wrong_seed = 0;
    for (i, (c, g)) in cases.iter().zip(&honest).enumerate() {
        let wrong_seed = SamplingParams { seed: c.params.seed + 1_000_000, ..c.params };
        // A completion so certain that the wrong seed draws the same tokens is
        // not a false claim under it: such cases are counted apart.
        let under_wrong = generate(&honest_model.llama, &c.prompt, &wrong_seed, a.tokens, &stop, &mut s)?;
        if under_wrong.output == g.output {
            same_under_wrong_seed += 1;
        } else {
            caught[0] += usize::from(
                judge.run(c, &g.output, &g.artifact, wrong_seed, &mut s)?.verdict != Verdict::Pass,
            );
        }
        let mut tampered = g.output.clone();
        let at = i % tampered.len();
        tampered[at] = if tampered[at] == 504 { 505 } else { 504 };
        caught[1] +=
            usize::from(judge.run(c, &tampered, &g.artifact, c.params, &mut s)?.verdict != Verdict::Pass);
        let h = &cheap[i];
        caught[2] +=
            usize::from(judge.run(c, &h.output, &h.artifact, c.params, &mut s)?.verdict != Verdict::Pass);
        // The cheap model's tokens with records recomputed by the real model.
        let forged = forge(&honest_model.llama, c, &h.output, &mut LlamaScratch::default())?;
        caught[3] +=
            usize::from(judge.run(c, &h.output, &forged, c.params, &mut s)?.verdict != Verdict::Pass);
    }
    println!("{:<34} {:>6} {:>8}", "wrong seed", cases.len() - same_under_wrong_seed, caught[0]);
    println!("  ({same_under_wrong_seed} completions are what the wrong seed draws too: not counted)");
    for (name, n) in [
        ("one tampered token", caught[1]),
        ("last 4 of 30 layers skipped", caught[2]),
        ("skipped layers, real records", caught[3]),
    ] {
        println!("{name:<34} {:>6} {n:>8}", cases.len());
    }
    cost(a, &honest_model.llama, &judge, &cases, &stop, &mut s)
}

/// One check against `executor` generating the same completion alone, at batch 1.
fn cost(
    a: &EvalArgs,
    executor: &gonka_kernels::llm::llama::Llama,
    judge: &Judge<'_>,
    cases: &[Case],
    stop: &[u32],
    s: &mut LlamaScratch,
) -> anyhow::Result<()> {
    let (mut ratios, mut checks, mut generations) = (Vec::new(), Vec::new(), Vec::new());
    let (mut prompts, mut outputs) = (Vec::new(), Vec::new());
    for c in cases.iter().take(16) {
        let t = Instant::now();
        let g = generate(executor, &c.prompt, &c.params, a.tokens, stop, s)?;
        let generate_s = t.elapsed().as_secs_f64();
        prompts.push(c.prompt.len() as f64);
        outputs.push(g.output.len() as f64);
        let t = Instant::now();
        judge.run(c, &g.output, &g.artifact, c.params, s)?;
        let check_s = t.elapsed().as_secs_f64();
        ratios.push(check_s / generate_s);
        checks.push(check_s * 1e3);
        generations.push(generate_s * 1e3);
    }
    println!(
        "validator cost: median {:.1}% of generating the completion at batch 1 ({} cases of ≤ {} tokens; \
         medians: check {:.1} ms, generation {:.1} ms, prompt {} and output {} tokens)",
        100.0 * median(ratios.clone()),
        ratios.len(),
        a.tokens,
        median(checks),
        median(generations),
        median(prompts),
        median(outputs)
    );
    Ok(())
}

/// The validator's side of the study.
struct Judge<'a> {
    model: &'a gonka_kernels::llm::llama::Llama,
    stop: &'a [u32],
    thresholds: Thresholds,
    max_tokens: usize,
}

impl Judge<'_> {
    fn run(
        &self,
        case: &Case,
        output: &[u32],
        artifact: &gonka_kernels::llm::artifact::Artifact,
        params: SamplingParams,
        s: &mut LlamaScratch,
    ) -> anyhow::Result<gonka_kernels::llm::artifact::CheckReport> {
        let claim = Claim {
            prompt: &case.prompt,
            output,
            params,
            max_tokens: self.max_tokens,
            stop_tokens: self.stop,
            artifact,
        };
        Ok(check(self.model, &claim, &self.thresholds, s)?)
    }
}

/// Records for `output` computed by `model` in one pass, as a cheat that
/// generated with another model would make them.
fn forge(
    model: &gonka_kernels::llm::llama::Llama,
    c: &Case,
    output: &[u32],
    s: &mut LlamaScratch,
) -> anyhow::Result<gonka_kernels::llm::artifact::Artifact> {
    use gonka_kernels::llm::artifact::{Artifact, DigestBasis, record};
    let mut input = c.prompt.clone();
    input.extend_from_slice(&output[..output.len().saturating_sub(1)]);
    let mut cache = model.new_cache();
    let n = output.len();
    let out =
        model.step(&mut [SeqStep { cache: &mut cache, tokens: &input, outputs: Outputs::Tail(n) }], s)?;
    let (v, d) = (model.config().vocab, model.config().d_model);
    let basis = DigestBasis::new(d);
    Ok(Artifact {
        records: (0..n)
            .map(|t| record(&out.logits[t * v..(t + 1) * v], &out.hidden[t * d..(t + 1) * d], &basis))
            .collect(),
    })
}
