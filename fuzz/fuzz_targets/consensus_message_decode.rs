//! Property: decoding arbitrary bytes as a consensus message or as
//! equivocation evidence never panics; whatever decodes re-encodes to a
//! fixed point, and checking evidence against a fixed host list returns a
//! voter or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use gonka_engine::consensus::{Equivocation, Message};
use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::crypto::votes::EpochHosts;
use gonka_engine::crypto::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fn hosts() -> &'static EpochHosts {
    static HOSTS: OnceLock<EpochHosts> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let list: Vec<_> = (0..4u8).map(|i| (HostKey::from_ikm(&[i + 1; 32]).public_key(), 1)).collect();
        EpochHosts::new(&list).expect("valid fixed host list")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<Message>(data) {
        let once = encode(&m);
        assert_eq!(encode(&decode::<Message>(&once).expect("a re-encoded message decodes")), once);
        let _ = m.height();
    }
    if let Ok(e) = decode::<Equivocation>(data) {
        let once = encode(&e);
        assert_eq!(encode(&decode::<Equivocation>(&once).expect("re-encoded evidence decodes")), once);
        let _ = e.verify(hosts(), &SigCache::new(16));
    }
});
