#!/usr/bin/env bash
# Inference benchmark: our engine (`gonka infer bench`) against llama.cpp on
# the same GGUF file, back to back in one run, then the ratios the targets
# are stated in: our batch-1 decode over llama.cpp's (target ≥ 0.8), our
# batch-32 aggregate decode over llama.cpp's batch 1 (target ≥ 2).
#
# Environment:
#   RUNS      repetitions per figure, medians reported (default 5)
#   TOKENS    tokens decoded per sequence              (default 64)
#   RESULTS   file to append both JSON lines to        (optional)
#
# The first run fetches the model (tools/fetch-model.sh) and builds
# llama-cpp-python from PyPI (benches/reference/setup-llama-cpp.sh, minutes).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
RUNS="${RUNS:-5}"
TOKENS="${TOKENS:-64}"
GONKA="${CARGO_TARGET_DIR:-$ROOT/target}/release/gonka"

MODEL="$("$ROOT/tools/fetch-model.sh")"
PY="$("$HERE/reference/setup-llama-cpp.sh")"
(cd "$ROOT" && cargo build --release --quiet -p gonka-tools --bin gonka)

echo "ours: gonka infer bench" >&2
OURS="$("$GONKA" infer bench --model "$MODEL" --runs "$RUNS" --tokens "$TOKENS" --batches 1,8,32 --json)"
echo "llama.cpp: benches/reference/llama_cpp_bench.py" >&2
THEIRS="$("$PY" "$HERE/reference/llama_cpp_bench.py" --model "$MODEL" --runs "$RUNS" --tokens "$TOKENS" 2>/dev/null |
  python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')"
if [ -n "${RESULTS:-}" ]; then
  printf '%s\n%s\n' "$OURS" "$THEIRS" >>"$RESULTS"
fi

python3 - "$OURS" "$THEIRS" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
dec = {d["batch"]: d["tokens_per_s"] for d in ours["decode_tokens_per_s"]}
def med(v):
    return v["median"] if isinstance(v, dict) else v
ref1 = med(theirs["decode_tokens_per_s"])
ref_prefill = med(theirs["prefill_tokens_per_s"])
ref_ttft = med(theirs.get("ttft_ms"))
batched = theirs.get("batched_decode") or {}
def ref_batch(b):
    v = batched.get(str(b), {}).get("aggregate_tokens_per_s")
    return med(v) if v else None
rows = [
    ("decode, batch 1 (tokens/s)", dec.get(1), ref1),
    ("decode, batch 8 aggregate", dec.get(8), ref_batch(8)),
    ("decode, batch 32 aggregate", dec.get(32), ref_batch(32)),
    ("prefill (tokens/s)", ours["prefill_tokens_per_s"], ref_prefill),
    ("time to first token (ms)", ours["ttft_ms_idle"], ref_ttft),
]
print(f"{'figure':<30} {'ours':>10} {'llama.cpp':>10} {'ratio':>7}")
for name, a, b in rows:
    ratio = f"{a / b:.2f}" if a and b else ""
    print(f"{name:<30} {a or 0:>10.1f} {b or 0:>10.1f} {ratio:>7}")
print(f"target: batch-1 decode ≥ 0.8× llama.cpp's: {dec.get(1, 0) / ref1:.2f}×")
print(f"target: batch-32 aggregate ≥ 2× llama.cpp's batch 1: {dec.get(32, 0) / ref1:.2f}×")
if ours.get("ttft_ms_sprint"):
    print(f"during a Sprint: first token {ours['ttft_ms_sprint']:.0f} ms (idle {ours['ttft_ms_idle']:.0f} ms), "
          f"request {ours['latency_ms_sprint']:.0f} ms (idle {ours['latency_ms_idle']:.0f} ms)")
PY
