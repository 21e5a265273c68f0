//! ggml's tensor element types ([`GgmlType`]) and their block formats: the
//! size of a row of each type, a scalar reference dequantizer for the types the
//! model uses, and the two quantizers tests need to build small quantized models.
//!
//! A block type stores its weights in blocks of 32, each block one scale (and
//! for Q4_1 one offset) and the packed integers. All fields are little-endian;
//! a row of `k` weights is `k / 32` blocks back to back, with no padding:
//!
//! ```text
//!  Q4_0  18 bytes / 32 weights   [ d: f16 ][ qs: 16 bytes ]            w = d·(nibble − 8)
//!  Q4_1  20 bytes / 32 weights   [ d: f16 ][ m: f16 ][ qs: 16 bytes ]  w = d·nibble + m
//!  Q8_0  34 bytes / 32 weights   [ d: f16 ][ q: 32 × i8 ]              w = d·q
//!
//!  nibbles of qs byte i (i in 0..16):  bits 3..0 → weight i,  bits 7..4 → weight i + 16
//! ```
//!
//! F32, F16 and BF16 rows are plain little-endian values, one per weight.

use std::fmt;

use half::{bf16, f16};

/// Weights per block in Q4_0, Q4_1 and Q8_0.
pub const QK: usize = 32;

/// Bytes of one Q4_0 block: scale and 32 nibbles.
const Q4_0_BLOCK_BYTES: usize = 2 + QK / 2;
/// Bytes of one Q4_1 block: scale, offset and 32 nibbles.
const Q4_1_BLOCK_BYTES: usize = 2 + 2 + QK / 2;
/// Bytes of one Q8_0 block: scale and 32 bytes.
const Q8_0_BLOCK_BYTES: usize = 2 + QK;

/// Element types of tensors, with ggml's names and type ids. Every type here
/// can be sized; [`dequantize_row`] decodes F32, F16, BF16, Q4_0, Q4_1 and Q8_0.
// ggml's own spelling, so names match its documentation and file dumps.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
}

impl GgmlType {
    const ALL: [GgmlType; 20] = {
        use GgmlType::*;
        [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, I8, I16, I32,
            I64, F64, BF16,
        ]
    };

    /// The type with ggml type id `id`, if this reader knows it.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's type id, as stored in the file.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// Values per block (1 for plain types).
    pub const fn block_elems(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 => QK,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => 256,
        }
    }

    /// Bytes per block (per value for plain types), from ggml's block structs.
    pub const fn block_bytes(self) -> usize {
        use GgmlType::*;
        match self {
            I8 => 1,
            F16 | BF16 | I16 => 2,
            F32 | I32 => 4,
            F64 | I64 => 8,
            Q4_0 => Q4_0_BLOCK_BYTES,
            Q4_1 => Q4_1_BLOCK_BYTES,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => Q8_0_BLOCK_BYTES,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a row cannot be sized or dequantized.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// A block type's row must hold whole blocks.
    #[error("a {dtype} row holds whole blocks of {block} values; {k} values is not a multiple")]
    NotBlockMultiple {
        /// Element type.
        dtype: GgmlType,
        /// Values asked for.
        k: usize,
        /// Values per block.
        block: usize,
    },
    /// The byte size of the row does not fit in `usize`.
    #[error("a {dtype} row of {k} values is too large to address")]
    TooLarge {
        /// Element type.
        dtype: GgmlType,
        /// Values asked for.
        k: usize,
    },
    /// The bytes given are not exactly one row of the output's length.
    #[error("{k} {dtype} values take {expected} bytes, found {found}")]
    Length {
        /// Element type.
        dtype: GgmlType,
        /// Values asked for.
        k: usize,
        /// Bytes `k` values take.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// The type is known to the file format but has no dequantizer here.
    #[error("dequantizing {dtype} is not implemented (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)")]
    Unsupported {
        /// Element type.
        dtype: GgmlType,
    },
}

/// Bytes taken by `k` consecutive values of `dtype`; for a block type `k` must
/// be a multiple of its block size.
pub fn row_bytes(dtype: GgmlType, k: usize) -> Result<usize, QuantError> {
    let block = dtype.block_elems();
    if !k.is_multiple_of(block) {
        return Err(QuantError::NotBlockMultiple { dtype, k, block });
    }
    (k / block).checked_mul(dtype.block_bytes()).ok_or(QuantError::TooLarge { dtype, k })
}

/// Decodes one row: `out.len()` values from exactly `row_bytes(dtype, out.len())`
/// bytes. This is the scalar reference the fast kernels are checked against.
pub fn dequantize_row(dtype: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let expected = row_bytes(dtype, out.len())?;
    if bytes.len() != expected {
        return Err(QuantError::Length { dtype, k: out.len(), expected, found: bytes.len() });
    }
    match dtype {
        GgmlType::F32 => decode_plain::<4>(bytes, out, f32::from_le_bytes),
        GgmlType::F16 => decode_plain::<2>(bytes, out, |b| f16::from_le_bytes(b).to_f32()),
        GgmlType::BF16 => decode_plain::<2>(bytes, out, |b| bf16::from_le_bytes(b).to_f32()),
        GgmlType::Q4_0 => decode_q4_0(bytes, out),
        GgmlType::Q4_1 => decode_q4_1(bytes, out),
        GgmlType::Q8_0 => decode_q8_0(bytes, out),
        _ => return Err(QuantError::Unsupported { dtype }),
    }
    Ok(())
}

/// Decodes `n_elements` consecutive values (a whole tensor, rows back to back).
/// The length is checked against `bytes` before anything is allocated.
pub fn dequantize(dtype: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, QuantError> {
    let expected = row_bytes(dtype, n_elements)?;
    if bytes.len() != expected {
        return Err(QuantError::Length { dtype, k: n_elements, expected, found: bytes.len() });
    }
    let mut out = vec![0.0; n_elements];
    dequantize_row(dtype, bytes, &mut out)?;
    Ok(out)
}

/// Quantizes to Q4_1 with ggml's reference rule: per block `d = (max − min)/15`,
/// `m = min`, `q = round((x − min)/d)` clamped to `0..=15`, `d` and `m` stored
/// as f16. Values must be finite.
///
/// # Panics
/// If `values.len()` is not a multiple of [`QK`].
pub fn quantize_q4_1(values: &[f32]) -> Vec<u8> {
    assert!(values.len().is_multiple_of(QK), "Q4_1 needs whole blocks of {QK}, got {} values", values.len());
    let mut out = Vec::with_capacity(values.len() / QK * Q4_1_BLOCK_BYTES);
    for x in values.chunks_exact(QK) {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        let q = |v: f32| ((v - min) * inv).round().clamp(0.0, 15.0) as u8;
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        out.extend((0..QK / 2).map(|i| q(x[i]) | (q(x[i + QK / 2]) << 4)));
    }
    out
}

/// Quantizes to Q8_0 with ggml's reference rule: per block `d = absmax/127`,
/// `q = round(x/d)` (ties away from zero), `d` stored as f16. Values must be
/// finite.
///
/// # Panics
/// If `values.len()` is not a multiple of [`QK`].
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    assert!(values.len().is_multiple_of(QK), "Q8_0 needs whole blocks of {QK}, got {} values", values.len());
    let mut out = Vec::with_capacity(values.len() / QK * Q8_0_BLOCK_BYTES);
    for x in values.chunks_exact(QK) {
        let absmax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = absmax / 127.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(x.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

/// Plain little-endian values of `N` bytes each; lengths checked by the caller.
fn decode_plain<const N: usize>(bytes: &[u8], out: &mut [f32], decode: impl Fn([u8; N]) -> f32) {
    let (values, _) = bytes.as_chunks::<N>();
    for (o, v) in out.iter_mut().zip(values) {
        *o = decode(*v);
    }
}

/// The f16 scale at the start of every block.
fn block_scale(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[0], block[1]]).to_f32()
}

fn decode_q4_0(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<Q4_0_BLOCK_BYTES>();
    for (block, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block_scale(block);
        let (lo, hi) = o.split_at_mut(QK / 2);
        for ((q, l), h) in block[2..].iter().zip(lo).zip(hi) {
            *l = d * (f32::from(q & 0xF) - 8.0);
            *h = d * (f32::from(q >> 4) - 8.0);
        }
    }
}

fn decode_q4_1(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<Q4_1_BLOCK_BYTES>();
    for (block, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block_scale(block);
        let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
        let (lo, hi) = o.split_at_mut(QK / 2);
        for ((q, l), h) in block[4..].iter().zip(lo).zip(hi) {
            *l = d * f32::from(q & 0xF) + m;
            *h = d * f32::from(q >> 4) + m;
        }
    }
}

fn decode_q8_0(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<Q8_0_BLOCK_BYTES>();
    for (block, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block_scale(block);
        for (q, w) in block[2..].iter().zip(o) {
            *w = d * f32::from(*q as i8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::gguf::testing::real_model;

    /// Seed of the random test data; printed so a failure can be replayed.
    const SEED: u64 = 0x5eed_0a11;

    /// xorshift64*: enough randomness for test data, no dependency.
    struct Rng(u64);

    impl Rng {
        fn new(salt: u64) -> Self {
            println!("quant tests: seed {SEED:#x}, salt {salt}");
            Self((SEED ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
        }

        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            bits as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// Random blocks of varied scale and offset, one constant block among them.
    fn sample(salt: u64) -> Vec<f32> {
        let mut rng = Rng::new(salt);
        let mut x: Vec<f32> = Vec::new();
        for b in 0..64 {
            let scale = 10f32.powi(b % 7 - 3);
            let shift = if b % 3 == 0 { 0.0 } else { rng.unit() * 4.0 * scale };
            x.extend((0..QK).map(|_| rng.unit() * scale + shift));
        }
        x[5 * QK..6 * QK].fill(0.375);
        x
    }

    /// The most rounding `x` to f16 can cost: half an ulp, relative for normal
    /// values and 2^-25 for subnormal ones (tiny scales are subnormal in f16).
    fn f16_rounding(x: f32) -> f32 {
        (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25))
    }

    #[test]
    fn q4_1_round_trip_is_within_half_a_step() {
        let x = sample(1);
        let bytes = quantize_q4_1(&x);
        assert_eq!(bytes.len(), row_bytes(GgmlType::Q4_1, x.len()).expect("whole blocks"));
        let y = dequantize(GgmlType::Q4_1, &bytes, x.len()).expect("valid Q4_1");
        for (b, (xb, yb)) in x.chunks(QK).zip(y.chunks(QK)).enumerate() {
            let min = xb.iter().copied().fold(f32::INFINITY, f32::min);
            let max = xb.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let step = (max - min) / 15.0;
            // Half a step from rounding q, plus f16 rounding of d (times q ≤ 15) and of m.
            let bound = 0.5 * step + 15.0 * f16_rounding(step) + f16_rounding(min) + 1e-7;
            for (i, (a, b2)) in xb.iter().zip(yb).enumerate() {
                assert!((a - b2).abs() <= bound, "block {b} weight {i}: {a} decoded as {b2}, bound {bound}");
            }
        }
    }

    #[test]
    fn q8_0_round_trip_is_within_half_a_step() {
        let x = sample(2);
        let bytes = quantize_q8_0(&x);
        assert_eq!(bytes.len(), row_bytes(GgmlType::Q8_0, x.len()).expect("whole blocks"));
        let y = dequantize(GgmlType::Q8_0, &bytes, x.len()).expect("valid Q8_0");
        for (b, (xb, yb)) in x.chunks(QK).zip(y.chunks(QK)).enumerate() {
            let step = xb.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
            // Half a step from rounding q, plus f16 rounding of d (times |q| ≤ 127).
            let bound = 0.5 * step + 127.0 * f16_rounding(step) + 1e-7;
            for (i, (a, b2)) in xb.iter().zip(yb).enumerate() {
                assert!((a - b2).abs() <= bound, "block {b} weight {i}: {a} decoded as {b2}, bound {bound}");
            }
        }
    }

    #[test]
    fn hand_made_q4_1_block_decodes_to_known_values() {
        // d = 0.5, m = −1; qs[i] holds i in the low nibble and 15 − i in the high one.
        let mut block = Vec::new();
        block.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        block.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let mut out = [0.0; QK];
        dequantize_row(GgmlType::Q4_1, &block, &mut out).expect("one Q4_1 block");
        for i in 0..16 {
            assert_eq!(out[i], 0.5 * i as f32 - 1.0, "weight {i}");
            assert_eq!(out[i + 16], 0.5 * (15 - i) as f32 - 1.0, "weight {}", i + 16);
        }
    }

    #[test]
    fn hand_made_q4_0_block_decodes_to_known_values() {
        // d = 2; qs[i] holds i in the low nibble and 15 − i in the high one.
        let mut block = f16::from_f32(2.0).to_le_bytes().to_vec();
        block.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let mut out = [0.0; QK];
        dequantize_row(GgmlType::Q4_0, &block, &mut out).expect("one Q4_0 block");
        for i in 0..16 {
            assert_eq!(out[i], 2.0 * (i as f32 - 8.0), "weight {i}");
            assert_eq!(out[i + 16], 2.0 * (7 - i as i32) as f32, "weight {}", i + 16);
        }
    }

    #[test]
    fn hand_made_q8_0_block_decodes_to_known_values() {
        // d = 0.25 and q = −128, −120, …, 120: the full i8 range, sign included.
        let mut block = f16::from_f32(0.25).to_le_bytes().to_vec();
        block.extend((0..QK as i32).map(|i| (i * 8 - 128) as i8 as u8));
        let mut out = [0.0; QK];
        dequantize_row(GgmlType::Q8_0, &block, &mut out).expect("one Q8_0 block");
        for (i, w) in out.iter().enumerate() {
            assert_eq!(*w, 0.25 * (i as f32 * 8.0 - 128.0), "weight {i}");
        }
    }

    #[test]
    fn plain_types_decode_little_endian() {
        let values = [1.5f32, -0.0, 65504.0, -3.25];
        let f32s: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> = values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
        let bf16s: Vec<u8> = values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect();
        for (dtype, bytes, want) in [
            (GgmlType::F32, f32s, values),
            (GgmlType::F16, f16s, values),
            // 65504 is not a bf16 value; it rounds to 65536.
            (GgmlType::BF16, bf16s, [1.5, -0.0, 65536.0, -3.25]),
        ] {
            let got = dequantize(dtype, &bytes, values.len()).expect("plain row");
            // Compared by bits so that −0 and +0 differ.
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{dtype}");
        }
    }

    #[test]
    fn lengths_and_types_are_checked() {
        assert_eq!(row_bytes(GgmlType::Q4_1, 576), Ok(18 * 20));
        assert_eq!(row_bytes(GgmlType::F16, 7), Ok(14));
        assert_eq!(row_bytes(GgmlType::Q6_K, 512), Ok(2 * 210));
        assert_eq!(
            row_bytes(GgmlType::Q8_0, 33),
            Err(QuantError::NotBlockMultiple { dtype: GgmlType::Q8_0, k: 33, block: 32 })
        );
        assert!(matches!(row_bytes(GgmlType::Q8_0, usize::MAX - 31), Err(QuantError::TooLarge { .. })));
        let mut out = [0.0; 32];
        assert_eq!(
            dequantize_row(GgmlType::Q4_1, &[0; 21], &mut out),
            Err(QuantError::Length { dtype: GgmlType::Q4_1, k: 32, expected: 20, found: 21 })
        );
        assert_eq!(
            dequantize_row(GgmlType::Q6_K, &[0; 210], &mut [0.0; 256]),
            Err(QuantError::Unsupported { dtype: GgmlType::Q6_K })
        );
        assert!(matches!(dequantize(GgmlType::F32, &[0; 8], 3), Err(QuantError::Length { .. })));
    }

    /// Dequantizes the first rows of a tensor of the real model and checks
    /// they are finite and of the size trained weights have.
    fn check_real_rows(name: &str, dtype: GgmlType, rows: usize) {
        let Some(model) = real_model() else { return };
        let view = model.tensor(name).expect("tensor present in the model");
        assert_eq!(view.info.dtype, dtype, "{name}");
        let mut row = vec![0.0; view.info.row_len()];
        for r in 0..rows {
            let bytes = view.row(r).expect("row inside the tensor");
            dequantize_row(dtype, bytes, &mut row).expect("row dequantizes");
            let absmax = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let rms = (row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32).sqrt();
            assert!(row.iter().all(|v| v.is_finite()), "{name} row {r} has a non-finite weight");
            assert!(absmax < 64.0, "{name} row {r}: |w| up to {absmax}");
            assert!(rms > 1e-4 && rms < 4.0, "{name} row {r}: rms {rms}");
            if r == 0 {
                println!("{name} row 0: rms {rms:.4}, |w| ≤ {absmax:.4}, first {:?}", &row[..4]);
            }
        }
    }

    #[test]
    fn real_token_embedding_rows_are_plausible() {
        check_real_rows("token_embd.weight", GgmlType::Q8_0, 8);
    }

    #[test]
    fn real_attention_query_rows_are_plausible() {
        check_real_rows("blk.0.attn_q.weight", GgmlType::Q4_1, 8);
    }
}
