//! The node's side of the HTTP API: an API key names a payer account whose
//! key this host holds; a completion request becomes a signed
//! `InferenceRequest` on chain, the drawn executor (another host, usually)
//! finishes it, and its text comes back through the network to this host,
//! which checks it against the output commitment on chain before answering.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use gonka_net::api::{
    ApiBackend, ApiError, ApiKey, ChainQuery, CompletionJob, CompletionStream, FinishReason, ModelCard,
    Prompt, StreamItem, Usage,
};
use serde_json::{Value, json};

use gonka_kernels::llm::tokenizer::ChatMessage;

use super::core::{Completion, NodeCore};
use super::runtime::{ApiRequest, CoreInput};
use crate::chain::types::{SignedTransaction, Transaction};
use crate::crypto::HostKey;
use crate::inference::payload::{InferencePayload, MAX_PROMPT_TOKENS};
use crate::inference::{ServedModel, Server};
use crate::store::tables::TASKS;
use crate::tasks::{InferenceRequest, TaskStatus, task_id};

/// Tokens a request pays for when it does not say.
const DEFAULT_MAX_TOKENS: u32 = 64;
/// How long a request waits for the core to answer a query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a completion may take from request to text.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(150);

/// The backend the router calls; every call goes to the core thread over its bounded queue.
#[derive(Debug)]
pub struct NodeApi {
    inputs: flume::Sender<CoreInput>,
    keys: BTreeMap<String, Arc<HostKey>>,
    models: Vec<String>,
    nonces: Arc<Mutex<BTreeMap<[u8; 48], u64>>>,
    /// The model this host serves (its tokenizer turns requests into tokens).
    server: Arc<Server>,
    /// Its index in `models`.
    served: u32,
}

impl NodeApi {
    /// The API of the core behind `inputs`, paying with `keys`, serving
    /// model `served` of `models` on `server`.
    pub fn new(
        inputs: flume::Sender<CoreInput>,
        keys: BTreeMap<String, Arc<HostKey>>,
        models: Vec<String>,
        server: Arc<Server>,
        served: u32,
    ) -> Self {
        Self { inputs, keys, models, nonces: Arc::default(), server, served }
    }

    async fn ask<T: Send + 'static>(
        inputs: &flume::Sender<CoreInput>,
        f: impl FnOnce(&mut NodeCore) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = flume::bounded(1);
        let job = CoreInput::Query(Box::new(move |core| {
            let _ = tx.send(f(core));
        }));
        let busy = |_| ApiError::Busy { message: "the node's queue is full".into() };
        inputs.try_send(job).map_err(busy)?;
        tokio::time::timeout(QUERY_TIMEOUT, rx.recv_async())
            .await
            .map_err(|_| ApiError::Unavailable { message: "the node did not answer in time".into() })?
            .map_err(|_| ApiError::Unavailable { message: "the node stopped".into() })
    }
}

/// The prompt as one text: chat messages as `role: content` lines.
/// The request's prompt in tokens, with the chat template for chats.
fn prompt_tokens(model: &ServedModel, p: &Prompt) -> Result<Vec<u32>, ApiError> {
    let tokens = match p {
        Prompt::Text(t) => model.encode_text(t),
        Prompt::Chat(messages) => {
            let messages: Vec<ChatMessage> =
                messages.iter().map(|m| ChatMessage::new(m.role.as_str(), m.content.clone())).collect();
            model.encode_chat(&messages)
        }
    };
    let tokens = tokens.map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
    if tokens.is_empty() {
        return Err(ApiError::bad_param("prompt", "the prompt is empty"));
    }
    Ok(tokens)
}

/// The text of `output` as pieces of one or more tokens each (a piece ends
/// where a character is complete), cut at the first stop sequence.
fn pieces(model: &ServedModel, output: &[u32], stop: &[String]) -> (Vec<String>, bool) {
    let mut bytes = Vec::new();
    let mut sent = 0;
    let mut pieces = Vec::new();
    let mut text = String::new();
    for &t in output {
        if model.stop_tokens.contains(&t) {
            break;
        }
        let piece = model.stream_text(&mut bytes, &mut sent, t);
        if piece.is_empty() {
            continue;
        }
        text.push_str(&piece);
        if let Some(at) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            // Keep what comes before the stop sequence and end there.
            let already: usize = pieces.iter().map(String::len).sum();
            if at > already {
                pieces.push(text[already..at].to_string());
            }
            return (pieces, true);
        }
        pieces.push(piece);
    }
    (pieces, false)
}

/// Provisional output chunks an API request holds before the core drops more.
const PARTIAL_CHUNKS: usize = 1024;

/// The text of a completion as the executor produces it (`tokens`, relayed
/// provisional chunks), then what the confirmed output (`done`, checked
/// against the chain's commitment by the core) adds to it. Streamed tokens
/// that are not a prefix of the confirmed output end the stream with an
/// error: nothing unconfirmed is passed off as the answer.
fn live_stream(
    model: Arc<ServedModel>,
    tokens: flume::Receiver<Vec<u32>>,
    done: flume::Receiver<Result<Completion, String>>,
) -> impl futures_util::Stream<Item = Result<StreamItem, ApiError>> {
    struct Live {
        model: Arc<ServedModel>,
        tokens: flume::Receiver<Vec<u32>>,
        done: flume::Receiver<Result<Completion, String>>,
        deadline: tokio::time::Instant,
        /// Output tokens streamed, their bytes, and how many bytes went out as text.
        streamed: Vec<u32>,
        bytes: Vec<u8>,
        sent: usize,
        /// A stop token came: nothing after it is text.
        stopped: bool,
        queue: std::collections::VecDeque<Result<StreamItem, ApiError>>,
        ended: bool,
    }
    impl Live {
        /// The text pieces of more output tokens.
        fn take(&mut self, tokens: &[u32]) {
            for &t in tokens {
                self.streamed.push(t);
                if self.stopped || self.model.stop_tokens.contains(&t) {
                    self.stopped = true;
                    continue;
                }
                let piece = self.model.stream_text(&mut self.bytes, &mut self.sent, t);
                if !piece.is_empty() {
                    self.queue.push_back(Ok(StreamItem::Delta(piece)));
                }
            }
        }

        fn finish(&mut self, completion: Result<Result<Completion, String>, ApiError>) {
            self.ended = true;
            let completion = match completion {
                Ok(Ok(c)) => c,
                Ok(Err(message)) => return self.queue.push_back(Err(ApiError::Unavailable { message })),
                Err(e) => return self.queue.push_back(Err(e)),
            };
            let Some(rest) = completion.output.strip_prefix(&self.streamed[..]) else {
                let message = "the streamed tokens differ from the output the chain confirmed".to_string();
                return self.queue.push_back(Err(ApiError::Unavailable { message }));
            };
            self.take(rest);
            let usage = Usage {
                prompt_tokens: completion.prompt_tokens,
                completion_tokens: completion.output.len() as u32,
            };
            let finish_reason =
                if completion.cancelled || !self.stopped { FinishReason::Length } else { FinishReason::Stop };
            self.queue.push_back(Ok(StreamItem::Done { finish_reason, usage }));
        }
    }
    let live = Live {
        model,
        tokens,
        done,
        deadline: tokio::time::Instant::now() + COMPLETION_TIMEOUT,
        streamed: Vec::new(),
        bytes: Vec::new(),
        sent: 0,
        stopped: false,
        queue: Default::default(),
        ended: false,
    };
    futures_util::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(item) = live.queue.pop_front() {
                return Some((item, live));
            }
            if live.ended {
                return None;
            }
            tokio::select! {
                chunk = live.tokens.recv_async() => match chunk {
                    Ok(chunk) => live.take(&chunk),
                    // The core dropped the request: its answer is on `done`.
                    Err(_) => {
                        let done = tokio::time::timeout_at(live.deadline, live.done.recv_async()).await;
                        let done = done
                            .map_err(|_| ApiError::Unavailable { message: "no completion in time".into() })
                            .and_then(|d| d.map_err(|_| ApiError::Unavailable { message: "the node stopped".into() }));
                        live.finish(done);
                    }
                },
                done = live.done.recv_async() => {
                    // Chunks sent before the answer come first.
                    while let Ok(chunk) = live.tokens.try_recv() {
                        live.take(&chunk);
                    }
                    live.finish(done.map_err(|_| ApiError::Unavailable { message: "the node stopped".into() }));
                }
                () = tokio::time::sleep_until(live.deadline) => {
                    live.finish(Err(ApiError::Unavailable { message: "no completion in time".into() }));
                }
            }
        }
    })
}

impl ApiBackend for NodeApi {
    fn models(&self) -> Vec<ModelCard> {
        self.models
            .iter()
            .map(|m| ModelCard { id: m.clone(), created: 0, owned_by: "gonka".into() })
            .collect()
    }

    fn complete(
        &self,
        key: ApiKey,
        job: CompletionJob,
    ) -> BoxFuture<'static, Result<CompletionStream, ApiError>> {
        let payer = self.keys.get(key.as_str()).cloned();
        let model = self.models.iter().position(|m| *m == job.model);
        let inputs = self.inputs.clone();
        let nonces = self.reserve_nonce_fn();
        let server = Arc::clone(&self.server);
        let served = self.served;
        async move {
            let payer = payer.ok_or(ApiError::InvalidApiKey)?;
            let model = model.ok_or_else(|| ApiError::ModelNotFound { model: job.model.clone() })? as u32;
            if model != served {
                return Err(ApiError::ModelNotFound {
                    model: format!("{} (this host serves another model)", job.model),
                });
            }
            let prompt = prompt_tokens(server.model(), &job.input)?;
            let max_output = job.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).max(1);
            let context = server.model().llama.config().max_seq;
            if prompt.len() + max_output as usize > context.min(MAX_PROMPT_TOKENS) {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!(
                        "{} prompt tokens and {max_output} more exceed the context of {context}",
                        prompt.len()
                    ),
                ));
            }
            let pk = payer.public_key();
            let (chain_nonce, balance, price) = Self::ask(&inputs, move |core| {
                let ledger = core.chain().ledger();
                let price =
                    core.chain().params().economy.models.get(model as usize).map_or(0, |m| m.price_per_token);
                (ledger.nonce(&pk), ledger.balance(&pk), price)
            })
            .await?;
            let nonce = nonces(pk, chain_nonce);
            let task = task_id(&pk, nonce);
            // Without a seed, one derived from the task: different per request, fixed once sent.
            let seed = job
                .params
                .seed
                .unwrap_or_else(|| u64::from_le_bytes(task[..8].try_into().unwrap_or_default()));
            let top_p = job.params.top_p.unwrap_or(1.0);
            let temperature = if top_p <= 0.0 { 0.0 } else { job.params.temperature.unwrap_or(1.0) };
            let payload = InferencePayload {
                model,
                prompt,
                max_output_tokens: max_output,
                temperature,
                top_p: if top_p <= 0.0 { 1.0 } else { top_p },
                seed,
            };
            payload.check_bounds().map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
            let max_tokens = payload.token_budget();
            let max_cost = price * u128::from(max_tokens);
            if balance < max_cost {
                return Err(ApiError::InsufficientBalance {
                    message: format!("the account holds {balance}, this request may cost up to {max_cost}"),
                });
            }
            let request =
                InferenceRequest { nonce, model, prompt: payload.commitment(), max_tokens, max_cost };
            let tx = SignedTransaction::sign(&payer, Transaction::InferenceRequest(request));
            let (reply, done) = flume::bounded(1);
            // Without stop sequences the text streams as the executor makes
            // it; with them it waits for the whole output (a stop sequence
            // can take back text that looked final).
            let (partial, tokens) = flume::bounded(PARTIAL_CHUNKS);
            let live = job.params.stop.is_empty();
            let request = Box::new(ApiRequest { tx, task, payload, reply, partial: live.then_some(partial) });
            inputs
                .try_send(CoreInput::Request(request))
                .map_err(|_| ApiError::Busy { message: "the node's queue is full".into() })?;
            if live {
                let model = Arc::clone(server.model());
                return Ok(CompletionStream {
                    id: format!("cmpl-{}", hex::encode(task)),
                    items: live_stream(model, tokens, done).boxed(),
                });
            }
            let completion: Completion = tokio::time::timeout(COMPLETION_TIMEOUT, done.recv_async())
                .await
                .map_err(|_| ApiError::Unavailable { message: "no completion in time".into() })?
                .map_err(|_| ApiError::Unavailable { message: "the node stopped".into() })?
                .map_err(|message| ApiError::Unavailable { message })?;
            let (texts, stopped) = pieces(server.model(), &completion.output, &job.params.stop);
            let usage = Usage {
                prompt_tokens: completion.prompt_tokens,
                completion_tokens: completion.output.len() as u32,
            };
            let ended_on_stop =
                stopped || completion.output.last().is_some_and(|t| server.model().stop_tokens.contains(t));
            let finish_reason = if completion.cancelled || !ended_on_stop {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            let mut items: Vec<Result<StreamItem, ApiError>> =
                texts.into_iter().map(|t| Ok(StreamItem::Delta(t))).collect();
            items.push(Ok(StreamItem::Done { finish_reason, usage }));
            Ok(CompletionStream {
                id: format!("cmpl-{}", hex::encode(completion.task)),
                items: futures_util::stream::iter(items).boxed(),
            })
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'static, Result<Value, ApiError>> {
        let inputs = self.inputs.clone();
        async move {
            Self::ask(&inputs, |core| {
                let chain = core.chain();
                json!({
                    "next_height": chain.next_height(),
                    "epoch": chain.clock().epoch,
                    "state_root": hex::encode(chain.state_root()),
                    "voting_hosts": chain.voting().ids.len(),
                    "mempool": core.mempool_len(),
                    "halted": core.halted(),
                })
            })
            .await
        }
        .boxed()
    }

    fn query(&self, query: ChainQuery) -> BoxFuture<'static, Result<Value, ApiError>> {
        let inputs = self.inputs.clone();
        async move {
            match query {
                ChainQuery::Height => {
                    Self::ask(&inputs, |c| json!({ "height": c.chain().tip().height })).await
                }
                ChainQuery::Epoch => {
                    Self::ask(&inputs, |c| {
                        let s = c.chain().sprint();
                        json!({
                            "epoch": c.chain().clock().epoch,
                            "sprint_seed": s.seed.map(hex::encode),
                            "sprint_start": s.start, "sprint_end": s.end, "validation_end": s.validation_end,
                        })
                    })
                    .await
                }
                ChainQuery::Hosts { offset, limit } => Self::ask(&inputs, move |c| {
                    let v = c.chain().voting();
                    let hosts: Vec<Value> = v
                        .ids
                        .iter()
                        .zip(&v.keys)
                        .zip(&v.weights)
                        .skip(offset as usize)
                        .take(limit as usize)
                        .map(|((id, k), w)| json!({ "id": id, "public_key": hex::encode(k), "weight": w }))
                        .collect();
                    json!({ "epoch": v.epoch, "total_weight": v.total_weight().to_string(), "hosts": hosts })
                })
                .await,
                ChainQuery::Task(id) => {
                    let id: [u8; 32] = hex::decode(&id)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| ApiError::bad_param("id", "a task id is 64 hex digits"))?;
                    Self::ask(&inputs, move |c| task_json(c, &id)).await?
                }
            }
        }
        .boxed()
    }
}

impl NodeApi {
    /// A function that hands out the next nonce of a payer: the larger of
    /// the chain's and the last one this host used plus one.
    fn reserve_nonce_fn(&self) -> impl FnOnce([u8; 48], u64) -> u64 + Send + 'static {
        let nonces = Arc::clone(&self.nonces);
        move |pk, chain_nonce| {
            let mut map = nonces.lock().unwrap_or_else(|e| e.into_inner());
            let next = map.get(&pk).map_or(chain_nonce, |&n| n.max(chain_nonce));
            map.insert(pk, next + 1);
            next
        }
    }
}

/// A task's state: open on chain, or as the store last saw it.
fn task_json(core: &mut NodeCore, id: &[u8; 32]) -> Result<Value, ApiError> {
    let describe = |t: &crate::tasks::Task, end: Option<(u64, crate::tasks::TaskEnd)>| {
        let (status, finished) = match &t.status {
            TaskStatus::Requested => ("requested", None),
            TaskStatus::Finished(f) => ("finished", Some(f)),
            TaskStatus::Disputed(f, _) => ("disputed", Some(f)),
        };
        let status = end.map_or(status, |(_, e)| e.name());
        json!({
            "id": hex::encode(t.id),
            "status": status,
            "ended_at": end.map(|(h, _)| h),
            "model": t.model,
            "executor": t.executor,
            "intermediary": t.intermediary,
            "requested_at": t.requested,
            "escrow": t.escrow.to_string(),
            "cost": finished.map(|f| f.cost.to_string()),
            "tokens": finished.map(|f| f.tokens),
            "checks": t.checks.len(),
        })
    };
    if let Some(t) = core.chain().task(id) {
        return Ok(describe(t, None));
    }
    let txn = core.store().read().map_err(|e| ApiError::Internal { message: e.to_string() })?;
    match TASKS.get_owned(&txn, id).map_err(|e| ApiError::Internal { message: e.to_string() })? {
        Some(r) => Ok(describe(&r.task, r.end)),
        None => Err(ApiError::NotFound { message: format!("no task {} on this chain", hex::encode(id)) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(output: Vec<u32>) -> Completion {
        Completion {
            task: [1; 32],
            tokens: output.len() as u32 + 3,
            prompt_tokens: 3,
            output,
            cancelled: false,
        }
    }

    /// Runs a live stream to its end: its text, and its last item.
    fn collect(
        chunks: Vec<Vec<u32>>,
        answer: Result<Completion, String>,
    ) -> (Arc<ServedModel>, String, Result<StreamItem, ApiError>) {
        let model = Arc::new(ServedModel::tiny(0, "tiny").expect("tiny model"));
        let (partial, tokens) = flume::bounded(16);
        let (reply, done) = flume::bounded(1);
        for c in chunks {
            partial.send(c).expect("room");
        }
        reply.send(answer).expect("room");
        drop(partial);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let items: Vec<_> = runtime.block_on(live_stream(Arc::clone(&model), tokens, done).collect());
        let text: String = items
            .iter()
            .filter_map(|i| match i {
                Ok(StreamItem::Delta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let last = items.into_iter().last().expect("at least one item");
        (model, text, last)
    }

    fn text_of(model: &ServedModel, output: &[u32]) -> String {
        let (mut bytes, mut sent) = (Vec::new(), 0);
        output.iter().map(|&t| model.stream_text(&mut bytes, &mut sent, t)).collect()
    }

    #[test]
    fn streamed_chunks_and_the_confirmed_rest_make_the_whole_text() {
        let output: Vec<u32> = vec![72, 105, 33, 200, 70, 71];
        let (model, text, last) =
            collect(vec![output[..2].to_vec(), output[2..4].to_vec()], Ok(completion(output.clone())));
        assert_eq!(text, text_of(&model, &output));
        assert!(
            matches!(last, Ok(StreamItem::Done { finish_reason: FinishReason::Length, usage }) if usage.completion_tokens == 6),
            "{last:?}"
        );
        // Nothing streamed: all from the confirmed output.
        let (_, whole, _) = collect(Vec::new(), Ok(completion(output.clone())));
        assert_eq!(whole, text);
        // A stop token ends the text and the reason.
        let stop = model.stop_tokens[0];
        let (_, cut, last) = collect(vec![vec![72, stop]], Ok(completion(vec![72, stop, 105])));
        assert_eq!(cut, text_of(&model, &[72]));
        assert!(matches!(last, Ok(StreamItem::Done { finish_reason: FinishReason::Stop, .. })), "{last:?}");
    }

    #[test]
    fn streamed_tokens_the_chain_does_not_confirm_end_in_an_error() {
        let (_, _, last) = collect(vec![vec![72, 105]], Ok(completion(vec![72, 106, 33])));
        assert!(
            matches!(&last, Err(ApiError::Unavailable { message }) if message.contains("differ")),
            "{last:?}"
        );
        let (_, _, last) = collect(Vec::new(), Err("task expired".into()));
        assert!(
            matches!(&last, Err(ApiError::Unavailable { message }) if message.contains("expired")),
            "{last:?}"
        );
    }
}
