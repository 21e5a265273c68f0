//! Back-pressure: a peer that does not read, and an engine that does not
//! drain its events. Senders get `Backpressure`, nothing blocks, nothing grows.

use std::time::{Duration, Instant};

use gonka_net::peer::{KindLimit, NetError, NetEvent};

use crate::common::*;

/// Enough sends to fill any loopback socket buffers behind a small queue.
const MAX_SENDS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_gets_backpressure() {
    let mut ca = config();
    ca.queue_capacity = 4;
    let a = node(ca, 1).await;
    // The raw peer completes the handshake and then never reads.
    let (_raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    let body = noise(4, BLOCK_MAX as usize);
    let mut slowest = Duration::ZERO;
    let mut queued = 0;
    let outcome = loop {
        let started = Instant::now();
        let result = a.net.send(&raw_id, KIND_BLOCK, body.clone());
        slowest = slowest.max(started.elapsed());
        match result {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
        assert!(queued < MAX_SENDS, "the queue never filled: memory would grow");
        // Give the writer a moment to move frames into the socket.
        if queued.is_multiple_of(16) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    assert!(matches!(outcome, NetError::Backpressure { capacity: 4, .. }), "got {outcome}");
    assert!(slowest < Duration::from_millis(100), "send never blocks; slowest took {slowest:?}");
    println!("{queued} frames of 64 KiB queued before back-pressure");
    // The connection stays up: back-pressure is not a violation.
    assert!(a.net.is_connected(&raw_id));
}

/// Two nodes with `kinds` and small queues, b dialing a, both past `Connected`.
async fn small_queue_pair(kinds: Vec<KindLimit>) -> (Node, Node) {
    let mut ca = config();
    (ca.queue_capacity, ca.kinds) = (4, kinds.clone());
    let a = node(ca, 1).await;
    let mut cb = config();
    (cb.queue_capacity, cb.kinds, cb.dial) = (4, kinds, vec![a.addr()]);
    let b = node(cb, 2).await;
    connected(&a, &b.id).await;
    connected(&b, &a.id).await;
    (a, b)
}

/// b sends `n` messages of `kind` to a in a task that waits for queue room.
fn spawn_sender(a: &Node, b: &Node, kind: u8, body: Vec<u8>, n: usize) -> tokio::task::JoinHandle<()> {
    let (net, to) = (b.net.clone(), a.id.clone());
    tokio::spawn(async move {
        for _ in 0..n {
            net.send_async(&to, kind, body.clone()).await.expect("peer stays connected");
        }
    })
}

/// Receives `n` messages of `kind` from b, then checks that b was neither
/// banned nor disconnected.
async fn drain_all(a: &Node, b: &Node, kind: u8, len: usize, n: usize) {
    for i in 0..n {
        assert_eq!(message(a, &b.id, kind).await.len(), len, "message {i} arrives whole");
    }
    let late = drain(a);
    assert!(
        !late.iter().any(|e| matches!(e, NetEvent::Banned { .. } | NetEvent::Disconnected { .. })),
        "the sender must stay connected: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_engine_pushes_back_to_the_sender() {
    let (a, b) = small_queue_pair(kinds()).await;
    // 2 000 frames of 64 KiB (131 MB) cannot all sit in socket buffers: while
    // a's engine does not drain its events, b's sender must get stuck.
    let n = 2000;
    let sender = spawn_sender(&a, &b, KIND_BLOCK, noise(5, BLOCK_MAX as usize), n);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!sender.is_finished(), "back-pressure reached the sending task");
    assert!(
        matches!(b.net.send(&a.id, KIND_BLOCK, vec![1]), Err(NetError::Backpressure { .. })),
        "and a non-waiting send is refused"
    );
    drain_all(&a, &b, KIND_BLOCK, BLOCK_MAX as usize, n).await;
    sender.await.expect("sender finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_piled_up_during_a_stall_are_not_a_flood() {
    // Regression guard: frames a paced sender sent while our engine stalled
    // arrive at once afterwards; without crediting the stall to the rate
    // limit, that burst would get an honest sender banned.
    let (a, b) = small_queue_pair(vec![KindLimit::new(KIND_TX, "tx", TX_MAX, 200, 60)]).await;
    let n = 240;
    let sender = spawn_sender(&a, &b, KIND_TX, noise(6, TX_MAX as usize), n);
    // About 200 frames pile up in a second at 200/s, against a burst of 60.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drain_all(&a, &b, KIND_TX, TX_MAX as usize, n).await;
    sender.await.expect("sender finished");
}
