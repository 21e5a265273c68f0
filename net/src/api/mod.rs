//! The HTTP API of a node: OpenAI-compatible endpoints and chain queries,
//! served by axum over a backend the engine provides.
//!
//! This module knows no protocol types. The engine implements
//! [`ApiBackend`]; [`router`] turns it into an axum [`Router`] and [`serve`]
//! runs that router on a listener until shutdown. Start reading at
//! [`ApiBackend`] (what the engine must provide, and the threading rule:
//! never block), then `handlers.rs` (what each route does).
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/models`, `GET /v1/models/{id}` | [`ApiBackend::models`] as OpenAI `model` objects |
//! | `POST /v1/chat/completions` | `chat.completion`, or `chat.completion.chunk` events when `stream: true` |
//! | `POST /v1/completions` | `text_completion`, or `text_completion` events when `stream: true` |
//! | `GET /v1/status` | [`ApiBackend::status`] |
//! | `GET /v1/chain/height`, `/epoch`, `/hosts?offset=&limit=`, `/tasks/{id}` | [`ApiBackend::query`] |
//!
//! ```text
//!  request ─▶ in-flight limit (429) ─▶ route (404/405) ─▶ bearer key (401)
//!          ─▶ JSON body: content type, size (413), syntax (400) ─▶ field checks (400)
//!          ─▶ model known? (404) ─▶ ApiBackend::complete (401 key, 402 balance, 429, 503)
//!          ─▶ CompletionStream ─▶ one JSON object | SSE chunks … data: [DONE]
//! ```
//!
//! Every failure is an [`ApiError`], answered as
//! `{"error": {"message", "type", "param", "code"}}` with its own status.
//! Completions need `Authorization: Bearer KEY`; the key names the payer
//! account, and the backend decides whether it exists and can pay. The other
//! routes are public.

mod backend;
mod echo;
mod error;
mod handlers;
mod openai;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use backend::{
    ApiBackend, ApiKey, ChainQuery, ChatMessage, CompletionJob, CompletionStream, FinishReason, ModelCard,
    Prompt, Role, SamplingParams, StreamItem, Usage,
};
pub use echo::{ECHO_DEFAULT_MAX_TOKENS, EchoBackend};
pub use error::ApiError;
pub use openai::{ChatCompletionRequest, ChatMessageIn, CompletionRequest, StreamOptions};

/// Default request body limit: a long chat history with headroom. A prompt
/// this large already exceeds the context of any model a node serves.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Default number of requests served at once, open streams included. Each
/// costs a task slot and a few KiB; past it the node answers 429.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Default ceiling of `max_tokens`: the longest completion one request may buy.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;

/// Most stop sequences per request, as OpenAI allows.
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Longest stop sequence, in bytes: stop sequences are short markers, and the
/// engine scans for each one after every token.
pub const MAX_STOP_SEQUENCE_BYTES: usize = 256;

/// Longest API key accepted, in bytes; longer ones are refused before the backend sees them.
pub const MAX_API_KEY_BYTES: usize = 256;

/// Longest task id in `GET /v1/chain/tasks/{id}`, in hex digits: a 64-byte id.
pub const MAX_TASK_ID_HEX: usize = 128;

/// Most hosts in one page of `GET /v1/chain/hosts`, so that one request
/// cannot ask for the whole host table of a large network.
pub const MAX_HOSTS_PAGE: u32 = 1000;

/// The limits a [`router`] enforces; [`Default`] gives the `DEFAULT_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most requests served at once, open streams included (429 beyond). At least 1.
    pub max_in_flight: usize,
    /// Largest `max_tokens` a request may ask for (400 beyond).
    pub max_tokens: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

/// Builds the API router over `backend`.
///
/// Handlers call `backend` on tokio worker threads; see [`ApiBackend`] for why
/// its methods must not block.
///
/// # Panics
///
/// If `limits.max_in_flight` is 0 (every request would be refused) or larger
/// than tokio's `Semaphore::MAX_PERMITS`.
pub fn router(backend: Arc<dyn ApiBackend>, limits: ApiLimits) -> Router {
    assert!(limits.max_in_flight > 0, "ApiLimits::max_in_flight must be at least 1");
    let state = handlers::AppState::new(backend, limits);
    Router::new()
        .route("/v1/models", get(handlers::list_models))
        .route("/v1/models/{*id}", get(handlers::get_model))
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/status", get(handlers::status))
        .route("/v1/chain/height", get(handlers::chain_height))
        .route("/v1/chain/epoch", get(handlers::chain_epoch))
        .route("/v1/chain/hosts", get(handlers::chain_hosts))
        .route("/v1/chain/tasks/{id}", get(handlers::chain_task))
        .method_not_allowed_fallback(handlers::wrong_method)
        .fallback(handlers::unknown_route)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Outermost, so a flood is refused before any body is read.
        .layer(axum::middleware::from_fn_with_state(state.clone(), handlers::limit_in_flight))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for the requests in flight (open streams included) to
/// finish.
///
/// Sockets get `TCP_NODELAY`, so each streamed token leaves at once rather
/// than waiting for Nagle's algorithm to fill a segment.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an API connection");
        }
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
