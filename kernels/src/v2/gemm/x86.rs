//! The AVX-512 VNNI kernel: a 14 × 32 tile of int32 accumulators (28 zmm)
//! swept over k with `VPDPBUSD`, four multiply-adds per lane per instruction.
//!
//! ```text
//!  for each k block of ≤ KC_QUADS quads            (y is revisited per block)
//!    for each row block of ≤ A_BLOCK_BYTES          pack a + 128 as quads (L2)
//!      for each weight panel (32 columns)           its k block: 32 KiB, L1/L2
//!        for each micro-panel of ≤ MR rows
//!          tile (+)= A micro-panel · B panel block  (first k block: tile = bias + …)
//! ```

use std::arch::x86_64::{
    __m512i, __mmask16, _MM_HINT_T1, _mm_prefetch, _mm512_add_epi32, _mm512_dpbusd_epi32, _mm512_load_si512,
    _mm512_mask_storeu_epi32, _mm512_maskz_loadu_epi32, _mm512_set1_epi32, _mm512_setzero_si512,
};

use super::{Line, NR, PackedI8, pack_quads};

/// Rows of the register tile: 28 accumulators, two weight registers and one
/// broadcast use 31 of the 32 zmm.
const MR: usize = 14;
/// k-quads per k block: a panel block is `KC_QUADS · 128` bytes = 32 KiB, and
/// seed-64's `k = 512` products run as one block.
const KC_QUADS: usize = 256;
/// Row stride of packed activations, in words: a k block plus a cache line,
/// so the 14 rows of a micro-panel fall in different L1 sets.
const A_STRIDE: usize = KC_QUADS + 16;
/// Largest packed activation block: half of a 2 MiB L2.
const A_BLOCK_BYTES: usize = 1 << 20;

/// `y = x · Wᵀ` with `VPDPBUSD`.
///
/// # Safety
///
/// The CPU supports AVX-512F, AVX-512BW and AVX512-VNNI.
pub(super) unsafe fn matmul(x: &[i8], m: usize, w: &PackedI8, y: &mut [i32], a: &mut Vec<u32>) {
    // SAFETY: the caller guarantees the features.
    unsafe { matmul_vnni(x, m, w, y, a) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn matmul_vnni(x: &[i8], m: usize, w: &PackedI8, y: &mut [i32], a: &mut Vec<u32>) {
    let (n, k) = (w.n, w.k);
    let rows_max = (A_BLOCK_BYTES / (A_STRIDE * 4) / MR).max(1) * MR;
    for (q0, quads) in blocks(w.quads, KC_QUADS, 1) {
        let first = q0 == 0;
        for (i0, rows) in blocks(m, rows_max, MR) {
            pack_quads(&x[i0 * k..(i0 + rows) * k], k, q0, quads, A_STRIDE, a);
            for p in 0..w.panels {
                let b = w.panel_block(p, q0, quads);
                let next = if p + 1 < w.panels { w.panel_block(p + 1, q0, quads) } else { &[] };
                let bias = first.then(|| w.panel_bias(p));
                let micro = rows.div_ceil(MR);
                for (j, (r0, mr)) in blocks(rows, MR, MR).enumerate() {
                    let share = &next[j * next.len() / micro..(j + 1) * next.len() / micro];
                    let tile = Tile { c: &mut y[(i0 + r0) * n + p * NR..], ldc: n, cols: NR.min(n - p * NR) };
                    kernel_rows(mr, quads, &a[r0 * A_STRIDE..], b, share, bias, tile);
                }
            }
        }
    }
}

/// `(start, len)` of near-equal blocks covering `0..total`, each a multiple
/// of `unit` long except the last.
fn blocks(total: usize, max: usize, unit: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = total.div_ceil(max).max(1);
    let len = total.div_ceil(count).next_multiple_of(unit).max(unit);
    (0..total).step_by(len).map(move |start| (start, len.min(total - start)))
}

/// The output tile of one micro-kernel call.
struct Tile<'a> {
    /// From the tile's first element to the end of `y`.
    c: &'a mut [i32],
    /// Row stride of `y`.
    ldc: usize,
    /// Live columns, `1..=NR`.
    cols: usize,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn kernel_rows(
    rows: usize,
    quads: usize,
    a: &[u32],
    b: &[Line],
    prefetch: &[Line],
    bias: Option<&[i32]>,
    tile: Tile<'_>,
) {
    match rows {
        14 => kernel::<14>(quads, a, b, prefetch, bias, tile),
        13 => kernel::<13>(quads, a, b, prefetch, bias, tile),
        12 => kernel::<12>(quads, a, b, prefetch, bias, tile),
        11 => kernel::<11>(quads, a, b, prefetch, bias, tile),
        10 => kernel::<10>(quads, a, b, prefetch, bias, tile),
        9 => kernel::<9>(quads, a, b, prefetch, bias, tile),
        8 => kernel::<8>(quads, a, b, prefetch, bias, tile),
        7 => kernel::<7>(quads, a, b, prefetch, bias, tile),
        6 => kernel::<6>(quads, a, b, prefetch, bias, tile),
        5 => kernel::<5>(quads, a, b, prefetch, bias, tile),
        4 => kernel::<4>(quads, a, b, prefetch, bias, tile),
        3 => kernel::<3>(quads, a, b, prefetch, bias, tile),
        2 => kernel::<2>(quads, a, b, prefetch, bias, tile),
        1 => kernel::<1>(quads, a, b, prefetch, bias, tile),
        r => unreachable!("a micro-panel has 1..={MR} rows, not {r}"),
    }
}
const _: () = assert!(MR == 14, "kernel_rows lists the row counts 1..=MR");

/// `tile = bias + A · B` (first k block) or `tile += A · B` over `quads`
/// quads, for `R` rows of packed activations at stride `A_STRIDE`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn kernel<const R: usize>(
    quads: usize,
    a: &[u32],
    b: &[Line],
    prefetch: &[Line],
    bias: Option<&[i32]>,
    tile: Tile<'_>,
) {
    assert!(quads <= A_STRIDE && a.len() >= (R - 1) * A_STRIDE + quads, "activation panel too short");
    assert!(b.len() >= 2 * quads, "weight panel too short");
    assert!((1..=NR).contains(&tile.cols) && tile.cols <= tile.ldc, "tile has {} columns", tile.cols);
    assert!(tile.c.len() >= (R - 1) * tile.ldc + tile.cols, "output tile too short");
    let init = match bias {
        // SAFETY: a bias slice holds NR = 32 values, read as two 16-lane vectors.
        Some(bias) => unsafe {
            assert!(bias.len() >= NR, "bias holds one value per panel column");
            [
                _mm512_maskz_loadu_epi32(0xffff, bias.as_ptr()),
                _mm512_maskz_loadu_epi32(0xffff, bias.as_ptr().add(16)),
            ]
        },
        None => [_mm512_setzero_si512(); 2],
    };
    let mut acc: [[__m512i; 2]; R] = [init; R];
    let pa = a.as_ptr();
    for q in 0..quads {
        // A prefetch of this call's share of the next weight block, so it
        // streams into L2 while this one computes.
        if let Some(line) = prefetch.get(2 * q) {
            _mm_prefetch::<_MM_HINT_T1>(line.0.as_ptr());
        }
        // SAFETY: `b.len() ≥ 2·quads` (asserted), and each `Line` is 64-byte
        // aligned as `_mm512_load_si512` requires; `pa[i·A_STRIDE + q]` is
        // inside `a` for `i < R`, `q < quads` by the first assertion.
        unsafe {
            let b0 = _mm512_load_si512(b[2 * q].0.as_ptr().cast());
            let b1 = _mm512_load_si512(b[2 * q + 1].0.as_ptr().cast());
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_epi32(*pa.add(i * A_STRIDE + q) as i32);
                row[0] = _mm512_dpbusd_epi32(row[0], ai, b0);
                row[1] = _mm512_dpbusd_epi32(row[1], ai, b1);
            }
        }
    }
    store_tile(&acc, tile, bias.is_none());
}

/// Writes (or, with `add`, adds to) the tile's first `cols` columns.
#[inline(always)]
fn store_tile<const R: usize>(acc: &[[__m512i; 2]; R], tile: Tile<'_>, add: bool) {
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    let (mask0, mask1) = (lanes(tile.cols), lanes(tile.cols.saturating_sub(16)));
    for (i, row) in acc.iter().enumerate() {
        let out = tile.c[i * tile.ldc..].as_mut_ptr();
        // SAFETY: `kernel` asserted `c.len() ≥ (R−1)·ldc + cols`, so row
        // `i < R` has `cols` writable values from `out`; the masks touch lanes
        // `0..cols` only (masked-off lanes are never accessed, and the second
        // half's address uses `wrapping_add` as it may lie past the slice).
        // The CPU features are those of `kernel`, into which this is inlined.
        unsafe {
            let (mut v0, mut v1) = (row[0], row[1]);
            if add {
                v0 = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask0, out), v0);
                v1 = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask1, out.wrapping_add(16)), v1);
            }
            _mm512_mask_storeu_epi32(out, mask0, v0);
            _mm512_mask_storeu_epi32(out.wrapping_add(16), mask1, v1);
        }
    }
}
