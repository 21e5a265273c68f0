#!/usr/bin/env python3
"""Reference measurement of llama.cpp (through llama-cpp-python) on our GGUF file.

Run it with the python of the venv that benches/reference/setup-llama-cpp.sh
creates. It prints ONE JSON object on stdout; progress goes to stderr.

    PY=$(benches/reference/setup-llama-cpp.sh)
    $PY benches/reference/llama_cpp_bench.py                 # full bench
    $PY benches/reference/llama_cpp_bench.py --quick         # smoke test
    $PY benches/reference/llama_cpp_bench.py --logits-check  # only the golden comparison

Everything goes through the low-level C API (llama_decode on an explicit
llama_batch), not the high-level Llama class, so that each timed region is
exactly one llama_decode call (plus llama_synchronize, so that no work is left
in flight when the clock stops) and nothing else: no sampler chain, no Python
token bookkeeping. The figures:

- decode_tokens_per_s (batch 1): after a short chat prompt (16 tokens, prefilled
  untimed), N greedy steps, each one llama_decode of a batch holding 1 token
  with its logits requested. tokens/s = N / (sum of the N decode times). The
  greedy choice (numpy argmax over the logits) is outside the timed region; the
  same loop timed end to end (batch fill + decode + argmax) is reported as
  decode_with_sampling_tokens_per_s.
- prefill_tokens_per_s: one llama_decode of P tokens (logits for the last one
  only) into an empty KV cache; P / time.
- ttft_ms: an empty KV cache, then one llama_decode of a ~64 token prompt and the
  argmax of its last logits, timed together.
- batched decode (optional, --batch-seqs): n_seq sequences with distinct seq ids
  in one context; their prompts are prefilled untimed in one batch, then each
  step is one llama_decode of n_seq tokens (one per sequence, all with logits).
  aggregate tokens/s = n_seq * N / (sum of the decode times).

Each measurement is repeated R times (KV cache cleared in between) after one
untimed warm-up; the JSON has the median, min, max and every run.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import llama_cpp
import llama_cpp.llama_cpp as ll

from bench_common import (  # noqa: E402
    CHAT_IDS, CHAT_NAME, FILLER, common_parser, cpu_snapshot, log,
    other_load, parse_common, summary,
)


# ---------------------------------------------------------------- llama.cpp glue

_LOG_LEVELS = {"none": 0, "debug": 1, "info": 2, "warn": 3, "error": 4, "cont": 5}


def quiet_llama_logs(verbose: bool):
    """Drop llama.cpp's info/debug chatter unless --verbose (warnings and errors stay)."""
    min_level = _LOG_LEVELS["warn"]
    last = {"level": 0}

    @ll.llama_log_callback
    def cb(level, text, user_data):
        if level != _LOG_LEVELS["cont"]:
            last["level"] = level
        if verbose or last["level"] >= min_level:
            sys.stderr.write(text.decode("utf-8", "replace"))

    ll.llama_log_set(cb, ctypes.c_void_p(0))
    return cb  # keep a reference: the C side holds the pointer


class Model:
    def __init__(self, path: str):
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = ll.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            raise SystemExit(f"failed to load {path}")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)

    def desc(self) -> str:
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.model, buf, len(buf))
        return buf.value.decode()

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        raw = text.encode()
        cap = len(raw) + 16
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            raise RuntimeError("tokenize: buffer too small")
        return list(buf[:n])


class Context:
    """One llama_context plus a reusable llama_batch."""

    def __init__(self, model: Model, n_ctx: int, n_threads: int, n_seq_max: int = 1,
                 kv_unified: bool = False, n_batch: int = 2048, n_ubatch: int = 512):
        cp = ll.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_ubatch
        cp.n_seq_max = n_seq_max
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.kv_unified = kv_unified
        cp.no_perf = True
        self.params = {
            "n_ctx": n_ctx, "n_batch": n_batch, "n_ubatch": n_ubatch, "n_seq_max": n_seq_max,
            "kv_unified": kv_unified, "n_threads": n_threads, "n_threads_batch": n_threads,
            "type_k": "f16", "type_v": "f16", "flash_attn_type": "auto",
        }
        self.model = model
        self.ctx = ll.llama_init_from_model(model.model, cp)
        if not self.ctx:
            raise SystemExit("failed to create a llama context")
        self.n_ctx = ll.llama_n_ctx(self.ctx)
        self.mem = ll.llama_get_memory(self.ctx)
        self.cap = n_batch
        self.batch = ll.llama_batch_init(n_batch, 0, 1)

    def close(self):
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)

    def clear(self):
        ll.llama_memory_clear(self.mem, True)

    def fill(self, tokens, positions, seqs, want_logits):
        """Fills the batch: token i at positions[i] in sequence seqs[i]."""
        b = self.batch
        n = len(tokens)
        assert n <= self.cap
        for i in range(n):
            b.token[i] = tokens[i]
            b.pos[i] = positions[i]
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seqs[i]
            b.logits[i] = 1 if want_logits[i] else 0
        b.n_tokens = n

    def decode(self):
        rc = ll.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        ll.llama_synchronize(self.ctx)

    def logits(self, i: int) -> np.ndarray:
        """Logits of the i-th token of the last batch (it must have asked for them)."""
        p = ll.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(p, shape=(self.model.n_vocab,))

    def logits_rows(self, n: int) -> np.ndarray:
        """Logits of the last batch's n outputs, in batch order (all tokens had logits on)."""
        p = ll.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(p, shape=(n, self.model.n_vocab))

    def prefill(self, ids, seq=0, start=0, logits_all=False):
        n = len(ids)
        self.fill(ids, range(start, start + n), [seq] * n,
                  [True] * n if logits_all else [False] * (n - 1) + [True])
        self.decode()


# ---------------------------------------------------------------- measurements

def bench_decode(ctx: Context, n_tokens: int):
    """One greedy generation of n_tokens after CHAT_IDS; returns (decode_s, loop_s, ids)."""
    ctx.clear()
    ctx.prefill(CHAT_IDS)
    tok = int(np.argmax(ctx.logits(len(CHAT_IDS) - 1)))
    pos = len(CHAT_IDS)
    out = [tok]
    decode_s = 0.0
    loop0 = time.perf_counter()
    for _ in range(n_tokens):
        ctx.fill([tok], [pos], [0], [True])
        t0 = time.perf_counter()
        ctx.decode()
        decode_s += time.perf_counter() - t0
        tok = int(np.argmax(ctx.logits(0)))
        out.append(tok)
        pos += 1
    loop_s = time.perf_counter() - loop0
    return decode_s, loop_s, out


def bench_prefill(ctx: Context, ids):
    ctx.clear()
    ctx.fill(ids, range(len(ids)), [0] * len(ids), [False] * (len(ids) - 1) + [True])
    t0 = time.perf_counter()
    ctx.decode()
    return time.perf_counter() - t0


def bench_ttft(ctx: Context, ids):
    ctx.clear()
    t0 = time.perf_counter()
    ctx.fill(ids, range(len(ids)), [0] * len(ids), [False] * (len(ids) - 1) + [True])
    ctx.decode()
    int(np.argmax(ctx.logits(len(ids) - 1)))
    return time.perf_counter() - t0


def bench_batched(ctx: Context, n_seq: int, n_tokens: int):
    """n_seq sequences, one token each per llama_decode; returns (decode_s, loop_s)."""
    ctx.clear()
    p = len(CHAT_IDS)
    # All prompts in one untimed batch, sequence s holding CHAT_IDS at positions 0..p-1.
    ctx.fill(CHAT_IDS * n_seq, list(range(p)) * n_seq,
             [s for s in range(n_seq) for _ in range(p)],
             [i == p - 1 for _ in range(n_seq) for i in range(p)])
    ctx.decode()
    toks = [int(np.argmax(ctx.logits(s * p + p - 1))) for s in range(n_seq)]
    pos = p
    seqs = list(range(n_seq))
    every = [True] * n_seq
    decode_s = 0.0
    loop0 = time.perf_counter()
    for _ in range(n_tokens):
        ctx.fill(toks, [pos] * n_seq, seqs, every)
        t0 = time.perf_counter()
        ctx.decode()
        decode_s += time.perf_counter() - t0
        toks = ctx.logits_rows(n_seq).argmax(axis=1).tolist()
        pos += 1
    return decode_s, time.perf_counter() - loop0


def prompt_ids(model: Model, n: int) -> list[int]:
    """BOS followed by FILLER's tokens (repeated), n tokens in all."""
    body = model.tokenize(FILLER, add_special=False, parse_special=False)
    bos = ll.llama_vocab_bos(model.vocab)
    ids = [bos]
    while len(ids) < n:
        ids.extend(body)
    return ids[:n]


# ---------------------------------------------------------------- logits check

def logits_check(model: Model, n_threads: int, golden_path: Path) -> dict:
    ctx = Context(model, 2048, n_threads)
    try:
        ctx.clear()
        ctx.prefill(CHAT_IDS, logits_all=True)
        rows = np.stack([ctx.logits(i).astype(np.float64) for i in range(len(CHAT_IDS))])
        # Greedy continuation, 16 steps (as many as the golden file lists at most).
        greedy = []
        tok = int(rows[-1].argmax())
        pos = len(CHAT_IDS)
        for _ in range(16):
            greedy.append(tok)
            ctx.fill([tok], [pos], [0], [True])
            ctx.decode()
            tok = int(np.argmax(ctx.logits(0)))
            pos += 1
    finally:
        ctx.close()

    last = rows[-1]
    top5 = np.argsort(-last)[:5]
    res = {
        "prompt": CHAT_NAME,
        "ids": CHAT_IDS,
        "last_top5": [[int(i), float(last[i])] for i in top5],
        "argmax_per_position": [int(r.argmax()) for r in rows],
        "greedy_ids": greedy,
    }
    if not golden_path.is_file():
        res["golden"] = f"not found: {golden_path}"
        return res

    gold = json.loads(golden_path.read_text())
    g = next(p for p in gold["prompts"] if p["name"] == CHAT_NAME)
    assert g["ids"] == CHAT_IDS, "golden prompt ids differ from CHAT_IDS"
    chat_text_ids = model.tokenize(g["text"], add_special=False, parse_special=True)
    per_pos = []
    for i, gp in enumerate(g["positions"]):
        diffs = [abs(rows[i][tid] - glogit) for tid, glogit in gp["top8"]]
        per_pos.append({
            "pos": i,
            "max_abs_diff_top8": max(diffs),
            "argmax": int(rows[i].argmax()),
            "golden_argmax": gp["argmax"],
            "golden_top1_top2_margin": gp["top8"][0][1] - gp["top8"][1][1],
        })
    n_greedy = min(len(greedy), len(g["greedy"]["ids"]))
    lg = g["last"]["logits_at_ids"]
    stride, start = gold["logit_ids"]["stride"], gold["logit_ids"]["start"]
    sampled = [abs(last[start + j * stride] - v) for j, v in enumerate(lg)]
    max_top8 = max(p["max_abs_diff_top8"] for p in per_pos)
    max_logit = max(abs(l) for gp in g["positions"] for _, l in gp["top8"])
    res["golden"] = {
        "file": str(golden_path),
        "tokenizer_ids_match": chat_text_ids == CHAT_IDS,
        "max_abs_diff_top8_all_positions": max_top8,
        "max_abs_diff_top8_over_max_abs_logit": max_top8 / max_logit,
        "mean_abs_diff_top8_all_positions": float(np.mean(
            [abs(rows[i][tid] - gl) for i, gp in enumerate(g["positions"]) for tid, gl in gp["top8"]])),
        "max_abs_diff_last_sampled_ids": max(sampled),
        "n_sampled_ids_last": len(sampled),
        "argmax_agrees_positions": sum(p["argmax"] == p["golden_argmax"] for p in per_pos),
        "n_positions": len(per_pos),
        "greedy_agrees_steps": next(
            (k for k in range(n_greedy) if greedy[k] != g["greedy"]["ids"][k]), n_greedy),
        "greedy_steps_compared": n_greedy,
        "golden_greedy_ids": g["greedy"]["ids"][:n_greedy],
        "golden_min_top1_top2_margin": g["min_top1_top2_margin_over_positions"],
        "per_position": per_pos,
    }
    return res


# ---------------------------------------------------------------- main

def main():
    ap = common_parser(__doc__)
    ap.add_argument("--kv-unified", action="store_true",
                    help="batched decode: one unified KV buffer for all sequences "
                         "(default: llama.cpp's default, a KV stream per sequence)")
    ap.add_argument("--verbose", action="store_true", help="let llama.cpp log everything")
    args = parse_common(ap)
    batch_seqs = args.batch_seqs

    _keep = quiet_llama_logs(args.verbose)  # noqa: F841
    snap0 = cpu_snapshot()
    ll.llama_backend_init()
    model_path = os.path.abspath(args.model)
    if not os.path.isfile(model_path):
        raise SystemExit(f"model not found: {model_path} (tools/fetch-model.sh fetches it)")
    log(f"loading {model_path}")
    model = Model(model_path)

    result = {
        "engine": "llama.cpp",
        "llama_cpp_python_version": llama_cpp.__version__,
        "system_info": ll.llama_print_system_info().decode().strip(),
        "n_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "model": {
            "path": model_path,
            "file_bytes": os.path.getsize(model_path),
            "desc": model.desc(),
            "n_params": ll.llama_model_n_params(model.model),
            "tensor_bytes": ll.llama_model_size(model.model),
            "n_vocab": model.n_vocab,
        },
    }

    if args.logits_check:
        lc = result["logits_check"] = logits_check(model, args.threads, Path(args.golden))
        log("last position top-5:", ", ".join(f"{i}:{v:.4f}" for i, v in lc["last_top5"]))
        log("argmax per position:", lc["argmax_per_position"])
        if isinstance(lc["golden"], dict):
            gd = lc["golden"]
            log(f"vs golden: max |diff| over top-8 = {gd['max_abs_diff_top8_all_positions']:.4f}, "
                f"argmax agrees at {gd['argmax_agrees_positions']}/{gd['n_positions']} positions, "
                f"greedy agrees for {gd['greedy_agrees_steps']}/{gd['greedy_steps_compared']} steps")
        print(json.dumps(result, indent=1))
        return

    result["params"] = {
        "tokens": args.tokens, "prompt_tokens": args.prompt_tokens,
        "ttft_tokens": args.ttft_tokens, "runs": args.runs, "quick": args.quick,
        "decode_prompt_tokens": len(CHAT_IDS), "batch_seqs": batch_seqs,
        "batch_tokens": args.batch_tokens, "kv_unified": args.kv_unified,
        "sampling": "greedy (numpy argmax), outside the timed decode region",
    }
    n_ctx = 2048
    if len(CHAT_IDS) + args.tokens + 1 > n_ctx or max(args.prompt_tokens, args.ttft_tokens) > n_ctx:
        raise SystemExit("prompt + tokens exceed the context (2048)")

    ctx = Context(model, n_ctx, args.threads)
    result["context"] = ctx.params | {"n_ctx_actual": ctx.n_ctx}
    prefill_ids = prompt_ids(model, args.prompt_tokens)
    ttft_ids = prompt_ids(model, args.ttft_tokens)

    log("warm-up")
    bench_decode(ctx, min(16, args.tokens))
    bench_prefill(ctx, prefill_ids)

    log(f"decode: {args.runs} x {args.tokens} tokens at batch 1")
    dec, dec_loop, greedy = [], [], None
    for r in range(args.runs):
        d, l, ids = bench_decode(ctx, args.tokens)
        dec.append(args.tokens / d)
        dec_loop.append(args.tokens / l)
        greedy = greedy or ids
        log(f"  run {r}: {dec[-1]:.1f} tok/s ({1000 * d / args.tokens:.2f} ms/token)")
    result["decode_tokens_per_s"] = summary(dec)
    result["decode_ms_per_token"] = summary([1000 / x for x in dec])
    result["decode_with_sampling_tokens_per_s"] = summary(dec_loop)
    result["decode_greedy_ids_first_32"] = greedy[:32]

    log(f"prefill: {args.runs} x {args.prompt_tokens} tokens")
    pf = []
    for r in range(args.runs):
        s = bench_prefill(ctx, prefill_ids)
        pf.append(args.prompt_tokens / s)
        log(f"  run {r}: {pf[-1]:.1f} tok/s ({1000 * s:.1f} ms)")
    result["prefill_tokens_per_s"] = summary(pf)

    log(f"ttft: {args.runs} x {args.ttft_tokens}-token prompt")
    tt = []
    for r in range(args.runs):
        tt.append(1000 * bench_ttft(ctx, ttft_ids))
        log(f"  run {r}: {tt[-1]:.1f} ms")
    result["ttft_ms"] = summary(tt)
    ctx.close()

    batched = {}
    for n_seq in batch_seqs:
        per_seq = len(CHAT_IDS) + args.batch_tokens + 1
        per_seq = (per_seq + 255) // 256 * 256
        bctx = Context(model, n_seq * per_seq, args.threads, n_seq_max=n_seq,
                       kv_unified=args.kv_unified,
                       n_batch=max(2048, n_seq * len(CHAT_IDS)))
        log(f"batched decode: n_seq {n_seq}, {args.runs} x {args.batch_tokens} steps")
        bench_batched(bctx, n_seq, min(8, args.batch_tokens))  # warm-up
        agg, agg_loop = [], []
        for r in range(args.runs):
            d, l = bench_batched(bctx, n_seq, args.batch_tokens)
            agg.append(n_seq * args.batch_tokens / d)
            agg_loop.append(n_seq * args.batch_tokens / l)
            log(f"  run {r}: {agg[-1]:.1f} tok/s aggregate ({1000 * d / args.batch_tokens:.1f} ms/step)")
        batched[str(n_seq)] = {
            "aggregate_tokens_per_s": summary(agg),
            "aggregate_with_sampling_tokens_per_s": summary(agg_loop),
            "ms_per_step": summary([1000 * n_seq / x for x in agg]),
            "context": bctx.params | {"n_ctx_actual": bctx.n_ctx},
        }
        bctx.close()
    if batched:
        result["batched_decode"] = batched

    result["logits_check"] = logits_check(model, args.threads, Path(args.golden))
    result["loadavg_end"] = list(os.getloadavg())
    # Other processes competing for the cores lower every figure (llama.cpp's
    # threads spin-wait at each op's barrier, so a preempted thread stalls all).
    result["cpu_during_run"] = other_load(snap0, cpu_snapshot())
    ll.llama_model_free(model.model)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
