#!/bin/sh
# run-fuzzers.sh — builds the libFuzzer targets with clang and runs each one for a while.
#
#   tools/run-fuzzers.sh [SECONDS] [FUZZER…]
#
# SECONDS: time per fuzzer (default 60).  FUZZER: safetensors, pickle (default: both).
# The build directory is build-fuzz/ at the top of the source tree (KIN_FUZZ_BUILD overrides it);
# it is configured on first use with CC=clang -Dfuzz=true -Dcuda=disabled -Dgui=disabled.
# Each fuzzer works on a temporary copy of tests/fuzz/corpus-<name>/, so the committed seeds are
# never touched.  A crash, leak, sanitizer report or timeout stops that fuzzer; its input is kept
# in build-fuzz/fuzz-artifacts/<name>/ and the script exits non-zero.
set -eu

secs=${1:-60}
[ $# -gt 0 ] && shift
fuzzers=${*:-safetensors pickle}

src=$(cd "$(dirname "$0")/.." && pwd)
build=${KIN_FUZZ_BUILD:-$src/build-fuzz}

if ! command -v clang >/dev/null 2>&1; then
  echo "run-fuzzers: clang is needed" >&2
  exit 2
fi

if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$src" -Dfuzz=true -Dcuda=disabled -Dgui=disabled
else
  meson configure "$build" -Dfuzz=true >/dev/null
fi
targets=
for f in $fuzzers; do
  targets="$targets tests/fuzz/fuzz-$f"
done
# shellcheck disable=SC2086
ninja -C "$build" $targets

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
status=0
for f in $fuzzers; do
  exe="$build/tests/fuzz/fuzz-$f"
  corpus="$work/corpus-$f"
  artifacts="$build/fuzz-artifacts/$f"
  mkdir -p "$corpus" "$artifacts"
  cp "$src/tests/fuzz/corpus-$f"/* "$corpus"/
  echo "== fuzz-$f for ${secs}s (artifacts: $artifacts)"
  if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
       UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
       "$exe" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -max_len=65536 \
              -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus"; then
    echo "== fuzz-$f FAILED: see $artifacts" >&2
    status=1
  else
    echo "== fuzz-$f: no crash"
  fi
done
exit $status
