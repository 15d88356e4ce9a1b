#!/usr/bin/env bash
# Times the analyzer against jemalloc's jeprof on the same dump of a JVM run (thousands of
# unique frames in libjvm.so, libc, libz and JIT code).
#
# usage: scripts/bench_analyzer.sh [REPEATS]
# Makes the dump with the preload in exact mode (java running the demo's Stress workload),
# then runs `jeprof-rs top` and `jeprof --text` on it REPEATS times each and prints the
# median wall times and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
command -v java >/dev/null && command -v javac >/dev/null || { echo "bench_analyzer: needs a JDK" >&2; exit 1; }
command -v jeprof >/dev/null || { echo "bench_analyzer: needs jeprof (libjemalloc-dev)" >&2; exit 1; }
cargo build --release -q -p jeprof-preload -p jeprof-rs
work=$(mktemp -d /tmp/jeprof-bench-analyzer.XXXXXX)
trap 'rm -rf "$work"' EXIT
java_home=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
gcc -O2 -g -shared -fPIC -I"$java_home/include" -I"$java_home/include/linux" -o "$work/libfakecv.so" demo/jni/fakecv.c
javac -d "$work/classes" demo/java/demo/*.java
JEPROF_CONF="prof_prefix:$work/jvm,lg_prof_sample:0" LD_PRELOAD="$PWD/target/release/libjeprof_preload.so" \
    java -Djava.library.path="$work" -cp "$work/classes" demo.Stress 4 50 >/dev/null
dump=$(ls "$work"/jvm.*.f.heap | head -n 1)
java_bin=$(readlink -f "$(command -v java)")
echo "dump: $(grep -c '^@' "$dump") stacks, $(wc -c < "$dump") bytes, $(grep -o '0x[0-9a-f]*' "$dump" | sort -u | wc -l) unique addresses"

# Median wall seconds of REPEATS runs of a command.
timeit() {
    python3 - "$repeats" "$@" <<'PY'
import statistics, subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for _ in range(n):
    start = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times.append(time.monotonic() - start)
print(f"{statistics.median(times):.3f}")
PY
}
ours=$(timeit target/release/jeprof-rs top -n 20 "$dump")
theirs=$(timeit jeprof --text --show_bytes "$java_bin" "$dump")
printf '%-32s %8.3f s\n' "jeprof-rs top" "$ours" "jeprof --text --show_bytes" "$theirs"
python3 -c "print(f'jeprof-rs is {$theirs / $ours:.1f}x faster')"
