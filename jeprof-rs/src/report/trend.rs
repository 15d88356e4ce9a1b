//! `trend DUMPS...`: sites whose in-use bytes keep growing across a series of dumps of one
//! process and one kind (the CLI groups the inputs; this module sees one group, in time order).
//!
//! For each site (innermost frame, grouped like `top`), its flat in-use bytes form a series
//! `y_0 .. y_n-1` (0 when absent from a dump). The site is **growing** when all three hold:
//!
//! 1. **It rose in at least 2/3 of the intervals**: `y_i+1 > y_i` for at least
//!    `ceil(2/3 · (n − 1))` of the `n − 1` intervals. Equal values count as not rising, so a
//!    site that sits still most of the time (a cache filled once, a sampled site that gets a
//!    new sample now and then) is not a leak, and noise that goes up as often as down is not
//!    either.
//! 2. **It grew by more than the noise floor**: `y_n-1 − y_0 > max(1% of the group's largest
//!    total, one sample period)`. Below one sample period a sampled estimate cannot tell growth
//!    from one extra sample; below 1% of the heap the growth does not matter yet.
//! 3. **It never fell back by more than half its growth**: the largest drop from any value to
//!    a later one is at most `(y_n-1 − y_0) / 2`. A spike that is freed again, or a site that
//!    grows and is then trimmed, is not a steady leak.
//!
//! Growing sites are ranked by their growth `y_n-1 − y_0`. The rate printed is that growth over
//! the time between the first and the last dump, per hour, and only when that span is at least
//! ten minutes: a rate extrapolated from seconds says nothing about an hour. Shorter series
//! print the growth and the span (`+12.0 MiB over 2.1 s`), series without `# time:` metadata
//! the growth and the number of dumps.
//!
//! Known blind spot: a leak slower than about one sample period per interval rises in fewer
//! than 2/3 of the intervals (most intervals get no new sample) and is not reported; dump less
//! often, or sample more (`run --sample`), to see it.

use std::collections::HashMap;

use serde::Serialize;

use super::top::{self, By};
use crate::humanize;
use crate::measure::Measure;
use crate::resolve::{Stack, Tables};

/// A site must rise in at least this fraction of the intervals.
pub const RISE_FRACTION: f64 = 2.0 / 3.0;
/// ... and grow by more than this fraction of the group's largest total ...
pub const MIN_GROWTH_FRACTION: f64 = 0.01;
/// ... and never fall by more than this fraction of its growth.
pub const MAX_SETBACK: f64 = 0.5;
/// A rate per hour is printed only for series spanning at least this many seconds.
pub const MIN_RATE_SPAN: f64 = 600.0;

/// One dump of the series.
pub struct Point<'a> {
    /// Unix seconds (`# time:`), when known.
    pub time: Option<f64>,
    /// The sample period in bytes (1 = exact; 0 = unknown).
    pub period: f64,
    pub stacks: &'a [Stack],
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrendRow {
    pub name: String,
    pub library: Option<String>,
    pub first: f64,
    pub last: f64,
    /// `last - first`.
    pub growth: f64,
    /// Intervals in which the value rose (strictly).
    pub rises: usize,
    /// The largest drop from a value to a later one.
    pub setback: f64,
    pub series: Vec<f64>,
}

/// The result for one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    /// Growing sites, largest growth first.
    pub rows: Vec<TrendRow>,
    /// Sites seen in any dump.
    pub sites: usize,
    pub dumps: usize,
    /// Seconds from the first to the last dump, when every dump has a time.
    pub span: Option<f64>,
    /// The growth a site must exceed (rule 2).
    pub threshold: f64,
}

/// Intervals needed for rule 1 out of `intervals`.
pub fn rises_needed(intervals: usize) -> usize {
    (RISE_FRACTION * intervals as f64 - 1e-9).ceil() as usize
}

/// Largest drop from a value to any later one (0 for a non-decreasing series).
pub fn setback(series: &[f64]) -> f64 {
    let mut peak = f64::NEG_INFINITY;
    let mut worst: f64 = 0.0;
    for &y in series {
        peak = peak.max(y);
        worst = worst.max(peak - y);
    }
    worst
}

/// The rule of the module doc, for one site's series.
pub fn is_growing(series: &[f64], threshold: f64) -> bool {
    let intervals = series.len().saturating_sub(1);
    if intervals == 0 {
        return false;
    }
    let rises = series.windows(2).filter(|w| w[1] > w[0]).count();
    let growth = series[intervals] - series[0];
    rises >= rises_needed(intervals)
        && growth > threshold
        && setback(series) <= MAX_SETBACK * growth
}

/// Apply the rule to every site of `points` (in time order).
pub fn compute(tables: &Tables, points: &[Point<'_>], measure: Measure, by: By) -> Trend {
    let n = points.len();
    let mut index: HashMap<top::SiteKey, usize> = HashMap::new();
    let mut rows: Vec<TrendRow> = Vec::new();
    let mut largest_total: f64 = 0.0;
    for (i, p) in points.iter().enumerate() {
        let t = top::compute(tables, p.stacks, measure, by);
        largest_total = largest_total.max(t.total());
        for r in t.rows {
            let at = *index.entry(r.site_key()).or_insert_with(|| {
                rows.push(TrendRow {
                    name: r.name.clone(),
                    library: r.library.clone(),
                    first: 0.0,
                    last: 0.0,
                    growth: 0.0,
                    rises: 0,
                    setback: 0.0,
                    series: vec![0.0; n],
                });
                rows.len() - 1
            });
            rows[at].series[i] += r.flat(measure);
        }
    }
    let sites = rows
        .iter()
        .filter(|r| r.series.iter().any(|&y| y != 0.0))
        .count();
    let period = points.iter().map(|p| p.period).fold(0.0, f64::max);
    let threshold =
        (MIN_GROWTH_FRACTION * largest_total).max(if measure.is_bytes() { period } else { 0.0 });
    rows.retain(|r| is_growing(&r.series, threshold));
    for r in &mut rows {
        r.first = r.series[0];
        r.last = r.series[n - 1];
        r.growth = r.last - r.first;
        r.rises = r.series.windows(2).filter(|w| w[1] > w[0]).count();
        r.setback = setback(&r.series);
    }
    rows.sort_by(|a, b| {
        b.growth
            .total_cmp(&a.growth)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.library.cmp(&b.library))
    });
    let times: Option<Vec<f64>> = points.iter().map(|p| p.time).collect();
    let span = times.and_then(|t| Some(t.last()? - t.first()?));
    Trend {
        rows,
        sites,
        dumps: n,
        span,
        threshold,
    }
}

/// `2.1 s`, `9.5 min`, `3.0 hours`, `2.0 days`.
pub fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!("{:.1} min", seconds / 60.0)
    } else if seconds < 86400.0 {
        format!("{:.1} hours", seconds / 3600.0)
    } else {
        format!("{:.1} days", seconds / 86400.0)
    }
}

impl Trend {
    /// Growth per hour, when the span allows a rate (rule above).
    pub fn per_hour(&self, growth: f64) -> Option<f64> {
        self.span
            .filter(|&s| s >= MIN_RATE_SPAN)
            .map(|s| growth / s * 3600.0)
    }

    /// `+1.2 MiB/hour`, `+12.0 MiB over 2.1 s` or `+12.0 MiB over 4 dumps`.
    pub fn growth_text(&self, growth: f64, is_bytes: bool, exact: bool) -> String {
        let v = |x: f64| humanize::value(x, is_bytes, exact);
        match (self.per_hour(growth), self.span) {
            (Some(rate), _) => format!("+{}/hour", v(rate)),
            (None, Some(span)) => format!("+{} over {}", v(growth), duration(span)),
            (None, None) => format!("+{} over {} dumps", v(growth), self.dumps),
        }
    }

    /// The table (after the CLI's heading line).
    pub fn to_text(&self, limit: usize, measure: Measure, exact: bool) -> String {
        let b = measure.is_bytes();
        let mut out = format!(
            "{}: {} of {} sites growing (rose in >= 2/3 of the intervals, grew more than {}, \
             never fell back by half)",
            measure.name(),
            self.rows.len(),
            self.sites,
            humanize::value(self.threshold, b, exact),
        );
        if self.rows.len() > limit {
            out.push_str(&format!("; showing {limit}"));
        }
        out.push('\n');
        if self.rows.is_empty() {
            return out;
        }
        let intervals = self.dumps - 1;
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .take(limit)
            .map(|r| {
                [
                    humanize::value(r.first, b, exact),
                    humanize::value(r.last, b, exact),
                    self.growth_text(r.growth, b, exact),
                    format!("{}/{intervals}", r.rises),
                ]
            })
            .collect();
        out.push_str(&super::site_table(
            &["first", "last", "growth", "rose"],
            &cells,
            self.rows
                .iter()
                .map(|r| (r.name.as_str(), r.library.as_deref())),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_on_series() {
        let mib = 1048576.0;
        // A steady leak, with a pause: found.
        let leak: Vec<f64> = [0., 1., 2., 2., 3., 4., 5.]
            .iter()
            .map(|x| x * mib)
            .collect();
        assert!(is_growing(&leak, mib / 2.0));
        // Flat noise (up as often as down): not growing, even if it ends higher.
        let noise: Vec<f64> = [10., 11., 10., 12., 10., 11., 11.5]
            .iter()
            .map(|x| x * mib)
            .collect();
        assert!(!is_growing(&noise, mib / 2.0));
        // One spike, at the end or in the middle: rose once.
        let spike = [1., 1., 1., 1., 1., 90.].map(|x| x * mib);
        assert!(!is_growing(&spike, mib / 2.0));
        // Rises often, but gave back more than half its growth.
        let sawtooth = [0., 4., 8., 2., 5., 6.].map(|x| x * mib);
        assert!(!is_growing(&sawtooth, mib / 2.0));
        // Rose every time but by less than the threshold.
        let tiny = [0., 1., 2., 3.];
        assert!(!is_growing(&tiny, 3.0));
        assert!(is_growing(&tiny, 2.9));
        // Ties are not rises: 2 of 4 intervals < 2/3.
        assert!(!is_growing(&[0., 5., 5., 5., 10.], 1.0));
        // Two dumps: the one interval must rise.
        assert!(is_growing(&[0., 10.], 1.0));
        assert!(!is_growing(&[10.0], 1.0));
        assert_eq!(rises_needed(3), 2);
        assert_eq!(rises_needed(6), 4);
        assert_eq!(rises_needed(1), 1);
        assert_eq!(setback(&[1., 5., 2., 4., 0.]), 5.0);
    }

    #[test]
    fn rate_only_over_ten_minutes() {
        let trend = |span| Trend {
            rows: vec![],
            sites: 0,
            dumps: 3,
            span,
            threshold: 0.0,
        };
        let mib = 1048576.0;
        assert_eq!(
            trend(Some(2.1)).growth_text(12.0 * mib, true, false),
            "+12.0 MiB over 2.1 s"
        );
        assert_eq!(
            trend(Some(599.0)).growth_text(mib, true, false),
            "+1.0 MiB over 10.0 min"
        );
        assert_eq!(
            trend(Some(1800.0)).growth_text(mib, true, false),
            "+2.0 MiB/hour"
        );
        assert_eq!(
            trend(None).growth_text(mib, true, false),
            "+1.0 MiB over 3 dumps"
        );
    }
}
