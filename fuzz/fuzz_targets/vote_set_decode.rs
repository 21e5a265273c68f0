//! Property: decoding arbitrary bytes as a vote set never panics; any set it
//! accepts respects the field bounds and re-encodes to a fixed point; and
//! verifying it against a fixed host list returns an error or a tally, never
//! a panic.
#![no_main]

use std::sync::OnceLock;

use gonka_engine::crypto::votes::{
    EpochHosts, MAX_BITMAP_BYTES, MAX_VOTE_MESSAGE_BYTES, Threshold, VoteSet, verify_vote_set,
};
use gonka_engine::crypto::wire::{decode, encode};
use gonka_engine::crypto::{Domain, HostKey};
use libfuzzer_sys::fuzz_target;

/// Ten hosts of equal weight, built once.
fn hosts() -> &'static EpochHosts {
    static HOSTS: OnceLock<EpochHosts> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let list: Vec<_> = (0..10u8).map(|i| (HostKey::from_ikm(&[i + 1; 32]).public_key(), 1)).collect();
        EpochHosts::new(&list).expect("valid fixed host list")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = decode::<VoteSet>(data) {
        assert!(set.message.len() <= MAX_VOTE_MESSAGE_BYTES && set.signers.len() <= MAX_BITMAP_BYTES);
        let once = encode(&set);
        let again = decode::<VoteSet>(&once).expect("a re-encoded set decodes");
        assert_eq!(encode(&again), once, "re-encoding must be stable");
        let _ = verify_vote_set(hosts(), Domain::BlockVote, &set.message, &set, Threshold::FINALITY);
    }
});
