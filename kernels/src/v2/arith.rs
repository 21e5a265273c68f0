//! The integer operations of spec v2 §4 and their constants: rounding shifts
//! and divisions (nearest, ties away from zero), integer RMSNorm,
//! requantization to int8, and the three tables (exp, SiLU, rotary).
//!
//! Every function here is exact integer arithmetic; where f64 appears it is a
//! faster way to compute an exact integer quotient, with the proof beside it.

use crate::config::ModelConfig;

use super::V2Error;

/// RMSNorm output scale: a normalised value of 1.0 is the integer 32.
pub const A_RMS: i64 = 32;
/// Largest magnitude of an int8 activation (the range is symmetric, −127..=127).
pub const I8_MAX: i32 = 127;
/// Fixed-point bits of the rotary cos/sin tables.
pub const ROPE_BITS: u32 = 14;
/// Entries of the exp table: `z` is clamped to `0..=255`.
pub const EXP_LEN: usize = 256;
/// Entries of the SiLU table, indexed by `g + 127` for `g` in `−127..=127`.
pub const SILU_LEN: usize = 255;

/// `⌈log2 n⌉` for `n ≥ 1`.
fn ceil_log2(n: usize) -> u32 {
    usize::BITS - (n.max(1) - 1).leading_zeros()
}

/// `⌈⌈log2 n⌉ / 2⌉`: the shift that divides by about `sqrt(n)`.
fn half_log2(n: usize) -> u32 {
    ceil_log2(n).div_ceil(2)
}

/// The per-config shifts of spec v2 §3 (all derived from `d`, `f` and the
/// head size `e` by the formulas below; the spec tabulates them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shifts {
    /// Input to residual: `r = x << s_r`.
    pub s_r: u32,
    /// q, k, v, gate and up accumulators (fan-in `d`) to int8.
    pub s_qkv: u32,
    /// Attention score differences to exp-table steps (1/16 nat each).
    pub s_sc: u32,
    /// Attention-output product (fan-in `d`) added to the residual.
    pub s_o: u32,
    /// SiLU(gate) · up product to int8.
    pub s_h: u32,
    /// Down product (fan-in `f`) added to the residual.
    pub s_d: u32,
}

impl Shifts {
    /// The shifts for a config, after checking that every intermediate of the
    /// forward pass stays inside the range the kernels rely on (spec v2 §6).
    pub fn for_config(c: &ModelConfig) -> Result<Self, V2Error> {
        c.validate()?;
        let (d, f, e) = (c.dim, c.ffn, c.head_dim());
        let s = Self {
            s_r: 6,
            s_qkv: 6 + half_log2(d),
            s_sc: 6 + half_log2(e),
            s_o: half_log2(d).saturating_sub(1),
            // With an odd ⌈log2 d⌉ the gate and up values sit at 1/√2 of the
            // usual scale, so their product needs one bit less of shift.
            s_h: 5 - ceil_log2(d) % 2,
            s_d: half_log2(f).saturating_sub(1),
        };
        s.check_ranges(c)?;
        Ok(s)
    }

    /// The worst-case magnitude of any residual entry: the input plus, per
    /// layer, the largest rounded attention and feed-forward additions.
    pub fn residual_bound(&self, c: &ModelConfig) -> u128 {
        let sq = (I8_MAX as u128).pow(2);
        let add = |k: usize, s: u32| ((sq * k as u128) >> s) + 1;
        ((I8_MAX as u128) << self.s_r) + c.layers as u128 * (add(c.dim, self.s_o) + add(c.ffn, self.s_d))
    }

    fn check_ranges(&self, c: &ModelConfig) -> Result<(), V2Error> {
        let range = |what, bound: u128, limit: u128| {
            if bound <= limit { Ok(()) } else { Err(V2Error::Range { name: c.name, what, bound, limit }) }
        };
        let i32_max = i32::MAX as u128;
        let r = self.residual_bound(c);
        range("the residual", r, i32_max)?;
        // The VNNI kernel sums (a + 128)·w: every partial sum is below 255·127·k.
        range("a matrix-product partial sum", 255 * 127 * c.dim.max(c.ffn) as u128, i32_max)?;
        range("an RMSNorm sum of squares", c.dim as u128 * r * r, u64::MAX as u128)?;
        // The RMSNorm numerator 2·A·|r| + s, divided in f64, must be below 2^53.
        range("an RMSNorm numerator", 2 * A_RMS as u128 * r + r + 1, 1 << 53)?;
        range("an attention numerator", c.seq as u128 * 65_536 * 127, i32_max)?;
        Ok(())
    }
}

/// `x / 2^s` rounded to nearest, ties away from zero.
#[inline(always)]
pub fn rshift_round(x: i64, s: u32) -> i64 {
    let half = (1i64 << s) >> 1;
    let q = (x.abs() + half) >> s;
    if x < 0 { -q } else { q }
}

/// `n / q` rounded to nearest, ties away from zero, for `q > 0`.
#[inline(always)]
pub fn div_round(n: i64, q: i64) -> i64 {
    debug_assert!(q > 0, "divisor must be positive");
    let v = (2 * n.abs() + q) / (2 * q);
    if n < 0 { -v } else { v }
}

/// Clamps to the int8 activation range `−127..=127`.
#[inline(always)]
pub fn clamp8(x: i64) -> i8 {
    x.clamp(-(I8_MAX as i64), I8_MAX as i64) as i8
}

/// Integer RMSNorm of each row of width `d`: `s = isqrt(⌊Σr²/d⌋)`, then
/// `clamp8(div_round(32·r, s))`, or zeros when `s = 0`.
pub fn rms_norm_rows(r: &[i32], d: usize, out: &mut [i8]) {
    for (row, o) in r.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_norm_row(row, o);
    }
}

fn rms_norm_row(row: &[i32], out: &mut [i8]) {
    // `Shifts::for_config` bounds d·r² below 2^64.
    let ss: u64 = row.iter().map(|&v| (i64::from(v) * i64::from(v)) as u64).sum();
    let s = (ss / row.len() as u64).isqrt();
    if s == 0 {
        out.fill(0);
        return;
    }
    let two_s = 2.0 * s as f64;
    for (o, &v) in out.iter_mut().zip(row) {
        // div_round(32·v, s) = ⌊(64·|v| + s) / 2s⌋. The numerator n is an
        // integer below 2^53 (checked in `Shifts::for_config`), so f64 holds it
        // exactly, and the correctly rounded quotient n/2s cannot reach the
        // next integer: its rounding error is at most (n/2s)·2^-53 < 1/2s,
        // the least distance from a non-integer quotient to an integer.
        let n = (2 * A_RMS * i64::from(v).abs() + s as i64) as f64;
        let q = ((n / two_s) as i64).min(I8_MAX as i64);
        *o = (if v < 0 { -q } else { q }) as i8;
    }
}

/// `out = clamp8(rshift_round(acc, s))`.
pub fn requant_rows(acc: &[i32], s: u32, out: &mut [i8]) {
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = clamp8(rshift_round(i64::from(a), s));
    }
}

/// `r += rshift_round(acc, s)`; the residual bound keeps the sum in i32.
pub fn residual_add(r: &mut [i32], acc: &[i32], s: u32) {
    for (x, &a) in r.iter_mut().zip(acc) {
        *x += rshift_round(i64::from(a), s) as i32;
    }
}

/// Rotary (spec v2 §4.4 step 3): rotates the `(2i, 2i+1)` pairs of every head of `q` and `k` (the first
/// `2d` values of each `[q | k | v]` row) into `out` (`[rows, 2d]`, int32,
/// not clamped: a rotated pair may reach 127·√2).
pub fn rope_rows(qkv: &[i8], c: &ModelConfig, tab: &Tables, out: &mut [i32]) {
    let (d, t, e, half) = (c.dim, c.seq, c.head_dim(), tab.rope_half);
    for (r, (row, o)) in qkv.chunks_exact(3 * d).zip(out.chunks_exact_mut(2 * d)).enumerate() {
        let p = r % t;
        let (cos, sin) = (&tab.rope_cos[p * half..(p + 1) * half], &tab.rope_sin[p * half..(p + 1) * half]);
        for (src, dst) in row[..2 * d].chunks_exact(e).zip(o.chunks_exact_mut(e)) {
            for i in 0..half {
                let (u, w) = (i64::from(src[2 * i]), i64::from(src[2 * i + 1]));
                let (cs, sn) = (i64::from(cos[i]), i64::from(sin[i]));
                dst[2 * i] = rshift_round(u * cs - w * sn, ROPE_BITS) as i32;
                dst[2 * i + 1] = rshift_round(u * sn + w * cs, ROPE_BITS) as i32;
            }
        }
    }
}

/// `h = clamp8(rshift(SILU[g] · u, s_h))` with `g`, `u` the requantized gate
/// and up values of rows laid out `[gate (f) | up (f)]`.
pub fn swiglu_rows(acc: &[i32], f: usize, silu: &[i8], (s_gu, s_h): (u32, u32), h: &mut [i8]) {
    for (row, out) in acc.chunks_exact(2 * f).zip(h.chunks_exact_mut(f)) {
        let (gate, up) = row.split_at(f);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let g = clamp8(rshift_round(i64::from(g), s_gu));
            let u = clamp8(rshift_round(i64::from(u), s_gu));
            let sg = silu[(i32::from(g) + 127) as usize];
            *o = clamp8(rshift_round(i64::from(sg) * i64::from(u), s_h));
        }
    }
}

/// Rounds an f64 table value to the nearest integer, ties away from zero,
/// after checking it is not within 1e-6 of a tie: then any correctly working
/// libm (whose `exp`, `cos`, `sin` err by an ulp or so) gives the same table.
fn table_round(x: f64) -> i64 {
    let frac = x.abs() - x.abs().floor();
    assert!((frac - 0.5).abs() > 1e-6, "table value {x} is within 1e-6 of a rounding tie");
    (x.abs() + 0.5).floor().copysign(x) as i64
}

/// The tables of spec v2 §3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// `EXP[z] = round(2^16 · e^(−z/16))`, `z` in `0..256`.
    pub exp: [i32; EXP_LEN],
    /// `SILU[g + 127] = round(32 · silu(g / 32))`, `g` in `−127..=127`.
    pub silu: [i8; SILU_LEN],
    /// `round(2^14 · cos(p · 10000^(−2i/e)))`, `[T][e/2]`.
    pub rope_cos: Vec<i32>,
    /// The same with `sin`.
    pub rope_sin: Vec<i32>,
    /// `e / 2`.
    pub rope_half: usize,
}

impl Tables {
    /// The tables for `seq` positions and head size `head_dim`.
    pub fn new(seq: usize, head_dim: usize) -> Self {
        let mut exp = [0i32; EXP_LEN];
        for (z, v) in exp.iter_mut().enumerate() {
            *v = table_round(65_536.0 * (-(z as f64) / 16.0).exp()) as i32;
        }
        let mut silu = [0i8; SILU_LEN];
        for (i, v) in silu.iter_mut().enumerate() {
            let x = (i as f64 - 127.0) / 32.0;
            *v = table_round(32.0 * x / (1.0 + (-x).exp())) as i8;
        }
        let half = head_dim / 2;
        let (mut rope_cos, mut rope_sin) = (Vec::new(), Vec::new());
        for p in 0..seq {
            for i in 0..half {
                let angle = p as f64 * 10000f64.powf(-2.0 * i as f64 / head_dim as f64);
                rope_cos.push(table_round(f64::from(1u32 << ROPE_BITS) * angle.cos()) as i32);
                rope_sin.push(table_round(f64::from(1u32 << ROPE_BITS) * angle.sin()) as i32);
            }
        }
        Self { exp, silu, rope_cos, rope_sin, rope_half: half }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SEED_64, SMALL, TINY};

    #[test]
    fn shifts_match_the_spec_table() {
        let row = |c| {
            let s = Shifts::for_config(c).expect("named config");
            [s.s_r, s.s_qkv, s.s_sc, s.s_o, s.s_h, s.s_d]
        };
        assert_eq!(row(&TINY), [6, 9, 8, 2, 5, 3]);
        assert_eq!(row(&SMALL), [6, 10, 9, 3, 5, 4]);
        assert_eq!(row(&SEED_64), [6, 11, 7, 4, 4, 6]);
    }

    #[test]
    fn seed64_residual_bound_fits_i32() {
        let s = Shifts::for_config(&SEED_64).expect("seed-64");
        assert_eq!(
            s.residual_bound(&SEED_64),
            8128 + 64 * (((16129 * 512) >> 4) + 1 + ((16129 * 8192) >> 6) + 1)
        );
        assert!(s.residual_bound(&SEED_64) < 1 << 28);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(rshift_round(3, 1), 2);
        assert_eq!(rshift_round(-3, 1), -2);
        assert_eq!(rshift_round(5, 2), 1);
        assert_eq!(rshift_round(6, 2), 2);
        assert_eq!(rshift_round(-6, 2), -2);
        assert_eq!(rshift_round(-7, 0), -7);
        assert_eq!(div_round(7, 2), 4);
        assert_eq!(div_round(-7, 2), -4);
        assert_eq!(div_round(10, 4), 3);
        assert_eq!(div_round(-9, 4), -2);
    }

    #[test]
    fn rms_norm_f64_quotient_matches_integer_division() {
        // Seed 0 of a fixed xorshift, printed so a failure can be replayed.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let d = 64;
        for round in 0..2000 {
            let scale = 1i64 << (next() % 28);
            let row: Vec<i32> =
                (0..d).map(|_| ((next() % (2 * scale as u64 + 1)) as i64 - scale) as i32).collect();
            let mut got = vec![0i8; d];
            rms_norm_rows(&row, d, &mut got);
            let ss: u128 = row.iter().map(|&v| (v as i128 * v as i128) as u128).sum();
            let s = ((ss / d as u128) as u64).isqrt() as i64;
            for (i, &v) in row.iter().enumerate() {
                let want = if s == 0 { 0 } else { clamp8(div_round(A_RMS * v as i64, s)) };
                assert_eq!(got[i], want, "round {round} element {i}: r = {v}, s = {s}");
            }
        }
    }

    #[test]
    fn tables_have_the_spec_shape() {
        let t = Tables::new(4, 4);
        assert_eq!(t.exp[0], 65_536);
        assert_eq!(t.exp[16], 24_109); // 2^16 / e
        assert_eq!(t.exp[255], 0);
        assert_eq!(t.silu[127], 0);
        assert_eq!(t.silu[0], -2); // 32 · silu(−127/32) = −2.35
        assert_eq!(t.silu[254], 125);
        assert_eq!(&t.rope_cos[..2], &[16_384, 16_384]);
        assert_eq!(&t.rope_sin[..2], &[0, 0]);
    }
}
