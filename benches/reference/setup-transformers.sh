#!/usr/bin/env bash
# Installs Hugging Face transformers with a CPU-only PyTorch into its own venv,
# so the reference bench can load our GGUF file with it (transformers reads
# GGUF through the `gguf` package and dequantizes every tensor to float32).
#
#   benches/reference/setup-transformers.sh      # prints the venv's python at the end
#
# Environment:
#   TRANSFORMERS_VENV   venv to create/use          (default: ~/.cache/gonka/transformers-venv)
#   PYTHON              interpreter for the venv    (default: python3; 3.10+)
#   FORCE=1             reinstall even if the pinned versions already import
#
# torch is installed the way benches/run.sh installs it: the PyTorch CPU wheel
# index is not reachable from every machine this runs on, and PyPI's Linux
# x86_64 torch wheel is built with CUDA and would pull several GB of nvidia-*
# wheels. So the PyPI wheel goes in with --no-deps, and cuda_stubs.py gives the
# dynamic loader tiny stand-ins for the CUDA libraries it links; the CPU
# kernels (MKL, oneDNN) are all in libtorch_cpu.so. accelerate (which
# transformers requires for loading GGUF files) depends on torch, so it too
# goes in with --no-deps; everything else is pinned below.
#
# Idempotent: if the venv already imports the pinned versions, it does nothing
# but print the python path. A fresh install takes about a minute here and
# leaves a 1.6 GB venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${TRANSFORMERS_VENV:-$HOME/.cache/gonka/transformers-venv}"
PYTHON="${PYTHON:-python3}"
PY="$VENV/bin/python"

# Versions verified together on this machine (Python 3.11, x86_64).
TORCH_VERSION="2.15.0"
TRANSFORMERS_VERSION="5.24.0"
GGUF_VERSION="0.19.0"
ACCELERATE_VERSION="1.15.0"
PY_DEPS=(
  "transformers==$TRANSFORMERS_VERSION" "gguf==$GGUF_VERSION"
  # torch's own pure-Python requirements (as in benches/run.sh)
  "numpy==2.4.6" "filelock==4.3.1" "typing-extensions==4.16.0" "setuptools==84.2.1"
  "sympy==1.14.0" "mpmath==1.3.0" "networkx==3.6.1" "jinja2==3.1.6" "MarkupSafe==3.0.4"
  "fsspec==2026.9.0"
  # accelerate's requirement that nothing else brings
  "psutil==7.2.2"
  # what transformers and gguf pull in
  "huggingface_hub==2.4.0" "tokenizers==0.23.3" "safetensors==0.8.0" "regex==2026.11.19"
  "PyYAML==6.0.4" "packaging==26.4" "tqdm==4.70.1" "requests==2.34.2" "typer==0.29.2"
  "hf-xet==1.8.0" "httpx2==2.16.2" "httpcore2==2.16.2" "h11==0.16.0" "anyio==4.16.0"
  "certifi==2026.10.19.post1" "charset-normalizer==3.5.3" "idna==3.20" "urllib3==2.8.0"
  "truststore==0.10.5" "click==8.5.1" "rich==15.0.0" "markdown-it-py==4.3.0" "mdurl==0.1.2"
  "Pygments==2.21.0" "shellingham==1.5.4" "annotated-doc==0.0.7" "pydantic==2.14.4"
  "pydantic_core==2.50.5" "annotated-types==0.8.0" "typing-inspection==0.4.5"
)

log() { printf '%s\n' "$*" >&2; }

installed() {
  [ -x "$PY" ] && "$PY" - "$TORCH_VERSION" "$TRANSFORMERS_VERSION" "$GGUF_VERSION" \
    "$ACCELERATE_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want = dict(zip(["torch", "transformers", "gguf", "accelerate"], sys.argv[1:]))
import torch, transformers, gguf, accelerate  # noqa: E401,F401
assert all(version(k) == v for k, v in want.items())
assert not torch.cuda.is_available()
a = torch.randn(64, 64)
assert torch.allclose(a @ torch.eye(64), a)
PYEOF
}

if [ "${FORCE:-0}" != 1 ] && installed; then
  log "torch $TORCH_VERSION, transformers $TRANSFORMERS_VERSION already in $VENV"
  echo "$PY"
  exit 0
fi

for tool in gcc readelf ldconfig; do
  command -v "$tool" >/dev/null || { log "setup-transformers.sh: $tool is needed to build the CUDA stand-ins"; exit 1; }
done
if [ ! -x "$PY" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
start=$(date +%s)
log "installing torch $TORCH_VERSION (CPU use, without its CUDA wheels), transformers $TRANSFORMERS_VERSION, gguf $GGUF_VERSION into $VENV"
# The pinned dependencies first, then the two --no-deps packages: in this
# order pip does not list torch's CUDA wheels as missing requirements.
"$PY" -m pip install --quiet "${PY_DEPS[@]}" >&2
"$PY" -m pip install --quiet --no-deps "torch==$TORCH_VERSION" "accelerate==$ACCELERATE_VERSION" >&2
torch_dir="$("$PY" -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')"
"$PY" "$HERE/cuda_stubs.py" "$torch_dir" >&2
end=$(date +%s)
log "installed in $((end - start)) s"

"$PY" - >&2 <<'PYEOF'
import torch, transformers
print("torch", torch.__version__, "threads", torch.get_num_threads(), "transformers", transformers.__version__)
PYEOF
if ! installed; then
  log "setup-transformers.sh: the venv does not import torch $TORCH_VERSION / transformers $TRANSFORMERS_VERSION / gguf $GGUF_VERSION / accelerate $ACCELERATE_VERSION, or torch cannot multiply"
  exit 1
fi
echo "$PY"
