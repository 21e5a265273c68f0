//! Tests of the API router against test doubles: [`EchoBackend`] for the
//! happy paths and the backend's refusals, [`BrokenBackend`] for streams that
//! fail. Most go through `tower::ServiceExt::oneshot`; `loopback_*` tests use
//! a real socket and a minimal HTTP/1.1 client.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures_util::future::{self, BoxFuture};
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::*;

const RICH: &str = "sk-rich";
const POOR: &str = "sk-poor";

fn echo() -> Arc<EchoBackend> {
    Arc::new(EchoBackend::new(&["echo-1", "org/echo-2"], [(RICH, 1_000_000), (POOR, 2)]))
}

fn app_with(limits: ApiLimits) -> (Router, Arc<EchoBackend>) {
    let backend = echo();
    (router(backend.clone(), limits), backend)
}

fn app() -> (Router, Arc<EchoBackend>) {
    app_with(ApiLimits::default())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("valid request")
}

fn post(path: &str, key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    builder.body(body.into()).expect("valid request")
}

fn chat_body(content: &str, extra: Value) -> String {
    let mut body = json!({ "model": "echo-1", "messages": [{ "role": "user", "content": content }] });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body.to_string()
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = router.clone().oneshot(request).await.expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body reads");
    (parts.status, parts.headers, bytes)
}

async fn send_json(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, bytes) = send(router, request).await;
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// Asserts the OpenAI error shape, the status, the `type` and the `code`; returns the error object.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, kind: &str, code: Option<&str>) -> Value {
    assert_eq!(status, want, "status of {body}");
    let error = body.get("error").unwrap_or_else(|| panic!("no `error` object in {body}"));
    let message = error["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"));
    assert!(!message.is_empty(), "empty message in {body}");
    assert_eq!(error["type"], kind, "type of {body}");
    assert_eq!(error["code"].as_str(), code, "code of {body}");
    let keys: Vec<&String> = error.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys.len(), 4, "error must hold exactly message, type, param, code: {body}");
    assert!(error.get("param").is_some(), "param must be present (maybe null): {body}");
    error.clone()
}

/// The `data:` payloads of a server-sent event body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data).to_owned())
        .collect()
}

fn parse_chunks(data: &[String]) -> Vec<Value> {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk is not JSON ({e}): {d}")))
        .collect()
}

#[tokio::test]
async fn api_models_are_listed() {
    let (app, _) = app();
    let (status, body) = send_json(&app, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> =
        body["data"].as_array().expect("data array").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["echo-1", "org/echo-2"]);
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["owned_by"], "echo");

    let (status, body) = send_json(&app, get("/v1/models/org/echo-2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "org/echo-2");
    let (status, body) = send_json(&app, get("/v1/models/nope")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found_error", Some("model_not_found"));
}

#[tokio::test]
async fn api_chat_completion_returns_content_and_usage() {
    let (app, backend) = app();
    let body = json!({
        "model": "echo-1",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": [{ "type": "text", "text": "hello " }, { "type": "text", "text": "world" }] }
        ],
        "max_tokens": 10, "temperature": 0.5, "top_p": 0.9, "seed": 7, "stop": "\n", "user": "u1",
        "logit_bias": {}, "some_future_field": [1, 2]
    });
    let (status, body) = send_json(&app, post("/v1/chat/completions", Some(RICH), body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "echo-1");
    assert!(body["id"].as_str().is_some_and(|id| id.len() == 64), "{body}");
    assert!(body["created"].as_u64().is_some_and(|t| t > 1_600_000_000), "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello world ");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(body["usage"], json!({ "prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6 }));
    assert_eq!(backend.balance(RICH), Some(1_000_000 - 2), "the produced tokens are charged");
}

#[tokio::test]
async fn api_text_completion_returns_text_and_usage() {
    let (app, _) = app();
    for prompt in [json!("one two three"), json!(["one two three"])] {
        let body = json!({ "model": "echo-1", "prompt": prompt, "max_tokens": 2 }).to_string();
        let (status, body) = send_json(&app, post("/v1/completions", Some(RICH), body)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["object"], "text_completion");
        assert_eq!(body["choices"][0]["text"], "one two ");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["total_tokens"], 5);
    }
}

#[tokio::test]
async fn api_chat_stream_sends_chunks_then_done() {
    let (app, _) = app();
    let request = post("/v1/chat/completions", Some(RICH), chat_body("a b c", json!({ "stream": true })));
    let (status, headers, bytes) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let data = sse_data(std::str::from_utf8(&bytes).expect("utf-8 body"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks = parse_chunks(&data);
    assert_eq!(chunks.len(), 1 + 3 + 1, "role, three words, finish: {chunks:?}");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({ "role": "assistant", "content": "" }));
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<String>();
    assert_eq!(text, "a b c ");
    let last = &chunks[4]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "stop");
    assert!(chunks[..4].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage unless asked for");
}

#[tokio::test]
async fn api_stream_usage_chunk_when_asked() {
    let (app, _) = app();
    let body = chat_body("x y", json!({ "stream": true, "stream_options": { "include_usage": true } }));
    let (_, _, bytes) = send(&app, post("/v1/chat/completions", Some(RICH), body)).await;
    let data = sse_data(std::str::from_utf8(&bytes).expect("utf-8 body"));
    let chunks = parse_chunks(&data);
    let usage = chunks.last().expect("chunks");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], json!({ "prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4 }));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));

    let body = json!({ "model": "echo-1", "prompt": "p q", "stream": true }).to_string();
    let (_, _, bytes) = send(&app, post("/v1/completions", Some(RICH), body)).await;
    let data = sse_data(std::str::from_utf8(&bytes).expect("utf-8 body"));
    let chunks = parse_chunks(&data);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"), "{chunks:?}");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, "p q ");
    assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "stop");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn api_bad_requests_are_400_with_the_reason() {
    let (app, _) = app();
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("{\"model\": ".to_owned(), None, "invalid JSON"),
        ("[1, 2]".to_owned(), None, "invalid request body"),
        (json!({ "messages": [] }).to_string(), Some("model"), "missing field `model`"),
        (json!({ "model": "echo-1" }).to_string(), Some("messages"), "missing field `messages`"),
        (json!({ "model": "echo-1", "messages": [] }).to_string(), Some("messages"), "at least one"),
        (chat_body("hi", json!({ "max_tokens": 0 })), Some("max_tokens"), "between 1 and"),
        (chat_body("hi", json!({ "max_completion_tokens": 100_000 })), Some("max_completion_tokens"), "8192"),
        (chat_body("hi", json!({ "max_tokens": -1 })), None, "invalid value"),
        (chat_body("hi", json!({ "temperature": 3.0 })), Some("temperature"), "0 to 2"),
        (chat_body("hi", json!({ "top_p": -0.1 })), Some("top_p"), "0 to 1"),
        (chat_body("hi", json!({ "n": 2 })), Some("n"), "n = 1"),
        (chat_body("hi", json!({ "stop": ["a", "b", "c", "d", "e"] })), Some("stop"), "at most 4"),
        (chat_body("hi", json!({ "stop": 5 })), Some("stop"), "found a number"),
        (chat_body("hi", json!({ "stream": "yes" })), None, "invalid type"),
        (
            json!({ "model": "echo-1", "messages": [{ "role": "robot", "content": "x" }] }).to_string(),
            Some("messages[0].role"),
            "found `robot`",
        ),
        (
            json!({ "model": "echo-1", "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] })
                .to_string(),
            Some("messages[0].content[0]"),
            "only text parts",
        ),
    ];
    for (body, param, needle) in cases {
        let (status, reply) = send_json(&app, post("/v1/chat/completions", Some(RICH), body.clone())).await;
        let error = assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_request_error", None);
        assert_eq!(error["param"].as_str(), param, "param for {body}: {reply}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "message for {body} should contain {needle:?}: {message}");
    }

    let prompt_cases = [
        (json!({ "model": "echo-1" }), "missing field `prompt`"),
        (json!({ "model": "echo-1", "prompt": ["a", "b"] }), "array of 2"),
        (json!({ "model": "echo-1", "prompt": [1, 2, 3] }), "token ids"),
        (json!({ "model": "echo-1", "prompt": {} }), "an object"),
    ];
    for (body, needle) in prompt_cases {
        let (status, reply) = send_json(&app, post("/v1/completions", Some(RICH), body.to_string())).await;
        let error = assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_request_error", None);
        assert!(error["message"].as_str().unwrap_or_default().contains(needle), "{needle:?} in {reply}");
    }
}

#[tokio::test]
async fn api_wrong_content_type_is_400() {
    let (app, _) = app();
    let request = Request::post("/v1/chat/completions")
        .header(header::AUTHORIZATION, format!("Bearer {RICH}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(chat_body("hi", json!({}))))
        .expect("valid request");
    let (status, body) = send_json(&app, request).await;
    let error = assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request_error", None);
    assert!(error["message"].as_str().unwrap_or_default().contains("application/json"), "{body}");
}

#[tokio::test]
async fn api_keys_are_checked() {
    let (app, _) = app();
    let body = chat_body("hi", json!({}));
    let (status, reply) = send_json(&app, post("/v1/chat/completions", None, body.clone())).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "authentication_error", Some("missing_api_key"));

    let (status, reply) =
        send_json(&app, post("/v1/chat/completions", Some("sk-unknown"), body.clone())).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "authentication_error", Some("invalid_api_key"));

    let request = Request::post("/v1/completions")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid request");
    let (status, reply) = send_json(&app, request).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "authentication_error", Some("invalid_api_key"));

    // The key is checked before the body is even read.
    let (status, reply) = send_json(&app, post("/v1/chat/completions", None, "not json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
}

#[tokio::test]
async fn api_unknown_model_is_404() {
    let (app, backend) = app();
    let body = json!({ "model": "gpt-9", "messages": [{ "role": "user", "content": "hi" }] }).to_string();
    let (status, reply) = send_json(&app, post("/v1/chat/completions", Some(RICH), body)).await;
    let error =
        assert_error(status, &reply, StatusCode::NOT_FOUND, "not_found_error", Some("model_not_found"));
    assert_eq!(error["param"], "model");
    assert!(error["message"].as_str().unwrap_or_default().contains("gpt-9"));
    assert_eq!(backend.balance(RICH), Some(1_000_000), "nothing charged");
}

#[tokio::test]
async fn api_insufficient_balance_is_402() {
    let (app, backend) = app();
    let body = chat_body("hi", json!({ "max_tokens": 3 }));
    let (status, reply) = send_json(&app, post("/v1/chat/completions", Some(POOR), body)).await;
    assert_error(
        status,
        &reply,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_quota",
        Some("insufficient_balance"),
    );
    assert_eq!(backend.balance(POOR), Some(2));
    let body = chat_body("hi", json!({ "max_tokens": 2 }));
    let (status, _) = send_json(&app, post("/v1/chat/completions", Some(POOR), body)).await;
    assert_eq!(status, StatusCode::OK, "a request the balance covers passes");
}

#[tokio::test]
async fn api_oversized_body_is_413() {
    let limits = ApiLimits { max_body_bytes: 1024, ..ApiLimits::default() };
    let (app, _) = app_with(limits);
    let body = chat_body(&"word ".repeat(400), json!({}));
    assert!(body.len() > 1024);
    let (status, reply) = send_json(&app, post("/v1/chat/completions", Some(RICH), body)).await;
    let error = assert_error(
        status,
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        Some("request_too_large"),
    );
    assert!(error["message"].as_str().unwrap_or_default().contains("1024"), "{reply}");

    // A body without a declared length is cut off at the limit as well.
    let chunks = stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 800]))));
    let request = post("/v1/completions", Some(RICH), Body::from_stream(chunks));
    let (status, reply) = send_json(&app, request).await;
    assert_error(
        status,
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        Some("request_too_large"),
    );
}

#[tokio::test]
async fn api_unknown_route_is_404_and_wrong_method_405() {
    let (app, _) = app();
    let (status, reply) = send_json(&app, get("/v1/embeddings")).await;
    let error = assert_error(status, &reply, StatusCode::NOT_FOUND, "not_found_error", None);
    assert!(error["message"].as_str().unwrap_or_default().contains("/v1/embeddings"));
    let (status, reply) = send_json(&app, get("/v1/chat/completions")).await;
    assert_error(
        status,
        &reply,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        Some("method_not_allowed"),
    );
}

#[tokio::test]
async fn api_status_and_chain_queries() {
    let (app, _) = app();
    let (status, body) = send_json(&app, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "echo");
    assert_eq!(send_json(&app, get("/v1/chain/height")).await.1, json!({ "height": 42 }));
    assert_eq!(send_json(&app, get("/v1/chain/epoch")).await.1["epoch"], 3);

    let (status, body) = send_json(&app, get("/v1/chain/hosts?offset=1&limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hosts"], json!([{ "host": "host-1", "weight": 20 }]));
    assert_eq!(send_json(&app, get("/v1/chain/hosts")).await.1["hosts"].as_array().map(Vec::len), Some(3));
    let (status, body) = send_json(&app, get("/v1/chain/hosts?limit=100000")).await;
    let error = assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request_error", None);
    assert_eq!(error["param"], "limit");
    let (status, body) = send_json(&app, get("/v1/chain/hosts?offset=-3")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request_error", None);

    // A completion's id is its task id.
    let (_, done) =
        send_json(&app, post("/v1/chat/completions", Some(RICH), chat_body("hi", json!({})))).await;
    let id = done["id"].as_str().expect("id");
    let (status, task) = send_json(&app, get(&format!("/v1/chain/tasks/{}", id.to_uppercase()))).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task, json!({ "id": id, "state": "finished" }));
    let (status, body) = send_json(&app, get(&format!("/v1/chain/tasks/{}", "f".repeat(64)))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found_error", None);
    let (status, body) = send_json(&app, get("/v1/chain/tasks/xyz")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request_error", None);
}

#[tokio::test]
async fn api_in_flight_limit_is_429() {
    let limits = ApiLimits { max_in_flight: 1, ..ApiLimits::default() };
    let (app, _) = app_with(limits);
    // Plain answers free their slot as soon as they are built.
    for _ in 0..3 {
        assert_eq!(send(&app, get("/v1/models")).await.0, StatusCode::OK);
    }
    // An open stream holds its slot until its body is dropped.
    let stream_request =
        post("/v1/chat/completions", Some(RICH), chat_body("a b", json!({ "stream": true })));
    let open = app.clone().oneshot(stream_request).await.expect("infallible");
    assert_eq!(open.status(), StatusCode::OK);
    let (status, reply) = send_json(&app, get("/v1/models")).await;
    assert_error(status, &reply, StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("server_busy"));
    let body = axum::body::to_bytes(open.into_body(), usize::MAX).await.expect("stream reads");
    assert!(sse_data(std::str::from_utf8(&body).expect("utf-8")).last().is_some_and(|d| d == "[DONE]"));
    assert_eq!(send(&app, get("/v1/models")).await.0, StatusCode::OK, "the slot is free again");
}

/// A test double whose completions fail: streams that error or stop midway,
/// and refusals the router must pass through with their own status.
#[derive(Debug)]
enum BrokenBackend {
    ErrorMidStream,
    EndsWithoutDone,
    Refuses(ApiError),
}

impl ApiBackend for BrokenBackend {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard { id: "m".to_owned(), created: 0, owned_by: "test".to_owned() }]
    }

    fn complete(
        &self,
        _: ApiKey,
        _: CompletionJob,
    ) -> BoxFuture<'static, Result<CompletionStream, ApiError>> {
        let items: Vec<Result<StreamItem, ApiError>> = match self {
            BrokenBackend::ErrorMidStream => vec![
                Ok(StreamItem::Delta("partial".to_owned())),
                Err(ApiError::Unavailable { message: "the host went away".to_owned() }),
            ],
            BrokenBackend::EndsWithoutDone => vec![Ok(StreamItem::Delta("partial".to_owned()))],
            BrokenBackend::Refuses(error) => return Box::pin(future::ready(Err(error.clone()))),
        };
        Box::pin(future::ready(Ok(CompletionStream {
            id: "t".to_owned(),
            items: stream::iter(items).boxed(),
        })))
    }

    fn status(&self) -> BoxFuture<'static, Result<Value, ApiError>> {
        Box::pin(future::ready(Err(ApiError::Unavailable { message: "syncing".to_owned() })))
    }

    fn query(&self, _: ChainQuery) -> BoxFuture<'static, Result<Value, ApiError>> {
        Box::pin(future::ready(Err(ApiError::Internal { message: "boom".to_owned() })))
    }
}

fn broken(backend: BrokenBackend) -> Router {
    router(Arc::new(backend), ApiLimits::default())
}

#[tokio::test]
async fn api_backend_failures_keep_the_error_shape() {
    let chat = |stream: bool| {
        let body =
            json!({ "model": "m", "messages": [{ "role": "user", "content": "x" }], "stream": stream });
        post("/v1/chat/completions", Some(RICH), body.to_string())
    };
    let app = broken(BrokenBackend::ErrorMidStream);
    let (status, reply) = send_json(&app, chat(false)).await;
    assert_error(
        status,
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        Some("backend_unavailable"),
    );
    let (status, _, bytes) = send(&app, chat(true)).await;
    assert_eq!(status, StatusCode::OK, "the stream had started");
    let data = sse_data(std::str::from_utf8(&bytes).expect("utf-8"));
    assert!(!data.iter().any(|d| d == "[DONE]"), "no [DONE] after an error: {data:?}");
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "backend_unavailable", "{last}");

    let app = broken(BrokenBackend::EndsWithoutDone);
    let (status, reply) = send_json(&app, chat(false)).await;
    assert_error(status, &reply, StatusCode::INTERNAL_SERVER_ERROR, "server_error", None);
    let (_, _, bytes) = send(&app, chat(true)).await;
    let data = sse_data(std::str::from_utf8(&bytes).expect("utf-8"));
    assert!(data.last().is_some_and(|d| d.contains("\"server_error\"")), "{data:?}");

    let busy = ApiError::Busy { message: "queue full".to_owned() };
    let (status, reply) = send_json(&broken(BrokenBackend::Refuses(busy)), chat(false)).await;
    assert_error(status, &reply, StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("server_busy"));

    let (status, reply) = send_json(&app, get("/v1/status")).await;
    assert_error(
        status,
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        Some("backend_unavailable"),
    );
    let (status, reply) = send_json(&app, get("/v1/chain/height")).await;
    assert_error(status, &reply, StatusCode::INTERNAL_SERVER_ERROR, "server_error", None);
}

/// Starts [`serve`] on a loopback port; returns its address, a shutdown trigger and the server task.
async fn start_server(
    app: Router,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns
/// the status code, the raw header block and the body, de-chunked.
async fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).await.expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status code");
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (code, head, if chunked { dechunk(&body) } else { body })
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).expect("hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[tokio::test]
async fn api_loopback_streams_sse_and_shuts_down() {
    let (app, _) = app();
    let (addr, stop, server) = start_server(app).await;

    let body = chat_body("over a real socket", json!({ "stream": true }));
    let (code, head, body) = raw_request(addr, "POST", "/v1/chat/completions", RICH, &body).await;
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    let data = sse_data(std::str::from_utf8(&body).expect("utf-8"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text: String =
        parse_chunks(&data).iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "over a real socket ");

    let (code, _, body) = raw_request(addr, "POST", "/v1/chat/completions", RICH, "{oops").await;
    assert_eq!(code, 400);
    let reply: Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(reply["error"]["type"], "invalid_request_error");

    stop.send(()).expect("server still running");
    let result = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "serve returns Ok after shutdown: {result:?}");
}

#[tokio::test]
async fn api_loopback_declared_oversize_is_413() {
    let limits = ApiLimits { max_body_bytes: 4096, ..ApiLimits::default() };
    let (app, _) = app_with(limits);
    let (addr, stop, server) = start_server(app).await;
    let body = chat_body(&"z".repeat(8000), json!({}));
    let (code, _, body) = raw_request(addr, "POST", "/v1/chat/completions", RICH, &body).await;
    assert_eq!(code, 413);
    let reply: Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(reply["error"]["code"], "request_too_large");
    stop.send(()).expect("server still running");
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
