//! Back-pressure: a peer that does not read, and an engine that does not
//! drain its events. Senders get `Backpressure`, nothing blocks, nothing grows.

use std::time::{Duration, Instant};

use gonka_net::peer::{NetError, NetEvent};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_engine_pushes_back_to_the_sender() {
    let mut ca = config();
    ca.queue_capacity = 4;
    let a = node(ca, 1).await;
    let mut cb = config();
    cb.queue_capacity = 4;
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    connected(&a, &b.id).await;
    connected(&b, &a.id).await;
    // a's engine stops draining events; b keeps sending until it is pushed back.
    let body = noise(5, BLOCK_MAX as usize);
    let mut sent = 0usize;
    loop {
        match b.net.send(&a.id, KIND_BLOCK, body.clone()) {
            Ok(()) => sent += 1,
            Err(NetError::Backpressure { .. }) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(sent < MAX_SENDS, "back-pressure never reached the sender");
        if sent.is_multiple_of(16) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!("{sent} frames sent before the sender was pushed back");
    // The engine catches up: every frame arrives and nobody is banned for
    // the burst that the stall released.
    for _ in 0..sent {
        assert_eq!(message(&a, &b.id, KIND_BLOCK).await.len(), body.len());
    }
    let late = drain(&a);
    assert!(
        !late.iter().any(|e| matches!(e, NetEvent::Banned { .. } | NetEvent::Disconnected { .. })),
        "{late:?}"
    );
}
