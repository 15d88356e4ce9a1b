#!/usr/bin/env bash
# The demo: a JVM whose native memory grows while its heap does not (see README "Demo").
#
# Builds the profiler, a JNI library that behaves like OpenCV's Mat (demo/jni/fakecv.c) and a
# Java program that leaks some Mats, churns many more, and uses DirectByteBuffers, an Inflater
# and FileChannel.map (demo/java). Runs it under `jeprof-rs run`, prints the top in-use sites,
# the libraries that hold them and the growth between two dumps, and writes a flamegraph.
#
# usage: scripts/demo.sh [ROUNDS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-300}
out=${2:-$(mktemp -d /tmp/jeprof-demo.XXXXXX)}
mkdir -p "$out/classes"

cargo build --release -q -p jeprof-preload -p jeprof-rs
javac_bin=$(readlink -f "$(command -v javac)")
java_home=$(dirname "$(dirname "$javac_bin")")
gcc -O2 -g -shared -fPIC -I"$java_home/include" -I"$java_home/include/linux" \
    -o "$out/libfakecv.so" demo/jni/fakecv.c
javac -d "$out/classes" demo/java/demo/*.java

echo "== jeprof-rs run -- java demo.NativeLeakDemo $rounds"
# lg_prof_interval:28 also dumps every 256 MiB allocated, for the growth report below.
target/release/jeprof-rs run --out "$out/dumps" --conf lg_prof_interval:28 -n 12 -- \
    java -Xmx256m -Djava.library.path="$out" -cp "$out/classes" demo.NativeLeakDemo "$rounds"

final=$(ls "$out"/dumps/jeprof.*.f.heap | grep -v mmap | head -n 1)
echo
echo "== which library holds the memory (top --by library)"
target/release/jeprof-rs top --by library -n 6 "$final"

pid=$(basename "$final" | cut -d. -f2)
first=$(ls "$out"/dumps/jeprof."$pid".0.i0.heap 2>/dev/null | head -n 1 || true)
if [ -n "$first" ]; then
    echo
    echo "== what grew between the first interval dump and the end (diff)"
    target/release/jeprof-rs diff -n 8 "$first" "$final"
fi

series=$(ls "$out"/dumps/jeprof."$pid".*.heap | grep -v mmap)  # trend orders them by time itself
if [ "$(echo "$series" | wc -l)" -ge 3 ]; then
    echo
    echo "== sites whose in-use bytes keep growing across the series (trend)"
    # shellcheck disable=SC2086
    target/release/jeprof-rs trend -n 5 $series
fi

echo
echo "== the process's RSS at exit, row by row (rss)"
target/release/jeprof-rs rss "$final"

target/release/jeprof-rs flame -o "$out/demo.svg" "$final"
echo
echo "flamegraph: $out/demo.svg"
echo "dumps:      $out/dumps"
