//! Matrix products of the forward pass: `y = x · Wᵀ` with `x` in f32 (row-major
//! `[m, k]`), `W` a bf16 weight matrix stored `[n, k]` as the spec does, `y` f32
//! `[m, n]`.
//!
//! Weights are fixed for a whole Sprint, so they are packed once, at init, into
//! [`PackedWeight`], whose layout belongs to the kernels. Activations are packed
//! per call into a caller-owned [`GemmScratch`], so the hot loop allocates
//! nothing.
//!
//! Two precisions ([`Precision`]): `F32` multiplies f32 activations by the exact
//! f32 value of each bf16 weight with f32 accumulation (the spec's reference
//! numerics up to summation order); `Bf16` rounds activations to bf16 (ties to
//! even) and accumulates their products with the bf16 weights in f32. A
//! product of two bf16 values is exact in f32, so `VDPBF16PS` and an f32 FMA
//! on rounded activations compute the same sums up to summation order (and
//! `VDPBF16PS` flushing subnormals, which bf16-scaled weights never are).
//!
//! # Packed weight layout
//!
//! `W` is cut into panels of [`NR`] = 32 output features (columns of `Wᵀ`).
//! Inside a panel, `k` is walked in pairs; one pair of one panel is 128 bytes,
//! two cache lines, and each 32-bit word holds the two bf16 weights of one
//! column for `k = 2q` (low half) and `k = 2q + 1` (high half):
//!
//! ```text
//!  data: [panel 0 ........................][panel 1 ...] ...
//!  panel p, pair q:  line 0 = cols 32p+0..32p+15,  line 1 = cols 32p+16..32p+31
//!  one 32-bit word:  bits 31..16 = W[col][2q+1],   bits 15..0 = W[col][2q]
//! ```
//!
//! Columns past `n` and the odd `k` past the end are zero, so kernels never test
//! edges inside their loops. This one layout serves every kernel:
//! - `VDPBF16PS` reads a line as 16 pairs, exactly the operand it wants;
//! - the f32 kernels widen one panel's k block at a time into an f32 buffer
//!   that every row tile of the call then reads (a shift and a mask per line,
//!   paid once per panel instead of once per row tile);
//! - the portable kernel reads it with plain indexing.
//!
//! # Kernels and dispatch
//!
//! [`matmul`] picks, once per process, the fastest kernel for the CPU:
//!
//! | CPU                                | `F32`          | `Bf16`                       |
//! |------------------------------------|----------------|------------------------------|
//! | AVX-512F/BW, AMD with AVX512-BF16  | f32 FMA, 14×32 | `VDPBF16PS`, 14×32           |
//! | AVX-512F/BW, any other             | f32 FMA, 14×32 | f32 FMA on bf16-rounded `x`  |
//! | anything else                      | portable       | portable                     |
//!
//! Why the vendor matters: on the Intel Xeon these kernels were tuned on
//! (family 6, model 207), a 512-bit `VDPBF16PS` issues only every other cycle
//! and competes with the FMA ports: a register-only loop reached 86 GFLOP/s
//! against 171 for f32 FMA, and the `VDPBF16PS` kernel ran at 77–86 GFLOP/s
//! where the FMA kernel on rounded activations runs at ~150. Zen 4, by the
//! published instruction tables (not measured here), issues `VDPBF16PS` at
//! the rate of its f32 FMA, so there it doubles the flops.
//! [`kernel_name`] reports the choice.

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use rayon::prelude::*;
use std::time::Instant;

/// Output features per weight panel: two 512-bit registers of f32.
const NR: usize = 32;

/// bf16 values in one packed line (64 bytes, one cache line).
const LINE_U16: usize = 32;

// A panel's k-pair is NR words of two bf16 each, so it fills exactly two lines.
const _: () = assert!(NR == LINE_U16, "a panel's k-pair must be two lines");

/// How activations enter the matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 activations, f32 accumulation: reproduces the spec's vectors.
    #[default]
    F32,
    /// Activations rounded to bf16 (ties to even), f32 accumulation.
    Bf16,
}

/// One cache line of packed weights. The alignment lets the kernels' main
/// loads each touch one line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
struct Line([u16; LINE_U16]);

const _: () = assert!(size_of::<Line>() == 2 * LINE_U16, "Line has no padding");

const ZERO_LINE: Line = Line([0; LINE_U16]);

/// Sixteen f32 on one cache line: the unit of a widened weight panel.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct F32Line([f32; 16]);

/// A bf16 weight matrix `[n, k]` in the layout the kernels read fastest (see
/// the module documentation).
#[derive(Clone, Debug)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// `⌈k / 2⌉`: k-pairs per panel.
    kpairs: usize,
    /// `⌈n / NR⌉`.
    panels: usize,
    /// `panels · kpairs · 2` lines.
    data: Vec<Line>,
}

impl PackedWeight {
    /// Packs a row-major `[n, k]` matrix of bf16 bit patterns.
    pub fn from_rows(rows: &[u16], n: usize, k: usize) -> Self {
        assert_eq!(rows.len(), n * k, "weight matrix must hold n·k values");
        Self::pack(n, k, |r| &rows[r * k..(r + 1) * k])
    }

    /// Packs matrices stacked along `n` (each row-major `[n_i, k]`, `k > 0`)
    /// as one, without first copying them together: this is how fused
    /// projections such as `[wq; wk; wv]` are built.
    pub fn from_row_blocks(blocks: &[&[u16]], k: usize) -> Self {
        let stack = RowStack::new(blocks, k);
        Self::pack(stack.n(), k, |r| stack.row(r))
    }

    /// Packs `n` rows of `k` values, row `r` given by `row(r)`.
    fn pack<'a>(n: usize, k: usize, row: impl Fn(usize) -> &'a [u16] + Sync) -> Self {
        let kpairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![ZERO_LINE; panels * kpairs * 2];
        // `max(1)`: with k = 0 there are no lines to fill, and chunks must not be empty.
        // Panels in parallel; inside one, pair-major so the 32 source rows are
        // each read front to back and the lines are written in order.
        data.par_chunks_mut(2 * kpairs.max(1)).enumerate().for_each(|(p, panel)| {
            let cols = NR.min(n - p * NR);
            let rows: Vec<&[u16]> = (0..cols).map(|c| row(p * NR + c)).collect();
            for (q, lines) in panel.chunks_exact_mut(2).enumerate() {
                for (c, r) in rows.iter().enumerate() {
                    let (line, lane) = (c / 16, c % 16);
                    let words = &mut lines[line].0;
                    words[2 * lane] = r[2 * q];
                    words[2 * lane + 1] = r.get(2 * q + 1).copied().unwrap_or(0);
                }
            }
        });
        Self { n, k, kpairs, panels, data }
    }

    /// Output features `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row `j` (output feature `j`) as bf16 bits, in spec order.
    pub fn row(&self, j: usize) -> Vec<u16> {
        assert!(j < self.n, "row {j} of a weight with {} rows", self.n);
        let panel = self.panel(j / NR);
        let (line, lane) = ((j % NR) / 16, j % 16);
        (0..self.k).map(|i| panel[(2 * (i / 2) + line) * LINE_U16 + 2 * lane + i % 2]).collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * size_of::<Line>()
    }

    /// All packed values as bf16 bits.
    fn words(&self) -> &[u16] {
        // SAFETY: `Line` is `repr(C)` around `[u16; 32]` with no padding (checked
        // at compile time above), so `data` is `data.len() · 32` initialised,
        // contiguous `u16` values, borrowed for as long as `self`.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<u16>(), self.data.len() * LINE_U16) }
    }

    /// Panel `p`: `kpairs · 2 · 32` values, pair-major.
    fn panel(&self, p: usize) -> &[u16] {
        let len = self.kpairs * 2 * LINE_U16;
        &self.words()[p * len..(p + 1) * len]
    }

    /// Pairs `q..q + pairs` of panel `p`: `pairs` · 2 lines, line-aligned.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn panel_block(&self, p: usize, q: usize, pairs: usize) -> &[u16] {
        let start = (p * self.kpairs + q) * 2 * LINE_U16;
        &self.words()[start..start + pairs * 2 * LINE_U16]
    }
}

/// Row-major matrices stacked along their rows, read as one without copying:
/// fused projections such as `[wq; wk; wv]` are packed from it.
#[derive(Debug)]
pub(crate) struct RowStack<'a, T> {
    blocks: &'a [&'a [T]],
    /// First stacked row of each block.
    starts: Vec<usize>,
    k: usize,
    n: usize,
}

impl<'a, T> RowStack<'a, T> {
    /// Blocks of whole rows of `k > 0` values each.
    pub(crate) fn new(blocks: &'a [&'a [T]], k: usize) -> Self {
        assert!(k > 0, "stacked blocks need k > 0 to know their row counts");
        let mut starts = Vec::with_capacity(blocks.len());
        let mut n = 0;
        for b in blocks {
            assert_eq!(b.len() % k, 0, "every block must hold whole rows of k values");
            starts.push(n);
            n += b.len() / k;
        }
        Self { blocks, starts, k, n }
    }

    /// Rows in all blocks together.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Stacked row `r`.
    pub(crate) fn row(&self, r: usize) -> &'a [T] {
        let i = self.starts.partition_point(|&s| s <= r) - 1;
        let local = r - self.starts[i];
        &self.blocks[i][local * self.k..(local + 1) * self.k]
    }
}

/// Per-thread buffers reused across calls.
#[derive(Debug, Default)]
pub struct GemmScratch {
    /// Activations in f32, rows padded to the kernel's stride.
    packed_a: Vec<f32>,
    /// Activations as bf16 pairs for `VDPBF16PS`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed_a_pairs: Vec<u32>,
    /// One panel's k block of weights widened to f32, `[k][NR]`, for the f32
    /// kernels.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    panel_f32: Vec<F32Line>,
}

/// The kernel family [`matmul`] runs on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Portable,
    /// AVX-512F/BW; `dpbf16` when `VDPBF16PS` is present and worth using.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512 {
        dpbf16: bool,
    },
}

/// Detects the CPU once; `is_x86_feature_detected!` is cheap but not free, and
/// the choice must not change within a process.
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect_isa)
}

#[cfg(target_arch = "x86_64")]
fn detect_isa() -> Isa {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        let dpbf16 = is_x86_feature_detected!("avx512bf16") && x86::is_amd();
        Isa::Avx512 { dpbf16 }
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_isa() -> Isa {
    Isa::Portable
}

/// A short name of the kernel [`matmul`] uses for `precision` on this CPU, for
/// logs and bench reports.
pub fn kernel_name(precision: Precision) -> &'static str {
    match (isa(), precision) {
        (Isa::Portable, _) => "portable",
        (Isa::Avx512 { .. }, Precision::F32) => "avx512-fma",
        (Isa::Avx512 { dpbf16: true }, Precision::Bf16) => "avx512-dpbf16",
        (Isa::Avx512 { dpbf16: false }, Precision::Bf16) => "avx512-fma-bf16in",
    }
}

/// `y = x · Wᵀ` (or `y += x · Wᵀ` when `accumulate`) for `m` rows, on the
/// calling thread.
///
/// `x` holds `m·k` values, `y` holds `m·n`; both row-major and contiguous.
pub fn matmul(
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    y: &mut [f32],
    accumulate: bool,
    precision: Precision,
    scratch: &mut GemmScratch,
) {
    assert!(x.len() >= m * w.k, "x holds {} values, needs m·k = {}", x.len(), m * w.k);
    assert!(y.len() >= m * w.n, "y holds {} values, needs m·n = {}", y.len(), m * w.n);
    if m == 0 || w.n == 0 {
        return;
    }
    if w.k == 0 {
        // An empty sum: the kernels' blocking assumes at least one k-pair.
        if !accumulate {
            y[..m * w.n].fill(0.0);
        }
        return;
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 { dpbf16 } => {
            let kernel = match precision {
                Precision::F32 => x86::Kernel::Fma,
                Precision::Bf16 if dpbf16 => x86::Kernel::Dpbf16,
                Precision::Bf16 => x86::Kernel::FmaBf16Input,
            };
            // SAFETY: `isa()` returned `Avx512` only after detecting AVX-512F and
            // AVX-512BW, and `dpbf16` only after detecting AVX512-BF16.
            unsafe { x86::matmul(x, m, w, y, accumulate, kernel, scratch) };
        }
        _ => portable::matmul(x, m, w, y, accumulate, precision, scratch),
    }
}

/// Measures the aggregate GFLOP/s of [`matmul`] on `threads` threads, each
/// running its own copy of a large, cache-friendly product (`m = 512`,
/// `n = 4096`, `k = 512`) for at least `min_seconds`.
///
/// This is the ceiling the miner's share-of-peak figure is reported against.
pub fn measure_peak_gflops(precision: Precision, threads: usize, min_seconds: f64) -> f64 {
    const M: usize = 512;
    const N: usize = 4096;
    const K: usize = 512;
    let threads = threads.max(1);
    let barrier = std::sync::Barrier::new(threads);
    let flops: f64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let x: Vec<f32> = (0..M * K).map(|i| ((i * 7 + t) % 13) as f32 * 0.125 - 0.75).collect();
                    // bf16 of 2^-4 .. small odd multiples: any finite values do.
                    let rows: Vec<u16> = (0..N * K).map(|i| 0x3d80 + ((i * 5 + t) % 64) as u16).collect();
                    let w = PackedWeight::from_rows(&rows, N, K);
                    let mut y = vec![0f32; M * N];
                    let mut scratch = GemmScratch::default();
                    matmul(&x, M, &w, &mut y, false, precision, &mut scratch);
                    barrier.wait();
                    let start = Instant::now();
                    let mut calls = 0u64;
                    loop {
                        matmul(&x, M, &w, &mut y, false, precision, &mut scratch);
                        calls += 1;
                        let elapsed = start.elapsed().as_secs_f64();
                        if elapsed >= min_seconds {
                            std::hint::black_box(&y);
                            return calls as f64 * (2 * M * N * K) as f64 / elapsed;
                        }
                    }
                })
            })
            .collect();
        // A worker only panics on a bug in `matmul`; report it as such.
        workers.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).sum()
    });
    flops / 1e9
}
