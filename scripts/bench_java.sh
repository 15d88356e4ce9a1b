#!/usr/bin/env bash
# Benchmarks the preload in a JVM, and the JVM's own speed with -XX:+PreserveFramePointer,
# in one run (issue 16: what the HotSpot walk costs per sample, what dropping the flag saves).
#
# usage: scripts/bench_java.sh [JNI_CALLS] [ROUNDS] [PAIRS] [CALLGRIND_CALLS]
#   JNI_CALLS        JNI malloc/free calls per run of part 1 (default 3000000)
#   ROUNDS           interleaved rounds of part 1's configurations (default 5)
#   PAIRS            interleaved pairs of part 2's runs per JDK (default 9)
#   CALLGRIND_CALLS  two call counts for part 3, N1,N2 (default 100000,300000; 0 skips it)
#
# 1. Cost per recorded malloc (scripts/bench/JniChurn.java + jni_churn.c: a JNI method that
#    mallocs and frees 64 bytes, 0 or 10 recursive Java frames above it), JDK 17 (and JDK 25
#    at depth 10): (a) uninstrumented, (b) exact mode with no JVM flags (HotSpot walk),
#    (c) exact mode, -XX:+PreserveFramePointer and prof_java:false (the frame-pointer walk,
#    before the HotSpot walk), (d) exact mode, -XX:+PreserveFramePointer, HotSpot walk,
#    (e) sampled mode (the default), no flags. Medians of wall and CPU (user+sys of the JVM,
#    all threads), ratios to (a), CPU ns per recorded malloc ((X)-(a) over every malloc of
#    the run, counted by scripts/bench/count_malloc.c), and the frames of a recorded stack
#    between HotSpot's JavaCalls::call_helper and the JNI function (how far each walk gets).
# 2. The JVM alone, with and without -XX:+PreserveFramePointer (scripts/bench/JvmSpeed.java:
#    recursion, megamorphic virtual calls, a sort of small objects, string building; timed
#    after a warm-up, inside the program), JDK 17 and 25.
# 3. Instructions per recorded malloc under callgrind (valgrind --smc-check=all, -Xbatch),
#    (a), (b), (c) at depths 0 and 10, and where (b)'s instructions go.
# Takes about 8 minutes on 2 cores. Not part of cargo test or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-3000000}
rounds=${2:-5}
pairs=${3:-9}
cg=${4:-100000,300000}
jdk=/usr/lib/jvm/java-17-openjdk-amd64
[ -x "$jdk/bin/javac" ] && [ -f "$jdk/include/jni.h" ] || {
    echo "bench_java: needs JDK 17 with javac and jni.h at $jdk" >&2
    exit 1
}
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release -q -p jeprof-preload -p jeprof-rs
work=$(mktemp -d /tmp/jeprof-bench-java.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$jdk/bin/javac" --release 17 -d "$work" scripts/bench/JniChurn.java scripts/bench/JvmSpeed.java
gcc -O2 -g -shared -fPIC -Wall -I"$jdk/include" -I"$jdk/include/linux" \
    -o "$work/libjni_churn.so" scripts/bench/jni_churn.c
gcc -O2 -shared -fPIC -Wall -o "$work/count_malloc.so" scripts/bench/count_malloc.c -ldl
python3 scripts/bench/run_java.py "$work" "$calls" "$rounds" "$pairs" "$cg"
