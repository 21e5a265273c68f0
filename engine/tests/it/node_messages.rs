//! Host-to-host messages: each kind decodes only as itself, stays within its
//! size cap, and the small kinds stay small.

use gonka_engine::chain::types::{SignedTransaction, Transaction};
use gonka_engine::consensus::{Vote, VoteKind};
use gonka_engine::crypto::HostKey;
use gonka_engine::inference::payload::InferencePayload;
use gonka_engine::node::addresses::{HostAddress, MAX_ADDRESSES};
use gonka_engine::node::messages::{NodeMessage, decode_message, kind, max_bytes};
use gonka_engine::sim::producer::Producer;

fn samples() -> Vec<(&'static str, NodeMessage)> {
    let key = HostKey::from_ikm(&[7; 32]);
    let tx = SignedTransaction::sign(&key, Transaction::Transfer { to: [1; 48], amount: 5, nonce: 0 });
    let vote = Vote::signed(&key, 0, 3, 0, VoteKind::Precommit, Some([2; 32]));
    // A real final block from a one-host chain.
    let genesis = crate::store::genesis();
    let chain = gonka_engine::chain::Chain::from_genesis(&genesis, Default::default()).expect("genesis");
    let mut producer = Producer::new(chain, &crate::store::ikms(), 64, 1);
    let (fb, _) = producer.next(vec![tx.clone()]).expect("a block");
    vec![
        ("tx", NodeMessage::Tx(Box::new(tx))),
        ("vote", NodeMessage::Vote(vote)),
        ("status", NodeMessage::Status { next_height: 12 }),
        ("get-blocks", NodeMessage::GetBlocks { from: 3, count: 32 }),
        ("blocks", NodeMessage::Blocks(vec![fb])),
        ("get-task-output", NodeMessage::GetTaskOutput { task: [4; 32] }),
        (
            "task-output",
            NodeMessage::TaskOutput {
                task: [4; 32],
                payload: payload(),
                output: vec![5, 6, 2],
                artifact: vec![0; 3 * 40],
            },
        ),
        ("prompt", NodeMessage::Prompt { task: [4; 32], payload: payload() }),
        ("partial", NodeMessage::Partial { task: [4; 32], offset: 3, tokens: vec![7, 8, 9] }),
        (
            "addresses",
            NodeMessage::Addresses(vec![
                HostAddress::sign(&key, "127.0.0.1:27600".parse().expect("address"), 1),
                HostAddress::sign(&key, "[2001:db8::1]:9000".parse().expect("address"), 2),
            ]),
        ),
    ]
}

fn payload() -> InferencePayload {
    InferencePayload {
        model: 0,
        prompt: vec![1, 9, 9, 2],
        max_output_tokens: 16,
        temperature: 0.7,
        top_p: 0.9,
        seed: 3,
    }
}

#[test]
fn out_of_bound_payloads_are_refused_by_the_decoder() {
    let bad = InferencePayload { temperature: 9.0, ..payload() };
    let msg = NodeMessage::Prompt { task: [1; 32], payload: bad };
    assert!(decode_message(kind::PROMPT, &msg.encode()).is_err(), "a temperature of 9 decoded");
    let msg = NodeMessage::TaskOutput {
        task: [1; 32],
        payload: payload(),
        output: vec![],
        artifact: vec![0; 1 << 22],
    };
    assert!(decode_message(kind::TASK_OUTPUT, &msg.encode()).is_err(), "4 MiB of artifact decoded");
    let record = HostAddress::sign(&HostKey::from_ikm(&[8; 32]), "127.0.0.1:1".parse().expect("address"), 1);
    let full = NodeMessage::Addresses(vec![record; MAX_ADDRESSES]);
    assert_eq!(decode_message(kind::ADDRESSES, &full.encode()).expect("a full message decodes"), full);
    let over = NodeMessage::Addresses(vec![record; MAX_ADDRESSES + 1]);
    assert!(decode_message(kind::ADDRESSES, &over.encode()).is_err(), "too many addresses decoded");
}

#[test]
fn each_kind_decodes_only_as_itself_within_its_cap() {
    for (name, msg) in samples() {
        let bytes = msg.encode();
        assert!(bytes.len() <= max_bytes(msg.kind()), "{name}: {} bytes over its cap", bytes.len());
        assert_eq!(decode_message(msg.kind(), &bytes).expect("decodes"), msg, "{name} round trip");
        let other = if msg.kind() == kind::TX { kind::VOTE } else { kind::TX };
        assert!(decode_message(other, &bytes).is_err(), "{name} must not decode as kind {other}");
        assert!(decode_message(msg.kind(), &bytes[..bytes.len() / 2]).is_err(), "{name}: truncated decodes");
    }
    // Regression: an unboxed transaction made every status message 438 bytes.
    let status = NodeMessage::Status { next_height: 1 }.encode();
    assert!(status.len() <= 256, "a status message takes {} bytes", status.len());
}

/// `cargo test -p gonka-engine --test it write_node_message_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes seed files under fuzz/; run by hand when a message format changes"]
fn write_node_message_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/node_message_decode");
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (name, msg) in samples() {
        let mut seed = vec![msg.kind()];
        seed.extend(msg.encode());
        std::fs::write(dir.join(name), seed).expect("the seed directory is writable");
    }
}
