#!/usr/bin/env bash
# Inference benchmark: our engine (`gonka infer bench`) against llama.cpp on
# the same GGUF file, back to back in one run, then the ratios the targets
# are stated in: our batch-1 decode over llama.cpp's (target ≥ 0.8), our
# batch-32 aggregate decode over llama.cpp's batch 1 (target ≥ 2).
# With TRANSFORMERS=1 a third column: Hugging Face transformers on CPU torch,
# loading the same file (dequantized to float32), and the ratios ours/transformers.
#
# Environment:
#   RUNS          repetitions per figure, medians reported (default 5)
#   TOKENS        tokens decoded per sequence              (default 64)
#   RESULTS       file to append the JSON lines to         (optional)
#   TRANSFORMERS  1: also run benches/reference/transformers_bench.py (default 0)
#
# The first run fetches the model (tools/fetch-model.sh) and builds
# llama-cpp-python from PyPI (benches/reference/setup-llama-cpp.sh, minutes);
# with TRANSFORMERS=1, the first run also installs torch and transformers
# (benches/reference/setup-transformers.sh, about a minute).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
RUNS="${RUNS:-5}"
TOKENS="${TOKENS:-64}"
TRANSFORMERS="${TRANSFORMERS:-0}"
GONKA="${CARGO_TARGET_DIR:-$ROOT/target}/release/gonka"

MODEL="$("$ROOT/tools/fetch-model.sh")"
PY="$("$HERE/reference/setup-llama-cpp.sh")"
if [ "$TRANSFORMERS" = 1 ]; then
  TF_PY="$("$HERE/reference/setup-transformers.sh")"
fi
(cd "$ROOT" && cargo build --release --quiet -p gonka-tools --bin gonka)

echo "ours: gonka infer bench" >&2
OURS="$("$GONKA" infer bench --model "$MODEL" --runs "$RUNS" --tokens "$TOKENS" --batches 1,8,32 --json)"
echo "llama.cpp: benches/reference/llama_cpp_bench.py" >&2
THEIRS="$("$PY" "$HERE/reference/llama_cpp_bench.py" --model "$MODEL" --runs "$RUNS" --tokens "$TOKENS" 2>/dev/null |
  python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')"
TF=""
if [ "$TRANSFORMERS" = 1 ]; then
  echo "transformers: benches/reference/transformers_bench.py" >&2
  TF="$("$TF_PY" "$HERE/reference/transformers_bench.py" --model "$MODEL" --runs "$RUNS" --tokens "$TOKENS" 2>/dev/null |
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')"
fi
if [ -n "${RESULTS:-}" ]; then
  printf '%s\n%s\n' "$OURS" "$THEIRS" >>"$RESULTS"
  if [ -n "$TF" ]; then printf '%s\n' "$TF" >>"$RESULTS"; fi
fi

python3 - "$OURS" "$THEIRS" "$TF" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
tf = json.loads(sys.argv[3]) if sys.argv[3] else None
dec = {d["batch"]: d["tokens_per_s"] for d in ours["decode_tokens_per_s"]}
def med(v):
    return v["median"] if isinstance(v, dict) else v
def reference(r):
    """A reference bench's medians, in the order of the table's rows."""
    if r is None:
        return [None] * 5
    batched = r.get("batched_decode") or {}
    def batch(b):
        v = batched.get(str(b), {}).get("aggregate_tokens_per_s")
        return med(v) if v else None
    return [med(r["decode_tokens_per_s"]), batch(8), batch(32),
            med(r["prefill_tokens_per_s"]), med(r.get("ttft_ms"))]
names = ["decode, batch 1 (tokens/s)", "decode, batch 8 aggregate", "decode, batch 32 aggregate",
         "prefill (tokens/s)", "time to first token (ms)"]
mine = [dec.get(1), dec.get(8), dec.get(32), ours["prefill_tokens_per_s"], ours["ttft_ms_idle"]]
ref1 = reference(theirs)[0]
columns = [("llama.cpp", reference(theirs))] + ([("transformers", reference(tf))] if tf else [])
def cell(v):
    return f"{v:>12.1f}" if v else f"{'-':>12}"
head = f"{'figure':<30} {'ours':>10}" + "".join(f" {c:>12} {'ratio':>7}" for c, _ in columns)
print(head)
for i, name in enumerate(names):
    line = f"{name:<30} {mine[i] or 0:>10.1f}"
    for _, ref in columns:
        b = ref[i]
        ratio = f"{mine[i] / b:.2f}" if mine[i] and b else ""
        line += f" {cell(b)} {ratio:>7}"
    print(line)
print("ratio: ours / reference (for the time to first token, below 1 is better)")
print(f"target: batch-1 decode ≥ 0.8× llama.cpp's: {dec.get(1, 0) / ref1:.2f}×")
print(f"target: batch-32 aggregate ≥ 2× llama.cpp's batch 1: {dec.get(32, 0) / ref1:.2f}×")
gd = (tf or {}).get("logits_check", {}).get("golden")
if isinstance(gd, dict):
    print(f"transformers against kernels/tests/golden/smollm2.json: greedy agrees for "
          f"{gd['greedy_agrees_steps']}/{gd['greedy_steps_compared']} steps, "
          f"max |logit diff| over the top-8 {gd['max_abs_diff_top8_all_positions']:.1e}")
if ours.get("ttft_ms_sprint"):
    print(f"during a Sprint: first token {ours['ttft_ms_sprint']:.0f} ms (idle {ours['ttft_ms_idle']:.0f} ms), "
          f"request {ours['latency_ms_sprint']:.0f} ms (idle {ours['latency_ms_idle']:.0f} ms)")
PY
