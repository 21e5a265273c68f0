#!/usr/bin/env python3
"""Reference measurement of Hugging Face transformers (PyTorch, CPU) on our GGUF file.

Run it with the python of the venv that benches/reference/setup-transformers.sh
creates. It prints ONE JSON object on stdout, with the keys that
llama_cpp_bench.py prints; progress goes to stderr.

    PY=$(benches/reference/setup-transformers.sh)
    $PY benches/reference/transformers_bench.py                 # full bench
    $PY benches/reference/transformers_bench.py --quick         # smoke test
    $PY benches/reference/transformers_bench.py --logits-check  # only the golden comparison

transformers reads the GGUF file itself (`from_pretrained(dir, gguf_file=name)`)
and dequantizes every tensor (Q4_1 matrices, Q8_0 embeddings) to float32, so
this is a dense float32 LlamaForCausalLM running on torch's CPU kernels (MKL /
oneDNN matmuls, SDPA attention): the model an ordinary PyTorch user gets from
this file, not a quantized engine. Every timed region is one forward call of
the model under torch.inference_mode with a DynamicCache (past_key_values):

- decode_tokens_per_s (batch 1): after the 16-token chat prompt (prefilled
  untimed), N greedy steps, each one forward of 1 token; N / (sum of the N
  forward times). The argmax is outside the timed region; the same loop timed
  end to end is decode_with_sampling_tokens_per_s, and one model.generate
  (greedy, max_new_tokens = N, no EOS id so it never stops early) timed end
  to end, prompt included, is decode_generate_tokens_per_s.
- prefill_tokens_per_s: one forward of P tokens into an empty cache, logits for
  the last position only (logits_to_keep=1); P / time.
- ttft_ms: an empty cache, one forward of a 64-token prompt and the argmax of
  its last logits, timed together.
- batched decode (--batch-seqs): n_seq copies of the chat prompt as one batch
  (same length, so no padding), prefilled untimed, then each step one forward
  of n_seq tokens; aggregate tokens/s = n_seq * N / (sum of the forward times).

Each measurement is repeated R times (a fresh cache each time) after one
untimed warm-up; the JSON has the median, min, max and every run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# The model is a local file: never ask the Hub for anything. The loader's
# per-tensor progress bar (plain tqdm) would only clutter stderr.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache  # noqa: E402

from bench_common import (  # noqa: E402
    CHAT_IDS, CHAT_NAME, FILLER, common_parser, cpu_snapshot, log,
    other_load, parse_common, summary,
)


# ---------------------------------------------------------------- model glue

class Model:
    def __init__(self, path: str):
        d, name = os.path.split(path)
        t0 = time.perf_counter()
        self.tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        self.lm = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
        self.lm.eval()
        self.load_s = time.perf_counter() - t0

    def forward(self, ids: torch.Tensor, cache: DynamicCache, keep: int = 1) -> torch.Tensor:
        """Logits [batch, keep, vocab] of the last `keep` positions (0: all)."""
        return self.lm(input_ids=ids, cache=cache, use_cache=True,
                       logits_to_keep=keep).logits

    def prompt_ids(self, n: int) -> list[int]:
        """BOS followed by FILLER's tokens (repeated), n tokens in all."""
        body = self.tok(FILLER, add_special_tokens=False).input_ids
        ids = [self.tok.bos_token_id]
        while len(ids) < n:
            ids.extend(body)
        return ids[:n]


def row(ids) -> torch.Tensor:
    return torch.tensor([ids], dtype=torch.long)


# ---------------------------------------------------------------- measurements

def bench_decode(m: Model, n_tokens: int):
    """One greedy generation of n_tokens after CHAT_IDS; returns (forward_s, loop_s, ids)."""
    cache = DynamicCache()
    tok = int(m.forward(row(CHAT_IDS), cache)[0, -1].argmax())
    out = [tok]
    forward_s = 0.0
    loop0 = time.perf_counter()
    for _ in range(n_tokens):
        x = row([tok])
        t0 = time.perf_counter()
        logits = m.forward(x, cache)
        forward_s += time.perf_counter() - t0
        tok = int(logits[0, -1].argmax())
        out.append(tok)
    return forward_s, time.perf_counter() - loop0, out


def bench_generate(m: Model, n_tokens: int):
    """model.generate, greedy, exactly n_tokens new tokens; returns (seconds, ids)."""
    # An empty list of end-of-sequence ids, rather than min_new_tokens:
    # min_new_tokens keeps the run going by masking <|im_end|>, which changes
    # the greedy ids (this prompt's answer ends after 8 tokens); with no EOS id
    # generate runs to max_new_tokens with the same ids as the decode loop.
    # (eos_token_id=None would fall back to the model's own, 2.)
    x = row(CHAT_IDS)
    t0 = time.perf_counter()
    out = m.lm.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                        max_new_tokens=n_tokens, eos_token_id=[],
                        pad_token_id=m.tok.pad_token_id)
    return time.perf_counter() - t0, out[0, len(CHAT_IDS):].tolist()


def bench_prefill(m: Model, ids: list[int]):
    x = row(ids)
    cache = DynamicCache()
    t0 = time.perf_counter()
    m.forward(x, cache)
    return time.perf_counter() - t0


def bench_ttft(m: Model, ids: list[int]):
    x = row(ids)
    cache = DynamicCache()
    t0 = time.perf_counter()
    int(m.forward(x, cache)[0, -1].argmax())
    return time.perf_counter() - t0


def bench_batched(m: Model, n_seq: int, n_tokens: int):
    """n_seq sequences, one token each per forward; returns (forward_s, loop_s)."""
    cache = DynamicCache()
    toks = m.forward(torch.tensor([CHAT_IDS] * n_seq), cache)[:, -1].argmax(-1)
    forward_s = 0.0
    loop0 = time.perf_counter()
    for _ in range(n_tokens):
        x = toks.view(n_seq, 1)
        t0 = time.perf_counter()
        logits = m.forward(x, cache)
        forward_s += time.perf_counter() - t0
        toks = logits[:, -1].argmax(-1)
    return forward_s, time.perf_counter() - loop0


# ---------------------------------------------------------------- logits check

def logits_check(m: Model, golden_path: Path) -> dict:
    """The golden prompt's logits at every position and 16 greedy ids, against the golden file."""
    cache = DynamicCache()
    rows = m.forward(row(CHAT_IDS), cache, keep=0)[0].double()
    greedy, tok = [], int(rows[-1].argmax())
    for _ in range(16):
        greedy.append(tok)
        tok = int(m.forward(row([tok]), cache)[0, -1].argmax())
    last = rows[-1]
    top5 = torch.argsort(last, descending=True)[:5].tolist()
    res = {
        "prompt": CHAT_NAME,
        "ids": CHAT_IDS,
        "last_top5": [[i, float(last[i])] for i in top5],
        "argmax_per_position": rows.argmax(-1).tolist(),
        "greedy_ids": greedy,
        "tokenizer_ids_match": m.tok(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            add_special_tokens=False).input_ids == CHAT_IDS,
    }
    if not golden_path.is_file():
        res["golden"] = f"not found: {golden_path}"
        return res
    gold = json.loads(golden_path.read_text())
    g = next(p for p in gold["prompts"] if p["name"] == CHAT_NAME)
    assert g["ids"] == CHAT_IDS, "golden prompt ids differ from CHAT_IDS"
    diffs = [[abs(float(rows[i][tid]) - gl) for tid, gl in gp["top8"]]
             for i, gp in enumerate(g["positions"])]
    argmax = rows.argmax(-1).tolist()
    gold_greedy = g["greedy"]["ids"]
    n_greedy = min(len(greedy), len(gold_greedy))
    max_logit = max(abs(gl) for gp in g["positions"] for _, gl in gp["top8"])
    res["golden"] = {
        "file": str(golden_path),
        "max_abs_diff_top8_all_positions": max(max(d) for d in diffs),
        "max_abs_diff_top8_over_max_abs_logit": max(max(d) for d in diffs) / max_logit,
        "mean_abs_diff_top8_all_positions": statistics.fmean(x for d in diffs for x in d),
        "argmax_agrees_positions": sum(a == gp["argmax"] for a, gp in zip(argmax, g["positions"])),
        "n_positions": len(g["positions"]),
        "greedy_agrees_steps": next(
            (k for k in range(n_greedy) if greedy[k] != gold_greedy[k]), n_greedy),
        "greedy_steps_compared": n_greedy,
        "golden_greedy_ids": gold_greedy[:n_greedy],
    }
    return res


# ---------------------------------------------------------------- main

def parse_args():
    ap = common_parser(__doc__, "torch.set_num_threads (default: os.cpu_count(), as llama_cpp_bench.py)")
    ap.add_argument("--no-generate", action="store_true", help="skip the model.generate timing")
    return parse_common(ap)


def run_repeated(runs: int, fn, unit: str):
    """Calls fn() `runs` times, logging each value; returns the list of values."""
    out = []
    for r in range(runs):
        out.append(fn())
        log(f"  run {r}: {out[-1]:.1f} {unit}")
    return out


def measure(m: Model, args, result: dict):
    n = args.tokens
    log("warm-up")
    bench_decode(m, min(16, n))
    prefill_ids = m.prompt_ids(args.prompt_tokens)
    ttft_ids = m.prompt_ids(args.ttft_tokens)
    bench_prefill(m, prefill_ids)

    log(f"decode: {args.runs} x {n} tokens at batch 1")
    dec, dec_loop, greedy = [], [], None
    for r in range(args.runs):
        d, lp, ids = bench_decode(m, n)
        dec.append(n / d)
        dec_loop.append(n / lp)
        greedy = greedy or ids
        log(f"  run {r}: {dec[-1]:.1f} tok/s ({1000 * d / n:.2f} ms/token)")
    result["decode_tokens_per_s"] = summary(dec)
    result["decode_ms_per_token"] = summary([1000 / x for x in dec])
    result["decode_with_sampling_tokens_per_s"] = summary(dec_loop)
    result["decode_greedy_ids_first_32"] = greedy[:32]

    if not args.no_generate:
        log(f"model.generate: {args.runs} x {n} new tokens, greedy")
        bench_generate(m, min(16, n))  # warm-up: generate's first call sets itself up slowly
        gen = []
        for r in range(args.runs):
            s, ids = bench_generate(m, n)
            gen.append(n / s)
            log(f"  run {r}: {gen[-1]:.1f} tok/s, ids agree with the decode loop: "
                f"{ids == greedy[:n]}")
        result["decode_generate_tokens_per_s"] = summary(gen)
        result["generate_ids_match_decode_loop"] = ids == greedy[:n]

    log(f"prefill: {args.runs} x {args.prompt_tokens} tokens")
    result["prefill_tokens_per_s"] = summary(run_repeated(
        args.runs, lambda: args.prompt_tokens / bench_prefill(m, prefill_ids), "tok/s"))
    log(f"ttft: {args.runs} x {args.ttft_tokens}-token prompt")
    result["ttft_ms"] = summary(run_repeated(
        args.runs, lambda: 1000 * bench_ttft(m, ttft_ids), "ms"))

    batched = {}
    for n_seq in args.batch_seqs:
        bt = args.batch_tokens
        log(f"batched decode: n_seq {n_seq}, {args.runs} x {bt} steps")
        bench_batched(m, n_seq, min(8, bt))  # warm-up
        agg, agg_loop = [], []
        for r in range(args.runs):
            d, lp = bench_batched(m, n_seq, bt)
            agg.append(n_seq * bt / d)
            agg_loop.append(n_seq * bt / lp)
            log(f"  run {r}: {agg[-1]:.1f} tok/s aggregate ({1000 * d / bt:.1f} ms/step)")
        batched[str(n_seq)] = {
            "aggregate_tokens_per_s": summary(agg),
            "aggregate_with_sampling_tokens_per_s": summary(agg_loop),
            "ms_per_step": summary([1000 * n_seq / x for x in agg]),
        }
    if batched:
        result["batched_decode"] = batched


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    snap0 = cpu_snapshot()
    model_path = os.path.abspath(args.model)
    if not os.path.isfile(model_path):
        raise SystemExit(f"model not found: {model_path} (tools/fetch-model.sh fetches it)")
    log(f"loading {model_path} (transformers dequantizes it to float32)")
    m = Model(model_path)
    log(f"loaded in {m.load_s:.1f} s")

    result = {
        "engine": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "torch_config": torch.__config__.parallel_info().strip().splitlines()[:6],
        "n_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "model": {
            "path": model_path,
            "file_bytes": os.path.getsize(model_path),
            "class": type(m.lm).__name__,
            "dtype": str(m.lm.dtype),
            "n_params": sum(p.numel() for p in m.lm.parameters()),
            "attn_implementation": m.lm.config._attn_implementation,
            "load_s": m.load_s,
        },
    }
    with torch.inference_mode():
        if not args.logits_check:
            result["params"] = {
                "tokens": args.tokens, "prompt_tokens": args.prompt_tokens,
                "ttft_tokens": args.ttft_tokens, "runs": args.runs, "quick": args.quick,
                "decode_prompt_tokens": len(CHAT_IDS), "batch_seqs": args.batch_seqs,
                "batch_tokens": args.batch_tokens,
                "sampling": "greedy (torch argmax), outside the timed forward",
                "kv_cache": "DynamicCache, float32",
            }
            measure(m, args, result)
        lc = result["logits_check"] = logits_check(m, Path(args.golden))
    if isinstance(lc["golden"], dict):
        gd = lc["golden"]
        log(f"vs golden: max |diff| over top-8 = {gd['max_abs_diff_top8_all_positions']:.4f}, "
            f"argmax agrees at {gd['argmax_agrees_positions']}/{gd['n_positions']} positions, "
            f"greedy agrees for {gd['greedy_agrees_steps']}/{gd['greedy_steps_compared']} steps")
    result["loadavg_end"] = list(os.getloadavg())
    result["cpu_during_run"] = other_load(snap0, cpu_snapshot())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
