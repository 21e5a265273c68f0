//! Property: decoding arbitrary bytes as a host-to-host message of any kind
//! never panics; what decodes is of the kind it was sent as, respects its
//! bounds and re-encodes to a fixed point.
#![no_main]

use gonka_engine::node::messages::{decode_message, NodeMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else { return };
    if let Ok(msg) = decode_message(kind % 10, bytes) {
        assert_eq!(msg.kind(), kind % 10, "a message decodes only as its own kind");
        let once = msg.encode();
        let again = decode_message(msg.kind(), &once).expect("a re-encoded message decodes");
        assert_eq!(again.encode(), once, "re-encoding must be stable");
        let _: &NodeMessage = &again;
    }
});
