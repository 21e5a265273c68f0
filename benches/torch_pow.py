#!/usr/bin/env python3
"""PyTorch (CPU) reference implementation of the Sprint Proof-of-Work, spec v1.

Written from `shared/spec/sprint-pow.md` alone. It is the baseline that the
benchmarks compare the Rust miner against, and a second implementation to
cross-check distances with.

Modes:
  check  --vectors DIR                      recompute tiny.json / small.json
  dists  --config C --seed HEX --pubkey HEX --nonces A-B
                                            CSV `nonce,dist` (A-B inclusive)
  bench  --config C --precision f32|bf16 --seconds S [--batch B ...]
  peak   --precision f32|bf16 --seconds S   plain torch.matmul GFLOP/s

Everything that decides a bit of the model (ChaCha20, H, unit, bf16
rounding, s(n), weights, inputs, permutation, target) is done in numpy with
exact integer / f32 arithmetic; the forward pass runs in torch, batched over
nonces; the distance is taken in float64.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

# name: (L, d, h, f, V, T)
CONFIGS = {
    "tiny": (2, 64, 4, 256, 256, 4),
    "small": (8, 256, 8, 1024, 1024, 4),
    "seed-64": (64, 512, 128, 8192, 8192, 4),
}

# Seed and pubkey of the test vectors; the default for bench and dists.
DEFAULT_SEED = bytes(range(0x00, 0x20))
DEFAULT_PUBKEY = bytes(range(0xA0, 0xD0))

# Weight tensors of one layer in spec order, with their stream ids.
LAYER_TENSORS = (("wq", 0), ("wk", 1), ("wv", 2), ("wo", 3), ("w1", 4), ("w3", 5), ("w2", 6))
W_OUT_ID = 7

RMS_EPS = 1e-5  # an f32 constant: torch applies a Python scalar in the tensor's dtype
ROPE_BASE = 10000.0


# --------------------------------------------------------------------------
# Encodings (spec section 1)
# --------------------------------------------------------------------------

def u32_le(x):
    return struct.pack("<I", x)


def u64_le(x):
    return struct.pack("<Q", x)


def H(tag, *parts):
    """SHA-256 of tag, 0x00, then u32_le(len(p)) || p for each part."""
    h = hashlib.sha256(tag.encode("ascii") + b"\x00")
    for p in parts:
        h.update(u32_le(len(p)))
        h.update(p)
    return h.digest()


def key_words(key):
    """A 32-byte ChaCha20 key as its 8 little-endian u32 words."""
    return np.frombuffer(key, dtype="<u4").astype(np.uint32)


_SIGMA = np.array([0x61707865, 0x3320646E, 0x79622D32, 0x6B206574], dtype=np.uint32)
_COLUMNS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
_DIAGONALS = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def _rotl(x, n, tmp):
    # In place: x = (x << n) | (x >> (32 - n)); uint32 shifts drop the carried-out bits.
    np.left_shift(x, n, out=tmp)
    np.right_shift(x, 32 - n, out=x)
    np.bitwise_or(x, tmp, out=x)


def _quarter_round(s, a, b, c, d, tmp):
    xa, xb, xc, xd = s[a], s[b], s[c], s[d]
    np.add(xa, xb, out=xa); np.bitwise_xor(xd, xa, out=xd); _rotl(xd, 16, tmp)
    np.add(xc, xd, out=xc); np.bitwise_xor(xb, xc, out=xb); _rotl(xb, 12, tmp)
    np.add(xa, xb, out=xa); np.bitwise_xor(xd, xa, out=xd); _rotl(xd, 8, tmp)
    np.add(xc, xd, out=xc); np.bitwise_xor(xb, xc, out=xb); _rotl(xb, 7, tmp)


def chacha20_blocks(keys, first_block, n_blocks, nonce=(0, 0, 0)):
    """RFC 8439 ChaCha20 block function, vectorised over keys and block counters.

    keys: uint32 [K, 8]. Returns uint32 [K, n_blocks, 16]: blocks
    first_block .. first_block + n_blocks of each key's stream (the stream is
    seekable, so any range costs only its own blocks). The state is held
    word-major, [16, K, n_blocks], so that every word of the state is one
    contiguous array and each round step is one in-place numpy operation.
    """
    if first_block + n_blocks > 1 << 32:
        raise ValueError("ChaCha20 block counter overflows 32 bits")
    k = keys.shape[0]
    init = np.empty((16, k, n_blocks), dtype=np.uint32)
    init[0:4] = _SIGMA[:, None, None]
    init[4:12] = keys.T[:, :, None]
    init[12] = np.arange(first_block, first_block + n_blocks, dtype=np.uint64).astype(np.uint32)
    init[13:16] = np.asarray(nonce, dtype=np.uint32)[:, None, None]
    s = init.copy()
    tmp = np.empty((k, n_blocks), dtype=np.uint32)
    for _ in range(10):  # 20 rounds = 10 double rounds
        for q in _COLUMNS:
            _quarter_round(s, *q, tmp)
        for q in _DIAGONALS:
            _quarter_round(s, *q, tmp)
    np.add(s, init, out=s)
    return s.transpose(1, 2, 0)


def stream_words(keys, n_words):
    """Words 0 .. n_words of the stream of each key: uint32 [K, n_words]."""
    n_blocks = -(-n_words // 16)
    return chacha20_blocks(keys, 0, n_blocks).reshape(keys.shape[0], -1)[:, :n_words]


def unit(w):
    """unit(w) = (2*(w >> 8) + 1 - 2^24) * 2^-24, exact in f32."""
    n = (w >> 8).astype(np.int32) * 2 + (1 - (1 << 24))
    return n.astype(np.float32) * np.float32(2.0 ** -24)


def bf16_round(x):
    """Round f32 to the nearest bfloat16 (ties to even), kept as f32.

    Adding 0x7FFF plus the lowest kept bit and truncating is round-to-nearest-
    even on the bit pattern; the values here are finite and far from overflow.
    """
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    b = b + (np.uint32(0x7FFF) + ((b >> 16) & np.uint32(1)))
    b &= np.uint32(0xFFFF0000)
    return b.view(np.float32)


def s_of(n):
    """s(n): the f32 nearest to sqrt(3/n), computed in f64 and rounded once."""
    return np.float32(math.sqrt(3.0 / n))


# --------------------------------------------------------------------------
# The model (spec section 3)
# --------------------------------------------------------------------------

def weight_matrix(seed, layer, wid, rows, cols, pool, chunk_blocks=8192):
    """One [rows, cols] weight matrix as f32 numpy (every value a bf16).

    The stream is cut into chunks of blocks that the pool's threads compute
    independently; numpy releases the GIL inside its loops, so the chunks run
    in parallel.
    """
    key = key_words(H("gonka/weight", seed, u32_le(layer), u32_le(wid)))[None, :]
    n = rows * cols
    scale = s_of(cols)  # fan-in is the `in` dimension
    out = np.empty(n, dtype=np.float32)
    n_blocks = -(-n // 16)

    def job(b0):
        b1 = min(b0 + chunk_blocks, n_blocks)
        lo, hi = b0 * 16, min(b1 * 16, n)
        words = chacha20_blocks(key, b0, b1 - b0).reshape(-1)[: hi - lo]
        out[lo:hi] = bf16_round(unit(words) * scale)  # one f32 multiply, then bf16

    list(pool.map(job, range(0, n_blocks, chunk_blocks)))
    return out.reshape(rows, cols)


def iter_weights(cfg, seed, threads):
    """Yield (label, layer, name, f32 numpy matrix) in spec order."""
    L, d, _h, f, V, _T = cfg
    shapes = {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (f, d), "w3": (f, d), "w2": (d, f)}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for layer in range(L):
            for name, wid in LAYER_TENSORS:
                rows, cols = shapes[name]
                yield f"{name}[{layer}]", layer, name, weight_matrix(seed, layer, wid, rows, cols, pool)
        yield "w_out", L, "w_out", weight_matrix(seed, L, W_OUT_ID, V, d, pool)


def target_vector(seed, V):
    """t = unit(words of stream(H("gonka/target", seed))) normalised in f64."""
    words = stream_words(key_words(H("gonka/target", seed))[None, :], V)[0]
    t = unit(words).astype(np.float64)
    return t / np.linalg.norm(t)


class SprintModel:
    """Weights (torch tensors), RoPE tables and target for one sprint_seed.

    dtype is the storage and matmul dtype of the weights: torch.float32 for
    the reference numerics, torch.bfloat16 for the fast mode (exact, since
    every weight is a bf16 value).
    """

    def __init__(self, cfg, seed, dtype=torch.float32, threads=None, hash_weights=False):
        self.cfg = cfg
        L, d, h, f, V, T = cfg
        self.dtype = dtype
        self.layers = [dict() for _ in range(L)]
        self.w_out = None
        self.tensor_sha256 = []  # (label, shape, hex) when hash_weights
        all_hash = hashlib.sha256()
        for label, layer, name, w in iter_weights(cfg, seed, threads or os.cpu_count() or 1):
            if hash_weights:
                raw = w.astype("<f4", copy=False).tobytes()
                all_hash.update(raw)
                self.tensor_sha256.append((label, list(w.shape), hashlib.sha256(raw).hexdigest()))
            t = torch.from_numpy(w)
            if dtype != torch.float32:
                t = t.to(dtype)  # the numpy buffer is freed with w
            if name == "w_out":
                self.w_out = t
            else:
                self.layers[layer][name] = t
        self.weights_sha256 = all_hash.hexdigest() if hash_weights else None
        self.target = target_vector(seed, V)

        # RoPE: angle p * 10000^(-2i/e) in f64, cos/sin rounded once to f32.
        e = d // h
        i = np.arange(e // 2, dtype=np.float64)
        angles = np.arange(T, dtype=np.float64)[:, None] * ROPE_BASE ** (-2.0 * i / e)[None, :]
        self.cos = torch.from_numpy(np.cos(angles).astype(np.float32))  # [T, e/2]
        self.sin = torch.from_numpy(np.sin(angles).astype(np.float32))
        self.sqrt_e = float(np.float32(math.sqrt(e)))  # scores are divided by the f32 sqrt(e)
        self.causal = torch.ones(T, T, dtype=torch.bool).tril()  # [t, s]: s <= t

    # ----- forward pass (spec section 4.2 - 4.3), batched over nonces -----

    def _linear(self, a, w):
        # y = a . w^T over all leading rows in one GEMM; a is cast to the
        # weights' dtype (bf16 mode: bf16 inputs and output, f32 accumulation).
        return F.linear(a.to(w.dtype), w)

    @staticmethod
    def _rms(v):
        return v / torch.sqrt(v.square().mean(-1, keepdim=True) + RMS_EPS)

    def _rope(self, x, cos, sin):
        # x [..., h, e] in f32; rotate feature pairs (2i, 2i+1) of every head.
        u, w = x[..., 0::2], x[..., 1::2]
        return torch.stack((u * cos - w * sin, u * sin + w * cos), dim=-1).flatten(-2)

    def _ffn(self, x, lw):
        b = self._rms(x)
        g = self._linear(b, lw["w1"])
        u = self._linear(b, lw["w3"])
        return x + self._linear(F.silu(g) * u, lw["w2"]).float()

    def forward(self, x):
        """x: f32 [B, T, d] inputs. Returns y: f32 [B, V]."""
        L, d, h, _f, _V, T = self.cfg
        e = d // h
        B = x.shape[0]
        cos = self.cos[:, None, :]  # [T, 1, e/2] against [B, T, h, e/2]
        sin = self.sin[:, None, :]
        for lw in self.layers[:-1]:
            a = self._rms(x)
            q = self._rope(self._linear(a, lw["wq"]).float().view(B, T, h, e), cos, sin)
            k = self._rope(self._linear(a, lw["wk"]).float().view(B, T, h, e), cos, sin)
            v = self._linear(a, lw["wv"]).float().view(B, T, h, e)
            # scores[b, t, s, j] = q_t . k_s over head j's e features. With
            # T = 4 and e as small as 4, broadcasting beats B*h tiny GEMMs.
            scores = (q[:, :, None] * k[:, None, :]).sum(-1) / self.sqrt_e
            scores = scores.masked_fill(~self.causal[:, :, None], float("-inf"))
            p = torch.softmax(scores, dim=2)
            attn = (p[..., None] * v[:, None]).sum(2).reshape(B, T, d)
            x = x + self._linear(attn, lw["wo"]).float()
            x = self._ffn(x, lw)

        # Last layer: k and v for every position, the rest for T-1 only.
        lw = self.layers[-1]
        a = self._rms(x)
        k = self._rope(self._linear(a, lw["wk"]).float().view(B, T, h, e), cos, sin)
        v = self._linear(a, lw["wv"]).float().view(B, T, h, e)
        q = self._linear(a[:, T - 1], lw["wq"]).float().view(B, h, e)
        q = self._rope(q, self.cos[T - 1], self.sin[T - 1])
        scores = (q[:, None] * k).sum(-1) / self.sqrt_e  # [B, s, h]; all s <= T-1
        p = torch.softmax(scores, dim=1)
        attn = (p[..., None] * v).sum(1).reshape(B, d)
        xl = x[:, T - 1] + self._linear(attn, lw["wo"]).float()
        xl = self._ffn(xl, lw)
        return self._linear(self._rms(xl), self.w_out).float()


# --------------------------------------------------------------------------
# One nonce (spec section 4): inputs, permutation, distance
# --------------------------------------------------------------------------

S1 = s_of(1)


def input_batch(seed, node_seed, nonces, T, d):
    """Inputs x of a batch of nonces: f32 numpy [B, T, d] (bf16 values)."""
    keys = np.stack([key_words(H("gonka/input", seed, node_seed, u64_le(n))) for n in nonces])
    return bf16_round(unit(stream_words(keys, T * d)) * S1).reshape(len(nonces), T, d)


def perm_batch(seed, node_seed, nonces, V):
    """Fisher-Yates permutations of a batch of nonces: int64 [B, V].

    Step k (i = V-1-k) uses word k: j = (w * (i+1)) >> 32. The steps are
    sequential, so the loop runs over i and each step swaps in all B
    permutations at once, on a flat [V, B] array (row i = position i of every
    permutation) with precomputed flat indices of the (j, column) partners.
    """
    B = len(nonces)
    keys = np.stack([key_words(H("gonka/perm", seed, node_seed, u64_le(n))) for n in nonces])
    words = stream_words(keys, V - 1).astype(np.uint64)
    js = ((words * np.arange(V, 1, -1, dtype=np.uint64)) >> np.uint64(32)).astype(np.intp)
    partner = js.T * B + np.arange(B)  # [V-1, B], step-major
    flat = np.repeat(np.arange(V, dtype=np.int32), B)
    for step, i in enumerate(range(V - 1, 0, -1)):
        row = flat[i * B:(i + 1) * B]
        old = row.copy()
        row[:] = flat.take(partner[step])  # j == i gives row[c] back: a no-op swap
        flat.put(partner[step], old)
    return flat.reshape(V, B).T.astype(np.int64)


def distances(y, perm, target):
    """dist = || z/||z|| - t || in float64, z[i] = y[perm[i]], per row."""
    z = np.take_along_axis(y.detach().to(torch.float64).numpy(), perm, axis=1)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return np.linalg.norm(z - target[None, :], axis=1)


class Miner:
    """Everything that is fixed for one (sprint_seed, pubkey)."""

    def __init__(self, model, seed, pubkey):
        self.model = model
        self.seed = seed
        self.node_seed = H("gonka/node-seed", pubkey)

    def prepare(self, nonces):
        _L, d, _h, _f, V, T = self.model.cfg
        x = input_batch(self.seed, self.node_seed, nonces, T, d)
        return x, perm_batch(self.seed, self.node_seed, nonces, V)

    def dists(self, nonces):
        x, perm = self.prepare(nonces)
        with torch.inference_mode():
            y = self.model.forward(torch.from_numpy(x))
        return distances(y, perm, self.model.target), x, perm, y


def flops_per_nonce(cfg):
    """Matrix-product FLOPs of one nonce (last layer at position T-1 only)."""
    L, d, _h, f, V, T = cfg
    per_pos_layer = 2 * (4 * d * d + 3 * d * f)
    last = 2 * (2 * d * d) * T + 2 * (2 * d * d + 3 * d * f)
    return per_pos_layer * T * (L - 1) + last + 2 * d * V


# --------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------

def self_test():
    """Known answers for the primitives; returns a list of failures."""
    bad = []
    # RFC 8439 section 2.3.2: key 00..1f, nonce 000000090000004a00000000, counter 1.
    rfc_key = key_words(bytes(range(32)))[None, :]
    nonce = np.frombuffer(bytes.fromhex("000000090000004a00000000"), dtype="<u4")
    got = chacha20_blocks(rfc_key, 1, 1, nonce=tuple(int(v) for v in nonce))[0, 0]
    want = [0xE4E7F110, 0x15593BD1, 0x1FDD0F50, 0xC47120A3, 0xC7F4D1C7, 0x0368C033, 0x9AAA2204, 0x4E6CD4C3,
            0x466482D2, 0x09AA9F07, 0x05D7C214, 0xA2028BD9, 0xD19C12B5, 0xB94E16DE, 0xE883D0CB, 0x4E3C50A2]
    if [int(v) for v in got] != want:
        bad.append("chacha20 RFC 8439 2.3.2 block")
    # RFC 8439 A.1 #1: all-zero key and nonce, counter 0, first keystream bytes.
    zero = chacha20_blocks(np.zeros((1, 8), np.uint32), 0, 1)[0, 0].astype("<u4").tobytes()
    if zero[:16].hex() != "76b8e0ada0f13d90405d6ae55386bd28":
        bad.append("chacha20 RFC 8439 A.1 #1")
    # Seeking: block 5 alone equals block 5 of a longer run.
    if not np.array_equal(chacha20_blocks(rfc_key, 5, 1)[0, 0], chacha20_blocks(rfc_key, 0, 8)[0, 5]):
        bad.append("chacha20 seek")
    for n, bits in ((512, 0x3D9CC471), (8192, 0x3C9CC471), (1, 0x3FDDB3D7)):
        if int(s_of(n).view(np.uint32)) != bits:
            bad.append(f"s({n})")
    # bf16: ties go to even, others to nearest.
    probe = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF], dtype=np.uint32).view(np.float32)
    if [int(v) for v in bf16_round(probe).view(np.uint32)] != [0x3F800000, 0x3F820000, 0x3F810000, 0x3F800000]:
        bad.append("bf16 rounding")
    if unit(np.array([0, 0xFFFFFFFF], np.uint32)).tolist() != [(1 - 2 ** 24) * 2.0 ** -24, (2 ** 24 - 1) * 2.0 ** -24]:
        bad.append("unit")
    return bad


def check_file(path, batch):
    with open(path) as fh:
        vec = json.load(fh)
    c = vec["config"]
    cfg = (c["L"], c["d"], c["h"], c["f"], c["V"], c["T"])
    seed, pubkey = bytes.fromhex(vec["sprint_seed"]), bytes.fromhex(vec["pubkey"])
    L = cfg[0]
    errors = []
    node_seed = H("gonka/node-seed", pubkey)
    if node_seed.hex() != vec["node_seed"]:
        errors.append("node_seed")
    first = vec["nonces"][0]["nonce"]
    keys = {
        "weight_key_layer0_wq": H("gonka/weight", seed, u32_le(0), u32_le(0)),
        "weight_key_w_out": H("gonka/weight", seed, u32_le(L), u32_le(W_OUT_ID)),
        "target_key": H("gonka/target", seed),
        "input_key_first_nonce": H("gonka/input", seed, node_seed, u64_le(first)),
        "perm_key_first_nonce": H("gonka/perm", seed, node_seed, u64_le(first)),
    }
    for name, val in keys.items():
        if name in vec["keys"] and val.hex() != vec["keys"][name]:
            errors.append(f"key {name}")

    model = SprintModel(cfg, seed, torch.float32, hash_weights=True)
    if model.weights_sha256 != vec["weights_sha256"]:
        errors.append("weights_sha256")
        for (label, _shape, got), ref in zip(model.tensor_sha256, vec["weights_tensor_sha256"]):
            if got != ref["sha256"]:
                errors.append(f"  tensor {label}")
    t_units = unit(stream_words(key_words(H("gonka/target", seed))[None, :], 8)[0])
    if t_units.tolist() != vec["target_unit_first8"]:
        errors.append("target_unit_first8")
    if np.max(np.abs(model.target[:8] - np.array(vec["target_first8"]))) > 1e-15:
        errors.append("target_first8")

    miner = Miner(model, seed, pubkey)
    entries = vec["nonces"]
    inputs_ok = perms_ok = dists_ok = 0
    max_dd = max_dy = 0.0
    for b0 in range(0, len(entries), batch):
        chunk = entries[b0:b0 + batch]
        d, x, perm, y = miner.dists([e["nonce"] for e in chunk])
        for i, e in enumerate(chunk):
            if hashlib.sha256(x[i].astype("<f4").tobytes()).hexdigest() == e["input_sha256"]:
                inputs_ok += 1
            if perm[i, :8].tolist() == e["perm_first8"]:
                perms_ok += 1
            dd = abs(float(d[i]) - e["dist"])
            max_dd = max(max_dd, dd)
            dists_ok += dd <= 1e-4
            max_dy = max(max_dy, float(np.max(np.abs(y[i, :8].numpy() - np.array(e["y_first8"])))))
    n = len(entries)
    if inputs_ok != n:
        errors.append(f"inputs {inputs_ok}/{n}")
    if perms_ok != n:
        errors.append(f"perms {perms_ok}/{n}")
    if dists_ok != n:
        errors.append(f"dists {dists_ok}/{n}")
    status = "OK" if not errors else "FAIL"
    print(f"{os.path.basename(path)}: {status} config={c['name']} weights_sha256 "
          f"{'match' if model.weights_sha256 == vec['weights_sha256'] else 'MISMATCH'}, "
          f"inputs {inputs_ok}/{n}, perms {perms_ok}/{n}, dists {dists_ok}/{n} within 1e-4 "
          f"(max |d-ref| {max_dd:.2e}, max |y-ref| {max_dy:.2e})"
          + ("" if not errors else " -- " + "; ".join(errors)))
    return not errors


SEED64_WEIGHTS_SHA256 = "561a1c05918314fa0c18ed4e4e22540b5286d5ffd5a95e35c3d1569f298aee86"


def mode_check(args):
    ok = True
    bad = self_test()
    print("primitives (ChaCha20 RFC 8439, s(n), bf16, unit): " + ("OK" if not bad else "FAIL -- " + ", ".join(bad)))
    ok &= not bad
    for name in ("tiny.json", "small.json"):
        ok &= check_file(os.path.join(args.vectors, name), args.batch)
    if args.seed_64:
        t0 = time.perf_counter()
        model = SprintModel(CONFIGS["seed-64"], DEFAULT_SEED, torch.float32, hash_weights=True)
        good = model.weights_sha256 == SEED64_WEIGHTS_SHA256
        print(f"seed-64 weights: {'OK' if good else 'FAIL'} sha256 {model.weights_sha256} "
              f"({time.perf_counter() - t0:.1f} s)")
        ok &= good
    return 0 if ok else 1


def parse_range(text):
    a, sep, b = text.partition("-")
    lo = int(a)
    hi = int(b) if sep else lo
    if hi < lo:
        raise argparse.ArgumentTypeError(f"empty nonce range {text}")
    return lo, hi


def mode_dists(args):
    seed, pubkey = bytes.fromhex(args.seed), bytes.fromhex(args.pubkey)
    if len(seed) != 32 or len(pubkey) != 48:
        sys.exit("--seed must be 32 bytes and --pubkey 48 bytes, in hex")
    model = SprintModel(CONFIGS[args.config], seed, dtype_of(args.precision))
    miner = Miner(model, seed, pubkey)
    lo, hi = args.nonces
    out = sys.stdout
    out.write("nonce,dist\n")
    for b0 in range(lo, hi + 1, args.batch):
        nonces = list(range(b0, min(b0 + args.batch, hi + 1)))
        d = miner.dists(nonces)[0]
        out.write("".join(f"{n},{v:.9g}\n" for n, v in zip(nonces, d)))
    return 0


def dtype_of(precision):
    return {"f32": torch.float32, "bf16": torch.bfloat16}[precision]


def default_batches(config):
    return {"tiny": [64, 256, 1024], "small": [64, 256, 1024, 4096]}.get(config, [16, 32, 64, 128])


def busy_cpu_seconds():
    """CPU seconds the whole machine has spent busy (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def own_cpu_seconds():
    t = os.times()
    return t.user + t.system


def bench_batch(miner, batch, seconds, next_nonce):
    """Run whole batches (inputs, permutations, forward, distances) for about
    `seconds` after one warm-up batch. Returns (stats, next_nonce)."""
    def one(nonce0):
        t0 = time.perf_counter()
        nonces = list(range(nonce0, nonce0 + batch))
        x, perm = miner.prepare(nonces)
        t1 = time.perf_counter()
        y = miner.model.forward(torch.from_numpy(x))
        distances(y, perm, miner.model.target)
        return t1 - t0, time.perf_counter() - t0

    with torch.inference_mode():
        one(next_nonce)
        next_nonce += batch
        per_batch, prep = [], 0.0
        busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
        start = time.perf_counter()
        while True:
            p, total = one(next_nonce)
            next_nonce += batch
            per_batch.append(total)
            prep += p
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
    # On a shared machine other processes steal cores from torch's threads;
    # report how many cores they used on average during the measurement.
    busy1 = busy_cpu_seconds()
    others = None if busy0 is None else max(0.0, (busy1 - busy0) - (own_cpu_seconds() - own0)) / elapsed
    n = batch * len(per_batch)
    return {
        "batch": batch,
        "batches": len(per_batch),
        "nonces": n,
        "seconds": elapsed,
        "nonces_per_s": n / elapsed,
        "median_batch_nonces_per_s": batch / float(np.median(per_batch)),
        "prep_share": prep / elapsed,
        # The rate without the numpy inputs and permutations: torch's part alone.
        "forward_nonces_per_s": n / (elapsed - prep),
        "other_cores": others,
    }, next_nonce


def loadavg():
    try:
        with open("/proc/loadavg") as fh:
            return [float(v) for v in fh.read().split()[:3]]
    except OSError:
        return None


def mode_bench(args):
    cfg = CONFIGS[args.config]
    fl = flops_per_nonce(cfg)
    load0 = loadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, config {args.config} {cfg}, "
          f"precision {args.precision}, {fl / 1e9:.4f} GFLOP/nonce, loadavg {load0}", flush=True)
    t0 = time.perf_counter()
    model = SprintModel(cfg, DEFAULT_SEED, dtype_of(args.precision))
    init_s = time.perf_counter() - t0
    print(f"model init: {init_s:.2f} s", flush=True)
    miner = Miner(model, DEFAULT_SEED, DEFAULT_PUBKEY)

    results, nonce = [], 0
    for batch in args.batch or default_batches(args.config):
        r, nonce = bench_batch(miner, batch, args.seconds, nonce)
        r["gflops"] = r["nonces_per_s"] * fl / 1e9
        results.append(r)
        print(f"  batch {batch:5d}: {r['nonces_per_s']:10.2f} nonces/s  {r['gflops']:7.1f} GFLOP/s  "
              f"(median batch {r['median_batch_nonces_per_s']:.2f} nonces/s, {r['batches']} batches "
              f"in {r['seconds']:.1f} s; inputs+perms {100 * r['prep_share']:.1f}% of the time, "
              f"{r['forward_nonces_per_s']:.2f} nonces/s without them; other processes "
              f"{'?' if r['other_cores'] is None else format(r['other_cores'], '.2f')} cores)", flush=True)
    best = max(results, key=lambda r: r["nonces_per_s"])
    print(f"best: batch {best['batch']}, {best['nonces_per_s']:.2f} nonces/s, {best['gflops']:.1f} GFLOP/s")
    print(json.dumps({
        "impl": "torch", "config": args.config, "precision": args.precision,
        "nonces_per_s": round(best["nonces_per_s"], 3), "gflops": round(best["gflops"], 2),
        "batch": best["batch"], "init_s": round(init_s, 3),
        "forward_nonces_per_s": round(best["forward_nonces_per_s"], 3),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "loadavg": [load0, loadavg()],
        "sweep": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
    }))
    return 0


PEAK_SHAPES = ((1024, 512, 8192), (1024, 8192, 512))


def mode_peak(args):
    dtype = dtype_of(args.precision)
    gen = torch.Generator().manual_seed(0)
    per_shape = {}
    rounds = 5
    for m, k, n in PEAK_SHAPES:
        a = torch.randn(m, k, generator=gen).to(dtype)
        b = torch.randn(k, n, generator=gen).to(dtype)
        for _ in range(3):
            torch.matmul(a, b)
        best = 0.0
        for _ in range(rounds):
            calls, t0 = 0, time.perf_counter()
            while True:
                torch.matmul(a, b)
                calls += 1
                dt = time.perf_counter() - t0
                if dt >= args.seconds / (rounds * len(PEAK_SHAPES)):
                    break
            best = max(best, 2.0 * m * k * n * calls / dt / 1e9)
        per_shape[f"{m}x{k}@{k}x{n}"] = round(best, 1)
        print(f"  {args.precision} matmul {m}x{k} @ {k}x{n}: {best:.1f} GFLOP/s (best of {rounds})", flush=True)
    print(json.dumps({"impl": "torch", "kind": "peak", "precision": args.precision,
                      "gflops": max(per_shape.values()), "shapes": per_shape,
                      "threads": torch.get_num_threads(), "loadavg": loadavg()}))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)")
    sub = ap.add_subparsers(dest="mode", required=True)

    p = sub.add_parser("check", help="recompute the test vectors")
    p.add_argument("--vectors", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed-64", action="store_true", help="also hash the seed-64 weights (slow)")

    p = sub.add_parser("dists", help="CSV nonce,dist for a nonce range")
    p.add_argument("--config", choices=CONFIGS, required=True)
    p.add_argument("--seed", default=DEFAULT_SEED.hex(), help="sprint_seed, 32 bytes in hex")
    p.add_argument("--pubkey", default=DEFAULT_PUBKEY.hex(), help="pubkey, 48 bytes in hex")
    p.add_argument("--nonces", type=parse_range, required=True, help="A-B, both included")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    p.add_argument("--batch", type=int, default=64)

    p = sub.add_parser("bench", help="nonces/s of the batched forward pass")
    p.add_argument("--config", choices=CONFIGS, required=True)
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    p.add_argument("--seconds", type=float, default=20.0, help="per batch size, after a warm-up batch")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes to sweep")

    p = sub.add_parser("peak", help="plain torch.matmul GFLOP/s")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    p.add_argument("--seconds", type=float, default=10.0)

    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    return {"check": mode_check, "dists": mode_dists, "bench": mode_bench, "peak": mode_peak}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
