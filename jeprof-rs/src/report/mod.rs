//! Reports over resolved stacks. Each submodule computes a value and formats it to a `String`
//! or bytes; writing files and printing are the CLI's job.

pub mod collapsed;
pub mod diff;
pub mod flame;
pub mod leading;
pub mod memory;
pub mod pprof;
pub mod proto;
pub mod rss;
pub mod top;
pub mod trend;

/// A right-aligned table of `cells` under `header`, one row per site, each followed by the
/// site's name and its library's file name in brackets (unless the name already says
/// "… in <lib>"). Used by `diff` and `trend`.
pub fn site_table<'a, const N: usize>(
    header: &[&str; N],
    cells: &[[String; N]],
    sites: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (h, w) in header.iter().zip(&widths) {
        out.push_str(&format!("{h:>w$} "));
    }
    out.push_str(" site\n");
    for (c, (name, library)) in cells.iter().zip(sites) {
        for (v, w) in c.iter().zip(&widths) {
            out.push_str(&format!("{v:>w$} "));
        }
        let lib = library.map(|l| l.rsplit('/').next().unwrap_or(l));
        match lib {
            Some(lib) if !name.ends_with(&format!(" in {lib}")) => {
                out.push_str(&format!(" {name}  {}\n", top::bracket(lib)))
            }
            _ => out.push_str(&format!(" {name}\n")),
        }
    }
    out
}
