#!/usr/bin/env bash
# Sprint PoW benchmark: our Rust miner (`gonka pow bench`) against the PyTorch
# CPU reference (benches/torch_pow.py), back to back on each config and
# precision, then a table of nonces/s, GFLOP/s, init times and ours/torch ratios.
#
# Environment:
#   CONFIGS          configs to run              (default: "small seed-64")
#   PRECISIONS       precisions to run           (default: "f32 bf16")
#   SECONDS_PER_RUN  seconds per measurement     (default: 20; torch spends this per batch size)
#   TORCH_BATCHES    torch batch sizes to sweep  (default: torch_pow.py's per-config sweep)
#   RESULTS          file to append every JSON result line to (optional)
#
# The first run creates benches/.venv with a CPU-only torch from PyPI (see
# install_torch below); later runs reuse it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv"
PY="$VENV/bin/python"

CONFIGS="${CONFIGS:-small seed-64}"
PRECISIONS="${PRECISIONS:-f32 bf16}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-20}"
TORCH_BATCHES="${TORCH_BATCHES:-}"
GONKA="${CARGO_TARGET_DIR:-$ROOT/target}/release/gonka"

# Versions verified together on this machine (Python 3.11, x86_64).
TORCH_VERSION="2.15.0"
PY_DEPS=(
  "numpy==2.4.6"
  # torch's own pure-Python requirements
  "filelock==4.3.1" "typing-extensions==4.16.0" "setuptools==84.2.1" "sympy==1.14.0" "mpmath==1.3.0"
  "networkx==3.6.1" "jinja2==3.1.6" "MarkupSafe==3.0.4" "fsspec==2026.9.0"
)

log() { printf '%s\n' "$*" >&2; }

# The Linux x86_64 torch wheel on PyPI is built with CUDA: its libraries name
# libcudart, libcublas, libcudnn, libnccl, ... as DT_NEEDED, and its metadata
# pulls several GB of nvidia-* / cuda-toolkit wheels to provide them. The CPU
# kernels (MKL, oneDNN) are all in libtorch_cpu.so, so we install the wheel
# with --no-deps and give the dynamic loader tiny stand-ins for the CUDA
# libraries instead: one stub .so per missing library, with its SONAME, its
# symbol versions and every symbol torch imports from it. A stub that is ever
# called returns an error code (100 = "no device" in the CUDA runtime), so
# torch.cuda.is_available() is False and every CPU path works unchanged.
# The stubs go into torch/lib, which is on the RPATH ($ORIGIN) of torch's
# libraries, so nothing needs LD_LIBRARY_PATH.
make_cuda_stubs() {
  "$PY" "$HERE/reference/cuda_stubs.py" "$1"
}

torch_works() {
  [ -x "$PY" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import numpy, torch
assert not torch.cuda.is_available()
a = torch.randn(64, 64)
assert torch.allclose(a @ torch.eye(64), a)
assert torch.allclose((a.bfloat16() @ torch.eye(64, dtype=torch.bfloat16)).float(), a.bfloat16().float())
PYEOF
}

install_torch() {
  for tool in gcc readelf ldconfig; do
    command -v "$tool" >/dev/null || { log "run.sh: $tool is needed to build the CUDA stand-ins"; exit 1; }
  done
  [ -x "$PY" ] || python3 -m venv "$VENV"
  log "installing torch $TORCH_VERSION (CPU use, without its CUDA wheels) into $VENV"
  "$VENV/bin/pip" install --quiet --no-deps "torch==$TORCH_VERSION"
  "$VENV/bin/pip" install --quiet "${PY_DEPS[@]}"
  local torch_dir
  torch_dir="$("$PY" -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')"
  make_cuda_stubs "$torch_dir"
  torch_works || { log "run.sh: torch does not import or multiply after the install"; exit 1; }
}

torch_works || install_torch
log "torch: $("$PY" -c 'import torch; print(torch.__version__, "threads", torch.get_num_threads())')"

# Our CLI: build it, but keep going without it (it may not exist yet).
have_gonka=0
if (cd "$ROOT" && cargo build --release -p gonka-tools) >&2 && [ -x "$GONKA" ]; then
  have_gonka=1
else
  log "gonka CLI not built: running the torch side only"
fi

results="$(mktemp)"
step_out="$(mktemp)"
trap 'rm -f "$results" "$step_out"' EXIT

# Run a command with its stdout shown live (on stderr) and kept in $step_out.
run_logged() {
  : >"$step_out"
  "$@" | tee "$step_out" >&2
}

# The last line of the step's output that is a JSON object, or nothing.
json_line() { grep '^{' "$step_out" | tail -n 1 || true; }

record() {
  local line="$1"
  [ -n "$line" ] || return 0
  printf '%s\n' "$line" >>"$results"
  if [ -n "${RESULTS:-}" ]; then printf '%s\n' "$line" >>"$RESULTS"; fi
}

log "loadavg at start: $(cat /proc/loadavg)"
for config in $CONFIGS; do
  for precision in $PRECISIONS; do
    if [ "$have_gonka" = 1 ]; then
      log "== gonka pow bench --config $config --precision $precision --seconds $SECONDS_PER_RUN"
      if run_logged "$GONKA" pow bench --pow v1 --config "$config" --precision "$precision" --seconds "$SECONDS_PER_RUN" --json; then
        record "$(json_line)"
      else
        log "gonka pow bench failed for $config/$precision"
      fi
    fi
    log "== torch bench --config $config --precision $precision --seconds $SECONDS_PER_RUN"
    # shellcheck disable=SC2086  # TORCH_BATCHES is a list of numbers
    run_logged "$PY" "$HERE/torch_pow.py" bench --config "$config" --precision "$precision" \
      --seconds "$SECONDS_PER_RUN" ${TORCH_BATCHES:+--batch $TORCH_BATCHES}
    record "$(json_line)"
  done
done
# Sprint function v2 (exact int8) on the same configs, for the side-by-side line below.
if [ "$have_gonka" = 1 ]; then
  for config in $CONFIGS; do
    log "== gonka pow bench --pow v2 --config $config --seconds $SECONDS_PER_RUN"
    if run_logged "$GONKA" pow bench --pow v2 --config "$config" --seconds "$SECONDS_PER_RUN" --json; then
      record "$(json_line)"
    fi
  done
fi
for precision in $PRECISIONS; do
  log "== torch peak matmul, $precision"
  run_logged "$PY" "$HERE/torch_pow.py" peak --precision "$precision" --seconds "$SECONDS_PER_RUN"
  record "$(json_line)"
done
log "loadavg at end: $(cat /proc/loadavg)"

"$PY" - "$results" "$have_gonka" <<'PYEOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
have_gonka = sys.argv[2] == "1"
runs = {}
peaks = {}
for r in rows:
    if r.get("kind") == "peak":
        peaks[r["precision"]] = r["gflops"]
    else:
        runs.setdefault((r["config"], r["precision"]), {})[r["impl"]] = r

def fmt(v, spec):
    if isinstance(v, (int, float)):
        return format(v, spec)
    width = spec.split(".")[0].rstrip("df")
    return "-".rjust(int(width) if width.isdigit() else 1)

head = (f"{'config':8} {'prec':4} | {'gonka n/s':>10} {'GFLOP/s':>8} {'batch':>5} {'init s':>7} | "
        f"{'torch n/s':>10} {'GFLOP/s':>8} {'batch':>5} {'init s':>7} {'others':>6} | {'ours/torch':>10}")
print()
print(head)
print("-" * len(head))
for (config, precision), impls in runs.items():
    g, t = impls.get("gonka", {}), impls.get("torch", {})
    ratio = g["nonces_per_s"] / t["nonces_per_s"] if g and t and t["nonces_per_s"] else None
    # Cores that other processes used during torch's best batch (see torch_pow.py).
    others = next((s.get("other_cores") for s in t.get("sweep", []) if s["batch"] == t.get("batch")), None)
    print(f"{config:8} {precision:4} | {fmt(g.get('nonces_per_s'), '10.2f')} {fmt(g.get('gflops'), '8.1f')} "
          f"{fmt(g.get('batch'), '5d')} {fmt(g.get('init_s'), '7.1f')} | "
          f"{fmt(t.get('nonces_per_s'), '10.2f')} {fmt(t.get('gflops'), '8.1f')} "
          f"{fmt(t.get('batch'), '5d')} {fmt(t.get('init_s'), '7.1f')} {fmt(others, '6.2f')} | "
          f"{fmt(ratio, '9.2f') + 'x' if ratio else '-':>10}")
print()
for (config, precision), impls in runs.items():
    v2 = impls.get("gonka") if precision == "int8" else None
    if not v2:
        continue
    v1 = [i for (c, p), i in runs.items() if c == config and p != "int8"]
    best = lambda impl: max((i[impl] for i in v1 if impl in i), key=lambda r: r["nonces_per_s"], default=None)
    ours, torch = best("gonka"), best("torch")
    line = f"v2 (exact int8) on {config}: {v2['nonces_per_s']:.2f} nonces/s (batch {v2['batch']})"
    if ours:
        line += f" = {v2['nonces_per_s'] / ours['nonces_per_s']:.2f}x our best v1 ({ours['precision']})"
    if torch:
        line += f", {v2['nonces_per_s'] / torch['nonces_per_s']:.2f}x torch's best v1 ({torch['precision']})"
    print(line)
print()
for precision in sorted(set(peaks) | {p for _, p in runs if p != "int8"}):
    ours = [i["gonka"].get("peak_gflops") for (c, p), i in runs.items() if p == precision and "gonka" in i]
    ours = [v for v in ours if isinstance(v, (int, float))]
    print(f"peak matmul {precision:4}: torch {fmt(peaks.get(precision), '.1f')} GFLOP/s"
          + (f", gonka {max(ours):.1f} GFLOP/s" if ours else ""))
print("others: cores used by other processes during torch's best batch; above ~0.05 the torch figure is")
print("not trustworthy on a 2-core machine (OpenMP threads wait for the descheduled one).")
if not have_gonka:
    print("(gonka CLI not built: torch side only)")
PYEOF
