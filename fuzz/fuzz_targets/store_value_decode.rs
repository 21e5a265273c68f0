//! Property: arbitrary bytes stored as a value of any chain-store table are
//! rejected with an error naming the table, or decode; a decoded state
//! snapshot restores into a chain or is refused, never a panic.
#![no_main]

use gonka_engine::chain::Chain;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::store::tables::*;
use gonka_storage::Table;
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz";

fn check<V: gonka_storage::Record>(table: Table<V>, bytes: &[u8]) -> Option<V> {
    match table.decode_owned(KEY, bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(e.to_string().contains(table.name()), "the error names the table: {e}");
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    // The selector is the table's position in `TABLES`.
    match selector as usize % TABLES.len() {
        0 => drop(check(GENESIS, bytes)),
        1 => drop(check(BLOCKS, bytes)),
        2 => drop(check(BLOCK_HASHES, bytes)),
        3 => drop(check(FINALITY, bytes)),
        4 => drop(check(TRANSACTIONS, bytes)),
        5 => drop(check(HOSTS, bytes)),
        6 => drop(check(PROOF_BATCHES, bytes)),
        7 => drop(check(VALIDATIONS, bytes)),
        8 => drop(check(TASKS, bytes)),
        9 => drop(check(CLOSED_TASKS, bytes)),
        10 => drop(check(SPRINTS, bytes)),
        11 => drop(check(EPOCHS, bytes)),
        n => {
            let table = if n == 12 { SNAPSHOTS } else { STATE };
            if let Some(state) = check(table, bytes) {
                let _ = Chain::restore(&state, SigCache::default(), |_| None);
            }
        }
    }
});
