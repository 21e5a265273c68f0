//! HTTP API benches: requests per second through the OpenAI-compatible router
//! of `gonka-net::api`, over a backend that answers at once, so the figures
//! show the router, JSON and HTTP, not a model.
//!
//! `cargo bench -p gonka-benches --bench api` (add `-- --quick` for a look).
//!
//! - `api::in_process/{models,chat}/clients=…`: requests handed to the router
//!   with `tower::ServiceExt::oneshot` by several concurrent tasks, each
//!   answer's body read to the end: routing, the in-flight limit, extraction,
//!   validation and serialisation, without sockets or HTTP parsing.
//! - `api::loopback/{models,chat}/clients=…`: the same requests over HTTP/1.1
//!   to [`gonka_net::api::serve`] on `127.0.0.1`, each client on its own
//!   keep-alive connection sending one request at a time (no pipelining).
//!   The client is a minimal one written here, so that its own cost stays
//!   small next to the server's; it runs on the same cores as the server.
//!
//! `models` is `GET /v1/models` (one model); `chat` is a non-streaming
//! `POST /v1/chat/completions` with a bearer key, answered with a four-token
//! completion. Throughput is requests/s over all clients.
//!
//! The router, the server, the connections and the runtime (2 worker
//! threads) are set up outside the measured closures; the default
//! [`ApiLimits`] apply.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::{self, BoxFuture};
use futures_util::stream::{self, StreamExt};
use gonka_net::api::{
    ApiBackend, ApiError, ApiKey, ApiLimits, ChainQuery, CompletionJob, CompletionStream, FinishReason,
    ModelCard, StreamItem, Usage, router, serve,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// Concurrent clients: enough to keep both worker threads busy while some
/// requests wait on the socket.
const CLIENTS: u64 = 8;
/// The one model the backend serves.
const MODEL: &str = "bench-1";
/// The `Authorization` header of the chat requests; the backend accepts any key.
const BEARER: &str = "Bearer sk-bench";
/// The generated text, one token per word.
const REPLY: [&str; 4] = ["one ", "two ", "three ", "four "];
/// Response id of every completion: a 32-byte task id in hex, as the engine gives.
const TASK_ID: &str = "00000000000000000000000000000000000000000000000000000000000000a5";
/// Read buffer headroom of a loopback client: a whole answer of either route.
const READ_CHUNK_BYTES: usize = 4 << 10;

/// A backend with nothing behind it: every completion is accepted and
/// answered with [`REPLY`] at once, and no account is charged. Bench use only.
#[derive(Debug)]
struct FixedBackend {
    models: Vec<ModelCard>,
}

impl FixedBackend {
    fn new() -> Self {
        let card = ModelCard { id: MODEL.to_owned(), created: 1_700_000_000, owned_by: "bench".to_owned() };
        FixedBackend { models: vec![card] }
    }
}

impl ApiBackend for FixedBackend {
    fn models(&self) -> Vec<ModelCard> {
        self.models.clone()
    }

    fn complete(
        &self,
        _key: ApiKey,
        _job: CompletionJob,
    ) -> BoxFuture<'static, Result<CompletionStream, ApiError>> {
        let usage = Usage { prompt_tokens: 4, completion_tokens: REPLY.len() as u32 };
        let done = StreamItem::Done { finish_reason: FinishReason::Stop, usage };
        let deltas = REPLY.iter().map(|word| StreamItem::Delta((*word).to_owned()));
        let items = stream::iter(deltas.chain([done]).map(Ok)).boxed();
        Box::pin(future::ready(Ok(CompletionStream { id: TASK_ID.to_owned(), items })))
    }

    fn status(&self) -> BoxFuture<'static, Result<Value, ApiError>> {
        Box::pin(future::ready(Ok(json!({ "backend": "bench" }))))
    }

    fn query(&self, _query: ChainQuery) -> BoxFuture<'static, Result<Value, ApiError>> {
        Box::pin(future::ready(Ok(json!({ "height": 0 }))))
    }
}

/// One route under test: its request, built per call in process and as raw
/// HTTP/1.1 bytes for the wire.
#[derive(Debug)]
struct Call {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// JSON body of a POST, empty for a GET.
    body: Bytes,
}

impl Call {
    fn models() -> Self {
        Call { name: "models", method: Method::GET, path: "/v1/models", body: Bytes::new() }
    }

    fn chat() -> Self {
        let body = json!({
            "model": MODEL,
            "messages": [{ "role": "user", "content": "one two three four" }],
            "max_tokens": 8,
        });
        Call {
            name: "chat",
            method: Method::POST,
            path: "/v1/chat/completions",
            body: Bytes::from(body.to_string()),
        }
    }

    fn request(&self) -> Request<Body> {
        let builder = Request::builder().method(self.method.clone()).uri(self.path);
        let builder = if self.method == Method::POST {
            builder.header(header::AUTHORIZATION, BEARER).header(header::CONTENT_TYPE, "application/json")
        } else {
            builder
        };
        builder.body(Body::from(self.body.clone())).expect("valid request")
    }

    fn wire(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\n", self.method, self.path);
        if self.method == Method::POST {
            head.push_str(&format!(
                "Authorization: {BEARER}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                self.body.len()
            ));
        }
        head.push_str("\r\n");
        [head.as_bytes(), &self.body].concat()
    }
}

/// `n` requests split as evenly as possible over [`CLIENTS`].
fn shares(n: u64) -> impl Iterator<Item = u64> {
    (0..CLIENTS).map(move |i| n / CLIENTS + u64::from(i < n % CLIENTS))
}

/// Sends `n` requests through the router from [`CLIENTS`] concurrent tasks.
async fn through_router(router: &Router, call: &Arc<Call>, n: u64) {
    let tasks: Vec<_> = shares(n)
        .map(|count| {
            let (router, call) = (router.clone(), call.clone());
            tokio::spawn(async move {
                for _ in 0..count {
                    let response =
                        router.clone().oneshot(call.request()).await.expect("router is infallible");
                    assert_eq!(response.status(), StatusCode::OK, "{} answered", call.name);
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                    black_box(body.expect("body reads"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
}

/// A keep-alive HTTP/1.1 client that sends one fixed request and reads
/// answers with `Content-Length` (all the router's non-streaming answers).
struct Connection {
    stream: TcpStream,
    request: Arc<[u8]>,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr, request: Arc<[u8]>) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the loopback server");
        stream.set_nodelay(true).expect("nodelay");
        Connection { stream, request, buf: Vec::with_capacity(READ_CHUNK_BYTES) }
    }

    /// Sends the request and reads the whole answer, which must be 200 OK.
    async fn round_trip(&mut self) {
        self.stream.write_all(&self.request).await.expect("write request");
        let (head_len, body_len) = loop {
            if let Some(sizes) = response_sizes(&self.buf) {
                break sizes;
            }
            self.fill().await;
        };
        while self.buf.len() < head_len + body_len {
            self.fill().await;
        }
        black_box(&self.buf[head_len..head_len + body_len]);
        self.buf.drain(..head_len + body_len);
    }

    async fn fill(&mut self) {
        self.buf.reserve(READ_CHUNK_BYTES);
        let read = self.stream.read_buf(&mut self.buf).await.expect("read answer");
        assert!(read > 0, "the server closed a keep-alive connection");
    }
}

/// The head and body lengths of the answer at the start of `buf`, once its
/// head has arrived. Panics unless it is a 200 with a `Content-Length`.
fn response_sizes(buf: &[u8]) -> Option<(usize, usize)> {
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_len]).expect("answer head is ASCII");
    assert!(head.starts_with("HTTP/1.1 200 "), "expected 200 OK, got:\n{head}");
    let body_len = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim())
        })
        .expect("answer has a Content-Length")
        .parse()
        .expect("Content-Length is a number");
    Some((head_len, body_len))
}

/// Sends `n` requests over the open connections, each from its own task.
async fn over_loopback(connections: &mut Vec<Connection>, n: u64) {
    let tasks: Vec<_> = connections
        .drain(..)
        .zip(shares(n))
        .map(|(mut connection, count)| {
            tokio::spawn(async move {
                for _ in 0..count {
                    connection.round_trip().await;
                }
                connection
            })
        })
        .collect();
    for task in tasks {
        connections.push(task.await.expect("client task"));
    }
}

fn calls() -> [Arc<Call>; 2] {
    [Arc::new(Call::models()), Arc::new(Call::chat())]
}

fn in_process(c: &mut Criterion) {
    let rt = runtime();
    let router = router(Arc::new(FixedBackend::new()), ApiLimits::default());
    let mut g = c.benchmark_group("api::in_process");
    g.throughput(Throughput::Elements(1));
    for call in calls() {
        g.bench_function(BenchmarkId::new(call.name, format!("clients={CLIENTS}")), |bench| {
            bench.iter_custom(|n| timed(&rt, through_router(&router, &call, n)));
        });
    }
    g.finish();
}

fn loopback(c: &mut Criterion) {
    let rt = runtime();
    let app = router(Arc::new(FixedBackend::new()), ApiLimits::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, server) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(serve(listener, app, async move {
            let _ = stopped.await;
        }));
        (addr, server)
    });

    let mut g = c.benchmark_group("api::loopback");
    g.throughput(Throughput::Elements(1));
    for call in calls() {
        // Fresh connections per route, so none sits idle through another
        // route's run and meets a server timeout.
        let request: Arc<[u8]> = call.wire(addr).into();
        let mut connections =
            rt.block_on(future::join_all((0..CLIENTS).map(|_| Connection::open(addr, request.clone()))));
        g.bench_function(BenchmarkId::new(call.name, format!("clients={CLIENTS}")), |bench| {
            bench.iter_custom(|n| timed(&rt, over_loopback(&mut connections, n)));
        });
    }
    g.finish();

    stop.send(()).expect("server still running");
    let stopped = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "server stops cleanly: {stopped:?}");
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn timed(rt: &Runtime, work: impl Future<Output = ()>) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        work.await;
        started.elapsed()
    })
}

criterion_group!(benches, in_process, loopback);
criterion_main!(benches);
