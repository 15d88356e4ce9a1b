#!/usr/bin/env bash
# Benchmarks the preload against the uninstrumented run and against peers, in one run.
#
# usage: scripts/bench.sh [ITERATIONS_PER_THREAD] [REPEATS] [attach]
# An allocation-heavy C workload (each thread replaces one block of a ring per step: a malloc
# and a free) runs with 1 and 2 threads: plain, under two do-nothing preloads that show the
# floor of interposition (forwarding only; forwarding plus a byte countdown that never fires),
# under the preload sampled (512 KiB) and exact,
# under jemalloc with and without its profiler, and under heaptrack when installed. Prints
# median wall and CPU seconds, peak RSS, ratios to the plain run (of the medians, and the
# median of each round's ratio) and CPU ns per malloc/free pair; then the CPU cost on real
# programs (sqlite3, perl, python3), instruction counts under callgrind (deterministic) and the
# memory exact mode adds per live block; last, the profiler attached to a running process
# against the same profiler preloaded (and attached then detached), on the C workload and on a
# small Java one (`attach` as the third argument runs only that part).
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-10000000}
repeats=${2:-3}
only=${3:-all}
cargo build --release -q -p jeprof-preload -p jeprof-rs
work=$(mktemp -d /tmp/jeprof-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -g -pthread -o "$work/alloc_heavy" scripts/bench/alloc_heavy.c
gcc -O2 -g -pthread -Iscripts/bench -o "$work/alloc_attach" scripts/bench/alloc_attach.c -ldl
gcc -O2 -g -o "$work/live_blocks" scripts/bench/live_blocks.c
gcc -O2 -fPIC -fno-plt -shared -o "$work/floor_jump.so" scripts/bench/floor.c
gcc -O2 -fPIC -fno-plt -shared -DCOUNTDOWN -o "$work/floor_countdown.so" scripts/bench/floor.c
python3 scripts/bench/run.py "$work" "$iters" "$repeats" "$only"
