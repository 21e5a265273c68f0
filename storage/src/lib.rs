//! The disk of the Gonka host: LMDB tables of rkyv-archived bytes, crash-safe
//! commits, zero-copy reads.
//!
//! This crate moves bytes and knows no protocol types: the engine declares
//! the tables (a `&'static [TableDef]` registry) and the value types, and
//! gives them meaning.
//!
//! # Main types, and where to start
//!
//! - [`Store`] (`store.rs`): one LMDB environment. [`Store::open`] checks
//!   the schema and format version in the `meta` table and creates missing
//!   tables; [`StoreOptions`] says which.
//! - [`Store::read`] → [`ReadTxn`], a snapshot; [`Store::write`] runs a
//!   closure on a [`WriteTxn`] and commits all of it or none (`txn.rs`: map
//!   growth, poisoning).
//! - [`Table<V>`] (`table.rs`): a typed, `const` handle for one
//!   [`TableDef`]. `get` returns `&V::Archived` validated in place; `range`
//!   yields [`Entries`]; `put`, `delete`, `delete_range` write.
//! - [`keys`]: big-endian key encodings, so byte order is numeric order.
//! - [`StoreError`]: one error enum; variants name the path, table and key.
//! - [`write_atomic`]: whole-file replacement for files outside LMDB.
//!
//! ```
//! use gonka_storage::{keys, Store, StoreOptions, Table, TableDef};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
//! struct Block { height: u64, txs: Vec<Vec<u8>> }
//!
//! static TABLES: [TableDef; 1] =
//!     [TableDef { name: "blocks", doc: "blocks by height", key: "height u64 BE", value: "Block" }];
//! const BLOCKS: Table<Block> = Table::new(&TABLES[0]);
//!
//! # fn main() -> Result<(), gonka_storage::StoreError> {
//! # let dir = tempfile::tempdir().expect("temp dir");
//! let store = Store::open(dir.path(), StoreOptions::new("example", 1, &TABLES))?;
//! store.write(|txn| BLOCKS.put(txn, &keys::u64(7), &Block { height: 7, txs: vec![] }))?;
//! let txn = store.read()?;
//! let block = BLOCKS.get(&txn, &keys::u64(7))?.expect("just written");
//! assert_eq!(block.height, 7);
//! # Ok(()) }
//! ```
//!
//! # On-disk layout
//!
//! ```text
//! <path>/                    one LMDB environment, owned by one Store
//! ├── data.mdb               copy-on-write B+trees, memory-mapped read-only
//! └── lock.mdb               LMDB's reader table (coordinates processes)
//!
//! data.mdb
//! ├── main (unnamed)         LMDB's list of the named tables below
//! ├── "meta"                 "schema"         -> schema name, UTF-8 bytes
//! │                          "format_version" -> u32 little-endian
//! ├── "<TableDef.name>"      key bytes        -> one rkyv archive of V
//! └── ...                    (one per registry entry)
//!
//! one value, as rkyv lays it out (the root object sits at the end):
//! ┌───────────────────────────────────────┬────────────────────┐
//! │ out-of-line data (Vec items, strings) │ root V::Archived   │
//! └───────────────────────────────────────┴────────────────────┘
//!  relative pointers in the root point back into the slice: no absolute
//!  addresses, so the bytes mean the same wherever they are mapped.
//! ```
//!
//! # Alignment: why values can be read straight from the map
//!
//! LMDB stores a value right after its node header and key, so its address
//! depends on the key length and page layout: in general it is only 2-byte
//! aligned. rkyv's default format has archives with alignment up to 8, and
//! `rkyv::access` refuses a misaligned slice (measured in the project's
//! dependency notes: 76% of values under variable-length keys). The
//! workspace therefore builds rkyv with its `unaligned` feature, a format
//! choice: every archived primitive is a byte array with alignment 1, so
//! every `V::Archived` has alignment 1 and any address is aligned for it.
//! `table.rs` asserts this at compile time for each value type read, so a
//! build without `unaligned` does not compile rather than fail at run time.
//! The feature changes the bytes on disk: it must never be toggled for an
//! existing store (bump the format version instead).
//!
//! # What is copied, and why
//!
//! - `get`, `first`, `last`, `range`: nothing. Keys and values are slices of
//!   the map, valid while the transaction lives (LMDB does not reuse pages a
//!   live snapshot sees); validation reads them in place.
//! - `get_owned`: one deserialisation into `V`, for data that must outlive
//!   the transaction.
//! - `put`: the value is serialised into an `AlignedVec`, then LMDB copies it
//!   into a page of the transaction. Serialising straight into LMDB's
//!   reserved space would need the archive's size up front.
//! - `range` and `delete_range` bounds: heed copies the two bound keys.
//! - Map growth copies nothing: LMDB remaps the same file at a larger size.
//!
//! # Feature flags
//!
//! None.

#![warn(missing_docs)]

mod atomic_file;
mod error;
pub mod keys;
mod store;
mod table;
mod txn;

#[cfg(test)]
mod test_support;

pub use atomic_file::write_atomic;
pub use error::StoreError;
pub use store::{
    DEFAULT_INITIAL_MAP_BYTES, DEFAULT_MAX_MAP_BYTES, MAP_GRANULE_BYTES, MAX_TABLES, META_TABLE, Store,
    StoreOptions, TableStats,
};
pub use table::{Entries, Entry, Record, Table, TableDef};
pub use txn::{ReadTxn, Txn, WriteTxn};

// Values are read in place at any address (see "Alignment" above); this holds
// only in rkyv's `unaligned` format.
const _: () = assert!(align_of::<rkyv::Archived<u64>>() == 1, "rkyv must be built with `unaligned`");
