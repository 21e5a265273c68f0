//! Element-wise kernels of the forward pass, written as plain loops over
//! slices that the compiler vectorises; on x86-64 with AVX-512 they are
//! compiled a second time for 512-bit registers and picked at run time.

/// `e^x` in f32 for `x` in about `[-87, 88]` (clamped outside), relative error
/// below 2e-7: range reduction by `ln 2` in two parts, a degree-6 polynomial,
/// and the exponent added to the bits. Branch-free, so it vectorises.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer by adding 1.5·2^23: the sum's low
    // mantissa bits are then that integer, read without a float-to-int
    // conversion (whose saturating semantics would keep the loop scalar).
    const MAGIC: f32 = 12_582_912.0;
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients 1/k! to k = 6: |r| ≤ 0.347, truncation error < 2e-8 relative.
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n through the exponent bits; n ∈ [-126, 127] after the clamp.
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// `h = silu(gate) ⊙ up` for rows laid out `[gate (f) | up (f)]`.
pub fn swiglu_rows(ffn: &[f32], f: usize, h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: AVX-512F is present, checked by `has_avx512`.
        unsafe { swiglu_rows_avx512(ffn, f, h) };
        return;
    }
    swiglu_rows_generic(ffn, f, h);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn swiglu_rows_avx512(ffn: &[f32], f: usize, h: &mut [f32]) {
    swiglu_rows_generic(ffn, f, h);
}

#[inline(always)]
fn swiglu_rows_generic(ffn: &[f32], f: usize, h: &mut [f32]) {
    for (row, out) in ffn.chunks_exact(2 * f).zip(h.chunks_exact_mut(f)) {
        let (gate, up) = row.split_at(f);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + exp_f32(-g)) * u;
        }
    }
}

/// `out = v / sqrt(mean(v²) + eps)` for each row of width `d`.
pub fn rms_norm_rows(x: &[f32], d: usize, eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: AVX-512F is present, checked by `has_avx512`.
        unsafe { rms_norm_rows_avx512(x, d, eps, out) };
        return;
    }
    rms_norm_rows_generic(x, d, eps, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn rms_norm_rows_avx512(x: &[f32], d: usize, eps: f32, out: &mut [f32]) {
    rms_norm_rows_generic(x, d, eps, out);
}

#[inline(always)]
fn rms_norm_rows_generic(x: &[f32], d: usize, eps: f32, out: &mut [f32]) {
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mut acc = [0f32; 16];
        let mut chunks = row.chunks_exact(16);
        for c in &mut chunks {
            for i in 0..16 {
                acc[i] += c[i] * c[i];
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        let ss = acc.iter().sum::<f32>() + tail;
        let inv = 1.0 / (ss / d as f32 + eps).sqrt();
        for (o, &v) in o.iter_mut().zip(row) {
            *o = v * inv;
        }
    }
}

/// Whether the CPU has AVX-512F (queried once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn swiglu_matches_definition() {
        let f = 37;
        let ffn: Vec<f32> = (0..4 * f).map(|i| (i as f32 * 0.37).sin() * 6.0).collect();
        let mut h = vec![0f32; 2 * f];
        swiglu_rows(&ffn, f, &mut h);
        for r in 0..2 {
            for i in 0..f {
                let (g, u) = (ffn[r * 2 * f + i], ffn[r * 2 * f + f + i]);
                let want = g / (1.0 + (-g).exp()) * u;
                assert!((h[r * f + i] - want).abs() <= 1e-6 * want.abs().max(1.0), "row {r} col {i}");
            }
        }
    }
}
