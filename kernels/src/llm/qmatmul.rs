//! Matrix products on quantized weights, `y = x · Wᵀ`, with `x` f32 `[m, k]`,
//! `W` stored `[n, k]` in its file format (Q4_1, Q8_0, Q4_0 blocks, or f32)
//! and `y` f32 `[m, n]`.
//!
//! Weights stay in their blocks (Q4_1 is 5 bits a weight, a quarter of bf16's
//! memory traffic). A call walks panels of [`NR`] output features: it decodes
//! one panel to exact f32 (each weight is `d·q + m` from its block, rounded
//! once) into a per-thread buffer, then runs every `MR`-row tile of `x` over
//! it, keeping `MR × NR` sixteen-lane accumulators in registers:
//!
//! ```text
//!   W blocks ──decode──► panel [NR][k] f32 (L1)        x [m][k]
//!                               │                        │  tiles of MR rows
//!                               └──► acc[r][j] += x[r][16 lanes] · w[j][16 lanes]
//!                                     (k in steps of 16, then a fixed lane tree)
//! ```
//!
//! # One result per (row, feature), whatever the batch
//!
//! Every `y[i][j]` is computed by the same sequence of operations whatever
//! `m` is and wherever row `i` falls in its tile: sixteen lane sums, each a
//! chain of fused multiply-adds over `k` in order, then the lanes added in a
//! fixed tree. A token's logits therefore do not depend on what else was in
//! the batch, and the portable kernel mirrors the AVX-512 one operation for
//! operation (fused `mul_add`, same tree), so both give the same bits.

use half::f16;
use rayon::prelude::*;
use thiserror::Error;

/// Weights per quantization block (every block format here).
pub const BLOCK: usize = 32;

/// Output features per panel: with [`MR`] rows, `MR × NR` = 24 accumulators
/// plus `MR` activation registers and one weight register fit the 32 zmm
/// registers.
const NR: usize = 8;

/// Rows of `x` per register tile.
const MR: usize = 3;

/// Lanes of one 512-bit f32 register; `k` is walked in steps of this.
const LANES: usize = 16;

/// Panels handed to one worker at a time: enough work per task that rayon's
/// scheduling stays small next to it, few enough that the panels spread over
/// all threads for the smallest matrices (576 features = 72 panels).
const PANELS_PER_TASK: usize = 4;

/// How the weights of a matrix are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// Plain little-endian f32.
    F32,
    /// 32 weights: f16 `d`, f16 `m`, 16 bytes of nibbles; `w = d·q + m`.
    Q4_1,
    /// 32 weights: f16 `d`, 32 × i8; `w = d·q`.
    Q8_0,
    /// 32 weights: f16 `d`, 16 bytes of nibbles; `w = d·(q − 8)`.
    Q4_0,
}

impl WeightFormat {
    /// The format whose `as u8` is `d` (for const-generic kernel instances).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const fn from_discriminant(d: u8) -> Self {
        match d {
            d if d == WeightFormat::F32 as u8 => WeightFormat::F32,
            d if d == WeightFormat::Q4_1 as u8 => WeightFormat::Q4_1,
            d if d == WeightFormat::Q8_0 as u8 => WeightFormat::Q8_0,
            _ => WeightFormat::Q4_0,
        }
    }

    /// Bytes of one block of [`BLOCK`] weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightFormat::F32 => 4 * BLOCK,
            WeightFormat::Q4_1 => 4 + BLOCK / 2,
            WeightFormat::Q8_0 => 2 + BLOCK,
            WeightFormat::Q4_0 => 2 + BLOCK / 2,
        }
    }
}

/// A matrix whose rows do not fit its format or its buffer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QMatrixError {
    /// `k` is not a whole number of blocks.
    #[error("row length {k} is not a multiple of the block size {BLOCK}")]
    RowLength { k: usize },
    /// The data is not `n` rows of `k` weights.
    #[error("{format:?} matrix of {n}×{k} needs {expected} bytes, found {found}")]
    Size { format: WeightFormat, n: usize, k: usize, expected: usize, found: usize },
    /// Matrices stacked into one must share format and row length.
    #[error(
        "cannot stack a {found:?} matrix of row length {found_k} under {expected:?} of row length {expected_k}"
    )]
    Stack { expected: WeightFormat, expected_k: usize, found: WeightFormat, found_k: usize },
}

/// A weight matrix `[n, k]` in its storage format.
#[derive(Clone, PartialEq)]
pub struct QMatrix {
    format: WeightFormat,
    n: usize,
    k: usize,
    data: Vec<u8>,
    /// Each block's scale and minimum as f32 (`d`, `m`; `m` = 0 where the
    /// format has none), so the fused kernel broadcasts them from memory
    /// instead of converting two f16 per block; empty for f32.
    scales: Vec<[f32; 2]>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("format", &self.format)
            .field("n", &self.n)
            .field("k", &self.k)
            .finish()
    }
}

impl QMatrix {
    /// `n` rows of `k` weights, `data` their blocks row after row.
    pub fn new(format: WeightFormat, n: usize, k: usize, data: Vec<u8>) -> Result<Self, QMatrixError> {
        if !k.is_multiple_of(BLOCK) || k == 0 {
            return Err(QMatrixError::RowLength { k });
        }
        let expected = n * (k / BLOCK) * format.block_bytes();
        if data.len() != expected {
            return Err(QMatrixError::Size { format, n, k, expected, found: data.len() });
        }
        let scales = match format {
            WeightFormat::F32 => Vec::new(),
            WeightFormat::Q4_1 => {
                data.chunks_exact(format.block_bytes()).map(|b| [half_at(b, 0), half_at(b, 2)]).collect()
            }
            WeightFormat::Q8_0 | WeightFormat::Q4_0 => {
                data.chunks_exact(format.block_bytes()).map(|b| [half_at(b, 0), 0.0]).collect()
            }
        };
        Ok(Self { format, n, k, data, scales })
    }

    /// An f32 matrix from row-major values.
    pub fn from_f32(n: usize, k: usize, values: &[f32]) -> Result<Self, QMatrixError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(WeightFormat::F32, n, k, data)
    }

    /// The rows of `parts` one under the other (fusing q, k, v into one product).
    pub fn stack(parts: &[&QMatrix]) -> Result<Self, QMatrixError> {
        let Some(first) = parts.first() else {
            return Err(QMatrixError::Size { format: WeightFormat::F32, n: 0, k: 0, expected: 1, found: 0 });
        };
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            if p.format != first.format || p.k != first.k {
                return Err(QMatrixError::Stack {
                    expected: first.format,
                    expected_k: first.k,
                    found: p.format,
                    found_k: p.k,
                });
            }
            data.extend_from_slice(&p.data);
        }
        Self::new(first.format, parts.iter().map(|p| p.n).sum(), first.k, data)
    }

    /// Output features (rows of `W`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (row length).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The storage format.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.k / BLOCK * self.format.block_bytes()
    }

    /// Row `j` decoded to f32 into `out` (`k` values): an embedding lookup.
    pub fn decode_row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n && out.len() == self.k, "row {j} of {} into {} values", self.n, out.len());
        let rb = self.row_bytes();
        decode_row(self.format, &self.data[j * rb..(j + 1) * rb], out);
    }

    /// `y = x · Wᵀ` for `m` rows: up to [`MR`] rows (a decode step) on the
    /// process's [`team`](crate::team::team), more on the current rayon pool.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(x.len(), m * self.k, "x holds {} values, needs m·k = {}", x.len(), m * self.k);
        assert_eq!(y.len(), m * self.n, "y holds {} values, needs m·n = {}", y.len(), m * self.n);
        if m == 0 || self.n == 0 {
            return;
        }
        let panels = self.n.div_ceil(NR);
        let out = OutPtr(y.as_mut_ptr());
        let tasks = panels.div_ceil(PANELS_PER_TASK);
        let task = |panel_buf: &mut Vec<f32>, t: usize| {
            let first = t * PANELS_PER_TASK;
            for p in first..(first + PANELS_PER_TASK).min(panels) {
                // SAFETY: each panel index is visited by exactly one task, and a
                // panel writes only columns `p·NR .. p·NR + NR` of `y`, so the
                // writes of different tasks never touch the same element; `y`
                // outlives the parallel loop, which joins before returning.
                unsafe { self.panel(p, x, m, panel_buf, out) };
            }
        };
        if m <= MR {
            // A decode step: ~120 short products a token, on the team that
            // stays awake between them (batch 1: 1.2× over the pool).
            thread_local! {
                static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            crate::team::team().run(tasks, &|t| PANEL.with_borrow_mut(|buf| task(buf, t)));
        } else {
            (0..tasks).into_par_iter().for_each_init(Vec::new, task);
        }
    }

    /// Decodes panel `p` and multiplies every row tile of `x` with it.
    ///
    /// # Safety
    /// `out` points at `m·n` writable f32 and no other thread writes
    /// columns `p·NR ..` of it concurrently.
    unsafe fn panel(&self, p: usize, x: &[f32], m: usize, buf: &mut Vec<f32>, out: OutPtr) {
        let j0 = p * NR;
        let nr = NR.min(self.n - j0);
        let k = self.k;
        let rb = self.row_bytes();
        let mut tile = [[0f32; NR]; MR];
        #[cfg(target_arch = "x86_64")]
        if m <= MR && nr == NR && avx512_fma() {
            let w = &self.data[j0 * rb..(j0 + NR) * rb];
            let nb = k / BLOCK;
            let sc = &self.scales[(j0 * nb).min(self.scales.len())..((j0 + NR) * nb).min(self.scales.len())];
            // SAFETY: AVX-512F/BW and FMA are present; `x` holds `m·k` values,
            // `w` holds NR rows of `rb` bytes and `sc` their blocks' scales.
            unsafe { x86::fused_tile(self.format, m, w, sc, rb, k, x, &mut tile) };
            // SAFETY: as below, for rows `0..m`.
            unsafe { write_tile(&tile, 0, m, j0, NR, self.n, out) };
            return;
        }
        buf.clear();
        buf.resize(NR * k, 0.0);
        decode_rows(self.format, &self.data[j0 * rb..(j0 + nr) * rb], &mut buf[..nr * k]);
        let mut i = 0;
        while i < m {
            let mr = MR.min(m - i);
            dot_tile(&x[i * k..(i + mr) * k], mr, buf, k, &mut tile);
            // SAFETY: rows `i..i + mr` are below `m`; columns as the caller promised.
            unsafe { write_tile(&tile, i, mr, j0, nr, self.n, out) };
            i += mr;
        }
    }
}

/// Writes `tile[..mr][..nr]` to rows `i..`, columns `j0..` of `out` (`n` wide).
///
/// # Safety
/// `out` points at a row-major matrix `n` wide with at least `i + mr` rows,
/// `j0 + nr ≤ n`, and no other thread writes those elements concurrently.
unsafe fn write_tile(
    tile: &[[f32; NR]; MR],
    i: usize,
    mr: usize,
    j0: usize,
    nr: usize,
    n: usize,
    out: OutPtr,
) {
    for (r, vals) in tile.iter().take(mr).enumerate() {
        let row = (i + r) * n + j0;
        for (j, v) in vals.iter().take(nr).enumerate() {
            // SAFETY: inside the matrix by the function's contract.
            unsafe { out.0.add(row + j).write(*v) };
        }
    }
}

/// Whether the fused AVX-512 kernels can run (queried once).
#[cfg(target_arch = "x86_64")]
fn avx512_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("fma")
    })
}

/// The output pointer shared by the tasks of one product.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint columns (see `QMatrix::matmul`).
unsafe impl Send for OutPtr {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for OutPtr {}

/// Decodes one row of blocks to f32, `w = d·q + m` rounded once.
pub fn decode_row(format: WeightFormat, bytes: &[u8], out: &mut [f32]) {
    decode_rows(format, bytes, out);
}

/// Decodes consecutive blocks (any number of whole rows) to f32.
fn decode_rows(format: WeightFormat, bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512_fma() {
        // SAFETY: AVX-512F/BW and FMA are present (checked above).
        unsafe { decode_rows_avx512(format, bytes, out) };
        return;
    }
    decode_rows_generic(format, bytes, out);
}

/// The same code compiled for AVX-512 with FMA, so `mul_add` is one
/// instruction and the block loops vectorise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
fn decode_rows_avx512(format: WeightFormat, bytes: &[u8], out: &mut [f32]) {
    decode_rows_generic(format, bytes, out);
}

#[inline(always)]
fn decode_rows_generic(format: WeightFormat, bytes: &[u8], out: &mut [f32]) {
    let bb = format.block_bytes();
    assert_eq!(bytes.len() / bb * BLOCK, out.len(), "row of {} bytes into {} values", bytes.len(), out.len());
    for (block, dst) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
        decode_block(format, block, dst);
    }
}

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// One block; the compiler vectorises the inner loops.
#[inline(always)]
fn decode_block(format: WeightFormat, b: &[u8], dst: &mut [f32]) {
    match format {
        WeightFormat::F32 => {
            for (d, c) in dst.iter_mut().zip(b.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        WeightFormat::Q4_1 => {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            let qs = &b[4..4 + BLOCK / 2];
            for (i, &q) in qs.iter().enumerate() {
                dst[i] = f32::from(q & 0x0F).mul_add(d, m);
                dst[i + BLOCK / 2] = f32::from(q >> 4).mul_add(d, m);
            }
        }
        WeightFormat::Q8_0 => {
            let d = half_at(b, 0);
            for (o, &q) in dst.iter_mut().zip(&b[2..2 + BLOCK]) {
                *o = f32::from(q as i8) * d;
            }
        }
        WeightFormat::Q4_0 => {
            let d = half_at(b, 0);
            let qs = &b[2..2 + BLOCK / 2];
            for (i, &q) in qs.iter().enumerate() {
                dst[i] = (f32::from(q & 0x0F) - 8.0) * d;
                dst[i + BLOCK / 2] = (f32::from(q >> 4) - 8.0) * d;
            }
        }
    }
}

/// `tile[r][j] = Σ_t x[r][t] · w[j][t]` for `mr ≤ MR` rows and all `NR`
/// panel rows, with the summation order described in the module header.
fn dot_tile(x: &[f32], mr: usize, w: &[f32], k: usize, tile: &mut [[f32; NR]; MR]) {
    debug_assert!(k.is_multiple_of(LANES) && w.len() == NR * k && x.len() == mr * k);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx512() {
        // SAFETY: AVX-512F is present (checked above); slice lengths as asserted.
        unsafe {
            match mr {
                1 => x86::dot_tile::<1>(x, w, k, tile),
                2 => x86::dot_tile::<2>(x, w, k, tile),
                _ => x86::dot_tile::<3>(x, w, k, tile),
            }
        }
        return;
    }
    match mr {
        1 => dot_tile_portable::<1>(x, w, k, tile),
        2 => dot_tile_portable::<2>(x, w, k, tile),
        _ => dot_tile_portable::<3>(x, w, k, tile),
    }
}

/// Adds sixteen lanes in a fixed tree: halves, then quarters, down to one.
#[inline(always)]
fn reduce_lanes(v: &[f32; LANES]) -> f32 {
    let mut a = [0f32; 8];
    for i in 0..8 {
        a[i] = v[i] + v[i + 8];
    }
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let c = [b[0] + b[2], b[1] + b[3]];
    c[0] + c[1]
}

fn dot_tile_portable<const R: usize>(x: &[f32], w: &[f32], k: usize, tile: &mut [[f32; NR]; MR]) {
    let mut acc = [[[0f32; LANES]; NR]; R];
    for t in (0..k).step_by(LANES) {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xr = &x[r * k + t..r * k + t + LANES];
            for (j, acc_rj) in acc_r.iter_mut().enumerate() {
                let wj = &w[j * k + t..j * k + t + LANES];
                for l in 0..LANES {
                    acc_rj[l] = xr[l].mul_add(wj[l], acc_rj[l]);
                }
            }
        }
    }
    for r in 0..R {
        for j in 0..NR {
            tile[r][j] = reduce_lanes(&acc[r][j]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, LANES, MR, NR, WeightFormat, reduce_lanes};
    use std::arch::x86_64::{
        __m512, _mm_and_si128, _mm_loadu_si128, _mm_set1_epi8, _mm_srli_epi16, _mm512_cvtepi8_epi32,
        _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps,
    };

    /// The 16 bytes at `p` as 32 nibbles in f32: the low nibbles (weights
    /// 0–15), then the high ones (16–31).
    ///
    /// # Safety
    /// AVX-512F is present and `p` points at 16 readable bytes.
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> (__m512, __m512) {
        // SAFETY: the caller's contract.
        unsafe {
            let qs = _mm_loadu_si128(p.cast());
            let low = _mm_and_si128(qs, _mm_set1_epi8(0x0F));
            let high = _mm_and_si128(_mm_srli_epi16(qs, 4), _mm_set1_epi8(0x0F));
            (_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(low)), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(high)))
        }
    }

    /// The 32 weights of one block as two registers (lanes 0–15, 16–31),
    /// each `w` rounded exactly as `decode_block` rounds it.
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are present; `b` holds one whole block of `format`.
    #[inline(always)]
    unsafe fn decode(format: WeightFormat, b: &[u8], scale: &[f32; 2]) -> (__m512, __m512) {
        debug_assert!(b.len() >= format.block_bytes());
        let p = b.as_ptr();
        // SAFETY (all loads): `b` holds the whole block, whose layout puts the
        // loaded bytes inside it: 128 bytes of f32, or a 2- or 4-byte header
        // followed by 16 or 32 bytes of quants.
        unsafe {
            match format {
                WeightFormat::F32 => (_mm512_loadu_ps(p.cast()), _mm512_loadu_ps(p.add(64).cast())),
                WeightFormat::Q4_1 => {
                    let (d, m) = (_mm512_set1_ps(scale[0]), _mm512_set1_ps(scale[1]));
                    let (low, high) = nibbles(p.add(4));
                    (_mm512_fmadd_ps(low, d, m), _mm512_fmadd_ps(high, d, m))
                }
                WeightFormat::Q8_0 => {
                    let d = _mm512_set1_ps(scale[0]);
                    let lo = _mm_loadu_si128(p.add(2).cast());
                    let hi = _mm_loadu_si128(p.add(2 + BLOCK / 2).cast());
                    (
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), d),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), d),
                    )
                }
                WeightFormat::Q4_0 => {
                    let (d, eight) = (_mm512_set1_ps(scale[0]), _mm512_set1_ps(8.0));
                    let (low, high) = nibbles(p.add(2));
                    (
                        _mm512_mul_ps(_mm512_sub_ps(low, eight), d),
                        _mm512_mul_ps(_mm512_sub_ps(high, eight), d),
                    )
                }
            }
        }
    }

    /// `tile[r][j]` for `R` rows of `x` and the `NR` rows of `w` (blocks),
    /// decoding each block in registers: for a few rows, decoding is the
    /// cost, and this skips the panel's store and reload. The operations per
    /// `(r, j)` are `dot_tile`'s, so the bits are the same.
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are present; `w` holds `NR` rows of `rb` bytes
    /// (`k / 32` blocks of `format`), `x` holds `R·k` values.
    #[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
    #[allow(clippy::too_many_arguments)] // the kernel's operands, each a plain slice or size
    pub(super) unsafe fn fused_tile(
        format: WeightFormat,
        rows: usize,
        w: &[u8],
        sc: &[[f32; 2]],
        rb: usize,
        k: usize,
        x: &[f32],
        tile: &mut [[f32; NR]; MR],
    ) {
        use WeightFormat::{F32, Q4_0, Q4_1, Q8_0};
        // One instance per (rows, format), so the block decoder is inlined
        // and the loops over the panel unrolled with no dispatch inside.
        macro_rules! go {
            ($r:literal, $f:ident) => {
                // SAFETY: the caller's contract, unchanged.
                unsafe { fused::<$r, { $f as u8 }>(w, sc, rb, k, x, tile) }
            };
        }
        match (rows, format) {
            (1, F32) => go!(1, F32),
            (1, Q4_1) => go!(1, Q4_1),
            (1, Q8_0) => go!(1, Q8_0),
            (1, Q4_0) => go!(1, Q4_0),
            (2, F32) => go!(2, F32),
            (2, Q4_1) => go!(2, Q4_1),
            (2, Q8_0) => go!(2, Q8_0),
            (2, Q4_0) => go!(2, Q4_0),
            (_, F32) => go!(3, F32),
            (_, Q4_1) => go!(3, Q4_1),
            (_, Q8_0) => go!(3, Q8_0),
            (_, Q4_0) => go!(3, Q4_0),
        }
    }

    /// `fused_tile` for `R` rows and the format whose discriminant is `F`.
    ///
    /// # Safety
    /// As `fused_tile`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
    unsafe fn fused<const R: usize, const F: u8>(
        w: &[u8],
        sc: &[[f32; 2]],
        rb: usize,
        k: usize,
        x: &[f32],
        tile: &mut [[f32; NR]; MR],
    ) {
        let format = WeightFormat::from_discriminant(F);
        assert!(x.len() >= R * k && w.len() >= NR * rb && k.is_multiple_of(BLOCK));
        let bb = format.block_bytes();
        let nb = k / BLOCK;
        let unscaled = [1.0, 0.0];
        assert!(format == WeightFormat::F32 || sc.len() >= NR * nb);
        let mut acc: [[__m512; NR]; R] = [[_mm512_setzero_ps(); NR]; R];
        let xp = x.as_ptr();
        for b in 0..nb {
            for j in 0..NR {
                let at = j * rb + b * bb;
                let scale = sc.get(j * nb + b).unwrap_or(&unscaled);
                // SAFETY: `at + bb ≤ NR·rb ≤ w.len()`: block `b` of row `j`.
                let (lo, hi) = unsafe { decode(format, &w[at..at + bb], scale) };
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // SAFETY: `r·k + 32b + 32 ≤ R·k ≤ x.len()`.
                    let (xl, xh) = unsafe {
                        (
                            _mm512_loadu_ps(xp.add(r * k + b * BLOCK)),
                            _mm512_loadu_ps(xp.add(r * k + b * BLOCK + LANES)),
                        )
                    };
                    acc_r[j] = _mm512_fmadd_ps(xl, lo, acc_r[j]);
                    acc_r[j] = _mm512_fmadd_ps(xh, hi, acc_r[j]);
                }
            }
        }
        let mut lanes = [0f32; LANES];
        for r in 0..R {
            for j in 0..NR {
                // SAFETY: `lanes` holds 16 f32.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r][j]) };
                tile[r][j] = reduce_lanes(&lanes);
            }
        }
    }

    /// The AVX-512 form of `dot_tile_portable`: the same fused operations in
    /// the same order, with the accumulators in registers.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `R·k` values, `w` holds `NR·k`, and
    /// `k` is a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_tile<const R: usize>(
        x: &[f32],
        w: &[f32],
        k: usize,
        tile: &mut [[f32; NR]; MR],
    ) {
        assert!(x.len() >= R * k && w.len() >= NR * k && k.is_multiple_of(LANES));
        let mut acc: [[__m512; NR]; R] = [[_mm512_setzero_ps(); NR]; R];
        let xp = x.as_ptr();
        let wp = w.as_ptr();
        let mut t = 0;
        while t < k {
            let mut xr = [_mm512_setzero_ps(); R];
            for (r, v) in xr.iter_mut().enumerate() {
                // SAFETY: `r·k + t + 16 ≤ R·k ≤ x.len()` (asserted above).
                *v = unsafe { _mm512_loadu_ps(xp.add(r * k + t)) };
            }
            for j in 0..NR {
                // SAFETY: `j·k + t + 16 ≤ NR·k ≤ w.len()`.
                let wj = unsafe { _mm512_loadu_ps(wp.add(j * k + t)) };
                for (acc_r, x_r) in acc.iter_mut().zip(&xr) {
                    acc_r[j] = _mm512_fmadd_ps(*x_r, wj, acc_r[j]);
                }
            }
            t += LANES;
        }
        let mut lanes = [0f32; LANES];
        for r in 0..R {
            for j in 0..NR {
                // SAFETY: `lanes` holds 16 f32.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r][j]) };
                tile[r][j] = reduce_lanes(&lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chacha::{StreamKey, fill_words};

    fn words(seed: u8, n: usize) -> Vec<u32> {
        let mut out = vec![0u32; n];
        fill_words(&StreamKey::new(&[seed; 32]), 0, &mut out);
        out
    }

    /// Blocks of `format` filled from a seeded stream, with small sane scales.
    fn random_matrix(format: WeightFormat, n: usize, k: usize, seed: u8) -> QMatrix {
        let bytes = n * k / BLOCK * format.block_bytes();
        let mut data: Vec<u8> = words(seed, bytes.div_ceil(4)).iter().flat_map(|w| w.to_le_bytes()).collect();
        data.truncate(bytes);
        let bb = format.block_bytes();
        for block in data.chunks_exact_mut(bb) {
            match format {
                WeightFormat::F32 => {
                    for c in block.chunks_exact_mut(4) {
                        let v = (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 2001) as f32 / 1000.0 - 1.0;
                        c.copy_from_slice(&v.to_le_bytes());
                    }
                }
                WeightFormat::Q4_1 => {
                    let d = f16::from_f32(0.01 + block[0] as f32 / 5000.0).to_bits().to_le_bytes();
                    let m = f16::from_f32(-0.1 + block[2] as f32 / 2000.0).to_bits().to_le_bytes();
                    block[..2].copy_from_slice(&d);
                    block[2..4].copy_from_slice(&m);
                }
                WeightFormat::Q8_0 | WeightFormat::Q4_0 => {
                    let d = f16::from_f32(0.001 + block[0] as f32 / 50000.0).to_bits().to_le_bytes();
                    block[..2].copy_from_slice(&d);
                }
            }
        }
        QMatrix::new(format, n, k, data).expect("sizes match")
    }

    fn activations(m: usize, k: usize, seed: u8) -> Vec<f32> {
        words(seed, m * k).iter().map(|w| (*w % 20001) as f32 / 10000.0 - 1.0).collect()
    }

    fn reference(w: &QMatrix, x: &[f32], m: usize) -> Vec<f64> {
        let mut row = vec![0f32; w.k];
        let mut y = vec![0f64; m * w.n];
        for j in 0..w.n {
            w.decode_row(j, &mut row);
            for i in 0..m {
                y[i * w.n + j] = (0..w.k).map(|t| x[i * w.k + t] as f64 * row[t] as f64).sum();
            }
        }
        y
    }

    #[test]
    fn products_match_an_f64_reference_for_every_format() {
        for format in [WeightFormat::F32, WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_0] {
            for (m, n, k) in [(1, 8, 32), (2, 13, 64), (5, 70, 96), (7, 33, 576)] {
                let w = random_matrix(format, n, k, 3);
                let x = activations(m, k, 4);
                let mut y = vec![0f32; m * n];
                w.matmul(&x, m, &mut y);
                let want = reference(&w, &x, m);
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    let scale = (0..k).map(|t| x[(i / n) * k + t].abs() as f64).sum::<f64>() + 1.0;
                    assert!(
                        ((*a as f64) - b).abs() <= 1e-6 * scale,
                        "{format:?} {m}×{n}×{k} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_whatever_the_batch() {
        // Guards the batch invariance that validation relies on.
        // Rows alone and in pairs take the fused kernel, 32 rows the panel one;
        // 43 features leave a partial last panel.
        let (n, k) = (43, 192);
        for format in [WeightFormat::F32, WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_0] {
            let w = random_matrix(format, n, k, 9);
            let x = activations(32, k, 10);
            let mut all = vec![0f32; 32 * n];
            w.matmul(&x, 32, &mut all);
            for (i, rows) in [(0, 1), (1, 2), (2, 3), (17, 1), (30, 2)] {
                let mut few = vec![0f32; rows * n];
                w.matmul(&x[i * k..(i + rows) * k], rows, &mut few);
                assert_eq!(
                    few,
                    all[i * n..(i + rows) * n],
                    "{format:?}: rows {i}+{rows} differ from a batch of 32"
                );
            }
        }
    }

    #[test]
    fn the_portable_kernel_gives_the_same_bits() {
        let k = 128;
        let w = random_matrix(WeightFormat::Q8_0, NR, k, 5);
        let mut panel = vec![0f32; NR * k];
        for j in 0..NR {
            w.decode_row(j, &mut panel[j * k..(j + 1) * k]);
        }
        let x = activations(MR, k, 6);
        let (mut a, mut b) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
        dot_tile(&x, MR, &panel, k, &mut a);
        dot_tile_portable::<MR>(&x, &panel, k, &mut b);
        assert_eq!(a, b, "dispatched and portable kernels disagree");
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert_eq!(
            QMatrix::new(WeightFormat::Q4_1, 2, 31, vec![]).expect_err("31 is not whole blocks"),
            QMatrixError::RowLength { k: 31 }
        );
        assert!(matches!(
            QMatrix::new(WeightFormat::Q8_0, 2, 32, vec![0; 67]),
            Err(QMatrixError::Size { .. })
        ));
        let a = random_matrix(WeightFormat::Q4_1, 2, 32, 1);
        let b = random_matrix(WeightFormat::Q8_0, 2, 32, 1);
        assert!(matches!(QMatrix::stack(&[&a, &b]), Err(QMatrixError::Stack { .. })));
        let s = QMatrix::stack(&[&a, &a]).expect("same format");
        assert_eq!((s.n(), s.k()), (4, 32));
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use crate::gemm::{GemmScratch, PackedWeight, Precision, matmul};

    fn seconds(reps: usize, mut f: impl FnMut()) -> f64 {
        f();
        let t = std::time::Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() / reps as f64
    }

    /// Computing on the Q4_1 blocks against dequantizing them once to bf16
    /// and running the Sprint's bf16 GEMM (f32 activations), both on one
    /// thread, for the shape of SmolLM2's fused gate/up product:
    /// `RAYON_NUM_THREADS=1 cargo test --release -p gonka-kernels --lib qmatmul::speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints timings"]
    fn print_quantized_against_bf16() {
        let (n, k) = (3072, 576);
        let mut data = Vec::with_capacity(n * k / BLOCK * 20);
        for i in 0..n * k / BLOCK {
            data.extend_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
            data.extend_from_slice(&half::f16::from_f32(-0.07).to_bits().to_le_bytes());
            data.extend((0..16).map(|b| ((i * 7 + b * 13) % 256) as u8));
        }
        let q = QMatrix::new(WeightFormat::Q4_1, n, k, data).expect("sizes");
        let mut dense = vec![0f32; n * k];
        for j in 0..n {
            q.decode_row(j, &mut dense[j * k..(j + 1) * k]);
        }
        let bits: Vec<u16> = dense.iter().map(|v| half::bf16::from_f32(*v).to_bits()).collect();
        let packed = PackedWeight::from_rows(&bits, n, k);
        let mut scratch = GemmScratch::default();
        eprintln!(
            "Q4_1 {n}×{k}: {:.1} MB as blocks, {:.1} MB as packed bf16",
            q.bytes() as f64 / 1e6,
            packed.bytes() as f64 / 1e6
        );
        for m in [1usize, 3, 8, 32, 128, 512] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
            let mut y = vec![0f32; m * n];
            let reps = (256 / m).max(3);
            let quant = seconds(reps, || q.matmul(&x, m, &mut y));
            let bf16 = seconds(reps, || matmul(&x, m, &packed, &mut y, false, Precision::F32, &mut scratch));
            eprintln!(
                "m={m:>3}: blocks {:.3} ms ({:.1} GFLOP/s), bf16 {:.3} ms ({:.1} GFLOP/s), blocks/bf16 time {:.2}",
                quant * 1e3,
                2.0 * (m * n * k) as f64 / quant / 1e9,
                bf16 * 1e3,
                2.0 * (m * n * k) as f64 / bf16 / 1e9,
                quant / bf16
            );
        }
    }
}
