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

/// Bytes until the next sample. `lg_sample == 0` means every allocation: the countdown stays
/// at 0, so that any allocation (even of 0 bytes) takes the slow path.
pub fn next_wait(rng: &mut u64, lg_sample: u32) -> i64 {
    if lg_sample == 0 {
        return 0;
    }
    // u in (0, 1]: 53 random bits, never zero.
    let u = ((next_u64(rng) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let p = 1.0 / (1u64 << lg_sample) as f64;
    // ln(1 - p) computed as ln_1p(-p) keeps precision for tiny p.
    let wait = (u.ln() / (-p).ln_1p()).floor() + 1.0;
    if wait >= i64::MAX as f64 {
        i64::MAX
    } else {
        wait as i64
    }
}

/// The weight of one sampled allocation of `size` bytes: (objects in fixed point, bytes).
pub fn weight(size: u64, lg_sample: u32) -> (u64, u64) {
    if lg_sample == 0 {
        return (OBJ_ONE, size);
    }
    let r = (1u64 << lg_sample) as f64;
    // A 0-byte allocation cannot be sampled by the countdown, except as the first
    // allocation of a thread; count it like a 1-byte one.
    let s = size.max(1) as f64;
    let w = 1.0 / -(-s / r).exp_m1();
    (
        (w * OBJ_ONE as f64).round() as u64,
        (w * size as f64).round() as u64,
    )
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
        assert_eq!(next_wait(&mut rng, 0), 0);
        assert_eq!(weight(123, 0), (OBJ_ONE, 123));
        assert_eq!(rebias(5 * OBJ_ONE, 5000, 0), (5, 5000));
    }

    #[test]
    fn waits_are_geometric_with_mean_r() {
        let mut rng = seed(1, 2, 3);
        let n = 200_000;
        let lg = 12;
        let sum: f64 = (0..n).map(|_| next_wait(&mut rng, lg) as f64).sum();
        let mean = sum / n as f64;
        // Exponential with mean R: sd of the mean is R/sqrt(n) ≈ 9.2; allow 5 sd.
        assert!(
            (mean - 4096.0).abs() < 5.0 * 4096.0 / (n as f64).sqrt(),
            "mean {mean}"
        );
        assert!((0..1000).all(|_| next_wait(&mut rng, lg) >= 1));
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
        let mut countdown = next_wait(&mut rng, lg);
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
                countdown = next_wait(&mut rng, lg);
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
