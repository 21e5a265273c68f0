//! Misbehaving peers: garbage before and after the handshake, oversized and
//! unknown frames, floods. Each gets banned, its reconnection is refused, and
//! the node keeps serving its honest peer.

use std::time::Duration;

use gonka_net::peer::wire::{FRAME_HEADER_BYTES, KIND_HELLO};
use gonka_net::peer::{KindLimit, NetEvent};

use crate::common::*;

/// Seed of the garbage bytes (printed, so a failure can be replayed).
const SEED: u64 = 0;

/// The honest pair still exchanges messages.
async fn still_serving(a: &Node, b: &Node) {
    a.net.send(&b.id, KIND_TX, b"still here".to_vec()).expect("queued to the honest peer");
    assert_eq!(message(b, &a.id, KIND_TX).await, b"still here");
    b.net.send(&a.id, KIND_TX, b"me too".to_vec()).expect("queued");
    assert_eq!(message(a, &b.id, KIND_TX).await, b"me too");
}

/// A reconnection from the banned address is refused with the ban as reason.
async fn reconnection_refused(a: &Node, seed: u64) {
    let identity = ToyIdentity::new(seed);
    match raw_handshake(a.addr(), &identity, CHAIN).await {
        Ok(_) => panic!("a banned address must not complete a handshake"),
        Err(reason) => assert!(reason.contains("banned"), "refusal names the ban: {reason}"),
    }
}

fn header(len: u32, kind: u8) -> [u8; FRAME_HEADER_BYTES] {
    let mut h = [0u8; FRAME_HEADER_BYTES];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4] = kind;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_before_the_handshake_get_banned() {
    println!("garbage seed {SEED}");
    let (a, b) = pair().await;
    let mut raw = RawPeer { stream: tokio::net::TcpStream::connect(a.addr()).await.expect("connect") };
    raw.write(&noise(SEED, 64)).await;
    let (peer, reason) = banned(&a).await;
    assert_eq!(peer, None, "no key was proven");
    assert!(reason.starts_with("handshake:"), "the violation is named: {reason}");
    let told = raw.reject_reason().await.expect("the node says why it closes");
    assert!(told.contains("banned for"), "the peer is told of the ban: {told}");
    reconnection_refused(&a, 50).await;
    still_serving(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_after_the_handshake_gets_banned() {
    let (a, b) = pair().await;
    let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    // Declares one byte more than a tx may carry, and sends no body at all:
    // the header alone is enough to decide.
    raw.write(&header(TX_MAX + 2, KIND_TX)).await;
    let (peer, reason) = banned(&a).await;
    assert_eq!(peer.as_ref(), Some(&raw_id));
    assert!(reason.contains("limit"), "the violation is named: {reason}");
    let told = raw.reject_reason().await.expect("the node says why it closes");
    assert!(told.starts_with("banned:"), "the peer is told: {told}");
    wait_for(&a, "Disconnected of the banned peer", |e| match e {
        NetEvent::Disconnected { peer, .. } if peer == raw_id => Some(()),
        _ => None,
    })
    .await;
    assert!(a.net.is_banned(&raw_id));
    reconnection_refused(&a, 50).await;
    still_serving(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_beyond_the_global_cap_gets_banned() {
    let (a, b) = pair().await;
    let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    raw.write(&header(u32::MAX, KIND_BLOCK)).await;
    let (peer, reason) = banned(&a).await;
    assert_eq!(peer, Some(raw_id));
    assert!(reason.contains("exceeds the limit"), "the violation is named: {reason}");
    still_serving(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_reserved_kinds_get_banned() {
    for (i, kind) in [0x7e, KIND_HELLO].into_iter().enumerate() {
        let (a, b) = pair().await;
        let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
        connected(&a, &raw_id).await;
        raw.frame(kind, &[1, 2, 3]).await;
        let (peer, reason) = banned(&a).await;
        assert_eq!(peer, Some(raw_id), "case {i}");
        assert!(reason.contains("unexpected message kind"), "case {i}: {reason}");
        still_serving(&a, &b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_handshake_gets_banned() {
    println!("garbage seed {SEED}");
    let (a, _b) = pair().await;
    let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    raw.write(&noise(SEED + 1, 4096)).await;
    let (peer, _) = banned(&a).await;
    assert_eq!(peer, Some(raw_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_kind_gets_banned() {
    let limited = vec![KindLimit::new(KIND_TX, "tx", TX_MAX, 10, 5)];
    let mut ca = config();
    ca.kinds = limited;
    let a = node(ca, 1).await;
    let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    // 100 frames at once: far beyond a burst of 5 plus 10 per second.
    let mut flood = Vec::new();
    for i in 0u8..100 {
        flood.extend_from_slice(&header(2, KIND_TX));
        flood.push(i);
    }
    raw.write(&flood).await;
    let (peer, reason) = banned(&a).await;
    assert_eq!(peer, Some(raw_id.clone()));
    assert!(reason.contains("rate limit of 10/s, burst 5"), "the limit is named: {reason}");
    let delivered = drain(&a).iter().filter(|e| matches!(e, NetEvent::Message { .. })).count();
    assert!(delivered <= 6, "at most the burst (and a refill) got through, not {delivered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_expire() {
    let mut ca = config();
    ca.ban_duration = Duration::from_millis(300);
    let a = node(ca, 1).await;
    let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    raw.frame(0x7e, &[]).await;
    banned(&a).await;
    reconnection_refused(&a, 50).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_raw, _) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ip_bans_only_the_key_is_refused() {
    // Local networks run every host on 127.0.0.1: one bad host must not shut
    // out the others.
    let mut ca = config();
    ca.ban_ips = false;
    let a = node(ca, 1).await;
    let (mut raw, raw_id) = raw_peer(a.addr(), 50).await;
    connected(&a, &raw_id).await;
    raw.frame(0x7e, &[]).await;
    banned(&a).await;
    reconnection_refused(&a, 50).await;
    let (_other, other_id) = raw_peer(a.addr(), 51).await;
    connected(&a, &other_id).await;
}
