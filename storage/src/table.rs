//! Tables: [`TableDef`] (one registry entry), [`Table<V>`] (a typed handle
//! whose reads hand out validated rkyv archives straight from the memory
//! map) and [`Entries`] (range iteration).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use heed::types::Bytes;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::BoxedError;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::{RawTable, Store};
use crate::txn::{Txn, WriteTxn};

/// One entry of the table registry the engine passes to
/// [`Store::open`](crate::Store::open).
///
/// `key` and `value` describe the encoding for people (`"height u64 BE"`,
/// `"Block"`); the store does not interpret them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableDef {
    /// LMDB table name: unique in the registry, not `"meta"`, no NUL.
    pub name: &'static str,
    /// What the table holds and why.
    pub doc: &'static str,
    /// The key's encoding.
    pub key: &'static str,
    /// The value's type.
    pub value: &'static str,
}

/// What a table value must be: rkyv-serialisable, its archive checkable by
/// bytecheck and deserialisable, all with [`BoxedError`] (whose messages
/// survive release builds, unlike `rancor::Error`'s).
///
/// Implemented for every type that qualifies; it only names the bound set
/// so that signatures stay readable.
pub trait Record:
    Sized
    + Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                      + Deserialize<Self, HighDeserializer<BoxedError>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>
{
}

impl<V> Record for V where
    V: Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                          + Deserialize<V, HighDeserializer<BoxedError>>,
        > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>
{
}

/// One table entry as reads return it: the key and the validated value,
/// both borrowed from the transaction's memory map.
pub type Entry<'t, V> = (&'t [u8], &'t <V as Archive>::Archived);

/// A typed handle to a registered table whose values are archives of `V`.
///
/// Keys are byte strings in LMDB order (see [`keys`](crate::keys) for
/// big-endian numbers). `Copy` and `const`-constructible, so the engine can
/// declare its tables as constants.
pub struct Table<V> {
    def: &'static TableDef,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Table<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Table<V> {}

impl<V> fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Table").field(&self.def.name).finish()
    }
}

impl<V> Table<V> {
    /// A handle to the table `def` describes; `def` must be registered in
    /// the store it is used with.
    pub const fn new(def: &'static TableDef) -> Self {
        Self { def, _value: PhantomData }
    }

    /// The table's registry entry.
    pub const fn def(&self) -> &'static TableDef {
        self.def
    }

    /// The table's name.
    pub const fn name(&self) -> &'static str {
        self.def.name
    }
}

impl<V: Record> Table<V> {
    /// The value under `key`, validated in place: a reference into the
    /// memory map, no copy. Fails with [`StoreError::Corrupt`] when the
    /// stored bytes are not a valid archive of `V`.
    pub fn get<'t>(&self, txn: &'t impl Txn, key: &[u8]) -> Result<Option<&'t V::Archived>, StoreError> {
        match self.get_bytes(txn, key)? {
            Some(bytes) => access::<V>(self.def, key, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The value under `key`, without validation.
    ///
    /// For measuring what validation costs, and for re-reading a value
    /// already validated in the same transaction.
    ///
    /// # Safety
    /// The bytes stored under `key` must be a valid rkyv archive of `V` in
    /// this build's format: for example, `get` returned `Ok(Some(_))` for
    /// this key earlier in the same transaction. Bytes damaged on disk or
    /// written for another type are undefined behaviour here.
    pub unsafe fn get_unchecked<'t>(
        &self,
        txn: &'t impl Txn,
        key: &[u8],
    ) -> Result<Option<&'t V::Archived>, StoreError> {
        const { assert_unaligned::<V>() };
        let Some(bytes) = self.get_bytes(txn, key)? else {
            return Ok(None);
        };
        // SAFETY: the caller guarantees `bytes` hold a valid archive of `V`
        // with its root at rkyv's root position (the end). `V::Archived` has
        // alignment 1 (asserted above at compile time), so the address LMDB
        // gives satisfies it; `bytes` borrows `txn`, which keeps the pages
        // mapped and unchanged for the returned lifetime.
        Ok(Some(unsafe { rkyv::access_unchecked::<V::Archived>(bytes) }))
    }

    /// The value under `key`, validated and deserialised into an owned `V`:
    /// for values that must outlive the transaction.
    pub fn get_owned(&self, txn: &impl Txn, key: &[u8]) -> Result<Option<V>, StoreError> {
        let Some(archived) = self.get(txn, key)? else {
            return Ok(None);
        };
        rkyv::deserialize::<V, BoxedError>(archived)
            .map(Some)
            .map_err(|error| corrupt(self.def, key, format!("deserialize: {}", error_chain(&error))))
    }

    /// The checks of [`get`](Table::get) on bytes from elsewhere (a fuzzer,
    /// a repair tool): `key` only names the value in the error.
    pub fn decode<'b>(&self, key: &[u8], bytes: &'b [u8]) -> Result<&'b V::Archived, StoreError> {
        access::<V>(self.def, key, bytes)
    }

    /// The checks of [`get_owned`](Table::get_owned) on bytes from elsewhere.
    pub fn decode_owned(&self, key: &[u8], bytes: &[u8]) -> Result<V, StoreError> {
        let archived = self.decode(key, bytes)?;
        rkyv::deserialize::<V, BoxedError>(archived)
            .map_err(|error| corrupt(self.def, key, format!("deserialize: {}", error_chain(&error))))
    }

    /// The raw bytes under `key`, unvalidated.
    pub fn get_bytes<'t>(&self, txn: &'t impl Txn, key: &[u8]) -> Result<Option<&'t [u8]>, StoreError> {
        let table = self.raw(txn.store(), key)?;
        table.get(txn.raw(), key).map_err(|source| table_error(self.def, "get", Some(key), source))
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put(&self, txn: &mut WriteTxn<'_>, key: &[u8], value: &V) -> Result<(), StoreError> {
        let bytes = rkyv::to_bytes::<BoxedError>(value).map_err(|error| StoreError::Encode {
            table: self.def.name,
            key: hex::encode(key),
            reason: error_chain(&error),
        })?;
        self.put_bytes(txn, key, &bytes)
    }

    /// Stores raw `bytes` under `key` with no check that they are an archive
    /// of `V`: for tests and fuzzing of damaged values.
    pub fn put_bytes(&self, txn: &mut WriteTxn<'_>, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        let table = self.raw(txn.store, key)?;
        let result = table.put(&mut txn.rw, key, bytes);
        txn.track(result).map_err(|source| table_error(self.def, "put", Some(key), source))
    }

    /// Removes `key`; whether it was present.
    pub fn delete(&self, txn: &mut WriteTxn<'_>, key: &[u8]) -> Result<bool, StoreError> {
        let table = self.raw(txn.store, key)?;
        let result = table.delete(&mut txn.rw, key);
        txn.track(result).map_err(|source| table_error(self.def, "delete", Some(key), source))
    }

    /// Removes every key in `range` (e.g. `..keys::u64(height)` to prune
    /// below a height); how many were removed.
    pub fn delete_range<K: AsRef<[u8]>>(
        &self,
        txn: &mut WriteTxn<'_>,
        range: impl RangeBounds<K>,
    ) -> Result<usize, StoreError> {
        let table = self.raw_table(txn.store)?;
        let bounds = key_bounds(&range);
        let result = table.delete_range(&mut txn.rw, &bounds);
        txn.track(result).map_err(|source| table_error(self.def, "delete a range", None, source))
    }

    /// Number of entries.
    pub fn len(&self, txn: &impl Txn) -> Result<u64, StoreError> {
        let table = self.raw_table(txn.store())?;
        table.len(txn.raw()).map_err(|source| table_error(self.def, "count entries", None, source))
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self, txn: &impl Txn) -> Result<bool, StoreError> {
        let table = self.raw_table(txn.store())?;
        table.is_empty(txn.raw()).map_err(|source| table_error(self.def, "count entries", None, source))
    }

    /// The entry with the smallest key, validated.
    pub fn first<'t>(&self, txn: &'t impl Txn) -> Result<Option<Entry<'t, V>>, StoreError> {
        let table = self.raw_table(txn.store())?;
        let entry = table
            .first(txn.raw())
            .map_err(|source| table_error(self.def, "read the first entry", None, source))?;
        entry.map(|(key, bytes)| Ok((key, access::<V>(self.def, key, bytes)?))).transpose()
    }

    /// The entry with the largest key, validated.
    pub fn last<'t>(&self, txn: &'t impl Txn) -> Result<Option<Entry<'t, V>>, StoreError> {
        let table = self.raw_table(txn.store())?;
        let entry = table
            .last(txn.raw())
            .map_err(|source| table_error(self.def, "read the last entry", None, source))?;
        entry.map(|(key, bytes)| Ok((key, access::<V>(self.def, key, bytes)?))).transpose()
    }

    /// The entries whose keys fall in `range`, in key order, each validated
    /// as it is reached (e.g. `keys::u64(10)..keys::u64(20)`).
    pub fn range<'t, K: AsRef<[u8]>>(
        &self,
        txn: &'t impl Txn,
        range: impl RangeBounds<K>,
    ) -> Result<Entries<'t, V>, StoreError> {
        let table = self.raw_table(txn.store())?;
        let inner = table
            .range(txn.raw(), &key_bounds(&range))
            .map_err(|source| table_error(self.def, "start a range", None, source))?;
        Ok(Entries { def: self.def, inner: Some(inner), _value: PhantomData })
    }

    /// Every entry, in key order.
    pub fn iter<'t>(&self, txn: &'t impl Txn) -> Result<Entries<'t, V>, StoreError> {
        self.range::<&[u8]>(txn, ..)
    }

    /// The heed handle, after checking `key` fits LMDB.
    fn raw(&self, store: &Store, key: &[u8]) -> Result<RawTable, StoreError> {
        if key.is_empty() || key.len() > store.max_key_bytes {
            return Err(StoreError::KeySize {
                table: self.def.name,
                key: if key.is_empty() { "<empty>".to_owned() } else { hex::encode(key) },
                len: key.len(),
                max: store.max_key_bytes,
            });
        }
        self.raw_table(store)
    }

    fn raw_table(&self, store: &Store) -> Result<RawTable, StoreError> {
        store.raw_table(self.def)
    }
}

/// The entries of a [`Table::range`] or [`Table::iter`], each a key and its
/// validated value, both borrowed from the transaction.
///
/// A value that fails validation yields [`StoreError::Corrupt`] and
/// iteration may go on; an LMDB failure ends it.
pub struct Entries<'t, V> {
    def: &'static TableDef,
    inner: Option<heed::RoRange<'t, Bytes, Bytes>>,
    _value: PhantomData<fn() -> V>,
}

impl<V> fmt::Debug for Entries<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entries").field("table", &self.def.name).field("done", &self.inner.is_none()).finish()
    }
}

impl<'t, V: Record> Iterator for Entries<'t, V>
where
    V::Archived: 't,
{
    type Item = Result<Entry<'t, V>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.as_mut()?.next()? {
            Ok((key, bytes)) => Some(access::<V>(self.def, key, bytes).map(|value| (key, value))),
            Err(source) => {
                self.inner = None;
                Some(Err(table_error(self.def, "iterate", None, source)))
            }
        }
    }
}

/// Fails to compile for a `V` whose archive needs alignment: values are
/// read in place at whatever address LMDB stores them. rkyv's `unaligned`
/// feature (set workspace-wide) makes every archive alignment 1.
const fn assert_unaligned<V: Archive>() {
    assert!(
        align_of::<V::Archived>() == 1,
        "archived table values must have alignment 1: enable rkyv's `unaligned` feature"
    );
}

/// Validates `bytes` as an archive of `V` in place.
fn access<'b, V: Record>(def: &TableDef, key: &[u8], bytes: &'b [u8]) -> Result<&'b V::Archived, StoreError> {
    const { assert_unaligned::<V>() };
    rkyv::access::<V::Archived, BoxedError>(bytes).map_err(|error| corrupt(def, key, error_chain(&error)))
}

fn corrupt(def: &TableDef, key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt { table: def.name, key: hex::encode(key), reason }
}

fn table_error(def: &TableDef, op: &'static str, key: Option<&[u8]>, source: heed::Error) -> StoreError {
    StoreError::Table { table: def.name, op, key: key.map(hex::encode), source }
}

/// An rkyv error and its sources, as one line.
fn error_chain(error: &BoxedError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `range` as the byte bounds heed takes. An empty start key becomes
/// unbounded: it is below every key (LMDB keys are never empty), and LMDB
/// refuses to seek to it.
fn key_bounds<'r, K: AsRef<[u8]> + 'r>(range: &'r impl RangeBounds<K>) -> (Bound<&'r [u8]>, Bound<&'r [u8]>) {
    let start = match range.start_bound().map(AsRef::as_ref) {
        Bound::Included([]) | Bound::Excluded([]) => Bound::Unbounded,
        start => start,
    };
    (start, range.end_bound().map(AsRef::as_ref))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::test_support::{ArchivedSample, BLOBS, SAMPLES, Sample, open, sample};

    #[test]
    fn values_round_trip_validated_unchecked_and_owned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        let value = sample(7);
        store.write(|txn| SAMPLES.put(txn, &keys::u64(7), &value)).expect("write");

        let txn = store.read().expect("read");
        let archived = SAMPLES.get(&txn, &keys::u64(7)).expect("get").expect("present");
        assert_eq!(archived.height, 7);
        assert_eq!(archived.note.as_str(), "sample at 7");
        assert_eq!(archived.items.len(), 3);
        assert_eq!(archived.items[2].tags[1].as_str(), "tag-7-2");
        assert_eq!(SAMPLES.get_owned(&txn, &keys::u64(7)).expect("get_owned"), Some(value.clone()));
        // SAFETY: `get` validated this key's value in this same transaction.
        let unchecked = unsafe { SAMPLES.get_unchecked(&txn, &keys::u64(7)) }.expect("get_unchecked");
        assert!(std::ptr::eq(unchecked.expect("present"), archived), "both read the same map bytes");
        let bytes = SAMPLES.get_bytes(&txn, &keys::u64(7)).expect("get_bytes").expect("present");
        assert_eq!(bytes, rkyv::to_bytes::<BoxedError>(&value).expect("encode").as_slice());
        assert!(SAMPLES.get(&txn, &keys::u64(8)).expect("get missing").is_none());
        assert!(BLOBS.is_empty(&txn).expect("is_empty"));
    }

    #[test]
    fn range_first_last_follow_numeric_key_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        // Inserted out of order, across byte-length boundaries of the numbers.
        let heights = [300u64, 2, 256, 10, 1, 65_536, 255, 9];
        store
            .write(|txn| heights.iter().try_for_each(|h| SAMPLES.put(txn, &keys::u64(*h), &sample(*h))))
            .expect("write");

        let txn = store.read().expect("read");
        let mut sorted = heights.to_vec();
        sorted.sort_unstable();
        let all: Vec<u64> = SAMPLES
            .iter(&txn)
            .expect("iter")
            .map(|entry| {
                let (key, value) = entry.expect("valid entry");
                assert_eq!(keys::read_u64(key), Some(value.height.to_native()), "key matches value");
                value.height.to_native()
            })
            .collect();
        assert_eq!(all, sorted, "iteration order is numeric order");

        let window: Vec<u64> = SAMPLES
            .range(&txn, keys::u64(9)..keys::u64(300))
            .expect("range")
            .map(|entry| entry.expect("valid entry").1.height.to_native())
            .collect();
        assert_eq!(window, [9, 10, 255, 256]);
        let tail: Vec<u64> = SAMPLES
            .range(&txn, keys::u64(256)..)
            .expect("range")
            .map(|entry| entry.expect("valid entry").1.height.to_native())
            .collect();
        assert_eq!(tail, [256, 300, 65_536]);
        let inclusive = SAMPLES.range(&txn, keys::u64(2)..=keys::u64(9)).expect("range").count();
        assert_eq!(inclusive, 2);

        let (first_key, first) = SAMPLES.first(&txn).expect("first").expect("non-empty");
        let (last_key, last) = SAMPLES.last(&txn).expect("last").expect("non-empty");
        assert_eq!((keys::read_u64(first_key), first.height.to_native()), (Some(1), 1));
        assert_eq!((keys::read_u64(last_key), last.height.to_native()), (Some(65_536), 65_536));
        assert_eq!(SAMPLES.len(&txn).expect("len"), 8);
    }

    #[test]
    fn delete_and_delete_range_prune_below_a_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        store
            .write(|txn| (0..20).try_for_each(|h| SAMPLES.put(txn, &keys::u64(h), &sample(h))))
            .expect("write");
        let (removed, absent) = store
            .write(|txn| {
                let removed = SAMPLES.delete_range(txn, ..keys::u64(10))?;
                let present = SAMPLES.delete(txn, &keys::u64(15))?;
                let absent = SAMPLES.delete(txn, &keys::u64(15))?;
                assert!(present, "key 15 was there to delete");
                Ok((removed, absent))
            })
            .expect("prune");
        assert_eq!((removed, absent), (10, false));

        let txn = store.read().expect("read");
        let left: Vec<u64> = SAMPLES
            .iter(&txn)
            .expect("iter")
            .map(|entry| keys::read_u64(entry.expect("valid entry").0).expect("8-byte key"))
            .collect();
        assert_eq!(left, [10, 11, 12, 13, 14, 16, 17, 18, 19]);
    }

    #[test]
    fn corrupt_value_is_reported_with_table_and_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        let good = rkyv::to_bytes::<BoxedError>(&sample(3)).expect("encode").into_vec();
        // The root sits at the end: `height` (8 bytes), then `note` and
        // `items` (relative pointer and length each). Large lengths and
        // offsets there point outside the slice.
        let mut tampered = good.clone();
        let root = tampered.len() - size_of::<ArchivedSample>();
        tampered[root + 8..].fill(0x7f);
        store
            .write(|txn| {
                SAMPLES.put_bytes(txn, &keys::u64(1), &[0xff; 3])?;
                SAMPLES.put_bytes(txn, &keys::u64(2), &tampered)?;
                SAMPLES.put_bytes(txn, &keys::u64(3), &good)
            })
            .expect("write raw bytes");

        let txn = store.read().expect("read");
        for height in [1u64, 2] {
            let error = SAMPLES.get(&txn, &keys::u64(height)).expect_err("corrupt value must not validate");
            let message = error.to_string();
            assert!(matches!(error, StoreError::Corrupt { table: "samples", .. }), "{message}");
            assert!(message.contains(&hex::encode(keys::u64(height))), "names the key: {message}");
            assert!(message.contains("`samples`"), "names the table: {message}");
        }
        let results: Vec<bool> = SAMPLES.iter(&txn).expect("iter").map(|entry| entry.is_ok()).collect();
        assert_eq!(results, [false, false, true], "iteration reports each bad value and goes on");
        assert!(SAMPLES.first(&txn).is_err(), "first validates too");
        assert!(SAMPLES.get_owned(&txn, &keys::u64(2)).is_err(), "get_owned validates too");
        assert_eq!(SAMPLES.get_owned(&txn, &keys::u64(3)).expect("good value"), Some(sample(3)));
    }

    #[test]
    fn bad_keys_and_unregistered_tables_are_errors() {
        static OTHER: TableDef = TableDef { name: "other", doc: "", key: "", value: "Sample" };
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        let txn = store.read().expect("read");
        let too_long = vec![1u8; store.max_key_bytes + 1];
        assert!(matches!(SAMPLES.get(&txn, &[]), Err(StoreError::KeySize { len: 0, .. })));
        assert!(matches!(SAMPLES.get(&txn, &too_long), Err(StoreError::KeySize { .. })));
        let unknown = Table::<Sample>::new(&OTHER).len(&txn).expect_err("not registered");
        assert!(matches!(unknown, StoreError::UnknownTable { table: "other", .. }), "{unknown}");
        // An empty start bound means "from the first key", not an LMDB error.
        assert_eq!(SAMPLES.range(&txn, &[][..]..).expect("range").count(), 0);
    }
}
