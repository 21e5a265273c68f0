//! [`StoreError`]: every way the store can fail, each variant carrying the
//! path, table or key it concerns.

use std::path::PathBuf;

/// Every failure of [`Store`](crate::Store) and [`Table`](crate::Table).
///
/// Keys are shown as lowercase hex. Variants that wrap an LMDB failure keep
/// it as their `#[source]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The options given to [`Store::open`](crate::Store::open) contradict
    /// each other or name tables LMDB cannot hold.
    #[error("invalid options for store {path}: {reason}")]
    InvalidOptions {
        /// The store directory.
        path: PathBuf,
        /// What is wrong, with the offending value.
        reason: String,
    },

    /// The store directory could not be created.
    #[error("cannot create store directory {path}")]
    CreateDir {
        /// The store directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// LMDB failed at the level of the whole environment (open, begin,
    /// commit, resize).
    #[error("LMDB failed to {op} for store {path}")]
    Lmdb {
        /// The store directory.
        path: PathBuf,
        /// What was being done, as a verb phrase ("begin a read transaction").
        op: &'static str,
        /// The failure heed reported.
        #[source]
        source: heed::Error,
    },

    /// LMDB failed while working on one table.
    #[error("LMDB failed to {op} in table `{table}`{}", at_key(.key))]
    Table {
        /// The table's registered name.
        table: &'static str,
        /// What was being done ("put", "read the first entry").
        op: &'static str,
        /// The key concerned, in hex, when there is one.
        key: Option<String>,
        /// The failure heed reported.
        #[source]
        source: heed::Error,
    },

    /// The store on disk was written with another schema or format version.
    #[error("store {path} holds format {found}, but this program expects {expected}")]
    Format {
        /// The store directory.
        path: PathBuf,
        /// The schema and version found on disk.
        found: String,
        /// The schema and version this program was built for.
        expected: String,
    },

    /// The environment has tables but no `meta` table, so its format is
    /// unknown.
    #[error(
        "store {path} has tables but no `meta` table: it was not written by this program, \
         or its meta table was lost"
    )]
    MissingMeta {
        /// The store directory.
        path: PathBuf,
    },

    /// A registered table is absent and the store was opened read-only, so
    /// it cannot be created.
    #[error("store {path} has no table `{table}`, and a read-only store cannot create it")]
    MissingTable {
        /// The store directory.
        path: PathBuf,
        /// The missing table's name.
        table: &'static str,
    },

    /// A [`Table`](crate::Table) was used that was not in the registry given
    /// at open.
    #[error("table `{table}` is not registered in store {path}")]
    UnknownTable {
        /// The store directory.
        path: PathBuf,
        /// The unregistered table's name.
        table: &'static str,
    },

    /// A write was asked of a store opened read-only.
    #[error("store {path} is opened read-only and cannot be written")]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
    },

    /// A key is empty or longer than LMDB allows.
    #[error("key {key} for table `{table}` is {len} bytes, but LMDB keys must be 1 to {max} bytes")]
    KeySize {
        /// The table's name.
        table: &'static str,
        /// The key, in hex.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The longest key this LMDB build accepts.
        max: usize,
    },

    /// A stored value failed validation (or deserialisation) as the table's
    /// value type: the bytes on disk are not what the table says they are.
    #[error("corrupt value in table `{table}` at key {key}: {reason}")]
    Corrupt {
        /// The table's name.
        table: &'static str,
        /// The key, in hex.
        key: String,
        /// What rkyv's validator or deserializer found wrong.
        reason: String,
    },

    /// A value could not be serialised for writing.
    #[error("cannot encode the value for table `{table}` at key {key}: {reason}")]
    Encode {
        /// The table's name.
        table: &'static str,
        /// The key, in hex.
        key: String,
        /// What rkyv's serializer reported.
        reason: String,
    },

    /// The memory map is full and may not grow any further.
    #[error(
        "store {path} is full: its map is {map_bytes} bytes and may not grow past \
         max_map_bytes = {max_map_bytes}"
    )]
    MapFull {
        /// The store directory.
        path: PathBuf,
        /// The map size when the write failed.
        map_bytes: usize,
        /// The configured ceiling.
        max_map_bytes: usize,
    },

    /// The map must grow, but this thread holds read transactions of the same
    /// store; growing needs every transaction closed, so it would wait forever.
    #[error(
        "store {path} must grow its map, but the writing thread holds {readers} read \
         transaction(s) of it; growing would wait for them forever"
    )]
    GrowWhileReading {
        /// The store directory.
        path: PathBuf,
        /// How many read transactions this thread holds.
        readers: usize,
    },

    /// [`Store::write`](crate::Store::write) was called from inside a write
    /// closure of the same store.
    #[error("store {path}: `write` called inside a write of the same store (LMDB has one writer)")]
    NestedWrite {
        /// The store directory.
        path: PathBuf,
    },

    /// The write closure gave up; nothing it did is kept.
    #[error("write aborted: {reason}")]
    Aborted {
        /// Why the closure gave up.
        reason: String,
    },

    /// An earlier write failed; this handle refuses all further use.
    /// Reopening the path gives the last committed state.
    #[error(
        "store {path} is poisoned by an earlier failed write ({reason}); reopen it to continue from the last commit"
    )]
    Poisoned {
        /// The store directory.
        path: PathBuf,
        /// The first failure, with its sources.
        reason: String,
    },
}

impl StoreError {
    /// An [`Aborted`](StoreError::Aborted) error, for a write closure that
    /// decides not to commit.
    pub fn aborted(reason: impl Into<String>) -> Self {
        Self::Aborted { reason: reason.into() }
    }

    /// Whether this is LMDB's `MDB_MAP_FULL`, the one failure a write retries
    /// after growing the map.
    pub(crate) fn is_lmdb_map_full(error: &heed::Error) -> bool {
        matches!(error, heed::Error::Mdb(heed::MdbError::MapFull))
    }

    /// This error and all its sources, joined by `": "`, for the poison reason.
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

fn at_key(key: &Option<String>) -> String {
    match key {
        Some(key) => format!(" at key {key}"),
        None => String::new(),
    }
}
