//! The element-wise integer steps of the v2 forward pass (spec v2 §4), written
//! as branch-free loops over plain slices in 32-bit lanes so the compiler
//! vectorises them; on x86-64 with AVX-512 they are compiled a second time for
//! 512-bit registers and picked at run time.
//!
//! Each function returns exactly the integers of its scalar definition in
//! [`super::arith`] (tested against it below); only the way of computing them
//! differs: i32 instead of i64 lanes where the spec's ranges allow it (§6), a
//! rounding shift without `abs`, and a gathered SiLU table.

use super::arith::{A_RMS, I8_MAX, ROPE_BITS, SILU_LEN};

/// `x / 2^s` rounded to nearest, ties away from zero, in i32 without a branch.
///
/// Requires `|x| + 2^s < 2^31`. For `x ≥ 0` it is `(x + h) >> s` with
/// `h = ⌊2^s / 2⌋`, the definition itself. For `x < 0` the definition is
/// `−⌊(−x + h) / 2^s⌋ = ⌈(x − h) / 2^s⌉ = ⌊(x − h + 2^s − 1) / 2^s⌋`, and an
/// arithmetic shift is that floor. Both cases add a constant chosen by the
/// sign, which compiles to a select instead of a branch.
#[inline(always)]
pub fn rshift_round_i32(x: i32, s: u32) -> i32 {
    let half = (1i32 << s) >> 1;
    let bias = if x < 0 { (1i32 << s) - 1 - half } else { half };
    (x + bias) >> s
}

/// Clamps to the int8 activation range `−127..=127`, staying in i32.
#[inline(always)]
fn clamp8_i32(x: i32) -> i32 {
    x.clamp(-I8_MAX, I8_MAX)
}

/// Declares `pub fn $name` that runs `$generic` compiled for AVX-512 when the
/// CPU has it, and as plain code otherwise (the same source, so the same
/// integers).
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident / $avx:ident = $generic:ident ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                // SAFETY: AVX-512F, BW, DQ and VL are present (`has_avx512`),
                // the only precondition of a `target_feature` function.
                unsafe { $avx($($arg),*) };
                return;
            }
            $generic($($arg),*);
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
        fn $avx($($arg: $ty),*) {
            $generic($($arg),*);
        }
    };
}

dispatch! {
    /// `out = clamp8(rshift(acc, s))`, as [`super::arith::requant_rows`];
    /// every `|acc| + 2^s` must be below 2^31 (spec v2 §6 bounds the sums).
    fn requant_rows / requant_rows_avx512 = requant_rows_generic(acc: &[i32], s: u32, out: &mut [i8])
}

#[inline(always)]
fn requant_rows_generic(acc: &[i32], s: u32, out: &mut [i8]) {
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = clamp8_i32(rshift_round_i32(a, s)) as i8;
    }
}

dispatch! {
    /// `r += rshift(acc, s)`, as [`super::arith::residual_add`].
    fn residual_add / residual_add_avx512 = residual_add_generic(r: &mut [i32], acc: &[i32], s: u32)
}

#[inline(always)]
fn residual_add_generic(r: &mut [i32], acc: &[i32], s: u32) {
    for (x, &a) in r.iter_mut().zip(acc) {
        *x += rshift_round_i32(a, s);
    }
}

dispatch! {
    /// `h = clamp8(rshift(SILU[g] · u, s_h))` with `g`, `u` the requantized
    /// (`clamp8(rshift(·, s_gu))`) gate and up sums of rows laid out
    /// `[gate (f) | up (f)]`; `silu` is the spec's 255-entry table.
    fn swiglu_rows / swiglu_rows_avx512 =
        swiglu_rows_generic(acc: &[i32], f: usize, silu: &[i8], shifts: (u32, u32), h: &mut [i8])
}

#[inline(always)]
fn swiglu_rows_generic(acc: &[i32], f: usize, silu: &[i8], (s_gu, s_h): (u32, u32), h: &mut [i8]) {
    // The table widened to i32 and padded to 256 entries, so that a `u8`
    // index needs no bounds check and the lookup becomes a gather.
    let mut table = [0i32; 256];
    for (t, &v) in table.iter_mut().zip(&silu[..SILU_LEN]) {
        *t = i32::from(v);
    }
    for (row, out) in acc.chunks_exact(2 * f).zip(h.chunks_exact_mut(f)) {
        let (gate, up) = row.split_at(f);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let g = clamp8_i32(rshift_round_i32(g, s_gu));
            let u = clamp8_i32(rshift_round_i32(u, s_gu));
            // g + 127 is in 0..=254 after the clamp.
            let sg = table[usize::from((g + I8_MAX) as u8)];
            *o = clamp8_i32(rshift_round_i32(sg * u, s_h)) as i8;
        }
    }
}

dispatch! {
    /// Integer RMSNorm of each row of width `d`, as
    /// [`super::arith::rms_norm_rows`] (whose f64 quotient argument applies
    /// unchanged: the same numerator and divisor, divided lane by lane).
    fn rms_norm_rows / rms_norm_rows_avx512 = rms_norm_rows_generic(r: &[i32], d: usize, out: &mut [i8])
}

#[inline(always)]
fn rms_norm_rows_generic(r: &[i32], d: usize, out: &mut [i8]) {
    for (row, o) in r.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        // `Shifts::for_config` bounds d·r² below 2^64, so no partial sum of
        // the non-negative squares wraps.
        let ss: u64 = row.iter().map(|&v| (i64::from(v) * i64::from(v)) as u64).sum();
        let s = (ss / d as u64).isqrt();
        if s == 0 {
            o.fill(0);
            continue;
        }
        let (s_f, two_s) = (s as f64, 2.0 * s as f64);
        let (inv, v_max) = (1.0 / two_s, 4.0 * s_f);
        for (o, &v) in o.iter_mut().zip(row) {
            *o = rms_quotient(f64::from(v.unsigned_abs()), s_f, two_s, inv, v_max, v < 0);
        }
    }
}

/// `clamp8(div_round(32·v, s))` for one `|v|` (as f64) without a division:
/// `q = min(127, ⌊(64·|v| + s) / 2s⌋)` from a reciprocal and one correction.
///
/// Why it is exact: `|v|` above `4s` gives a quotient of at least
/// `⌊257s / 2s⌋ = 128`, so clamping `|v|` to `4s` first leaves the output at
/// 127 and every other value unchanged. Then `n = 64·|v| + s ≤ 257s` is an
/// integer below 2^53 (checked in `Shifts::for_config`), exact in f64, with a
/// quotient of at most 128.5. `n · RN(1/2s)` is within `2^-51 · 128.5` of
/// `n / 2s`, so its truncation `q0` is the floor or one off it. The remainder
/// `n − q0·2s` is exact (`q0·2s` is an integer of at most `n + 2s < 2^53`,
/// the product of exact integers, and the difference of two such integers is
/// exact), and its sign and size against `2s` say which way to correct.
#[inline(always)]
fn rms_quotient(abs_v: f64, s: f64, two_s: f64, inv: f64, v_max: f64, negative: bool) -> i8 {
    let n = (2 * A_RMS) as f64 * abs_v.min(v_max) + s;
    let q0 = (n * inv).trunc();
    let rem = n - q0 * two_s;
    let q = if rem < 0.0 {
        q0 - 1.0
    } else if rem >= two_s {
        q0 + 1.0
    } else {
        q0
    };
    let q = q.min(f64::from(I8_MAX)) as i32;
    (if negative { -q } else { q }) as i8
}

dispatch! {
    /// Rotates the `(2i, 2i+1)` pairs of every head of `q` and `k` (the first
    /// `2d` values of each `[q | k | v]` row of width `3d`) into `out`
    /// (`[rows, 2d]`, not clamped), row `r` at position `r mod seq`; `cos`
    /// and `sin` are `[seq][e/2]`.
    fn rope_rows / rope_rows_avx512 = rope_rows_generic(
        qkv: &[i8], dims: (usize, usize, usize), cos: &[i32], sin: &[i32], out: &mut [i32]
    )
}

#[inline(always)]
fn rope_rows_generic(
    qkv: &[i8],
    (d, seq, e): (usize, usize, usize),
    cos: &[i32],
    sin: &[i32],
    out: &mut [i32],
) {
    let half = e / 2;
    // Per position, the cos and sin of each feature's pair laid out along all
    // `2d` features, with the sign of the `sin` term folded in, so that the
    // rotation is `c[j]·x[j] + s[j]·x[j ^ 1]` with no per-pair indexing.
    let mut c = vec![0i32; seq * 2 * d];
    let mut s = vec![0i32; seq * 2 * d];
    for (j, (c, s)) in c.iter_mut().zip(s.iter_mut()).enumerate() {
        let (p, i) = (j / (2 * d), (j % e) / 2);
        *c = cos[p * half + i];
        *s = if j % 2 == 0 { -sin[p * half + i] } else { sin[p * half + i] };
    }
    for (row_i, (row, o)) in qkv.chunks_exact(3 * d).zip(out.chunks_exact_mut(2 * d)).enumerate() {
        let p = row_i % seq;
        let at = p * 2 * d..(p + 1) * 2 * d;
        rope_row(&row[..2 * d], &c[at.clone()], &s[at], o);
    }
}

/// One row: `out[j] = rshift(x[j]·c[j] + x[j^1]·s[j], 14)`. The products are
/// at most `127 · 2^14` each, so their sum fits i32.
#[inline(always)]
fn rope_row(x: &[i8], c: &[i32], s: &[i32], out: &mut [i32]) {
    for (((o, x), c), s) in
        out.chunks_exact_mut(2).zip(x.chunks_exact(2)).zip(c.chunks_exact(2)).zip(s.chunks_exact(2))
    {
        let (u, w) = (i32::from(x[0]), i32::from(x[1]));
        o[0] = rshift_round_i32(u * c[0] + w * s[0], ROPE_BITS);
        o[1] = rshift_round_i32(w * c[1] + u * s[1], ROPE_BITS);
    }
}

/// Whether the CPU has the AVX-512 subsets the kernels are compiled for
/// (queried once).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SEED_64, SMALL, TINY};
    use crate::v2::arith::{self, Shifts, Tables, rshift_round};

    /// A fixed xorshift stream; each test prints its seed on failure.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform in `−bound..=bound`.
        fn within(&mut self, bound: i64) -> i64 {
            (self.next() % (2 * bound as u64 + 1)) as i64 - bound
        }

        /// Values whose magnitude scale is itself random (`2^0 .. 2^bits`),
        /// so that small values, ties and large values all occur.
        fn scaled(&mut self, bits: u32) -> i64 {
            let scale = 1i64 << (self.next() % u64::from(bits + 1));
            self.within(scale)
        }
    }

    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

    #[test]
    fn rshift_round_i32_matches_definition() {
        // Exhaustive near zero and around every multiple of 2^s up to 2^16,
        // where ties and sign changes sit, then random values up to 2^30.
        for s in 0..=20 {
            for x in -(1i32 << 16)..=(1 << 16) {
                assert_eq!(
                    i64::from(rshift_round_i32(x, s)),
                    rshift_round(i64::from(x), s),
                    "x = {x}, s = {s}"
                );
            }
        }
        let mut rng = Rng(SEED);
        for _ in 0..1_000_000 {
            let (x, s) = (rng.scaled(30) as i32, (rng.next() % 21) as u32);
            assert_eq!(
                i64::from(rshift_round_i32(x, s)),
                rshift_round(i64::from(x), s),
                "x = {x}, s = {s} (seed {SEED:#x})"
            );
        }
    }

    #[test]
    fn requant_and_residual_match_scalar() {
        let mut rng = Rng(SEED ^ 1);
        for len in [1usize, 15, 16, 17, 64, 1000, 4099] {
            for s in [0u32, 1, 2, 4, 6, 9, 11, 14] {
                let acc: Vec<i32> = (0..len).map(|_| rng.scaled(28) as i32).collect();
                let (mut want, mut got) = (vec![0i8; len], vec![0i8; len]);
                arith::requant_rows(&acc, s, &mut want);
                requant_rows(&acc, s, &mut got);
                assert_eq!(got, want, "requant len {len} s {s} (seed {SEED:#x})");
                requant_rows_generic(&acc, s, &mut got);
                assert_eq!(got, want, "requant generic len {len} s {s} (seed {SEED:#x})");
                let r: Vec<i32> = (0..len).map(|_| rng.scaled(28) as i32).collect();
                let (mut want, mut got) = (r.clone(), r);
                arith::residual_add(&mut want, &acc, s);
                residual_add(&mut got, &acc, s);
                assert_eq!(got, want, "residual len {len} s {s} (seed {SEED:#x})");
            }
        }
    }

    #[test]
    fn swiglu_matches_scalar() {
        let tab = Tables::new(4, 4);
        let mut rng = Rng(SEED ^ 2);
        for c in [&TINY, &SMALL, &SEED_64] {
            let sh = Shifts::for_config(c).expect("named config");
            let f = c.ffn;
            for round in 0..8 {
                // Sums up to 2^(s_qkv + 8) so both clamped and in-range values occur.
                let acc: Vec<i32> = (0..3 * 2 * f).map(|_| rng.scaled(sh.s_qkv + 8) as i32).collect();
                let (mut want, mut got) = (vec![0i8; 3 * f], vec![0i8; 3 * f]);
                arith::swiglu_rows(&acc, f, &tab.silu, (sh.s_qkv, sh.s_h), &mut want);
                swiglu_rows(&acc, f, &tab.silu, (sh.s_qkv, sh.s_h), &mut got);
                assert_eq!(got, want, "{} round {round} (seed {SEED:#x})", c.name);
                swiglu_rows_generic(&acc, f, &tab.silu, (sh.s_qkv, sh.s_h), &mut got);
                assert_eq!(got, want, "{} round {round}, generic (seed {SEED:#x})", c.name);
            }
        }
    }

    #[test]
    fn swiglu_matches_scalar_for_every_gate_and_up() {
        // Every pair of requantized values for the seed-64 shifts, each
        // reached from a sum exactly at and just inside its rounding ties.
        let tab = Tables::new(4, 4);
        let sh = Shifts::for_config(&SEED_64).expect("seed-64");
        let half = 1i32 << (sh.s_qkv - 1);
        let vals: Vec<i32> = (-130..=130)
            .flat_map(|v: i32| {
                [
                    (v << sh.s_qkv) - half,
                    (v << sh.s_qkv) - half + 1,
                    v << sh.s_qkv,
                    (v << sh.s_qkv) + half - 1,
                ]
            })
            .collect();
        let f = vals.len() * vals.len();
        let mut acc = Vec::with_capacity(2 * f);
        acc.extend(vals.iter().flat_map(|&g| vals.iter().map(move |_| g)));
        acc.extend(vals.iter().flat_map(|_| vals.iter().copied()));
        let (mut want, mut got) = (vec![0i8; f], vec![0i8; f]);
        arith::swiglu_rows(&acc, f, &tab.silu, (sh.s_qkv, sh.s_h), &mut want);
        swiglu_rows(&acc, f, &tab.silu, (sh.s_qkv, sh.s_h), &mut got);
        assert_eq!(got, want, "all gate/up pairs");
    }

    #[test]
    fn rms_norm_matches_scalar() {
        let mut rng = Rng(SEED ^ 3);
        for d in [16usize, 64, 512] {
            for round in 0..3000 {
                // Residual magnitudes from 0 to the seed-64 bound (< 2^28),
                // with an occasional outlier row element so the clamp at 127
                // and tiny divisors both occur.
                let bits = (rng.next() % 29) as u32;
                let mut row: Vec<i32> = (0..d).map(|_| rng.scaled(bits) as i32).collect();
                if round % 3 == 0 {
                    let i = (rng.next() % d as u64) as usize;
                    row[i] = rng.within((1 << 28) - 1) as i32;
                }
                let (mut want, mut got) = (vec![0i8; d], vec![0i8; d]);
                arith::rms_norm_rows(&row, d, &mut want);
                rms_norm_rows(&row, d, &mut got);
                assert_eq!(got, want, "d {d} round {round}: row {row:?} (seed {SEED:#x})");
                rms_norm_rows_generic(&row, d, &mut got);
                assert_eq!(got, want, "generic d {d} round {round}: row {row:?} (seed {SEED:#x})");
            }
        }
    }

    #[test]
    fn rms_quotient_is_exact_for_every_small_divisor() {
        // Exhaustive for s ≤ 600 over every |v| up to 4s + 2 (beyond which the
        // clamp decides), against the integer definition.
        for s in 1..=600i64 {
            let (s_f, two_s) = (s as f64, 2.0 * s as f64);
            for v in -(4 * s + 2)..=(4 * s + 2) {
                let want = arith::clamp8(arith::div_round(A_RMS * v, s));
                let got = rms_quotient((v.abs()) as f64, s_f, two_s, 1.0 / two_s, 4.0 * s_f, v < 0);
                assert_eq!(got, want, "v = {v}, s = {s}");
            }
        }
    }

    #[test]
    fn rope_matches_scalar() {
        let mut rng = Rng(SEED ^ 4);
        for c in [&TINY, &SMALL, &SEED_64] {
            let tab = Tables::new(c.seq, c.head_dim());
            let (d, rows) = (c.dim, 3 * c.seq);
            let qkv: Vec<i8> = (0..rows * 3 * d).map(|_| rng.within(127) as i8).collect();
            let (mut want, mut got) = (vec![0i32; rows * 2 * d], vec![0i32; rows * 2 * d]);
            arith::rope_rows(&qkv, c, &tab, &mut want);
            rope_rows(&qkv, (d, c.seq, c.head_dim()), &tab.rope_cos, &tab.rope_sin, &mut got);
            assert_eq!(got, want, "{} (seed {SEED:#x})", c.name);
        }
    }
}
