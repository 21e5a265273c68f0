#!/usr/bin/env python3
"""Reference implementation of the Sprint PoW v2 (docs/spec/sprint-pow-v2.md), in numpy.

Written from the spec page alone, independently of the Rust kernels: its own
ChaCha20 (vectorised over blocks), its own integer forward pass, three ways to
compute the exact int8 products (int64, float64 BLAS, float32 BLAS on K chunks
short enough that every partial sum is exact).

Commands:
  vectors  --out DIR            write tiny.json and small.json test vectors
  digests  --config C --nonces A-B [--gemm i64|f64|f32c]
                                print `nonce,digest` CSV (A-B includes both ends)
  stats    --config C --nonces N
                                layer-by-layer statistics of the activations
  agree    --config C --nonces N
                                y bit-identical across the three GEMM paths?
  seed64   [--nonces N]         seed-64 weights hash and the digests of a few nonces

Needs numpy (e.g. benches/.venv/bin/python).
"""

import argparse
import hashlib
import json
import math
import sys
import time

import numpy as np

# ---------------------------------------------------------------- encodings (spec §1)


def H(tag, *parts):
    h = hashlib.sha256()
    h.update(tag.encode("ascii") + b"\x00")
    for p in parts:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return h.digest()


def u32le(v):
    return int(v).to_bytes(4, "little")


def u64le(v):
    return int(v).to_bytes(8, "little")


_SIGMA = np.frombuffer(b"expand 32-byte k", dtype="<u4").astype(np.uint32)


def _rotl(x, n):
    return (x << np.uint32(n)) | (x >> np.uint32(32 - n))


def _qr(s, a, b, c, d):
    s[a] += s[b]; s[d] ^= s[a]; s[d] = _rotl(s[d], 16)
    s[c] += s[d]; s[b] ^= s[c]; s[b] = _rotl(s[b], 12)
    s[a] += s[b]; s[d] ^= s[a]; s[d] = _rotl(s[d], 8)
    s[c] += s[d]; s[b] ^= s[c]; s[b] = _rotl(s[b], 7)


def chacha_blocks(key, first_block, nblocks):
    """Blocks first_block .. first_block+nblocks of the RFC 8439 keystream
    (nonce zero), as a [nblocks*16] uint32 array in stream order."""
    kw = np.frombuffer(key, dtype="<u4").astype(np.uint32)
    init = [np.full(nblocks, _SIGMA[i], np.uint32) for i in range(4)]
    init += [np.full(nblocks, kw[i], np.uint32) for i in range(8)]
    init.append((np.arange(nblocks, dtype=np.uint64) + first_block).astype(np.uint32))
    init += [np.zeros(nblocks, np.uint32) for _ in range(3)]
    s = [x.copy() for x in init]
    for _ in range(10):
        _qr(s, 0, 4, 8, 12); _qr(s, 1, 5, 9, 13); _qr(s, 2, 6, 10, 14); _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15); _qr(s, 1, 6, 11, 12); _qr(s, 2, 7, 8, 13); _qr(s, 3, 4, 9, 14)
    out = np.empty((nblocks, 16), np.uint32)
    for i in range(16):
        out[:, i] = s[i] + init[i]
    return out.reshape(-1)


def stream_words(key, n, chunk_blocks=1 << 16):
    """Words 0..n of stream(key)."""
    nb = (n + 15) // 16
    out = np.empty(nb * 16, np.uint32)
    for b0 in range(0, nb, chunk_blocks):
        k = min(chunk_blocks, nb - b0)
        out[b0 * 16:(b0 + k) * 16] = chacha_blocks(key, b0, k)
    return out[:n]


def i8_of_words(w):
    """v2's int8 of a stream word: the odd integer 2*(w >> 25) - 127."""
    return (2 * (w >> np.uint32(25)).astype(np.int16) - 127).astype(np.int8)


def self_test_chacha():
    z = bytes(32)
    b = chacha_blocks(z, 0, 2).astype("<u4").tobytes().hex()
    want = ("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
            "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
            "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
            "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f")
    assert b == want, "ChaCha20 RFC 8439 A.1 vectors"


# ---------------------------------------------------------------- configs and constants (spec §2, §3)

CONFIGS = {
    "tiny": dict(L=2, d=64, h=4, f=256, V=256, T=4),
    "small": dict(L=8, d=256, h=8, f=1024, V=1024, T=4),
    "seed-64": dict(L=64, d=512, h=128, f=8192, V=8192, T=4),
}


def half_log2(n):
    """ceil(ceil(log2 n) / 2)."""
    return (int(n - 1).bit_length() + 1) // 2


def constants(cfg):
    d, f, e = cfg["d"], cfg["f"], cfg["d"] // cfg["h"]
    return dict(
        A=32,
        S_R=6,
        S_QKV=6 + half_log2(d),
        S_SC=6 + half_log2(e),
        S_O=half_log2(d) - 1,
        S_H=5 - (int(d - 1).bit_length() % 2),
        S_D=half_log2(f) - 1,
        ROPE_BITS=14,
    )


def rdiv(n, q):
    """n / q rounded to nearest, ties away from zero (q > 0); int64 arrays."""
    a = np.abs(n)
    return np.sign(n) * ((2 * a + q) // (2 * q))


def rs(x, s):
    """x / 2^s rounded to nearest, ties away from zero."""
    if s == 0:
        return x
    a = np.abs(x)
    return np.sign(x) * ((a + (1 << (s - 1))) >> s)


def clamp8(x):
    return np.clip(x, -127, 127)


def exp_table():
    return np.array([round_half_away(65536.0 * math.exp(-i / 16.0)) for i in range(256)], np.int64)


def silu_table():
    # index g + 127 for g in -127..=127
    vals = []
    for g in range(-127, 128):
        x = g / 32.0
        vals.append(round_half_away(32.0 * x / (1.0 + math.exp(-x))))
    return np.array(vals, np.int64)


def rope_tables(T, e, bits=14):
    half = e // 2
    cos = np.zeros((T, half), np.int64)
    sin = np.zeros((T, half), np.int64)
    for p in range(T):
        for i in range(half):
            ang = p * 10000.0 ** (-2.0 * i / e)
            cos[p, i] = round_half_away((1 << bits) * math.cos(ang))
            sin[p, i] = round_half_away((1 << bits) * math.sin(ang))
    return cos, sin


def round_half_away(x):
    # The tables are computed in f64; the spec asks that no entry be within
    # 1e-6 of a tie, so any libm rounds them the same way.
    frac = abs(x) - math.floor(abs(x))
    assert abs(frac - 0.5) > 1e-6, f"table entry {x} too close to a tie"
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


# ---------------------------------------------------------------- model (spec §3)

LAYER_TENSORS = [("wq", 0), ("wk", 1), ("wv", 2), ("wo", 3), ("w1", 4), ("w3", 5), ("w2", 6)]


def shape_of(cfg, name):
    d, f, V = cfg["d"], cfg["f"], cfg["V"]
    return {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (f, d), "w3": (f, d),
            "w2": (d, f), "w_out": (V, d)}[name]


def gen_tensor(seed, cfg, layer, name, tid):
    n, k = shape_of(cfg, name)
    key = H("gonka/weight", seed, u32le(layer), u32le(tid))
    return i8_of_words(stream_words(key, n * k)).reshape(n, k)


def gen_layer(seed, cfg, l):
    return {name: gen_tensor(seed, cfg, l, name, tid) for name, tid in LAYER_TENSORS}


def gen_model(seed, cfg):
    layers = [gen_layer(seed, cfg, l) for l in range(cfg["L"])]
    w_out = gen_tensor(seed, cfg, cfg["L"], "w_out", 7)
    return layers, w_out


def gen_input(seed, node, nonce, cfg):
    key = H("gonka/input", seed, node, u64le(nonce))
    return i8_of_words(stream_words(key, cfg["T"] * cfg["d"])).reshape(cfg["T"], cfg["d"])


# ---------------------------------------------------------------- exact int8 products


def mm_i64(a, w):
    return a.astype(np.int64) @ w.astype(np.int64).T


def mm_f64(a, w):
    # Integers below 2^53 in every partial sum: float64 BLAS is exact in any order.
    return (a.astype(np.float64) @ w.astype(np.float64).T).astype(np.int64)


def mm_f32c(a, w, chunk=1024):
    # |partial sums| <= 127*127*1024 < 2^24 inside a chunk: f32 BLAS is exact there.
    k = a.shape[1]
    out = np.zeros((a.shape[0], w.shape[0]), np.int64)
    for k0 in range(0, k, chunk):
        out += (a[:, k0:k0 + chunk].astype(np.float32) @ w[:, k0:k0 + chunk].astype(np.float32).T).astype(np.int64)
    return out


GEMMS = {"i64": mm_i64, "f64": mm_f64, "f32c": mm_f32c}

INT32_MAX = (1 << 31) - 1


def check_i32(x, what):
    m = int(np.abs(x).max()) if x.size else 0
    assert m <= INT32_MAX, f"{what} leaves int32: {m}"


# ---------------------------------------------------------------- forward (spec §4)


def rmsnorm8(r, A, d):
    """Integer RMSNorm of each row of r (int64) to int8 values at scale A."""
    check_i32(r, "residual")
    sq = (r.astype(np.uint64) ** 2) if False else (r * r).astype(np.uint64)
    ss = sq.sum(axis=-1, dtype=np.uint64)
    m = (ss // np.uint64(d)).astype(np.uint64)
    assert int(m.max(initial=0)) < (1 << 62)
    s = np.floor(np.sqrt(m.astype(np.float64))).astype(np.int64)
    mi = m.astype(np.int64)
    # Fix the float estimate to the exact integer square root.
    for _ in range(3):
        s = np.where(s * s > mi, s - 1, s)
        s = np.where((s + 1) * (s + 1) <= mi, s + 1, s)
    s = s[..., None]
    safe = np.where(s == 0, 1, s)
    a = clamp8(rdiv(A * r, safe))
    return np.where(s == 0, 0, a)


class Tables:
    def __init__(self, cfg, k):
        self.exp = exp_table()
        self.silu = silu_table()
        self.cos, self.sin = rope_tables(cfg["T"], cfg["d"] // cfg["h"], k["ROPE_BITS"])


def rope(x, tab, bits):
    """x: [B, T, h, e] int64 -> rotated, no clamp."""
    u, w = x[..., 0::2], x[..., 1::2]
    c = tab.cos[None, :, None, :]
    s = tab.sin[None, :, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = rs(u * c - w * s, bits)
    out[..., 1::2] = rs(u * s + w * c, bits)
    return out


def attention(q, k, v, tab, S_SC):
    """q, k, v: [B, T, h, e] (q, k rotated). Returns o: [B, T, h, e] int64."""
    T = q.shape[1]
    sc = np.einsum("bthe,bshe->bhts", q, k)
    check_i32(sc, "scores")
    causal = np.tril(np.ones((T, T), bool))
    masked = np.where(causal, sc, np.iinfo(np.int64).min)
    mx = masked.max(axis=-1, keepdims=True)
    z = np.minimum(rs(mx - np.where(causal, sc, mx), S_SC), 255)
    p = np.where(causal, tab.exp[z], 0)
    num = np.einsum("bhts,bshe->bthe", p, v)
    den = p.sum(axis=-1)  # [B, h, T]
    den = np.transpose(den, (0, 2, 1))[..., None]  # [B, T, h, 1]
    return rdiv(num, den)


def forward(layers, w_out, cfg, k, tab, x0, mm=mm_f64, stats=None, hooks=None):
    """x0: [B, T, d] int8 inputs. Returns y: [B, V] int64 (int32 values).

    `hooks` (study only) may alter the computation: dict with 'skip' (set of
    layers), 'stop' (int: layers run), 'ffn_bits' ({layer: bits} activation
    precision of the down product), 'drop_heads' (heads zeroed per layer).
    """
    hooks = hooks or {}
    B, T, d = x0.shape
    h = cfg["h"]
    e = d // h
    A = k["A"]
    r = x0.reshape(B * T, d).astype(np.int64) << k["S_R"]
    L = len(layers) if hooks.get("stop") is None else hooks["stop"]
    run = [l for l in range(L) if l not in hooks.get("skip", ())]
    rows_last = False
    for l in run:
        W = layers[l]
        last = l == run[-1]
        a = rmsnorm8(r, A, d)
        q = clamp8(rs(mm(a, W["wq"]), k["S_QKV"])).reshape(B, T, h, e)
        kk = clamp8(rs(mm(a, W["wk"]), k["S_QKV"])).reshape(B, T, h, e)
        v = clamp8(rs(mm(a, W["wv"]), k["S_QKV"])).reshape(B, T, h, e)
        qr, kr = rope(q, tab, k["ROPE_BITS"]), rope(kk, tab, k["ROPE_BITS"])
        o = attention(qr, kr, v, tab, k["S_SC"])
        if hooks.get("drop_heads"):
            o[:, :, h - hooks["drop_heads"]:, :] = 0
        o = o.reshape(B * T, d)
        if last:
            r = r.reshape(B, T, d)[:, T - 1]
            o = o.reshape(B, T, d)[:, T - 1]
            rows_last = True
        add_o = rs(mm(o, W["wo"]), k["S_O"])
        r = r + add_o
        b = rmsnorm8(r, A, d)
        g = clamp8(rs(mm(b, W["w1"]), k["S_QKV"]))
        u = clamp8(rs(mm(b, W["w3"]), k["S_QKV"]))
        hh = clamp8(rs(tab.silu[g + 127] * u, k["S_H"]))
        bits = hooks.get("ffn_bits", {}).get(l)
        if bits is not None:
            step = 1 << (8 - bits)
            hh = clamp8(rs(hh, 8 - bits) * step)
        add_f = rs(mm(hh, W["w2"]), k["S_D"])
        r = r + add_f
        if stats is not None:
            stats.append(layer_stats(l, r, a, q, kk, v, o, add_o, add_f, g, u, hh))
    if not rows_last:
        r = r.reshape(B, T, d)[:, T - 1]
    y = mm(rmsnorm8(r, A, d), w_out)
    check_i32(y, "y")
    return y


def layer_stats(l, r, a, q, k, v, o, add_o, add_f, g, u, h):
    def sd(x):
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    def sat(x):
        return float(np.mean(np.abs(x) >= 127))

    return dict(layer=l, r=sd(r), r_max=int(np.abs(r).max()), a=sd(a), a_sat=sat(a), q=sd(q), q_sat=sat(q),
                k=sd(k), v=sd(v), v_sat=sat(v), o=sd(o), add_o=sd(add_o), add_o_zero=float(np.mean(add_o == 0)),
                add_f=sd(add_f), g=sd(g), g_sat=sat(g), u=sd(u), u_sat=sat(u), h=sd(h), h_sat=sat(h),
                h_zero=float(np.mean(h == 0)))


# ---------------------------------------------------------------- digest and predicate (spec §5)

THRESHOLD_900 = (1 << 256) // 900


def y_bytes(y):
    return np.asarray(y, dtype="<i4").tobytes()


def digest(seed, node, nonce, y):
    return H("gonka/proof-v2", seed, node, u64le(nonce), y_bytes(y))


def is_proof(dg, nonces_per_proof=900):
    return int.from_bytes(dg, "big") < (1 << 256) // nonces_per_proof


# ---------------------------------------------------------------- drivers

SEED = bytes(range(32))
PUBKEY = bytes(range(0xA0, 0xD0))


def node_seed(pubkey):
    return H("gonka/node-seed", pubkey)


def run_nonces(model, cfg, k, tab, seed, node, nonces, mm=mm_f64, batch=64, hooks=None):
    layers, w_out = model
    ys = []
    for i in range(0, len(nonces), batch):
        chunk = nonces[i:i + batch]
        x0 = np.stack([gen_input(seed, node, n, cfg) for n in chunk])
        ys.append(forward(layers, w_out, cfg, k, tab, x0, mm=mm, hooks=hooks))
    return np.concatenate(ys)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def parse_range(s):
    a, b = s.split("-")
    return list(range(int(a), int(b) + 1))


def table_bytes(t):
    return np.asarray(t, dtype="<i4").tobytes()


def make_vectors(name, n_full, n_scan):
    cfg = CONFIGS[name]
    k = constants(cfg)
    tab = Tables(cfg, k)
    node = node_seed(PUBKEY)
    t0 = time.time()
    model = gen_model(SEED, cfg)
    layers, w_out = model
    all_w = hashlib.sha256()
    per = []
    first8 = {}
    for l in range(cfg["L"]):
        for nm, _ in LAYER_TENSORS:
            w = layers[l][nm]
            all_w.update(w.tobytes())
            per.append(dict(tensor=f"{nm}[{l}]", shape=list(w.shape), sha256=sha(w.tobytes())))
            if l == 0:
                first8[f"{nm}[0]"] = [int(x) for x in w.reshape(-1)[:8]]
    all_w.update(w_out.tobytes())
    per.append(dict(tensor="w_out", shape=list(w_out.shape), sha256=sha(w_out.tobytes())))
    first8["w_out"] = [int(x) for x in w_out.reshape(-1)[:8]]
    nonces = list(range(n_full))
    ys = run_nonces(model, cfg, k, tab, SEED, node, nonces, mm=mm_i64)
    entries = []
    for n, y in zip(nonces, ys):
        x = gen_input(SEED, node, n, cfg)
        dg = digest(SEED, node, n, y)
        entries.append(dict(nonce=n, input_sha256=sha(x.tobytes()), input_first8=[int(v) for v in x.reshape(-1)[:8]],
                            y_sha256=sha(y_bytes(y)), y_first8=[int(v) for v in y[:8]], digest=dg.hex(),
                            is_proof=is_proof(dg)))
    scan = list(range(n_scan))
    ys = run_nonces(model, cfg, k, tab, SEED, node, scan, mm=mm_f64)
    proofs = []
    for n, y in zip(scan, ys):
        dg = digest(SEED, node, n, y)
        if is_proof(dg):
            proofs.append(dict(nonce=n, digest=dg.hex()))
    out = dict(
        spec="sprint-pow v2",
        config=dict(name=name, **cfg),
        constants=k,
        sprint_seed=SEED.hex(), pubkey=PUBKEY.hex(), node_seed=node.hex(),
        keys=dict(weight_key_layer0_wq=H("gonka/weight", SEED, u32le(0), u32le(0)).hex(),
                  input_key_first_nonce=H("gonka/input", SEED, node, u64le(0)).hex(), first_nonce=0),
        tables=dict(exp_sha256=sha(table_bytes(tab.exp)), silu_sha256=sha(table_bytes(tab.silu)),
                    rope_cos=tab.cos.tolist(), rope_sin=tab.sin.tolist()),
        proof_threshold=THRESHOLD_900.to_bytes(32, "big").hex(),
        weights_sha256=all_w.hexdigest(),
        weights_tensor_sha256=per,
        weights_first8=first8,
        nonces=entries,
        scan=dict(nonces=f"0-{n_scan - 1}", proofs=proofs),
    )
    print(f"{name}: {time.time() - t0:.1f} s, {len(proofs)} proofs in {n_scan} nonces", file=sys.stderr)
    return out


def cmd_vectors(args):
    import os
    os.makedirs(args.out, exist_ok=True)
    for name, n_full, n_scan in [("tiny", 200, 9000), ("small", 50, 2700)]:
        v = make_vectors(name, n_full, n_scan)
        with open(os.path.join(args.out, f"{name}.json"), "w") as fh:
            json.dump(v, fh, indent=1)
            fh.write("\n")


def load_config(name):
    cfg = CONFIGS[name]
    k = constants(cfg)
    return cfg, k, Tables(cfg, k)


def cmd_digests(args):
    cfg, k, tab = load_config(args.config)
    model = gen_model(SEED if args.seed is None else bytes.fromhex(args.seed), cfg)
    seed = SEED if args.seed is None else bytes.fromhex(args.seed)
    node = node_seed(PUBKEY if args.pubkey is None else bytes.fromhex(args.pubkey))
    nonces = parse_range(args.nonces)
    ys = run_nonces(model, cfg, k, tab, seed, node, nonces, mm=GEMMS[args.gemm])
    print("nonce,digest")
    for n, y in zip(nonces, ys):
        print(f"{n},{digest(seed, node, n, y).hex()}")


def cmd_stats(args):
    cfg, k, tab = load_config(args.config)
    print("constants", k)
    layers, w_out = (gen_model(SEED, cfg) if args.config != "seed-64" else (None, None))
    node = node_seed(PUBKEY)
    x0 = np.stack([gen_input(SEED, node, n, cfg) for n in range(args.nonces)])
    stats = []
    if layers is None:
        layers = LazyLayers(SEED, cfg)
        w_out = gen_tensor(SEED, cfg, cfg["L"], "w_out", 7)
    forward(layers, w_out, cfg, k, tab, x0, mm=mm_f64, stats=stats)
    cols = ["layer", "r", "r_max", "a", "a_sat", "q", "q_sat", "v", "o", "add_o", "add_o_zero", "add_f", "g",
            "g_sat", "u", "h", "h_sat", "h_zero"]
    print(" ".join(f"{c:>9}" for c in cols))
    for s in stats:
        print(" ".join(f"{s[c]:>9.4g}" if isinstance(s[c], float) else f"{s[c]:>9}" for c in cols))


class LazyLayers:
    """Generates layer weights on access (seed-64 in int8 is 0.9 GB; kept once generated)."""

    def __init__(self, seed, cfg, cache=True):
        self.seed, self.cfg, self.cache, self.store = seed, cfg, cache, {}

    def __len__(self):
        return self.cfg["L"]

    def __getitem__(self, l):
        if l in self.store:
            return self.store[l]
        w = gen_layer(self.seed, self.cfg, l)
        if self.cache:
            self.store[l] = w
        return w


def cmd_agree(args):
    cfg, k, tab = load_config(args.config)
    model = gen_model(SEED, cfg)
    node = node_seed(PUBKEY)
    nonces = list(range(args.nonces))
    ys = {g: run_nonces(model, cfg, k, tab, SEED, node, nonces, mm=GEMMS[g]) for g in GEMMS}
    for g in GEMMS:
        same = int(np.all(ys[g] == ys["i64"], axis=1).sum())
        print(f"{args.config}: gemm {g}: {same}/{len(nonces)} nonces bit-identical to i64")


def cmd_seed64(args):
    cfg, k, tab = load_config("seed-64")
    t0 = time.time()
    layers = LazyLayers(SEED, cfg)
    all_w = hashlib.sha256()
    for l in range(cfg["L"]):
        for nm, _ in LAYER_TENSORS:
            all_w.update(layers[l][nm].tobytes())
    w_out = gen_tensor(SEED, cfg, cfg["L"], "w_out", 7)
    all_w.update(w_out.tobytes())
    print(f"seed-64 weights_sha256 {all_w.hexdigest()} ({time.time() - t0:.0f} s)", file=sys.stderr)
    node = node_seed(PUBKEY)
    nonces = list(range(args.nonces))
    t1 = time.time()
    ys = run_nonces((layers, w_out), cfg, k, tab, SEED, node, nonces, mm=mm_f32c if args.gemm == "f32c" else mm_f64)
    print(f"seed-64 forward of {len(nonces)} nonces: {time.time() - t1:.0f} s", file=sys.stderr)
    res = dict(weights_sha256=all_w.hexdigest(), nonces=[
        dict(nonce=n, y_sha256=sha(y_bytes(y)), y_first8=[int(v) for v in y[:8]],
             digest=digest(SEED, node, n, y).hex()) for n, y in zip(nonces, ys)])
    print(json.dumps(res, indent=1))


def main():
    self_test_chacha()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors"); v.add_argument("--out", required=True)
    dg = sub.add_parser("digests"); dg.add_argument("--config", default="small"); dg.add_argument("--nonces", required=True)
    dg.add_argument("--gemm", default="f64", choices=list(GEMMS)); dg.add_argument("--seed"); dg.add_argument("--pubkey")
    st = sub.add_parser("stats"); st.add_argument("--config", default="small"); st.add_argument("--nonces", type=int, default=64)
    ag = sub.add_parser("agree"); ag.add_argument("--config", default="small"); ag.add_argument("--nonces", type=int, default=256)
    s6 = sub.add_parser("seed64"); s6.add_argument("--nonces", type=int, default=4)
    s6.add_argument("--gemm", default="f64", choices=["f64", "f32c"])
    args = p.parse_args()
    {"vectors": cmd_vectors, "digests": cmd_digests, "stats": cmd_stats, "agree": cmd_agree, "seed64": cmd_seed64}[args.cmd](args)


if __name__ == "__main__":
    main()
