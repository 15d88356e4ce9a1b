//! Flame graphs (SVG) through inferno: a plain one of a measure, or a differential one of
//! `base -> file` (red grew, blue shrank).

use std::io;

use inferno::flamegraph::{self, Options};

use crate::measure::Measure;

fn options(title: &str, measure: Measure) -> Options<'static> {
    let mut opts = Options::default();
    opts.title = title.to_string();
    opts.count_name = measure.unit().to_string();
    opts.name_type = "Function:".to_string();
    opts.deterministic = true;
    opts.hash = true;
    opts
}

/// SVG of folded `lines` (from [`super::collapsed::folded`]).
pub fn svg(lines: &[(String, i64)], title: &str, measure: Measure) -> io::Result<Vec<u8>> {
    let text = super::collapsed::to_text(lines);
    let mut out = Vec::new();
    if text.is_empty() {
        let mut opts = options(title, measure);
        // inferno refuses empty input; draw an explicit empty graph instead.
        flamegraph::from_lines(&mut opts, ["[no samples] 1"], &mut out)?;
        return Ok(out);
    }
    let mut opts = options(title, measure);
    flamegraph::from_lines(&mut opts, text.lines(), &mut out)?;
    Ok(out)
}

/// Differential SVG: colours show the change from `before` to `after`.
pub fn differential_svg(
    before: &[(String, i64)],
    after: &[(String, i64)],
    title: &str,
    measure: Measure,
) -> io::Result<Vec<u8>> {
    let before = super::collapsed::to_text(before);
    let after = super::collapsed::to_text(after);
    let mut folded = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut folded,
    )?;
    let folded = String::from_utf8_lossy(&folded).into_owned();
    let mut out = Vec::new();
    let mut opts = options(title, measure);
    if folded.trim().is_empty() {
        flamegraph::from_lines(&mut opts, ["[no samples] 1 1"], &mut out)?;
    } else {
        flamegraph::from_lines(&mut opts, folded.lines(), &mut out)?;
    }
    Ok(out)
}
