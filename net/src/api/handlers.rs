//! The request handlers, their extractors (bearer key, JSON body), the
//! in-flight limit, and the turning of a [`CompletionStream`] into one JSON
//! object or a stream of server-sent events.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::backend::{ApiBackend, ApiKey, ChainQuery, CompletionStream, FinishReason, StreamItem, Usage};
use super::error::ApiError;
use super::openai::{
    AssistantMessage, ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
    Checked, ChunkChoice, CompletionRequest, CompletionResponse, Delta, ModelList, ModelObject, TextChoice,
    truncate,
};
use super::{ApiLimits, MAX_API_KEY_BYTES, MAX_HOSTS_PAGE, MAX_TASK_ID_HEX};

/// Hosts per page when `GET /v1/chain/hosts` names no `limit`.
const DEFAULT_HOSTS_PAGE: u32 = 100;

/// Longest piece of a client-chosen name (model, path) echoed back in an error.
const MAX_ECHOED_BYTES: usize = 256;

/// What every handler shares.
#[derive(Clone)]
pub(super) struct AppState {
    backend: Arc<dyn ApiBackend>,
    limits: ApiLimits,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    pub(super) fn new(backend: Arc<dyn ApiBackend>, limits: ApiLimits) -> Self {
        AppState { backend, limits, in_flight: Arc::new(Semaphore::new(limits.max_in_flight)) }
    }
}

/// Refuses a request with 429 when `max_in_flight` requests are already being
/// served. A streaming answer keeps its slot until its body ends or the client
/// goes away, since an open stream is what costs the node.
pub(super) async fn limit_in_flight(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        return ApiError::Busy {
            message: format!("{} requests already in flight; retry later", state.limits.max_in_flight),
        }
        .into_response();
    };
    let response = next.run(request).await;
    if response.body().size_hint().exact().is_some() {
        // The whole body is in memory: the work is done, free the slot now.
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _slot = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(ApiError::MissingApiKey)?;
        parse_bearer(header.as_bytes())
    }
}

/// Reads `Bearer KEY`; the key must be 1 to [`MAX_API_KEY_BYTES`] visible ASCII characters.
fn parse_bearer(header: &[u8]) -> Result<ApiKey, ApiError> {
    let malformed = |reason: &str| ApiError::MalformedApiKey { reason: reason.to_owned() };
    let header = std::str::from_utf8(header).map_err(|_| malformed("the header is not ASCII"))?;
    let (scheme, key) = header.trim().split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("expected `Authorization: Bearer KEY`"));
    }
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_API_KEY_BYTES {
        return Err(ApiError::MalformedApiKey {
            reason: format!("expected a key of 1 to {MAX_API_KEY_BYTES} bytes, found {}", key.len()),
        });
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("the key holds characters other than visible ASCII"));
    }
    Ok(ApiKey::new(key))
}

/// A JSON request body whose every failure is an OpenAI-shaped error: 400 for
/// a wrong content type or bad JSON (with the parser's message), 413 beyond
/// the body limit.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_content_type(request.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()))?;
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::RequestTooLarge { limit_bytes: state.limits.max_body_bytes }
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(json_error)
    }
}

/// Accepts `application/json` and `application/*+json`, with any parameters.
fn check_json_content_type(header: Option<&[u8]>) -> Result<(), ApiError> {
    let essence = header
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence {
        Some(e) if e == "application/json" || (e.starts_with("application/") && e.ends_with("+json")) => {
            Ok(())
        }
        Some(e) => Err(ApiError::bad_request(format!(
            "expected `Content-Type: application/json`, found `{}`",
            truncate(&e, MAX_ECHOED_BYTES)
        ))),
        None => Err(ApiError::bad_request("expected `Content-Type: application/json`, found none")),
    }
}

/// A serde error as a 400, naming the missing field as `param` where serde says which.
fn json_error(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    let param = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    let message = if e.is_data() {
        format!("invalid request body: {text}")
    } else {
        format!("invalid JSON body: {text}")
    };
    ApiError::BadRequest { message, param }
}

fn unix_now() -> u64 {
    // A clock before 1970 is a broken host, not a reason to fail a request.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `GET /v1/models`.
pub(super) async fn list_models(State(state): State<AppState>) -> Response {
    let cards = state.backend.models();
    let data = cards
        .iter()
        .map(|c| ModelObject { id: &c.id, object: "model", created: c.created, owned_by: &c.owned_by })
        .collect();
    Json(ModelList { object: "list", data }).into_response()
}

/// `GET /v1/models/{id}`; the id may hold slashes (`org/name`).
pub(super) async fn get_model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let cards = state.backend.models();
    match cards.iter().find(|c| c.id == id) {
        Some(c) => {
            Json(ModelObject { id: &c.id, object: "model", created: c.created, owned_by: &c.owned_by })
                .into_response()
        }
        None => ApiError::ModelNotFound { model: truncate(&id, MAX_ECHOED_BYTES).to_owned() }.into_response(),
    }
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(state): State<AppState>,
    key: ApiKey,
    JsonBody(request): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let checked = request.check(&state.limits)?;
    run_completion(&state, key, checked, Kind::Chat).await
}

/// `POST /v1/completions`.
pub(super) async fn completions(
    State(state): State<AppState>,
    key: ApiKey,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let checked = request.check(&state.limits)?;
    run_completion(&state, key, checked, Kind::Text).await
}

async fn run_completion(
    state: &AppState,
    key: ApiKey,
    checked: Checked,
    kind: Kind,
) -> Result<Response, ApiError> {
    let Checked { job, include_usage } = checked;
    if !state.backend.has_model(&job.model) {
        return Err(ApiError::ModelNotFound { model: truncate(&job.model, MAX_ECHOED_BYTES).to_owned() });
    }
    let model = job.model.clone();
    let stream = job.stream;
    let CompletionStream { id, items } = state.backend.complete(key, job).await?;
    let meta = Meta { id, model, created: unix_now(), kind, include_usage };
    if stream {
        let events = SseChunks { items, meta, state: SseState::Start };
        return Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response());
    }
    let (text, finish_reason, usage) = collect(items).await?;
    Ok(match kind {
        Kind::Chat => Json(ChatCompletionResponse {
            id: &meta.id,
            object: "chat.completion",
            created: meta.created,
            model: &meta.model,
            choices: [ChatChoice {
                index: 0,
                message: AssistantMessage { role: "assistant", content: &text },
                logprobs: None,
                finish_reason,
            }],
            usage: usage.into(),
        })
        .into_response(),
        Kind::Text => Json(CompletionResponse {
            id: &meta.id,
            object: "text_completion",
            created: meta.created,
            model: &meta.model,
            choices: [TextChoice {
                text: &text,
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason),
            }],
            usage: Some(usage.into()),
        })
        .into_response(),
    })
}

/// Reads a completion stream to its end.
async fn collect(
    mut items: BoxStream<'static, Result<StreamItem, ApiError>>,
) -> Result<(String, FinishReason, Usage), ApiError> {
    let mut text = String::new();
    while let Some(item) = items.next().await {
        match item? {
            StreamItem::Delta(delta) => text.push_str(&delta),
            StreamItem::Done { finish_reason, usage } => return Ok((text, finish_reason, usage)),
        }
    }
    Err(ended_early())
}

fn ended_early() -> ApiError {
    ApiError::Internal { message: "the backend's completion stream ended before its finish".to_owned() }
}

/// Which OpenAI object family a completion answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

/// What every chunk of one answer repeats.
#[derive(Debug)]
struct Meta {
    id: String,
    model: String,
    created: u64,
    kind: Kind,
    include_usage: bool,
}

/// Where an [`SseChunks`] stands.
#[derive(Debug, Clone, Copy)]
enum SseState {
    /// Nothing sent; a chat answer opens with the role chunk.
    Start,
    /// Passing text through.
    Streaming,
    /// The finish chunk is sent; the usage chunk is next.
    Usage(Usage),
    /// `[DONE]` is next.
    Done,
    /// Nothing more.
    End,
}

/// The server-sent events of one streaming answer:
///
/// ```text
/// [role chunk, chat only] → content chunk per delta → finish chunk
///   → [usage chunk, if stream_options.include_usage] → data: [DONE]
/// ```
///
/// A backend error becomes a last `data: {"error": ...}` event and no `[DONE]`.
struct SseChunks {
    items: BoxStream<'static, Result<StreamItem, ApiError>>,
    meta: Meta,
    state: SseState,
}

impl Stream for SseChunks {
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let event = match this.state {
                SseState::Start => {
                    this.state = SseState::Streaming;
                    match this.meta.kind {
                        Kind::Chat => {
                            this.meta.chunk(Delta { role: Some("assistant"), content: Some("") }, None)
                        }
                        Kind::Text => continue,
                    }
                }
                SseState::Streaming => match this.items.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(StreamItem::Delta(text)))) if text.is_empty() => continue,
                    Poll::Ready(Some(Ok(StreamItem::Delta(text)))) => {
                        this.meta.chunk(Delta { role: None, content: Some(&text) }, None)
                    }
                    Poll::Ready(Some(Ok(StreamItem::Done { finish_reason, usage }))) => {
                        this.state =
                            if this.meta.include_usage { SseState::Usage(usage) } else { SseState::Done };
                        this.meta.chunk(Delta::default(), Some(finish_reason))
                    }
                    Poll::Ready(Some(Err(error))) => {
                        this.state = SseState::End;
                        error_event(&error)
                    }
                    Poll::Ready(None) => {
                        this.state = SseState::End;
                        error_event(&ended_early())
                    }
                },
                SseState::Usage(usage) => {
                    this.state = SseState::Done;
                    this.meta.usage_chunk(usage)
                }
                SseState::Done => {
                    this.state = SseState::End;
                    Event::default().data("[DONE]")
                }
                SseState::End => return Poll::Ready(None),
            };
            return Poll::Ready(Some(Ok(event)));
        }
    }
}

impl Meta {
    /// One chunk with one choice; for a text completion the delta's content is the text.
    fn chunk(&self, delta: Delta<'_>, finish_reason: Option<FinishReason>) -> Event {
        match self.kind {
            Kind::Chat => json_event(&ChatCompletionChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[ChunkChoice { index: 0, delta, logprobs: None, finish_reason }],
                usage: None,
            }),
            Kind::Text => json_event(&CompletionResponse {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: [TextChoice {
                    text: delta.content.unwrap_or(""),
                    index: 0,
                    logprobs: None,
                    finish_reason,
                }],
                usage: None,
            }),
        }
    }

    /// The chunk with no choices and the usage, sent when `include_usage` was asked for.
    fn usage_chunk(&self, usage: Usage) -> Event {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        json_event(&ChatCompletionChunk {
            id: &self.id,
            object,
            created: self.created,
            model: &self.model,
            choices: &[],
            usage: Some(usage.into()),
        })
    }
}

fn json_event<T: serde::Serialize>(value: &T) -> Event {
    match serde_json::to_string(value) {
        Ok(json) => Event::default().data(json),
        Err(e) => error_event(&ApiError::Internal { message: format!("cannot encode a stream chunk: {e}") }),
    }
}

fn error_event(error: &ApiError) -> Event {
    tracing::debug!(%error, "completion stream ended with an error");
    Event::default().data(error.to_json().to_string())
}

/// `GET /v1/status`.
pub(super) async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.backend.status().await.map(Json)
}

/// `GET /v1/chain/height`.
pub(super) async fn chain_height(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.backend.query(ChainQuery::Height).await.map(Json)
}

/// `GET /v1/chain/epoch`.
pub(super) async fn chain_epoch(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.backend.query(ChainQuery::Epoch).await.map(Json)
}

/// Query string of `GET /v1/chain/hosts`.
#[derive(Debug, Deserialize)]
pub(super) struct HostsPage {
    offset: Option<u32>,
    limit: Option<u32>,
}

/// `GET /v1/chain/hosts?offset=&limit=`.
pub(super) async fn chain_hosts(
    State(state): State<AppState>,
    page: Result<Query<HostsPage>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(page) = page.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let limit = page.limit.unwrap_or(DEFAULT_HOSTS_PAGE);
    if !(1..=MAX_HOSTS_PAGE).contains(&limit) {
        return Err(ApiError::bad_param("limit", format!("expected 1 to {MAX_HOSTS_PAGE}, found {limit}")));
    }
    let query = ChainQuery::Hosts { offset: page.offset.unwrap_or(0), limit };
    state.backend.query(query).await.map(Json)
}

/// `GET /v1/chain/tasks/{id}`.
pub(super) async fn chain_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = check_task_id(&id)?;
    state.backend.query(ChainQuery::Task(id)).await.map(Json)
}

/// A task id must be non-empty, even-length hex of at most [`MAX_TASK_ID_HEX`] digits.
fn check_task_id(id: &str) -> Result<String, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_TASK_ID_HEX
        && id.len().is_multiple_of(2)
        && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(ApiError::bad_param(
            "id",
            format!(
                "expected a task id of 2 to {MAX_TASK_ID_HEX} hex digits (even count), found `{}`",
                truncate(id, MAX_ECHOED_BYTES)
            ),
        ));
    }
    Ok(id.to_ascii_lowercase())
}

/// Any path without a route: 404.
pub(super) async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        message: format!("no route for {method} {}", truncate(uri.path(), MAX_ECHOED_BYTES)),
    }
}

/// A known path with the wrong method: 405.
pub(super) async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: truncate(uri.path(), MAX_ECHOED_BYTES).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_shapes() {
        assert_eq!(parse_bearer(b"Bearer sk-1").map(|k| k.as_str().to_owned()), Ok("sk-1".to_owned()));
        assert_eq!(parse_bearer(b"bearer  sk-1 ").map(|k| k.as_str().to_owned()), Ok("sk-1".to_owned()));
        assert!(matches!(parse_bearer(b"Basic abc"), Err(ApiError::MalformedApiKey { .. })));
        assert!(matches!(parse_bearer(b"Bearer"), Err(ApiError::MalformedApiKey { .. })));
        assert!(matches!(parse_bearer(b"Bearer a b"), Err(ApiError::MalformedApiKey { .. })));
        assert!(matches!(parse_bearer(b"Bearer \xff"), Err(ApiError::MalformedApiKey { .. })));
        let long = format!("Bearer {}", "k".repeat(MAX_API_KEY_BYTES + 1));
        assert!(matches!(parse_bearer(long.as_bytes()), Err(ApiError::MalformedApiKey { .. })));
    }

    #[test]
    fn content_types() {
        assert!(check_json_content_type(Some(b"application/json")).is_ok());
        assert!(check_json_content_type(Some(b"Application/JSON; charset=utf-8")).is_ok());
        assert!(check_json_content_type(Some(b"application/vnd.api+json")).is_ok());
        assert!(check_json_content_type(Some(b"text/plain")).is_err());
        assert!(check_json_content_type(None).is_err());
    }

    #[test]
    fn task_ids() {
        assert_eq!(check_task_id("ABcd"), Ok("abcd".to_owned()));
        assert!(check_task_id("").is_err());
        assert!(check_task_id("abc").is_err());
        assert!(check_task_id("zz").is_err());
        assert!(check_task_id(&"a".repeat(MAX_TASK_ID_HEX + 2)).is_err());
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
