//! Integration tests of gonka-engine, one binary.

mod chain;
mod crypto_beacon;
mod crypto_selection;
mod crypto_votes;
mod economy;
mod localnet;
mod node_messages;
mod proof_files;
mod sim;
mod store;
mod store_crash;

/// Held by the tests that load every core for minutes (the 50-host
/// simulation, the multi-process local network): run side by side on a
/// 2-core machine, each starves the other's timing.
pub(crate) static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Checks each `(name, encoding, expected hash)`: an encoding's
/// `H("test/frozen", bytes)` changes only with a new wire version.
fn assert_frozen(cases: &[(&str, Vec<u8>, &str)]) {
    let changed: Vec<String> = cases
        .iter()
        .filter_map(|(name, bytes, want)| {
            let got = hex::encode(gonka_kernels::encoding::tagged_hash("test/frozen", &[bytes]));
            (got != *want).then(|| format!("{name}: {got}"))
        })
        .collect();
    assert!(changed.is_empty(), "wire encodings changed: {changed:#?}");
}
