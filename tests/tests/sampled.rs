//! Sampled mode: the estimates of `c/sampled.c`'s known totals must be within 4 standard
//! deviations of the truth.
//!
//! The math: with mean sampling interval R bytes and an exponential countdown, a block of s bytes
//! is sampled with p = 1 - exp(-s/R), independently of the other blocks (the exponential
//! distribution is memoryless). An unbiased estimator credits a sampled block with s/p bytes and
//! 1/p objects. Its variance, summed over independent blocks, is
//!     Var(bytes) = Σ s² (1-p)/p        Var(objects) = Σ (1-p)/p.
//! |estimate - truth| ≤ 4 sd fails by chance with probability ≈ 6e-5 per check (normal tail;
//! every site here has hundreds of samples or more); with ~20 checks in this file a false alarm
//! comes once in ~800 runs. A couple of bytes are allowed on top for rounding in the dump.
//!
//! The preload seeds its sampler from time and thread, so repeated runs draw different samples:
//! three runs at R = 2^16, one at the default R = 2^19.

use jeprof_tests::*;

const BIG_BLOCKS: u64 = 100_000;
const MEDIUM_BLOCKS: u64 = 256;
const CHURN_BLOCKS: u64 = 32_768;

fn big_sizes() -> impl Iterator<Item = u64> {
    (0..BIG_BLOCKS).map(|i| 160 + 8 * (i % 128))
}

/// (variance of the byte estimate, variance of the object estimate) for blocks of `sizes`.
fn variance(r: f64, sizes: impl Iterator<Item = u64>) -> (f64, f64) {
    let mut vb = 0.0;
    let mut vo = 0.0;
    for s in sizes {
        let s = s as f64;
        let p = -(-s / r).exp_m1(); // 1 - exp(-s/R), accurate for small s/R
        vb += s * s * (1.0 - p) / p;
        vo += (1.0 - p) / p;
    }
    (vb, vo)
}

fn within(what: &str, est: i64, truth: u64, var: f64, ctx: &str) {
    let sd = var.sqrt();
    let err = (est as f64 - truth as f64).abs();
    eprintln!(
        "{what}: estimate {est}, truth {truth}, error {:.2} sd (sd {sd:.0})",
        err / sd
    );
    assert!(
        err <= 4.0 * sd + 2.0,
        "{what}: estimate {est} vs truth {truth}: off by {err} > 4 sd ({:.0})\n{ctx}",
        4.0 * sd
    );
}

fn check_run(lg: Option<u32>) {
    let dir = TempDir::new("sampled");
    let binary = compile_c("sampled", dir.path(), &[]);
    let conf = match lg {
        Some(lg) => format!("prof_prefix:{},lg_prof_sample:{lg}", dir.prefix()),
        None => format!("prof_prefix:{}", dir.prefix()),
    };
    let r = f64::from(1u32 << lg.unwrap_or(19));
    let out = Run::new(&binary).profiled(&conf).run();
    out.expect_success().expect_quiet();
    let big_truth: u64 = big_sizes().sum();
    assert_eq!(out.value("big"), big_truth.to_string());
    assert_eq!(out.value("medium"), (MEDIUM_BLOCKS * 65536).to_string());
    assert_eq!(out.value("churn"), (CHURN_BLOCKS * 16384).to_string());

    let dump = final_dump(&dir, out.pid);
    let heap = read_heap(&dump);
    assert_eq!(
        heap.period,
        r as u64,
        "{}: header heap_v2/R",
        dump.display()
    );

    let t = top(&dump, &[]);
    let ctx = format!("{}\n{}", t.command, t.render());

    let (vb, _) = variance(r, big_sizes());
    within("leak_big bytes", t.flat("leak_big").0, big_truth, vb, &ctx);

    let (vb, vo) = variance(r, (0..MEDIUM_BLOCKS).map(|_| 65536));
    let (mb, mo) = t.flat("leak_medium");
    within("leak_medium bytes", mb, MEDIUM_BLOCKS * 65536, vb, &ctx);
    within("leak_medium objects", mo, MEDIUM_BLOCKS, vo, &ctx);

    // Everything the churn allocated was freed: no sampled block of it can be live.
    t.expect_absent("churn");

    // Allocated space counts the churn too.
    let a = top(&dump, &["--alloc-space"]);
    let actx = format!("{}\n{}", a.command, a.render());
    let (vb, _) = variance(r, (0..CHURN_BLOCKS).map(|_| 16384));
    within(
        "churn alloc bytes",
        a.flat("churn").0,
        CHURN_BLOCKS * 16384,
        vb,
        &actx,
    );
}

#[test]
fn estimates_within_4_sd_at_64k() {
    for _ in 0..3 {
        check_run(Some(16));
    }
}

#[test]
fn estimates_within_4_sd_at_default_rate() {
    check_run(None);
}
