#!/usr/bin/env bash
# Builds llama.cpp (through the PyPI package llama-cpp-python) for this CPU
# into its own venv, so the reference bench can run it on the same GGUF file
# as our engine. The build is from source (no prebuilt wheel), with
# GGML_NATIVE=ON, i.e. -march=native: AVX2/AVX-512/VNNI... whatever this CPU has.
#
#   benches/reference/setup-llama-cpp.sh      # prints the venv's python at the end
#
# Environment:
#   LLAMA_CPP_VENV   venv to create/use          (default: ~/.cache/gonka/llama-cpp-venv)
#   PYTHON           interpreter for the venv    (default: python3; 3.8+)
#   JOBS             parallel compile jobs       (default: nproc)
#   FORCE=1          rebuild even if the pinned version is already installed
#
# Idempotent: if the venv already imports the pinned version, it does nothing
# but print the python path. The compile runs under `nice -n 19`; its full
# log goes to $LLAMA_CPP_VENV/build.log. Takes several minutes on 2 cores.
set -euo pipefail

VENV="${LLAMA_CPP_VENV:-$HOME/.cache/gonka/llama-cpp-venv}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc)}"
PY="$VENV/bin/python"

# Versions verified together on this machine (Python 3.11, x86_64, gcc 12).
LLAMA_CPP_PYTHON_VERSION="0.3.36"
BUILD_DEPS=(
  "scikit-build-core==1.1.2"
  "cmake==4.4.5"
  "ninja==1.13.2"
)

installed() {
  [ -x "$PY" ] && "$PY" - "$LLAMA_CPP_PYTHON_VERSION" <<'PY' >/dev/null 2>&1
import sys, llama_cpp
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] else 1)
PY
}

if [ "${FORCE:-0}" != 1 ] && installed; then
  echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION already in $VENV" >&2
  echo "$PY"
  exit 0
fi

if [ ! -x "$PY" ]; then
  echo "creating venv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
"$PY" -m pip install --quiet --upgrade pip >&2
# Build tools go into the venv itself (cmake and ninja come as PyPI wheels),
# and the build runs without isolation so it uses exactly these.
"$PY" -m pip install --quiet "${BUILD_DEPS[@]}" >&2

# GGML_NATIVE=ON: compile ggml with -march=native for this CPU.
# LLAVA_BUILD=OFF: skip the multimodal library (only imported lazily, for
# image chat formats), which saves a good part of the build time.
export CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
export PATH="$VENV/bin:$PATH"

log="$VENV/build.log"
echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION (CMAKE_ARGS=$CMAKE_ARGS, $JOBS jobs); log: $log" >&2
start=$(date +%s)
if ! nice -n 19 "$PY" -m pip install --verbose --no-cache-dir --no-build-isolation \
      --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "build failed; full log: $log" >&2
  exit 1
fi
end=$(date +%s)
echo "built in $((end - start)) s" >&2

"$PY" - >&2 <<'PY'
import llama_cpp
print("llama-cpp-python", llama_cpp.__version__)
print("system info:", llama_cpp.llama_print_system_info().decode().strip())
PY
if ! installed; then
  echo "llama-cpp-python installed but does not import as $LLAMA_CPP_PYTHON_VERSION" >&2
  exit 1
fi
echo "$PY"
