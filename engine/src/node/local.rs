//! The host's own records, beside the chain store: what only this host knows
//! and must keep across a restart. Not chain state (nothing here is
//! replicated, hashed into a root or agreed on), so it lives in its own LMDB
//! store under the data directory (`<data_dir>/local`), with its own schema.
//!
//! Today it holds this host's completions of the tasks it executed: the
//! chain has only their hashes, and checkers and the asking host fetch the
//! tokens and records from the executor until the task settles. A restarted
//! executor must still answer them, or its honest work fails its checks.

use std::path::Path;

use gonka_kernels::encoding::Hash32;
use gonka_kernels::llm::artifact::Artifact;
use gonka_storage::{Store, StoreError, StoreOptions, Table, TableDef, keys};
use rkyv::{Archive, Deserialize, Serialize};

use super::inference::TaskResult;
use crate::inference::payload::InferencePayload;

/// Schema name of the local store.
pub const LOCAL_SCHEMA: &str = "gonka-local";
/// Version of the encoding of its tables.
pub const LOCAL_FORMAT_VERSION: u32 = 1;
/// Completions kept: beyond this the oldest go. Far more than a task's
/// check window needs at any realistic rate.
pub const MAX_STORED_COMPLETIONS: u64 = 100_000;

/// A completion as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredCompletion {
    /// Its place in [`COMPLETION_ORDER`].
    pub seq: u64,
    /// The request.
    pub payload: InferencePayload,
    /// Output tokens.
    pub output: Vec<u32>,
    /// The executor's records, encoded ([`Artifact::encode`]).
    pub artifact: Vec<u8>,
}

/// This host's completions by task id.
pub const COMPLETIONS: Table<StoredCompletion> = Table::new(&TableDef {
    name: "completions",
    doc: "This host's completions of the tasks it executed, by task id.",
    key: "task id (32 bytes)",
    value: "StoredCompletion",
});

/// The same completions in the order they were stored, for pruning.
pub const COMPLETION_ORDER: Table<Hash32> = Table::new(&TableDef {
    name: "completion_order",
    doc: "Task ids of the stored completions, oldest first.",
    key: "sequence u64 BE",
    value: "Hash32",
});

const TABLES: &[TableDef] = &[*COMPLETIONS.def(), *COMPLETION_ORDER.def()];

/// The local store.
#[derive(Debug)]
pub struct LocalStore {
    store: Store,
    max_completions: u64,
}

impl LocalStore {
    /// Opens (creating if needed) the local store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let store = Store::open(path, StoreOptions::new(LOCAL_SCHEMA, LOCAL_FORMAT_VERSION, TABLES))?;
        Ok(Self { store, max_completions: MAX_STORED_COMPLETIONS })
    }

    /// The same store keeping at most `max` completions (tests).
    pub fn with_max_completions(self, max: u64) -> Self {
        Self { max_completions: max.max(1), ..self }
    }

    /// Stores this host's completion of `task` (once; a second call keeps
    /// the first) and forgets the oldest beyond the bound, in one transaction.
    pub fn put_completion(&self, task: &Hash32, result: &TaskResult) -> Result<(), StoreError> {
        let artifact = result.artifact.encode();
        self.store.write(|txn| {
            if COMPLETIONS.get_bytes(txn, task)?.is_some() {
                return Ok(());
            }
            let seq = COMPLETION_ORDER.last(txn)?.and_then(|(k, _)| keys::read_u64(k)).map_or(0, |s| s + 1);
            let stored = StoredCompletion {
                seq,
                payload: result.payload.clone(),
                output: result.output.clone(),
                artifact: artifact.clone(),
            };
            COMPLETIONS.put(txn, task, &stored)?;
            COMPLETION_ORDER.put(txn, &keys::u64(seq), task)?;
            let count = COMPLETION_ORDER.len(txn)?;
            if count > self.max_completions {
                let drop: Vec<(Vec<u8>, Hash32)> = COMPLETION_ORDER
                    .iter(txn)?
                    .take((count - self.max_completions) as usize)
                    .map(|e| e.map(|(k, v)| (k.to_vec(), *v)))
                    .collect::<Result<_, _>>()?;
                for (k, old) in drop {
                    COMPLETION_ORDER.delete(txn, &k)?;
                    COMPLETIONS.delete(txn, &old)?;
                }
            }
            Ok(())
        })
    }

    /// This host's stored completion of `task`. A stored value that does not
    /// decode is an error naming the table and key.
    pub fn completion(&self, task: &Hash32) -> Result<Option<TaskResult>, StoreError> {
        let txn = self.store.read()?;
        let Some(stored) = COMPLETIONS.get_owned(&txn, task)? else { return Ok(None) };
        let artifact = Artifact::decode(&stored.artifact).ok_or_else(|| {
            StoreError::aborted(format!(
                "table completions, task {}: the stored records do not decode",
                hex::encode(task)
            ))
        })?;
        Ok(Some(TaskResult { payload: stored.payload, output: stored.output, artifact }))
    }

    /// How many completions are stored.
    pub fn completions(&self) -> Result<u64, StoreError> {
        COMPLETIONS.len(&self.store.read()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::agent::tasks::TaskRunner;
    use crate::inference::{ServedModel, Server, ServerConfig};
    use crate::node::inference::ModelRunner;
    use crate::tasks::{Task, TaskStatus};

    fn payload(n: u32) -> InferencePayload {
        InferencePayload {
            model: 0,
            prompt: vec![1, 2, 3 + n],
            max_output_tokens: 6,
            temperature: 0.0,
            top_p: 1.0,
            seed: 9,
        }
    }

    fn task(n: u32) -> Task {
        Task {
            id: [n as u8; 32],
            payer: [0; 48],
            model: 0,
            prompt: payload(n).commitment(),
            max_tokens: 64,
            max_cost: 1_000,
            escrow: 1_000,
            requested: 1,
            intermediary: 1,
            executor: 0,
            status: TaskStatus::Requested,
            checks: Vec::new(),
        }
    }

    fn runner(dir: &Path) -> ModelRunner {
        let served = Arc::new(ServedModel::tiny(0, "tiny").expect("tiny model"));
        let server = Arc::new(Server::start(served, ServerConfig::default()));
        ModelRunner::new(server).with_local_store(LocalStore::open(dir).expect("local store"))
    }

    /// Runs `task` to its end on `r`.
    fn run(r: &ModelRunner, t: &Task) -> crate::agent::tasks::TaskOutput {
        assert!(r.deliver_prompt(t, payload(t.id[0] as u32)), "the prompt matches its commitment");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(out) = r.run(t, None) {
                return out;
            }
            assert!(Instant::now() < until, "the tiny model did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_restarted_executor_still_has_its_completions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = task(1);
        let (out, result) = {
            let r = runner(dir.path());
            let out = run(&r, &t);
            (out, r.completion(&t.id).expect("kept"))
        };
        // A new runner on the same store: nothing in memory, no prompt.
        let r = runner(dir.path());
        let again = r.completion(&t.id).expect("the completion survived the restart");
        assert_eq!(*again, *result, "tokens and records as computed");
        assert_eq!(r.run(&t, None), Some(out), "the finish is answered from the store, not rerun");
        assert!(r.completion(&task(2).id).is_none());
    }

    #[test]
    fn partial_outputs_add_up_to_the_completion() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = runner(dir.path());
        let t = task(3);
        assert!(r.deliver_prompt(&t, payload(3)));
        let mut streamed = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        let take = |streamed: &mut Vec<u32>| {
            for (id, offset, tokens) in r.take_partials() {
                assert_eq!(id, t.id);
                assert_eq!(offset as usize, streamed.len(), "chunks in order, none lost");
                streamed.extend(tokens);
            }
        };
        while r.run(&t, None).is_none() {
            take(&mut streamed);
            assert!(Instant::now() < until, "the tiny model did not finish");
            std::thread::sleep(Duration::from_millis(1));
        }
        take(&mut streamed);
        assert_eq!(streamed, r.completion(&t.id).expect("done").output);
        assert!(r.take_partials().is_empty(), "nothing more once handed out");
    }

    #[test]
    fn the_store_keeps_the_newest_completions_up_to_its_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = runner(dir.path());
        let results: Vec<_> = (1..=4)
            .map(|n| {
                let t = task(n);
                run(&r, &t);
                (t.id, r.completion(&t.id).expect("kept"))
            })
            .collect();
        drop(r);
        let store = LocalStore::open(dir.path()).expect("reopen").with_max_completions(2);
        assert_eq!(store.completions().expect("count"), 4);
        // Storing one again changes nothing; a new one leaves the newest two.
        store.put_completion(&results[3].0, &results[3].1).expect("put");
        assert_eq!(store.completions().expect("count"), 4);
        let fifth = TaskResult { payload: payload(5), ..(*results[0].1).clone() };
        store.put_completion(&[5; 32], &fifth).expect("put");
        assert_eq!(store.completions().expect("count"), 2);
        assert!(store.completion(&results[0].0).expect("read").is_none(), "the oldest went");
        assert!(store.completion(&results[2].0).expect("read").is_none(), "and the next");
        assert_eq!(store.completion(&results[3].0).expect("read").as_ref(), Some(&*results[3].1));
        assert_eq!(store.completion(&[5; 32]).expect("read"), Some(fifth));
    }

    #[test]
    fn another_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(Store::open(dir.path(), StoreOptions::new("gonka-chain", 1, &[])).expect("a chain-like store"));
        let e = LocalStore::open(dir.path()).expect_err("a chain store is not a local store");
        assert!(e.to_string().contains("gonka-chain"), "{e}");
    }
}
