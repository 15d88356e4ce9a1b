//! `top`: jeprof's `--text` table (flat, flat%, sum%, cum, cum%) by function, line or library,
//! and its JSON form.
//!
//! flat = value of the stacks whose innermost frame is the node; cum = value of the stacks that
//! contain the node at least once (recursion counted once).

use std::collections::HashMap;

use serde::Serialize;

use crate::humanize;
use crate::measure::Measure;
use crate::resolve::{Frame, Stack, Tables};

/// What a row of `top` stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    #[default]
    Function,
    Line,
    Library,
}

/// One row. Values are unsampled estimates (exact when not sampled).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub library: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub flat_bytes: f64,
    pub flat_objects: f64,
    pub cum_bytes: f64,
    pub cum_objects: f64,
}

/// Identity of a row across tables: name, library, file, line.
pub type SiteKey = (String, Option<String>, Option<String>, Option<u32>);

impl Row {
    pub fn site_key(&self) -> SiteKey {
        (
            self.name.clone(),
            self.library.clone(),
            self.file.clone(),
            self.line,
        )
    }

    pub fn flat(&self, measure: Measure) -> f64 {
        if measure.is_bytes() {
            self.flat_bytes
        } else {
            self.flat_objects
        }
    }

    pub fn cum(&self, measure: Measure) -> f64 {
        if measure.is_bytes() {
            self.cum_bytes
        } else {
            self.cum_objects
        }
    }
}

/// A computed `top`, all rows sorted (largest flat first).
#[derive(Clone, Debug)]
pub struct Top {
    pub measure: Measure,
    pub by: By,
    pub total_bytes: f64,
    pub total_objects: f64,
    pub rows: Vec<Row>,
}

impl Top {
    pub fn total(&self) -> f64 {
        if self.measure.is_bytes() {
            self.total_bytes
        } else {
            self.total_objects
        }
    }
}

/// The grouping key of a frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Function(String, Option<String>),
    Line(String, Option<String>, Option<u32>, Option<String>),
    Library(Option<String>),
}

fn key(frame: &Frame, by: By) -> Key {
    match by {
        By::Function => Key::Function(frame.function.clone(), frame.library.clone()),
        By::Line => Key::Line(
            frame.function.clone(),
            frame.file.clone(),
            frame.line,
            frame.library.clone(),
        ),
        By::Library => Key::Library(frame.library.clone()),
    }
}

fn new_row(frame: &Frame, by: By) -> Row {
    let (name, file, line) = match by {
        By::Function => (frame.function.clone(), frame.file.clone(), None),
        By::Line => (frame.function.clone(), frame.file.clone(), frame.line),
        By::Library => (
            frame
                .library_basename()
                .map_or_else(|| "[anonymous]".to_string(), str::to_string),
            None,
            None,
        ),
    };
    Row {
        name,
        library: frame.library.clone(),
        file,
        line,
        flat_bytes: 0.0,
        flat_objects: 0.0,
        cum_bytes: 0.0,
        cum_objects: 0.0,
    }
}

/// Compute the table for `measure`, grouped `by`.
pub fn compute(tables: &Tables, stacks: &[Stack], measure: Measure, by: By) -> Top {
    // Key of every frame id, computed once.
    let mut frame_node: Vec<Option<usize>> = vec![None; tables.frames.len()];
    let mut nodes: HashMap<Key, usize> = HashMap::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut node_of = |f: usize| -> usize {
        if let Some(n) = frame_node[f] {
            return n;
        }
        let frame = &tables.frames[f];
        let n = *nodes.entry(key(frame, by)).or_insert_with(|| {
            rows.push(new_row(frame, by));
            rows.len() - 1
        });
        frame_node[f] = Some(n);
        n
    };
    let (mut total_bytes, mut total_objects) = (0.0, 0.0);
    let mut seen: Vec<usize> = Vec::new();
    let mut contributions: Vec<(usize, bool, f64, f64)> = Vec::new();
    for stack in stacks {
        let (bytes, objects) = stack.values.pair(measure);
        total_bytes += bytes;
        total_objects += objects;
        seen.clear();
        for (i, &f) in stack.frames.iter().enumerate() {
            let n = node_of(f);
            if i == 0 {
                contributions.push((n, true, bytes, objects));
            }
            if !seen.contains(&n) {
                seen.push(n);
                contributions.push((n, false, bytes, objects));
            }
        }
    }
    for (n, flat, bytes, objects) in contributions {
        let row = &mut rows[n];
        if flat {
            row.flat_bytes += bytes;
            row.flat_objects += objects;
        } else {
            row.cum_bytes += bytes;
            row.cum_objects += objects;
        }
    }
    // Nodes that hold nothing of this measure (e.g. freed stacks in an in-use report).
    rows.retain(|r| {
        [r.flat_bytes, r.flat_objects, r.cum_bytes, r.cum_objects]
            .iter()
            .any(|v| v.abs() > 1e-9)
    });
    rows.sort_by(|a, b| {
        b.flat(measure)
            .total_cmp(&a.flat(measure))
            .then(b.cum(measure).total_cmp(&a.cum(measure)))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.library.cmp(&b.library))
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.line.cmp(&b.line))
    });
    Top {
        measure,
        by,
        total_bytes,
        total_objects,
        rows,
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    name: &'a str,
    library: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    flat_bytes: i64,
    flat_objects: i64,
    cum_bytes: i64,
    cum_objects: i64,
}

#[derive(Serialize)]
struct JsonTop<'a> {
    total_bytes: i64,
    total_objects: i64,
    unit: &'a str,
    rows: Vec<JsonRow<'a>>,
}

fn int(v: f64) -> i64 {
    v.round() as i64
}

/// The JSON document of `top --json` (first `limit` rows).
pub fn to_json(top: &Top, limit: usize) -> String {
    let doc = JsonTop {
        total_bytes: int(top.total_bytes),
        total_objects: int(top.total_objects),
        unit: top.measure.unit(),
        rows: top
            .rows
            .iter()
            .take(limit)
            .map(|r| JsonRow {
                name: &r.name,
                library: r.library.as_deref(),
                file: r.file.as_deref(),
                line: r.line,
                flat_bytes: int(r.flat_bytes),
                flat_objects: int(r.flat_objects),
                cum_bytes: int(r.cum_bytes),
                cum_objects: int(r.cum_objects),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}

/// `[lib]` for a library basename; pseudo-paths (`[jit]`, `[vdso]`) are shown as they are.
pub fn bracket(lib: &str) -> String {
    if lib.starts_with('[') {
        lib.to_string()
    } else {
        format!("[{lib}]")
    }
}

/// Display name of a row in the text table.
fn label(row: &Row, by: By) -> String {
    let lib = row
        .library
        .as_deref()
        .map(|l| l.rsplit('/').next().unwrap_or(l));
    match by {
        By::Library => row.library.clone().unwrap_or_else(|| row.name.clone()),
        By::Function => match lib {
            Some(lib) if !row.name.ends_with(&format!(" in {lib}")) => {
                format!("{}  {}", row.name, bracket(lib))
            }
            _ => row.name.clone(),
        },
        By::Line => {
            let mut s = row.name.clone();
            if let Some(file) = &row.file {
                s.push_str(&format!(
                    " {}:{}",
                    file,
                    row.line.map_or_else(|| "?".to_string(), |l| l.to_string())
                ));
            }
            if let Some(lib) = lib.filter(|lib| !row.name.ends_with(&format!(" in {lib}"))) {
                s.push_str(&format!("  {}", bracket(lib)));
            }
            s
        }
    }
}

/// The text table (first `limit` rows). `exact` prints bytes as plain integers.
pub fn to_text(top: &Top, limit: usize, exact: bool) -> String {
    to_text_with(top, limit, exact, None)
}

/// Resident bytes (flat, cum) of each row of a mappings table, by site.
pub type Resident = HashMap<SiteKey, (f64, f64)>;

/// Resident bytes by row: `resident` are the stacks with their resident bytes as in-use bytes.
pub fn resident_rows(tables: &Tables, resident: &[Stack], by: By) -> Resident {
    compute(tables, resident, Measure::InuseSpace, by)
        .rows
        .iter()
        .map(|r| (r.site_key(), (r.flat_bytes, r.cum_bytes)))
        .collect()
}

/// The text table with, for a mappings profile, the resident bytes of each row next to its
/// mapped bytes (`resident`, `cum res`): reservations and committed-but-untouched memory
/// show as mapped but not resident.
pub fn to_text_with(top: &Top, limit: usize, exact: bool, resident: Option<&Resident>) -> String {
    let m = top.measure;
    let total = top.total();
    let shown = top.rows.len().min(limit);
    let mut out = format!(
        "Total {}: {} ({} {}); showing {} of {} rows\n",
        m.name(),
        humanize::value(total, m.is_bytes(), exact),
        humanize::value(
            if m.is_bytes() {
                top.total_objects
            } else {
                top.total_bytes
            },
            !m.is_bytes(),
            exact
        ),
        m.companion().unit(),
        shown,
        top.rows.len()
    );
    let rows: Vec<Vec<String>> = {
        let mut sum = 0.0;
        top.rows
            .iter()
            .take(limit)
            .map(|r| {
                sum += r.flat(m);
                let mut cells = vec![
                    humanize::value(r.flat(m), m.is_bytes(), exact),
                    humanize::percent(r.flat(m), total),
                    humanize::percent(sum, total),
                    humanize::value(r.cum(m), m.is_bytes(), exact),
                    humanize::percent(r.cum(m), total),
                ];
                if let Some(res) = resident {
                    let (flat, cum) = res.get(&r.site_key()).copied().unwrap_or((0.0, 0.0));
                    cells.push(humanize::value(flat, true, exact));
                    cells.push(humanize::value(cum, true, exact));
                }
                cells
            })
            .collect()
    };
    let mut header = vec!["flat", "flat%", "sum%", "cum", "cum%"];
    if resident.is_some() {
        header.extend(["resident", "cum res"]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let what = match top.by {
        By::Function => "function",
        By::Line => "function file:line",
        By::Library => "library",
    };
    for (i, h) in header.iter().enumerate() {
        out.push_str(&format!("{:>w$} ", h, w = widths[i]));
    }
    out.push_str(&format!(" {what}\n"));
    for (r, cells) in top.rows.iter().zip(&rows) {
        for (i, c) in cells.iter().enumerate() {
            out.push_str(&format!("{:>w$} ", c, w = widths[i]));
        }
        out.push_str(&format!(" {}\n", label(r, top.by)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Values;

    fn stack(frames: &[usize], bytes: f64, objects: f64) -> Stack {
        Stack {
            locations: vec![],
            frames: frames.to_vec(),
            values: Values {
                inuse_bytes: bytes,
                inuse_objects: objects,
                ..Default::default()
            },
        }
    }

    #[test]
    fn flat_and_cum() {
        let mut t = Tables::default();
        let mut f = |name: &str| {
            t.intern_frame(Frame {
                function: name.into(),
                file: None,
                line: None,
                library: Some("/p/prog".into()),
            })
        };
        let (a, b, main, rec) = (f("a"), f("b"), f("main"), f("rec"));
        let stacks = vec![
            stack(&[a, rec, rec, main], 100.0, 1.0),
            stack(&[b, main], 300.0, 3.0),
            stack(&[main], 50.0, 1.0),
        ];
        let top = compute(&t, &stacks, Measure::InuseSpace, By::Function);
        assert_eq!(top.total_bytes, 450.0);
        let names: Vec<&str> = top.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "main", "rec"]);
        let rec_row = &top.rows[3];
        assert_eq!((rec_row.flat_bytes, rec_row.cum_bytes), (0.0, 100.0));
        let main_row = &top.rows[2];
        assert_eq!(
            (
                main_row.flat_bytes,
                main_row.cum_bytes,
                main_row.cum_objects
            ),
            (50.0, 450.0, 5.0)
        );
        let lib = compute(&t, &stacks, Measure::InuseObjects, By::Library);
        assert_eq!(lib.rows.len(), 1);
        assert_eq!(lib.rows[0].name, "prog");
        assert_eq!(lib.rows[0].flat_objects, 5.0);
        let json: serde_json::Value = serde_json::from_str(&to_json(&top, 2)).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), 2);
        assert_eq!(json["unit"], "bytes");
        assert_eq!(json["rows"][0]["flat_bytes"], 300);
        assert!(json["rows"][0]["line"].is_null());
    }
}
