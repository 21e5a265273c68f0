//! Property: a byte stream from a peer, cut into frames as the connection
//! reader cuts it (header checked against the handshake's or the node's
//! per-kind limits before any body is read), then each body decoded as its
//! kind's message — hello, reject reason, or a host message — never panics,
//! and no body beyond its kind's limit is ever accepted.
#![no_main]

use gonka_engine::node::messages::decode_message;
use gonka_engine::node::runtime::kind_limits;
use gonka_net::peer::wire::{
    FRAME_HEADER_BYTES, FrameLimits, Hello, KIND_HELLO, KIND_REJECT, decode_reason,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&phase, mut rest)) = data.split_first() else { return };
    let limits = if phase & 1 == 0 { FrameLimits::handshake() } else { FrameLimits::established(&kind_limits()) };
    while rest.len() >= FRAME_HEADER_BYTES {
        let header: [u8; FRAME_HEADER_BYTES] = rest[..FRAME_HEADER_BYTES].try_into().expect("five bytes");
        let Ok((kind, len)) = limits.check_header(&header) else { return };
        let (max, _) = limits.limit(kind).expect("an accepted kind has a limit");
        assert!(len <= max, "a body of {len} bytes passed a limit of {max}");
        rest = &rest[FRAME_HEADER_BYTES..];
        let body_len = (len as usize).min(rest.len());
        let body = &rest[..body_len];
        match kind {
            KIND_HELLO => drop(Hello::decode(body)),
            KIND_REJECT => drop(decode_reason(body)),
            k => drop(decode_message(k, body)),
        }
        rest = &rest[body_len..];
    }
});
