//! `diff OLD NEW`: sites (innermost frames, grouped like `top`) by change of the measure,
//! largest growth first.

use std::collections::HashMap;

use serde::Serialize;

use super::top::{self, By};
use crate::humanize;
use crate::measure::Measure;
use crate::resolve::{Stack, Tables};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffRow {
    pub name: String,
    pub library: Option<String>,
    pub old: f64,
    pub new: f64,
    pub delta: f64,
}

/// Rows sorted by delta, descending (then name).
pub fn compute(
    tables: &Tables,
    old: &[Stack],
    new: &[Stack],
    measure: Measure,
    by: By,
) -> Vec<DiffRow> {
    let old = top::compute(tables, old, measure, by);
    let new = top::compute(tables, new, measure, by);
    let mut rows: Vec<DiffRow> = Vec::new();
    let mut index: HashMap<top::SiteKey, usize> = HashMap::new();
    for (which, t) in [(0, &old), (1, &new)] {
        for r in &t.rows {
            let key = r.site_key();
            let i = *index.entry(key).or_insert_with(|| {
                rows.push(DiffRow {
                    name: r.name.clone(),
                    library: r.library.clone(),
                    old: 0.0,
                    new: 0.0,
                    delta: 0.0,
                });
                rows.len() - 1
            });
            if which == 0 {
                rows[i].old += r.flat(measure);
            } else {
                rows[i].new += r.flat(measure);
            }
        }
    }
    for r in &mut rows {
        r.delta = r.new - r.old;
    }
    rows.retain(|r| r.old.abs() > 1e-9 || r.new.abs() > 1e-9);
    rows.sort_by(|a, b| {
        b.delta
            .total_cmp(&a.delta)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.library.cmp(&b.library))
    });
    rows
}

/// The text table of the first `limit` rows.
pub fn to_text(rows: &[DiffRow], limit: usize, measure: Measure, exact: bool) -> String {
    let b = measure.is_bytes();
    let (old_total, new_total) = rows
        .iter()
        .fold((0.0, 0.0), |(o, n), r| (o + r.old, n + r.new));
    let mut out = format!(
        "{}: old {}, new {}, change {}{}; showing {} of {} sites\n",
        measure.name(),
        humanize::value(old_total, b, exact),
        humanize::value(new_total, b, exact),
        if new_total >= old_total { "+" } else { "" },
        humanize::value(new_total - old_total, b, exact),
        rows.len().min(limit),
        rows.len()
    );
    let cells: Vec<[String; 3]> = rows
        .iter()
        .take(limit)
        .map(|r| {
            let sign = if r.delta > 0.0 { "+" } else { "" };
            [
                humanize::value(r.old, b, exact),
                humanize::value(r.new, b, exact),
                format!("{sign}{}", humanize::value(r.delta, b, exact)),
            ]
        })
        .collect();
    out.push_str(&super::site_table(
        &["old", "new", "delta"],
        &cells,
        rows.iter().map(|r| (r.name.as_str(), r.library.as_deref())),
    ));
    out
}
