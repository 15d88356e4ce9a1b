//! The parsed profile: what the reader produces and every report consumes.
//! Pure data, no I/O.

use std::collections::BTreeMap;

use crate::address::ReturnAddress;
use crate::maps::Mapping;
use crate::measure::Measure;

/// The four numbers of a stack, as written in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCounts {
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
}

/// The four numbers after unsampling (estimates of the true totals; exact when not sampled).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Values {
    pub inuse_objects: f64,
    pub inuse_bytes: f64,
    pub alloc_objects: f64,
    pub alloc_bytes: f64,
}

impl Values {
    /// The value of one measure.
    pub fn get(&self, measure: Measure) -> f64 {
        match measure {
            Measure::InuseSpace => self.inuse_bytes,
            Measure::InuseObjects => self.inuse_objects,
            Measure::AllocSpace => self.alloc_bytes,
            Measure::AllocObjects => self.alloc_objects,
        }
    }

    /// `(bytes, objects)` of the in-use or the alloc pair, whichever `measure` belongs to.
    pub fn pair(&self, measure: Measure) -> (f64, f64) {
        if measure.is_alloc() {
            (self.alloc_bytes, self.alloc_objects)
        } else {
            (self.inuse_bytes, self.inuse_objects)
        }
    }

    pub fn add(&mut self, other: &Values) {
        self.inuse_objects += other.inuse_objects;
        self.inuse_bytes += other.inuse_bytes;
        self.alloc_objects += other.alloc_objects;
        self.alloc_bytes += other.alloc_bytes;
    }

    pub fn sub(&mut self, other: &Values) {
        self.inuse_objects -= other.inuse_objects;
        self.inuse_bytes -= other.inuse_bytes;
        self.alloc_objects -= other.alloc_objects;
        self.alloc_bytes -= other.alloc_bytes;
    }

    pub fn is_zero(&self) -> bool {
        self.inuse_objects == 0.0
            && self.inuse_bytes == 0.0
            && self.alloc_objects == 0.0
            && self.alloc_bytes == 0.0
    }
}

/// One stack of the profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Frames, innermost first, all return addresses.
    pub stack: Vec<ReturnAddress>,
    pub raw: RawCounts,
    pub values: Values,
    /// 1-based line of the `@` (or gperftools counts) line, for messages.
    pub line: usize,
    /// The preload's id of this stack (`# stack_id N` before the `@` line of a mmap dump), which
    /// `# mapped_range` lines refer to.
    pub id: Option<u64>,
}

/// A mapping of the process with resident pages, from a `# rss_map` line (the preload reads
/// `/proc/self/smaps` at dump time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssMap {
    pub start: u64,
    pub end: u64,
    /// Resident bytes (smaps `Rss:`).
    pub rss: u64,
    /// Anonymous memory (inode 0), else file-backed.
    pub anon: bool,
    /// Path or pseudo-path (`[heap]`, `[stack]`), empty for plain anonymous memory.
    pub path: String,
}

/// A range of the mmap space, from a `# mapped_range` line: still mapped by the stack with
/// preload id `stack`, `resident` bytes of it in memory (mincore) at dump time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedRange {
    pub start: u64,
    pub end: u64,
    pub resident: u64,
    pub stack: u64,
}

/// Which file format the profile came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// jemalloc / our preload: `heap_v2/<period>`.
    JemallocV2,
    /// gperftools: `heap profile: ...`.
    Gperftools,
}

/// How counts were sampled, which decides how they are unsampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// Every allocation recorded (or heap-profiler output): counts are exact.
    Exact,
    /// Poisson sampling with mean period `R` bytes (jemalloc, tcmalloc `_v2`).
    Poisson { period: f64 },
    /// gperftools' old uniform sampling with the given adjustment (half the written rate).
    Uniform { adjustment: f64 },
}

/// A parsed heap profile.
#[derive(Clone, Debug)]
pub struct Profile {
    pub format: Format,
    /// The sample period as written in the header (`heap_v2/<R>`), 0 when there is none.
    pub period: u64,
    pub sampling: Sampling,
    /// Totals from the header line, as written (not unsampled).
    pub header_totals: RawCounts,
    pub samples: Vec<Sample>,
    /// `# key: value` lines. Unknown keys are kept as they are.
    pub metadata: BTreeMap<String, String>,
    /// The `MAPPED_LIBRARIES:` section.
    pub mappings: Vec<Mapping>,
    /// `# rss_map` lines (resident mappings at dump time), in file order.
    pub rss_maps: Vec<RssMap>,
    /// `# mapped_range` lines (the mmap space's ranges with their resident bytes).
    pub mapped_ranges: Vec<MappedRange>,
    /// `# java_method <frame> <name>` lines: names of the Java frames (`JAVA_TAG | Method*`)
    /// the preload read from the JVM's metadata when it wrote the dump.
    pub java_methods: BTreeMap<u64, String>,
}

impl Profile {
    /// Sum of unsampled values over all stacks.
    pub fn totals(&self) -> Values {
        let mut total = Values::default();
        for sample in &self.samples {
            total.add(&sample.values);
        }
        total
    }

    /// The pid of the profiled process, from metadata (`# pid:`).
    pub fn pid(&self) -> Option<u32> {
        self.metadata.get("pid").and_then(|p| p.trim().parse().ok())
    }

    /// A metadata value parsed as a number of bytes.
    pub fn bytes(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// Resident bytes of each stack of the mmap space (by sample index), from the
    /// `# mapped_range` lines; empty when the dump has none.
    pub fn resident_by_sample(&self) -> Vec<u64> {
        if self.mapped_ranges.is_empty() {
            return Vec::new();
        }
        let mut by_id: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for r in &self.mapped_ranges {
            *by_id.entry(r.stack).or_default() += r.resident;
        }
        self.samples
            .iter()
            .map(|s| s.id.and_then(|id| by_id.get(&id).copied()).unwrap_or(0))
            .collect()
    }

    /// Wall-clock time of the dump in unix seconds, from metadata (`# time:`).
    pub fn time(&self) -> Option<f64> {
        self.metadata
            .get("time")
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| t.is_finite())
    }
}

/// The parts of a dump file name `<prefix>.<pid>.<seq>.<tag>[.mmap].heap`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpName {
    pub prefix: String,
    pub pid: u32,
    pub seq: u64,
    pub tag: String,
    pub mmap: bool,
}

impl DumpName {
    /// Parse a file name (not a path). `None` when it does not follow the convention.
    pub fn parse(name: &str) -> Option<DumpName> {
        let rest = name.strip_suffix(".heap")?;
        let (rest, mmap) = match rest.strip_suffix(".mmap") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let mut parts = rest.rsplitn(4, '.');
        let tag = parts.next()?;
        let seq = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let prefix = parts.next()?;
        let tag_ok = tag == "f"
            || (tag.len() > 1
                && matches!(tag.as_bytes()[0], b'i' | b'u' | b'm')
                && tag[1..].bytes().all(|b| b.is_ascii_digit()));
        if !tag_ok {
            return None;
        }
        Some(DumpName {
            prefix: prefix.to_string(),
            pid,
            seq,
            tag: tag.to_string(),
            mmap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_names() {
        let d = DumpName::parse("jeprof.1234.7.f.heap").unwrap();
        assert_eq!(
            (d.prefix.as_str(), d.pid, d.seq, d.tag.as_str(), d.mmap),
            ("jeprof", 1234, 7, "f", false)
        );
        let d = DumpName::parse("a.b.c.99.0.i3.mmap.heap").unwrap();
        assert_eq!(
            (d.prefix.as_str(), d.pid, d.seq, d.tag.as_str(), d.mmap),
            ("a.b.c", 99, 0, "i3", true)
        );
        assert!(DumpName::parse("x.heap").is_none());
        assert!(DumpName::parse("jeprof.12.3.zz.heap").is_none());
    }
}
