//! Perf maps (`/tmp/perf-<pid>.map`, written by JITs such as the JVM with `-XX:+DumpPerfMapAtExit`
//! or perf-map-agent): lines `START SIZE name`, hexadecimal with or without `0x`. They name
//! code in anonymous executable memory that no object file describes.

use std::path::Path;

#[derive(Clone, Debug, Default)]
pub struct PerfMap {
    /// `(start, size, name)` sorted by start; for equal starts the entry written last wins.
    entries: Vec<(u64, u64, String)>,
    /// Lines that did not parse (skipped, reported once as a warning).
    pub bad_lines: usize,
    /// First bad line number, for the warning.
    pub first_bad_line: Option<usize>,
}

fn hex(word: &str) -> Option<u64> {
    let word = word
        .strip_prefix("0x")
        .or_else(|| word.strip_prefix("0X"))
        .unwrap_or(word);
    u64::from_str_radix(word, 16).ok()
}

/// HotSpot names its template interpreter's code `Interpreter`: every interpreted Java method
/// runs there, so the frame says "some interpreted Java code", which is what we print.
pub const INTERPRETED: &str = "[interpreted Java]";

fn rename(name: &str) -> String {
    match name {
        "Interpreter" => INTERPRETED.to_string(),
        _ => name.to_string(),
    }
}

impl PerfMap {
    pub fn parse(text: &str) -> PerfMap {
        let mut map = PerfMap::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let entry = (|| {
                let start = hex(parts.next()?)?;
                let size = hex(parts.next()?.trim())?;
                let name = parts.next()?.trim();
                (!name.is_empty()).then(|| (start, size, rename(name)))
            })();
            match entry {
                Some(e) => map.entries.push(e),
                None => {
                    map.bad_lines += 1;
                    map.first_bad_line.get_or_insert(i + 1);
                }
            }
        }
        // Stable sort, then keep the last entry among those with the same start.
        map.entries.sort_by_key(|e| e.0);
        let mut deduped: Vec<(u64, u64, String)> = Vec::with_capacity(map.entries.len());
        for e in map.entries.drain(..) {
            match deduped.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => deduped.push(e),
            }
        }
        map.entries = deduped;
        map
    }

    pub fn load(path: &Path) -> std::io::Result<PerfMap> {
        let bytes = std::fs::read(path)?;
        Ok(PerfMap::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// The name of the code containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self
            .entries
            .partition_point(|e| e.0 <= addr)
            .checked_sub(1)?;
        let (start, size, name) = &self.entries[i];
        (addr - start < (*size).max(1)).then_some(name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_looks_up() {
        let m = PerfMap::parse(
            "7f0000001000 100 Interpreter\n0x7f0000002000 0x20 LFoo;::bar (compiled)\nbad line\n7f0000001000 10 Newer\n",
        );
        assert_eq!(m.bad_lines, 1);
        assert_eq!(m.first_bad_line, Some(3));
        assert_eq!(m.lookup(0x7f0000001005), Some("Newer"));
        assert_eq!(m.lookup(0x7f0000001050), None);
        assert_eq!(m.lookup(0x7f000000201f), Some("LFoo;::bar (compiled)"));
        assert_eq!(m.lookup(0x7f0000002020), None);
        assert_eq!(m.lookup(0x10), None);
        let m = PerfMap::parse("7f0000001000 100 Interpreter\n");
        assert_eq!(m.lookup(0x7f0000001005), Some(INTERPRETED));
    }
}
