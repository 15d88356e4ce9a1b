"""Runs the benchmark configurations and prints the tables (called by scripts/bench.sh)."""
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

work, iters, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
only = sys.argv[4] if len(sys.argv) > 4 else "all"
root = os.getcwd()
preload = os.path.join(root, "target/release/libjeprof_preload.so")
jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
prog = os.path.join(work, "alloc_heavy")
GNU_TIME = "/usr/bin/time"
if not os.path.exists(GNU_TIME):
    raise SystemExit("bench: needs GNU time (apt-get install time)")

SAMPLED = {"LD_PRELOAD": preload, "JEPROF_CONF": f"prof_prefix:{work}/s"}
EXACT = {"LD_PRELOAD": preload, "JEPROF_CONF": f"prof_prefix:{work}/e,lg_prof_sample:0"}
# The floor: what a preload costs before it profiles anything (scripts/bench/floor.c).
FLOOR_JUMP = {"LD_PRELOAD": os.path.join(work, "floor_jump.so")}
FLOOR_COUNTDOWN = {"LD_PRELOAD": os.path.join(work, "floor_countdown.so")}


def configs(threads):
    cmd = [prog, str(threads), str(iters)]
    yield "plain", cmd, {}
    yield "floor: forwarding only", cmd, FLOOR_JUMP
    yield "floor: + byte countdown", cmd, FLOOR_COUNTDOWN
    yield "jeprof sampled (512 KiB)", cmd, SAMPLED
    yield "jeprof exact", cmd, EXACT
    if os.path.exists(jemalloc):
        yield "jemalloc, no profiling", cmd, {"LD_PRELOAD": jemalloc}
        yield "jemalloc prof (512 KiB)", cmd, {
            "LD_PRELOAD": jemalloc, "MALLOC_CONF": f"prof:true,prof_final:true,prof_prefix:{work}/j"}
    if shutil.which("heaptrack"):
        yield "heaptrack", ["heaptrack", "-o", f"{work}/ht"] + cmd, {}


def clean():
    for f in os.listdir(work):
        if f.endswith((".heap", ".zst", ".gz")):
            os.remove(os.path.join(work, f))


def run_once(argv, env):
    """Wall time from here; CPU from the kernel's accounting of the child (microseconds, where
    GNU time prints hundredths, 3% of a 0.3 s run); peak RSS from GNU time, whose own footprint
    is tiny (a child spawned straight from Python inherits Python's peak RSS through vfork)."""
    full = dict(os.environ, **env)
    stats = os.path.join(work, "time.out")
    start = time.monotonic()
    proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", stats] + argv, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {argv[0]} failed with status {proc.returncode}")
    maxrss_kb = open(stats).read().split()[-1]
    clean()
    return wall, usage.ru_utime + usage.ru_stime, int(maxrss_kb) * 1024


def table(threads):
    # Rounds interleave the configurations, so that a machine that drifts (a VM's neighbours)
    # moves all of them alike instead of whichever ran during the drift.
    cfgs = list(configs(threads))
    runs = [[] for _ in cfgs]
    interleave(cfgs, runs)
    rows = summarize(cfgs, runs)
    pairs = threads * iters
    base = rows[0]
    print(f"\n{threads} thread(s) x {iters} malloc/free pairs, median of {repeats} interleaved rounds")
    print(f"{'configuration':<26} {'wall s':>8} {'cpu s':>8} {'peak RSS':>9} {'wall x':>7} "
          f"{'cpu x':>7} {'paired':>7} {'ns/pair':>8}")
    for name, wall, cpu, rss, paired in rows:
        print(f"{name:<26} {wall:8.3f} {cpu:8.3f} {rss / 2**20:8.1f}M {wall / base[1]:7.2f} "
              f"{cpu / base[2]:7.2f} {paired:7.2f} {cpu / pairs * 1e9:8.1f}")
    # What the profiler adds to a preload that already forwards and counts down.
    at = {name: acc for (name, _, _), acc in zip(cfgs, runs)}
    floor = at["floor: + byte countdown"]
    print("over the floor (+ countdown), paired: " + ", ".join(
        f"{name} {statistics.median(a[1] / b[1] for a, b in zip(at[name], floor)):.2f}x"
        for name in ("jeprof sampled (512 KiB)", "jeprof exact")))
    return {name: cpu / pairs * 1e9 for name, _, cpu, _, _ in rows}


def interleave(cfgs, runs):
    """`repeats` rounds of every configuration, in opposite orders in alternate rounds, so that
    neither a drift nor the run before it (a cache or clock left warm or cold) favours one."""
    for i in range(repeats):
        order = list(zip(cfgs, runs))
        for (_, argv, env), acc in (order if i % 2 == 0 else order[::-1]):
            acc.append(run_once(argv, env))


def summarize(cfgs, runs):
    """Per configuration: median wall and CPU, peak RSS, and the median over rounds of the CPU
    ratio to the plain run of the same round ("paired"), which a drift between rounds moves
    less than the ratio of the medians."""
    return [(name, statistics.median(r[0] for r in acc), statistics.median(r[1] for r in acc),
             max(r[2] for r in acc),
             statistics.median(a[1] / b[1] for a, b in zip(acc, runs[0])))
            for (name, _, _), acc in zip(cfgs, runs)]


def attached_vs_preloaded():
    """The profiler attached to a running process (as `jeprof-rs attach` does) against the same
    profiler preloaded, on the same program, in paired rounds; and attached then detached.
    C: alloc_heavy's workload (scripts/bench/alloc_attach.c attaches itself before its threads
    start). Java: scripts/bench/NativeChurn.java (zlib state malloc'd and freed per round,
    through libzip/libz), attached with `jeprof-rs attach` after the JVM printed "ready"; its
    CPU time includes the JVM's start-up, which the preloaded run profiles and the attached one
    does not."""
    prog = os.path.join(work, "alloc_attach")
    conf = f"prof_prefix:{work}/a"
    for threads in (1, 2):
        cmd = [prog, str(threads), str(iters)]
        cfgs = [
            ("plain", cmd, {}),
            ("floor: + byte countdown", cmd, FLOOR_COUNTDOWN),
            ("preloaded, sampled", cmd, SAMPLED),
            ("attached, sampled", cmd + [preload, conf], {}),
            ("attached, then detached", cmd + [preload, conf, "detach"], {}),
        ]
        runs = [[] for _ in cfgs]
        interleave(cfgs, runs)
        rows = summarize(cfgs, runs)
        at = dict(zip((c[0] for c in cfgs), runs))
        pairs = threads * iters
        print(f"\nattached vs preloaded, C: {threads} thread(s) x {iters} malloc/free pairs, "
              f"median of {repeats} interleaved rounds")
        print(f"  {'configuration':<26} {'cpu s':>8} {'cpu x':>7} {'paired':>7} {'ns/pair':>8}")
        for name, _, cpu, _, paired in rows:
            print(f"  {name:<26} {cpu:8.3f} {cpu / rows[0][2]:7.2f} {paired:7.2f} "
                  f"{cpu / pairs * 1e9:8.1f}")
        ratio = statistics.median(a[1] / b[1] for a, b in
                                  zip(at["attached, sampled"], at["preloaded, sampled"]))
        print(f"  attached / preloaded, paired: {ratio:.3f}x")

    if shutil.which("valgrind"):
        # Deterministic: instructions per pair (two lengths, as above), which this VM's noisy
        # CPU times cannot resolve to a few percent.
        short, long_ = 200000, 1000000
        print(f"\nattached vs preloaded, C, instructions (callgrind, 1 thread; per pair from "
              f"{short:,} and {long_:,} pairs):")
        base = None
        for name, extra, env in (("plain", [], {}),
                                 ("floor: + byte countdown", [], FLOOR_COUNTDOWN),
                                 ("preloaded, sampled", [], SAMPLED),
                                 ("attached, sampled", [preload, conf], {}),
                                 ("attached, then detached", [preload, conf, "detach"], {})):
            counts = []
            for n in (short, long_):
                out = subprocess.run(["valgrind", "--tool=callgrind",
                                      f"--callgrind-out-file={work}/cg.out", prog, "1", str(n)]
                                     + extra, env=dict(os.environ, **env),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                m = re.search(r"Collected : (\d+)", out.stderr)
                if not m:
                    raise SystemExit(f"bench: callgrind failed for {name}")
                counts.append(int(m.group(1)))
                clean()
            pp = (counts[1] - counts[0]) / (long_ - short)
            base = base or pp
            print(f"  {name:<26} {pp:9.1f} {pp / base:7.3f}")

    java, javac = shutil.which("java"), shutil.which("javac")
    analyzer = os.path.join(root, "target/release/jeprof-rs")
    if not (java and javac and os.path.exists(analyzer)):
        print("\nattached vs preloaded, Java: skipped (java, javac or target/release/jeprof-rs "
              "missing)")
        return
    subprocess.run([javac, "-d", work, os.path.join(root, "scripts/bench/NativeChurn.java")],
                   check=True)
    rounds = 400000

    def java_once(mode):
        env = dict(os.environ)
        for k in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "LD_PRELOAD"):
            env.pop(k, None)
        if mode == "preloaded":
            env.update(SAMPLED)
        argv = [java, "-XX:+UseSerialGC", "-Xmx256m", "-cp", work, "NativeChurn", str(rounds)]
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("bench: NativeChurn did not start")
        if mode == "attached":
            subprocess.run([analyzer, "attach", "--preload", preload, "--out", work,
                            str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
        elif mode == "plain + jcmd":
            # What the attach mechanism itself costs the JVM (its attach listener started, a
            # command served), without the profiler.
            subprocess.run([analyzer, "jcmd", str(proc.pid), "VM.version"], check=True,
                           stdout=subprocess.DEVNULL)
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"bench: NativeChurn failed ({mode})")
        for f in os.listdir(work):
            if f.endswith(".heap"):
                os.remove(os.path.join(work, f))
        return wall, usage.ru_utime + usage.ru_stime

    modes = ["plain", "plain + jcmd", "preloaded", "attached"]
    runs = {m: [] for m in modes}
    for i in range(repeats):
        for m in (modes if i % 2 == 0 else modes[::-1]):
            runs[m].append(java_once(m))
    print(f"\nattached vs preloaded, Java: NativeChurn {rounds} rounds (a Deflater and an "
          f"Inflater each), JVM CPU s incl. start-up, median of {repeats} interleaved rounds")
    base = statistics.median(r[1] for r in runs["plain"])
    for m in modes:
        cpu = statistics.median(r[1] for r in runs[m])
        paired = statistics.median(a[1] / b[1] for a, b in zip(runs[m], runs["plain"]))
        print(f"  {m:<26} {cpu:8.3f} {cpu / base:7.2f} {paired:7.2f}")
    for other in ("preloaded", "plain + jcmd"):
        ratio = statistics.median(a[1] / b[1] for a, b in zip(runs["attached"], runs[other]))
        print(f"  attached / {other}, paired: {ratio:.3f}x")


if only == "attach":
    attached_vs_preloaded()
    sys.exit(0)

one = table(1)
two = table(2)
print("\nper-pair CPU cost, 2 threads vs 1 (no shared cache line written on the fast path "
      "means the same cost per call):")
for name in ("plain", "jeprof sampled (512 KiB)", "jeprof exact"):
    print(f"  {name:<26} {one[name]:6.1f} ns -> {two[name]:6.1f} ns ({two[name] / one[name]:.2f}x)")

# Real programs, for what the profiler costs outside a benchmark built to call malloc: each
# allocates in its own way (sqlite3 through its page cache and malloc, perl through malloc for
# every string, python3 mostly from its own arenas).
SQL = """CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300000)
INSERT INTO t SELECT i, hex(randomblob(16 + i % 48)), i * 0.5 FROM n;
CREATE INDEX tb ON t(b);
SELECT count(*), sum(length(b)) FROM t WHERE b > '8';
"""
sql_file = os.path.join(work, "w.sql")
with open(sql_file, "w") as f:
    f.write(SQL)
PROGRAMS = [
    ("sqlite3", ["sqlite3", ":memory:", f".read {sql_file}"]),
    ("perl", ["perl", "-e", 'my %h; for my $i (1..2000000) { $h{"k$i"} = "v" x ($i % 64); '
              'delete $h{"k".($i-1000)} if $i > 1000 } print scalar(keys %h), "\\n"']),
    ("python3", ["python3", "-c", "import json\n"
                 "d = [{'k': str(i), 'v': [i] * (i % 20)} for i in range(150000)]\n"
                 "print(len(json.loads(json.dumps(d))))"]),
]
print(f"\nreal programs, CPU s (median of {repeats} interleaved rounds) and paired ratio to plain:")
print(f"  {'program':<10} {'plain':>8} {'sampled':>8} {'x':>6} {'exact':>8} {'x':>6}")
for label, argv in PROGRAMS:
    if not shutil.which(argv[0]):
        continue
    same = {"PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    cfgs = [("plain", argv, same), ("sampled", argv, dict(SAMPLED, **same)),
            ("exact", argv, dict(EXACT, **same))]
    runs = [[] for _ in cfgs]
    interleave(cfgs, runs)
    rows = summarize(cfgs, runs)
    print(f"  {label:<10} {rows[0][2]:8.3f} {rows[1][2]:8.3f} {rows[1][4]:6.2f} {rows[2][2]:8.3f} "
          f"{rows[2][4]:6.2f}")

if shutil.which("valgrind"):
    # Two lengths: the difference is the cost per pair, the rest the fixed cost of start-up and
    # the final dump (which a longer run amortizes).
    short, long_ = 200000, 1000000
    counts = {}
    for name, env in (("plain", {}), ("floor: + byte countdown", FLOOR_COUNTDOWN),
                      ("jeprof sampled (512 KiB)", SAMPLED), ("jeprof exact", EXACT)):
        for n in (short, long_):
            out = subprocess.run(["valgrind", "--tool=callgrind",
                                  f"--callgrind-out-file={work}/cg.out", prog, "1", str(n)],
                                 env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            m = re.search(r"Collected : (\d+)", out.stderr)
            if not m:
                raise SystemExit(f"bench: callgrind failed for {name}")
            counts[name, n] = int(m.group(1))
            clean()
    per_pair = {name: (counts[name, long_] - counts[name, short]) / (long_ - short)
                for name, _ in {k[0]: 0 for k in counts}.items()}
    print(f"\ninstructions (callgrind, 1 thread; per pair from {short:,} and {long_:,} pairs):")
    print(f"  {'configuration':<26} {'total, ' + format(long_, ','):>16} {'ratio':>7} "
          f"{'per pair':>9} {'ratio':>7} {'fixed':>11}")
    base_total, base_pair = counts["plain", long_], per_pair["plain"]
    for name, pp in per_pair.items():
        total = counts[name, long_]
        fixed = total - pp * long_
        print(f"  {name:<26} {total:>16,} {total / base_total:7.3f} {pp:9.1f} {pp / base_pair:7.3f} "
              f"{fixed - (base_total - base_pair * long_):>+11,.0f}")

n = 1000000
rss = {}
for name, env in (("plain", {}), ("exact", EXACT)):
    out = subprocess.run([os.path.join(work, "live_blocks"), str(n)], env=dict(os.environ, **env),
                         stdout=subprocess.PIPE, text=True, check=True)
    rss[name] = int(out.stdout.split()[0])
    clean()
print(f"\nexact mode memory: {n} live 32-byte blocks, RSS {rss['plain'] / 2**20:.1f} MiB plain, "
      f"{rss['exact'] / 2**20:.1f} MiB profiled: {(rss['exact'] - rss['plain']) / n:.1f} bytes per live block")

attached_vs_preloaded()
