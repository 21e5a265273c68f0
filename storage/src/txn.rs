//! Transactions: [`ReadTxn`] snapshots, [`Store::write`]'s all-or-nothing
//! commit with map growth on `MDB_MAP_FULL`, and poisoning on any other
//! failure.
//!
//! Growing the map (`mdb_env_set_mapsize`) is only sound while no
//! transaction of the environment is open in this process. Writers are
//! excluded by `Store::writer`, held across a whole write and its resizes.
//! Readers are counted by a [`ReaderGate`]: a resize waits until the count is
//! zero and holds the gate so none begins meanwhile. The gate prefers
//! readers (a reader never waits for a *pending* resize, only a running
//! one), unlike `std::sync::RwLock`, which would block a thread's second
//! read transaction behind a waiting resize that itself waits for the
//! thread's first: a deadlock.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use heed::{MdbError, RoTxn, RwTxn, WithoutTls};

use crate::error::StoreError;
use crate::store::{MAP_GRANULE_BYTES, Store};

thread_local! {
    /// Ids of the stores this thread holds read transactions of, once per
    /// transaction: a resize that would wait on one of them waits forever.
    static READS_HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Ids of the stores this thread is inside `Store::write` of.
    static WRITING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Something tables can be read through: a [`ReadTxn`] or a [`WriteTxn`]
/// (which sees its own uncommitted writes).
///
/// Sealed: only this crate's transactions implement it.
pub trait Txn: sealed::Sealed {}

pub(crate) mod sealed {
    /// The access `Table` needs, hidden from other crates.
    pub trait Sealed {
        /// The store the transaction belongs to.
        fn store(&self) -> &crate::Store;
        /// The heed transaction, for reading.
        fn raw(&self) -> &heed::RoTxn<'_>;
    }
}

/// A consistent read-only snapshot of the store, from [`Store::read`].
///
/// Values read through it borrow it and point into the memory map. Keep it
/// short-lived: LMDB cannot reuse pages a snapshot still sees, and a map
/// resize waits for every open read transaction. It is neither `Send` nor
/// `Sync`: it belongs to the thread that opened it.
pub struct ReadTxn<'s> {
    // Fields drop in declaration order: the LMDB transaction must end before
    // the slot that lets a resize proceed is released.
    txn: RoTxn<'s, WithoutTls>,
    slot: ReaderSlot<'s>,
}

impl fmt::Debug for ReadTxn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTxn").field("store", &self.slot.store.path).field("id", &self.txn.id()).finish()
    }
}

impl Txn for ReadTxn<'_> {}

impl sealed::Sealed for ReadTxn<'_> {
    fn store(&self) -> &Store {
        self.slot.store
    }

    fn raw(&self) -> &RoTxn<'_> {
        &self.txn
    }
}

/// The write transaction handed to a [`Store::write`] closure. Everything
/// done through it commits together, or not at all.
pub struct WriteTxn<'s> {
    pub(crate) store: &'s Store,
    pub(crate) rw: RwTxn<'s>,
    /// Set when any operation hit `MDB_MAP_FULL`: the attempt is then
    /// retried on a larger map whatever the closure returned.
    map_full: bool,
}

impl fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTxn").field("store", &self.store.path).field("id", &self.rw.id()).finish()
    }
}

impl Txn for WriteTxn<'_> {}

impl sealed::Sealed for WriteTxn<'_> {
    fn store(&self) -> &Store {
        self.store
    }

    fn raw(&self) -> &RoTxn<'_> {
        &self.rw
    }
}

impl WriteTxn<'_> {
    /// Passes `result` through, noting whether LMDB ran out of map.
    pub(crate) fn track<T>(&mut self, result: heed::Result<T>) -> heed::Result<T> {
        if let Err(error) = &result {
            self.map_full |= StoreError::is_lmdb_map_full(error);
        }
        result
    }
}

/// How one attempt at a write ended, when it did not fail for good.
enum Attempt<R> {
    Committed(R),
    /// LMDB ran out of map; abort, grow, run the closure again.
    MapFull,
    /// Another process grew the map past ours; adopt its size and rerun.
    MapResized,
}

impl Store {
    /// Opens a read-only snapshot of the last commit.
    pub fn read(&self) -> Result<ReadTxn<'_>, StoreError> {
        self.check_poison()?;
        match self.begin_read() {
            Err(StoreError::Lmdb { source: heed::Error::Mdb(MdbError::MapResized), .. }) => {
                // Another process grew the map past ours; adopt its size.
                let writer = self.lock_writer()?;
                self.resize(0, &writer)?;
                drop(writer);
                self.begin_read()
            }
            other => other,
        }
    }

    fn begin_read(&self) -> Result<ReadTxn<'_>, StoreError> {
        let slot = ReaderSlot::enter(self);
        let txn = self.env.read_txn().map_err(|source| StoreError::Lmdb {
            path: self.path.clone(),
            op: "begin a read transaction",
            source,
        })?;
        Ok(ReadTxn { txn, slot })
    }

    /// Runs `f` in one write transaction and commits it: everything `f`
    /// does is on disk afterwards, or nothing is.
    ///
    /// When the map fills up (`MDB_MAP_FULL`, from `f` or from the commit),
    /// the attempt is aborted, the map doubled (up to `max_map_bytes`) and
    /// `f` run again from scratch, so `f` may run several times: keep its
    /// effects inside the transaction. Any other failure — an error from
    /// `f`, a full map at its ceiling, an I/O or commit error, a panic in
    /// `f` — aborts the attempt and poisons the store: this and every later
    /// [`read`](Store::read) and `write` fail with
    /// [`StoreError::Poisoned`]; reopen the path to go on from the last
    /// commit.
    ///
    /// Growing the map waits until no read transaction of this store is open
    /// in any thread; if the calling thread holds one, the write fails with
    /// [`StoreError::GrowWhileReading`] instead of waiting forever. Calling
    /// `write` inside `f` fails with [`StoreError::NestedWrite`].
    pub fn write<R>(
        &self,
        mut f: impl FnMut(&mut WriteTxn<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.check_poison()?;
        if self.options.read_only {
            return Err(StoreError::ReadOnly { path: self.path.clone() });
        }
        if WRITING.with_borrow(|writing| writing.contains(&self.id)) {
            return Err(StoreError::NestedWrite { path: self.path.clone() });
        }
        let writer = self.lock_writer()?;
        // Another thread's write may have failed while this one waited.
        self.check_poison()?;
        let _writing = WritingMark::enter(self.id);
        loop {
            let step = match self.attempt(&mut f) {
                Ok(Attempt::Committed(value)) => return Ok(value),
                Ok(Attempt::MapFull) => self.grow(&writer),
                Ok(Attempt::MapResized) => self.resize(0, &writer),
                Err(error) => Err(error),
            };
            if let Err(error) = step {
                self.poison_with(error.chain());
                return Err(error);
            }
        }
    }

    /// One run of `f` in a fresh write transaction, committed when it and
    /// the commit succeed, aborted otherwise.
    fn attempt<R>(
        &self,
        f: &mut impl FnMut(&mut WriteTxn<'_>) -> Result<R, StoreError>,
    ) -> Result<Attempt<R>, StoreError> {
        let lmdb = |op, source| StoreError::Lmdb { path: self.path.clone(), op, source };
        let rw = match self.env.write_txn() {
            Ok(rw) => rw,
            Err(heed::Error::Mdb(MdbError::MapResized)) => return Ok(Attempt::MapResized),
            Err(source) => return Err(lmdb("begin a write transaction", source)),
        };
        let mut txn = WriteTxn { store: self, rw, map_full: false };
        let outcome = f(&mut txn);
        let WriteTxn { rw, map_full, .. } = txn;
        // A full map wins over whatever `f` made of it: LMDB has marked the
        // transaction failed, and a larger map is the cure.
        if map_full {
            rw.abort();
            return Ok(Attempt::MapFull);
        }
        let value = match outcome {
            Ok(value) => value,
            Err(error) => {
                rw.abort();
                return Err(error);
            }
        };
        match rw.commit() {
            Ok(()) => Ok(Attempt::Committed(value)),
            Err(error) if StoreError::is_lmdb_map_full(&error) => Ok(Attempt::MapFull),
            Err(source) => Err(lmdb("commit a write transaction", source)),
        }
    }

    /// Doubles the map, up to `max_map_bytes`; at the ceiling, fails with
    /// [`StoreError::MapFull`].
    fn grow(&self, writer: &MutexGuard<'_, ()>) -> Result<(), StoreError> {
        let map_bytes = self.map_bytes();
        let max_map_bytes = self.options.max_map_bytes;
        if map_bytes >= max_map_bytes {
            return Err(StoreError::MapFull { path: self.path.clone(), map_bytes, max_map_bytes });
        }
        let doubled = map_bytes.saturating_mul(2);
        let next = doubled.checked_next_multiple_of(MAP_GRANULE_BYTES).unwrap_or(max_map_bytes);
        self.resize(next.min(max_map_bytes), writer)
    }

    /// Sets the map size (0: adopt the size another process set), once no
    /// transaction of this store is open. `_writer` proves the caller holds
    /// the writer lock, so no write transaction is open either.
    fn resize(&self, new_size: usize, _writer: &MutexGuard<'_, ()>) -> Result<(), StoreError> {
        let readers = READS_HELD.with_borrow(|held| held.iter().filter(|id| **id == self.id).count());
        if readers > 0 {
            return Err(StoreError::GrowWhileReading { path: self.path.clone(), readers });
        }
        let _no_readers = self.gate.wait_until_idle();
        // SAFETY: `Env::resize` (mdb_env_set_mapsize on an open environment)
        // requires that no transaction of this environment is active in this
        // process, and it remaps, so nothing may point into the old map:
        // - no write transaction: they begin only in `Store::write`, under the
        //   writer lock `_writer` proves we hold, whose own transaction was
        //   committed or aborted before this call; `Store::open` finished its
        //   transaction before the `Store` existed; heed refuses a second
        //   `Env` on the same path in this process, so no other handle exists;
        // - no read transaction: each begins in `Store::begin_read` only after
        //   entering the gate, and `_no_readers` holds the gate at zero
        //   readers, so none is open and none can begin until it drops; a
        //   `ReadTxn` ends its LMDB transaction before leaving the gate (field
        //   order);
        // - nothing points into the map: every slice and archived value handed
        //   out borrows a `ReadTxn` or `WriteTxn`, and none is alive;
        // - `new_size` is 0 or a multiple of MAP_GRANULE_BYTES, hence of the
        //   OS page size (heed checks this and returns an error otherwise).
        unsafe { self.env.resize(new_size) }.map_err(|source| StoreError::Lmdb {
            path: self.path.clone(),
            op: "resize the memory map",
            source,
        })
    }

    /// Takes the writer lock. A lock poisoned by a panic inside a write
    /// closure poisons the store: that write was aborted by unwinding, but
    /// the caller never learned of it.
    fn lock_writer(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        match self.writer.lock() {
            Ok(guard) => Ok(guard),
            Err(_) => {
                let reason = "a write closure panicked";
                self.poison_with(reason.to_owned());
                let reason = self.poison_reason().unwrap_or(reason).to_owned();
                Err(StoreError::Poisoned { path: self.path.clone(), reason })
            }
        }
    }
}

/// Counts the read transactions open on a store so a resize can wait for
/// none. See the module documentation for why it prefers readers.
#[derive(Debug, Default)]
pub(crate) struct ReaderGate {
    readers: Mutex<usize>,
    idle: Condvar,
}

impl ReaderGate {
    // The count is only changed by whole `+= 1` / `-= 1` steps while locked,
    // and no code that could panic runs under the lock, so a poisoned lock
    // still holds a correct count.
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self) {
        *self.lock() += 1;
    }

    fn leave(&self) {
        let mut readers = self.lock();
        *readers -= 1;
        if *readers == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until no reader is inside, and keeps new ones out until the
    /// returned guard drops.
    fn wait_until_idle(&self) -> MutexGuard<'_, usize> {
        let readers = self.lock();
        self.idle.wait_while(readers, |readers| *readers > 0).unwrap_or_else(PoisonError::into_inner)
    }
}

/// One read transaction's place in the gate and in this thread's
/// bookkeeping; `!Send` so that it is released on the thread that took it.
struct ReaderSlot<'s> {
    store: &'s Store,
    _same_thread: PhantomData<*const ()>,
}

impl<'s> ReaderSlot<'s> {
    fn enter(store: &'s Store) -> Self {
        store.gate.enter();
        READS_HELD.with_borrow_mut(|held| held.push(store.id));
        Self { store, _same_thread: PhantomData }
    }
}

impl Drop for ReaderSlot<'_> {
    fn drop(&mut self) {
        READS_HELD.with_borrow_mut(|held| {
            if let Some(i) = held.iter().position(|id| *id == self.store.id) {
                held.swap_remove(i);
            }
        });
        self.store.gate.leave();
    }
}

/// Marks this thread as inside `Store::write` of one store.
struct WritingMark(u64);

impl WritingMark {
    fn enter(id: u64) -> Self {
        WRITING.with_borrow_mut(|writing| writing.push(id));
        Self(id)
    }
}

impl Drop for WritingMark {
    fn drop(&mut self) {
        WRITING.with_borrow_mut(|writing| {
            if let Some(i) = writing.iter().position(|id| *id == self.0) {
                writing.swap_remove(i);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::keys;
    use crate::test_support::{BLOBS, SAMPLES, give_up, open, options, sample};

    const MIB: usize = 1 << 20;

    fn small_map(initial: usize, max: usize) -> crate::StoreOptions {
        crate::StoreOptions { initial_map_bytes: initial, max_map_bytes: max, ..options() }
    }

    #[test]
    fn failed_write_leaves_nothing_and_poisons_until_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        store.write(|txn| SAMPLES.put(txn, &keys::u64(1), &sample(1))).expect("first write");

        let error = store
            .write(|txn| -> Result<(), StoreError> {
                SAMPLES.put(txn, &keys::u64(2), &sample(2))?;
                SAMPLES.delete(txn, &keys::u64(1))?;
                Err(give_up())
            })
            .expect_err("closure fails");
        assert!(matches!(error, StoreError::Aborted { .. }), "the closure's own error comes back: {error}");
        assert!(store.is_poisoned());

        for refused in [store.read().map(drop), store.write(|_| Ok(()))] {
            match refused {
                Err(StoreError::Poisoned { reason, .. }) => {
                    assert!(reason.contains("test closure gives up"), "names the first failure: {reason}")
                }
                other => panic!("a poisoned store must refuse use, got {other:?}"),
            }
        }

        drop(store);
        let store = open(dir.path());
        let txn = store.read().expect("read after reopen");
        assert!(SAMPLES.get(&txn, &keys::u64(1)).expect("get").is_some(), "last commit kept");
        assert!(SAMPLES.get(&txn, &keys::u64(2)).expect("get").is_none(), "failed write left nothing");
    }

    #[test]
    fn map_grows_across_commits_and_within_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::Store::open(dir.path(), small_map(MIB, 256 * MIB)).expect("open");
        assert_eq!(store.map_bytes(), MIB);
        let blob = |i: u64| vec![i as u8; 256 << 10];
        // 20 MiB in 20 commits of 1 MiB each.
        for commit in 0..20u64 {
            store
                .write(|txn| {
                    (commit * 4..commit * 4 + 4).try_for_each(|i| BLOBS.put(txn, &keys::u64(i), &blob(i)))
                })
                .expect("write within the ceiling");
        }
        // 6 MiB in one commit, so one closure sees several doublings.
        let runs = std::cell::Cell::new(0);
        store
            .write(|txn| {
                runs.set(runs.get() + 1);
                (100..124u64).try_for_each(|i| BLOBS.put(txn, &keys::u64(i), &blob(i)))
            })
            .expect("large write");
        assert!(store.map_bytes() >= 32 * MIB, "map grew: {} bytes", store.map_bytes());
        assert!(!store.is_poisoned());

        let txn = store.read().expect("read");
        assert_eq!(BLOBS.len(&txn).expect("len"), 104);
        for i in (0..80).chain(100..124) {
            let value = BLOBS.get(&txn, &keys::u64(i)).expect("get").expect("present");
            assert!(value.len() == 256 << 10 && value.iter().all(|b| *b == i as u8), "blob {i} intact");
        }
        drop(txn);
        drop(store);
        let store = crate::Store::open(dir.path(), small_map(MIB, 256 * MIB)).expect("reopen");
        assert!(store.map_bytes() >= 32 * MIB, "a reopened store keeps its grown map");
    }

    #[test]
    fn map_full_at_the_ceiling_poisons_with_a_clear_reason() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::Store::open(dir.path(), small_map(MIB, 2 * MIB)).expect("open");
        store.write(|txn| BLOBS.put(txn, &keys::u64(0), &vec![7; 1000])).expect("small write");
        let error = store
            .write(|txn| (1..17u64).try_for_each(|i| BLOBS.put(txn, &keys::u64(i), &vec![1; 256 << 10])))
            .expect_err("4 MiB cannot fit a 2 MiB map");
        assert!(
            matches!(error, StoreError::MapFull { map_bytes, max_map_bytes, .. }
                if map_bytes == 2 * MIB && max_map_bytes == 2 * MIB),
            "{error}"
        );
        match store.read() {
            Err(StoreError::Poisoned { reason, .. }) => {
                assert!(reason.contains("max_map_bytes"), "reason names the ceiling: {reason}")
            }
            other => panic!("expected a poisoned store, got {other:?}"),
        }
        drop(store);
        let store = crate::Store::open(dir.path(), small_map(MIB, 2 * MIB)).expect("reopen");
        let txn = store.read().expect("read");
        assert_eq!(BLOBS.len(&txn).expect("len"), 1, "only the small write is on disk");
    }

    #[test]
    fn growth_waits_for_readers_of_other_threads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::Store::open(dir.path(), small_map(MIB, 64 * MIB)).expect("open");
        store.write(|txn| SAMPLES.put(txn, &keys::u64(1), &sample(1))).expect("write");
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let store = &store;
        thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let first = store.read().expect("read");
                held_tx.send(()).expect("signal");
                // A second read on this thread while the writer waits to
                // grow must not block behind it.
                thread::sleep(Duration::from_millis(100));
                let second = store.read().expect("nested read while a resize is pending");
                let value = SAMPLES.get(&second, &keys::u64(1)).expect("get").expect("present");
                assert_eq!(value.height, 1);
                drop(second);
                release_rx.recv().expect("release");
                drop(first);
            });
            held_rx.recv().expect("reader holds its snapshot");
            let writer = scope.spawn(move || {
                store.write(|txn| {
                    (0..12u64).try_for_each(|i| BLOBS.put(txn, &keys::u64(i), &vec![1; 256 << 10]))
                })
            });
            thread::sleep(Duration::from_millis(300));
            assert!(!writer.is_finished(), "growth must wait for the open read transaction");
            release_tx.send(()).expect("release reader");
            writer.join().expect("writer thread").expect("write after readers left");
            reader.join().expect("reader thread");
        });
        assert!(store.map_bytes() > MIB);
    }

    #[test]
    fn growth_refuses_to_wait_for_the_writing_threads_own_reader() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::Store::open(dir.path(), small_map(MIB, 64 * MIB)).expect("open");
        let snapshot = store.read().expect("read");
        let error = store
            .write(|txn| (0..12u64).try_for_each(|i| BLOBS.put(txn, &keys::u64(i), &vec![1; 256 << 10])))
            .expect_err("growing would deadlock");
        assert!(matches!(error, StoreError::GrowWhileReading { readers: 1, .. }), "{error}");
        drop(snapshot);
        assert!(store.is_poisoned());
    }

    #[test]
    fn misuse_is_refused_without_hanging() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        let nested = store
            .write(|_| match store.write(|_| Ok(())) {
                Err(StoreError::NestedWrite { .. }) => Ok(true),
                other => panic!("a nested write must be refused, got {other:?}"),
            })
            .expect("outer write");
        assert!(nested);
        // A read inside a write sees the last commit, not the write's own state.
        store
            .write(|txn| {
                SAMPLES.put(txn, &keys::u64(5), &sample(5))?;
                assert!(SAMPLES.get(txn, &keys::u64(5))?.is_some(), "a write sees its own puts");
                assert!(SAMPLES.get(&store.read()?, &keys::u64(5))?.is_none(), "a snapshot does not");
                Ok(())
            })
            .expect("write");
    }

    #[test]
    fn panic_in_a_write_poisons() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            store.write(|txn| -> Result<(), StoreError> {
                SAMPLES.put(txn, &keys::u64(9), &sample(9))?;
                panic!("closure panics mid-write");
            })
        }));
        assert!(outcome.is_err());
        match store.write(|_| Ok(())) {
            Err(StoreError::Poisoned { reason, .. }) => assert!(reason.contains("panicked"), "{reason}"),
            other => panic!("expected a poisoned store, got {other:?}"),
        }
        assert!(store.read().is_err());
    }

    #[test]
    fn read_only_store_refuses_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(open(dir.path()));
        let store = crate::Store::open(dir.path(), options().read_only()).expect("open read-only");
        let error = store.write(|_| Ok(())).expect_err("read-only");
        assert!(matches!(error, StoreError::ReadOnly { .. }), "{error}");
        assert!(!store.is_poisoned(), "refusing a write is not a failed write");
    }
}
