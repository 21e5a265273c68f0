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
//! numerics up to summation order); `Bf16` rounds activations to bf16 and uses
//! bf16 dot products with f32 accumulation (AVX512-BF16 where the CPU has it).

mod portable;

/// How activations enter the matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 activations, f32 accumulation: reproduces the spec's vectors.
    #[default]
    F32,
    /// Activations rounded to bf16 (ties to even), f32 accumulation.
    Bf16,
}

/// A bf16 weight matrix `[n, k]` in the layout the kernels read fastest.
#[derive(Clone, Debug)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// Row-major `[n, k]` bf16 bits.
    data: Vec<u16>,
}

impl PackedWeight {
    /// Packs a row-major `[n, k]` matrix of bf16 bit patterns.
    pub fn from_rows(rows: &[u16], n: usize, k: usize) -> Self {
        assert_eq!(rows.len(), n * k, "weight matrix must hold n·k values");
        Self { n, k, data: rows.to_vec() }
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
        self.data[j * self.k..(j + 1) * self.k].to_vec()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// Per-thread buffers reused across calls.
#[derive(Debug, Default)]
pub struct GemmScratch {
    packed_a: Vec<f32>,
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
    portable::matmul(x, m, w, y, accumulate, precision, scratch);
}
