//! Matrix products on quantized weights, `y = x · Wᵀ`, with `x` f32 `[m, k]`,
//! `W` `[n, k]` in its file's quantization (Q4_1, Q8_0, Q4_0 blocks, or f32)
//! and `y` f32 `[m, n]`.
//!
//! Weights stay quantized (Q4_1 is 6 bits a weight here with its f32 scales,
//! under half of bf16's memory traffic), rearranged at load into *panels*:
//! sixteen output features side by side, one per lane of a 512-bit register.
//! For every block of 32 inputs a panel holds the sixteen features' scales,
//! then their quants input by input, so one 16-byte load gives the nibbles of
//! all sixteen features at two consecutive inputs:
//!
//! ```text
//!  panel p (features 16p .. 16p+15), block b:
//!    scales  d[16] m[16]                      (f32)
//!    quants  for t in 0..16:  byte c = q[c][2t] | q[c][2t+1] << 4   (Q4)
//!            for t in 0..32:  byte c = q[c][t]                       (Q8_0)
//! ```
//!
//! A weight is decoded to exact f32 in a register (`w = d·q + m`, rounded
//! once) and multiplied into sixteen features' sums at once, by a broadcast
//! input. Two ways to run, one result:
//!
//! - up to [`FEW_ROWS`] rows (a decode step): the weights are decoded in
//!   registers and used at once, on the persistent [`team`](crate::team);
//! - more rows: a group of two panels is decoded once into a per-thread
//!   buffer `[k][32]`, and register tiles of up to [`TILE_ROWS`] rows × 32
//!   features sweep it, the shape of a GEMM micro-kernel (28 accumulators).
//!
//! # One result per (row, feature), whatever the batch
//!
//! Every `y[i][j]` is one chain of fused multiply-adds over the inputs in
//! order, starting from zero: `y = fma(x[k−1], w[k−1], … fma(x[0], w[0], 0))`,
//! with the same `w` bits on both ways. A token's logits therefore do not
//! depend on what else was in the batch, and the portable kernel (scalar
//! `mul_add` in the same order) gives the same bits as the AVX-512 one.

use half::f16;
use rayon::prelude::*;
use thiserror::Error;

mod int16;

pub use int16::int16_is_fast;

/// Weights per quantization block (every block format here).
pub const BLOCK: usize = 32;

/// Features per panel: the lanes of one 512-bit f32 register.
const LANES: usize = 16;

/// Panels per task and per register tile: 32 features, two registers wide.
const GROUP: usize = 2;

/// Features per group.
const GROUP_COLS: usize = GROUP * LANES;

/// Rows up to which a product decodes its weights in registers on the team.
/// (Passes of up to 8 rows in registers for up to 32 rows were tried: one
/// thread ran 12 rows 1.5× faster, but two threads ran batch-32 decode 10%
/// slower and batch 16 no faster, so more rows take the group buffer.)
const FEW_ROWS: usize = 8;

/// Rows of the many-row register tile: 14 rows × 2 registers = 28
/// accumulators, plus two weight registers and a broadcast, of 32.
const TILE_ROWS: usize = 14;

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

    /// Bytes of one block of [`BLOCK`] weights in the file.
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightFormat::F32 => 4 * BLOCK,
            WeightFormat::Q4_1 => 4 + BLOCK / 2,
            WeightFormat::Q8_0 => 2 + BLOCK,
            WeightFormat::Q4_0 => 2 + BLOCK / 2,
        }
    }

    /// Bytes of the quants of one panel block (sixteen features).
    const fn panel_quant_bytes(self) -> usize {
        match self {
            WeightFormat::F32 => 4 * BLOCK * LANES,
            WeightFormat::Q4_1 | WeightFormat::Q4_0 => BLOCK / 2 * LANES,
            WeightFormat::Q8_0 => BLOCK * LANES,
        }
    }

    /// Whether blocks carry scales (all but f32).
    const fn scaled(self) -> bool {
        !matches!(self, WeightFormat::F32)
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

/// A weight matrix `[n, k]`, quantized as in its file, in panels.
#[derive(Clone, PartialEq)]
pub struct QMatrix {
    format: WeightFormat,
    n: usize,
    k: usize,
    /// Quants of panel `p`, block `b` at `(p·nb + b)·panel_quant_bytes`;
    /// features past `n` in the last panel are zero.
    quants: Vec<u8>,
    /// Per panel block, sixteen `d` then sixteen `m` (0 where the format has
    /// none), at `(p·nb + b)·32`; empty for f32.
    scales: Vec<f32>,
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
    /// `n` rows of `k` weights, `data` their blocks row after row as in the file.
    pub fn new(format: WeightFormat, n: usize, k: usize, data: Vec<u8>) -> Result<Self, QMatrixError> {
        if !k.is_multiple_of(BLOCK) || k == 0 {
            return Err(QMatrixError::RowLength { k });
        }
        let expected = n * (k / BLOCK) * format.block_bytes();
        if data.len() != expected {
            return Err(QMatrixError::Size { format, n, k, expected, found: data.len() });
        }
        let nb = k / BLOCK;
        let panels = n.div_ceil(LANES);
        let qb = format.panel_quant_bytes();
        let mut quants = vec![0u8; panels * nb * qb];
        let mut scales = if format.scaled() { vec![0f32; panels * nb * 2 * LANES] } else { Vec::new() };
        for (j, row) in data.chunks_exact(nb * format.block_bytes()).enumerate() {
            let (p, c) = (j / LANES, j % LANES);
            for (b, block) in row.chunks_exact(format.block_bytes()).enumerate() {
                let at = p * nb + b;
                let q = &mut quants[at * qb..(at + 1) * qb];
                match format {
                    WeightFormat::F32 => {
                        for (t, v) in block.chunks_exact(4).enumerate() {
                            q[(t * LANES + c) * 4..][..4].copy_from_slice(v);
                        }
                    }
                    WeightFormat::Q4_1 | WeightFormat::Q4_0 => {
                        let head = if format == WeightFormat::Q4_1 { 4 } else { 2 };
                        let nib = |i: usize| {
                            let byte = block[head + i % (BLOCK / 2)];
                            if i < BLOCK / 2 { byte & 0x0F } else { byte >> 4 }
                        };
                        for t in 0..BLOCK / 2 {
                            q[t * LANES + c] = nib(2 * t) | nib(2 * t + 1) << 4;
                        }
                    }
                    WeightFormat::Q8_0 => {
                        for (t, &v) in block[2..].iter().enumerate() {
                            q[t * LANES + c] = v;
                        }
                    }
                }
                if format.scaled() {
                    let sc = &mut scales[at * 2 * LANES..(at + 1) * 2 * LANES];
                    sc[c] = half_at(block, 0);
                    sc[LANES + c] = if format == WeightFormat::Q4_1 { half_at(block, 2) } else { 0.0 };
                }
            }
        }
        Ok(Self { format, n, k, quants, scales })
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
        let mut data = Vec::new();
        for p in parts {
            if p.format != first.format || p.k != first.k {
                return Err(QMatrixError::Stack {
                    expected: first.format,
                    expected_k: first.k,
                    found: p.format,
                    found_k: p.k,
                });
            }
            for j in 0..p.n {
                p.encode_row(j, &mut data);
            }
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

    /// Bytes held: quants and scales.
    pub fn bytes(&self) -> usize {
        self.quants.len() + 4 * self.scales.len()
    }

    /// Blocks per row.
    fn nb(&self) -> usize {
        self.k / BLOCK
    }

    /// The quant of feature `j` at input `t` (a nibble, a byte, or the f32's bits).
    fn quant(&self, j: usize, t: usize) -> u32 {
        let (p, c, b, i) = (j / LANES, j % LANES, t / BLOCK, t % BLOCK);
        panel_quant(self.format, &self.quants[(p * self.nb() + b) * self.format.panel_quant_bytes()..], i, c)
    }

    /// `(d, m)` of feature `j`'s block `b`.
    fn scale(&self, j: usize, b: usize) -> (f32, f32) {
        let at = ((j / LANES) * self.nb() + b) * 2 * LANES + j % LANES;
        (self.scales[at], self.scales[at + LANES])
    }

    /// Row `j` as the file stores it, appended to `out`.
    fn encode_row(&self, j: usize, out: &mut Vec<u8>) {
        let half = |v: f32| f16::from_f32(v).to_bits().to_le_bytes();
        for b in 0..self.nb() {
            let q = |i: usize| self.quant(j, b * BLOCK + i);
            match self.format {
                WeightFormat::F32 => out.extend((0..BLOCK).flat_map(|i| q(i).to_le_bytes())),
                WeightFormat::Q4_1 | WeightFormat::Q4_0 => {
                    let (d, m) = self.scale(j, b);
                    out.extend_from_slice(&half(d));
                    if self.format == WeightFormat::Q4_1 {
                        out.extend_from_slice(&half(m));
                    }
                    out.extend((0..BLOCK / 2).map(|i| (q(i) | q(i + BLOCK / 2) << 4) as u8));
                }
                WeightFormat::Q8_0 => {
                    out.extend_from_slice(&half(self.scale(j, b).0));
                    out.extend((0..BLOCK).map(|i| q(i) as u8));
                }
            }
        }
    }

    /// Row `j` decoded to f32 into `out` (`k` values): an embedding lookup.
    pub fn decode_row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n && out.len() == self.k, "row {j} of {} into {} values", self.n, out.len());
        for (t, o) in out.iter_mut().enumerate() {
            let (d, m) = if self.format.scaled() { self.scale(j, t / BLOCK) } else { (1.0, 0.0) };
            *o = weight(self.format, self.quant(j, t), d, m);
        }
    }

    /// `y = x · Wᵀ` for `m` rows: up to [`FEW_ROWS`] rows (a decode step) on
    /// the process's [`team`](crate::team::team), more on the current rayon pool.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(x.len(), m * self.k, "x holds {} values, needs m·k = {}", x.len(), m * self.k);
        assert_eq!(y.len(), m * self.n, "y holds {} values, needs m·n = {}", y.len(), m * self.n);
        if m == 0 || self.n == 0 {
            return;
        }
        let groups = self.n.div_ceil(GROUP_COLS);
        let out = OutPtr(y.as_mut_ptr());
        thread_local! {
            static PANELS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let task = |g: usize| {
            // SAFETY: each group index is visited by exactly one task, and a
            // group writes only columns `32g .. 32g + 32` of `y`, so the writes
            // of different tasks never touch the same element; `y` outlives the
            // parallel loop, which joins before returning.
            PANELS.with_borrow_mut(|buf| unsafe { self.group(g, x, m, buf, out) });
        };
        if m <= FEW_ROWS {
            // A decode step: ~120 short products a token, on the team that
            // stays awake between them (batch 1: 1.2× over the pool).
            crate::team::team().run(groups, &task);
        } else {
            (0..groups).into_par_iter().for_each(task);
        }
    }

    /// Columns `32g ..` of `y` for all `m` rows, with the AVX-512 kernels
    /// where the CPU has them.
    ///
    /// # Safety
    /// `out` points at `m·n` writable f32 and no other thread writes
    /// columns `32g .. 32g + 32` of it concurrently.
    unsafe fn group(&self, g: usize, x: &[f32], m: usize, buf: &mut Vec<f32>, out: OutPtr) {
        #[cfg(target_arch = "x86_64")]
        let simd = avx512_fma();
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        // SAFETY: the caller's contract, unchanged.
        unsafe { self.group_with(g, x, m, buf, out, simd) };
    }

    /// [`QMatrix::group`] on the AVX-512 kernels (`simd`, which the CPU must
    /// support) or in plain Rust: the same operations in the same order.
    ///
    /// # Safety
    /// As [`QMatrix::group`], and with `simd` the CPU has AVX-512F/BW and FMA.
    unsafe fn group_with(&self, g: usize, x: &[f32], m: usize, buf: &mut Vec<f32>, out: OutPtr, simd: bool) {
        let k = self.k;
        let (panel, cols) = self.panel_group(g);
        let mut tile = [[0f32; GROUP_COLS]; TILE_ROWS];
        // Elsewhere there are only the portable kernels.
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        #[cfg(target_arch = "x86_64")]
        if simd && m <= FEW_ROWS {
            // SAFETY: AVX-512F/BW and FMA are present; `x` holds `m·k` values.
            unsafe { x86::few_rows(&panel, x, m, k, &mut tile) };
            // SAFETY: rows `0..m`; columns as the caller promised.
            unsafe { write_tile(&tile, 0, m, g * GROUP_COLS, cols, self.n, out) };
            return;
        }
        // Every value is written by the decoder, so a buffer of the right
        // size is not cleared first.
        buf.resize(k * GROUP_COLS, 0.0);
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: AVX-512F/BW and FMA are present; `buf` holds `k·32` values.
            unsafe { x86::decode_group(&panel, buf) };
        } else {
            decode_group_portable(&panel, buf);
        }
        #[cfg(not(target_arch = "x86_64"))]
        decode_group_portable(&panel, buf);
        let mut i = 0;
        while i < m {
            let rows = tile_rows(m - i);
            let xs = &x[i * k..(i + rows) * k];
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX-512F is present; `xs` holds `rows·k` values.
                unsafe { x86::many_rows(xs, rows, buf, k, &mut tile) };
            } else {
                rows_portable(xs, rows, buf, k, &mut tile);
            }
            #[cfg(not(target_arch = "x86_64"))]
            rows_portable(xs, rows, buf, k, &mut tile);
            // SAFETY: rows `i .. i + rows` are below `m`; columns as promised.
            unsafe { write_tile(&tile, i, rows, g * GROUP_COLS, cols, self.n, out) };
            i += rows;
        }
    }

    /// Group `g`'s panels, and how many of its 32 features exist.
    fn panel_group(&self, g: usize) -> (Panel<'_>, usize) {
        let (nb, qb) = (self.nb(), self.format.panel_quant_bytes());
        let p0 = g * GROUP;
        let panels = GROUP.min(self.n.div_ceil(LANES) - p0);
        let cols = GROUP_COLS.min(self.n - g * GROUP_COLS);
        let quants = &self.quants[p0 * nb * qb..(p0 + panels) * nb * qb];
        let scales = if self.format.scaled() {
            &self.scales[p0 * nb * 2 * LANES..(p0 + panels) * nb * 2 * LANES]
        } else {
            &[]
        };
        (Panel { format: self.format, panels, nb, quants, scales }, cols)
    }
}

/// The panels of one group: up to [`GROUP`] panels' quants and scales.
struct Panel<'a> {
    format: WeightFormat,
    panels: usize,
    nb: usize,
    quants: &'a [u8],
    scales: &'a [f32],
}

/// Rows of the next register tile when `left` remain: the rows split into
/// as few tiles as fit, of nearly equal height, so no short last tile reads
/// the decoded weights for only a few rows (32 rows: 11, 11, 10).
fn tile_rows(left: usize) -> usize {
    left.div_ceil(left.div_ceil(TILE_ROWS))
}

/// One weight from its quant: `d·q + m` (one rounding), `d·q`, `d·(q − 8)`, or the f32.
#[inline(always)]
fn weight(format: WeightFormat, q: u32, d: f32, m: f32) -> f32 {
    match format {
        WeightFormat::F32 => f32::from_bits(q),
        WeightFormat::Q4_1 => (q as f32).mul_add(d, m),
        WeightFormat::Q8_0 => f32::from(q as u8 as i8) * d,
        WeightFormat::Q4_0 => (q as f32 - 8.0) * d,
    }
}

/// The quant of lane `c` at input `i` of a panel block `q` (a nibble, a
/// byte, or the f32's bits).
fn panel_quant(format: WeightFormat, q: &[u8], i: usize, c: usize) -> u32 {
    match format {
        WeightFormat::F32 => {
            let at = (i * LANES + c) * 4;
            u32::from_le_bytes([q[at], q[at + 1], q[at + 2], q[at + 3]])
        }
        WeightFormat::Q4_1 | WeightFormat::Q4_0 => u32::from(q[i / 2 * LANES + c] >> (4 * (i % 2)) & 0x0F),
        WeightFormat::Q8_0 => u32::from(q[i * LANES + c]),
    }
}

/// Decodes a group into `buf` as `[k][32]` (a missing second panel as zeros).
fn decode_group_portable(panel: &Panel<'_>, buf: &mut [f32]) {
    let qb = panel.format.panel_quant_bytes();
    if panel.panels < GROUP {
        for row in buf.chunks_exact_mut(GROUP_COLS) {
            row[panel.panels * LANES..].fill(0.0);
        }
    }
    for p in 0..panel.panels {
        for b in 0..panel.nb {
            let q = &panel.quants[(p * panel.nb + b) * qb..][..qb];
            for i in 0..BLOCK {
                for c in 0..LANES {
                    let quant = panel_quant(panel.format, q, i, c);
                    let (d, m) = if panel.format.scaled() {
                        let sc = &panel.scales[(p * panel.nb + b) * 2 * LANES..];
                        (sc[c], sc[LANES + c])
                    } else {
                        (1.0, 0.0)
                    };
                    buf[(b * BLOCK + i) * GROUP_COLS + p * LANES + c] = weight(panel.format, quant, d, m);
                }
            }
        }
    }
}

/// `tile[r][c] = Σ_t x[r][t] · buf[t][c]`, one `mul_add` chain over `t` in order.
fn rows_portable(x: &[f32], rows: usize, buf: &[f32], k: usize, tile: &mut [[f32; GROUP_COLS]; TILE_ROWS]) {
    for (r, out) in tile.iter_mut().enumerate().take(rows) {
        out.fill(0.0);
        for t in 0..k {
            let xv = x[r * k + t];
            for (o, &w) in out.iter_mut().zip(&buf[t * GROUP_COLS..(t + 1) * GROUP_COLS]) {
                *o = xv.mul_add(w, *o);
            }
        }
    }
}

/// Writes `tile[..rows][..cols]` to rows `i..`, columns `j0..` of `out` (`n` wide).
///
/// # Safety
/// `out` points at a row-major matrix `n` wide with at least `i + rows` rows,
/// `j0 + cols ≤ n`, and no other thread writes those elements concurrently.
unsafe fn write_tile(
    tile: &[[f32; GROUP_COLS]; TILE_ROWS],
    i: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    n: usize,
    out: OutPtr,
) {
    for (r, vals) in tile.iter().take(rows).enumerate() {
        let dst = out.0.wrapping_add((i + r) * n + j0);
        // SAFETY: inside the matrix by the function's contract; `vals` holds
        // at least `cols` values and cannot overlap `out` (a local array).
        // A whole group is a copy of constant length, which compiles to two
        // register moves instead of a call.
        unsafe {
            if cols == GROUP_COLS {
                std::ptr::copy_nonoverlapping(vals.as_ptr(), dst, GROUP_COLS);
            } else {
                std::ptr::copy_nonoverlapping(vals.as_ptr(), dst, cols);
            }
        }
    }
}

/// Whether the AVX-512 kernels can run (queried once).
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

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, FEW_ROWS, GROUP, GROUP_COLS, LANES, Panel, TILE_ROWS, WeightFormat};
    use std::arch::x86_64::{
        __m512, _mm_loadu_si128, _mm512_and_si512, _mm512_cvtepi8_epi32, _mm512_cvtepi32_ps,
        _mm512_cvtepu8_epi32, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_epi32,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_srli_epi32, _mm512_storeu_ps, _mm512_sub_ps,
    };

    /// The sixteen features' weights at inputs `2t` and `2t + 1` of one panel
    /// block, each rounded exactly as [`super::weight`] rounds it.
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are present; `q` points at the panel block's
    /// quants, `t < 16`.
    #[inline(always)]
    unsafe fn pair<const F: u8>(q: *const u8, t: usize, d: __m512, m: __m512) -> (__m512, __m512) {
        let format = WeightFormat::from_discriminant(F);
        // SAFETY (all loads): the panel block holds `panel_quant_bytes`:
        // 16 pairs × 16 bytes (Q4), 32 inputs × 16 bytes (Q8_0) or × 64 (f32).
        unsafe {
            match format {
                WeightFormat::F32 => {
                    let p = q.add(2 * t * 4 * LANES).cast::<f32>();
                    (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(LANES)))
                }
                WeightFormat::Q4_1 | WeightFormat::Q4_0 => {
                    let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(q.add(t * LANES).cast()));
                    let low = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(0x0F)));
                    let high = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(bytes));
                    if format == WeightFormat::Q4_1 {
                        (_mm512_fmadd_ps(low, d, m), _mm512_fmadd_ps(high, d, m))
                    } else {
                        let eight = _mm512_set1_ps(8.0);
                        (
                            _mm512_mul_ps(_mm512_sub_ps(low, eight), d),
                            _mm512_mul_ps(_mm512_sub_ps(high, eight), d),
                        )
                    }
                }
                WeightFormat::Q8_0 => {
                    let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(q.add(2 * t * LANES).cast()));
                    let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(q.add((2 * t + 1) * LANES).cast()));
                    (_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d))
                }
            }
        }
    }

    /// The scales `(d, m)` of panel `p`, block `b` (unit for f32).
    ///
    /// # Safety
    /// AVX-512F is present; for a scaled format `panel.scales` holds the block's 32 values.
    #[inline(always)]
    unsafe fn scales(panel: &Panel<'_>, p: usize, b: usize) -> (__m512, __m512) {
        if !panel.format.scaled() {
            // SAFETY: AVX-512F is present (the caller's contract).
            return unsafe { (_mm512_set1_ps(1.0), _mm512_setzero_ps()) };
        }
        let s = &panel.scales[(p * panel.nb + b) * 2 * LANES..][..2 * LANES];
        // SAFETY: `s` holds 32 f32; AVX-512F is present.
        unsafe { (_mm512_loadu_ps(s.as_ptr()), _mm512_loadu_ps(s.as_ptr().add(LANES))) }
    }

    /// `tile[r][c]` for up to [`FEW_ROWS`] rows of `x` and the group's
    /// features, decoding each weight in registers and using it at once.
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are present; `x` holds `rows·k` values, `k = 32·nb`.
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    pub(super) unsafe fn few_rows(
        panel: &Panel<'_>,
        x: &[f32],
        rows: usize,
        k: usize,
        tile: &mut [[f32; GROUP_COLS]; TILE_ROWS],
    ) {
        use WeightFormat::{F32, Q4_0, Q4_1, Q8_0};
        // One instance per (rows, panels, format), so the decoder is inlined
        // and the loops unrolled with no dispatch inside.
        macro_rules! go {
            ($f:ident, $($r:literal)*) => {
                match (rows, panel.panels) {
                    $(
                        // SAFETY: the caller's contract, unchanged.
                        ($r, 1) => unsafe { few::<$r, 1, { $f as u8 }>(panel, x, k, tile) },
                        // SAFETY: as above.
                        ($r, _) => unsafe { few::<$r, 2, { $f as u8 }>(panel, x, k, tile) },
                    )*
                    _ => unreachable!("at most {FEW_ROWS} rows"),
                }
            };
        }
        debug_assert!((1..=FEW_ROWS).contains(&rows));
        match panel.format {
            F32 => go!(F32, 1 2 3 4 5 6 7 8),
            Q4_1 => go!(Q4_1, 1 2 3 4 5 6 7 8),
            Q8_0 => go!(Q8_0, 1 2 3 4 5 6 7 8),
            Q4_0 => go!(Q4_0, 1 2 3 4 5 6 7 8),
        }
    }

    /// `few_rows` for `R` rows, `P` panels and the format whose discriminant is `F`.
    ///
    /// # Safety
    /// As `few_rows`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    unsafe fn few<const R: usize, const P: usize, const F: u8>(
        panel: &Panel<'_>,
        x: &[f32],
        k: usize,
        tile: &mut [[f32; GROUP_COLS]; TILE_ROWS],
    ) {
        let qb = panel.format.panel_quant_bytes();
        assert!(x.len() >= R * k && k == panel.nb * BLOCK && panel.quants.len() >= P * panel.nb * qb);
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let xp = x.as_ptr();
        for b in 0..panel.nb {
            let mut sc = [(_mm512_setzero_ps(), _mm512_setzero_ps()); P];
            let mut q = [std::ptr::null(); P];
            for p in 0..P {
                // SAFETY: panel `p < P` exists; its block `b` is inside `quants`.
                sc[p] = unsafe { scales(panel, p, b) };
                q[p] = panel.quants[(p * panel.nb + b) * qb..].as_ptr();
            }
            for t in 0..BLOCK / 2 {
                let at = b * BLOCK + 2 * t;
                for p in 0..P {
                    // SAFETY: `q[p]` is a whole panel block, `t < 16`.
                    let (w0, w1) = unsafe { pair::<F>(q[p], t, sc[p].0, sc[p].1) };
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: `r·k + at + 1 < R·k ≤ x.len()`.
                        let (x0, x1) = unsafe { (*xp.add(r * k + at), *xp.add(r * k + at + 1)) };
                        acc_r[p] = _mm512_fmadd_ps(_mm512_set1_ps(x0), w0, acc_r[p]);
                        acc_r[p] = _mm512_fmadd_ps(_mm512_set1_ps(x1), w1, acc_r[p]);
                    }
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (p, v) in acc_r.iter().enumerate() {
                // SAFETY: `tile[r]` holds 32 f32; `p·16 + 16 ≤ 32`.
                unsafe { _mm512_storeu_ps(tile[r].as_mut_ptr().add(p * LANES), *v) };
            }
        }
    }

    /// Decodes the group into `buf` as `[k][32]` (a missing second panel as zeros).
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are present; `buf` holds `32·k` values.
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    pub(super) unsafe fn decode_group(panel: &Panel<'_>, buf: &mut [f32]) {
        use WeightFormat::{F32, Q4_0, Q4_1, Q8_0};
        // SAFETY: the caller's contract, unchanged.
        unsafe {
            match panel.format {
                F32 => decode::<{ F32 as u8 }>(panel, buf),
                Q4_1 => decode::<{ Q4_1 as u8 }>(panel, buf),
                Q8_0 => decode::<{ Q8_0 as u8 }>(panel, buf),
                Q4_0 => decode::<{ Q4_0 as u8 }>(panel, buf),
            }
        }
    }

    /// `decode_group` for the format whose discriminant is `F`.
    ///
    /// # Safety
    /// As `decode_group`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    unsafe fn decode<const F: u8>(panel: &Panel<'_>, buf: &mut [f32]) {
        let qb = panel.format.panel_quant_bytes();
        assert!(buf.len() >= panel.nb * BLOCK * GROUP_COLS && panel.panels <= GROUP);
        assert!(panel.quants.len() >= panel.panels * panel.nb * qb);
        let out = buf.as_mut_ptr();
        for p in 0..GROUP {
            for b in 0..panel.nb {
                for t in 0..BLOCK / 2 {
                    let row = (b * BLOCK + 2 * t) * GROUP_COLS + p * LANES;
                    let (w0, w1) = if p < panel.panels {
                        // SAFETY: panel `p` exists; its block `b` is inside `quants`, `t < 16`.
                        unsafe {
                            let (d, m) = scales(panel, p, b);
                            pair::<F>(panel.quants[(p * panel.nb + b) * qb..].as_ptr(), t, d, m)
                        }
                    } else {
                        (_mm512_setzero_ps(), _mm512_setzero_ps())
                    };
                    // SAFETY: `row + 32 + 16 ≤ 32·k ≤ buf.len()`.
                    unsafe {
                        _mm512_storeu_ps(out.add(row), w0);
                        _mm512_storeu_ps(out.add(row + GROUP_COLS), w1);
                    }
                }
            }
        }
    }

    /// `tile[r][c] = Σ_t x[r][t] · buf[t][c]` for `rows ≤ 14`: one fused
    /// multiply-add chain per element over `t` in order.
    ///
    /// # Safety
    /// AVX-512F and FMA are present; `x` holds `rows·k` values, `buf` `32·k`.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn many_rows(
        x: &[f32],
        rows: usize,
        buf: &[f32],
        k: usize,
        tile: &mut [[f32; GROUP_COLS]; TILE_ROWS],
    ) {
        macro_rules! go {
            ($($r:literal)*) => {
                match rows {
                    // SAFETY: the caller's contract, unchanged.
                    $($r => unsafe { many::<$r>(x, buf, k, tile) },)*
                    _ => unreachable!("at most {TILE_ROWS} rows"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);
    }

    /// `many_rows` for `R` rows.
    ///
    /// # Safety
    /// As `many_rows`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn many<const R: usize>(
        x: &[f32],
        buf: &[f32],
        k: usize,
        tile: &mut [[f32; GROUP_COLS]; TILE_ROWS],
    ) {
        assert!(x.len() >= R * k && buf.len() >= k * GROUP_COLS);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let (xp, wp) = (x.as_ptr(), buf.as_ptr());
        for t in 0..k {
            // SAFETY: `32t + 32 ≤ 32k ≤ buf.len()`.
            let (w0, w1) = unsafe {
                (_mm512_loadu_ps(wp.add(t * GROUP_COLS)), _mm512_loadu_ps(wp.add(t * GROUP_COLS + LANES)))
            };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: `r·k + t < R·k ≤ x.len()`.
                let xv = _mm512_set1_ps(unsafe { *xp.add(r * k + t) });
                acc_r[0] = _mm512_fmadd_ps(xv, w0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(xv, w1, acc_r[1]);
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: `tile[r]` holds 32 f32.
            unsafe {
                _mm512_storeu_ps(tile[r].as_mut_ptr(), acc_r[0]);
                _mm512_storeu_ps(tile[r].as_mut_ptr().add(LANES), acc_r[1]);
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
    pub(super) fn random_matrix(format: WeightFormat, n: usize, k: usize, seed: u8) -> QMatrix {
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

    pub(super) fn activations(m: usize, k: usize, seed: u8) -> Vec<f32> {
        words(seed, m * k).iter().map(|w| (*w % 20001) as f32 / 10000.0 - 1.0).collect()
    }

    pub(super) fn reference(w: &QMatrix, x: &[f32], m: usize) -> Vec<f64> {
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
        // Up to 8 rows decode in registers, more take the decoded group;
        // 43 features leave a partial last panel and a group of one panel.
        let (n, k) = (43, 192);
        for format in [WeightFormat::F32, WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_0] {
            let w = random_matrix(format, n, k, 9);
            let x = activations(40, k, 10);
            let mut all = vec![0f32; 40 * n];
            w.matmul(&x, 40, &mut all);
            for (i, rows) in [(0, 1), (1, 2), (2, 3), (17, 1), (30, 2), (5, 8), (3, 20)] {
                let mut few = vec![0f32; rows * n];
                w.matmul(&x[i * k..(i + rows) * k], rows, &mut few);
                assert_eq!(
                    few,
                    all[i * n..(i + rows) * n],
                    "{format:?}: rows {i}+{rows} differ from a batch of 40"
                );
            }
        }
    }

    #[test]
    fn the_portable_kernel_gives_the_same_bits() {
        for format in [WeightFormat::F32, WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_0] {
            let (n, k) = (50, 128);
            let w = random_matrix(format, n, k, 5);
            for m in [1, 2, 3, 4, 8, 9, 15, 29, 40] {
                let x = activations(m, k, 6);
                let (mut fast, mut plain) = (vec![0f32; m * n], vec![0f32; m * n]);
                w.matmul(&x, m, &mut fast);
                let out = OutPtr(plain.as_mut_ptr());
                let mut buf = Vec::new();
                for g in 0..n.div_ceil(GROUP_COLS) {
                    // SAFETY: `plain` holds m·n values; one thread writes it.
                    unsafe { w.group_with(g, &x, m, &mut buf, out, false) };
                }
                assert_eq!(fast, plain, "{format:?}, {m} rows: dispatched and portable kernels disagree");
            }
        }
    }

    #[test]
    fn panels_give_back_the_files_blocks() {
        for format in [WeightFormat::F32, WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_0] {
            let (n, k) = (21, 96);
            let w = random_matrix(format, n, k, 7);
            let mut data = Vec::new();
            for j in 0..n {
                w.encode_row(j, &mut data);
            }
            let again = QMatrix::new(format, n, k, data).expect("sizes match");
            assert!(again == w, "{format:?}: re-encoded rows differ");
            let s = QMatrix::stack(&[&w, &w]).expect("same format");
            let (mut a, mut b) = (vec![0f32; k], vec![0f32; k]);
            for j in 0..2 * n {
                s.decode_row(j, &mut a);
                w.decode_row(j % n, &mut b);
                assert_eq!(a, b, "{format:?}: stacked row {j}");
            }
        }
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
        for m in [1usize, 3, 8, 16, 32, 64, 128, 512] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
            let mut y = vec![0f32; m * n];
            let reps = (256 / m).max(3);
            let quant = seconds(reps, || q.matmul(&x, m, &mut y));
            let int16 = seconds(reps, || q.matmul_int16(&x, m, &mut y));
            let bf16 = seconds(reps, || matmul(&x, m, &packed, &mut y, false, Precision::F32, &mut scratch));
            let rate = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e9;
            eprintln!(
                "m={m:>3}: blocks {:.3} ms ({:.1} GFLOP/s), int16 {:.3} ms ({:.1}), bf16 {:.3} ms ({:.1}), \
                 blocks/bf16 time {:.2}, int16/blocks {:.2}",
                quant * 1e3,
                rate(quant),
                int16 * 1e3,
                rate(int16),
                bf16 * 1e3,
                rate(bf16),
                quant / bf16,
                int16 / quant
            );
        }
    }
}
