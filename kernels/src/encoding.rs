//! The encodings of spec §1: the tagged hash `H`, `unit(w)`, `bf16(x)` and the
//! weight scale `s(n)`.

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 output.
pub type Hash32 = [u8; 32];

/// `H(tag, p1, p2, …)`: SHA-256 of the tag's ASCII bytes, one zero byte, then
/// each part as `u32_le(len) ‖ bytes`.
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0u8]);
    for p in parts {
        let len = u32::try_from(p.len()).expect("hash part longer than 4 GiB");
        h.update(len.to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// `unit(w)`: the odd integer `2·(w >> 8) + 1 − 2^24`, times `2^-24`; exact in f32.
#[inline(always)]
pub fn unit(w: u32) -> f32 {
    let n = 2 * (w >> 8) as i32 + 1 - (1 << 24);
    n as f32 * (1.0 / 16_777_216.0)
}

/// Rounds an f32 to the nearest bfloat16 (ties to even) and returns its 16 bits.
/// NaN stays NaN (quiet); the spec's values are all finite.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bfloat16 bit pattern.
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `bf16(x)` as the spec writes it: the f32 with the low 16 bits cleared after rounding.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(bf16_bits(x))
}

/// `s(n)`: the f32 nearest to `sqrt(3 / n)`, computed in f64 and rounded once.
pub fn scale(fan_in: usize) -> f32 {
    (3.0f64 / fan_in as f64).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_constants_match_spec() {
        assert_eq!(scale(512).to_bits(), 0x3d9c_c471);
        assert_eq!(scale(8192).to_bits(), 0x3c9c_c471);
        assert_eq!(scale(1).to_bits(), 0x3fdd_b3d7);
    }

    #[test]
    fn unit_extremes_are_odd_and_inside() {
        assert_eq!(unit(0), -(16_777_215.0 / 16_777_216.0));
        assert_eq!(unit(u32::MAX), 16_777_215.0 / 16_777_216.0);
        assert_eq!(unit(0x8000_0000), 1.0 / 16_777_216.0);
    }

    #[test]
    fn bf16_rounds_ties_to_even() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even gives 1.0.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        assert_eq!(round_bf16(-2.5), -2.5);
    }
}
