//! Property: decoding arbitrary bytes as any message of the DKG and the random
//! beacon (deals, complaints, justifications, partial signatures, seed commits
//! and reveals) never panics, and any message accepted re-encodes to a fixed
//! point. The first byte picks the message kind.
#![no_main]

use gonka_engine::crypto::beacon::{BeaconPartials, SeedCommit, SeedReveal};
use gonka_engine::crypto::dkg::DkgMessage;
use gonka_engine::crypto::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

/// Decodes `bytes` as `$t`; if accepted, checks the re-encoding is stable.
macro_rules! roundtrip {
    ($t:ty, $bytes:expr) => {
        if let Ok(m) = decode::<$t>($bytes) {
            let once = encode(&m);
            let again = decode::<$t>(&once).expect("a re-encoded message decodes");
            assert_eq!(encode(&again), once, "re-encoding must be stable");
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else { return };
    match kind % 4 {
        0 => roundtrip!(DkgMessage, bytes),
        1 => roundtrip!(BeaconPartials, bytes),
        2 => roundtrip!(SeedCommit, bytes),
        _ => roundtrip!(SeedReveal, bytes),
    }
});
