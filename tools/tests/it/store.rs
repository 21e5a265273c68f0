//! `gonka sim --db`, then `gonka inspect` and `gonka verify --db --epoch` on
//! the store it left: the re-verified Sprint agrees with the chain, and a
//! tampered epoch record is caught.

use std::process::{Command, Output};

use gonka_engine::store::tables::{EPOCHS, TASKS};
use gonka_engine::store::{ChainStore, StoreConfig};
use gonka_storage::keys;

fn gonka(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gonka")).args(args).output().expect("gonka runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_simulated_hosts_store_inspects_and_reverifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("chain");
    let db_s = db.to_str().expect("utf-8 path");
    // 6 hosts, one of them fabricating proofs: epoch 1 has a rejected batch.
    let out = gonka(&[
        "sim",
        "--hosts",
        "6",
        "--adversarial",
        "20",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--requests",
        "40",
        "--no-partition",
        "--db",
        db_s,
    ]);
    assert!(out.status.success(), "sim: {}{}", text(&out.stdout), text(&out.stderr));

    let out = gonka(&["inspect", "--db", db_s]);
    let summary = text(&out.stdout);
    assert!(out.status.success(), "inspect: {}", text(&out.stderr));
    assert!(summary.contains("blocks 0..=79") && summary.contains("hosts 6"), "{summary}");

    let out = gonka(&["inspect", "--db", db_s, "--epoch", "1"]);
    let epoch = text(&out.stdout);
    assert!(out.status.success() && epoch.contains("Rejected") && epoch.contains("Accepted"), "{epoch}");

    let out = gonka(&["verify", "--db", db_s, "--epoch", "1"]);
    let audit = text(&out.stdout);
    assert!(out.status.success(), "verify --db: {audit}{}", text(&out.stderr));
    assert!(audit.contains("0 verdicts and 0 of 6 weights disagree"), "{audit}");

    // A task by id, decoded from the store.
    let task = {
        let store = ChainStore::open_read_only(&db).expect("store opens");
        let txn = store.read().expect("read");
        let (id, _) = TASKS.first(&txn).expect("read").expect("the users' tasks are stored");
        hex::encode(id)
    };
    let out = gonka(&["inspect", "--db", db_s, "--task", &task]);
    assert!(out.status.success() && text(&out.stdout).contains(&task), "{}", text(&out.stderr));

    // Give host 0 one more unit of weight in the record: the audit must object.
    {
        let store = ChainStore::open(&db, StoreConfig::default()).expect("store opens");
        let txn = store.read().expect("read");
        let mut record = EPOCHS.get_owned(&txn, &keys::u64(1)).expect("read").expect("epoch 1 closed");
        drop(txn);
        record.weights[0].2 += 1;
        store.store().write(|txn| EPOCHS.put(txn, &keys::u64(1), &record)).expect("tampered");
    }
    let out = gonka(&["verify", "--db", db_s, "--epoch", "1"]);
    assert_eq!(out.status.code(), Some(1), "a tampered weight must fail: {}", text(&out.stdout));
    assert!(text(&out.stdout).contains("1 of 6 weights disagree"), "{}", text(&out.stdout));

    let out = gonka(&["verify", "--db", db_s, "--epoch", "7"]);
    assert_eq!(out.status.code(), Some(2), "an epoch not in the store is an error");
    assert!(text(&out.stderr).contains("epoch 7 has not closed"), "{}", text(&out.stderr));
}
