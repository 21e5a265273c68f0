//! Big-endian key encodings, so that LMDB's byte-wise key order is the
//! numeric order: `u64(2) < u64(10)` as bytes, which little-endian would get
//! wrong.
//!
//! Encoders return fixed arrays (no allocation); decoders return `None` for
//! a slice of the wrong length instead of panicking, since keys come from
//! disk.

/// `v` as 8 big-endian bytes.
pub const fn u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// `v` as 4 big-endian bytes.
pub const fn u32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// `(a, b)` as 12 bytes ordered by `a`, then `b` (e.g. height, then index).
pub const fn u64_u32(a: u64, b: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    let (hi, lo) = (a.to_be_bytes(), b.to_be_bytes());
    let mut i = 0;
    while i < 8 {
        out[i] = hi[i];
        i += 1;
    }
    while i < 12 {
        out[i] = lo[i - 8];
        i += 1;
    }
    out
}

/// `(a, b)` as 16 bytes ordered by `a`, then `b`.
pub const fn u64_u64(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (hi, lo) = (a.to_be_bytes(), b.to_be_bytes());
    let mut i = 0;
    while i < 8 {
        out[i] = hi[i];
        out[i + 8] = lo[i];
        i += 1;
    }
    out
}

/// `u64` prefix followed by arbitrary bytes (e.g. height, then a hash):
/// all keys of one prefix sort together, in the order of their suffixes.
pub fn u64_bytes(a: u64, suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + suffix.len());
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(suffix);
    out
}

/// Decodes [`u64`](fn@u64); `None` unless `key` is exactly 8 bytes.
pub fn read_u64(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Decodes [`u32`](fn@u32); `None` unless `key` is exactly 4 bytes.
pub fn read_u32(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.try_into().ok()?))
}

/// Decodes [`u64_u32`]; `None` unless `key` is exactly 12 bytes.
pub fn read_u64_u32(key: &[u8]) -> Option<(u64, u32)> {
    let (a, b) = key.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*a), read_u32(b)?))
}

/// Decodes [`u64_u64`]; `None` unless `key` is exactly 16 bytes.
pub fn read_u64_u64(key: &[u8]) -> Option<(u64, u64)> {
    let (a, b) = key.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*a), read_u64(b)?))
}

/// Splits a [`u64_bytes`] key into its prefix and suffix; `None` when
/// shorter than 8 bytes.
pub fn read_u64_bytes(key: &[u8]) -> Option<(u64, &[u8])> {
    let (a, rest) = key.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*a), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_numeric_order() {
        let values = [0u64, 1, 2, 9, 10, 255, 256, 65_535, 1 << 32, u64::MAX - 1, u64::MAX];
        for pair in values.windows(2) {
            assert!(u64(pair[0]) < u64(pair[1]), "u64 key order broken at {pair:?}");
        }
        let pairs = [(0u64, 0u32), (0, 1), (0, u32::MAX), (1, 0), (256, 3), (u64::MAX, 0)];
        for w in pairs.windows(2) {
            assert!(u64_u32(w[0].0, w[0].1) < u64_u32(w[1].0, w[1].1), "pair order broken at {w:?}");
            assert!(u64_u64(w[0].0, w[0].1.into()) < u64_u64(w[1].0, w[1].1.into()));
        }
    }

    #[test]
    fn decoders_invert_encoders_and_reject_wrong_lengths() {
        assert_eq!(read_u64(&u64(42)), Some(42));
        assert_eq!(read_u32(&u32(7)), Some(7));
        assert_eq!(read_u64_u32(&u64_u32(5, 9)), Some((5, 9)));
        assert_eq!(read_u64_u64(&u64_u64(5, 9)), Some((5, 9)));
        assert_eq!(read_u64_bytes(&u64_bytes(3, b"abc")), Some((3, &b"abc"[..])));
        assert_eq!(read_u64(&[1, 2, 3]), None);
        assert_eq!(read_u64_u32(&u64(1)), None);
        assert_eq!(read_u64_u64(&u64_u32(1, 2)), None);
        assert_eq!(read_u64_bytes(&[0; 7]), None);
    }
}
