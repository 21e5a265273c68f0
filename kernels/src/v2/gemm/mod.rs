//! Exact int8 matrix products of the v2 forward pass: `y = x · Wᵀ` with `x`
//! int8 row-major `[m, k]`, `W` an int8 weight matrix `[n, k]` packed once at
//! init into [`PackedI8`], and `y` int32 `[m, n]`. Every kernel returns the
//! same integers: the sums are exact, so their order does not matter.
//!
//! # Packed weight layout
//!
//! `W` is cut into panels of [`NR`] = 32 output features. Inside a panel, `k`
//! is walked in quads of four; one quad of one panel is two 64-byte lines,
//! each 32-bit word holding the four weights of one column for
//! `k = 4q .. 4q + 3` (lowest byte first):
//!
//! ```text
//!  panel p, quad q:  line 0 = cols 32p+0..32p+15,  line 1 = cols 32p+16..32p+31
//!  one 32-bit word:  bytes W[col][4q], W[col][4q+1], W[col][4q+2], W[col][4q+3]
//! ```
//!
//! That word is exactly the signed operand of `VPDPBUSD`, which adds four
//! products of unsigned bytes by signed bytes to each 32-bit lane. The
//! activations are signed, so the kernels feed `a + 128` (a byte in 0..=255,
//! flipping the sign bit) and subtract `128 · Σₖ W[col][k]` once per column:
//! the bias stored beside the panels. Columns past `n` and `k` past the end
//! are zero, so the kernels never test edges inside their loops.
//!
//! # Range
//!
//! With `|a|, |w| ≤ 127` every partial sum of `(a + 128)·w` is below
//! `255 · 127 · k`, under 2³¹ for `k ≤ 66 311`; [`super::Shifts::for_config`]
//! checks it for each config, so no kernel can overflow.
//!
//! # Kernels
//!
//! | CPU                     | kernel                                   |
//! |-------------------------|------------------------------------------|
//! | AVX-512F/BW + VNNI      | `VPDPBUSD`, 14 × 32 register tile        |
//! | anything else           | portable loops over the same layout      |

#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use rayon::prelude::*;

/// Output features per weight panel: two 512-bit registers of int32.
pub const NR: usize = 32;
/// Bytes in one packed line.
const LINE: usize = 64;

/// One cache line of packed weights; the alignment lets the kernel use
/// aligned loads.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line([i8; LINE]);

const _: () = assert!(size_of::<Line>() == LINE, "Line has no padding");
const _: () = assert!(NR * 4 == 2 * LINE, "a panel's k-quad fills two lines");

/// An int8 weight matrix `[n, k]` in the layout the kernels read (see the
/// module documentation), with its per-column bias `−128 · Σₖ W[col][k]`.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    /// `⌈k / 4⌉`.
    quads: usize,
    /// `⌈n / NR⌉`.
    panels: usize,
    /// `panels · quads · 2` lines.
    data: Vec<Line>,
    /// `panels · NR` values; zero past `n`.
    bias: Vec<i32>,
}

impl PackedI8 {
    /// Packs a row-major `[n, k]` matrix.
    pub fn from_rows(rows: &[i8], n: usize, k: usize) -> Self {
        assert_eq!(rows.len(), n * k, "weight matrix must hold n·k values");
        Self::from_row_blocks(&[rows], k)
    }

    /// Packs matrices stacked along `n` (each row-major `[n_i, k]`, `k > 0`)
    /// as one, without copying them together first (fused projections).
    pub fn from_row_blocks(blocks: &[&[i8]], k: usize) -> Self {
        let stack = crate::gemm::RowStack::new(blocks, k);
        let (n, row) = (stack.n(), |r: usize| stack.row(r));
        let quads = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![Line([0; LINE]); panels * quads * 2];
        let mut bias = vec![0i32; panels * NR];
        data.par_chunks_mut(2 * quads).zip(bias.par_chunks_mut(NR)).enumerate().for_each(
            |(p, (panel, bias))| {
                let cols = NR.min(n - p * NR);
                for (c, b) in bias.iter_mut().enumerate().take(cols) {
                    let r = row(p * NR + c);
                    *b = -128 * r.iter().map(|&w| i32::from(w)).sum::<i32>();
                    let (line, lane) = (c / 16, c % 16);
                    for (q, quad) in r.chunks(4).enumerate() {
                        let dst = &mut panel[2 * q + line].0[4 * lane..4 * lane + 4];
                        dst[..quad.len()].copy_from_slice(quad);
                    }
                }
            },
        );
        Self { n, k, quads, panels, data, bias }
    }

    /// Output features `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row `j` (output feature `j`) in spec order.
    pub fn row(&self, j: usize) -> Vec<i8> {
        assert!(j < self.n, "row {j} of a weight with {} rows", self.n);
        let (p, line, lane) = (j / NR, (j % NR) / 16, j % 16);
        (0..self.k).map(|i| self.data[(p * self.quads + i / 4) * 2 + line].0[4 * lane + i % 4]).collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * LINE + self.bias.len() * 4
    }

    /// Lines of panel `p`, quads `q0..q0 + quads`.
    fn panel_block(&self, p: usize, q0: usize, quads: usize) -> &[Line] {
        let start = (p * self.quads + q0) * 2;
        &self.data[start..start + 2 * quads]
    }

    /// The bias of panel `p`'s 32 columns.
    fn panel_bias(&self, p: usize) -> &[i32] {
        &self.bias[p * NR..(p + 1) * NR]
    }
}

/// Per-thread buffers reused across calls: activations packed as quads of
/// `a + 128`.
#[derive(Debug, Default)]
pub struct GemmScratch {
    packed: Vec<u32>,
}

/// Which kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain loops, any CPU.
    Portable,
    /// AVX-512 VNNI (`VPDPBUSD`).
    Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU runs (detected once per process).
    pub fn best() -> Self {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| if Self::Vnni.is_available() { Self::Vnni } else { Self::Portable })
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Self::Vnni => false,
        }
    }

    /// A short name for logs and bench reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable-i8",
            Self::Vnni => "avx512-vnni",
        }
    }
}

/// `y = x · Wᵀ` for `m` rows on the calling thread, with [`Kernel::best`].
pub fn matmul(x: &[i8], m: usize, w: &PackedI8, y: &mut [i32], scratch: &mut GemmScratch) {
    matmul_with(Kernel::best(), x, m, w, y, scratch);
}

/// `y = x · Wᵀ` with a chosen kernel. Panics if the CPU lacks it.
pub fn matmul_with(
    kernel: Kernel,
    x: &[i8],
    m: usize,
    w: &PackedI8,
    y: &mut [i32],
    scratch: &mut GemmScratch,
) {
    assert!(x.len() >= m * w.k, "x holds {} values, needs m·k = {}", x.len(), m * w.k);
    assert!(y.len() >= m * w.n, "y holds {} values, needs m·n = {}", y.len(), m * w.n);
    if m == 0 || w.n == 0 {
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Vnni => {
            assert!(kernel.is_available(), "this CPU lacks AVX-512 VNNI");
            // SAFETY: AVX-512F, AVX-512BW and AVX512-VNNI were detected just above.
            unsafe { x86::matmul(x, m, w, y, &mut scratch.packed) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Vnni => panic!("AVX-512 VNNI exists on x86-64 only"),
        Kernel::Portable => portable(x, m, w, y, scratch),
    }
}

/// Packs rows of `x` (row length `k`), quads `q0..q0 + quads`, as words of
/// four `a + 128` bytes (`k` past the end packs as 128, times a zero weight),
/// to rows of `stride` words in `out`.
fn pack_quads(x: &[i8], k: usize, q0: usize, quads: usize, stride: usize, out: &mut Vec<u32>) {
    let rows = x.len() / k;
    out.resize(rows * stride, 0);
    let (start, end) = (4 * q0, k.min(4 * (q0 + quads)));
    for (src, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
        for (d, quad) in dst[..quads].iter_mut().zip(src[start..end].chunks(4)) {
            let mut b = [128u8; 4];
            for (o, &v) in b.iter_mut().zip(quad) {
                *o = (v as u8) ^ 0x80;
            }
            *d = u32::from_le_bytes(b);
        }
        let live = (end - start).div_ceil(4);
        dst[live..quads].fill(0x8080_8080);
    }
}

/// The portable kernel: per row and panel, 32 exact sums over the packed
/// quads, the same `(a + 128)·w` plus bias form as the VNNI kernel so the two
/// are easy to compare line by line.
fn portable(x: &[i8], m: usize, w: &PackedI8, y: &mut [i32], scratch: &mut GemmScratch) {
    let (n, k) = (w.n, w.k);
    pack_quads(&x[..m * k], k, 0, w.quads, w.quads, &mut scratch.packed);
    for p in 0..w.panels {
        let panel = w.panel_block(p, 0, w.quads);
        let bias = w.panel_bias(p);
        let cols = NR.min(n - p * NR);
        for i in 0..m {
            let a = &scratch.packed[i * w.quads..(i + 1) * w.quads];
            let acc = panel_row(a, panel, bias);
            y[i * n + p * NR..i * n + p * NR + cols].copy_from_slice(&acc[..cols]);
        }
    }
}

/// One row of packed activations times one panel.
fn panel_row(a: &[u32], panel: &[Line], bias: &[i32]) -> [i32; NR] {
    let mut acc = [0i32; NR];
    acc.copy_from_slice(bias);
    for (&word, lines) in a.iter().zip(panel.chunks_exact(2)) {
        let ab = word.to_le_bytes();
        for (c, s) in acc.iter_mut().enumerate() {
            let wq = &lines[c / 16].0[4 * (c % 16)..4 * (c % 16) + 4];
            for t in 0..4 {
                *s += i32::from(ab[t]) * i32::from(wq[t]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain triple loop in i64: the definition the kernels must match.
    fn reference(x: &[i8], m: usize, rows: &[i8], n: usize, k: usize) -> Vec<i32> {
        let mut y = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: i64 = (0..k).map(|t| i64::from(x[i * k + t]) * i64::from(rows[j * k + t])).sum();
                y[i * n + j] = i32::try_from(s).expect("test sums fit i32");
            }
        }
        y
    }

    fn values(len: usize, seed: u64) -> Vec<i8> {
        // Fixed xorshift stream (seed printed by the caller); includes ±127 extremes.
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s % 255) as i64 - 127) as i8
            })
            .collect()
    }

    fn check_kernel(kernel: Kernel) {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 33, 5),
            (14, 32, 4),
            (15, 64, 1024),
            (29, 70, 1031),
            (7, 40, 2050),
            (2, 96, 8192),
        ] {
            let seed = (m * 1_000_003 + n * 1009 + k) as u64;
            let (x, rows) = (values(m * k, seed), values(n * k, seed + 1));
            let w = PackedI8::from_rows(&rows, n, k);
            let mut y = vec![7i32; m * n];
            matmul_with(kernel, &x, m, &w, &mut y, &mut GemmScratch::default());
            assert_eq!(y, reference(&x, m, &rows, n, k), "{kernel:?} m={m} n={n} k={k} (seed {seed})");
        }
    }

    #[test]
    fn portable_matches_definition() {
        check_kernel(Kernel::Portable);
    }

    #[test]
    fn vnni_matches_definition_when_present() {
        if Kernel::Vnni.is_available() {
            check_kernel(Kernel::Vnni);
        } else {
            eprintln!("AVX-512 VNNI not present: VNNI kernel not tested on this CPU");
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        // All −127 against all ±127 at the largest fan-in of seed-64.
        let (m, n, k) = (3, 34, 8192);
        let x = vec![-127i8; m * k];
        let rows: Vec<i8> = (0..n * k).map(|i| if (i / k) % 2 == 0 { 127 } else { -127 }).collect();
        let w = PackedI8::from_rows(&rows, n, k);
        for kernel in [Kernel::Portable, Kernel::Vnni].into_iter().filter(|k| k.is_available()) {
            let mut y = vec![0i32; m * n];
            matmul_with(kernel, &x, m, &w, &mut y, &mut GemmScratch::default());
            assert_eq!(y, reference(&x, m, &rows, n, k), "{kernel:?} at the extremes");
        }
    }

    #[test]
    fn packed_rows_read_back() {
        let rows = values(70 * 9, 5);
        let w = PackedI8::from_row_blocks(&[&rows[..30 * 9], &rows[30 * 9..]], 9);
        for j in 0..70 {
            assert_eq!(w.row(j), rows[j * 9..(j + 1) * 9].to_vec(), "row {j}");
        }
    }
}
