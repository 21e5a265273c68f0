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

use super::core::{Completion, NodeCore};
use super::runtime::CoreInput;
use crate::chain::types::{SignedTransaction, Transaction};
use crate::crypto::HostKey;
use crate::store::tables::TASKS;
use crate::tasks::{InferenceRequest, TaskStatus, prompt_commitment, task_id};

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
    /// API key → payer key.
    keys: BTreeMap<String, Arc<HostKey>>,
    /// Model names in chain order.
    models: Vec<String>,
    /// The next nonce this host will use per payer (requests may overlap).
    nonces: Arc<Mutex<BTreeMap<[u8; 48], u64>>>,
}

impl NodeApi {
    /// A backend over the core's `inputs`, with `keys` mapping API keys to payers.
    pub fn new(
        inputs: flume::Sender<CoreInput>,
        keys: BTreeMap<String, Arc<HostKey>>,
        models: Vec<String>,
    ) -> Self {
        Self { inputs, keys, models, nonces: Arc::default() }
    }

    /// Runs `f` on the core's thread and returns its answer.
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
fn prompt_text(p: &Prompt) -> String {
    match p {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(messages) => messages
            .iter()
            .map(|m| format!("{}: {}", m.role.as_str(), m.content))
            .collect::<Vec<_>>()
            .join("\n"),
    }
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
        async move {
            let payer = payer.ok_or(ApiError::InvalidApiKey)?;
            let model = model.ok_or_else(|| ApiError::ModelNotFound { model: job.model.clone() })? as u32;
            let prompt = prompt_text(&job.input);
            let max_tokens = job.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).max(1);
            let pk = payer.public_key();
            let (chain_nonce, balance, price) = Self::ask(&inputs, move |core| {
                let ledger = core.chain().ledger();
                let price =
                    core.chain().params().economy.models.get(model as usize).map_or(0, |m| m.price_per_token);
                (ledger.nonce(&pk), ledger.balance(&pk), price)
            })
            .await?;
            let max_cost = price * u128::from(max_tokens);
            if balance < max_cost {
                return Err(ApiError::InsufficientBalance {
                    message: format!("the account holds {balance}, this request may cost up to {max_cost}"),
                });
            }
            let nonce = nonces(pk, chain_nonce);
            let request =
                InferenceRequest { nonce, model, prompt: prompt_commitment(&prompt), max_tokens, max_cost };
            let task = task_id(&pk, nonce);
            let tx = SignedTransaction::sign(&payer, Transaction::InferenceRequest(request));
            let (reply, done) = flume::bounded(1);
            inputs
                .try_send(CoreInput::Request(tx, task, reply))
                .map_err(|_| ApiError::Busy { message: "the node's queue is full".into() })?;
            let completion: Completion = tokio::time::timeout(COMPLETION_TIMEOUT, done.recv_async())
                .await
                .map_err(|_| ApiError::Unavailable { message: "no completion in time".into() })?
                .map_err(|_| ApiError::Unavailable { message: "the node stopped".into() })?
                .map_err(|message| ApiError::Unavailable { message })?;
            let words: Vec<String> = completion.text.split(' ').map(str::to_string).collect();
            let completion_tokens = words.len() as u32;
            let usage = Usage {
                prompt_tokens: completion.tokens.saturating_sub(completion_tokens),
                completion_tokens,
            };
            let finish_reason = if completion.cancelled { FinishReason::Length } else { FinishReason::Stop };
            let mut items: Vec<Result<StreamItem, ApiError>> = words
                .into_iter()
                .enumerate()
                .map(|(i, w)| Ok(StreamItem::Delta(if i == 0 { w } else { format!(" {w}") })))
                .collect();
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
