//! The node's [`TaskRunner`]: runs the tasks drawn to this host on its model
//! server and checks other hosts' completions there, with the off-chain
//! pieces (prompts in, outputs out) that the core moves over the network.
//!
//! ```text
//!  entry host ──Prompt{task, payload}──► executor: payload hash = task.prompt ──► Server::submit
//!  executor: Done ──► InferenceFinish{output = H(tokens), artifact = H(records), tokens}
//!  validator: GetTaskOutput ──► TaskOutput{payload, output, artifact} ──► hashes match chain?
//!             ──► Server::check (one teacher-forced pass) ──► TaskCheck{pass}
//! ```
//!
//! Everything a peer sends is checked against the chain before use, and no
//! path passes a check without recomputation: an output that cannot be
//! fetched within [`FETCH_GIVE_UP`] fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gonka_kernels::encoding::Hash32;
use gonka_kernels::llm::artifact::{Artifact, CheckReport, Claim, Thresholds, Verdict};

use crate::agent::tasks::{TaskCheat, TaskOutput, TaskRunner};
use crate::crypto::PublicKeyBytes;
use crate::inference::payload::{InferencePayload, output_commitment};
use crate::inference::{Event, GenerateRequest, Server};
use crate::tasks::{Finished, Task};

/// Prompts, completions and fetched results kept, each: beyond this the
/// oldest go (a prompt for a task that never lands cannot pile up).
const MAX_KEPT: usize = 4096;

/// How long a validator waits for an executor's output before failing it.
pub const FETCH_GIVE_UP: Duration = Duration::from_secs(60);

/// A completion with what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    /// The request.
    pub payload: InferencePayload,
    /// Output tokens.
    pub output: Vec<u32>,
    /// The executor's records.
    pub artifact: Artifact,
}

impl TaskResult {
    /// Tokens billed: prompt and output.
    pub fn tokens(&self) -> u32 {
        (self.payload.prompt.len() + self.output.len()) as u32
    }

    /// Whether this is the result `finished` commits to for `task`.
    pub fn matches(&self, task: &Task, finished: &Finished) -> bool {
        self.payload.commitment() == task.prompt
            && self.payload.model == task.model
            && output_commitment(&self.output) == finished.output
            && self.artifact.commitment() == finished.artifact
            && self.tokens() == finished.tokens
    }
}

/// A map that forgets its oldest entries past [`MAX_KEPT`].
#[derive(Debug)]
struct Kept<V> {
    map: BTreeMap<Hash32, (u64, V)>,
    /// Keys by insertion number, oldest first.
    order: BTreeMap<u64, Hash32>,
    next: u64,
}

impl<V> Default for Kept<V> {
    fn default() -> Self {
        Self { map: BTreeMap::new(), order: BTreeMap::new(), next: 0 }
    }
}

impl<V> Kept<V> {
    fn insert(&mut self, k: Hash32, v: V) {
        self.next += 1;
        if let Some((old, _)) = self.map.insert(k, (self.next, v)) {
            self.order.remove(&old);
        }
        self.order.insert(self.next, k);
        if self.map.len() > MAX_KEPT
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.map.remove(&oldest);
        }
    }

    fn get(&self, k: &Hash32) -> Option<&V> {
        self.map.get(k).map(|(_, v)| v)
    }

    fn remove(&mut self, k: &Hash32) -> Option<V> {
        let (n, v) = self.map.remove(k)?;
        self.order.remove(&n);
        Some(v)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Prompts delivered for tasks this host executes.
    prompts: Kept<InferencePayload>,
    /// Generations in progress.
    running: BTreeMap<Hash32, flume::Receiver<Event>>,
    /// Their tokens so far: (how many were handed out, those not yet).
    streams: BTreeMap<Hash32, (u32, Vec<u32>)>,
    /// How the ones that ended, ended (until `run` picks it up).
    ended: BTreeMap<Hash32, Result<Box<crate::inference::Generated>, String>>,
    /// This host's completions.
    done: Kept<Arc<TaskResult>>,
    /// Other executors' results fetched to check them.
    fetched: Kept<Arc<TaskResult>>,
    /// Results to fetch: task → (executor index, since).
    wanted: BTreeMap<Hash32, (u32, Instant)>,
    /// Checks in progress.
    checking: BTreeMap<Hash32, flume::Receiver<Result<CheckReport, String>>>,
    /// Decided checks.
    verdicts: Kept<bool>,
}

/// Runs and checks inference tasks on a model server.
#[derive(Debug)]
pub struct ModelRunner {
    server: Arc<Server>,
    thresholds: Thresholds,
    state: Mutex<State>,
    /// Where this host's completions outlive a restart.
    local: Option<super::local::LocalStore>,
}

impl ModelRunner {
    /// A runner on `server` that keeps its completions in memory only.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server, thresholds: Thresholds::default(), state: Mutex::default(), local: None }
    }

    /// The same runner keeping its completions in `local` too, so that a
    /// restarted executor still hands them to the asking host and checkers.
    pub fn with_local_store(self, local: super::local::LocalStore) -> Self {
        Self { local: Some(local), ..self }
    }

    /// This host's completion of `task`: from memory, else from the local
    /// store (and then kept in memory).
    fn done(&self, s: &mut State, task: &Hash32) -> Option<Arc<TaskResult>> {
        if let Some(r) = s.done.get(task) {
            return Some(Arc::clone(r));
        }
        let stored = match self.local.as_ref()?.completion(task) {
            Ok(r) => r?,
            Err(e) => {
                tracing::warn!(task = %hex::encode(task), "local store: {e}");
                return None;
            }
        };
        let r = Arc::new(stored);
        s.done.insert(*task, Arc::clone(&r));
        Some(r)
    }

    /// The model server.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A prompt for `task`, which the caller has seen on chain with this host
    /// as its executor; kept when its hash is the task's prompt commitment.
    pub fn deliver_prompt(&self, task: &Task, payload: InferencePayload) -> bool {
        if payload.commitment() != task.prompt || payload.check_bounds().is_err() {
            return false;
        }
        self.state().prompts.insert(task.id, payload);
        true
    }

    /// This host's completion of `task`, to answer a peer.
    pub fn completion(&self, task: &Hash32) -> Option<Arc<TaskResult>> {
        let mut s = self.state();
        self.done(&mut s, task)
    }

    /// Results this runner wants fetched: (task, executor index).
    pub fn wanted(&self) -> Vec<(Hash32, u32)> {
        self.state().wanted.iter().map(|(t, (e, _))| (*t, *e)).collect()
    }

    /// Whether a fetched result is wanted.
    pub fn wants(&self, task: &Hash32) -> bool {
        self.state().wanted.contains_key(task)
    }

    /// A result fetched from `task`'s executor.
    pub fn deliver_result(&self, task: &Hash32, result: TaskResult) {
        let mut s = self.state();
        if s.wanted.remove(task).is_some() {
            s.fetched.insert(*task, Arc::new(result));
        }
    }

    /// Moves every running generation's events into `streams` and `ended`.
    fn drain(s: &mut State) {
        let State { running, streams, ended, .. } = s;
        running.retain(|id, rx| {
            let mut end = None;
            while let Ok(event) = rx.try_recv() {
                match event {
                    Event::Token { id: token, .. } => streams.entry(*id).or_default().1.push(token),
                    Event::Done(g) => end = Some(Ok(g)),
                    Event::Failed(e) => end = Some(Err(e)),
                }
            }
            if end.is_none() && rx.is_disconnected() {
                end = Some(Err("the model server stopped".into()));
            }
            match end {
                Some(e) => {
                    ended.insert(*id, e);
                    false
                }
                None => true,
            }
        });
    }

    /// Output tokens generated since the last call, by task: (task, index
    /// of the first in the output, tokens). For streaming; provisional.
    pub fn take_partials(&self) -> Vec<(Hash32, u32, Vec<u32>)> {
        let mut s = self.state();
        Self::drain(&mut s);
        let mut out = Vec::new();
        for (id, (sent, pending)) in s.streams.iter_mut() {
            if !pending.is_empty() {
                let offset = *sent;
                *sent += pending.len() as u32;
                out.push((*id, offset, std::mem::take(pending)));
            }
        }
        let State { streams, running, .. } = &mut *s;
        streams.retain(|id, _| running.contains_key(id));
        out
    }

    fn poll_run(&self, s: &mut State, task: &Task) -> Option<TaskOutput> {
        Self::drain(s);
        let finished = s.ended.remove(&task.id)?;
        let payload = s.prompts.remove(&task.id)?;
        match finished {
            Ok(g) => {
                let result = Arc::new(TaskResult { payload, output: g.output, artifact: g.artifact });
                // Stored before the finish goes on chain: what the chain
                // commits to, this host can hand out after a restart.
                if let Some(local) = &self.local
                    && let Err(e) = local.put_completion(&task.id, &result)
                {
                    tracing::error!(task = %hex::encode(task.id), "cannot store the completion: {e}");
                    return None;
                }
                s.done.insert(task.id, Arc::clone(&result));
                Some(output_of(&result))
            }
            Err(e) => {
                tracing::warn!(task = %hex::encode(task.id), "inference failed: {e}");
                None
            }
        }
    }
}

fn output_of(r: &TaskResult) -> TaskOutput {
    TaskOutput { output: output_commitment(&r.output), artifact: r.artifact.commitment(), tokens: r.tokens() }
}

impl TaskRunner for ModelRunner {
    fn run(&self, task: &Task, _cheat: Option<TaskCheat>) -> Option<TaskOutput> {
        let mut s = self.state();
        if let Some(r) = self.done(&mut s, &task.id) {
            return Some(output_of(&r));
        }
        if s.running.contains_key(&task.id) || s.ended.contains_key(&task.id) {
            return self.poll_run(&mut s, task);
        }
        let payload = s.prompts.get(&task.id)?;
        if payload.model != task.model || payload.token_budget() > task.max_tokens {
            return None;
        }
        let req = GenerateRequest {
            prompt: payload.prompt.clone(),
            params: payload.params(),
            max_tokens: payload.max_output_tokens as usize,
        };
        match self.server.submit(req) {
            Ok(rx) => {
                s.running.insert(task.id, rx);
            }
            Err(e) => tracing::warn!(task = %hex::encode(task.id), "cannot run: {e}"),
        }
        None
    }

    fn check(&self, task: &Task, finished: &Finished, _checker: &PublicKeyBytes) -> Option<bool> {
        let mut s = self.state();
        if let Some(v) = s.verdicts.get(&task.id) {
            return Some(*v);
        }
        if let Some(rx) = s.checking.get(&task.id) {
            let report = match rx.try_recv() {
                Ok(r) => r,
                Err(flume::TryRecvError::Empty) => return None,
                Err(flume::TryRecvError::Disconnected) => Err("the model server stopped".into()),
            };
            s.checking.remove(&task.id);
            let pass = match report {
                Ok(r) => {
                    tracing::debug!(task = %hex::encode(task.id), ?r, "checked a completion");
                    r.verdict == Verdict::Pass
                }
                Err(e) => {
                    tracing::warn!(task = %hex::encode(task.id), "check could not run: {e}");
                    false
                }
            };
            s.verdicts.insert(task.id, pass);
            return Some(pass);
        }
        if let Some(r) = s.fetched.remove(&task.id) {
            if !r.matches(task, finished) || r.payload.check_bounds().is_err() {
                s.verdicts.insert(task.id, false);
                return Some(false);
            }
            let claim = Claim {
                prompt: &r.payload.prompt,
                output: &r.output,
                params: r.payload.params(),
                max_tokens: r.payload.max_output_tokens as usize,
                stop_tokens: &self.server.model().stop_tokens,
                artifact: &r.artifact,
            };
            match self.server.check(&claim, self.thresholds) {
                Ok(rx) => {
                    s.checking.insert(task.id, rx);
                }
                // Busy: fetch again later rather than decide without recomputing.
                Err(_) => s.fetched.insert(task.id, r),
            }
            return None;
        }
        let since = s.wanted.entry(task.id).or_insert((task.executor, Instant::now())).1;
        if since.elapsed() > FETCH_GIVE_UP {
            // The executor did not deliver what it committed to.
            s.wanted.remove(&task.id);
            s.verdicts.insert(task.id, false);
            return Some(false);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_forgets_the_oldest_past_its_bound() {
        let mut k = Kept::default();
        let key = |n: usize| -> Hash32 { std::array::from_fn(|i| (n >> (8 * (i % 8))) as u8) };
        for n in 0..MAX_KEPT + 10 {
            k.insert(key(n), n);
        }
        // Inserting a key again makes it the newest.
        k.insert(key(10), 10);
        k.insert(key(MAX_KEPT + 10), 0);
        assert_eq!(k.map.len(), MAX_KEPT);
        assert_eq!(k.order.len(), MAX_KEPT);
        assert!((0..10).all(|n| k.get(&key(n)).is_none()), "the ten oldest went");
        assert_eq!(k.get(&key(10)), Some(&10), "renewed, so kept");
        assert!(k.get(&key(11)).is_none(), "the oldest after the renewal went");
        assert_eq!(k.remove(&key(12)), Some(12));
        assert_eq!(k.order.len(), MAX_KEPT - 1);
    }
}
