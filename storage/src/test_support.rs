//! Fixtures shared by the unit tests: a value type with nested vectors and
//! strings, a two-table registry, and stores in temporary directories.

use std::path::Path;

use crate::{Store, StoreError, StoreOptions, Table, TableDef};

/// A value with out-of-line data at two levels, like a block with txs.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
#[rkyv(derive(Debug))]
pub struct Sample {
    pub height: u64,
    pub note: String,
    pub items: Vec<Item>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
#[rkyv(derive(Debug))]
pub struct Item {
    pub id: u32,
    pub payload: Vec<u8>,
    pub tags: Vec<String>,
}

pub static TABLES: [TableDef; 2] = [
    TableDef { name: "samples", doc: "samples by height", key: "height u64 BE", value: "Sample" },
    TableDef { name: "blobs", doc: "large values", key: "index u64 BE", value: "Vec<u8>" },
];
pub const SAMPLES: Table<Sample> = Table::new(&TABLES[0]);
pub const BLOBS: Table<Vec<u8>> = Table::new(&TABLES[1]);

pub const SCHEMA: &str = "gonka-storage-test";
pub const VERSION: u32 = 3;

pub fn options() -> StoreOptions {
    StoreOptions::new(SCHEMA, VERSION, &TABLES)
}

pub fn open(path: &Path) -> Store {
    Store::open(path, options()).expect("open test store")
}

/// A sample whose size and contents follow from `height`.
pub fn sample(height: u64) -> Sample {
    let items = (0..height % 4)
        .map(|i| Item {
            id: i as u32,
            payload: vec![height as u8; (height as usize * 7 + i as usize) % 50],
            tags: vec![format!("tag-{height}-{i}"); i as usize],
        })
        .collect();
    Sample { height, note: format!("sample at {height}"), items }
}

/// An error a write closure returns to give up.
pub fn give_up() -> StoreError {
    StoreError::aborted("test closure gives up")
}
