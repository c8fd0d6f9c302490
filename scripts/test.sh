#!/usr/bin/env bash
# Runs the whole test suite (unit, reference-vs-PyTorch, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FRACTURE_BUILD_DIR:-build}
ninja -C "$build" --quiet 2>&1 | grep -v "^ninja: no work to do" || true
cd "$build" && ctest --output-on-failure -j2 "$@"
