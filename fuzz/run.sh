#!/usr/bin/env bash
# Runs every fuzz target for a while (default 20 s each) with libFuzzer and
# AddressSanitizer. Needs cargo-fuzz; installs it when missing.
#   fuzz/run.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi
# Sanitizer flags need -Z on stable: RUSTC_BOOTSTRAP allows it, and cargo's
# cached compiler probe must not remember an earlier run without it.
export RUSTC_BOOTSTRAP=1 CARGO_CACHE_RUSTC_INFO=0
mkdir -p corpus
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true; fi
  echo "fuzzing $target for ${secs}s"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 | tail -n 3
done
