//! Unsampling: from the counts a sampling profiler wrote to estimates of the true counts.
//! The formulas are jeprof's `AdjustSamples`, so both tools print the same numbers.
//!
//! Poisson sampling (jemalloc, tcmalloc "v2"): bytes between samples are exponential with mean
//! `R`, so an allocation of `z` bytes is sampled with probability `p(z) = 1 - exp(-z/R)`. A stack
//! whose sampled allocations average `z = s/n` bytes therefore stands for `n/p(z)` allocations
//! and `s/p(z)` bytes: scale both by `1/(1 - exp(-(s/n)/R))`. (jemalloc >= 5.3 writes counts so
//! that this per-stack average gives unbiased totals; see `prof_do_unbias` in jemalloc.)
//! The in-use pair and the allocated pair are scaled independently.
//!
//! With `R <= 1` every allocation was recorded: no scaling at all (jeprof would still scale by
//! `1/(1-e^-z)`, a rounding-level error that would break exact-byte assertions).
//!
//! Old uniform sampling (gperftools "heap" v1): the expected interval is `A` (half the written
//! rate); a stack whose average size is below `A` is scaled by `A / avg`.

use crate::profile::{RawCounts, Sampling, Values};

/// Scale one `(objects, bytes)` pair.
pub fn unsample_pair(sampling: Sampling, objects: u64, bytes: u64) -> (f64, f64) {
    let (n, s) = (objects as f64, bytes as f64);
    if objects == 0 {
        return (n, s);
    }
    match sampling {
        Sampling::Exact => (n, s),
        Sampling::Poisson { period } if period <= 1.0 => (n, s),
        Sampling::Poisson { period } => {
            let ratio = (s / n) / period;
            let probability = -(-ratio).exp_m1(); // 1 - exp(-ratio), accurate for small ratios
            if probability > 0.0 {
                let scale = 1.0 / probability;
                (n * scale, s * scale)
            } else {
                (n, s)
            }
        }
        Sampling::Uniform { adjustment } => {
            if adjustment <= 0.0 {
                return (n, s);
            }
            let ratio = (s / n) / adjustment;
            if ratio < 1.0 && ratio > 0.0 {
                (n / ratio, s / ratio)
            } else {
                (n, s)
            }
        }
    }
}

/// Scale all four numbers of a stack.
pub fn unsample(sampling: Sampling, raw: RawCounts) -> Values {
    let (inuse_objects, inuse_bytes) = unsample_pair(sampling, raw.inuse_objects, raw.inuse_bytes);
    let (alloc_objects, alloc_bytes) = unsample_pair(sampling, raw.alloc_objects, raw.alloc_bytes);
    Values {
        inuse_objects,
        inuse_bytes,
        alloc_objects,
        alloc_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// jeprof's formula, written the way the perl code writes it.
    fn jeprof(n: f64, s: f64, r: f64) -> (f64, f64) {
        let ratio = ((s * 1.0) / n) / r;
        let scale = 1.0 / (1.0 - (-ratio).exp());
        (n * scale, s * scale)
    }

    #[test]
    fn poisson_matches_jeprof() {
        for &(n, s, r) in &[
            (1u64, 2048u64, 524288.0),
            (28106, 56637512, 524288.0),
            (3, 3_000_000, 524288.0),
            (10, 80, 4096.0),
        ] {
            let (en, es) = jeprof(n as f64, s as f64, r);
            let (gn, gs) = unsample_pair(Sampling::Poisson { period: r }, n, s);
            assert!((gn - en).abs() <= en * 1e-9, "{n} {s} {r}: {gn} vs {en}");
            assert!((gs - es).abs() <= es * 1e-9, "{n} {s} {r}: {gs} vs {es}");
        }
    }

    #[test]
    fn big_allocations_are_barely_scaled() {
        let (n, s) = unsample_pair(Sampling::Poisson { period: 524288.0 }, 1, 100 << 20);
        assert_eq!(n, 1.0);
        assert_eq!(s, (100 << 20) as f64);
    }

    #[test]
    fn exact_is_exact() {
        assert_eq!(
            unsample_pair(Sampling::Poisson { period: 1.0 }, 3, 3000),
            (3.0, 3000.0)
        );
        assert_eq!(unsample_pair(Sampling::Exact, 3, 3000), (3.0, 3000.0));
        assert_eq!(
            unsample_pair(Sampling::Poisson { period: 524288.0 }, 0, 0),
            (0.0, 0.0)
        );
    }

    #[test]
    fn uniform_matches_jeprof_v1() {
        // avg 100 bytes, adjustment 1000: ratio 0.1, scale by 10.
        assert_eq!(
            unsample_pair(Sampling::Uniform { adjustment: 1000.0 }, 2, 200),
            (20.0, 2000.0)
        );
        // avg above the adjustment: unchanged.
        assert_eq!(
            unsample_pair(Sampling::Uniform { adjustment: 10.0 }, 2, 200),
            (2.0, 200.0)
        );
    }
}
