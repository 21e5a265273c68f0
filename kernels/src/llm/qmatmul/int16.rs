//! The validator's products on 16-bit integers: `y ≈ x · Wᵀ` with the
//! activations rounded to 16 bits per block of 32 inputs and the quants
//! multiplied as integers (`VPDPWSSD`, 32 multiply-adds a register where an
//! f32 FMA does 16).
//!
//! For one block of 32 inputs of a row and one feature with `w = d·q + m`:
//!
//! ```text
//!  x ≈ s·x̂,  s = max|x| / 32767,  x̂ = round(x · (32767 / max|x|))  (i16, ties to even)
//!  Σ x·w ≈ d·s·Σ q·x̂ + m·Σ x
//! ```
//!
//! `Σ q·x̂` is exact in i32 (at most 32 · 128 · 32767 < 2³¹), and `Σ x` is
//! the block's f32 sum (the halves lane by lane, then a fixed tree). The
//! only rounding beyond f32's is `x̂`'s, at most 2⁻¹⁶ of the block's largest
//! magnitude: finer than bf16 activations (2⁻⁹ of each value), which
//! validation already tolerates, for every value above 1/128 of its block's
//! largest. A block of zeros gives zero, one holding a NaN or an infinity
//! NaN outputs. Each output is
//!
//! ```text
//!  y = fma(m_b, Σx_b, fma(f32(Σ q·x̂)_b, d_b·s_b, y))   over blocks b in order
//! ```
//!
//! so a row's result does not depend on the batch, and the portable kernel
//! gives the same bits as the AVX-512 one.
//!
//! Decoded weights are i16 pairs `[block][pair t][panel][16 lanes]`: the
//! 32-bit word of lane `c` holds `q[c][2t]` (low half) and `q[c][2t+1]`
//! (high half), exactly the operand `VPDPWSSD` multiplies by a broadcast
//! pair of activations. Q4_0's `q − 8` is decoded as such (its `m` is 0).

use super::{BLOCK, GROUP, GROUP_COLS, LANES, OutPtr, Panel, QMatrix, WeightFormat, panel_quant, write_tile};
use rayon::prelude::*;

/// Rows of a register tile: 7 rows × 2 panels of i32 sums and as many f32
/// outputs (28 registers), plus two weight registers.
const ROWS: usize = 7;

/// Input pairs per block.
const PAIRS: usize = BLOCK / 2;

/// 32-bit words of one block of one group: 16 pairs × 2 panels × 16 lanes.
const GROUP_BLOCK_WORDS: usize = PAIRS * GROUP * LANES;

/// Activations rounded to 16 bits per block of 32, with each block's scale
/// and f32 sum, laid out tile by tile for the kernel: the rows split into
/// register tiles of nearly equal height `h ≤ 7`, and inside a tile the
/// values of its rows side by side, so that one pointer and constant offsets
/// reach them all.
#[derive(Debug, Default)]
struct Quantized {
    /// `(first row, rows)` of each tile, in order.
    tiles: Vec<(usize, usize)>,
    /// Per tile (from `first row · k/2`): `[k/2][h]` words, each the i16
    /// pair of inputs `2t`, `2t + 1` (low half first).
    q: Vec<u32>,
    /// Per tile (from `first row · nb`): `s` of each block, `[nb][h]`.
    scale: Vec<f32>,
    /// Per tile, like `scale`: `Σ x` of each block.
    sum: Vec<f32>,
}

/// Per-thread buffers of one group.
#[derive(Debug, Default)]
struct GroupBuffers {
    /// Decoded quants, `nb` blocks of [`GROUP_BLOCK_WORDS`].
    words: Vec<u32>,
    /// Per block: `d` of both panels (32), then `m` of both (32); zero for a
    /// missing second panel.
    scales: Vec<f32>,
}

impl QMatrix {
    /// `y ≈ x · Wᵀ` on 16-bit activations (see the module documentation), on
    /// the current rayon pool. f32 matrices have no integer quants and take
    /// [`QMatrix::matmul`].
    pub fn matmul_int16(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(x.len(), m * self.k, "x holds {} values, needs m·k = {}", x.len(), m * self.k);
        assert_eq!(y.len(), m * self.n, "y holds {} values, needs m·n = {}", y.len(), m * self.n);
        if self.format == WeightFormat::F32 {
            return self.matmul(x, m, y);
        }
        if m == 0 || self.n == 0 {
            return;
        }
        let simd = avx512_vnni();
        let mut xq = Quantized::default();
        quantize(x, self.k, &mut xq, simd);
        let out = OutPtr(y.as_mut_ptr());
        thread_local! {
            static BUFFERS: std::cell::RefCell<GroupBuffers> = std::cell::RefCell::new(GroupBuffers::default());
        }
        (0..self.n.div_ceil(GROUP_COLS)).into_par_iter().for_each(|g| {
            // SAFETY: each group index is visited by exactly one task, and a
            // group writes only columns `32g .. 32g + 32` of `y`, so the
            // writes of different tasks never touch the same element; `y`
            // outlives the parallel loop, which joins before returning.
            BUFFERS.with_borrow_mut(|buf| unsafe { self.group_int16(g, &xq, m, buf, out, simd) });
        });
    }

    /// Columns `32g ..` of `y` for all `m` rows, on the AVX-512 VNNI kernel
    /// (`simd`, which the CPU must support) or in plain Rust, with the same
    /// results.
    ///
    /// # Safety
    /// `out` points at `m·n` writable f32 and no other thread writes columns
    /// `32g .. 32g + 32` of it concurrently; with `simd` the CPU has
    /// AVX-512F/BW and AVX512-VNNI.
    unsafe fn group_int16(
        &self,
        g: usize,
        xq: &Quantized,
        m: usize,
        buf: &mut GroupBuffers,
        out: OutPtr,
        simd: bool,
    ) {
        let (panel, cols) = self.panel_group(g);
        decode_group(&panel, buf, simd);
        let (k, nb) = (self.k, panel.nb);
        let mut tile = [[0f32; GROUP_COLS]; super::TILE_ROWS];
        for &(r0, rows) in &xq.tiles {
            debug_assert!(r0 + rows <= m);
            let rows_of = Rows {
                q: &xq.q[r0 * k / 2..(r0 + rows) * k / 2],
                scale: &xq.scale[r0 * nb..(r0 + rows) * nb],
                sum: &xq.sum[r0 * nb..(r0 + rows) * nb],
                k,
            };
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX-512F/BW and AVX512-VNNI are present (the
                // caller's contract); the slices are checked inside.
                unsafe { x86::tile(&rows_of, rows, buf, &mut tile) };
            } else {
                tile_portable(&rows_of, rows, buf, &mut tile);
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = simd;
                tile_portable(&rows_of, rows, buf, &mut tile);
            }
            // SAFETY: rows `r0 .. r0 + rows` are below `m`; columns as the
            // caller promised.
            unsafe { write_tile(&tile, r0, rows, g * GROUP_COLS, cols, self.n, out) };
        }
    }
}

/// The activations of one register tile of `h` rows (see [`Quantized`]).
struct Rows<'a> {
    /// `[k/2][h]` pair words.
    q: &'a [u32],
    /// `[nb][h]`.
    scale: &'a [f32],
    /// `[nb][h]`.
    sum: &'a [f32],
    k: usize,
}

/// Rounds the rows of `x` (row length `k`, whole blocks) into `out`, tile by
/// tile in parallel.
fn quantize(x: &[f32], k: usize, out: &mut Quantized, simd: bool) {
    let (m, nb, pairs) = (x.len() / k, k / BLOCK, k / 2);
    debug_assert!(k.is_multiple_of(BLOCK));
    out.tiles.clear();
    let mut r0 = 0;
    while r0 < m {
        let rows = (m - r0).div_ceil((m - r0).div_ceil(ROWS));
        out.tiles.push((r0, rows));
        r0 += rows;
    }
    out.q.resize(m * pairs, 0);
    out.scale.resize(m * nb, 0.0);
    out.sum.resize(m * nb, 0.0);
    // Each tile's share of the three buffers, split off in order.
    let mut jobs = Vec::with_capacity(out.tiles.len());
    let (mut q, mut scale, mut sum) = (&mut out.q[..], &mut out.scale[..], &mut out.sum[..]);
    for &(r0, rows) in &out.tiles {
        let (tq, rest_q) = std::mem::take(&mut q).split_at_mut(rows * pairs);
        let (ts, rest_s) = std::mem::take(&mut scale).split_at_mut(rows * nb);
        let (tm, rest_m) = std::mem::take(&mut sum).split_at_mut(rows * nb);
        (q, scale, sum) = (rest_q, rest_s, rest_m);
        jobs.push((&x[r0 * k..(r0 + rows) * k], rows, tq, ts, tm));
    }
    jobs.into_par_iter().for_each(|(x, h, q, scale, sum)| {
        let mut block = [0i16; BLOCK];
        for (r, row) in x.chunks_exact(k).enumerate() {
            for (b, xs) in row.chunks_exact(BLOCK).enumerate() {
                let (at, mut s, mut total) = (b * h + r, 0f32, 0f32);
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: AVX-512F is present (VNNI implies it, see
                    // `avx512_vnni`); both slices are whole blocks.
                    unsafe { x86::quantize_block(xs, &mut block, &mut s, &mut total) };
                } else {
                    quantize_block(xs, &mut block, &mut s, &mut total);
                }
                #[cfg(not(target_arch = "x86_64"))]
                quantize_block(xs, &mut block, &mut s, &mut total);
                (scale[at], sum[at]) = (s, total);
                for (t, pair) in block.chunks_exact(2).enumerate() {
                    q[(b * PAIRS + t) * h + r] = u32::from(pair[0] as u16) | u32::from(pair[1] as u16) << 16;
                }
            }
        }
    });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
}

/// One block: its largest magnitude, its sum (the two halves lane by lane,
/// then halves of that in a fixed tree), and each value times `32767 / max`
/// rounded to the nearest integer, ties to even. A block that holds a NaN or
/// an infinity (its sum is not finite) poisons its outputs, as it would in
/// f32; a block of zeros gives zero.
fn quantize_block(xs: &[f32], qs: &mut [i16], scale: &mut f32, sum: &mut f32) {
    let mut lanes = [0f32; LANES];
    let mut max = 0f32;
    for (i, l) in lanes.iter_mut().enumerate() {
        *l = xs[i] + xs[LANES + i];
        max = max.max(xs[i].abs()).max(xs[LANES + i].abs());
    }
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    *sum = lanes[0];
    if !sum.is_finite() {
        *scale = f32::NAN;
        qs.fill(0);
    } else if max == 0.0 {
        *scale = 0.0;
        qs.fill(0);
    } else {
        let inv = 32767.0 / max;
        *scale = max / 32767.0;
        for (q, v) in qs.iter_mut().zip(xs) {
            *q = (v * inv).round_ties_even() as i16;
        }
    }
}

/// Decodes the group's quants and scales into `buf` (see the module
/// documentation for the layout), with AVX-512 where `simd` says the CPU
/// has it.
fn decode_group(panel: &Panel<'_>, buf: &mut GroupBuffers, simd: bool) {
    let nb = panel.nb;
    buf.words.resize(nb * GROUP_BLOCK_WORDS, 0);
    buf.scales.resize(nb * 4 * LANES, 0.0);
    for (b, sc) in buf.scales.chunks_exact_mut(4 * LANES).enumerate() {
        sc.fill(0.0);
        for p in 0..panel.panels {
            let src = &panel.scales[(p * nb + b) * 2 * LANES..][..2 * LANES];
            sc[p * LANES..(p + 1) * LANES].copy_from_slice(&src[..LANES]);
            sc[(GROUP + p) * LANES..(GROUP + p + 1) * LANES].copy_from_slice(&src[LANES..]);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: AVX-512F/BW are present (the caller's word); the sizes are
        // checked inside.
        unsafe { x86::decode_quants(panel, &mut buf.words) };
        return;
    }
    let _ = simd;
    let qb = panel.format.panel_quant_bytes();
    for b in 0..nb {
        for p in 0..GROUP {
            let q = (p < panel.panels).then(|| &panel.quants[(p * nb + b) * qb..][..qb]);
            for t in 0..PAIRS {
                let dst = &mut buf.words[b * GROUP_BLOCK_WORDS + (t * GROUP + p) * LANES..][..LANES];
                for (c, w) in dst.iter_mut().enumerate() {
                    *w = q.map_or(0, |q| pair_word(panel.format, q, t, c));
                }
            }
        }
    }
}

/// The i16 quants of lane `c` at inputs `2t` and `2t + 1` as one word.
fn pair_word(format: WeightFormat, q: &[u8], t: usize, c: usize) -> u32 {
    let value = |i: usize| -> i16 {
        let raw = panel_quant(format, q, i, c);
        match format {
            WeightFormat::Q8_0 => i16::from(raw as u8 as i8),
            WeightFormat::Q4_0 => raw as i16 - 8,
            _ => raw as i16,
        }
    };
    u32::from(value(2 * t) as u16) | u32::from(value(2 * t + 1) as u16) << 16
}

/// `tile[r][c]` for `rows ≤ 7` rows: the integer sums of each block, then the
/// two fused multiply-adds of the module documentation.
fn tile_portable(
    x: &Rows<'_>,
    rows: usize,
    buf: &GroupBuffers,
    tile: &mut [[f32; GROUP_COLS]; super::TILE_ROWS],
) {
    let nb = x.k / BLOCK;
    for (r, out) in tile.iter_mut().enumerate().take(rows) {
        out.fill(0.0);
        for b in 0..nb {
            let words = &buf.words[b * GROUP_BLOCK_WORDS..(b + 1) * GROUP_BLOCK_WORDS];
            let sc = &buf.scales[b * 4 * LANES..(b + 1) * 4 * LANES];
            let (s, sum) = (x.scale[b * rows + r], x.sum[b * rows + r]);
            let half = |w: u32, high: bool| i32::from((if high { w >> 16 } else { w }) as u16 as i16);
            for (c, o) in out.iter_mut().enumerate() {
                let (p, lane) = (c / LANES, c % LANES);
                let mut acc = 0i32;
                for t in 0..PAIRS {
                    let (w, a) = (words[(t * GROUP + p) * LANES + lane], x.q[(b * PAIRS + t) * rows + r]);
                    acc += half(w, false) * half(a, false) + half(w, true) * half(a, true);
                }
                let (d, m) = (sc[c], sc[GROUP_COLS + c]);
                *o = m.mul_add(sum, (acc as f32).mul_add(d * s, *o));
            }
        }
    }
}

/// Whether [`QMatrix::matmul_int16`] runs on its AVX-512 VNNI kernel here
/// (elsewhere it runs portable code, far slower than the f32 product).
pub fn int16_is_fast() -> bool {
    avx512_vnni()
}

/// Whether the AVX-512 VNNI kernel can run (queried once).
fn avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{
        BLOCK, GROUP, GROUP_BLOCK_WORDS, GroupBuffers, LANES, PAIRS, Panel, ROWS, Rows, WeightFormat,
    };
    use crate::llm::qmatmul::{GROUP_COLS, TILE_ROWS};
    use std::arch::x86_64::{
        __m512i, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_loadu_si128, _mm_movehl_ps, _mm_shuffle_ps,
        _mm_unpackhi_epi8, _mm_unpacklo_epi8, _mm256_add_ps, _mm256_castpd_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_set_m128i, _mm256_storeu_si256, _mm512_abs_ps, _mm512_add_ps,
        _mm512_and_si512, _mm512_castps_pd, _mm512_castps512_ps256, _mm512_cvtepi8_epi16, _mm512_cvtepi32_ps,
        _mm512_cvtepu8_epi32, _mm512_cvtps_epi32, _mm512_cvtsepi32_epi16, _mm512_extractf64x4_pd,
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_loadu_si512, _mm512_max_ps, _mm512_mul_ps, _mm512_or_si512,
        _mm512_reduce_max_ps, _mm512_set1_epi16, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_setzero_si512, _mm512_slli_epi32, _mm512_storeu_ps, _mm512_storeu_si512, _mm512_sub_epi16,
    };

    /// [`super::quantize_block`] in registers, with the same results.
    ///
    /// # Safety
    /// AVX-512F is present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize_block(xs: &[f32], qs: &mut [i16], scale: &mut f32, sum: &mut f32) {
        assert!(xs.len() == BLOCK && qs.len() == BLOCK);
        // SAFETY: both slices hold 32 values (asserted above).
        let (a, b) = unsafe { (_mm512_loadu_ps(xs.as_ptr()), _mm512_loadu_ps(xs.as_ptr().add(LANES))) };
        let max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        // Lane i + lane i + 8, then + 4, + 2, + 1: the portable tree.
        let v8 = _mm512_add_ps(a, b);
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v8)));
        let v4 = _mm256_add_ps(_mm512_castps512_ps256(v8), high);
        let v2 = _mm_add_ps(_mm256_castps256_ps128(v4), _mm256_extractf128_ps::<1>(v4));
        let v1 = _mm_add_ps(v2, _mm_movehl_ps(v2, v2));
        *sum = _mm_cvtss_f32(_mm_add_ss(v1, _mm_shuffle_ps::<1>(v1, v1)));
        if !sum.is_finite() || max == 0.0 {
            *scale = if max == 0.0 && sum.is_finite() { 0.0 } else { f32::NAN };
            qs.fill(0);
            return;
        }
        let inv = _mm512_set1_ps(32767.0 / max);
        *scale = max / 32767.0;
        // Rounding to nearest, ties to even (the default mode), then i16;
        // the values are within ±32767 so the saturation never acts.
        let qa = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(a, inv)));
        let qb = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(b, inv)));
        // SAFETY: `qs` holds 32 i16: two stores of 16.
        unsafe {
            _mm256_storeu_si256(qs.as_mut_ptr().cast(), qa);
            _mm256_storeu_si256(qs.as_mut_ptr().add(LANES).cast(), qb);
        }
    }

    /// `acc += a · w` per 32-bit lane, on pairs of i16 (`VPDPWSSD`). Written
    /// as assembly because LLVM splits the intrinsic into `VPMADDWD` and
    /// `VPADDD`, two instructions where one does the work.
    ///
    /// # Safety
    /// AVX512-VNNI is present.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpwssd(acc: &mut __m512i, a: __m512i, w: __m512i) {
        // SAFETY: a register-only instruction the caller's CPU has.
        unsafe {
            std::arch::asm!(
                "vpdpwssd {acc}, {a}, {w}",
                acc = inout(zmm_reg) *acc,
                a = in(zmm_reg) a,
                w = in(zmm_reg) w,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
    }

    /// The group's quants as i16 pairs into `words` (see [`super::pair_word`]),
    /// a missing second panel as zeros.
    ///
    /// # Safety
    /// AVX-512F/BW are present.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn decode_quants(panel: &Panel<'_>, words: &mut [u32]) {
        use WeightFormat::{Q4_0, Q4_1, Q8_0};
        // SAFETY: the caller's contract, unchanged.
        unsafe {
            match panel.format {
                Q4_1 => decode::<{ Q4_1 as u8 }>(panel, words),
                Q8_0 => decode::<{ Q8_0 as u8 }>(panel, words),
                Q4_0 => decode::<{ Q4_0 as u8 }>(panel, words),
                WeightFormat::F32 => unreachable!("f32 matrices take the f32 product"),
            }
        }
    }

    /// `decode_quants` for the format whose discriminant is `F`.
    ///
    /// # Safety
    /// As `decode_quants`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn decode<const F: u8>(panel: &Panel<'_>, words: &mut [u32]) {
        let format = WeightFormat::from_discriminant(F);
        let (nb, qb) = (panel.nb, format.panel_quant_bytes());
        assert!(words.len() >= nb * GROUP_BLOCK_WORDS && panel.panels <= GROUP);
        assert!(panel.quants.len() >= panel.panels * nb * qb);
        let out = words.as_mut_ptr();
        for p in 0..GROUP {
            for b in 0..nb {
                let q = panel.quants[(p.min(panel.panels - 1) * nb + b) * qb..].as_ptr();
                for t in 0..PAIRS {
                    let pair = if p >= panel.panels {
                        _mm512_setzero_si512()
                    } else if format == WeightFormat::Q8_0 {
                        // SAFETY: a Q8_0 block holds 32 inputs of 16 bytes, `t < 16`.
                        let (lo, hi) = unsafe {
                            (
                                _mm_loadu_si128(q.add(2 * t * LANES).cast()),
                                _mm_loadu_si128(q.add((2 * t + 1) * LANES).cast()),
                            )
                        };
                        // Bytes interleaved lane by lane, then widened with their sign.
                        _mm512_cvtepi8_epi16(_mm256_set_m128i(
                            _mm_unpackhi_epi8(lo, hi),
                            _mm_unpacklo_epi8(lo, hi),
                        ))
                    } else {
                        // SAFETY: a Q4 block holds 16 pairs of 16 bytes, `t < 16`.
                        let bytes = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(q.add(t * LANES).cast()) });
                        // Byte `lo | hi << 4` → word `lo | hi << 16`.
                        let nibbles = _mm512_and_si512(
                            _mm512_or_si512(bytes, _mm512_slli_epi32::<12>(bytes)),
                            _mm512_set1_epi32(0x000F_000F),
                        );
                        if format == WeightFormat::Q4_0 {
                            _mm512_sub_epi16(nibbles, _mm512_set1_epi16(8))
                        } else {
                            nibbles
                        }
                    };
                    // SAFETY: the word offset plus 16 is at most `nb · GROUP_BLOCK_WORDS`.
                    unsafe {
                        _mm512_storeu_si512(
                            out.add(b * GROUP_BLOCK_WORDS + (t * GROUP + p) * LANES).cast(),
                            pair,
                        )
                    };
                }
            }
        }
    }

    /// `tile[r][c]` for `rows ≤ 7` rows of `x`.
    ///
    /// # Safety
    /// AVX-512F/BW and AVX512-VNNI are present.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile(
        x: &Rows<'_>,
        rows: usize,
        buf: &GroupBuffers,
        tile: &mut [[f32; GROUP_COLS]; TILE_ROWS],
    ) {
        macro_rules! go {
            ($($r:literal)*) => {
                match rows {
                    // SAFETY: the caller's contract, unchanged.
                    $($r => unsafe { rows_of::<$r>(x, buf, tile) },)*
                    _ => unreachable!("at most {ROWS} rows"),
                }
            };
        }
        go!(1 2 3 4 5 6 7);
    }

    /// `tile` for `R` rows.
    ///
    /// # Safety
    /// As `tile`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows_of<const R: usize>(
        x: &Rows<'_>,
        buf: &GroupBuffers,
        tile: &mut [[f32; GROUP_COLS]; TILE_ROWS],
    ) {
        let (k, nb) = (x.k, x.k / BLOCK);
        assert!(R <= ROWS && x.q.len() >= R * k / 2 && x.scale.len() >= R * nb && x.sum.len() >= R * nb);
        assert!(buf.words.len() >= nb * GROUP_BLOCK_WORDS && buf.scales.len() >= nb * 4 * LANES);
        let mut out = [[_mm512_setzero_ps(); GROUP]; R];
        let (xp, wp, sp) = (x.q.as_ptr(), buf.words.as_ptr(), buf.scales.as_ptr());
        for b in 0..nb {
            let mut acc = [[_mm512_setzero_si512(); GROUP]; R];
            for t in 0..PAIRS {
                // SAFETY: `b < nb`, `t < 16`: inside `words` (asserted above).
                let (w0, w1): (__m512i, __m512i) = unsafe {
                    let at = wp.add(b * GROUP_BLOCK_WORDS + t * GROUP * LANES);
                    (_mm512_loadu_si512(at.cast()), _mm512_loadu_si512(at.add(LANES).cast()))
                };
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // SAFETY: word `(16b + t)·R + r < (k/2)·R` (asserted above).
                    let a = _mm512_set1_epi32(unsafe { *xp.add((b * PAIRS + t) * R + r) } as i32);
                    // SAFETY: AVX512-VNNI is present (this function's features).
                    unsafe {
                        dpwssd(&mut acc_r[0], a, w0);
                        dpwssd(&mut acc_r[1], a, w1);
                    }
                }
            }
            // SAFETY: block `b`'s 64 scales are inside `scales` (asserted above).
            let (d, m) = unsafe {
                let at = sp.add(b * 4 * LANES);
                (
                    [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(LANES))],
                    [_mm512_loadu_ps(at.add(2 * LANES)), _mm512_loadu_ps(at.add(3 * LANES))],
                )
            };
            for (r, (acc_r, out_r)) in acc.iter().zip(out.iter_mut()).enumerate() {
                // SAFETY: `b·R + r < nb·R`: inside `scale` and `sum` (asserted above).
                let (s, sum) = unsafe { (*x.scale.as_ptr().add(b * R + r), *x.sum.as_ptr().add(b * R + r)) };
                let (s, sum) = (_mm512_set1_ps(s), _mm512_set1_ps(sum));
                for p in 0..GROUP {
                    let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_r[p]), _mm512_mul_ps(d[p], s), out_r[p]);
                    out_r[p] = _mm512_fmadd_ps(m[p], sum, y);
                }
            }
        }
        for (r, out_r) in out.iter().enumerate() {
            for (p, v) in out_r.iter().enumerate() {
                // SAFETY: `tile[r]` holds 32 f32; `p·16 + 16 ≤ 32`.
                unsafe { _mm512_storeu_ps(tile[r].as_mut_ptr().add(p * LANES), *v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{activations, random_matrix, reference};
    use super::*;

    const FORMATS: [WeightFormat; 3] = [WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_0];

    #[test]
    fn products_stay_within_the_rounding_of_16_bit_activations() {
        for format in FORMATS {
            for (m, n, k) in [(1, 8, 32), (2, 13, 64), (9, 70, 96), (16, 33, 576)] {
                let w = random_matrix(format, n, k, 3);
                let x = activations(m, k, 4);
                let mut y = vec![0f32; m * n];
                w.matmul_int16(&x, m, &mut y);
                let want = reference(&w, &x, m);
                let mut row = vec![0f32; k];
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    // Each input moves by at most half a step of its block,
                    // 2⁻¹⁶ of its largest magnitude, times its weight.
                    w.decode_row(i % n, &mut row);
                    let bound: f64 = (0..k)
                        .map(|t| {
                            let block = &x[(i / n) * k + t / BLOCK * BLOCK..][..BLOCK];
                            let max = block.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                            max / 65534.0 * (row[t] as f64).abs()
                        })
                        .sum::<f64>()
                        * 1.01
                        + 1e-6 * (0..k).map(|t| x[(i / n) * k + t].abs() as f64).sum::<f64>();
                    assert!(((*a as f64) - b).abs() <= bound, "{format:?} {m}×{n}×{k} [{i}]: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_whatever_the_batch_and_the_kernel() {
        // 43 features leave a partial last panel and a group of one panel.
        let (n, k) = (43, 192);
        for format in FORMATS {
            let w = random_matrix(format, n, k, 9);
            let x = activations(40, k, 10);
            let mut all = vec![0f32; 40 * n];
            w.matmul_int16(&x, 40, &mut all);
            for (i, rows) in [(0, 1), (1, 2), (2, 3), (17, 1), (30, 2), (5, 8), (3, 20)] {
                let mut few = vec![0f32; rows * n];
                w.matmul_int16(&x[i * k..(i + rows) * k], rows, &mut few);
                assert_eq!(few, all[i * n..(i + rows) * n], "{format:?}: rows {i}+{rows} differ from 40");
            }
            // The portable kernel, group by group.
            let mut plain = vec![0f32; 40 * n];
            let mut xq = Quantized::default();
            quantize(&x, k, &mut xq, false);
            let mut buf = GroupBuffers::default();
            for g in 0..n.div_ceil(GROUP_COLS) {
                // SAFETY: `plain` holds 40·n values; one thread writes it.
                unsafe { w.group_int16(g, &xq, 40, &mut buf, OutPtr(plain.as_mut_ptr()), false) };
            }
            assert_eq!(plain, all, "{format:?}: dispatched and portable kernels disagree");
        }
    }

    #[test]
    fn zero_and_non_finite_blocks() {
        let w = random_matrix(WeightFormat::Q4_1, 16, 64, 1);
        let mut x = vec![0f32; 2 * 64];
        x[64 + 3] = f32::INFINITY;
        let mut y = vec![1f32; 2 * 16];
        w.matmul_int16(&x, 2, &mut y);
        // Row 0 is all zeros: only `m·Σx = 0` terms.
        assert!(y[..16].iter().all(|v| *v == 0.0), "{:?}", &y[..16]);
        assert!(y[16..].iter().all(|v| !v.is_finite()), "{:?}", &y[16..]);
    }
}
