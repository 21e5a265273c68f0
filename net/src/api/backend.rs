//! [`ApiBackend`]: what the engine implements so the router can serve it, and
//! the protocol-free types that cross that boundary.
//!
//! # Threading
//!
//! The router runs on tokio worker threads and calls the backend from there.
//! No method may block: a method either answers from data already at hand (a
//! snapshot behind a short lock) or sends a message to the engine's thread
//! over a bounded channel and returns a future that awaits the reply. Blocking
//! I/O, a kernel call or a wait on the tick inside a method stalls every other
//! connection served by that worker.

use std::fmt;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;

/// The engine behind the HTTP API: models, completions paid by an API key,
/// node status and chain queries. See the module docs on threading.
pub trait ApiBackend: Send + Sync + 'static {
    /// The models this node serves, for `GET /v1/models`. Called per request:
    /// answer from a cached list, without blocking.
    fn models(&self) -> Vec<ModelCard>;

    /// Whether `model` is served; the router answers 404 `model_not_found`
    /// before calling [`complete`](Self::complete) when it is not. The default
    /// scans [`models`](Self::models); override it when that list is long.
    fn has_model(&self, model: &str) -> bool {
        self.models().iter().any(|card| card.id == model)
    }

    /// Starts a completion paid by the account of `key`.
    ///
    /// The future resolves once the request is accepted (key known, balance
    /// sufficient, queued) or refused: return [`ApiError::InvalidApiKey`],
    /// [`ApiError::InsufficientBalance`], [`ApiError::Busy`] or
    /// [`ApiError::Unavailable`] as fits. The returned stream then yields the
    /// text as it is generated and ends with [`StreamItem::Done`].
    ///
    /// The router drops the stream when the client goes away; the engine
    /// should notice (its sender into the stream fails) and cancel the work.
    /// Feed the stream from a bounded channel, so one slow client cannot
    /// buffer a whole completion in memory.
    fn complete(
        &self,
        key: ApiKey,
        job: CompletionJob,
    ) -> BoxFuture<'static, Result<CompletionStream, ApiError>>;

    /// The node's status for `GET /v1/status`, as a JSON object.
    fn status(&self) -> BoxFuture<'static, Result<Value, ApiError>>;

    /// Answers a chain query (`GET /v1/chain/...`) with a JSON value, or
    /// [`ApiError::NotFound`] for an unknown task.
    fn query(&self, query: ChainQuery) -> BoxFuture<'static, Result<Value, ApiError>>;
}

/// A model served by this node, as listed by `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCard {
    /// The id clients put in `model`.
    pub id: String,
    /// Unix time in seconds when the model was registered.
    pub created: u64,
    /// Who owns or published the model.
    pub owned_by: String,
}

/// The bearer key of a request: names the payer account.
///
/// The router only checks its shape; the backend decides whether it is known.
/// `Debug` shows a short prefix only, so keys do not leak into logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key as received; no check is made.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key as sent by the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(4).collect();
        write!(f, "ApiKey({prefix}…)")
    }
}

/// A completion request after validation: chat and plain completions alike.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionJob {
    /// A model id for which [`ApiBackend::has_model`] holds.
    pub model: String,
    /// What to continue.
    pub input: Prompt,
    /// Sampling knobs, already range-checked.
    pub params: SamplingParams,
    /// Whether the client reads the answer as server-sent events.
    pub stream: bool,
    /// The end-user id the client passed in `user`, if any.
    pub user: Option<String>,
}

/// The input of a [`CompletionJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `POST /v1/completions`: raw text to continue.
    Text(String),
    /// `POST /v1/chat/completions`: messages the engine renders with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// One message of a chat, its content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What was said; text parts of an array content are concatenated.
    pub content: String,
}

/// The speaker of a [`ChatMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions from the application (`system`).
    System,
    /// Instructions from the application in newer OpenAI clients (`developer`).
    Developer,
    /// The end user (`user`).
    User,
    /// Earlier model output (`assistant`).
    Assistant,
    /// A tool result (`tool`).
    Tool,
}

impl Role {
    /// Parses an OpenAI role name.
    pub fn parse(name: &str) -> Option<Role> {
        Some(match name {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => return None,
        })
    }

    /// The OpenAI role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Sampling knobs of a [`CompletionJob`]; `None` means the backend's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    /// Most tokens to generate, at least 1 and at most [`ApiLimits::max_tokens`](super::ApiLimits).
    pub max_tokens: Option<u32>,
    /// In `0.0..=2.0`.
    pub temperature: Option<f32>,
    /// In `0.0..=1.0`.
    pub top_p: Option<f32>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Sequences that end generation, at most [`MAX_STOP_SEQUENCES`](super::MAX_STOP_SEQUENCES).
    pub stop: Vec<String>,
}

/// What [`ApiBackend::complete`] hands back once a request is accepted.
pub struct CompletionStream {
    /// The response id clients see, e.g. the task id in hex, so that a client
    /// can follow the task with `GET /v1/chain/tasks/{id}`.
    pub id: String,
    /// The generated text, ending with [`StreamItem::Done`]. An `Err` ends the
    /// response with that error.
    pub items: BoxStream<'static, Result<StreamItem, ApiError>>,
}

impl fmt::Debug for CompletionStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompletionStream").field("id", &self.id).finish_non_exhaustive()
    }
}

/// One item of a [`CompletionStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// Newly generated text (one or more tokens).
    Delta(String),
    /// The end of generation; nothing may follow.
    Done {
        /// Why generation stopped.
        finish_reason: FinishReason,
        /// Tokens consumed and produced, as billed.
        usage: Usage,
    },
}

/// Why generation stopped, as OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop sequence or the end-of-sequence token.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The output was withheld.
    ContentFilter,
}

/// Token counts of a finished completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt (after the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion tokens, saturating.
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A read of replicated chain state, from `GET /v1/chain/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainQuery {
    /// `GET /v1/chain/height`: the last finalized height.
    Height,
    /// `GET /v1/chain/epoch`: the current epoch and its phase.
    Epoch,
    /// `GET /v1/chain/hosts?offset=&limit=`: a page of hosts and their weights,
    /// in the chain's host order. `limit` is at most [`MAX_HOSTS_PAGE`](super::MAX_HOSTS_PAGE).
    Hosts {
        /// Hosts to skip.
        offset: u32,
        /// Most hosts to return.
        limit: u32,
    },
    /// `GET /v1/chain/tasks/{id}`: a task's state; the id is lowercase hex,
    /// checked to be non-empty, even-length and at most
    /// [`MAX_TASK_ID_HEX`](super::MAX_TASK_ID_HEX) characters.
    Task(String),
}
