//! Peer-layer benches: messages per second through one authenticated loopback
//! connection of `gonka-net`, against the same frames over a bare tokio TCP
//! stream (the reference, measured in the same run).
//!
//! `cargo bench -p gonka-benches --bench net` (add `-- --quick` for a look).
//!
//! - `net::one_connection/peer/body=…`: node A queues messages to node B with
//!   `NetHandle::send_async` (one `Vec` per message, as the engine sends), and
//!   the bench drains B's `Message` events; the time runs until the last one
//!   arrives. Throughput is messages/s.
//! - `net::one_connection/raw_tcp/body=…`: the same frames written by one
//!   task through a `BufWriter` and read by another with `wire::read_frame`:
//!   TCP and framing alone, without queues, events, limits or handshake.
//!
//! Both nodes, the connection and the runtime (2 worker threads) are set up
//! once, outside the measured closures. The kind's rate limit is set out of
//! reach, so the figures show the machinery, not the pacing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gonka_net::peer::wire::{FrameLimits, read_frame, write_frame};
use gonka_net::peer::{EventReceiver, Identity, KindLimit, NetConfig, NetEvent, NetHandle, Network, PeerId};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// The bench's message kind.
const KIND: u8 = 1;
/// Body sizes: a vote-sized message and a large one.
const BODIES: [usize; 2] = [64, 64 << 10];

/// Test double of the engine's BLS identity: the "signature" is the key
/// followed by the message, which anyone can forge. Bench use only.
struct ToyIdentity(Vec<u8>);

impl Identity for ToyIdentity {
    fn public_key(&self) -> Vec<u8> {
        self.0.clone()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        [self.0.as_slice(), message].concat()
    }

    fn verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        signature == [public_key, message].concat().as_slice()
    }
}

fn kinds() -> Vec<KindLimit> {
    vec![KindLimit::new(KIND, "bench", 1 << 20, u32::MAX, u32::MAX)]
}

fn config() -> NetConfig {
    NetConfig::new([1; 32], 1, SocketAddr::from(([127, 0, 0, 1], 0)), kinds())
}

/// Two nodes, B dialing A, both past `Connected`. Returns A's handle, B's id
/// and B's events.
async fn connected_pair() -> (NetHandle, NetHandle, PeerId, EventReceiver) {
    let (b_net, b_events) =
        Network::start(config(), Arc::new(ToyIdentity(vec![2; 48]))).await.expect("node b starts");
    let mut ca = config();
    ca.dial = vec![b_net.local_addr()];
    let (a_net, a_events) =
        Network::start(ca, Arc::new(ToyIdentity(vec![1; 48]))).await.expect("node a starts");
    let b_id = b_net.local_id().clone();
    while !matches!(a_events.recv_async().await, Ok(NetEvent::Connected { .. })) {}
    while !matches!(b_events.recv_async().await, Ok(NetEvent::Connected { .. })) {}
    (a_net, b_net, b_id, b_events)
}

/// Sends `n` messages from A to B and waits for the last to arrive.
async fn through_peer(a: &NetHandle, b: &PeerId, events: &EventReceiver, body: &[u8], n: u64) {
    let sender = {
        let (a, b, body) = (a.clone(), b.clone(), body.to_vec());
        tokio::spawn(async move {
            for _ in 0..n {
                a.send_async(&b, KIND, body.clone()).await.expect("peer connected");
            }
        })
    };
    let mut received = 0;
    while received < n {
        match events.recv_async().await.expect("events open") {
            NetEvent::Message { body, .. } => {
                std::hint::black_box(body);
                received += 1;
            }
            other => panic!("unexpected event during the bench: {other:?}"),
        }
    }
    sender.await.expect("sender finished");
}

/// A bare loopback stream pair: (writer side, reader side).
async fn raw_pair() -> (BufWriter<TcpStream>, BufReader<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let dialed = dialed.expect("connect");
    let (accepted, _) = accepted.expect("accept");
    dialed.set_nodelay(true).expect("nodelay");
    (BufWriter::with_capacity(64 << 10, dialed), BufReader::with_capacity(64 << 10, accepted))
}

/// The same `n` frames over the bare stream: a spawned task writes, this
/// one reads, as the nodes' writer and reader tasks do.
async fn through_raw(
    writer: &mut Option<BufWriter<TcpStream>>,
    reader: &mut BufReader<TcpStream>,
    limits: &FrameLimits,
    body: &Arc<[u8]>,
    n: u64,
) {
    let (mut out, body) = (writer.take().expect("writer returned by the last run"), body.clone());
    let write = tokio::spawn(async move {
        for _ in 0..n {
            write_frame(&mut out, KIND, &body).await.expect("write");
        }
        out.flush().await.expect("flush");
        out
    });
    for _ in 0..n {
        std::hint::black_box(read_frame(reader, limits).await.expect("read"));
    }
    *writer = Some(write.await.expect("writer task"));
}

fn one_connection(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (a, _b, b_id, b_events) = rt.block_on(connected_pair());
    let (raw_writer, mut raw_reader) = rt.block_on(raw_pair());
    let mut raw_writer = Some(raw_writer);
    let limits = FrameLimits::established(&kinds());

    let mut g = c.benchmark_group("net::one_connection");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    for size in BODIES {
        let body: Arc<[u8]> = vec![0xa5u8; size].into();
        let label = if size >= 1024 { format!("body={}KiB", size >> 10) } else { format!("body={size}B") };
        g.bench_function(BenchmarkId::new("peer", &label), |bench| {
            bench.iter_custom(|n| timed(&rt, through_peer(&a, &b_id, &b_events, &body, n)));
        });
        g.bench_function(BenchmarkId::new("raw_tcp", &label), |bench| {
            bench.iter_custom(|n| {
                timed(&rt, through_raw(&mut raw_writer, &mut raw_reader, &limits, &body, n))
            });
        });
    }
    g.finish();
    a.shutdown();
    rt.block_on(a.closed());
}

fn timed(rt: &Runtime, work: impl Future<Output = ()>) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        work.await;
        started.elapsed()
    })
}

criterion_group!(benches, one_connection);
criterion_main!(benches);
