//! `report DUMPS... -o report.html`: one self-contained HTML file over a series of dumps, to
//! open in a browser or attach to a ticket. Nothing in it is fetched: styles, the one small
//! script, the charts (SVG drawn here) and the flame graphs are inline, and a
//! Content-Security-Policy forbids any request.
//!
//! The dumps are grouped like `trend` groups them (`cli::series`: by process and kind, each
//! group in time order), so a heap and an mmap dump, or two processes, are never summed. Per
//! group, for its last dump: the leading sites one line each (`report::leading`), the RSS
//! explained (`report::rss`, heap dumps that record it, with their `.mmap.heap` sibling), a
//! chart of the in-use bytes of the top sites over the group's dumps (the sites `trend` calls
//! growing first, then the largest at the last dump; the total as a dashed line), inferno's
//! flame graph and the top table.
//!
//! The flame graph is inferno's interactive SVG in an `<iframe srcdoc>`: its script looks up
//! fixed element ids and the document's first `<svg>`, so two of them (or our charts) in one
//! document would break each other. The frame is same-origin with the page, so a script
//! error in it is reported like one of the page's.
//!
//! For tests and tools, the page marks itself: `data-rendered="yes"` on `<html>` once its
//! script ran at load, `data-flames-drawn` (how many flame graphs have their frames), and
//! `data-script-errors` when any script failed; each chart line carries `data-site` and
//! `data-bytes` (its values, comma-separated).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{self, Origin, ReportArgs};
use crate::error::Error;
use crate::filter::Filter;
use crate::humanize;
use crate::measure::Measure;
use crate::profile::Profile;
use crate::reader;
use crate::report::top::{self, By, SiteKey};
use crate::report::{collapsed, flame, leading, rss, trend};
use crate::resolve::{self, Stack, Tables};
use crate::serve::{escape, utc};
use crate::symbolize;

/// Lines of a chart at most (beyond that they cannot be told apart).
pub const CHART_SITES: usize = 8;
/// Leading sites listed per group.
pub const LEADING: usize = 5;

const COLORS: [&str; CHART_SITES] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// `jeprof-rs report`.
pub fn run(a: &ReportArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let filter = Filter::new(a.select.focus.as_deref(), a.select.ignore.as_deref())?;
    let given: Vec<&Path> = a.dumps.iter().map(PathBuf::as_path).collect();
    let mut profiles = given
        .iter()
        .map(|p| reader::read_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = cli::series(&profiles, &given);
    // The `.mmap.heap` sibling of each heap group's last dump, for its RSS, read too when it
    // was not given.
    let mut paths: Vec<PathBuf> = a.dumps.clone();
    let mut sibling_of: HashMap<usize, usize> = HashMap::new();
    for (origin, members) in &groups {
        let Some(&last) = members.last() else {
            continue;
        };
        if origin.kind != "heap" || rss::missing(&profiles[last]).is_some() {
            continue;
        }
        let Some(sib) = cli::mmap_sibling(&paths[last]) else {
            continue;
        };
        let at = match paths.iter().position(|p| *p == sib) {
            Some(i) => i,
            None => match reader::read_file(&sib) {
                Ok(p) => {
                    profiles.push(p);
                    paths.push(sib);
                    paths.len() - 1
                }
                Err(e) => {
                    eprintln!("jeprof-rs: warning: {e}; the RSS is explained without it");
                    continue;
                }
            },
        };
        sibling_of.insert(last, at);
    }
    let path_refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let pids = cli::pids_of(&profiles, &path_refs);
    let options = symbolize::Options {
        perf_map: a.select.perf_map.clone(),
        root: a.select.root.clone(),
        ..Default::default()
    };
    let refs: Vec<&Profile> = profiles.iter().collect();
    let analysis = resolve::analyze(&refs, &pids, &options);
    for w in &analysis.warnings {
        eprintln!("jeprof-rs: warning: {w}");
    }
    let tables = &analysis.tables;
    let mut sections = String::new();
    let mut summary = String::new();
    for (g, (origin, members)) in groups.iter().enumerate() {
        let stacks: Vec<Vec<Stack>> = members
            .iter()
            .map(|&i| filter.apply(tables, analysis.stacks[i].clone()))
            .collect();
        let last = *members.last().unwrap_or(&0);
        let rss = match sibling_of.get(&last) {
            _ if origin.kind != "heap" || rss::missing(&profiles[last]).is_some() => None,
            sibling => rss::compute(&rss::Input {
                tables,
                heap: &profiles[last],
                heap_stacks: &analysis.stacks[last],
                mmap: sibling.map(|&j| (&profiles[j], analysis.stacks[j].as_slice())),
            })
            .ok(),
        };
        let group = Group {
            id: g,
            origin,
            members,
            paths: &path_refs,
            profiles: &profiles,
            stacks: &stacks,
            rss: rss.as_ref(),
            limit: a.n.max(1),
        };
        let (head, body) = group.render(tables)?;
        summary.push_str(&head);
        sections.push_str(&body);
    }
    let html = page(&summary, &sections, a.dumps.len(), groups.len());
    std::fs::write(&a.output, html).map_err(|e| Error::io(&a.output, "cannot write", e))?;
    out.write_all(
        format!(
            "wrote {} ({} dump{}, {} series)\n",
            a.output.display(),
            a.dumps.len(),
            if a.dumps.len() == 1 { "" } else { "s" },
            groups.len()
        )
        .as_bytes(),
    )
    .map_err(|e| Error::io(Path::new("<stdout>"), "cannot write", e))?;
    Ok(0)
}

/// One series (process, kind) of the report.
struct Group<'a> {
    id: usize,
    origin: &'a Origin,
    /// Indices into `paths`/`profiles`, in time order.
    members: &'a [usize],
    paths: &'a [&'a Path],
    profiles: &'a [Profile],
    /// Filtered stacks, by position in `members`.
    stacks: &'a [Vec<Stack>],
    rss: Option<&'a rss::Report>,
    limit: usize,
}

/// A site's series over the group.
struct Line {
    name: String,
    library: Option<String>,
    values: Vec<f64>,
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn bytes_cell(v: f64) -> String {
    format!(
        "<td class=\"num\" title=\"{} bytes\">{}</td>",
        v.round() as i64,
        escape(&humanize::bytes(v))
    )
}

fn site_label(name: &str, library: Option<&str>) -> String {
    let lib = library.map(|l| l.rsplit('/').next().unwrap_or(l));
    match lib {
        Some(lib) if !name.ends_with(&format!(" in {lib}")) => {
            format!(
                "<span class=\"fn\">{}</span> <span class=\"lib\">{}</span>",
                escape(name),
                escape(&top::bracket(lib))
            )
        }
        _ => format!("<span class=\"fn\">{}</span>", escape(name)),
    }
}

impl Group<'_> {
    fn kind_words(&self) -> (&'static str, &'static str) {
        if self.origin.kind == "mmap" {
            ("mapped bytes", "mapped")
        } else {
            ("in-use bytes", "in use")
        }
    }

    /// The summary line (for the top of the page) and the section.
    fn render(&self, tables: &Tables) -> Result<(String, String), Error> {
        let n = self.members.len();
        let last = n - 1;
        let last_path = self.paths[self.members[last]];
        let points: Vec<trend::Point<'_>> = self
            .members
            .iter()
            .zip(self.stacks)
            .map(|(&i, s)| trend::Point {
                time: self.profiles[i].time(),
                period: self.profiles[i].period as f64,
                stacks: s,
            })
            .collect();
        let measure = Measure::InuseSpace;
        let t = trend::compute(tables, &points, measure, By::Function);
        let tops: Vec<top::Top> = self
            .stacks
            .iter()
            .map(|s| top::compute(tables, s, measure, By::Function))
            .collect();
        let span = t
            .span
            .map(|s| format!(" over {}", trend::duration(s)))
            .unwrap_or_default();
        let title = format!(
            "{}, {}: {} dump{}{span}",
            self.origin.process(),
            self.origin.kind,
            n,
            if n == 1 { "" } else { "s" }
        );
        let (what, held) = self.kind_words();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<section id=\"series-{}\" class=\"series\" data-kind=\"{}\">\n<h2>{}</h2>",
            self.id,
            escape(&self.origin.kind),
            escape(&title)
        );
        let total = tops[last].total_bytes;
        let _ = writeln!(
            s,
            "<p>Last dump: <code>{}</code>{}; {} {}.</p>",
            escape(&file_name(last_path)),
            self.profiles[self.members[last]]
                .time()
                .map(|t| format!(" at {}", escape(&utc(t))))
                .unwrap_or_default(),
            escape(&humanize::bytes(total)),
            held
        );

        // Leading sites, one line each.
        let sites = leading::compute(tables, &self.stacks[last]);
        let _ = writeln!(s, "<h3>Leading sites ({held})</h3>");
        if sites.is_empty() {
            s.push_str("<p>Nothing in the last dump.</p>\n");
        } else {
            s.push_str("<table class=\"leading\">\n");
            for site in sites.iter().take(LEADING) {
                let _ = writeln!(
                    s,
                    "<tr>{}<td class=\"num\">{} obj</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    bytes_cell(site.bytes),
                    site.objects.round() as i64,
                    escape(&humanize::percent(site.bytes, total)),
                    escape(&leading::chain(site))
                );
            }
            s.push_str("</table>\n");
        }

        // RSS.
        if let Some(r) = self.rss {
            s.push_str(&rss_table(r));
        }

        // The chart.
        let _ = writeln!(s, "<h3>{} over the dumps</h3>", capitalize(what));
        if n < 2 {
            s.push_str("<p>One dump: nothing to chart.</p>\n");
        } else {
            let lines = chart_lines(&t, &tops, self.limit.min(CHART_SITES));
            let xs = x_values(&points);
            let totals: Vec<f64> = tops.iter().map(|t| t.total_bytes).collect();
            s.push_str(&chart(&lines, &totals, &xs, t.span.is_some()));
            s.push_str(&legend(&lines, &t));
            let _ = writeln!(
                s,
                "<p class=\"rule\">{} of {} sites growing (rose in at least 2/3 of the {} \
                 intervals, grew more than {}, never fell back by half).</p>",
                t.rows.len(),
                t.sites,
                n - 1,
                escape(&humanize::bytes(t.threshold))
            );
        }

        // The flame graph.
        let _ = writeln!(s, "<h3>Flame graph ({what}, last dump)</h3>");
        let folded = collapsed::folded(tables, &self.stacks[last], measure, false);
        let svg = flame::svg(
            &folded,
            &format!("{} ({})", file_name(last_path), measure),
            measure,
        )
        .map_err(|e| Error::io(last_path, "cannot draw flame graph", e))?;
        s.push_str(&flame_frame(&String::from_utf8_lossy(&svg)));

        // The top table.
        let _ = writeln!(s, "<h3>Top sites (last dump)</h3>");
        s.push_str(&top_table(&tops[last], self.limit));
        s.push_str("</section>\n");

        let growing = match t.rows.first() {
            Some(r) if n >= 2 => format!(
                "; growing most: {} {}",
                site_label(&r.name, r.library.as_deref()),
                escape(&t.growth_text(r.growth, true, false))
            ),
            _ => String::new(),
        };
        let head = format!(
            "<li><a href=\"#series-{}\">{}</a>: {} {}{}</li>\n",
            self.id,
            escape(&title),
            escape(&humanize::bytes(total)),
            held,
            growing
        );
        Ok((head, s))
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Seconds since the first dump when every dump has a time, else the dump's number.
fn x_values(points: &[trend::Point<'_>]) -> Vec<f64> {
    let times: Option<Vec<f64>> = points.iter().map(|p| p.time).collect();
    match times {
        Some(t) if t.len() > 1 && t[t.len() - 1] > t[0] => t.iter().map(|x| x - t[0]).collect(),
        _ => (0..points.len()).map(|i| i as f64).collect(),
    }
}

/// The sites to draw: growing ones first (by growth), then the largest at the last dump.
fn chart_lines(t: &trend::Trend, tops: &[top::Top], limit: usize) -> Vec<Line> {
    let n = tops.len();
    let mut series: HashMap<SiteKey, Line> = HashMap::new();
    for (i, top) in tops.iter().enumerate() {
        for r in &top.rows {
            if r.flat_bytes == 0.0 {
                continue;
            }
            series
                .entry(r.site_key())
                .or_insert_with(|| Line {
                    name: r.name.clone(),
                    library: r.library.clone(),
                    values: vec![0.0; n],
                })
                .values[i] += r.flat_bytes;
        }
    }
    let mut order: Vec<(String, Option<String>)> = t
        .rows
        .iter()
        .map(|r| (r.name.clone(), r.library.clone()))
        .collect();
    let mut rest: Vec<&Line> = series.values().collect();
    rest.sort_by(|a, b| {
        b.values[n - 1]
            .total_cmp(&a.values[n - 1])
            .then_with(|| {
                let max = |l: &Line| l.values.iter().copied().fold(0.0, f64::max);
                max(b).total_cmp(&max(a))
            })
            .then_with(|| a.name.cmp(&b.name))
    });
    for l in rest {
        let k = (l.name.clone(), l.library.clone());
        if !order.contains(&k) {
            order.push(k);
        }
    }
    // Rows are keyed by (name, library, file, line); by function the line is None but the
    // file may differ for one name: merge them for the chart.
    let mut out: Vec<Line> = Vec::new();
    for (name, library) in order {
        if out.len() >= limit {
            break;
        }
        let mut values = vec![0.0; n];
        for l in series
            .values()
            .filter(|l| l.name == name && l.library == library)
        {
            for (v, x) in values.iter_mut().zip(&l.values) {
                *v += x;
            }
        }
        if values.iter().all(|&v| v == 0.0) {
            continue;
        }
        out.push(Line {
            name,
            library,
            values,
        });
    }
    out
}

/// A step of 1, 2 or 5 times a power of ten (in `unit`s) giving about 5 ticks up to `max`.
fn nice_step(max: f64) -> (f64, f64) {
    let mut unit = 1.0;
    while max / unit >= 1024.0 {
        unit *= 1024.0;
    }
    let raw = (max / unit / 5.0).max(f64::MIN_POSITIVE);
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    (nice * p * unit, unit)
}

/// A tick of a time axis that ends at `xmax` seconds: enough decimals to tell ticks apart.
fn seconds_label(x: f64, xmax: f64) -> String {
    if xmax < 1.0 {
        format!("{x:.2} s")
    } else if xmax < 60.0 {
        format!("{x:.1} s")
    } else {
        trend::duration(x)
    }
}

/// The inline SVG line chart: one polyline per site, the total dashed.
fn chart(lines: &[Line], totals: &[f64], xs: &[f64], timed: bool) -> String {
    const W: f64 = 900.0;
    const H: f64 = 320.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 15.0;
    const BOTTOM: f64 = 40.0;
    let ymax = totals
        .iter()
        .chain(lines.iter().flat_map(|l| l.values.iter()))
        .copied()
        .fold(0.0, f64::max)
        .max(1.0);
    let (step, _) = nice_step(ymax);
    let ticks = (ymax / step).ceil().max(1.0);
    let ytop = ticks * step;
    let xmax = xs.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let px = |x: f64| LEFT + (W - LEFT - RIGHT) * x / xmax;
    let py = |y: f64| TOP + (H - TOP - BOTTOM) * (1.0 - y / ytop);
    let mut s = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" role=\"img\">\n"
    );
    for k in 0..=(ticks as usize) {
        let y = step * k as f64;
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"ytick\" x=\"{}\" y=\"{:.1}\">{}</text>",
            W - RIGHT,
            py(y),
            py(y),
            LEFT - 6.0,
            py(y) + 4.0,
            escape(&humanize::bytes(y))
        );
    }
    let xticks = 5.min(xs.len() - 1).max(1);
    for k in 0..=xticks {
        let x = xmax * k as f64 / xticks as f64;
        let label = if timed {
            seconds_label(x, xmax)
        } else {
            format!("dump {}", x.round() as i64 + 1)
        };
        let _ = writeln!(
            s,
            "<text class=\"xtick\" x=\"{:.1}\" y=\"{}\">{}</text>",
            px(x),
            H - BOTTOM + 18.0,
            escape(&label)
        );
    }
    let _ = writeln!(
        s,
        "<text class=\"xtick\" x=\"{:.1}\" y=\"{}\">{}</text>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 4.0,
        if timed {
            "time since the first dump"
        } else {
            "dumps in order (no # time: metadata)"
        }
    );
    let points = |values: &[f64]| -> String {
        xs.iter()
            .zip(values)
            .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let data = |values: &[f64]| -> String {
        values
            .iter()
            .map(|v| format!("{}", v.round() as i64))
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = writeln!(
        s,
        "<polyline class=\"total\" data-site=\"[total]\" data-bytes=\"{}\" points=\"{}\">\
         <title>total: {}</title></polyline>",
        data(totals),
        points(totals),
        escape(&humanize::bytes(totals.last().copied().unwrap_or(0.0)))
    );
    for (l, color) in lines.iter().zip(COLORS) {
        let _ = write!(
            s,
            "<g class=\"site\"><polyline data-site=\"{}\" data-bytes=\"{}\" points=\"{}\" \
             stroke=\"{color}\"><title>{}: {} at the last dump</title></polyline>",
            escape(&l.name),
            data(&l.values),
            points(&l.values),
            escape(&l.name),
            escape(&humanize::bytes(l.values.last().copied().unwrap_or(0.0)))
        );
        for (&x, &y) in xs.iter().zip(&l.values) {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {}</title></circle>",
                px(x),
                py(y),
                escape(&l.name),
                escape(&humanize::bytes(y))
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

/// The chart's key: colour, site, first and last value, growth, and whether `trend` calls it
/// growing.
fn legend(lines: &[Line], t: &trend::Trend) -> String {
    let mut s = String::from(
        "<table class=\"legend\"><tr><th></th><th>site</th><th class=\"num\">first</th>\
         <th class=\"num\">last</th><th>change</th><th></th></tr>\n",
    );
    for (l, color) in lines.iter().zip(COLORS) {
        let first = l.values[0];
        let last = l.values[l.values.len() - 1];
        let growing = t
            .rows
            .iter()
            .find(|r| r.name == l.name && r.library == l.library);
        let change = match growing {
            Some(r) => t.growth_text(r.growth, true, false),
            None if last >= first => format!("+{}", humanize::bytes(last - first)),
            None => format!("-{}", humanize::bytes(first - last)),
        };
        let _ = writeln!(
            s,
            "<tr><td><span class=\"swatch\" style=\"background:{color}\"></span></td><td>{}</td>\
             {}{}<td>{}</td><td>{}</td></tr>",
            site_label(&l.name, l.library.as_deref()),
            bytes_cell(first),
            bytes_cell(last),
            escape(&change),
            if growing.is_some() {
                "<span class=\"growing\">growing</span>"
            } else {
                ""
            }
        );
    }
    s.push_str("</table>\n");
    s
}

fn rss_table(r: &rss::Report) -> String {
    let total = r.rss_bytes as f64;
    let mut s = format!(
        "<h3>RSS {} at the last dump, explained</h3>\n<table class=\"rss\"><tr>\
         <th class=\"num\">resident</th><th class=\"num\">share</th><th>category</th>\
         <th>detail</th></tr>\n",
        escape(&humanize::bytes(total))
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "<tr>{}<td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            bytes_cell(row.resident),
            escape(&humanize::percent(row.resident, total)),
            escape(&row.category),
            escape(&row.detail)
        );
    }
    s.push_str("</table>\n");
    for h in &r.hints {
        let _ = writeln!(s, "<p class=\"hint\">{}</p>", escape(h));
    }
    s
}

fn top_table(t: &top::Top, limit: usize) -> String {
    let total = t.total_bytes;
    let mut s = format!(
        "<p>Total {}; showing {} of {} rows.</p>\n<table class=\"top\"><tr>\
         <th class=\"num\">flat</th><th class=\"num\">flat%</th><th class=\"num\">sum%</th>\
         <th class=\"num\">cum</th><th class=\"num\">cum%</th><th>function</th></tr>\n",
        escape(&humanize::bytes(total)),
        t.rows.len().min(limit),
        t.rows.len()
    );
    let mut sum = 0.0;
    for r in t.rows.iter().take(limit) {
        sum += r.flat_bytes;
        let _ = writeln!(
            s,
            "<tr>{}<td class=\"num\">{}</td><td class=\"num\">{}</td>{}<td class=\"num\">{}</td>\
             <td>{}</td></tr>",
            bytes_cell(r.flat_bytes),
            escape(&humanize::percent(r.flat_bytes, total)),
            escape(&humanize::percent(sum, total)),
            bytes_cell(r.cum_bytes),
            escape(&humanize::percent(r.cum_bytes, total)),
            site_label(&r.name, r.library.as_deref())
        );
    }
    s.push_str("</table>\n");
    s
}

/// Inferno's SVG as the document of an `<iframe srcdoc>`, sized to the graph.
fn flame_frame(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let svg = &svg[start..];
    let tag_end = svg.find('>').unwrap_or(svg.len());
    let height = svg[..tag_end]
        .split("height=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .and_then(|h| h.parse::<f64>().ok())
        .unwrap_or(400.0);
    // The graph keeps its zoom and search in the URL (history.replaceState), which a srcdoc
    // frame may not change: that part is switched off, the rest works as in the .svg file.
    let doc = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>html,body{{margin:0}}svg{{display:block;width:100%}}</style>\
         <script>window.onerror=function(m,s,l){{try{{parent.jeprofError('flame graph: '+m+' (line '+l+')')}}catch(e){{}}}};\
         history.replaceState=function(){{}};</script></head><body>{svg}</body></html>"
    );
    format!(
        "<iframe class=\"flame\" title=\"flame graph\" style=\"height:{}px\" srcdoc=\"{}\"></iframe>\n",
        height.ceil() as i64 + 4,
        escape(&doc)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1250px}\
h2{border-bottom:2px solid #ccc;padding-bottom:4px;margin-top:2em}h3{margin-bottom:.4em}\
table{border-collapse:collapse;font-size:14px}td,th{padding:2px 8px;text-align:left;\
border-bottom:1px solid #eee;vertical-align:top}.num{text-align:right;white-space:nowrap}\
.fn{font-family:monospace}.lib{color:#777;font-family:monospace}\
table.leading td:last-child{font-family:monospace}\
.growing{background:#d62728;color:#fff;border-radius:3px;padding:0 5px;font-size:12px}\
.swatch{display:inline-block;width:14px;height:14px;border-radius:2px}\
svg.chart{max-width:100%;height:auto;font-size:12px}svg.chart polyline{fill:none;stroke-width:2}\
svg.chart g.site:hover polyline{stroke-width:4}\
svg.chart polyline.total{stroke:#999;stroke-dasharray:5 4;stroke-width:1.5}\
svg.chart line.grid{stroke:#e5e5e5}svg.chart text.ytick{text-anchor:end;fill:#555}\
svg.chart text.xtick{text-anchor:middle;fill:#555}\
iframe.flame{width:100%;border:1px solid #eee}p.rule,p.hint{color:#555;font-size:14px}";

/// Records script errors on `<html>` (first in `<head>`, before anything else runs).
const ERRORS_SCRIPT: &str = "window.jeprofErrors=[];window.jeprofError=function(m){\
window.jeprofErrors.push(String(m));\
document.documentElement.setAttribute('data-script-errors',window.jeprofErrors.join(' | '));};\
window.onerror=function(m,s,l){window.jeprofError(m+' (line '+l+')');};";

/// At load: count the flame graphs whose script ran (inferno's `init` sets its global `svg`),
/// and mark the page rendered.
const LOAD_SCRIPT: &str = "(function(){function done(){var r=document.documentElement,ok=0,\
f=document.querySelectorAll('iframe.flame');for(var i=0;i<f.length;i++){try{\
var w=f[i].contentWindow,d=f[i].contentDocument;\
if(d&&d.getElementById('frames')&&w.svg)ok++;}catch(e){}}\
r.setAttribute('data-flames-drawn',String(ok));r.setAttribute('data-rendered','yes');}\
if(document.readyState==='complete')done();else window.addEventListener('load',done);})();";

fn page(summary: &str, sections: &str, dumps: usize, groups: usize) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n\
         <script>{ERRORS_SCRIPT}</script>\n\
         <title>jeprof-rs report</title>\n<style>{STYLE}</style></head><body>\n\
         <h1>jeprof-rs report</h1>\n<p>{dumps} dump{} in {groups} series (by process and \
         kind; dumps of different kinds or processes are never added up):</p>\n<ul>\n{summary}</ul>\n\
         {sections}<script>{LOAD_SCRIPT}</script>\n</body></html>\n",
        if dumps == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_everywhere() {
        use crate::profile::Values;
        use crate::resolve::Frame;
        let evil = "push_back<\"x\">&'<script>alert(1)</script>";
        let mut tables = Tables::default();
        let f = tables.intern_frame(Frame {
            function: evil.into(),
            file: None,
            line: None,
            library: Some("/lib/<b>.so".into()),
        });
        let stack = |bytes: f64| Stack {
            locations: vec![],
            frames: vec![f],
            values: Values {
                inuse_bytes: bytes,
                inuse_objects: 1.0,
                ..Default::default()
            },
        };
        let series = [vec![stack(100.0)], vec![stack(5000.0)], vec![stack(9000.0)]];
        let points: Vec<trend::Point<'_>> = series
            .iter()
            .map(|s| trend::Point {
                time: None,
                period: 1.0,
                stacks: s,
            })
            .collect();
        let t = trend::compute(&tables, &points, Measure::InuseSpace, By::Function);
        assert_eq!(t.rows.len(), 1);
        let tops: Vec<top::Top> = series
            .iter()
            .map(|s| top::compute(&tables, s, Measure::InuseSpace, By::Function))
            .collect();
        let lines = chart_lines(&t, &tops, CHART_SITES);
        let html = [
            chart(&lines, &[100.0, 5000.0, 9000.0], &[0.0, 1.0, 2.0], false),
            legend(&lines, &t),
            top_table(&tops[2], 10),
        ]
        .concat();
        assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
        assert!(!html.contains("\"x\""), "{html}");
        assert!(html.contains("push_back&lt;&quot;x&quot;&gt;&amp;&#39;&lt;script&gt;"));
        assert!(html.contains("data-bytes=\"100,5000,9000\""), "{html}");
        assert!(html.contains("class=\"growing\""), "{html}");
    }

    #[test]
    fn steps_and_frames() {
        assert_eq!(nice_step(2.5 * 1048576.0), (524288.0, 1048576.0));
        assert_eq!(nice_step(900.0).0, 200.0);
        let f = flame_frame(
            "<?xml version=\"1.0\"?><!DOCTYPE svg><svg height=\"150\" a=\"<b>\">x</svg>",
        );
        assert!(f.contains("height:154px"), "{f}");
        assert!(!f.contains("<?xml"), "{f}");
        assert!(f.contains("srcdoc=\"&lt;!DOCTYPE html&gt;"), "{f}");
        assert!(
            !f.contains("<svg"),
            "the document is escaped in the attribute: {f}"
        );
    }
}
