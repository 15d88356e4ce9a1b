"""Runs the benchmark configurations and prints the table (called by scripts/bench.sh)."""
import os
import shutil
import statistics
import subprocess
import sys
import time

work, prog, threads, iters, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
root = os.getcwd()
preload = os.path.join(root, "target/release/libjeprof_preload.so")
jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
cmd = [prog, threads, iters]


def configs():
    yield "plain", cmd, {}
    yield "jeprof sampled (512 KiB)", cmd, {"LD_PRELOAD": preload, "JEPROF_CONF": f"prof_prefix:{work}/s"}
    yield "jeprof exact", cmd, {"LD_PRELOAD": preload, "JEPROF_CONF": f"prof_prefix:{work}/e,lg_prof_sample:0"}
    if os.path.exists(jemalloc):
        yield "jemalloc (no prof)", cmd, {"LD_PRELOAD": jemalloc}
        yield "jemalloc prof (512 KiB)", cmd, {
            "LD_PRELOAD": jemalloc, "MALLOC_CONF": f"prof:true,prof_final:true,prof_prefix:{work}/j"}
    if shutil.which("heaptrack"):
        yield "heaptrack", ["heaptrack", "-o", f"{work}/ht"] + cmd, {}


GNU_TIME = "/usr/bin/time"


def run_once(argv, env):
    """Wall time from here; CPU and peak RSS from GNU time, whose own footprint is tiny (a
    child spawned straight from Python inherits Python's peak RSS through vfork)."""
    full = dict(os.environ, **env)
    stats = os.path.join(work, "time.out")
    start = time.monotonic()
    proc = subprocess.run([GNU_TIME, "-f", "%U %S %M", "-o", stats] + argv, env=full,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {argv[0]} failed with status {proc.returncode}")
    user, sys_, maxrss_kb = open(stats).read().split()[-3:]
    return wall, float(user) + float(sys_), int(maxrss_kb) * 1024, proc.stdout.decode()


if not os.path.exists(GNU_TIME):
    raise SystemExit("bench: needs GNU time (apt-get install time)")

rows = []
for name, argv, env in configs():
    runs = [run_once(argv, env) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = max(r[2] for r in runs)
    rows.append((name, wall, cpu, rss))
    for f in os.listdir(work):
        if f.endswith(".heap") or f.endswith(".zst") or f.endswith(".gz"):
            os.remove(os.path.join(work, f))

pairs = 2 * int(threads) * int(iters)
base = rows[0]
print(f"workload: {threads} threads x {iters} malloc/free pairs, median of {repeats}; "
      f"plain = {base[2] / (pairs / 2) * 1e9:.1f} ns CPU per pair")
print(f"{'configuration':<26} {'wall s':>8} {'cpu s':>8} {'peak RSS':>10} {'wall x':>7} {'cpu x':>7} {'+RSS MiB':>9}")
for name, wall, cpu, rss in rows:
    print(f"{name:<26} {wall:8.3f} {cpu:8.3f} {rss / 2**20:9.1f}M {wall / base[1]:7.2f} {cpu / base[2]:7.2f} "
          f"{(rss - base[3]) / 2**20:9.1f}")
