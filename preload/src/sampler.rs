//! Sampling math: when to take the next sample, and what a sample stands for.
//!
//! **When.** Allocated bytes are treated as a Poisson process with rate 1/R (R = 2^lg_sample,
//! the mean bytes between samples). Each thread keeps a countdown of bytes until its next
//! sample; an allocation that takes the countdown to zero or below is sampled and a fresh
//! countdown is drawn. The gap between samples of a Poisson process is exponential; in whole
//! bytes it is geometric with success probability p = 1/R:
//!
//!   P(wait > k) = (1 - p)^k   ⇒   wait = ⌊ln(u) / ln(1 - p)⌋ + 1,  u ~ Uniform(0, 1]
//!
//! (jemalloc's `prof_sample_new_event_wait` draws the same way). An allocation of s bytes is
//! therefore sampled with probability 1 - exp(-s/R), independent of what came before it.
//!
//! **What it stands for.** To make estimates unbiased, a sampled allocation of s bytes counts
//! as w(s) = 1 / (1 - exp(-s/R)) objects and s·w(s) bytes (Horvitz–Thompson: each sampled
//! item is weighted by the inverse of its inclusion probability). We accumulate those weights
//! per stack, exactly like jemalloc ≥ 5.3 with `prof_unbias`.
//!
//! **How it is written.** `jeprof` (and every tool that copied it) does not read weights: it
//! reads raw sample counts (c, s) per stack and scales both by 1/(1 - exp(-(s/c)/R)). So for
//! each stack we write the (c_in, s_in) that jeprof's scaling maps back onto our unbiased
//! (c_out, s_out). With x = s_in/c_in the average size, jeprof computes
//!   c_out = c_in / (1 - exp(-x/R)),  s_out = s_in / (1 - exp(-x/R)),
//! hence x = s_out / c_out, s_in = s_out · (1 - exp(-x/R)), c_in = s_in / x. This is
//! jemalloc's `prof_do_unbias`. In exact mode (R = 1) every weight is exactly 1 and counts are
//! written as they are.

/// Objects are accumulated in fixed point with this many fractional bits.
pub const OBJ_SHIFT: u32 = 10;
pub const OBJ_ONE: u64 = 1 << OBJ_SHIFT;

/// xorshift64* step; `state` must be non-zero.
#[inline]
pub fn next_u64(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A non-zero seed from per-thread entropy (thread id, clock, an address).
pub fn seed(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a ^ b.rotate_left(21) ^ c.rotate_left(42) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if z == 0 { 1 } else { z }
}

/// ln(1 − 2^-lg_sample), which every draw of `next_wait` divides by: computed once, when the
/// rate is set.
pub fn ln_keep(lg_sample: u32) -> f64 {
    if lg_sample == 0 {
        return f64::NEG_INFINITY;
    }
    // ln_1p keeps precision for tiny p.
    (-1.0 / (1u64 << lg_sample) as f64).ln_1p()
}

/// Bytes until the next sample, with `ln_keep = ln_keep(lg_sample)`. `lg_sample == 0` means
/// every allocation: the countdown stays at 0, so that any allocation (even of 0 bytes) takes
/// the slow path.
pub fn next_wait(rng: &mut u64, lg_sample: u32, ln_keep: f64) -> i64 {
    if lg_sample == 0 {
        return 0;
    }
    // u in (0, 1]: 53 random bits, never zero.
    let u = ((next_u64(rng) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    // Both logarithms are ≤ 0, so the quotient is ≥ 0 and truncation is the floor (without
    // the software `floor` the x86-64 baseline would call).
    let wait = ln(u) / ln_keep;
    if wait >= (i64::MAX - 1) as f64 {
        i64::MAX
    } else {
        wait as i64 + 1
    }
}

/// The natural logarithm of a positive normal `x`, to within a few units in the last place.
///
/// Not libm's: this runs once per sample, hundreds of allocations after the last one, and
/// glibc's `log` reads its lookup tables and constants from cache lines that the application
/// has evicted by then. Here: x = m·2^e with m in [√½, √2), and ln m = 2·atanh(s) with
/// s = (m − 1)/(m + 1), |s| ≤ 0.1716, summed to s^19 (the next term is below 2^-55 of the
/// result).
fn ln(x: f64) -> f64 {
    const FRAC: u64 = (1 << 52) - 1;
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & FRAC) | (1023 << 52));
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let mut sum = 0.0;
    for k in (0..10).rev() {
        sum = sum * z + 1.0 / (2 * k + 1) as f64;
    }
    e as f64 * core::f64::consts::LN_2 + 2.0 * s * sum
}

/// The weight of one sampled allocation of `size` bytes: (objects in fixed point, bytes).
pub fn weight(size: u64, lg_sample: u32) -> (u64, u64) {
    if lg_sample == 0 {
        return (OBJ_ONE, size);
    }
    let r = (1u64 << lg_sample) as f64;
    // A 0-byte allocation cannot be sampled by the countdown, except as the first
    // allocation of a thread; count it like a 1-byte one.
    let x = size.max(1) as f64 / r;
    let w = if x < 0.5 {
        // x / (1 − e^-x) = 1 + x/2 + Σ B_2k x^2k / (2k)!: to x^10, the next term is below
        // 2^-42 of the result. Small blocks (nearly all samples) avoid libm's `expm1` and its
        // cache misses (see `ln`).
        let z = x * x;
        let even = 1.0 / 12.0
            + z * (-1.0 / 720.0
                + z * (1.0 / 30_240.0 + z * (-1.0 / 1_209_600.0 + z * (1.0 / 47_900_160.0))));
        (1.0 + x * 0.5 + z * even) / x
    } else {
        1.0 / -(-x).exp_m1()
    };
    (
        round_up_half(w * OBJ_ONE as f64),
        round_up_half(w * size as f64),
    )
}

/// `v.round() as u64` for v ≥ 0, without the software `round` (no SSE4.1 in the baseline).
fn round_up_half(v: f64) -> u64 {
    (v + 0.5) as u64
}

/// Converts unbiased totals of one stack (objects in fixed point, bytes) into the counts
/// written to the dump, so that jeprof's per-stack scaling recovers them (see module docs).
pub fn rebias(objs_fp: u64, bytes: u64, lg_sample: u32) -> (u64, u64) {
    if lg_sample == 0 {
        return (objs_fp >> OBJ_SHIFT, bytes);
    }
    if objs_fp == 0 || bytes == 0 {
        // Only 0-byte allocations: jeprof cannot scale those; write the plain object count.
        return ((objs_fp + OBJ_ONE / 2) >> OBJ_SHIFT, 0);
    }
    let r = (1u64 << lg_sample) as f64;
    let c_out = objs_fp as f64 / OBJ_ONE as f64;
    let s_out = bytes as f64;
    let x = s_out / c_out;
    let c_star = s_out * -(-x / r).exp_m1() / x;
    // The format holds integers. jeprof's scale depends only on the average s_in/c_in, so we
    // keep that average exactly x and round the count: both objects and bytes then come back
    // within 0.5/c_in relative (exact for single-size stacks; a stack mixing tiny and huge
    // blocks with only a few samples is as precise as its sample count allows).
    let c_in = c_star.round().max(1.0);
    (c_in as u64, (c_in * x).round() as u64)
}

/// jeprof's `AdjustSamples` for heap_v2, for checking `rebias` against the reader's side.
pub fn jeprof_scale(c: f64, s: f64, period: f64) -> (f64, f64) {
    if c == 0.0 || period <= 1.0 {
        return (c, s);
    }
    let scale = 1.0 / (1.0 - (-(s / c) / period).exp());
    (c * scale, s * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_mode_is_exact() {
        let mut rng = 1;
        assert_eq!(next_wait(&mut rng, 0, ln_keep(0)), 0);
        assert_eq!(weight(123, 0), (OBJ_ONE, 123));
        assert_eq!(rebias(5 * OBJ_ONE, 5000, 0), (5, 5000));
    }

    #[test]
    fn ln_matches_libm() {
        let mut rng = seed(4, 5, 6);
        for _ in 0..200_000 {
            let u = ((next_u64(&mut rng) >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let want = u.ln();
            assert!(
                (ln(u) - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "{u}"
            );
        }
        for lg in 1..=40 {
            let p = 1.0 / (1u64 << lg) as f64;
            let want = (-p).ln_1p();
            let got = ln(1.0 - p);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "lg {lg}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.5), -core::f64::consts::LN_2);
    }

    #[test]
    fn waits_match_the_libm_formula() {
        for lg in [1, 12, 19, 40] {
            let (mut a, mut b) = (seed(1, lg as u64, 3), seed(1, lg as u64, 3));
            let p = 1.0 / (1u64 << lg) as f64;
            for _ in 0..50_000 {
                let u = ((next_u64(&mut a) >> 11) + 1) as f64 / (1u64 << 53) as f64;
                let want = (u.ln() / (-p).ln_1p()).floor() as i64 + 1;
                let got = next_wait(&mut b, lg, ln_keep(lg));
                // Equal but where the quotient is within rounding of an integer.
                assert!(got.abs_diff(want) <= 1, "lg {lg}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn weights_match_the_closed_form() {
        // Sizes on both sides of the series' range (x = size / R < 0.5) and at its edge.
        for lg in [1, 10, 14, 19, 30] {
            let r = (1u64 << lg) as f64;
            let mut size = 1u64;
            while size < 1 << 42 {
                for s in [size, size + 1, (r / 2.0) as u64, (r / 2.0) as u64 + 1] {
                    let w = 1.0 / -(-(s.max(1) as f64) / r).exp_m1();
                    let (o, b) = weight(s, lg);
                    let want = (w * OBJ_ONE as f64).round() as u64;
                    assert!(o.abs_diff(want) <= 1, "lg {lg} size {s}: {o} vs {want}");
                    let want = w * s as f64;
                    assert!(
                        (b as f64 - want).abs() <= 0.5 + want * 1e-12,
                        "lg {lg} size {s}"
                    );
                }
                size = size * 3 + 1;
            }
        }
    }

    #[test]
    fn waits_are_geometric_with_mean_r() {
        let mut rng = seed(1, 2, 3);
        let n = 200_000;
        let lg = 12;
        let sum: f64 = (0..n)
            .map(|_| next_wait(&mut rng, lg, ln_keep(lg)) as f64)
            .sum();
        let mean = sum / n as f64;
        // Exponential with mean R: sd of the mean is R/sqrt(n) ≈ 9.2; allow 5 sd.
        assert!(
            (mean - 4096.0).abs() < 5.0 * 4096.0 / (n as f64).sqrt(),
            "mean {mean}"
        );
        assert!((0..1000).all(|_| next_wait(&mut rng, lg, ln_keep(lg)) >= 1));
    }

    #[test]
    fn rebias_round_trips_through_jeprof_scaling() {
        let lg = 19;
        let period = (1u64 << lg) as f64;
        // Sampled allocations of mixed sizes on one stack.
        let sizes = [16u64, 16, 4096, 100_000, 3_000_000];
        let (mut c, mut s) = (0u64, 0u64);
        for &sz in &sizes {
            let (wc, ws) = weight(sz, lg);
            c += wc;
            s += ws;
        }
        let (c_in, s_in) = rebias(c, s, lg);
        let (c_back, s_back) = jeprof_scale(c_in as f64, s_in as f64, period);
        let c_out = c as f64 / OBJ_ONE as f64;
        // The format holds integers: c_in is rounded, so both come back within 0.5/c_in.
        let tol = 0.5 / c_in as f64 + 1e-6;
        assert!((c_back - c_out).abs() / c_out <= tol, "{c_back} vs {c_out}");
        assert!(
            (s_back - s as f64).abs() / (s as f64) <= tol,
            "{s_back} vs {s}"
        );
    }

    #[test]
    fn single_sample_rebiases_to_itself() {
        let (c, s) = weight(16, 19);
        assert_eq!(rebias(c, s, 19), (1, 16));
        let (c, s) = weight(10 << 20, 19);
        assert_eq!(rebias(c, s, 19), (1, 10 << 20));
    }

    /// The estimator is unbiased: simulate the sampler over a known population.
    #[test]
    fn estimates_are_unbiased() {
        let lg = 14;
        let mut rng = seed(7, 8, 9);
        let mut countdown = next_wait(&mut rng, lg, ln_keep(lg));
        let (mut est_bytes, mut true_bytes) = (0f64, 0f64);
        let mut var = 0f64;
        let r = (1u64 << lg) as f64;
        for i in 0..300_000u64 {
            let size = 16 + (i * 7919) % 2000;
            true_bytes += size as f64;
            let p = -(-(size as f64) / r).exp_m1();
            var += (size as f64).powi(2) * (1.0 - p) / p;
            countdown -= size as i64;
            if countdown <= 0 {
                countdown = next_wait(&mut rng, lg, ln_keep(lg));
                est_bytes += weight(size, lg).1 as f64;
            }
        }
        let sd = var.sqrt();
        assert!(
            (est_bytes - true_bytes).abs() < 4.0 * sd,
            "est {est_bytes} true {true_bytes} sd {sd}"
        );
    }
}
