#!/usr/bin/env bash
# Compiles every library and CLI source (syntax and types, no linking) against
# another LibTorch's headers, to catch API differences between Debian's 1.13
# and LibTorch 2.x. Usage: scripts/check_libtorch2_api.sh /path/to/libtorch
# (a LibTorch zip, or a PyTorch wheel's torch/ folder: both hold include/).
# FILES="a.cpp b.cpp" checks those alone.
set -euo pipefail
root=${1:?usage: $0 LIBTORCH_DIR}
cd "$(dirname "$0")/.."
# As CMakeLists.txt does: Debian's fmt (spdlog's) in front of LibTorch's own fmt.
fmt_first=$(mktemp -d); trap 'rm -rf "$fmt_first"' EXIT; ln -s /usr/include/fmt "$fmt_first/fmt"
inc=(-I"$fmt_first" -I"$root/include" -I"$root/include/torch/csrc/api/include" -Isrc -I/usr/include/opencv4 -I/usr/include/dcmtk)
# The oneDNN inference body too, where oneDNN's headers are here (as CMake enables it).
defs=(-DFRACTURE_VERSION='"check"' -DSPDLOG_FMT_EXTERNAL -DONNX_ML=1 -DONNX_NAMESPACE=onnx -DUSE_C10D_GLOO)
[ -f /usr/include/oneapi/dnnl/dnnl.hpp ] && defs+=(-DFRACTURE_WITH_ONEDNN)
status=0
for f in ${FILES:-src/fracture/*.cpp src/fracture/*/*.cpp}; do
  if ! g++ -std=c++17 -fsyntax-only "${defs[@]}" "${inc[@]}" "$f" 2>/tmp/libtorch2_check.err; then
    echo "FAIL $f"; head -20 /tmp/libtorch2_check.err; status=1
  fi
done
[ $status -eq 0 ] && echo "all sources compile against $(cat "$root/include/torch/csrc/api/include/torch/version.h" 2>/dev/null | grep -o 'TORCH_VERSION "[^"]*"' || echo "$root")"
exit $status
