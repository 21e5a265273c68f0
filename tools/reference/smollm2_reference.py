#!/usr/bin/env python3
"""Golden logits of SmolLM2-135M-Instruct (GGUF, Q4_1), from a plain numpy forward pass.

Writes kernels/tests/golden/smollm2.json: reference logits computed in float64
from the dequantized GGUF weights, for a few prompts given as token-id lists,
so the golden data does not depend on any tokenizer implementation.

Usage:
  tools/fetch-model.sh
  python3 -m venv ~/.cache/gonka/venv && ~/.cache/gonka/venv/bin/pip install gguf==0.19.0 numpy
  ~/.cache/gonka/venv/bin/python tools/reference/smollm2_reference.py \
      [--model PATH] [--out kernels/tests/golden/smollm2.json]

Model, as read from the GGUF metadata (GGUF v3, architecture "llama"):
  30 blocks, d_model 576, FFN 1536, 9 query heads and 3 KV heads (GQA, head_dim
  64; query head h reads KV head h // 3), vocab 49152, RoPE base
  llama.rope.freq_base = 100000, RMSNorm eps
  llama.attention.layer_norm_rms_epsilon = 1e-5 (stored as the float32
  9.999999747378752e-06, used as that exact value).
  token_embd.weight is Q8_0 and is also the output head (tied; the file has no
  output.weight). The 210 attn_q/attn_k/attn_v/attn_output/ffn_gate/ffn_up/
  ffn_down matrices are Q4_1; attn_norm, ffn_norm and output_norm are F32.

Conventions that an implementation must get right:
  * GGUF dimension order: dims[0] is the row length (the innermost, contiguous
    dimension). A matrix of math shape [out, in] (y = W @ x) has GGUF dims
    [in, out]; e.g. attn_k.weight has dims [576, 192] and is 192 rows of 576.
    Quantization blocks (32 weights) run along a row.
  * Q4_1 block (20 bytes): f16 d, f16 m, 16 bytes of nibbles; weight j of the
    block is d * q_j + m, where q_j (0..15) is the low nibble of byte j for
    j < 16 and the high nibble of byte j - 16 for j >= 16.
    Q8_0 block (34 bytes): f16 d, 32 int8 q; weight j is d * q_j.
    The dequantized values are exact in float64 (checked below against
    gguf.quants.dequantize, whose float32 results are exact as well here).
  * RoPE: llama.cpp's converter permutes the rows of attn_q and attn_k so that
    the GGUF weights expect RoPE in the "interleaved pairs" style (GPT-J,
    llama.cpp's NORM mode): within each 64-wide head, the pair
    (x[2i], x[2i+1]) is rotated by the angle pos * base^(-2i/64), i = 0..31:
        x'[2i]   = x[2i] cos - x[2i+1] sin
        x'[2i+1] = x[2i] sin + x[2i+1] cos
    The other style (NeoX, "halves": pairs (x[i], x[i+32])) is what the
    original HF checkpoint uses before the permutation, and is wrong for these
    weights. This script runs both on the ChatML prompt and records in the JSON
    ("rope_check") the greedy continuation and next-token entropy of each: the
    interleaved style answers coherently with a sharp distribution, the halves
    style does not (see the JSON for the exact numbers).
  * Block: x += Wo · attn(RoPE(Wq · n1), RoPE(Wk · n1), Wv · n1), with
    n1 = rmsnorm(x) * attn_norm; then x += Wdown · (silu(Wgate · n2) * (Wup · n2)),
    with n2 = rmsnorm(x) * ffn_norm; rmsnorm(x) = x / sqrt(mean(x^2) + eps).
    Attention: scores q·k / sqrt(64), causal, softmax (in float64 here).
    Final: logits = E · (rmsnorm(x) * output_norm), E = token_embd (tied).
  * Prompts: plain-text prompts get BOS prepended (tokenizer.ggml.add_bos_token
    = 1; BOS is id 1, "<|im_start|>"). The ChatML prompts already begin with
    <|im_start|> and get nothing prepended. Token ids were produced with the
    small byte-level BPE tokenizer below (special tokens split out first, then
    every digit on its own, then the GPT-2 pre-tokenizer regex, then the GGUF
    merges by rank); they are stored in the JSON and are the ground truth.

Also computed: the same forward pass in float32 (weights cast to float32, all
matmuls, norms and softmax in float32; RoPE cos/sin computed in float64 and
rounded to float32). The JSON reports, per prompt, the largest absolute and
relative differences between float32 and float64 last-position logits: the
floor for how close any float32 implementation can be expected to come.

Greedy continuations (16 tokens, argmax, float64, not stopped at EOS id 2
"<|im_end|>") run with a KV cache and are checked against a full re-run of
prompt + continuation without a cache. The smallest top-1/top-2 logit margins
are recorded so that tests can tell how much numerical slack an argmax check has.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import time

import numpy as np

try:
    import gguf
    from gguf import GGUFReader
except ImportError:  # pragma: no cover
    sys.exit("needs the gguf package: ~/.cache/gonka/venv/bin/pip install gguf==0.19.0 numpy")

DEFAULT_MODEL = os.path.expanduser("~/.cache/gonka/models/SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "kernels", "tests", "golden", "smollm2.json")

ROPE_STYLE = "interleaved"  # see the header; verified by rope_check in the JSON
GREEDY_STEPS = 16
TOPK = 8
LOGIT_ID_STRIDE = 192  # last-position logits are kept at ids 0, 192, ..., 48960 (256 ids)

SYSTEM_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTION = "What is the capital of France?"
LONG_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined several existing technologies into a single system for producing "
    "books. Movable metal type, oil-based inks and a wooden screw press allowed printers "
    "to make hundreds of identical copies far more quickly than scribes could write them "
    "by hand. By 1500, print shops had spread to more than 250 cities across Europe, and "
    "the price of books fell sharply. This change helped"
)

# (name, text, prepend BOS)
PROMPTS = [
    ("chatml_capital",
     "<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n", False),
    ("chatml_capital_system",
     "<|im_start|>system\n" + SYSTEM_DEFAULT + "<|im_end|>\n<|im_start|>user\n" + QUESTION
     + "<|im_end|>\n<|im_start|>assistant\n", False),
    ("plain_sentence", "Once upon a time in a small village, there lived", True),
    ("bos_only", "", True),
    ("long_paragraph", LONG_TEXT, True),
]


# ----------------------------------------------------------------------------- GGUF

def field_value(reader, key):
    f = reader.fields[key]
    return f.contents()


class Vocab:
    """Token strings, types and merges from the GGUF metadata; a small BPE encoder."""

    def __init__(self, reader):
        f = reader.fields["tokenizer.ggml.tokens"]
        self.tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        f = reader.fields["tokenizer.ggml.token_type"]
        self.types = [int(f.parts[i][0]) for i in f.data]
        f = reader.fields["tokenizer.ggml.merges"]
        merges = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        self.rank = {}
        for r, m in enumerate(merges):
            a, b = m.split(" ")
            self.rank[(a, b)] = r
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.bos = int(field_value(reader, "tokenizer.ggml.bos_token_id"))
        self.eos = int(field_value(reader, "tokenizer.ggml.eos_token_id"))
        # GPT-2 byte <-> printable unicode map.
        keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
        b2u = {}
        extra = 0
        for b in range(256):
            if b in keep:
                b2u[b] = chr(b)
            else:
                b2u[b] = chr(256 + extra)
                extra += 1
        self.b2u = b2u
        self.u2b = {u: b for b, u in b2u.items()}
        specials = [t for t, ty in zip(self.tokens, self.types) if ty == 3]  # CONTROL
        specials.sort(key=len, reverse=True)
        self.special_re = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
        # GPT-2 pre-tokenizer regex, ASCII form (prompts are checked to be ASCII).
        self.piece_re = re.compile(
            r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")

    def _bpe(self, word):
        parts = [self.b2u[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            best = None
            for k in range(len(parts) - 1):
                r = self.rank.get((parts[k], parts[k + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, k)
            if best is None:
                break
            k = best[1]
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return [self.ids[p] for p in parts]

    def encode(self, text):
        assert text.isascii(), "the small pre-tokenizer here handles ASCII only"
        out = []
        for chunk in self.special_re.split(text):
            if not chunk:
                continue
            if chunk in self.ids and self.types[self.ids[chunk]] == 3:
                out.append(self.ids[chunk])
                continue
            # Digits are split one by one first, then the GPT-2 regex runs on the rest.
            for sub in re.split(r"([0-9])", chunk):
                if not sub:
                    continue
                for piece in self.piece_re.findall(sub):
                    out.extend(self._bpe(piece))
        return out

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if self.types[i] == 3:
                out.extend(t.encode("utf-8"))
            else:
                out.extend(self.u2b[c] for c in t)
        return out.decode("utf-8", errors="replace")


def dequant_f64(t):
    """Independent float64 dequantization from the raw GGUF blocks (rows x row_len)."""
    raw = np.asarray(t.data)
    name = t.tensor_type.name
    if name == "F32":
        return raw.astype(np.float64)
    if name == "Q8_0":
        blocks = raw.reshape(-1, 34)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float64)
        q = blocks[:, 2:34].copy().view(np.int8).astype(np.float64)
        return (d * q).reshape(raw.shape[0], -1)
    if name == "Q4_1":
        blocks = raw.reshape(-1, 20)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float64)
        m = blocks[:, 2:4].copy().view(np.float16).astype(np.float64)
        qs = blocks[:, 4:20]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)
        return (d * q + m).reshape(raw.shape[0], -1)
    raise ValueError(f"unexpected tensor type {name}")


def load_model(path):
    reader = GGUFReader(path)
    assert field_value(reader, "general.architecture") == "llama"
    cfg = {
        "n_layer": int(field_value(reader, "llama.block_count")),
        "d_model": int(field_value(reader, "llama.embedding_length")),
        "d_ff": int(field_value(reader, "llama.feed_forward_length")),
        "n_head": int(field_value(reader, "llama.attention.head_count")),
        "n_head_kv": int(field_value(reader, "llama.attention.head_count_kv")),
        "rope_base": float(field_value(reader, "llama.rope.freq_base")),
        "rope_dims": int(field_value(reader, "llama.rope.dimension_count")),
        "eps": float(field_value(reader, "llama.attention.layer_norm_rms_epsilon")),
        "vocab": int(field_value(reader, "llama.vocab_size")),
    }
    cfg["head_dim"] = cfg["d_model"] // cfg["n_head"]
    assert cfg["rope_dims"] == cfg["head_dim"]
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors, "expected a tied output head"
    counts = {}
    mism = 0
    weights = {}
    for name, t in tensors.items():
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        w64 = dequant_f64(t)
        ref = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        # gguf's float32 dequantization must equal the exact float64 values.
        mism += int(np.count_nonzero(ref.astype(np.float64) != w64))
        dims = [int(x) for x in t.shape]  # GGUF order: dims[0] = row length
        if len(dims) == 2:
            assert w64.shape == (dims[1], dims[0]), (name, w64.shape, dims)
        weights[name] = w64
    assert mism == 0, f"{mism} dequantized values differ between gguf and float64"
    vocab = Vocab(reader)
    return cfg, weights, counts, vocab


# ----------------------------------------------------------------------------- forward

class Model:
    def __init__(self, cfg, weights, dtype):
        self.cfg = cfg
        self.dtype = dtype
        c = lambda a: np.ascontiguousarray(a, dtype=dtype)
        self.emb = c(weights["token_embd.weight"])  # [vocab, d_model]
        self.out_norm = c(weights["output_norm.weight"])
        self.layers = []
        for l in range(cfg["n_layer"]):
            p = f"blk.{l}."
            self.layers.append({
                "attn_norm": c(weights[p + "attn_norm.weight"]),
                "ffn_norm": c(weights[p + "ffn_norm.weight"]),
                # Stored as [out, in] rows; keep transposed copies so x @ W works.
                "wq": c(weights[p + "attn_q.weight"].T),
                "wk": c(weights[p + "attn_k.weight"].T),
                "wv": c(weights[p + "attn_v.weight"].T),
                "wo": c(weights[p + "attn_output.weight"].T),
                "wg": c(weights[p + "ffn_gate.weight"].T),
                "wu": c(weights[p + "ffn_up.weight"].T),
                "wd": c(weights[p + "ffn_down.weight"].T),
            })
        self.eps = dtype(cfg["eps"])
        hd = cfg["head_dim"]
        self.inv_freq = cfg["rope_base"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)

    def new_cache(self):
        return {"n": 0, "k": [None] * self.cfg["n_layer"], "v": [None] * self.cfg["n_layer"]}

    def rmsnorm(self, x, w):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.eps)) * w

    def rope(self, x, pos, style):
        # x: [T, H, hd]; angles in float64, cos/sin rounded to the compute dtype.
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]  # [T, hd/2]
        cos = np.cos(ang).astype(self.dtype)[:, None, :]
        sin = np.sin(ang).astype(self.dtype)[:, None, :]
        hd = x.shape[-1]
        if style == "interleaved":
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = a * sin + b * cos
        elif style == "halves":
            a, b = x[..., : hd // 2], x[..., hd // 2:]
            out = np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        else:
            raise ValueError(style)
        return out

    def forward(self, ids, cache, style):
        """Runs len(ids) new tokens after the cache; returns logits [T, vocab]."""
        cfg = self.cfg
        dt = self.dtype
        T = len(ids)
        p0 = cache["n"]
        pos = np.arange(p0, p0 + T)
        H, Hkv, hd = cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"]
        kv_of = np.arange(H) // (H // Hkv)
        scale = dt(1.0 / np.sqrt(hd))
        S = p0 + T
        mask = np.arange(S)[None, :] > pos[:, None]  # [T, S] True = masked (future)
        x = self.emb[np.asarray(ids)]
        for l, L in enumerate(self.layers):
            h = self.rmsnorm(x, L["attn_norm"])
            q = (h @ L["wq"]).reshape(T, H, hd)
            k = (h @ L["wk"]).reshape(T, Hkv, hd)
            v = (h @ L["wv"]).reshape(T, Hkv, hd)
            q = self.rope(q, pos, style)
            k = self.rope(k, pos, style)
            if cache["k"][l] is not None:
                k = np.concatenate([cache["k"][l], k], axis=0)
                v = np.concatenate([cache["v"][l], v], axis=0)
            cache["k"][l], cache["v"][l] = k, v
            kk = k[:, kv_of, :]  # [S, H, hd]
            vv = v[:, kv_of, :]
            s = np.einsum("thd,shd->hts", q, kk) * scale  # [H, T, S]
            s = np.where(mask[None], dt(-np.inf), s)
            s = s - s.max(axis=-1, keepdims=True)
            e = np.exp(s)
            pr = e / e.sum(axis=-1, keepdims=True)
            o = np.einsum("hts,shd->thd", pr, vv).reshape(T, H * hd)
            x = x + o @ L["wo"]
            h = self.rmsnorm(x, L["ffn_norm"])
            g = h @ L["wg"]
            u = h @ L["wu"]
            with np.errstate(over="ignore"):
                act = g / (dt(1.0) + np.exp(-g))
            x = x + (act * u) @ L["wd"]
        cache["n"] = S
        h = self.rmsnorm(x, self.out_norm)
        return h @ self.emb.T

    def greedy(self, ids, steps, style):
        cache = self.new_cache()
        logits = self.forward(ids, cache, style)
        prompt_logits = logits
        gen, step_logits = [], []
        last = logits[-1]
        for i in range(steps):
            nxt = int(np.argmax(last))
            gen.append(nxt)
            step_logits.append(last)
            if i + 1 < steps:
                last = self.forward([nxt], cache, style)[-1]
        return prompt_logits, gen, step_logits


# ----------------------------------------------------------------------------- stats

def topk(v, k):
    # Highest logits first; equal logits by lower id.
    order = np.lexsort((np.arange(len(v)), -v))[:k]
    return [[int(i), float(v[i])] for i in order]


def top2_margin(v):
    a, b = topk(v, 2)
    return a[1] - b[1]


def logsumexp(v):
    m = np.max(v)
    return float(m + np.log(np.sum(np.exp(v - m))))


def entropy_nats(v):
    p = np.exp(v - logsumexp(v))
    return float(-np.sum(p * np.log(np.maximum(p, 1e-300))))


def compact_json(doc):
    """Indented JSON with every list of numbers (or of such lists) kept on one line."""
    text = json.dumps(doc, indent=1)
    flat = re.compile(r"\[[^\[\]{}\"]*\]")
    nested = re.compile(r"\[\s*(\[[^\[\]{}\"]*\]\s*,?\s*)+\]")
    squash = lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", ")
    text = flat.sub(squash, text)
    return nested.sub(squash, text)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    t_start = time.time()
    sha = sha256_file(args.model)
    if sha != MODEL_SHA256:
        sys.exit(f"model sha256 {sha} != expected {MODEL_SHA256}")
    cfg, weights, counts, vocab = load_model(args.model)
    print(f"loaded {args.model}: {cfg}, tensor types {counts} ({time.time() - t_start:.1f}s)")
    m64 = Model(cfg, weights, np.float64)
    m32 = Model(cfg, weights, np.float32)
    del weights

    prompts = []
    for name, text, bos in PROMPTS:
        ids = ([vocab.bos] if bos else []) + vocab.encode(text)
        prompts.append((name, text, bos, ids))
        print(f"prompt {name}: {len(ids)} tokens")

    # RoPE style check on the ChatML question.
    rope_check = {}
    chat_ids = prompts[0][3]
    for style in ("interleaved", "halves"):
        pl, gen, steps = m64.greedy(chat_ids, GREEDY_STEPS, style)
        ent = [entropy_nats(v) for v in steps]
        pmax = [float(np.exp(np.max(v) - logsumexp(v))) for v in steps]
        rope_check[style] = {
            "greedy_ids": gen,
            "greedy_text": vocab.decode(gen),
            "next_token_entropy_nats": ent[0],
            "next_token_max_prob": pmax[0],
            "mean_entropy_nats_over_greedy_steps": float(np.mean(ent)),
            "mean_max_prob_over_greedy_steps": float(np.mean(pmax)),
        }
        print(f"rope {style}: {vocab.decode(gen)!r} entropy {ent[0]:.3f} "
              f"pmax {pmax[0]:.3f} mean entropy {np.mean(ent):.3f}")
    other = "halves" if ROPE_STYLE == "interleaved" else "interleaved"
    if rope_check[ROPE_STYLE]["mean_entropy_nats_over_greedy_steps"] >= \
            rope_check[other]["mean_entropy_nats_over_greedy_steps"]:
        print(f"WARNING: RoPE style {ROPE_STYLE} is not the sharper one", file=sys.stderr)
    rope_check["chosen"] = ROPE_STYLE
    rope_check["prompt"] = prompts[0][0]

    logit_ids = list(range(0, cfg["vocab"], LOGIT_ID_STRIDE))
    out_prompts = []
    for name, text, bos, ids in prompts:
        t0 = time.time()
        pl, gen, steps = m64.greedy(ids, GREEDY_STEPS, ROPE_STYLE)
        # Full re-run of prompt + continuation without a cache.
        full = m64.forward(ids + gen[:-1], m64.new_cache(), ROPE_STYLE)
        rerun_diff = max(float(np.max(np.abs(full[:len(ids)] - pl))),
                         float(np.max(np.abs(full[len(ids) - 1:] - np.stack(steps)))))
        assert [int(np.argmax(r)) for r in full[len(ids) - 1:]] == gen
        last = pl[-1]
        # float32 pass.
        pl32, gen32, _ = m32.greedy(ids, GREEDY_STEPS, ROPE_STYLE)
        d = np.abs(pl32[-1].astype(np.float64) - last)
        all_d = np.abs(pl32.astype(np.float64) - pl)
        f32 = {
            "last_max_abs_diff": float(np.max(d)),
            "last_max_rel_diff": float(np.max(d / np.maximum(np.abs(last), 1.0))),
            "last_max_abs_diff_over_max_abs_logit": float(np.max(d) / np.max(np.abs(last))),
            "all_positions_max_abs_diff": float(np.max(all_d)),
            "argmax_agrees_all_positions": bool(np.all(np.argmax(pl32, axis=1) == np.argmax(pl, axis=1))),
            "greedy_ids_agree": gen32 == gen,
        }
        entry = {
            "name": name,
            "text": text,
            "bos_prepended": bos,
            "n_tokens": len(ids),
            "ids": ids,
            "positions": [{"argmax": int(np.argmax(v)), "top8": topk(v, TOPK)} for v in pl],
            "min_top1_top2_margin_over_positions": min(top2_margin(v) for v in pl),
            "last": {
                "logits_at_ids": [float(last[i]) for i in logit_ids],
                "max": float(np.max(last)),
                "mean": float(np.mean(last)),
                "std": float(np.std(last)),
                "logsumexp": logsumexp(last),
            },
            "greedy": {
                "steps": GREEDY_STEPS,
                "ids": gen,
                "text": vocab.decode(gen),
                "top2_per_step": [topk(v, 2) for v in steps],
                "min_top1_top2_margin": min(top2_margin(v) for v in steps),
                "stops_at_eos": False,
                "kv_cache_vs_full_rerun_max_abs_diff": rerun_diff,
            },
            "f32_vs_f64": f32,
        }
        out_prompts.append(entry)
        print(f"{name}: {len(ids)} tok, greedy {vocab.decode(gen)!r}, rerun diff {rerun_diff:.2e}, "
              f"f32 max abs {f32['last_max_abs_diff']:.3e} rel {f32['last_max_rel_diff']:.3e} "
              f"({time.time() - t0:.1f}s)")

    doc = {
        "model": {
            "file": os.path.basename(args.model),
            "sha256": sha,
            "architecture": "llama",
            "n_layer": cfg["n_layer"],
            "d_model": cfg["d_model"],
            "d_ff": cfg["d_ff"],
            "n_head": cfg["n_head"],
            "n_head_kv": cfg["n_head_kv"],
            "head_dim": cfg["head_dim"],
            "vocab": cfg["vocab"],
            "tensor_types": counts,
            "tied_output": True,
        },
        "rope_style": ROPE_STYLE,
        "rope_style_meaning": "interleaved: pairs (x[2i], x[2i+1]) of each head rotated by pos*base^(-2i/head_dim) (GPT-J / llama.cpp NORM); halves would be pairs (x[i], x[i+head_dim/2]) (NeoX)",
        "rope_base": cfg["rope_base"],
        "rms_eps": cfg["eps"],
        "attn_scale": 1.0 / float(np.sqrt(cfg["head_dim"])),
        "gqa": "query head h uses KV head h // (n_head / n_head_kv)",
        "dims_order": "GGUF dims[0] is the row length; a [out, in] matrix has GGUF dims [in, out]",
        "precision": "float64 from exactly dequantized weights; softmax in float64",
        "produced_by": "~/.cache/gonka/venv/bin/python tools/reference/smollm2_reference.py (gguf==0.19.0, numpy " + np.__version__ + ")",
        "logit_ids": {"start": 0, "stride": LOGIT_ID_STRIDE, "count": len(logit_ids),
                       "meaning": "last.logits_at_ids[j] is the logit of id j*stride"},
        "f32_vs_f64_meaning": "float32 pass (weights cast to f32, matmuls/norms/softmax in f32) against float64: last_max_rel_diff = max |d_i| / max(|ref_i|, 1)",
        "rope_check": rope_check,
        "prompts": out_prompts,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(compact_json(doc) + "\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main()
