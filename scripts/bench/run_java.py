"""Runs the Java benchmarks and prints the tables (called by scripts/bench_java.sh).

1. Cost per recorded malloc in a JVM (scripts/bench/JniChurn.java): N JNI calls that malloc
   and free, DEPTH Java frames below main, JDK 17 (and 25 at depth 10), configurations
   (a)-(e) interleaved.
2. The JVM's own speed with and without -XX:+PreserveFramePointer, no preload
   (scripts/bench/JvmSpeed.java), JDK 17 and 25, paired runs.
3. Instructions per recorded malloc under callgrind, HotSpot walk against frame pointers.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

work, calls, repeats, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cg_calls = [int(x) for x in sys.argv[5].split(",")] if sys.argv[5] != "0" else []
root = os.getcwd()
preload = os.path.join(root, "target/release/libjeprof_preload.so")
analyzer = os.path.join(root, "target/release/jeprof-rs")
JDK17 = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
JDK25 = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java"
PFP = "-XX:+PreserveFramePointer"
DEPTHS = (0, 10)
median = statistics.median
# Nothing from the caller's environment changes the JVM's behaviour.
BASE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "LD_PRELOAD",
                         "JEPROF_CONF")}


def profiled(conf):
    prefix = f"prof_prefix:{work}/dumps/jeprof"
    return {"LD_PRELOAD": preload, "JEPROF_CONF": f"{prefix},{conf}" if conf else prefix}


EXACT = "lg_prof_sample:0"
CONFIGS = [
    ("a", "uninstrumented", [], {}),
    ("b", "exact, HotSpot walk", [], profiled(EXACT)),
    ("c", "exact, +PFP, prof_java:false", [PFP], profiled(EXACT + ",prof_java:false")),
    ("d", "exact, +PFP, HotSpot walk", [PFP], profiled(EXACT)),
    ("e", "sampled (default), no flags", [], profiled("")),
]


def clean():
    d = os.path.join(work, "dumps")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)


def timed(argv, env):
    """Wall and CPU (user+sys of the child, all its threads, from wait4)."""
    clean()
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=dict(BASE_ENV, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_java: {' '.join(argv)} failed ({proc.returncode})")
    return wall, usage.ru_utime + usage.ru_stime, out


def churn_argv(java, flags, n, depth):
    return [java] + flags + [f"-Djava.library.path={work}", "-cp", work, "JniChurn", str(n),
                             str(depth)]


def count_mallocs(java, depth):
    """Every malloc/calloc/realloc of the run (the JVM's own too), all recorded in exact mode."""
    out = os.path.join(work, "count")
    timed(churn_argv(java, [], calls, depth),
          {"LD_PRELOAD": os.path.join(work, "count_malloc.so"), "COUNT_MALLOC_OUT": out})
    return int(open(out).read())


def java_frames(java, flags, env, depth):
    """Frames between the JVM's call stub and the JNI function in the deepest recorded stack
    of a kept block (named Java methods or bare addresses)."""
    timed(churn_argv(java, flags, calls, depth), env)
    dumps = [f for f in os.listdir(os.path.join(work, "dumps"))
             if f.endswith(".f.heap") and ".mmap." not in f]
    if not dumps:
        return "-"
    out = subprocess.run([analyzer, "collapsed", os.path.join(work, "dumps", dumps[0])],
                         capture_output=True, text=True).stdout
    best = None
    for line in out.splitlines():
        stack = line.rsplit(" ", 1)[0].split(";")
        if stack[-1] != "churn_block" or "Java_JniChurn_churn" not in stack:
            continue
        top = stack.index("Java_JniChurn_churn")
        helper = [i for i, f in enumerate(stack) if f.startswith("JavaCalls::call_helper")]
        if not helper:
            continue
        frames = stack[helper[0] + 1:top]
        named = sum(1 for f in frames if not f.startswith("0x"))
        if best is None or len(frames) > best[0]:
            best = (len(frames), named)
    if best is None:
        return "no kept block sampled"
    return f"{best[0]} ({best[1]} named)"


def interleave(cfgs, rounds, run):
    """`rounds` rounds of every configuration, in opposite orders in alternate rounds."""
    results = {c[0]: [] for c in cfgs}
    for i in range(rounds):
        for c in (cfgs if i % 2 == 0 else cfgs[::-1]):
            results[c[0]].append(run(c))
    return results


def part1(java, label, depth):
    mallocs = count_mallocs(java, depth)
    res = interleave(CONFIGS, repeats,
                     lambda c: timed(churn_argv(java, c[2], calls, depth), c[3])[:2])
    a = res["a"]
    wall_a, cpu_a = median(r[0] for r in a), median(r[1] for r in a)
    print(f"\n{label}, JniChurn {calls:,} JNI calls, {depth} Java frames of recursion above "
          f"the JNI call; {mallocs:,} mallocs in all (the JVM's own too); median of "
          f"{repeats} interleaved rounds")
    print(f"{'':3}{'configuration':<30} {'wall s':>7} {'cpu s':>7} {'wall x':>7} {'cpu x':>6} "
          f"{'paired':>7} {'ns/malloc':>10}  frames JavaCalls..JNI")
    cpu = {}
    for key, name, flags, env in CONFIGS:
        r = res[key]
        wall, cpu[key] = median(x[0] for x in r), median(x[1] for x in r)
        paired = median(x[1] / y[1] for x, y in zip(r, a))
        ns = (cpu[key] - cpu_a) / mallocs * 1e9
        frames = java_frames(java, flags, env, depth) if key != "a" else ""
        print(f"({key}) {name:<30} {wall:7.3f} {cpu[key]:7.3f} {wall / wall_a:7.2f} "
              f"{cpu[key] / cpu_a:6.2f} {paired:7.2f} {ns if key != 'a' else 0:10.0f}  {frames}")
    print(f"    HotSpot walk over the frame-pointer walk: (b)-(c) "
          f"{(cpu['b'] - cpu['c']) / mallocs * 1e9:.0f} ns/malloc, (d)-(c) "
          f"{(cpu['d'] - cpu['c']) / mallocs * 1e9:.0f} ns/malloc ((c) repeats its last walk "
          f"from the memo, memo.rs; so does the HotSpot walk, with one more compared word per compiled frame)")


def part2(java, label):
    argv = [java, "-cp", work, "JvmSpeed", "10", "40"]
    cfgs = [("off", "no flag", []), ("on", PFP, [PFP])]

    def run(c):
        wall, cpu, out = timed(argv[:1] + c[2] + argv[1:], {})
        m = re.search(r"steady_ms (\S+) recursion (\S+) virtual (\S+) sort (\S+) strings (\S+)",
                      out)
        return [float(x) for x in m.groups()] + [cpu, wall]

    res = interleave(cfgs, pairs, run)
    print(f"\n{label}: JvmSpeed, steady phase (40 rounds after 10 warm-up), no preload; "
          f"median of {pairs} interleaved pairs")
    print(f"{'':26}{'steady ms':>9} {'recursion':>10} {'virtual':>8} {'sort':>7} "
          f"{'strings':>8} {'cpu s':>7} {'wall s':>7}")
    med = {}
    for key, name, _ in cfgs:
        med[key] = [median(r[i] for r in res[key]) for i in range(7)]
        print(f"{name:<26}" + " ".join(f"{v:{w}.{p}f}" for v, w, p in zip(
            med[key], (9, 10, 8, 7, 8, 7, 7), (0, 0, 0, 0, 0, 2, 2))))
    ratio = [med["on"][i] / med["off"][i] for i in range(7)]
    print(f"{'ratio with/without':<26}" + " ".join(f"{v:{w}.3f}" for v, w in zip(
        ratio, (9, 10, 8, 7, 8, 7, 7))))
    paired_steady = median(x[0] / y[0] for x, y in zip(res["on"], res["off"]))
    paired_cpu = median(x[5] / y[5] for x, y in zip(res["on"], res["off"]))
    print(f"{'paired ratio (median)':<26}{paired_steady:9.3f} {'':>10} {'':>8} {'':>7} "
          f"{'':>8} {paired_cpu:7.3f}")


def callgrind_ir(java, flags, env, n, depth, keep=None):
    out = keep or os.path.join(work, "cg.out")
    argv = ["valgrind", "--tool=callgrind", "--smc-check=all", f"--callgrind-out-file={out}",
            java, "-Xbatch"] + flags + churn_argv("", [], n, depth)[1:]
    clean()
    p = subprocess.run(argv, env=dict(BASE_ENV, **env), capture_output=True, text=True)
    m = re.search(r"I\s+refs:\s+([\d,]+)", p.stderr)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"callgrind failed ({p.returncode}): {p.stderr[-500:]}")
    return int(m.group(1).replace(",", ""))


def breakdown(path, mallocs):
    """Inclusive instructions per malloc of the preload's sampling path and its parts, from
    callgrind_annotate (the JVM's own mallocs and start-up included: a few percent)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    parts = [("profiler::sample", "record"), ("unwind::x86::walk", "walk"),
             ("hotspot::step", "hotspot::step"), ("hotspot::scopes", "of which scopes")]
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+\S*?:jeprof_preload::(\S+) \[", line)
        if m and m.group(2) not in found:
            found[m.group(2)] = int(m.group(1).replace(",", ""))
    return ", ".join(f"{label} {found[fn] / mallocs:.0f}" for fn, label in parts if fn in found)


def part3(java):
    if not shutil.which("valgrind"):
        print("\ncallgrind: valgrind not installed (apt-get install valgrind): skipped")
        return
    n1, n2 = cg_calls
    print(f"\ninstructions per JNI malloc under callgrind (JDK 17, -Xbatch so that compilation "
          f"is not left to chance; (Ir({n2:,}) - Ir({n1:,})) / {n2 - n1:,}, which cancels "
          f"start-up and the JVM's own mallocs):")
    for depth in DEPTHS:
        ir = {}
        start = time.monotonic()
        for key, name, flags, env in CONFIGS[:3]:
            keep = os.path.join(work, f"cg.{key}.{depth}") if key == "b" else None
            try:
                ir[key] = (callgrind_ir(java, flags, env, n2, depth, keep)
                           - callgrind_ir(java, flags, env, n1, depth)) / (n2 - n1)
            except RuntimeError as e:
                print(f"  depth {depth}: ({key}) {e}")
                return
        print(f"  depth {depth:2}: (a) {ir['a']:6.0f}  (b) {ir['b']:6.0f}  (c) {ir['c']:6.0f}"
              f"  => recorded malloc: HotSpot walk (b)-(a) {ir['b'] - ir['a']:.0f}, "
              f"frame pointers (c)-(a) {ir['c'] - ir['a']:.0f}, ratio "
              f"{(ir['b'] - ir['a']) / (ir['c'] - ir['a']):.1f}x  "
              f"[{time.monotonic() - start:.0f} s]")
        print(f"            (b) Ir per JNI malloc, inclusive, at {n2:,} calls: "
              + breakdown(os.path.join(work, f"cg.b.{depth}"), n2))


t0 = time.monotonic()
for depth in DEPTHS:
    part1(JDK17, "JDK 17", depth)
if os.path.exists(JDK25):
    part1(JDK25, "JDK 25", 10)
print(f"[part 1: {time.monotonic() - t0:.0f} s]")
t1 = time.monotonic()
part2(JDK17, "JDK 17")
if os.path.exists(JDK25):
    part2(JDK25, "JDK 25")
print(f"[part 2: {time.monotonic() - t1:.0f} s]")
t2 = time.monotonic()
if cg_calls:
    part3(JDK17)
    print(f"[part 3: {time.monotonic() - t2:.0f} s]")
