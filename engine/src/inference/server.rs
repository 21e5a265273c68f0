//! The model server: one thread that owns the model's compute, runs every
//! admitted request in one batched step per iteration (prompts and decodes
//! together), streams tokens as they are sampled, checks other hosts'
//! completions, and gives idle capacity to the Sprint miner.
//!
//! ```text
//!  submit ──► queue (bounded) ──► admit while seqs < max_seqs
//!                                   │
//!   loop: step = ‖ prefill chunks (≤ step_tokens in all) ‖ one token per decoding seq
//!         sample (Gumbel-max, seed, position) ─► record ─► Event::Token ─► stop? ─► Event::Done
//!         nothing to run ─► checks queued ─► IdleWork::slice() (a Sprint slice) ─► wait
//! ```
//!
//! Requests always come first: the miner runs one short slice at a time and
//! only when no sequence is active and none is waiting, so a request that
//! arrives during a Sprint waits at most one slice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gonka_kernels::llm::artifact::{
    Artifact, CheckReport, Claim, DigestBasis, Thresholds, check, record_with,
};
use gonka_kernels::llm::llama::{KvCache, LlamaError, LlamaScratch, Outputs, SeqStep};
use gonka_kernels::llm::sampling::{RowStats, SamplerScratch, SamplingParams, sample_with};
use thiserror::Error;

use super::model::ServedModel;

/// Limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Sequences in one step.
    pub max_seqs: usize,
    /// Prompt tokens in one step, all sequences together: bounds how long
    /// decoding sequences wait behind a new long prompt.
    pub step_tokens: usize,
    /// Requests waiting for a slot before `submit` refuses more.
    pub queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { max_seqs: 32, step_tokens: 256, queue: 1024 }
    }
}

/// One generation request, in tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt (chat template applied).
    pub prompt: Vec<u32>,
    /// Sampling parameters and seed.
    pub params: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was sampled (it is the last output token).
    Stop,
    /// The budget or the context ran out.
    Length,
}

/// A finished completion with its artifact and timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Output tokens, a final stop token included.
    pub output: Vec<u32>,
    /// One record per output token.
    pub artifact: Artifact,
    /// The text of the output without a final stop token (empty without a tokenizer).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// From submit to the first sampled token.
    pub time_to_first_token: Duration,
    /// From submit to the end.
    pub total: Duration,
}

/// What a request's receiver gets, in order: tokens, then one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A sampled token and the text it completes (may be empty mid-character).
    Token { id: u32, text: String },
    /// The completion.
    Done(Box<Generated>),
    /// It could not run.
    Failed(String),
}

/// Refusals of `submit`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServerError {
    /// The queue is full.
    #[error("the model server is busy ({0} requests waiting)")]
    Busy(usize),
    /// The server thread has ended.
    #[error("the model server has stopped")]
    Stopped,
    /// The request cannot fit.
    #[error("prompt of {prompt} tokens and {max_tokens} more exceed the context of {context}")]
    TooLong { prompt: usize, max_tokens: usize, context: usize },
    /// An empty prompt or a token outside the vocabulary.
    #[error("bad prompt: {0}")]
    BadPrompt(String),
    /// An admitted request failed while it ran.
    #[error("generation failed: {0}")]
    Failed(String),
}

/// Work for the idle capacity of the server thread: the Sprint miner.
pub trait IdleWork: Send {
    /// Does one short slice of work; `false` when there is nothing left.
    fn slice(&mut self) -> bool;
}

/// A completion to check, with where to send the report.
struct CheckJob {
    prompt: Vec<u32>,
    output: Vec<u32>,
    params: SamplingParams,
    max_tokens: usize,
    artifact: Artifact,
    thresholds: Thresholds,
    reply: flume::Sender<Result<CheckReport, String>>,
}

enum Command {
    Generate(GenerateRequest, flume::Sender<Event>, Instant),
    Check(Box<CheckJob>),
    Idle(Option<Box<dyn IdleWork>>),
}

/// Counters readable from any thread.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Batched steps run.
    pub steps: AtomicU64,
    /// Tokens sampled.
    pub tokens: AtomicU64,
    /// Completions finished.
    pub completions: AtomicU64,
    /// Idle slices run.
    pub idle_slices: AtomicU64,
    /// Checks run.
    pub checks: AtomicU64,
}

/// A handle to the server thread; dropping it stops the thread after the
/// work in hand.
#[derive(Debug)]
pub struct Server {
    commands: Option<flume::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    model: Arc<ServedModel>,
    config: ServerConfig,
    stats: Arc<ServerStats>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Generate(..) => "Generate",
            Command::Check(_) => "Check",
            Command::Idle(_) => "Idle",
        })
    }
}

impl Server {
    /// Starts the server thread for `model`.
    pub fn start(model: Arc<ServedModel>, config: ServerConfig) -> Self {
        let (tx, rx) = flume::bounded(config.queue);
        let stats = Arc::new(ServerStats::default());
        let worker = Worker::new(Arc::clone(&model), config, rx, Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("model-server".into())
            .spawn(move || worker.run())
            .expect("spawning the model server thread");
        Self { commands: Some(tx), thread: Some(thread), model, config, stats }
    }

    /// The model served.
    pub fn model(&self) -> &Arc<ServedModel> {
        &self.model
    }

    /// Counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    fn send(&self, c: Command) -> Result<(), ServerError> {
        let tx = self.commands.as_ref().ok_or(ServerError::Stopped)?;
        tx.try_send(c).map_err(|e| match e {
            flume::TrySendError::Full(_) => ServerError::Busy(self.config.queue),
            flume::TrySendError::Disconnected(_) => ServerError::Stopped,
        })
    }

    /// Queues a request; its events arrive on the returned receiver.
    pub fn submit(&self, req: GenerateRequest) -> Result<flume::Receiver<Event>, ServerError> {
        let c = self.model.llama.config();
        if req.prompt.is_empty() {
            return Err(ServerError::BadPrompt("empty prompt".into()));
        }
        if let Some(t) = req.prompt.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ServerError::BadPrompt(format!(
                "token {t} is outside the vocabulary of {}",
                c.vocab
            )));
        }
        if req.prompt.len() + req.max_tokens > c.max_seq {
            return Err(ServerError::TooLong {
                prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                context: c.max_seq,
            });
        }
        let (tx, rx) = flume::unbounded();
        self.send(Command::Generate(req, tx, Instant::now()))?;
        Ok(rx)
    }

    /// Generates to the end (a convenience over [`Self::submit`]).
    pub fn generate(&self, req: GenerateRequest) -> Result<Generated, ServerError> {
        let rx = self.submit(req)?;
        for event in rx.iter() {
            match event {
                Event::Token { .. } => {}
                Event::Done(g) => return Ok(*g),
                Event::Failed(e) => return Err(ServerError::Failed(e)),
            }
        }
        Err(ServerError::Stopped)
    }

    /// Queues a check of someone's completion; the report arrives on the receiver.
    pub fn check(
        &self,
        claim: &Claim<'_>,
        thresholds: Thresholds,
    ) -> Result<flume::Receiver<Result<CheckReport, String>>, ServerError> {
        let (reply, rx) = flume::bounded(1);
        self.send(Command::Check(Box::new(CheckJob {
            prompt: claim.prompt.to_vec(),
            output: claim.output.to_vec(),
            params: claim.params,
            max_tokens: claim.max_tokens,
            artifact: claim.artifact.clone(),
            thresholds,
            reply,
        })))?;
        Ok(rx)
    }

    /// Gives the server idle work (a Sprint), replacing any before; `None` clears it.
    pub fn set_idle_work(&self, work: Option<Box<dyn IdleWork>>) -> Result<(), ServerError> {
        let tx = self.commands.as_ref().ok_or(ServerError::Stopped)?;
        tx.send(Command::Idle(work)).map_err(|_| ServerError::Stopped)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.commands = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One admitted request.
struct Active {
    prompt: Vec<u32>,
    params: SamplingParams,
    max_tokens: usize,
    cache: KvCache,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    output: Vec<u32>,
    artifact: Artifact,
    text: Vec<u8>,
    /// Bytes of `text` already sent.
    sent: usize,
    events: flume::Sender<Event>,
    submitted: Instant,
    first_token: Option<Duration>,
}

struct Worker {
    model: Arc<ServedModel>,
    config: ServerConfig,
    commands: flume::Receiver<Command>,
    stats: Arc<ServerStats>,
    waiting: std::collections::VecDeque<(GenerateRequest, flume::Sender<Event>, Instant)>,
    checks: std::collections::VecDeque<Box<CheckJob>>,
    active: Vec<Active>,
    idle: Option<Box<dyn IdleWork>>,
    scratch: LlamaScratch,
    sampler: SamplerScratch,
    basis: DigestBasis,
}

impl Worker {
    fn new(
        model: Arc<ServedModel>,
        config: ServerConfig,
        commands: flume::Receiver<Command>,
        stats: Arc<ServerStats>,
    ) -> Self {
        let basis = DigestBasis::new(model.llama.config().d_model);
        Self {
            model,
            config,
            commands,
            stats,
            waiting: Default::default(),
            checks: Default::default(),
            active: Vec::new(),
            idle: None,
            scratch: LlamaScratch::default(),
            sampler: SamplerScratch::default(),
            basis,
        }
    }

    fn accept(&mut self, c: Command) {
        match c {
            Command::Generate(r, tx, at) => self.waiting.push_back((r, tx, at)),
            Command::Check(job) => self.checks.push_back(job),
            Command::Idle(w) => self.idle = w,
        }
    }

    fn run(mut self) {
        loop {
            while let Ok(c) = self.commands.try_recv() {
                self.accept(c);
            }
            self.admit();
            if !self.active.is_empty() {
                self.step();
                continue;
            }
            if let Some(job) = self.checks.pop_front() {
                self.run_check(*job);
                continue;
            }
            if let Some(w) = self.idle.as_mut() {
                if w.slice() {
                    self.stats.idle_slices.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.idle = None;
            }
            // Nothing to do: wait for a command; a closed channel ends the thread.
            match self.commands.recv() {
                Ok(c) => self.accept(c),
                Err(_) => return,
            }
        }
    }

    fn admit(&mut self) {
        while self.active.len() < self.config.max_seqs {
            let Some((req, events, submitted)) = self.waiting.pop_front() else { break };
            if events.is_disconnected() {
                continue;
            }
            self.active.push(Active {
                prompt: req.prompt,
                params: req.params,
                max_tokens: req.max_tokens,
                cache: self.model.llama.new_cache(),
                prefilled: 0,
                output: Vec::new(),
                artifact: Artifact::default(),
                text: Vec::new(),
                sent: 0,
                events,
                submitted,
                first_token: None,
            });
        }
    }

    /// One batched step over every active sequence.
    fn step(&mut self) {
        let model = Arc::clone(&self.model);
        let llama = &model.llama;
        let mut budget = self.config.step_tokens;
        // What each active sequence feeds this step, and whether it samples.
        let mut plan: Vec<(usize, usize, bool)> = Vec::with_capacity(self.active.len());
        for (i, a) in self.active.iter().enumerate() {
            let left = a.prompt.len() - a.prefilled;
            if left == 0 {
                plan.push((i, 0, true));
            } else if budget > 0 {
                let take = left.min(budget);
                budget -= take;
                plan.push((i, take, take == left));
            }
        }
        let feeds: Vec<Vec<u32>> = plan
            .iter()
            .map(|&(i, take, _)| {
                let a = &self.active[i];
                if take == 0 {
                    vec![*a.output.last().expect("a decoding sequence has sampled a token")]
                } else {
                    a.prompt[a.prefilled..a.prefilled + take].to_vec()
                }
            })
            .collect();
        let result = {
            let mut by_index: Vec<Option<&mut Active>> = self.active.iter_mut().map(Some).collect();
            let mut steps: Vec<SeqStep<'_>> = plan
                .iter()
                .zip(&feeds)
                .map(|(&(i, _, samples), tokens)| {
                    let a = by_index[i].take().expect("each sequence planned once");
                    SeqStep {
                        cache: &mut a.cache,
                        tokens,
                        outputs: if samples { Outputs::Last } else { Outputs::None },
                    }
                })
                .collect();
            llama.step(&mut steps, &mut self.scratch)
        };
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let out = match result {
            Ok(out) => out,
            Err(e) => return self.fail_all(&e),
        };
        let (v, d) = (llama.config().vocab, llama.config().d_model);
        let mut row = 0;
        let mut finished = Vec::new();
        for ((&(i, take, samples), rows), _) in plan.iter().zip(&out.rows_per_seq).zip(&feeds) {
            let a = &mut self.active[i];
            a.prefilled += take;
            if !samples || *rows == 0 {
                continue;
            }
            let logits = &out.logits[row * v..(row + 1) * v];
            let hidden = &out.hidden[row * d..(row + 1) * d];
            row += 1;
            let stats = RowStats::new(logits, a.params.temperature);
            let token = sample_with(logits, &stats, &a.params, a.cache.len() as u32, &mut self.sampler);
            a.artifact.records.push(record_with(&stats, hidden, &self.basis));
            a.output.push(token);
            a.first_token.get_or_insert_with(|| a.submitted.elapsed());
            self.stats.tokens.fetch_add(1, Ordering::Relaxed);
            let stop = model.stop_tokens.contains(&token);
            let text = if stop { String::new() } else { model.stream_text(&mut a.text, &mut a.sent, token) };
            let _ = a.events.send(Event::Token { id: token, text });
            let full = a.output.len() >= a.max_tokens || a.cache.len() + 1 > llama.config().max_seq;
            if stop || full || a.events.is_disconnected() {
                finished.push((i, if stop { FinishReason::Stop } else { FinishReason::Length }));
            }
        }
        for (i, reason) in finished.into_iter().rev() {
            let a = self.active.swap_remove(i);
            self.finish(a, reason);
        }
    }

    fn finish(&mut self, a: Active, finish: FinishReason) {
        self.stats.completions.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(&a.text).into_owned();
        let g = Generated {
            output: a.output,
            artifact: a.artifact,
            text,
            finish,
            time_to_first_token: a.first_token.unwrap_or_default(),
            total: a.submitted.elapsed(),
        };
        let _ = a.events.send(Event::Done(Box::new(g)));
    }

    fn fail_all(&mut self, e: &LlamaError) {
        for a in self.active.drain(..) {
            let _ = a.events.send(Event::Failed(e.to_string()));
        }
    }

    fn run_check(&mut self, job: CheckJob) {
        let claim = Claim {
            prompt: &job.prompt,
            output: &job.output,
            params: job.params,
            max_tokens: job.max_tokens,
            stop_tokens: &self.model.stop_tokens,
            artifact: &job.artifact,
        };
        let report =
            check(&self.model.llama, &claim, &job.thresholds, &mut self.scratch).map_err(|e| e.to_string());
        self.stats.checks.fetch_add(1, Ordering::Relaxed);
        let _ = job.reply.send(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gonka_kernels::llm::artifact::{Verdict, generate};

    fn server(config: ServerConfig) -> Server {
        Server::start(Arc::new(ServedModel::tiny(0, "tiny").expect("tiny model")), config)
    }

    fn request(i: u32, max_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            prompt: (0..3 + 5 * i).map(|t| (t * 17 + i) % 256).collect(),
            params: SamplingParams { temperature: 0.8, top_p: 0.9, seed: u64::from(i) },
            max_tokens,
        }
    }

    #[test]
    fn concurrent_requests_get_exactly_what_one_at_a_time_generation_gives() {
        // Guards continuous batching: chunked prefill, mixed steps and
        // finishing at different times must not change any sequence.
        let s = server(ServerConfig { max_seqs: 4, step_tokens: 7, queue: 64 });
        let reqs: Vec<GenerateRequest> = (0..10).map(|i| request(i, 8 + i as usize * 3)).collect();
        let receivers: Vec<_> = reqs.iter().map(|r| s.submit(r.clone()).expect("queued")).collect();
        let mut scratch = LlamaScratch::default();
        for (r, rx) in reqs.iter().zip(receivers) {
            let events: Vec<Event> = rx.iter().collect();
            let Some(Event::Done(g)) = events.last() else { panic!("no Done event: {events:?}") };
            let want = generate(
                &s.model().llama,
                &r.prompt,
                &r.params,
                r.max_tokens,
                &s.model().stop_tokens,
                &mut scratch,
            )
            .expect("fits");
            assert_eq!(g.output, want.output, "tokens differ from one-at-a-time generation");
            assert_eq!(g.artifact, want.artifact, "records differ from one-at-a-time generation");
            let streamed: Vec<u32> = events
                .iter()
                .filter_map(|e| if let Event::Token { id, .. } = e { Some(*id) } else { None })
                .collect();
            assert_eq!(streamed, g.output, "streamed tokens differ from the completion");
            assert!(g.time_to_first_token <= g.total);
        }
        assert_eq!(s.stats().completions.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn checks_pass_honest_completions_and_fail_tampered_ones() {
        let s = server(ServerConfig::default());
        let r = request(1, 12);
        let g = s.generate(r.clone()).expect("runs");
        let claim = Claim {
            prompt: &r.prompt,
            output: &g.output,
            params: r.params,
            max_tokens: r.max_tokens,
            stop_tokens: &s.model().stop_tokens,
            artifact: &g.artifact,
        };
        let report =
            s.check(&claim, Thresholds::default()).expect("queued").recv().expect("reply").expect("runs");
        assert_eq!(report.verdict, Verdict::Pass);
        let mut forged = g.output.clone();
        forged[0] = (forged[0] + 1) % 256;
        let claim = Claim { output: &forged, ..claim };
        let report =
            s.check(&claim, Thresholds::default()).expect("queued").recv().expect("reply").expect("runs");
        assert!(matches!(report.verdict, Verdict::Token { position: 0, .. }), "{report:?}");
    }

    struct Counting {
        slices: Arc<AtomicU64>,
        left: u64,
    }

    impl IdleWork for Counting {
        fn slice(&mut self) -> bool {
            if self.left == 0 {
                return false;
            }
            self.left -= 1;
            self.slices.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
            true
        }
    }

    #[test]
    fn idle_work_fills_gaps_and_requests_come_first() {
        let s = server(ServerConfig::default());
        let slices = Arc::new(AtomicU64::new(0));
        s.set_idle_work(Some(Box::new(Counting { slices: Arc::clone(&slices), left: 1_000_000 })))
            .expect("running");
        std::thread::sleep(Duration::from_millis(50));
        let before = slices.load(Ordering::Relaxed);
        assert!(before > 0, "no idle slice ran while the server had nothing to do");
        let g = s.generate(request(2, 40)).expect("runs");
        // A request waits for at most the slice in progress (2 ms) before it starts.
        assert!(
            g.time_to_first_token < Duration::from_secs(2),
            "first token after {:?}",
            g.time_to_first_token
        );
        std::thread::sleep(Duration::from_millis(30));
        assert!(slices.load(Ordering::Relaxed) > before, "idle work did not resume after the request");
        s.set_idle_work(None).expect("running");
    }

    #[test]
    fn bad_requests_are_refused_with_reasons() {
        let s = server(ServerConfig { queue: 1, ..ServerConfig::default() });
        let empty = GenerateRequest { prompt: vec![], ..request(0, 4) };
        assert!(matches!(s.submit(empty), Err(ServerError::BadPrompt(_))));
        let out_of_vocab = GenerateRequest { prompt: vec![1, 999], ..request(0, 4) };
        assert!(matches!(s.submit(out_of_vocab), Err(ServerError::BadPrompt(_))));
        let too_long = request(0, 10_000);
        assert!(matches!(s.submit(too_long), Err(ServerError::TooLong { .. })));
    }
}
