//! Honest nodes: connecting, messaging, broadcast, redial, simultaneous dials,
//! disconnects, shutdown, and pacing under the rate limit.

use std::sync::Arc;
use std::time::Duration;

use gonka_net::peer::{KindLimit, NetError, NetEvent};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_messages_both_ways() {
    let (a, b) = pair().await;
    assert_eq!(a.net.peers().len(), 1, "a sees one peer");
    assert_eq!(a.net.peers()[0].peer, b.id);
    assert!(a.net.peers()[0].inbound, "b dialed a");
    assert!(!b.net.peers()[0].inbound);

    let tx = noise(1, TX_MAX as usize);
    let block = noise(2, BLOCK_MAX as usize);
    a.net.send(&b.id, KIND_TX, tx.clone()).expect("queued");
    b.net.send(&a.id, KIND_BLOCK, block.clone()).expect("queued");
    b.net.send(&a.id, KIND_TX, Vec::new()).expect("an empty body is a message too");
    assert_eq!(message(&b, &a.id, KIND_TX).await, tx, "a's tx arrives intact");
    assert_eq!(message(&a, &b.id, KIND_BLOCK).await, block, "b's block arrives intact");
    assert_eq!(message(&a, &b.id, KIND_TX).await, Vec::<u8>::new());

    // Many in a row keep their order.
    for i in 0u32..500 {
        a.net.send_async(&b.id, KIND_TX, i.to_le_bytes().to_vec()).await.expect("queued");
    }
    for i in 0u32..500 {
        assert_eq!(message(&b, &a.id, KIND_TX).await, i.to_le_bytes(), "message {i} in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_checks_kind_size_and_peer() {
    let (a, b) = pair().await;
    assert!(matches!(a.net.send(&b.id, 9, vec![]), Err(NetError::UnknownKind { kind: 9 })));
    assert!(matches!(
        a.net.send(&b.id, KIND_TX, vec![0; TX_MAX as usize + 1]),
        Err(NetError::TooLarge { kind: KIND_TX, .. })
    ));
    let stranger = ToyIdentity::new(99).id();
    assert!(matches!(a.net.send(&stranger, KIND_TX, vec![]), Err(NetError::NotConnected { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fully_connected_and_broadcast() {
    let a = node(config(), 1).await;
    let mut cb = config();
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    let mut cc = config();
    cc.dial = vec![a.addr(), b.addr()];
    let c = node(cc, 3).await;
    for (n, others) in [(&a, [&b.id, &c.id]), (&b, [&a.id, &c.id]), (&c, [&a.id, &b.id])] {
        connected_all(n, &others).await;
        assert_eq!(n.net.peers().len(), 2, "every node has the two others");
    }

    let body: Arc<[u8]> = noise(3, 300).into();
    assert_eq!(a.net.broadcast(KIND_TX, body.clone(), None).expect("valid kind"), 2);
    assert_eq!(&message(&b, &a.id, KIND_TX).await[..], &body[..]);
    assert_eq!(&message(&c, &a.id, KIND_TX).await[..], &body[..]);

    // `except` skips the peer a gossip came from.
    assert_eq!(c.net.broadcast(KIND_BLOCK, body.clone(), Some(&a.id)).expect("valid kind"), 1);
    assert_eq!(&message(&b, &c.id, KIND_BLOCK).await[..], &body[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialer_redials_until_listener_appears() {
    // Reserve a port, free it, and point a dialer at it before anyone listens.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    let addr = probe.local_addr().expect("probe address");
    drop(probe);
    let mut cb = config();
    cb.dial = vec![addr];
    let b = node(cb, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.net.peers().is_empty(), "nobody listens yet");

    let mut ca = config();
    ca.listen = addr;
    let a = node(ca, 1).await;
    connected(&b, &a.id).await;
    connected(&a, &b.id).await;

    // And again after the listener restarts.
    a.net.shutdown();
    a.net.closed().await;
    drop(a);
    wait_for(&b, "Disconnected after the listener stopped", |e| {
        matches!(e, NetEvent::Disconnected { .. }).then_some(())
    })
    .await;
    let mut ca = config();
    ca.listen = addr;
    let a = node(ca, 1).await;
    connected(&b, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_dial_connects_once_and_is_not_redialed() {
    let a = node(config(), 1).await;
    let b = node(config(), 2).await;
    assert!(b.net.peers().is_empty());
    // From a thread outside the runtime, as the engine's core calls it.
    let (net, addr) = (b.net.clone(), a.addr());
    let started =
        std::thread::spawn(move || (net.dial(addr), net.dial(addr))).join().expect("dialing thread");
    assert!(matches!(started, (Ok(true), Ok(false))), "one dial, the second call a no-op: {started:?}");
    connected(&b, &a.id).await;
    connected(&a, &b.id).await;
    b.net.send(&a.id, KIND_TX, b"over the dialed link".to_vec()).expect("queued");
    assert_eq!(message(&a, &b.id, KIND_TX).await, b"over the dialed link");
    assert!(matches!(b.net.dial(b.addr()), Ok(false)), "never dials itself");

    // Closed from the far side: not redialed, and a new call dials again.
    assert!(a.net.disconnect(&b.id, "test"));
    wait_for(&b, "Disconnected", |e| matches!(e, NetEvent::Disconnected { .. }).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.net.peers().is_empty(), "a one-shot dial does not redial");
    let mut again = Ok(false);
    for _ in 0..50 {
        again = b.net.dial(a.addr());
        if matches!(again, Ok(true)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(again, Ok(true)), "the ended dial made room for a new one: {again:?}");
    connected(&b, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_settle_on_one_connection() {
    let probe_a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let probe_b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (addr_a, addr_b) = (probe_a.local_addr().expect("addr"), probe_b.local_addr().expect("addr"));
    drop((probe_a, probe_b));
    let (mut ca, mut cb) = (config(), config());
    (ca.listen, ca.dial) = (addr_a, vec![addr_b]);
    (cb.listen, cb.dial) = (addr_b, vec![addr_a]);
    let (a, b) = tokio::join!(node(ca, 1), node(cb, 2));
    connected(&a, &b.id).await;
    connected(&b, &a.id).await;
    // Let any duplicate handshake finish and be resolved.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.net.peers().len(), 1, "one connection per pair on a");
    assert_eq!(b.net.peers().len(), 1, "one connection per pair on b");
    assert_ne!(a.net.peers()[0].inbound, b.net.peers()[0].inbound, "both keep the same connection");
    a.net.send(&b.id, KIND_TX, b"hi".to_vec()).expect("queued");
    assert_eq!(message(&b, &a.id, KIND_TX).await, b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_ourselves_is_refused() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let mut c = config();
    (c.listen, c.dial) = (addr, vec![addr]);
    let a = node(c, 1).await;
    let reason = refused(&a).await;
    assert!(reason.contains("ourselves"), "reason names the self-connection: {reason}");
    assert!(a.net.peers().is_empty());
    // The dialer gives up on its own address instead of redialing it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = drain(&a).iter().filter(|e| matches!(e, NetEvent::Refused { .. })).count();
    assert!(again <= 1, "no redials of ourselves, but {again} more refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_and_engine_ban_tell_the_peer() {
    let (a, b) = pair().await;
    assert!(a.net.disconnect(&b.id, "maintenance"));
    let reason = wait_for(&b, "Disconnected", |e| match e {
        NetEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("maintenance"), "b hears a's reason: {reason}");
    // b redials.
    connected(&b, &a.id).await;

    a.net.ban(&b.id, "invalid block");
    let reason = wait_for(&b, "Disconnected after a ban", |e| match e {
        NetEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("banned: invalid block"), "b hears why: {reason}");
    assert!(a.net.is_banned(&b.id));
    // b's redials are refused while the ban lasts.
    let reason = refused(&b).await;
    assert!(reason.contains("banned"), "redial refused for the ban: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_tasks_and_tells_peers() {
    let (a, b) = pair().await;
    a.net.shutdown();
    tokio::time::timeout(WAIT, a.net.closed()).await.expect("every task ends");
    assert!(matches!(a.net.send(&b.id, KIND_TX, vec![]), Err(NetError::Shutdown)));
    let reason = wait_for(&b, "Disconnected", |e| match e {
        NetEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("shutting down"), "b hears why: {reason}");
    assert!(tokio::net::TcpStream::connect(a.addr()).await.is_err(), "the listener is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_paces_itself_under_the_rate_limit() {
    // 30 frames at 50/s with a burst of 10: a sender that did not pace itself
    // would be banned by the receiver.
    let slow = vec![KindLimit::new(KIND_TX, "tx", TX_MAX, 50, 10)];
    let mut ca = config();
    ca.kinds = slow.clone();
    let a = node(ca, 1).await;
    let mut cb = config();
    cb.kinds = slow;
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    connected(&a, &b.id).await;
    connected(&b, &a.id).await;
    for i in 0u8..30 {
        b.net.send_async(&a.id, KIND_TX, vec![i]).await.expect("queued");
    }
    for i in 0u8..30 {
        assert_eq!(message(&a, &b.id, KIND_TX).await, vec![i]);
    }
    assert!(!drain(&a).iter().any(|e| matches!(e, NetEvent::Banned { .. })), "no ban for a paced sender");
    assert_eq!(a.net.peers().len(), 1);
}
