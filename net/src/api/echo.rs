//! [`EchoBackend`]: a test double of [`ApiBackend`] for tests, benches and
//! wiring checks. It never runs a model and never serves real traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::{self, BoxFuture};
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};

use super::backend::{
    ApiBackend, ApiKey, ChainQuery, CompletionJob, CompletionStream, FinishReason, ModelCard, Prompt,
    StreamItem, Usage,
};
use super::error::ApiError;

/// Tokens a request may produce when it names no `max_tokens`.
pub const ECHO_DEFAULT_MAX_TOKENS: u32 = 16;

/// A test double: answers a completion by echoing the last message (or the
/// prompt) back, one whitespace-separated word per token.
///
/// Accounts are API keys with a balance in tokens. A request is refused with
/// [`ApiError::InsufficientBalance`] when the balance is below its
/// `max_tokens` (or [`ECHO_DEFAULT_MAX_TOKENS`]); the tokens produced are then
/// deducted. Response ids are 32-byte hex counters, and
/// `GET /v1/chain/tasks/{id}` knows every id it handed out. The chain is
/// frozen at height 42, epoch 3, with three hosts.
#[derive(Debug)]
pub struct EchoBackend {
    models: Vec<ModelCard>,
    balances: Mutex<HashMap<String, u64>>,
    next_task: AtomicU64,
}

impl EchoBackend {
    /// Serves `models` (ids) to the accounts `(key, balance in tokens)`.
    pub fn new<'a>(models: &[&str], accounts: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        EchoBackend {
            models: models
                .iter()
                .map(|id| ModelCard {
                    id: (*id).to_owned(),
                    created: 1_700_000_000,
                    owned_by: "echo".to_owned(),
                })
                .collect(),
            balances: Mutex::new(accounts.into_iter().map(|(k, b)| (k.to_owned(), b)).collect()),
            next_task: AtomicU64::new(1),
        }
    }

    /// The balance of `key`, if it is an account.
    pub fn balance(&self, key: &str) -> Option<u64> {
        self.balances.lock().ok()?.get(key).copied()
    }

    /// Checks the account and deducts the tokens the echo will produce.
    fn charge(&self, key: &ApiKey, max_tokens: u32, produced: u32) -> Result<(), ApiError> {
        let mut balances = self
            .balances
            .lock()
            .map_err(|_| ApiError::Internal { message: "echo balances lock poisoned".to_owned() })?;
        let balance = balances.get_mut(key.as_str()).ok_or(ApiError::InvalidApiKey)?;
        if *balance < u64::from(max_tokens) {
            return Err(ApiError::InsufficientBalance {
                message: format!("the request may cost {max_tokens} tokens but the account holds {balance}"),
            });
        }
        *balance -= u64::from(produced);
        Ok(())
    }

    fn chain(&self, query: ChainQuery) -> Result<Value, ApiError> {
        Ok(match query {
            ChainQuery::Height => json!({ "height": 42 }),
            ChainQuery::Epoch => json!({ "epoch": 3, "phase": "inference", "first_height": 30 }),
            ChainQuery::Hosts { offset, limit } => {
                let hosts: Vec<Value> = (0..3u32)
                    .skip(offset as usize)
                    .take(limit as usize)
                    .map(|i| json!({ "host": format!("host-{i}"), "weight": 10 * (i + 1) }))
                    .collect();
                json!({ "offset": offset, "total": 3, "hosts": hosts })
            }
            ChainQuery::Task(id) => {
                let issued = u128::from_str_radix(&id, 16)
                    .ok()
                    .filter(|n| *n >= 1 && *n < u128::from(self.next_task.load(Ordering::Relaxed)));
                match issued {
                    Some(_) => json!({ "id": id, "state": "finished" }),
                    None => return Err(ApiError::NotFound { message: format!("no task with id {id}") }),
                }
            }
        })
    }
}

impl ApiBackend for EchoBackend {
    fn models(&self) -> Vec<ModelCard> {
        self.models.clone()
    }

    fn complete(
        &self,
        key: ApiKey,
        job: CompletionJob,
    ) -> BoxFuture<'static, Result<CompletionStream, ApiError>> {
        let source = match &job.input {
            Prompt::Text(text) => text.as_str(),
            Prompt::Chat(messages) => messages.last().map_or("", |m| m.content.as_str()),
        };
        let prompt_tokens = match &job.input {
            Prompt::Text(text) => count_words(text),
            Prompt::Chat(messages) => messages.iter().map(|m| count_words(&m.content)).sum(),
        };
        let max_tokens = job.params.max_tokens.unwrap_or(ECHO_DEFAULT_MAX_TOKENS);
        let words: Vec<String> =
            source.split_whitespace().take(max_tokens as usize).map(|w| format!("{w} ")).collect();
        let produced = words.len() as u32;
        let finish_reason =
            if count_words(source) > max_tokens { FinishReason::Length } else { FinishReason::Stop };
        if let Err(e) = self.charge(&key, max_tokens, produced) {
            return Box::pin(future::ready(Err(e)));
        }
        let id = format!("{:064x}", self.next_task.fetch_add(1, Ordering::Relaxed));
        let done =
            StreamItem::Done { finish_reason, usage: Usage { prompt_tokens, completion_tokens: produced } };
        let items = stream::iter(words.into_iter().map(StreamItem::Delta).chain([done]).map(Ok)).boxed();
        Box::pin(future::ready(Ok(CompletionStream { id, items })))
    }

    fn status(&self) -> BoxFuture<'static, Result<Value, ApiError>> {
        let status = json!({ "backend": "echo", "models": self.models.len(), "height": 42 });
        Box::pin(future::ready(Ok(status)))
    }

    fn query(&self, query: ChainQuery) -> BoxFuture<'static, Result<Value, ApiError>> {
        Box::pin(future::ready(self.chain(query)))
    }
}

fn count_words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}
