//! Folded stacks (`root;...;leaf VALUE`), the input format of flamegraph tools.

use std::collections::BTreeMap;

use crate::measure::Measure;
use crate::resolve::{Stack, Tables};

/// A frame name safe for the folded format (no `;`, no newlines).
fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// Folded lines, merged and sorted, values rounded; stacks that round to <= 0 are left out
/// unless `keep_negative`.
pub fn folded(
    tables: &Tables,
    stacks: &[Stack],
    measure: Measure,
    keep_negative: bool,
) -> Vec<(String, i64)> {
    let mut merged: BTreeMap<String, f64> = BTreeMap::new();
    for stack in stacks {
        let path = stack
            .frames
            .iter()
            .rev()
            .map(|&f| clean(&tables.frames[f].function))
            .collect::<Vec<_>>()
            .join(";");
        let path = if path.is_empty() {
            "[no frames]".to_string()
        } else {
            path
        };
        *merged.entry(path).or_default() += stack.values.get(measure);
    }
    merged
        .into_iter()
        .map(|(k, v)| (k, v.round() as i64))
        .filter(|&(_, v)| v > 0 || (keep_negative && v != 0))
        .collect()
}

/// The folded text, one line per stack.
pub fn to_text(lines: &[(String, i64)]) -> String {
    let mut out = String::new();
    for (stack, value) in lines {
        out.push_str(stack);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}
