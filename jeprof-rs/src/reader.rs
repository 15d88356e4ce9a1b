//! The reader: bytes of a heap profile in, [`Profile`] out, or a [`ParseError`] naming the first
//! bad line. Never panics, never returns a partial profile: a dump that was cut short (no final
//! newline, a stack without its counts, no `MAPPED_LIBRARIES:` section) is an error.
//!
//! Two formats, told apart by the first line:
//! - jemalloc `heap_v2/<R>`: `@ addrs` lines each followed by `t*: n: s [n: s]` and optional
//!   per-thread `tN: ...` lines; `# key: value` metadata lines (written by our preload) anywhere
//!   before `MAPPED_LIBRARIES:`.
//! - gperftools `heap profile: n: s [n: s] @ type/rate`: one `n: s [n: s] @ addrs` line per stack.

use std::collections::BTreeMap;
use std::path::Path;

use crate::address::ReturnAddress;
use crate::error::{Error, ParseError, ParseErrorKind as K};
use crate::maps::{self, Mapping};
use crate::profile::{Format, MappedRange, Profile, RawCounts, RssMap, Sample, Sampling};
use crate::unsample::unsample;

/// Read and parse a profile file. Errors name the file (and line).
pub fn read_file(path: &Path) -> Result<Profile, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read profile", e))?;
    parse(&bytes).map_err(|e| Error::parse(path, e))
}

/// Lines of the input with 1-based numbers; reports a last line without newline as cut.
struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            rest: input,
            number: 0,
        }
    }

    /// The next line as text (without `\n` and `\r`), or `None` at the end of the input.
    fn next_line(&mut self) -> Option<Result<(usize, &'a str), ParseError>> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let (line, cut) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                (line, false)
            }
            None => {
                let line = self.rest;
                self.rest = &[];
                (line, true)
            }
        };
        let Ok(text) = std::str::from_utf8(line) else {
            return Some(Err(ParseError::new(self.number, K::NotUtf8)));
        };
        if cut && !text.trim().is_empty() {
            return Some(Err(ParseError::new(self.number, K::CutLine)));
        }
        Some(Ok((self.number, text.trim_end_matches('\r'))))
    }
}

/// Parse a whole profile.
pub fn parse(input: &[u8]) -> Result<Profile, ParseError> {
    if input.is_empty() {
        return Err(ParseError::new(1, K::Empty));
    }
    let mut lines = Lines::new(input);
    let header = match lines.next_line() {
        Some(Ok((_, h))) => h.trim(),
        Some(Err(e)) if e.kind == K::CutLine => {
            // A header cut short is still recognisable; anything else is not a profile.
            let text = std::str::from_utf8(input).unwrap_or("").trim();
            if text.starts_with("heap_v2/") || text.starts_with("heap profile:") {
                return Err(e);
            }
            return Err(ParseError::new(1, K::NotAProfile));
        }
        Some(Err(_)) | None => return Err(ParseError::new(1, K::NotAProfile)),
    };
    if let Some(period) = header.strip_prefix("heap_v2/") {
        let period =
            parse_number(period.trim(), 1).map_err(|_| ParseError::new(1, K::BadHeader))?;
        parse_jemalloc(lines, period)
    } else if let Some(rest) = header.strip_prefix("heap profile:") {
        parse_gperftools(lines, rest)
    } else {
        Err(ParseError::new(1, K::NotAProfile))
    }
}

/// A stack seen, waiting for its counts line.
struct Pending {
    stack: Vec<ReturnAddress>,
    line: usize,
    counts: Option<RawCounts>,
    id: Option<u64>,
}

fn parse_jemalloc(mut lines: Lines<'_>, period: u64) -> Result<Profile, ParseError> {
    let sampling = if period <= 1 {
        Sampling::Exact
    } else {
        Sampling::Poisson {
            period: period as f64,
        }
    };
    let mut profile = empty_profile(Format::JemallocV2, period, sampling);
    let mut header_totals: Option<RawCounts> = None;
    let mut pending: Option<Pending> = None;
    let mut next_id: Option<u64> = None;
    while let Some(next) = lines.next_line() {
        let (no, line) = next?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if is_maps_start(t) {
            finish(&mut profile, pending.take())?;
            profile.header_totals = header_totals.unwrap_or_default();
            profile.mappings = parse_maps(&mut lines)?;
            return Ok(profile);
        }
        if let Some(meta) = t.strip_prefix('#') {
            if let Some(id) = meta.trim().strip_prefix("stack_id ") {
                next_id = Some(
                    id.trim()
                        .parse()
                        .map_err(|_| ParseError::new(no, K::BadNumber))?,
                );
            } else {
                add_line(&mut profile, meta, no)?;
            }
        } else if let Some(frames) = t.strip_prefix('@') {
            finish(&mut profile, pending.take())?;
            pending = Some(Pending {
                stack: parse_stack(frames, no)?,
                line: no,
                counts: None,
                id: next_id.take(),
            });
        } else if let Some(rest) = t.strip_prefix('t') {
            let (label, rest) = rest
                .split_once(':')
                .ok_or(ParseError::new(no, K::Malformed))?;
            let (counts, tail) = parse_counts(rest, no)?;
            if label == "*" {
                if !tail.trim().is_empty() {
                    return Err(ParseError::new(no, K::BadCounts));
                }
                match (&mut pending, &mut header_totals) {
                    (Some(p), _) if p.counts.is_some() => {
                        return Err(ParseError::new(no, K::DuplicateCounts));
                    }
                    (Some(p), _) => p.counts = Some(counts),
                    (None, Some(_)) => return Err(ParseError::new(no, K::DuplicateCounts)),
                    (None, h) => *h = Some(counts),
                }
            } else if label.is_empty() || !label.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::new(no, K::Malformed));
            }
            // Per-thread lines (`tN: ... [thread name]`) are a breakdown of `t*:`; checked, not kept.
        } else {
            return Err(ParseError::new(no, K::Malformed));
        }
    }
    if let Some(p) = pending.filter(|p| p.counts.is_none()) {
        return Err(ParseError::new(p.line, K::StackWithoutCounts));
    }
    Err(ParseError::new(lines.number + 1, K::MissingMaps))
}

fn parse_gperftools(mut lines: Lines<'_>, header_rest: &str) -> Result<Profile, ParseError> {
    let (totals, tail) = parse_counts(header_rest, 1)?;
    // Profile type and rate, as in jeprof's ReadHeapProfile.
    let tail = tail.trim();
    let (kind, rate) = match tail.strip_prefix('@') {
        Some(t) => {
            let t = t.trim();
            match t.split_once('/') {
                Some((kind, rate)) => (Some(kind), Some(parse_number(rate.trim(), 1)?)),
                None => (Some(t), None),
            }
        }
        None if tail.is_empty() => (None, None),
        None => return Err(ParseError::new(1, K::BadHeader)),
    };
    const DEFAULT: f64 = 128.0 * 1024.0;
    let sampling = match kind {
        Some(k) if k == "heapprofile" || !k.contains("heap") => Sampling::Exact,
        Some(k) if k.contains("_v2") => match rate {
            Some(r) if r <= 1 => Sampling::Exact,
            Some(r) => Sampling::Poisson { period: r as f64 },
            None => Sampling::Poisson { period: DEFAULT },
        },
        Some(_) => Sampling::Uniform {
            adjustment: rate.filter(|&r| r > 0).map_or(DEFAULT, |r| r as f64 / 2.0),
        },
        None if totals.inuse_objects == totals.alloc_objects
            && totals.inuse_bytes == totals.alloc_bytes =>
        {
            Sampling::Uniform {
                adjustment: DEFAULT,
            }
        }
        None => Sampling::Exact,
    };
    let mut profile = empty_profile(Format::Gperftools, rate.unwrap_or(0), sampling);
    profile.header_totals = totals;
    while let Some(next) = lines.next_line() {
        let (no, line) = next?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if is_maps_start(t) {
            profile.mappings = parse_maps(&mut lines)?;
            return Ok(profile);
        }
        if let Some(meta) = t.strip_prefix('#') {
            add_line(&mut profile, meta, no)?;
            continue;
        }
        if !t.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(ParseError::new(no, K::Malformed));
        }
        let (counts, rest) = parse_counts(t, no)?;
        let frames = rest
            .trim()
            .strip_prefix('@')
            .ok_or(ParseError::new(no, K::BadCounts))?;
        let stack = parse_stack(frames, no)?;
        finish(
            &mut profile,
            Some(Pending {
                stack,
                line: no,
                counts: Some(counts),
                id: None,
            }),
        )?;
    }
    Err(ParseError::new(lines.number + 1, K::MissingMaps))
}

fn empty_profile(format: Format, period: u64, sampling: Sampling) -> Profile {
    Profile {
        format,
        period,
        sampling,
        header_totals: RawCounts::default(),
        samples: Vec::new(),
        metadata: BTreeMap::new(),
        mappings: Vec::new(),
        rss_maps: Vec::new(),
        mapped_ranges: Vec::new(),
        java_methods: BTreeMap::new(),
    }
}

fn is_maps_start(t: &str) -> bool {
    t.starts_with("MAPPED_LIBRARIES:") || t.starts_with("--- Memory map:")
}

/// Turn a complete pending stack into a sample.
fn finish(profile: &mut Profile, pending: Option<Pending>) -> Result<(), ParseError> {
    let Some(p) = pending else { return Ok(()) };
    let raw = p
        .counts
        .ok_or(ParseError::new(p.line, K::StackWithoutCounts))?;
    profile.samples.push(Sample {
        stack: p.stack,
        raw,
        values: unsample(profile.sampling, raw),
        line: p.line,
        id: p.id,
    });
    Ok(())
}

/// A `#` line: `rss_map` and `mapped_range` lines (the preload's residency records), else
/// `# key: value` metadata.
fn add_line(profile: &mut Profile, meta: &str, no: usize) -> Result<(), ParseError> {
    let m = meta.trim_start();
    let bad = || ParseError::new(no, K::BadResidency);
    let range = |f: Option<&str>| -> Result<(u64, u64), ParseError> {
        let (a, b) = f.and_then(|f| f.split_once('-')).ok_or_else(bad)?;
        let a = u64::from_str_radix(a, 16).map_err(|_| bad())?;
        let b = u64::from_str_radix(b, 16).map_err(|_| bad())?;
        if b < a {
            return Err(bad());
        }
        Ok((a, b))
    };
    let num = |f: Option<&str>| -> Result<u64, ParseError> {
        f.and_then(|f| f.parse().ok()).ok_or_else(bad)
    };
    if let Some(rest) = m.strip_prefix("rss_map ") {
        // `<start>-<end> <rss> <anon|file> <path, may hold spaces, may be empty>`
        let mut parts = rest.splitn(4, ' ');
        let (start, end) = range(parts.next())?;
        let rss = num(parts.next())?;
        let anon = match parts.next() {
            Some("anon") => true,
            Some("file") => false,
            _ => return Err(bad()),
        };
        let path = parts.next().unwrap_or("").trim().to_string();
        profile.rss_maps.push(RssMap {
            start,
            end,
            rss,
            anon,
            path,
        });
    } else if let Some(rest) = m.strip_prefix("java_method ") {
        // `<frame> <pkg.Class.method>`: the first line for a frame wins.
        let bad = || ParseError::new(no, K::BadJavaMethod);
        let (frame, name) = rest.split_once(' ').ok_or_else(bad)?;
        let frame = frame.strip_prefix("0x").ok_or_else(bad)?;
        let frame = u64::from_str_radix(frame, 16).map_err(|_| bad())?;
        profile
            .java_methods
            .entry(frame)
            .or_insert_with(|| name.trim().to_string());
    } else if let Some(rest) = m.strip_prefix("mapped_range ") {
        let mut parts = rest.split_ascii_whitespace();
        let (start, end) = range(parts.next())?;
        let resident = num(parts.next())?;
        let stack = num(parts.next())?;
        profile.mapped_ranges.push(MappedRange {
            start,
            end,
            resident,
            stack,
        });
    } else {
        add_metadata(&mut profile.metadata, meta);
    }
    Ok(())
}

/// `# key: value`; lines without a colon are plain comments.
fn add_metadata(metadata: &mut BTreeMap<String, String>, text: &str) {
    if let Some((key, value)) = text.split_once(':') {
        let key = key.trim();
        if !key.is_empty() {
            metadata.insert(key.to_string(), value.trim().to_string());
        }
    }
}

/// The rest of the file after `MAPPED_LIBRARIES:`.
fn parse_maps(lines: &mut Lines<'_>) -> Result<Vec<Mapping>, ParseError> {
    let mut mappings = Vec::new();
    while let Some(next) = lines.next_line() {
        let (no, line) = next?;
        if line.trim().is_empty() {
            continue;
        }
        mappings.push(maps::parse_line(line, no)?);
    }
    Ok(mappings)
}

/// Space-separated frames, `0x` prefix optional.
fn parse_stack(text: &str, no: usize) -> Result<Vec<ReturnAddress>, ParseError> {
    text.split_ascii_whitespace()
        .map(|word| parse_address(word, no).map(ReturnAddress))
        .collect()
}

fn parse_address(word: &str, no: usize) -> Result<u64, ParseError> {
    let hex = word
        .strip_prefix("0x")
        .or_else(|| word.strip_prefix("0X"))
        .unwrap_or(word);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError::new(no, K::BadAddress));
    }
    u64::from_str_radix(hex, 16).map_err(|_| ParseError::new(no, K::AddressOverflow))
}

fn parse_number(text: &str, no: usize) -> Result<u64, ParseError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(no, K::BadNumber));
    }
    text.parse()
        .map_err(|_| ParseError::new(no, K::NumberOverflow))
}

/// `n: s [n: s]` with any whitespace around the tokens. Returns the counts and the text after `]`.
fn parse_counts(text: &str, no: usize) -> Result<(RawCounts, &str), ParseError> {
    let mut cur = Cursor { rest: text, no };
    let inuse_objects = cur.number()?;
    cur.expect(':')?;
    let inuse_bytes = cur.number()?;
    cur.expect('[')?;
    let alloc_objects = cur.number()?;
    cur.expect(':')?;
    let alloc_bytes = cur.number()?;
    cur.expect(']')?;
    Ok((
        RawCounts {
            inuse_objects,
            inuse_bytes,
            alloc_objects,
            alloc_bytes,
        },
        cur.rest,
    ))
}

struct Cursor<'a> {
    rest: &'a str,
    no: usize,
}

impl Cursor<'_> {
    fn number(&mut self) -> Result<u64, ParseError> {
        let s = self.rest.trim_start();
        let end = s
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.')
            .unwrap_or(s.len());
        if end == 0 {
            let kind = if s.is_empty() {
                K::BadCounts
            } else {
                K::BadNumber
            };
            return Err(ParseError::new(self.no, kind));
        }
        let value = parse_number(&s[..end], self.no)?;
        self.rest = &s[end..];
        Ok(value)
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        let s = self.rest.trim_start();
        self.rest = s
            .strip_prefix(c)
            .ok_or(ParseError::new(self.no, K::BadCounts))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "heap_v2/524288
  t*: 3: 6144 [0: 0]
  t0: 2: 4096 [0: 0]
  t1: 1: 2048 [0: 0] worker-1
# pid: 4242
# time: 1700000000.5
# kind: heap
@ 0x7fa9c32a2630 0x7fa9c32a2d21 0x557598f06786
  t*: 1: 2048 [0: 0]
  t0: 1: 2048 [0: 0]
@ 0x10 0x20
  t*: 2: 4096 [5: 10240]
  t1: 2: 4096 [5: 10240]

MAPPED_LIBRARIES:
557598f02000-557598f06000 r--p 00000000 fe:00 247497                     /usr/bin/ls
7fa9c3000000-7fa9c3400000 r-xp 00000000 00:00 0
";

    #[test]
    fn parses_small_dump_exactly() {
        let p = parse(SMALL.as_bytes()).unwrap();
        assert_eq!(p.format, Format::JemallocV2);
        assert_eq!(p.period, 524288);
        assert_eq!(
            p.header_totals,
            RawCounts {
                inuse_objects: 3,
                inuse_bytes: 6144,
                alloc_objects: 0,
                alloc_bytes: 0
            }
        );
        assert_eq!(p.samples.len(), 2);
        assert_eq!(
            p.samples[0].stack,
            vec![
                ReturnAddress(0x7fa9c32a2630),
                ReturnAddress(0x7fa9c32a2d21),
                ReturnAddress(0x557598f06786)
            ]
        );
        assert_eq!(p.samples[0].line, 8);
        assert_eq!(
            p.samples[1].raw,
            RawCounts {
                inuse_objects: 2,
                inuse_bytes: 4096,
                alloc_objects: 5,
                alloc_bytes: 10240
            }
        );
        assert_eq!(p.metadata.get("pid").map(String::as_str), Some("4242"));
        assert_eq!(p.pid(), Some(4242));
        assert_eq!(p.time(), Some(1700000000.5));
        assert_eq!(p.mappings.len(), 2);
        assert_eq!(p.mappings[0].path.as_deref(), Some("/usr/bin/ls"));
        // Unsampled with jeprof's formula.
        let s = &p.samples[0].values;
        let scale = 1.0 / (1.0 - (-(2048.0 / 524288.0f64)).exp());
        assert!((s.inuse_bytes - 2048.0 * scale).abs() < 1e-6);
        assert!((s.inuse_objects - scale).abs() < 1e-9);
    }

    #[test]
    fn java_method_lines_name_tagged_frames() {
        let text = "heap_v2/1\n  t*: 1: 64 [1: 64]\n@ 0x401000 0x40007f0000001000 0x40007f0000002000\n  t*: 1: 64 [1: 64]\n# java_method 0x40007f0000001000 demo.Mat.n_Mat\n# java_method 0x40007f0000002000 [unknown Java method]\n# java_method 0x40007f0000001000 other.Name\n\nMAPPED_LIBRARIES:\n";
        let p = parse(text.as_bytes()).unwrap();
        assert_eq!(p.java_methods.len(), 2);
        // The first line for a frame wins.
        assert_eq!(p.java_methods[&0x4000_7f00_0000_1000], "demo.Mat.n_Mat");
        assert_eq!(
            p.java_methods[&0x4000_7f00_0000_2000],
            "[unknown Java method]"
        );
        assert!(p.metadata.keys().all(|k| !k.contains("java_method")));
        for bad in [
            "# java_method 0x12\n",
            "# java_method 12 name\n",
            "# java_method 0xzz name\n",
        ] {
            let text = format!("heap_v2/1\n  t*: 0: 0 [0: 0]\n{bad}\nMAPPED_LIBRARIES:\n");
            assert_eq!(err(&text), (3, K::BadJavaMethod), "{bad}");
        }
    }

    #[test]
    fn exact_mode_is_not_scaled() {
        let text = "heap_v2/1\n  t*: 3: 3000 [3: 3000]\n@ 0x1 0x2\n  t*: 3: 3000 [3: 3000]\n\nMAPPED_LIBRARIES:\n";
        let p = parse(text.as_bytes()).unwrap();
        assert_eq!(p.samples[0].values.inuse_bytes, 3000.0);
        assert_eq!(p.samples[0].values.alloc_objects, 3.0);
    }

    fn err(text: &str) -> (usize, K) {
        let e = parse(text.as_bytes()).unwrap_err();
        (e.line, e.kind)
    }

    #[test]
    fn bad_inputs_name_the_line() {
        assert_eq!(err(""), (1, K::Empty));
        assert_eq!(err("hello\n"), (1, K::NotAProfile));
        assert_eq!(
            parse(b"\x7fELF\x02\x01\x00\x00\xff\xfe\n").unwrap_err(),
            ParseError::new(1, K::NotAProfile)
        );
        assert_eq!(err("heap_v2/abc\n"), (1, K::BadHeader));
        assert_eq!(err("heap_v2/1\n"), (2, K::MissingMaps));
        // A stack without its counts line, then end of file.
        assert_eq!(
            err("heap_v2/1\n  t*: 1: 2 [0: 0]\n@ 0x1 0x2\n"),
            (3, K::StackWithoutCounts)
        );
        // ... or followed by another stack.
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n@ 0x2\n  t*: 1: 2 [0: 0]\nMAPPED_LIBRARIES:\n"),
            (2, K::StackWithoutCounts)
        );
        // ... or followed by the maps.
        assert_eq!(
            err("heap_v2/1\n@ 0x1\nMAPPED_LIBRARIES:\n"),
            (2, K::StackWithoutCounts)
        );
        // Cut in the middle of a line.
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: 1: 2 [0: 0]\n@ 0x7fa9c3"),
            (4, K::CutLine)
        );
        assert_eq!(err("heap_v2/1\n@ 0x1\n  t*: 1: 2 [0:"), (3, K::CutLine));
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: 1: 2 [0: 0]\nMAPPED_LIBRARIES:\n1000-2000 r-x"),
            (5, K::CutLine)
        );
        // Malformed lines.
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: x: 2 [0: 0]\n"),
            (3, K::BadNumber)
        );
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: -1: 2 [0: 0]\n"),
            (3, K::BadNumber)
        );
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: 1: 99999999999999999999999 [0: 0]\n"),
            (3, K::NumberOverflow)
        );
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: 1: 2 0: 0]\n"),
            (3, K::BadCounts)
        );
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: 1: 2 [0: 0]\n  t*: 1: 2 [0: 0]\n"),
            (4, K::DuplicateCounts)
        );
        assert_eq!(err("heap_v2/1\n@ 0xzz\n"), (2, K::BadAddress));
        assert_eq!(
            err("heap_v2/1\n@ 0x11112222333344445\n"),
            (2, K::AddressOverflow)
        );
        assert_eq!(err("heap_v2/1\n\nwhat is this\n"), (3, K::Malformed));
        assert_eq!(
            err("heap_v2/1\n@ 0x1\n  t*: 1: 2 [0: 0]\nMAPPED_LIBRARIES:\nnot a map\n"),
            (5, K::BadMapsLine)
        );
        assert_eq!(
            parse(b"heap_v2/1\n@ 0x1\n\xff\xfe\n").unwrap_err(),
            ParseError::new(3, K::NotUtf8)
        );
    }

    #[test]
    fn gperftools_variants() {
        let text = "heap profile:    2:   300 [    4:   600] @ heapprofile
     1:   100 [     2:   200] @ 0x0000000000401000 0x0000000000402000
     1:   200 [     2:   400] @ 401000

MAPPED_LIBRARIES:
00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/prog
";
        let p = parse(text.as_bytes()).unwrap();
        assert_eq!(p.format, Format::Gperftools);
        assert_eq!(p.sampling, Sampling::Exact);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[1].stack, vec![ReturnAddress(0x401000)]);
        assert_eq!(p.samples[1].values.alloc_bytes, 400.0);

        let v2 = "heap profile:   1:  2048 [   1:  2048] @ heap_v2/524288\n   1: 2048 [1: 2048] @ 0x1\nMAPPED_LIBRARIES:\n";
        let p = parse(v2.as_bytes()).unwrap();
        assert_eq!(p.sampling, Sampling::Poisson { period: 524288.0 });
        assert!(p.samples[0].values.inuse_bytes > 2048.0 * 200.0);

        let v1 = "heap profile:   1:  100 [   1:  100] @ heap/2000\n   1: 100 [1: 100] @ 0x1\nMAPPED_LIBRARIES:\n";
        let p = parse(v1.as_bytes()).unwrap();
        assert_eq!(p.sampling, Sampling::Uniform { adjustment: 1000.0 });
        assert_eq!(p.samples[0].values.inuse_bytes, 1000.0);

        let old =
            "heap profile:   1:  100 [   1:  100]\n   1: 100 [1: 100] @ 0x1\nMAPPED_LIBRARIES:\n";
        assert_eq!(
            parse(old.as_bytes()).unwrap().sampling,
            Sampling::Uniform {
                adjustment: 131072.0
            }
        );

        assert_eq!(
            err("heap profile: 1: 2 [3: 4] @ heapprofile\n  1: 2 [3: 4]\n"),
            (2, K::BadCounts)
        );
        assert_eq!(
            err("heap profile: 1: 2 [3: 4] @ heapprofile\n  1: 2 [3: 4] @ 0x1\n"),
            (3, K::MissingMaps)
        );
    }

    #[test]
    fn empty_stack_is_kept() {
        let p = parse(b"heap_v2/1\n@\n  t*: 1: 8 [1: 8]\nMAPPED_LIBRARIES:\n").unwrap();
        assert!(p.samples[0].stack.is_empty());
    }
}
