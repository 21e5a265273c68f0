//! Handshakes that must fail: another chain, another version, a bad
//! signature, a full node. The reason is visible, and nobody connects.

use gonka_net::peer::NetEvent;

use crate::common::*;

fn no_connected(node: &Node) {
    let events = drain(node);
    assert!(
        !events.iter().any(|e| matches!(e, NetEvent::Connected { .. })),
        "a refused handshake must not connect: {events:?}"
    );
    assert!(node.net.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_id_mismatch_is_refused_on_both_sides() {
    let a = node(config(), 1).await;
    let mut cb = config();
    cb.chain_id = [8; 32];
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    let on_a = refused(&a).await;
    let on_b = refused(&b).await;
    assert!(on_a.contains("chain id mismatch"), "a says why: {on_a}");
    assert!(on_b.contains("chain id mismatch"), "b says why: {on_b}");
    no_connected(&a);
    no_connected(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mismatch_is_refused_on_both_sides() {
    let a = node(config(), 1).await;
    let mut cb = config();
    cb.protocol_version = VERSION + 1;
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    let on_a = refused(&a).await;
    let on_b = refused(&b).await;
    assert!(on_a.contains("protocol version mismatch: expected 1, found 2"), "a says why: {on_a}");
    assert!(on_b.contains("protocol version mismatch: expected 2, found 1"), "b says why: {on_b}");
    no_connected(&a);
    no_connected(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_refused_and_banned() {
    let a = node(config(), 1).await;
    let mut cb = config();
    cb.dial = vec![a.addr()];
    let b = node_with(cb, ToyIdentity::forger(2)).await;
    let (peer, reason) = banned(&a).await;
    assert_eq!(peer, None, "an unproven key is not banned, only the address");
    assert!(reason.contains("bad handshake signature"), "a says why: {reason}");
    let on_b = refused(&b).await;
    assert!(on_b.contains("refused by peer: bad handshake signature"), "b hears why: {on_b}");
    no_connected(&a);
    no_connected(&b);
    assert!(!a.net.is_banned(&b.id), "the claimed key is not banned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_more_peers() {
    let mut ca = config();
    ca.max_peers = 1;
    let a = node(ca, 1).await;
    let mut cb = config();
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    connected(&a, &b.id).await;
    let mut cc = config();
    cc.dial = vec![a.addr()];
    let c = node(cc, 3).await;
    let on_c = refused(&c).await;
    assert!(on_c.contains("too many peers"), "c hears why: {on_c}");
    assert_eq!(a.net.peers().len(), 1);
}
