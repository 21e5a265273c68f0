//! Frozen encodings of the economy's transactions and genesis, and the
//! writer of their fuzz seeds.

use gonka_engine::chain::genesis::GenesisAccount;
use gonka_engine::chain::types::{SignedTransaction, Transaction};
use gonka_engine::chain::{Genesis, GenesisHost};
use gonka_engine::params::ChainParams;
use gonka_engine::tasks::{DisputeVote, InferenceFinish, InferenceRequest, TaskCheck, task_id};

use super::net::{check, finish, host_key, report, request, transfer, user_key, vote};

#[test]
fn economy_wire_formats_are_frozen() {
    use gonka_engine::crypto::wire::encode;
    // Change these hashes only with a new wire version.
    let tx = |body| encode(&SignedTransaction { sender: [3; 48], body, signature: [4; 96] });
    let request = InferenceRequest { nonce: 2, model: 1, prompt: [6; 32], max_tokens: 300, max_cost: 12_345 };
    let finish = InferenceFinish { task: [7; 32], output: [8; 32], artifact: [9; 32], tokens: 77 };
    let genesis = Genesis {
        params: ChainParams::tiny(),
        seed: [1; 32],
        hosts: vec![GenesisHost {
            public_key: [1; 48],
            proof_of_possession: [2; 96],
            weight: 10,
            models: 0b10,
        }],
        accounts: vec![GenesisAccount { key: [5; 48], balance: 1_000 }],
        reserve: 77,
    };
    let cases: [(&str, Vec<u8>, &str); 8] = [
        (
            "transfer",
            tx(Transaction::Transfer { to: [5; 48], amount: (1 << 70) + 7, nonce: 9 }),
            "f9340a5ac697e4d03d45a69eff84610bfcdb52eaed48ebb9a3518c1db0c80c11",
        ),
        (
            "serve models",
            tx(Transaction::ServeModels { models: 0b101, nonce: 4 }),
            "44a9f15e6f36bcb24604d89cd8809f39749c8b1ce9412c892a7dd7bbe8c8c139",
        ),
        (
            "inference request",
            tx(Transaction::InferenceRequest(request)),
            "6d52e0c4612d88947048c347c2c2d2561eefb3588524b8ffb0e983febbfba92e",
        ),
        (
            "inference finish",
            tx(Transaction::InferenceFinish(finish)),
            "f790a700d5abbd11996a6f74d9a120fd541f135b084a9d8814abd82bc3fbca1c",
        ),
        (
            "task check",
            tx(Transaction::TaskCheck(TaskCheck { task: [7; 32], selection: [10; 96], pass: false })),
            "01704cc6b08fdb7b61dd8547da07171d1769a7b00ebe5cf422f6d591491c3f2a",
        ),
        (
            "dispute vote",
            tx(Transaction::DisputeVote(DisputeVote { task: [7; 32], fraud: true })),
            "551b2f10035b14b8a1147afb0c712e3f13b61f1aa19352242b8c93c44bcca6a9",
        ),
        (
            "report",
            tx(Transaction::Report { task: [7; 32], nonce: 3 }),
            "00a5215b1babbd9be9455e6c5b23d04ba97d780201f0c70bd20ecef22d40fc5e",
        ),
        (
            "genesis with accounts",
            encode(&genesis),
            "bf50543bd55e36623274ad8e265238c675b9829b6c1be531e61a531c250b3723",
        ),
    ];
    crate::assert_frozen(&cases);
}

/// Writes one signed transaction of each economy kind to
/// `fuzz/seeds/transaction_decode/`, the seeds of that fuzz target. Run it
/// by hand after a format change:
/// `cargo test -p gonka-engine --test it write_economy_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes seed files under fuzz/; run by hand when a transaction format changes"]
fn write_economy_fuzz_seeds() {
    use gonka_engine::crypto::wire::{decode, encode};
    let (host, user) = (host_key(0), user_key(0));
    let task = task_id(&user.public_key(), 0);
    let seeds = [
        ("transfer", transfer(&user, host.public_key(), 12_345, 3)),
        ("serve-models", SignedTransaction::sign(&host, Transaction::ServeModels { models: 0b11, nonce: 0 })),
        ("inference-request", request(&user, 0, 1, 256, 10_240)),
        ("inference-finish", finish(&host, task, 77)),
        ("task-check", check(&host, task, false)),
        ("dispute-vote", vote(&host, task, true)),
        ("report", report(&user, task, 1)),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/transaction_decode");
    for (name, tx) in seeds {
        let bytes = encode(&tx);
        let back = decode::<SignedTransaction>(&bytes).expect("a seed decodes");
        assert_eq!(back, tx, "{name} survives the round trip");
        std::fs::write(dir.join(name), bytes).expect("the seed directory is writable");
    }
}
