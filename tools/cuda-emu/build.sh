#!/usr/bin/env bash
# Builds the CUDA backend's real kernels (kernels/*.cu) against a CPU emulation of the CUDA runtime
# and cuBLAS (emu.cc: fibers for threads, __syncthreads as a barrier), into OUT/kinora-cuda.so.
# Then: KIN_CUDA_MODULE_DIR=OUT ./build/tests/test-cuda-ops   (and kinora-golden --backend cuda).
# It checks index arithmetic and numerics of the kernels without a GPU; it cannot see races,
# launch limits or performance.  Usage: tools/cuda-emu/build.sh [OUT [SO-FILE]]
# (default OUT build-cuda-emu; SO-FILE defaults to OUT/kinora-cuda.so)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-$top/build-cuda-emu}
so=${2:-$out/kinora-cuda.so}
mkdir -p "$out/gen"
for f in "$top"/kernels/*.cu; do
  python3 "$here/convert.py" "$f" "$out/gen/$(basename "${f%.cu}").cc"
done
g++ -std=c++20 -O1 -g -fPIC -shared -Wall -Wno-unused-parameter -Wno-unused-function -Wno-unknown-pragmas \
  -DKIN_CUDA_EMULATOR ${EMU_FLAGS:-} -I "$here/inc" -I "$top/kernels" -o "$so" "$out"/gen/*.cc "$here/emu.cc" "$here/emu-lt.cc"
echo "built $so"
