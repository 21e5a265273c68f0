//! [`Store`]: opening the LMDB environment, checking its format against the
//! `meta` table, the table registry, statistics and the poison flag.
//! Transactions live in `txn.rs`.

use std::convert::Infallible;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use heed::types::Bytes;
use heed::{
    CommitOrAbort, CommitToken, Database, Env, EnvFlags, EnvOpenOptions, OnCommit, RoTxn, WithoutTls,
};

use crate::error::StoreError;
use crate::table::TableDef;
use crate::txn::sealed::Sealed as _;
use crate::txn::{ReadTxn, ReaderGate};

/// Map size a new store starts with: 64 MiB holds a fresh node's first
/// stretch of chain without a single resize, and costs only address space.
pub const DEFAULT_INITIAL_MAP_BYTES: usize = 64 << 20;

/// Ceiling the map may grow to: 1 TiB of address space (not disk; the file
/// only grows with data), far above any chain a host keeps.
pub const DEFAULT_MAX_MAP_BYTES: usize = 1 << 40;

/// Map sizes are rounded up to a multiple of this: `mdb_env_set_mapsize`
/// needs a multiple of the OS page size, and 1 MiB is a multiple of every
/// page size LMDB runs on (4, 16 and 64 KiB).
pub const MAP_GRANULE_BYTES: usize = 1 << 20;

/// Most tables one store may register: LMDB finds named tables by linear
/// scan, and more than a few dozen would mean a broken registry.
pub const MAX_TABLES: usize = 256;

/// Name of the table holding the store's schema and format version; no
/// registered table may use it.
pub const META_TABLE: &str = "meta";

const META_SCHEMA_KEY: &[u8] = b"schema";
const META_VERSION_KEY: &[u8] = b"format_version";

const _: () = assert!(DEFAULT_INITIAL_MAP_BYTES.is_multiple_of(MAP_GRANULE_BYTES));
const _: () = assert!(DEFAULT_MAX_MAP_BYTES.is_multiple_of(MAP_GRANULE_BYTES));
const _: () = assert!(DEFAULT_INITIAL_MAP_BYTES <= DEFAULT_MAX_MAP_BYTES);

/// A table handle as heed gives it: raw bytes in, raw bytes out.
pub(crate) type RawTable = Database<'static, Bytes, Bytes>;

/// How to open a [`Store`]: what it must contain and how large it may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Name of the data model (e.g. `"gonka-chain"`); a store written under
    /// another schema is refused.
    pub schema: &'static str,
    /// Version of the on-disk encoding; a store of another version is refused.
    pub format_version: u32,
    /// Every table the program uses. Missing ones are created (unless
    /// `read_only`).
    pub tables: &'static [TableDef],
    /// Smallest map size a writable store opens with, rounded up to
    /// [`MAP_GRANULE_BYTES`]; an existing store keeps the size it grew to,
    /// within `max_map_bytes`. A read-only store maps just its data.
    pub initial_map_bytes: usize,
    /// Ceiling for map growth, rounded up to [`MAP_GRANULE_BYTES`]; a write
    /// that needs more fails and poisons the store. A store whose data
    /// already exceeds it opens with a map just large enough for the data.
    pub max_map_bytes: usize,
    /// Open without write access: writes are refused and nothing is created.
    pub read_only: bool,
}

impl StoreOptions {
    /// Options for a writable store with the default map sizes.
    pub const fn new(schema: &'static str, format_version: u32, tables: &'static [TableDef]) -> Self {
        Self {
            schema,
            format_version,
            tables,
            initial_map_bytes: DEFAULT_INITIAL_MAP_BYTES,
            max_map_bytes: DEFAULT_MAX_MAP_BYTES,
            read_only: false,
        }
    }

    /// The same options, read-only.
    pub const fn read_only(self) -> Self {
        Self { read_only: true, ..self }
    }

    /// Checks the options against each other and against LMDB's rules, and
    /// rounds the map sizes to [`MAP_GRANULE_BYTES`].
    fn checked(self, path: &Path) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidOptions { path: path.to_owned(), reason };
        let round = |bytes: usize| bytes.max(1).checked_next_multiple_of(MAP_GRANULE_BYTES);
        let (Some(initial), Some(max)) = (round(self.initial_map_bytes), round(self.max_map_bytes)) else {
            return Err(invalid("map size overflows usize when rounded to 1 MiB".into()));
        };
        if initial > max {
            return Err(invalid(format!(
                "initial_map_bytes ({initial}) exceeds max_map_bytes ({max}) after rounding to 1 MiB"
            )));
        }
        if self.tables.len() > MAX_TABLES {
            return Err(invalid(format!("{} tables registered, at most {MAX_TABLES}", self.tables.len())));
        }
        for (i, def) in self.tables.iter().enumerate() {
            if def.name.is_empty() || def.name.contains('\0') {
                return Err(invalid(format!("table name {:?} is empty or contains NUL", def.name)));
            }
            if def.name == META_TABLE {
                return Err(invalid(format!("table name `{META_TABLE}` is reserved for the store's format")));
            }
            if self.tables[..i].iter().any(|earlier| earlier.name == def.name) {
                return Err(invalid(format!("table `{}` is registered twice", def.name)));
            }
        }
        Ok(Self { initial_map_bytes: initial, max_map_bytes: max, ..self })
    }
}

/// Size and entry count of one table, from [`Store::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// The table's registered name.
    pub name: &'static str,
    /// Number of entries.
    pub entries: u64,
    /// Bytes of the pages the table occupies (branch, leaf and overflow).
    pub bytes: u64,
}

/// One LMDB environment holding the registered tables: the handle every
/// read and write goes through.
///
/// Open it once per path and process (heed refuses a second open) and share
/// it by reference; it is `Send + Sync`.
pub struct Store {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) path: PathBuf,
    pub(crate) options: StoreOptions,
    /// Table handles in registry order, beside their definitions.
    tables: Vec<(&'static TableDef, RawTable)>,
    /// Longest key this LMDB build accepts.
    pub(crate) max_key_bytes: usize,
    /// Tells this store apart in the per-thread bookkeeping of `txn.rs`.
    pub(crate) id: u64,
    /// Held for the whole of every [`Store::write`] and every map resize.
    pub(crate) writer: Mutex<()>,
    /// Counts live read transactions so a resize can wait until none is.
    pub(crate) gate: ReaderGate,
    /// The first write failure, with its sources; set once, never cleared.
    poison: OnceLock<String>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("schema", &self.options.schema)
            .field("format_version", &self.options.format_version)
            .field("tables", &self.tables.len())
            .field("read_only", &self.options.read_only)
            .field("poisoned", &self.poison.get())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or, unless read-only, creates) the store at directory `path`.
    ///
    /// A fresh store gets `options.schema` and `options.format_version`
    /// written to its `meta` table; an existing one must carry the same, or
    /// this fails with [`StoreError::Format`]. Registered tables missing on
    /// disk are created, except read-only, where that is
    /// [`StoreError::MissingTable`].
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let options = options.checked(path)?;
        if !options.read_only {
            fs::create_dir_all(path)
                .map_err(|source| StoreError::CreateDir { path: path.to_owned(), source })?;
        }
        let env = open_env(path, &options)?;
        let opened = if options.read_only {
            open_tables(&env, path, &options)?
        } else {
            create_tables(&env, path, &options)?
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Store {
            max_key_bytes: env.max_key_size(),
            env,
            path: path.to_owned(),
            options,
            tables: options.tables.iter().zip(opened.tables).collect(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            writer: Mutex::new(()),
            gate: ReaderGate::default(),
            poison: OnceLock::new(),
        })
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it was opened with, map sizes rounded.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The registered tables, in registry order.
    pub fn tables(&self) -> &'static [TableDef] {
        self.options.tables
    }

    /// The current size of the memory map in bytes (not the file size).
    pub fn map_bytes(&self) -> usize {
        self.env.info().map_size
    }

    /// Entry count and page bytes of every registered table, as of `txn`.
    ///
    /// # Panics
    /// If `txn` belongs to another store: that is a bug in the caller.
    pub fn stats(&self, txn: &ReadTxn<'_>) -> Result<Vec<TableStats>, StoreError> {
        assert!(ptr::eq(txn.store(), self), "Store::stats given a transaction of another store");
        self.tables
            .iter()
            .map(|(def, table)| {
                let stat = table.stat(txn.raw()).map_err(|source| StoreError::Table {
                    table: def.name,
                    op: "read statistics",
                    key: None,
                    source,
                })?;
                let pages = stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
                Ok(TableStats {
                    name: def.name,
                    entries: stat.entries as u64,
                    bytes: pages as u64 * u64::from(stat.page_size),
                })
            })
            .collect()
    }

    /// Whether an earlier write failed, making this handle refuse all use.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get().is_some()
    }

    /// The heed handle of a registered table. Every read and write looks it
    /// up, so the first pass compares addresses only: of the definition (a
    /// `Table` built from the registry slice) or of its name (a registry
    /// built by copying the `Table`s' definitions shares their name
    /// literals). Comparing names byte by byte is the fallback.
    pub(crate) fn raw_table(&self, def: &'static TableDef) -> Result<RawTable, StoreError> {
        let same_address = |known: &TableDef| ptr::eq(known, def) || ptr::eq(known.name, def.name);
        self.tables
            .iter()
            .find(|(known, _)| same_address(known))
            .or_else(|| self.tables.iter().find(|(known, _)| known.name == def.name))
            .map(|(_, table)| *table)
            .ok_or_else(|| StoreError::UnknownTable { path: self.path.clone(), table: def.name })
    }

    /// Fails with [`StoreError::Poisoned`] once a write has failed.
    pub(crate) fn check_poison(&self) -> Result<(), StoreError> {
        match self.poison.get() {
            Some(reason) => Err(StoreError::Poisoned { path: self.path.clone(), reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// The first write failure, once there was one.
    pub(crate) fn poison_reason(&self) -> Option<&str> {
        self.poison.get().map(String::as_str)
    }

    /// Marks the store unusable; only the first reason is kept.
    pub(crate) fn poison_with(&self, reason: String) {
        // A second failure is a consequence of the first, which is the one
        // worth reporting, so losing the race to set it is fine.
        let _ = self.poison.set(reason);
    }
}

/// Opens the environment with `max_dbs` = registered tables + `meta`.
fn open_env(path: &Path, options: &StoreOptions) -> Result<Env<WithoutTls>, StoreError> {
    let lmdb = |source| StoreError::Lmdb { path: path.to_owned(), op: "open the environment", source };
    // `checked` bounds the table count by MAX_TABLES, far below u32::MAX.
    let max_dbs = u32::try_from(options.tables.len() + 1).unwrap_or(u32::MAX);
    // Without thread-local reader slots, one thread may hold several read
    // transactions at once (LMDB otherwise fails the second with BadRslot).
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    // No map size here: LMDB then takes the size stored in an existing
    // environment (the one it grew to), where an explicit size would replace
    // it, and make the first write after every reopen grow the map again.
    builder.max_dbs(max_dbs);
    if options.read_only {
        // SAFETY: heed marks every flag unsafe because NO_SYNC, NO_META_SYNC
        // and NO_LOCK weaken durability or locking; READ_ONLY does neither:
        // the process only maps the file read-only and writes nothing.
        unsafe { builder.flags(EnvFlags::READ_ONLY) };
    }
    // SAFETY: the map stays sound as long as nothing but LMDB modifies
    // `data.mdb` and `lock.mdb` while it is open: this crate opens them only
    // through LMDB, with its lock file in use (never NO_LOCK), so other
    // processes coordinate through it; the store directory is documented as
    // owned by the store and must not sit on a network file system. heed
    // itself refuses a second open of the same path in this process.
    let env = unsafe { builder.open(path) }.map_err(lmdb)?;
    // Bring the map within [initial, max] (LMDB raises a size below the data
    // to the data's size). A read-only store maps just its data.
    let map_bytes = env.info().map_size;
    let wanted = map_bytes.clamp(options.initial_map_bytes, options.max_map_bytes);
    if !options.read_only && wanted != map_bytes {
        // SAFETY: `Env::resize` needs no transaction of this environment open
        // in this process and no reference into its map: `env` was opened
        // just above and nothing has used it yet, and heed refuses a second
        // `Env` for the same path in this process. Both bounds are multiples
        // of MAP_GRANULE_BYTES (`checked`), hence of the OS page size.
        unsafe { env.resize(wanted) }.map_err(|source| StoreError::Lmdb {
            path: path.to_owned(),
            op: "set the map size",
            source,
        })?;
    }
    Ok(env)
}

/// Opens the meta table and every registered table of a read-only store,
/// after checking the format.
fn open_tables(
    env: &Env<WithoutTls>,
    path: &Path,
    options: &StoreOptions,
) -> Result<Opened<'static>, StoreError> {
    let lmdb = |op| move |source| StoreError::Lmdb { path: path.to_owned(), op, source };
    let rtxn = env.read_txn().map_err(lmdb("begin a read transaction"))?;
    let opened = env.open_databases_and_commit(rtxn, |opener, rtxn| {
        let Some(meta) = opener.open_database::<Bytes, Bytes>(rtxn, Some(META_TABLE))? else {
            return Err(if env_is_empty(opener.open_database(rtxn, None)?, rtxn)? {
                StoreError::MissingTable { path: path.to_owned(), table: META_TABLE }.into()
            } else {
                StoreError::MissingMeta { path: path.to_owned() }.into()
            });
        };
        check_meta(meta, rtxn, path, options)?;
        let mut tables = Vec::with_capacity(options.tables.len());
        for def in options.tables {
            let table = opener.open_database(rtxn, Some(def.name))?;
            tables.push(table.ok_or(StoreError::MissingTable { path: path.to_owned(), table: def.name })?);
        }
        Ok(CommitOrAbort::<_, Infallible>::Commit(Opened { tables }))
    });
    committed(opened, path)
}

/// Checks the format of a writable store, or writes it into a fresh one,
/// and creates the registered tables that are missing: all in one
/// transaction, so a refused open writes nothing.
fn create_tables(
    env: &Env<WithoutTls>,
    path: &Path,
    options: &StoreOptions,
) -> Result<Opened<'static>, StoreError> {
    let lmdb = |op| move |source| StoreError::Lmdb { path: path.to_owned(), op, source };
    let wtxn = env.write_txn().map_err(lmdb("begin a write transaction"))?;
    let opened = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        match opener.open_database::<Bytes, Bytes>(wtxn, Some(META_TABLE))? {
            Some(meta) => check_meta(meta, wtxn, path, options)?,
            None => {
                if !env_is_empty(opener.open_database(wtxn, None)?, wtxn)? {
                    return Err(StoreError::MissingMeta { path: path.to_owned() }.into());
                }
                let meta: Database<'_, Bytes, Bytes> = opener.create_database(wtxn, Some(META_TABLE))?;
                meta.put(wtxn, META_SCHEMA_KEY, options.schema.as_bytes())?;
                meta.put(wtxn, META_VERSION_KEY, &options.format_version.to_le_bytes())?;
            }
        }
        let mut tables = Vec::with_capacity(options.tables.len());
        for def in options.tables {
            tables.push(opener.create_database(wtxn, Some(def.name))?);
        }
        Ok(CommitOrAbort::<_, Infallible>::Commit(Opened { tables }))
    });
    committed(opened, path)
}

/// The tables once the opening transaction committed, with the path
/// attached to any LMDB failure.
fn committed(
    opened: Result<CommitOrAbort<Opened<'static>, Infallible>, OpenFailure>,
    path: &Path,
) -> Result<Opened<'static>, StoreError> {
    match opened {
        Ok(CommitOrAbort::Commit(opened)) => Ok(opened),
        Ok(CommitOrAbort::Abort(never)) => match never {},
        Err(OpenFailure::Store(error)) => Err(error),
        Err(OpenFailure::Lmdb(source)) => {
            Err(StoreError::Lmdb { path: path.to_owned(), op: "open the tables", source })
        }
    }
}

/// The store's format as it should read in error messages.
fn describe_format(schema: &[u8], version: Option<u32>) -> String {
    let version = version.map_or_else(|| "<missing>".to_owned(), |v| v.to_string());
    format!("schema {:?} version {version}", String::from_utf8_lossy(schema))
}

/// Compares the `meta` table with the options; any difference is
/// [`StoreError::Format`].
fn check_meta(
    meta: Database<'_, Bytes, Bytes>,
    txn: &RoTxn<'_>,
    path: &Path,
    options: &StoreOptions,
) -> Result<(), OpenFailure> {
    let schema = meta.get(txn, META_SCHEMA_KEY)?;
    let version = match meta.get(txn, META_VERSION_KEY)? {
        None => None,
        Some(bytes) => match <[u8; 4]>::try_from(bytes) {
            Ok(le) => Some(u32::from_le_bytes(le)),
            Err(_) => {
                return Err(OpenFailure::Store(StoreError::Corrupt {
                    table: META_TABLE,
                    key: hex::encode(META_VERSION_KEY),
                    reason: format!(
                        "format_version is {} bytes, expected 4 (u32 little-endian)",
                        bytes.len()
                    ),
                }));
            }
        },
    };
    if schema == Some(options.schema.as_bytes()) && version == Some(options.format_version) {
        return Ok(());
    }
    Err(OpenFailure::Store(StoreError::Format {
        path: path.to_owned(),
        found: match schema {
            Some(schema) => describe_format(schema, version),
            None => {
                format!("schema <missing> version {}", version.map_or("<missing>".into(), |v| v.to_string()))
            }
        },
        expected: describe_format(options.schema.as_bytes(), Some(options.format_version)),
    }))
}

/// Whether the environment has no named tables and no entries, i.e. is
/// fresh, judged by its unnamed main table (where LMDB lists named tables).
fn env_is_empty(main: Option<Database<'_, Bytes, Bytes>>, txn: &RoTxn<'_>) -> heed::Result<bool> {
    match main {
        Some(main) => main.is_empty(txn),
        None => Ok(true),
    }
}

/// Why opening the tables failed, before the path is attached to LMDB errors.
enum OpenFailure {
    Lmdb(heed::Error),
    Store(StoreError),
}

impl From<heed::Error> for OpenFailure {
    fn from(error: heed::Error) -> Self {
        Self::Lmdb(error)
    }
}

impl From<StoreError> for OpenFailure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The table handles opened inside the opening transaction; heed makes them
/// `'static` once it commits.
struct Opened<'e> {
    tables: Vec<Database<'e, Bytes, Bytes>>,
}

impl OnCommit for Opened<'_> {
    type Committed = Opened<'static>;

    fn on_commit(self, token: &CommitToken) -> Opened<'static> {
        Opened { tables: self.tables.into_iter().map(|table| table.on_commit(token)).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::test_support::{BLOBS, SAMPLES, SCHEMA, TABLES, VERSION, open, options, sample};

    #[test]
    fn format_version_or_schema_mismatch_is_refused_on_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(open(dir.path()));

        let newer = StoreOptions { format_version: VERSION + 1, ..options() };
        let error = Store::open(dir.path(), newer).expect_err("other version");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Format { .. }), "{message}");
        assert!(message.contains("version 3") && message.contains("version 4"), "names both: {message}");

        let other = StoreOptions { schema: "someone-else", ..options() };
        let error = Store::open(dir.path(), other).expect_err("other schema");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Format { .. }), "{message}");
        assert!(message.contains(SCHEMA) && message.contains("someone-else"), "names both: {message}");

        // The refused opens wrote nothing: the original options still fit.
        drop(open(dir.path()));
        drop(Store::open(dir.path(), options().read_only()).expect("read-only reopen"));
    }

    #[test]
    fn read_only_open_needs_every_table_and_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = Store::open(&dir.path().join("absent"), options().read_only()).expect_err("no store");
        assert!(matches!(error, StoreError::Lmdb { op: "open the environment", .. }), "{error}");
        assert!(!dir.path().join("absent").exists(), "read-only open creates nothing");

        // A store written by a build that registered only the first table.
        let first_only = StoreOptions { tables: &TABLES[..1], ..options() };
        drop(Store::open(dir.path(), first_only).expect("open with one table"));
        let error = Store::open(dir.path(), options().read_only()).expect_err("missing table");
        assert!(matches!(error, StoreError::MissingTable { table: "blobs", .. }), "{error}");
        assert!(error.to_string().contains("`blobs`"), "{error}");
        // Writable, the missing table is created.
        drop(open(dir.path()));
        drop(Store::open(dir.path(), options().read_only()).expect("all tables now"));
    }

    #[test]
    fn an_environment_without_meta_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut builder = EnvOpenOptions::new();
            builder.max_dbs(2);
            // SAFETY: a fresh temporary directory that nothing else opens.
            let env = unsafe { builder.open(dir.path()) }.expect("raw env");
            let wtxn = env.write_txn().expect("write txn");
            env.create_databases_and_commit(wtxn, |opener, wtxn| {
                let foreign: Database<'_, Bytes, Bytes> = opener.create_database(wtxn, Some("foreign"))?;
                foreign.put(wtxn, b"k", b"v")?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, Infallible>::Commit(()))
            })
            .expect("foreign table");
        }
        let error = Store::open(dir.path(), options()).expect_err("foreign environment");
        assert!(matches!(error, StoreError::MissingMeta { .. }), "{error}");
    }

    #[test]
    fn invalid_options_are_refused_before_touching_disk() {
        static CLASH: [TableDef; 2] = [
            TableDef { name: "a", doc: "", key: "", value: "" },
            TableDef { name: "a", doc: "", key: "", value: "" },
        ];
        static RESERVED: [TableDef; 1] = [TableDef { name: META_TABLE, doc: "", key: "", value: "" }];
        static NUL: [TableDef; 1] = [TableDef { name: "a\0b", doc: "", key: "", value: "" }];
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("never");
        let inverted = StoreOptions { initial_map_bytes: 8 << 20, max_map_bytes: 4 << 20, ..options() };
        for bad in [
            inverted,
            StoreOptions { tables: &CLASH, ..options() },
            StoreOptions { tables: &RESERVED, ..options() },
            StoreOptions { tables: &NUL, ..options() },
        ] {
            let error = Store::open(&path, bad).expect_err("invalid options");
            assert!(matches!(error, StoreError::InvalidOptions { .. }), "{error}");
        }
        assert!(!path.exists(), "nothing created for invalid options");
    }

    #[test]
    fn store_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Store>();
        shareable::<crate::Table<crate::test_support::Sample>>();
    }

    #[test]
    fn reopen_keeps_the_map_within_the_options() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(open(dir.path()));
        let small = StoreOptions { initial_map_bytes: 1 << 20, max_map_bytes: 2 << 20, ..options() };
        let store = Store::open(dir.path(), small).expect("reopen with a lower ceiling");
        assert_eq!(store.map_bytes(), 2 << 20, "a stored 64 MiB map is brought under the new ceiling");
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.map_bytes(), DEFAULT_INITIAL_MAP_BYTES, "and raised to the initial size again");
    }

    #[test]
    fn stats_count_entries_and_pages_per_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path());
        store
            .write(|txn| {
                (0..50).try_for_each(|h| SAMPLES.put(txn, &keys::u64(h), &sample(h)))?;
                BLOBS.put(txn, &keys::u64(0), &vec![9; 100_000])
            })
            .expect("write");
        let txn = store.read().expect("read");
        let stats = store.stats(&txn).expect("stats");
        assert_eq!(
            stats.iter().map(|s| (s.name, s.entries)).collect::<Vec<_>>(),
            [("samples", 50), ("blobs", 1)]
        );
        assert!(stats.iter().all(|s| s.bytes > 0), "{stats:?}");
        assert!(stats[1].bytes >= 100_000, "an overflow value counts its pages: {stats:?}");
        assert_eq!(store.tables(), &TABLES);
        assert!(store.map_bytes() >= DEFAULT_INITIAL_MAP_BYTES);
    }
}
