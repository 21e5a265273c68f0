//! AVX-512 kernels: a 14 × 32 register tile (28 zmm accumulators) swept over
//! k, with activations packed per call and weights pre-packed (see the module
//! documentation of `gemm` for the weight layout).
//!
//! The loop nest ([`sweep`]), outermost first:
//!
//! ```text
//!  for each k block of ≤ KC_PAIRS pairs        (y is revisited once per block)
//!    for each row block of ≤ A_BLOCK_BYTES     copy x rows → packed block (L2)
//!      for each weight panel (32 columns)      its k block: 32 KiB bf16, L2
//!        for each micro-panel of ≤ MR rows     streamed from L2
//!          micro-kernel: tile (≤ 14 × 32) (+)= A micro-panel · B panel,
//!          meanwhile prefetching its share of the next weight block and
//!          the next tile of y into L2
//! ```
//!
//! The f32 kernels multiply by f32 weights. The first micro-panel of each
//! panel widens the bf16 block as it goes and stores it (64 KiB, L2); the
//! others load it ready. Widening in every micro-panel (a zero-masked 16-bit
//! load per line, as this kernel once did) costs a uop on the FMA ports per
//! 14 FMAs: the one-thread peak went 153 → 164 GFLOP/s without it. A
//! separate widening pass before the micro-panels took 3.8% of a seed-64
//! Sprint's samples; widening inside the first micro-panel instead made the
//! Sprint 4% faster (41.2 → 42.8 nonces/s, f32, batch 32).
//!
//! Each weight panel block is read from memory once per row block and then
//! reused by every micro-panel, so the large weights (up to 16 MiB per
//! matrix) stream through once per call for `m ≤ 490`, twice up to 980. The
//! two prefetches hide the latency of that stream and of the output's first
//! touch, which otherwise cost 5–10% on the wide products (with them, a
//! larger activation block that halves the weight passes at `m = 1024`
//! measured no faster).

use std::arch::x86_64::{
    __cpuid, __m512, __m512bh, __mmask16, __mmask32, _MM_HINT_T1, _mm_prefetch, _mm512_add_ps,
    _mm512_castsi512_ps, _mm512_dpbf16_ps, _mm512_fmadd_ps, _mm512_load_ps, _mm512_load_si512,
    _mm512_mask_storeu_ps, _mm512_maskz_loadu_epi16, _mm512_maskz_loadu_ps, _mm512_set1_epi32,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm512_store_ps,
};

use super::{F32Line, GemmScratch, LINE_U16, Line, NR, PackedWeight};
use crate::encoding::bf16_bits;

/// Rows of the register tile: 14 rows × 2 zmm = 28 accumulators, plus two
/// weight registers and one broadcast leaves one of the 32 zmm spare.
pub(super) const MR: usize = 14;

/// k-pairs per k block. The seed-64 model's `k = 512` products then run as
/// one block, so `y` is written once and never re-read; a weight panel block
/// is `KC_PAIRS · 128` = 32 KiB (64 KiB widened to f32) and an activation
/// micro-panel `MR · 2 · KC_PAIRS · 4` = 28 KiB, served from L1 and L2. On the
/// `k = 8192` product 256 measured ~4% faster than 128 and than no k
/// blocking; with widened weights 128 and 256 ran the seed-64 Sprint equally
/// fast.
const KC_PAIRS: usize = 256;

/// Row stride of packed f32 activations: a k block plus one cache line, so the
/// 14 rows a micro-kernel reads fall in different L1 sets (a power-of-two
/// stride would put them all in two).
const A_STRIDE_F32: usize = 2 * KC_PAIRS + 16;

/// Row stride of packed bf16-pair activations, padded for the same reason.
const A_STRIDE_PAIRS: usize = KC_PAIRS + 16;

/// Largest packed activation block: half of a 2 MiB L2, leaving room for the
/// weight panels and output tiles streaming through.
const A_BLOCK_BYTES: usize = 1 << 20;

/// Selects 16-bit lanes 1, 3, 5, …: the high halves of 32-bit words.
const HIGH_HALVES: __mmask32 = 0xAAAA_AAAA;

/// Which micro-kernel runs (and how activations are packed for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    /// f32 activations, f32 FMA.
    Fma,
    /// Activations rounded to bf16, then f32 FMA: the products are exact, so
    /// this computes `Precision::Bf16` up to summation order.
    FmaBf16Input,
    /// Activations rounded to bf16 and paired, `VDPBF16PS`.
    Dpbf16,
}

/// Whether the CPU vendor is AMD, whose cores run `VDPBF16PS` at full rate.
pub(super) fn is_amd() -> bool {
    // CPUID leaf 0 (the vendor string) exists on every x86-64 CPU.
    let r = __cpuid(0);
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    (r.ebx, r.edx, r.ecx) == (word(b"Auth"), word(b"enti"), word(b"cAMD"))
}

/// `y (+)= x · Wᵀ` with the AVX-512 `kernel`, for `k ≥ 1` (with `k = 0`
/// it would leave `y` untouched). Short `x` or `y` panic.
///
/// # Safety
///
/// The CPU supports AVX-512F and AVX-512BW, and AVX512-BF16 when `kernel` is
/// [`Kernel::Dpbf16`].
pub(super) unsafe fn matmul(
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    y: &mut [f32],
    accumulate: bool,
    kernel: Kernel,
    scratch: &mut GemmScratch,
) {
    match kernel {
        // SAFETY: the caller guarantees AVX-512F/BW.
        Kernel::Fma => unsafe { matmul_fma(x, m, w, y, accumulate, false, scratch) },
        // SAFETY: as above.
        Kernel::FmaBf16Input => unsafe { matmul_fma(x, m, w, y, accumulate, true, scratch) },
        // SAFETY: the caller guarantees AVX-512F/BW and AVX512-BF16.
        Kernel::Dpbf16 => unsafe { matmul_dpbf16(x, m, w, y, accumulate, &mut scratch.packed_a_pairs) },
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
fn matmul_fma(
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    y: &mut [f32],
    accumulate: bool,
    round: bool,
    scratch: &mut GemmScratch,
) {
    let k = w.k;
    let panel = &mut scratch.panel_f32;
    sweep(
        m,
        w,
        y,
        accumulate,
        (&mut scratch.packed_a, A_STRIDE_F32),
        |(i0, rows), (q0, pairs), a| pack_a_f32(&x[i0 * k..(i0 + rows) * k], k, 2 * q0, 2 * pairs, round, a),
        |j, rows, pairs, a, b, prefetch, tile| {
            if panel.len() < 4 * pairs {
                panel.resize(4 * pairs, F32Line::default());
            }
            // The first row tile of a panel widens its weights for the others.
            kernel_fma_rows(j == 0, rows, pairs, a, b, &mut panel[..4 * pairs], prefetch, tile)
        },
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn matmul_dpbf16(x: &[f32], m: usize, w: &PackedWeight, y: &mut [f32], accumulate: bool, a: &mut Vec<u32>) {
    let k = w.k;
    sweep(
        m,
        w,
        y,
        accumulate,
        (a, A_STRIDE_PAIRS),
        |(i0, rows), (q0, pairs), a| pack_a_pairs(&x[i0 * k..(i0 + rows) * k], k, q0, pairs, a),
        |_, rows, pairs, a, b, prefetch, tile| kernel_dpbf16_rows(rows, pairs, a, b, prefetch, tile),
    );
}

/// The output tile of one micro-kernel call.
struct Tile<'a> {
    /// From the tile's first element to the end of `y`.
    c: &'a mut [f32],
    /// Row stride of `y` (its `n`).
    ldc: usize,
    /// Live columns, `1..=NR`.
    cols: usize,
    /// Add to `c` (true) or overwrite it.
    load_c: bool,
}

/// What one micro-kernel call prefetches into L2 for the calls after it.
struct Prefetch<'a> {
    /// Its share of the next weight block, whole lines.
    weights: &'a [u16],
    /// Address of the next tile of `y` (rows at the same `ldc`), if any. An
    /// address only: prefetching never accesses memory.
    tile: Option<usize>,
}

/// The loop nest of the module documentation, for either activation format:
/// `pack` fills `a` (rows at `stride`) from a row block `(i0, rows)` and a k
/// block `(q0, pairs)`; `kernel` runs micro-panel `j` (of `rows` rows) of one
/// weight panel block (line-aligned).
fn sweep<T>(
    m: usize,
    w: &PackedWeight,
    y: &mut [f32],
    accumulate: bool,
    (a, stride): (&mut Vec<T>, usize),
    mut pack: impl FnMut((usize, usize), (usize, usize), &mut Vec<T>),
    mut kernel: impl FnMut(usize, usize, usize, &[T], &[u16], &Prefetch<'_>, Tile<'_>),
) {
    let n = w.n;
    let y_addr = y.as_ptr() as usize;
    let tile_addr = |row: usize, col: usize| y_addr + (row * n + col) * size_of::<f32>();
    let rows_max = (A_BLOCK_BYTES / (stride * size_of::<T>()) / MR).max(1) * MR;
    let mut k_blocks = blocks(w.kpairs, KC_PAIRS, 1).peekable();
    while let Some((q0, pairs)) = k_blocks.next() {
        let next_k = k_blocks.peek().copied();
        // The first k block overwrites `y` unless the caller accumulates.
        let load_c = accumulate || q0 > 0;
        let mut row_blocks = blocks(m, rows_max, MR).peekable();
        while let Some((i0, rows)) = row_blocks.next() {
            let more_rows = row_blocks.peek().is_some();
            pack((i0, rows), (q0, pairs), a);
            let micro_panels = rows.div_ceil(MR);
            for p in 0..w.panels {
                let b = w.panel_block(p, q0, pairs);
                let next = next_weight_block(w, p, (q0, pairs), more_rows, next_k);
                for (j, (r0, mr)) in blocks(rows, MR, 1).enumerate() {
                    // The next tile down this panel, else the top of the next.
                    let next_tile = if r0 + mr < rows {
                        Some(tile_addr(i0 + r0 + mr, p * NR))
                    } else {
                        (p + 1 < w.panels).then(|| tile_addr(i0, (p + 1) * NR))
                    };
                    let prefetch =
                        Prefetch { weights: prefetch_share(next, j, micro_panels), tile: next_tile };
                    let c = &mut y[(i0 + r0) * n + p * NR..];
                    let tile = Tile { c, ldc: n, cols: NR.min(n - p * NR), load_c };
                    kernel(j, mr, pairs, &a[r0 * stride..(r0 + mr) * stride], b, &prefetch, tile);
                }
            }
        }
    }
}

/// `(start, len)` of `⌈total / max⌉` near-equal blocks covering `0..total`,
/// each a multiple of `unit` long except the last.
fn blocks(total: usize, max: usize, unit: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = total.div_ceil(max).max(1);
    let len = total.div_ceil(count).next_multiple_of(unit).max(unit);
    (0..total).step_by(len).map(move |start| (start, len.min(total - start)))
}

/// The weight block the sweep reads after panel `p` of k block `(q0, pairs)`:
/// the next panel, else the first panel again for the next row block, else
/// the first panel of the next k block, else nothing.
fn next_weight_block(
    w: &PackedWeight,
    p: usize,
    (q0, pairs): (usize, usize),
    more_rows: bool,
    next_k: Option<(usize, usize)>,
) -> &[u16] {
    match (p + 1 < w.panels, more_rows, next_k) {
        (true, _, _) => w.panel_block(p + 1, q0, pairs),
        (false, true, _) => w.panel_block(0, q0, pairs),
        (false, false, Some((q1, pairs1))) => w.panel_block(0, q1, pairs1),
        (false, false, None) => &[],
    }
}

/// The share of `next` (a weight block) that micro-panel `j` of `count`
/// prefetches: whole lines, split evenly so that no one call floods the line
/// fill buffers (one call prefetching a whole panel measured slower).
fn prefetch_share(next: &[u16], j: usize, count: usize) -> &[u16] {
    let lines = next.len() / LINE_U16;
    &next[j * lines / count * LINE_U16..(j + 1) * lines / count * LINE_U16]
}

/// Copies columns `k0..k0 + kk` of the rows of `x` (row length `k`) to rows of
/// `A_STRIDE_F32` values in `a`, zero past column `k`; with `round`, rounded
/// to bf16. Row-major panels make packing a contiguous copy, and the fixed
/// stride lets the micro-kernel address its 14 rows with constant offsets.
fn pack_a_f32(x: &[f32], k: usize, k0: usize, kk: usize, round: bool, a: &mut Vec<f32>) {
    let rows = x.len() / k;
    a.resize(rows * A_STRIDE_F32, 0.0);
    let live = kk.min(k - k0);
    for (src, dst) in x.chunks_exact(k).zip(a.chunks_exact_mut(A_STRIDE_F32)) {
        let (src, dst) = (&src[k0..k0 + live], &mut dst[..kk]);
        if round {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = f32::from_bits(u32::from(bf16_bits(v)) << 16);
            }
        } else {
            dst[..live].copy_from_slice(src);
        }
        dst[live..].fill(0.0);
    }
}

/// Packs k-pairs `q0..q0 + pairs` of the rows of `x` (row length `k`) as bf16
/// pairs (`k = 2q` low half, `2q + 1` high half, zero past `k`) to rows of
/// `A_STRIDE_PAIRS` words in `a`.
fn pack_a_pairs(x: &[f32], k: usize, q0: usize, pairs: usize, a: &mut Vec<u32>) {
    let rows = x.len() / k;
    a.resize(rows * A_STRIDE_PAIRS, 0);
    let end = k.min(2 * (q0 + pairs));
    for (src, dst) in x.chunks_exact(k).zip(a.chunks_exact_mut(A_STRIDE_PAIRS)) {
        for (d, pair) in dst[..pairs].iter_mut().zip(src[2 * q0..end].chunks(2)) {
            let hi = pair.get(1).map_or(0, |&v| bf16_bits(v));
            *d = (u32::from(hi) << 16) | u32::from(bf16_bits(pair[0]));
        }
    }
}

/// Instantiates a micro-kernel for each row count `1..=MR` and calls the one
/// for `$rows` (with any further const arguments after it), so each tile
/// keeps its accumulators in registers.
macro_rules! dispatch_rows {
    ($rows:expr, $kernel:ident$(<$($g:tt),+>)?($($arg:expr),*)) => {
        match $rows {
            14 => $kernel::<14 $($(, $g)+)?>($($arg),*),
            13 => $kernel::<13 $($(, $g)+)?>($($arg),*),
            12 => $kernel::<12 $($(, $g)+)?>($($arg),*),
            11 => $kernel::<11 $($(, $g)+)?>($($arg),*),
            10 => $kernel::<10 $($(, $g)+)?>($($arg),*),
            9 => $kernel::<9 $($(, $g)+)?>($($arg),*),
            8 => $kernel::<8 $($(, $g)+)?>($($arg),*),
            7 => $kernel::<7 $($(, $g)+)?>($($arg),*),
            6 => $kernel::<6 $($(, $g)+)?>($($arg),*),
            5 => $kernel::<5 $($(, $g)+)?>($($arg),*),
            4 => $kernel::<4 $($(, $g)+)?>($($arg),*),
            3 => $kernel::<3 $($(, $g)+)?>($($arg),*),
            2 => $kernel::<2 $($(, $g)+)?>($($arg),*),
            1 => $kernel::<1 $($(, $g)+)?>($($arg),*),
            r => unreachable!("a micro-panel has 1..={MR} rows, not {r}"),
        }
    };
}
const _: () = assert!(MR == 14, "dispatch_rows! lists the row counts 1..=MR");

/// Runs the f32 micro-kernel for `rows` rows. With `widen`, it reads the
/// bf16 panel block `src` and also writes its f32 values to `panel`;
/// otherwise it reads `panel`, written by an earlier call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw")]
fn kernel_fma_rows(
    widen: bool,
    rows: usize,
    pairs: usize,
    a: &[f32],
    src: &[u16],
    panel: &mut [F32Line],
    prefetch: &Prefetch<'_>,
    tile: Tile<'_>,
) {
    if widen {
        dispatch_rows!(rows, kernel_fma<true>(pairs, a, src, panel, prefetch, tile))
    } else {
        dispatch_rows!(rows, kernel_fma<false>(pairs, a, &[], panel, prefetch, tile))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn kernel_dpbf16_rows(
    rows: usize,
    pairs: usize,
    a: &[u32],
    b: &[u16],
    prefetch: &Prefetch<'_>,
    tile: Tile<'_>,
) {
    dispatch_rows!(rows, kernel_dpbf16(pairs, a, b, prefetch, tile))
}

/// Checks a micro-kernel's slices against its geometry, so the unchecked
/// loads and stores that follow stay inside them: `r` activation rows of
/// `per_pair · pairs` values at `stride`, a weight panel of `pairs` pairs of
/// 128 bytes (bf16) or 256 bytes (f32) in `b_bytes`, and an `r × cols`
/// output tile.
fn check_tile(
    r: usize,
    pairs: usize,
    (a_len, stride, per_pair): (usize, usize, usize),
    (b_bytes, b_per_pair): (usize, usize),
    tile: &Tile<'_>,
) {
    assert!(
        pairs * per_pair <= stride && a_len >= (r - 1) * stride + pairs * per_pair,
        "activation panel too short"
    );
    assert!(b_bytes >= pairs * b_per_pair, "weight panel too short");
    assert!((1..=NR).contains(&tile.cols) && tile.cols <= tile.ldc, "tile has {} columns", tile.cols);
    assert!(tile.c.len() >= (r - 1) * tile.ldc + tile.cols, "output tile too short");
}

/// Issues iteration `q`'s prefetches for a kernel of `r` rows: lines `2q` and
/// `2q + 1` of its weight share, and in the first `r` iterations row `q` of
/// the next output tile (its first, middle and last value, so all the lines
/// of 32 unaligned f32 are covered).
#[inline(always)]
fn prefetch_step(prefetch: &Prefetch<'_>, q: usize, r: usize, ldc: usize) {
    for line in [2 * q, 2 * q + 1] {
        if let Some(v) = prefetch.weights.get(line * LINE_U16) {
            // SAFETY: a prefetch is a hint that never faults or accesses
            // memory; its address here is a value of the weights.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(std::ptr::from_ref(v).cast()) };
        }
    }
    if let Some(tile) = prefetch.tile.filter(|_| q < r) {
        for col in [0, 16, NR - 1] {
            let addr = tile + (q * ldc + col) * size_of::<f32>();
            // SAFETY: as above, a prefetch never faults or accesses memory;
            // the address (inside `y`) needs no provenance.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(std::ptr::without_provenance::<i8>(addr)) };
        }
    }
}

/// The f32 micro-kernel: `tile (+)= A · B` over `pairs` k-pairs.
///
/// `a` holds the micro-panel's `R` rows at stride `A_STRIDE_F32`. The
/// weights are `panel`, `[k][NR]` f32, four lines per pair. With `WIDEN`
/// the kernel first makes them from the packed bf16 block `src`: in a word
/// of line `2q + h`, the low half is column `16h + lane` of `k = 2q` and the
/// high half that of `k = 2q + 1`, and a bf16 moved to the high half of a
/// word is its exact f32. So the first row tile of each panel widens the
/// weights (a shift, a masked load and a store per line, off the FMA ports
/// but for the shift) and the others read them ready.
#[target_feature(enable = "avx512f,avx512bw")]
fn kernel_fma<const R: usize, const WIDEN: bool>(
    pairs: usize,
    a: &[f32],
    src: &[u16],
    panel: &mut [F32Line],
    prefetch: &Prefetch<'_>,
    tile: Tile<'_>,
) {
    check_tile(R, pairs, (a.len(), A_STRIDE_F32, 2), (size_of_val(panel), 4 * size_of::<F32Line>()), &tile);
    assert!(!WIDEN || src.len() >= pairs * 2 * LINE_U16, "bf16 weight block too short");
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut pa, mut ps, mut pb) = (a.as_ptr(), src.as_ptr(), panel.as_mut_ptr().cast::<f32>());
    for q in 0..pairs {
        prefetch_step(prefetch, q, R, tile.ldc);
        // SAFETY: `check_tile` holds `a.len() ≥ (R−1)·A_STRIDE_F32 + 2·pairs`
        // and `panel` ≥ `4·pairs` lines, and with `WIDEN` `src` holds
        // `64·pairs` values (asserted above). Iteration `q` reads
        // `pa[i·A_STRIDE_F32 + {0, 1}]` for `i < R` with `pa = a + 2q`,
        // `pb[0..64]` with `pb = panel + 64q` (64-byte aligned: `F32Line`),
        // and with `WIDEN` `ps[0..64]` with `ps = src + 64q` (64-byte aligned:
        // a block of `PackedWeight` lines, see `sweep`), writing `pb[0..64]`;
        // all inside.
        unsafe {
            let (even0, even1, odd0, odd1);
            if WIDEN {
                even0 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_load_si512(ps.cast())));
                even1 =
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_load_si512(ps.add(LINE_U16).cast())));
                _mm512_store_ps(pb, even0);
                _mm512_store_ps(pb.add(16), even1);
            } else {
                (even0, even1) = (_mm512_load_ps(pb), _mm512_load_ps(pb.add(16)));
            }
            fma_step::<R>(&mut acc, pa, even0, even1);
            if WIDEN {
                odd0 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(HIGH_HALVES, ps.cast()));
                odd1 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(HIGH_HALVES, ps.add(LINE_U16).cast()));
                _mm512_store_ps(pb.add(32), odd0);
                _mm512_store_ps(pb.add(48), odd1);
            } else {
                (odd0, odd1) = (_mm512_load_ps(pb.add(32)), _mm512_load_ps(pb.add(48)));
            }
            fma_step::<R>(&mut acc, pa.add(1), odd0, odd1);
            pa = pa.add(2);
            pb = pb.add(4 * 16);
            if WIDEN {
                ps = ps.add(2 * LINE_U16);
            }
        }
    }
    store_tile(&acc, tile);
}

/// `acc[i] += a[i · A_STRIDE_F32] · (b0, b1)` for the `R` rows of one k step.
///
/// # Safety
///
/// The CPU supports AVX-512F, and `a[i · A_STRIDE_F32]` is readable for
/// `i < R`.
#[inline(always)]
unsafe fn fma_step<const R: usize>(acc: &mut [[__m512; 2]; R], a: *const f32, b0: __m512, b1: __m512) {
    for (i, row) in acc.iter_mut().enumerate() {
        // SAFETY: `i < R`, so the caller guarantees the read and AVX-512F.
        // (A helper marked `inline(always)` cannot also carry
        // `target_feature`, so the feature is the caller's promise.)
        unsafe {
            let ai = _mm512_set1_ps(*a.add(i * A_STRIDE_F32));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
}

/// The `VDPBF16PS` micro-kernel: like [`kernel_fma`], with `a` holding bf16
/// pairs at stride `A_STRIDE_PAIRS`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn kernel_dpbf16<const R: usize>(
    pairs: usize,
    a: &[u32],
    b: &[u16],
    prefetch: &Prefetch<'_>,
    tile: Tile<'_>,
) {
    check_tile(R, pairs, (a.len(), A_STRIDE_PAIRS, 1), (size_of_val(b), 2 * size_of::<Line>()), &tile);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
    for q in 0..pairs {
        prefetch_step(prefetch, q, R, tile.ldc);
        // SAFETY: `check_tile` holds `a.len() ≥ (R−1)·A_STRIDE_PAIRS + pairs`
        // and `b.len() ≥ 64·pairs`; iteration `q` reads
        // `pa[i·A_STRIDE_PAIRS]` for `i < R` with `pa = a + q`, and `pb[0..64]`
        // with `pb = b + 64q`. `b` starts on a line of `PackedWeight::data`
        // (64-byte aligned `Line`s), as the aligned loads require.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_load_si512(pb.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_load_si512(pb.add(LINE_U16).cast()));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*pa.add(i * A_STRIDE_PAIRS) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
            }
            pa = pa.add(1);
            pb = pb.add(2 * LINE_U16);
        }
    }
    store_tile(&acc, tile);
}

/// Writes (or adds, with `load_c`) the tile's first `cols` columns.
#[inline(always)]
fn store_tile<const R: usize>(acc: &[[__m512; 2]; R], tile: Tile<'_>) {
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    let (mask0, mask1) = (lanes(tile.cols), lanes(tile.cols.saturating_sub(16)));
    for (i, row) in acc.iter().enumerate() {
        let out = tile.c[i * tile.ldc..].as_mut_ptr();
        // SAFETY: the callers' `check_tile` holds `c.len() ≥ (R−1)·ldc + cols`,
        // so row `i < R` has `cols` writable values from `out`; the masks touch
        // lanes `0..cols` only (masked-off lanes are never accessed, and the
        // second half's address is formed with `wrapping_add` since it may lie
        // past the slice when `cols ≤ 16`). The CPU features are the callers'
        // (`kernel_fma`, `kernel_dpbf16`), into which this is inlined.
        unsafe {
            let (mut v0, mut v1) = (row[0], row[1]);
            if tile.load_c {
                v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(mask0, out), v0);
                v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(mask1, out.wrapping_add(16)), v1);
            }
            _mm512_mask_storeu_ps(out, mask0, v0);
            _mm512_mask_storeu_ps(out.wrapping_add(16), mask1, v1);
        }
    }
}
