#!/bin/sh
# The CUDA backend's hardware check, for a session that is lent a GPU machine (which has the CUDA
# toolkit and a driver, but none of Debian's -dev packages, and cannot install any).  Two halves:
#
#   tools/gpu-check.sh prepare    here, on the Debian development machine: builds $BUILD
#                                 (default build-gpu: -Dcuda=enabled -Dgpu_arch=90, no GUI,
#                                 release), then packs into .gpu/bundle.tar.gz (git-ignored) the
#                                 programs the check runs, the non-system host libraries they
#                                 link (GLib, json-glib, OpenBLAS, …), a copy of ../shared/golden
#                                 and the source path they have compiled in.
#   tools/gpu-check.sh run        there, in the repository root, with .gpu carried:
#                                 re-creates the compiled-in paths as links, finds the machine's
#                                 cuBLAS / cuDNN, then runs the `gpu` suite's programs (CUDA ops
#                                 against the CPU, the pipeline with graphs, every golden case
#                                 through --backend cuda) and the benchmarks the CUDA issue asks
#                                 for.  Everything is logged to ${OUT:-.}/gpu-check.log; the exit
#                                 status is the number of failed steps.
#
# With the device tool:  run(command: "sh tools/gpu-check.sh run", carry: [".gpu"], timeout_s: 480).
# STEP_SCALE=N multiplies every step's time limit.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build-gpu}
cd "$here" || exit 2

prepare () {
  set -e
  [ -d "$build" ] || meson setup "$build" -Dcuda=enabled -Dgpu_arch=90 -Dgui=disabled --buildtype=release
  ninja -C "$build"
  [ -f "$build/kernels/kinora-cuda.so" ] || { echo "gpu-check: $build has no kinora-cuda.so (nvcc missing?)" >&2; exit 1; }
  progs="app/kinora-cli tests/test-cuda-ops tests/test-cuda-pipeline tests/kinora-golden kernels/kinora-cuda.so"
  rm -rf .gpu
  mkdir -p .gpu/stage/bin/app .gpu/stage/bin/tests .gpu/stage/bin/kernels .gpu/stage/lib .gpu/stage/shared
  for p in $progs; do cp "$build/$p" ".gpu/stage/bin/$p"; done
  cp -r ../shared/golden .gpu/stage/shared/
  pwd > .gpu/stage/srcroot
  # the host libraries the programs link (the engine is linked in statically), less the C
  # library and what the GPU machine brings (C++ runtime, driver, cuBLAS, cuDNN)
  for p in $progs; do ldd "$build/$p"; done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
  while read -r lib; do
    case "$lib" in
      */libc.so*|*/libm.so*|*/libpthread.so*|*/libdl.so*|*/librt.so*|*/ld-linux*|*/libstdc++.so*|\
      */libgcc_s.so*|*/libcuda.so*|*/libcublas*|*/libcudnn*|*/libcudart*) ;;
      *) cp -L "$lib" .gpu/stage/lib/ ;;
    esac
  done
  tar -czf .gpu/bundle.tar.gz -C .gpu/stage .
  rm -rf .gpu/stage
  du -h .gpu/bundle.tar.gz
  echo "gpu-check: prepared; carry .gpu (the tree travels too: together at most 64 MiB)"
}

step () {  # step SECONDS NAME COMMAND…: runs (at most SECONDS, times STEP_SCALE), logs, counts a
           # failure (77 = skipped counts as a failure here: there must be a device)
  limit=$(( $1 * ${STEP_SCALE:-1} ))
  name=$2
  shift 2
  echo "=== $name: $*"
  start=$(date +%s)
  timeout "$limit" "$@"
  rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - start )) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}

run () {
  rm -rf .gpu/x
  mkdir -p .gpu/x
  tar -xzf .gpu/bundle.tar.gz -C .gpu/x || exit 2
  x="$here/.gpu/x"
  src=$(cat "$x/srcroot")
  # the programs have the development machine's source path compiled in (tests/data, ../shared):
  # make it name this checkout, and its ../shared the carried golden data
  if [ "$src" != "$here" ]; then
    mkdir -p "$(dirname "$src")"
    ln -sfn "$here" "$src"
  fi
  [ -e "$(dirname "$src")/shared/golden" ] || ln -sfn "$x/shared" "$(dirname "$src")/shared"
  cudadirs=$(find /usr/local /usr/lib /usr/lib64 /opt \( -name 'libcublasLt.so.13*' -o -name 'libcudnn.so.9*' \) 2>/dev/null |
             xargs -r -n1 dirname | sort -u | tr '\n' ':')
  export LD_LIBRARY_PATH="$x/lib:${cudadirs}${LD_LIBRARY_PATH:-}"
  export KIN_CUDA_MODULE_DIR="$x/bin/kernels"
  export G_DEBUG=gc-friendly OMP_NUM_THREADS=8 OMP_WAIT_POLICY=passive
  cd "$src" || exit 2
  bin="$x/bin"
  failed=0
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  echo "cuBLAS/cuDNN from: $cudadirs"
  ldd "$bin"/kernels/kinora-cuda.so "$bin"/app/kinora-cli | grep -E 'not found|cublas|cudnn|glib-2'
  step 30 info "$bin"/app/kinora-cli info
  step 120 cuda-ops "$bin"/tests/test-cuda-ops
  step 120 cuda-pipeline "$bin"/tests/test-cuda-pipeline
  for c in stdit_v1 stdit_v2 stdit_v2_xmask t5 vae iddpm iddpm_v2_mask; do
    # (as in the gpu suite: the golden cases measure the models at f32)
    step 60 "golden-$c" env KIN_CUDA_WEIGHTS=f32 "$bin"/tests/kinora-golden --backend cuda \
      --tolerance 1e-4 "$(dirname "$src")/shared/golden/$c.json"
  done
  step 90 bench-stdit "$bin"/app/kinora-cli bench stdit --backend cuda
  # where the forward's time goes (every op timed between device waits; no graphs)
  step 60 profile-stdit env KIN_CUDA_PROFILE=1 "$bin"/app/kinora-cli bench stdit --backend cuda --iters 1 --warmup 1
  # attention kernels forced where they apply, to compare with auto (per shape in the tables):
  # 1 short (one warp per query row), 4 tensor-core flash (WMMA), 5 short staged, 6 mma.sync flash
  for path in 1 4 5 6; do
    step 60 "profile-attention-$path" env KIN_CUDA_PROFILE=1 KIN_CUDA_ATTENTION=$path \
      "$bin"/app/kinora-cli bench stdit --backend cuda --iters 1 --warmup 1
  done
  step 180 bench-generate "$bin"/app/kinora-cli bench generate --backend cuda
  step 60 bench-vae "$bin"/app/kinora-cli bench vae --backend cuda --frames 16 --size 512
  # last (slow): compute-sanitizer, out-of-bounds accesses in the ops and races in attention's
  # shared-memory kernels
  san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$san" ]; then
    step 120 sanitizer-memcheck "$san" --tool memcheck --error-exitcode 99 "$bin"/tests/test-cuda-ops \
      -p /cuda/attention -p /cuda/norms -p /cuda/permute -p /cuda/modulate-gate -p /cuda/linear-half -p /cuda/conv2d
    step 90 sanitizer-racecheck "$san" --tool racecheck --error-exitcode 99 "$bin"/tests/test-cuda-ops -p /cuda/attention
  fi
  echo "gpu-check: $failed step(s) failed"
  return "$failed"
}

case "${1:-}" in
  prepare) prepare ;;
  run)
    log="${OUT:-.}/gpu-check.log"
    # the whole log comes back even when the command is stopped at its time limit
    run > "$log" 2>&1
    rc=$?
    tail -n 200 "$log"
    exit "$rc"
    ;;
  *) echo "usage: tools/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
