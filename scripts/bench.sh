#!/usr/bin/env bash
# Benchmarks the preload against the uninstrumented run and against peers, in one run.
#
# usage: scripts/bench.sh [THREADS] [ITERATIONS_PER_THREAD] [REPEATS]
# Prints one row per configuration: median wall and CPU seconds, peak RSS, and the ratios to
# the plain run. Peers are included when installed: heaptrack, and jemalloc's own profiler
# (libjemalloc with prof:true — note that it also swaps the allocator).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
iters=${2:-5000000}
repeats=${3:-3}
cargo build --release -q -p jeprof-preload
work=$(mktemp -d /tmp/jeprof-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -g -pthread -o "$work/alloc_heavy" scripts/bench/alloc_heavy.c
exec python3 scripts/bench/run.py "$work" "$work/alloc_heavy" "$threads" "$iters" "$repeats"
