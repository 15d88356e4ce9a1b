//! `trend DUMPS...`: sites whose in-use bytes grow across a series of dumps of one process.
//!
//! For each site (innermost frame, grouped like `top`), its flat in-use bytes form a series
//! `y_i` at times `t_i` (0 when absent from a dump). Growth is the least-squares slope
//! `sum((t - t̄)(y - ȳ)) / sum((t - t̄)^2)`; sustained growth also needs most steps to go up,
//! so sites are ranked by `slope * fraction_of_steps_that_grew`.

use std::collections::HashMap;

use super::top::{self, By};
use crate::humanize;
use crate::measure::Measure;
use crate::resolve::{Stack, Tables};

/// One dump of the series: its time (seconds; or a step number when the dumps have no time).
pub struct Point<'a> {
    pub time: f64,
    pub stacks: &'a [Stack],
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrendRow {
    pub name: String,
    pub library: Option<String>,
    pub first: f64,
    pub last: f64,
    /// Least-squares growth per second (or per step).
    pub slope: f64,
    /// Fraction of consecutive pairs where the value went up.
    pub grew: f64,
    pub series: Vec<f64>,
}

/// Least-squares slope of `ys` over `ts`.
pub fn slope(ts: &[f64], ys: &[f64]) -> f64 {
    let n = ts.len() as f64;
    if ts.len() < 2 {
        return 0.0;
    }
    let tm = ts.iter().sum::<f64>() / n;
    let ym = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, y) in ts.iter().zip(ys) {
        num += (t - tm) * (y - ym);
        den += (t - tm) * (t - tm);
    }
    if den == 0.0 { 0.0 } else { num / den }
}

/// Growing sites, best first. `points` must be in time order.
pub fn compute(tables: &Tables, points: &[Point<'_>], measure: Measure, by: By) -> Vec<TrendRow> {
    let n = points.len();
    let mut index: HashMap<top::SiteKey, usize> = HashMap::new();
    let mut rows: Vec<TrendRow> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        for r in top::compute(tables, p.stacks, measure, by).rows {
            let key = r.site_key();
            let at = *index.entry(key).or_insert_with(|| {
                rows.push(TrendRow {
                    name: r.name.clone(),
                    library: r.library.clone(),
                    first: 0.0,
                    last: 0.0,
                    slope: 0.0,
                    grew: 0.0,
                    series: vec![0.0; n],
                });
                rows.len() - 1
            });
            rows[at].series[i] += r.flat(measure);
        }
    }
    let ts: Vec<f64> = points.iter().map(|p| p.time).collect();
    for r in &mut rows {
        r.first = r.series.first().copied().unwrap_or(0.0);
        r.last = r.series.last().copied().unwrap_or(0.0);
        r.slope = slope(&ts, &r.series);
        let ups = r.series.windows(2).filter(|w| w[1] > w[0]).count();
        r.grew = if n > 1 {
            ups as f64 / (n - 1) as f64
        } else {
            0.0
        };
    }
    rows.retain(|r| r.slope > 0.0 && r.last > r.first);
    rows.sort_by(|a, b| {
        (b.slope * b.grew)
            .total_cmp(&(a.slope * a.grew))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// Text table. `per_hour`: the times are seconds and slopes are shown per hour; otherwise per
/// dump.
pub fn to_text(
    rows: &[TrendRow],
    limit: usize,
    measure: Measure,
    per_hour: bool,
    dumps: usize,
    exact: bool,
) -> String {
    let b = measure.is_bytes();
    let unit = if per_hour { "/hour" } else { "/dump" };
    let mut out = format!(
        "{} growth over {dumps} dumps; {} growing sites, showing {}\n",
        measure.name(),
        rows.len(),
        rows.len().min(limit)
    );
    let cells: Vec<[String; 4]> = rows
        .iter()
        .take(limit)
        .map(|r| {
            let rate = if per_hour { r.slope * 3600.0 } else { r.slope };
            [
                humanize::value(r.first, b, exact),
                humanize::value(r.last, b, exact),
                format!("+{}{unit}", humanize::value(rate, b, exact)),
                format!("{:.0}%", r.grew * 100.0),
            ]
        })
        .collect();
    out.push_str(&super::site_table(
        &["first", "last", "growth", "grew"],
        &cells,
        rows.iter().map(|r| (r.name.as_str(), r.library.as_deref())),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn least_squares() {
        assert_eq!(slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]), 2.0);
        assert_eq!(slope(&[0.0], &[1.0]), 0.0);
        assert_eq!(slope(&[5.0, 5.0], &[1.0, 2.0]), 0.0);
    }
}
