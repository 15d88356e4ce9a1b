//! `rss`: the process's resident memory at the moment of a dump, explained row by row.
//!
//! Our dumps record the RSS (`# rss_bytes`), glibc's `mallinfo2` figures, every resident
//! mapping with its resident bytes (`# rss_map` lines, from `/proc/self/smaps`) and, in the
//! `.mmap.heap` sibling, every range still mapped through mmap/mmap64/mremap with the stack
//! that mapped it and its resident bytes (`# mapped_range`, from `/proc/self/pagemap`). Rows:
//!
//! - `malloc_in_use` by library: the profiled heap (unsampled estimate), grouped by the library
//!   of the allocating frame (the first frame outside the allocator's wrappers);
//! - `malloc_free_retained`: resident memory of malloc's own mappings (`[heap]`, glibc's
//!   64 MiB-aligned arena heaps) that is not in use: free chunks glibc keeps;
//! - `malloc_overhead`: what glibc counts as in use beyond the profiled bytes (chunk headers,
//!   rounding; with sampling, also the estimate's error); when the profile counts more than
//!   glibc has resident in use, a negative `malloc_not_resident` row instead (blocks never
//!   touched, or the estimate's excess);
//! - mappings made through mmap, by what made them (for a JVM: `java_heap`, `gc_structures`,
//!   `metaspace`, `code_cache`, `jvm_other`, named by HotSpot's functions on the mapping stack;
//!   otherwise `anon_mapped` by the first frame outside the mmap wrappers);
//! - untracked mappings by shape: `thread_stacks` (`[stack]`, and anonymous read-write mappings
//!   with a `PROT_NONE` guard of at most 1 MiB right below), `file_mapped` by file,
//!   `static_data` (a program's or library's `.bss`), `profiler`, `kernel` (`[vdso]`…), the rest
//!   `anon_mapped`;
//! - `unexplained`: RSS minus the rows above (the smaps read and the RSS read are a few
//!   microseconds apart, and every row but the profiled heap is measured, not estimated).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::humanize;
use crate::maps::Mapping;
use crate::profile::{Profile, RssMap};
use crate::resolve::{Frame, Stack, Tables};

const MIB: f64 = 1024.0 * 1024.0;
/// glibc's HEAP_MAX_SIZE on 64-bit: each non-main arena grows in heaps of this size and
/// alignment.
const GLIBC_HEAP: u64 = 64 << 20;
/// Largest `PROT_NONE` mapping right below an anonymous mapping that we take for a thread
/// stack's guard (glibc's guard page, HotSpot's guard zones).
const GUARD_MAX: u64 = 1 << 20;

/// One row: what holds `resident` bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub category: String,
    pub detail: String,
    #[serde(rename = "resident_bytes", serialize_with = "round")]
    pub resident: f64,
}

fn round<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(v.round() as i64)
}

/// The report: rows (largest first within the fixed category order), their sum is `rss`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub rss_bytes: u64,
    pub rows: Vec<Row>,
    /// What would give retained memory back, when the allocator retains much.
    pub hints: Vec<String>,
}

/// The profiles an `rss` report reads: the heap dump (required) and its `.mmap.heap` sibling.
pub struct Input<'a> {
    pub tables: &'a Tables,
    pub heap: &'a Profile,
    pub heap_stacks: &'a [Stack],
    pub mmap: Option<(&'a Profile, &'a [Stack])>,
}

/// Why a dump cannot be explained.
pub fn missing(heap: &Profile) -> Option<&'static str> {
    if heap.bytes("rss_bytes").is_none() {
        Some("no `# rss_bytes` metadata (not written by libjeprof_preload.so)")
    } else if heap.rss_maps.is_empty() {
        Some(
            "no `# rss_map` lines (written by libjeprof_preload.so since the rss report; \
             this dump is older or not a heap dump)",
        )
    } else {
        None
    }
}

#[derive(Default)]
struct Acc {
    rows: BTreeMap<(usize, String, String), f64>,
}

/// Category order in the report.
const ORDER: &[&str] = &[
    "malloc_in_use",
    "malloc_overhead",
    "malloc_not_resident",
    "malloc_free_retained",
    "java_heap",
    "gc_structures",
    "metaspace",
    "code_cache",
    "jvm_other",
    "thread_stacks",
    "anon_mapped",
    "static_data",
    "file_mapped",
    "profiler",
    "kernel",
    "unexplained",
];

impl Acc {
    fn add(&mut self, category: &str, detail: impl Into<String>, bytes: f64) {
        if bytes == 0.0 {
            return;
        }
        let rank = ORDER
            .iter()
            .position(|c| *c == category)
            .unwrap_or(ORDER.len());
        *self
            .rows
            .entry((rank, category.to_string(), detail.into()))
            .or_default() += bytes;
    }
}

/// The library basename of a frame, `.so` suffixes and versions dropped (`libfoo`).
pub fn short_lib(frame: &Frame) -> String {
    let base = frame.library_basename().unwrap_or("[unknown]");
    match base.find(".so") {
        Some(i) if i > 0 => base[..i].to_string(),
        _ => base.to_string(),
    }
}

/// Category and detail of a range mapped through mmap, from its stack's function names.
fn classify_stack(tables: &Tables, stack: &Stack) -> (&'static str, String) {
    let frames: Vec<&Frame> = stack.frames.iter().map(|&f| &tables.frames[f]).collect();
    let any = |pats: &[&str]| {
        frames
            .iter()
            .any(|f| pats.iter().any(|p| f.function.contains(p)))
    };
    let jvm = frames.iter().any(|f| {
        f.library_basename()
            .is_some_and(|l| l.starts_with("libjvm"))
    });
    // The first frame that says who wanted the memory: past HotSpot's os:: layer and mmap
    // wrappers.
    let who = frames
        .iter()
        .find(|f| {
            let n = f.function.as_str();
            !(n.starts_with("os::")
                || n.starts_with("mmap")
                || n.starts_with("__mmap")
                || n.contains("commit_memory")
                || n.contains("reserve_memory")
                || n.contains("map_memory"))
        })
        .or(frames.first());
    let who_name = who.map_or_else(|| "[no frames]".to_string(), |f| f.function.clone());
    if jvm {
        if any(&[
            "SmallerThanCommitSizeMapper",
            "CardTable",
            "MarkBitMap",
            "CMBitMap",
            "BlockOffsetTable",
            "BlockOffsetSharedArray",
            "FromCardCache",
            "G1CardSet",
            "RegionMarkStats",
            "MarkStack",
            "TaskQueue",
            "G1CardCounts",
            "HotCardCache",
            "ParMarkBitMap",
            "PSCardTable",
        ]) {
            return ("gc_structures", who_name);
        }
        if any(&["Metaspace", "metaspace::", "ClassSpace", "MetaspaceShared"]) {
            return ("metaspace", "metaspace and class space".to_string());
        }
        if any(&["CodeCache", "CodeHeap"]) {
            return ("code_cache", "CodeCache".to_string());
        }
        if any(&[
            "CollectedHeap",
            "HeapRegion",
            "G1RegionsLargerThanCommitSizeMapper",
            "ParallelScavengeHeap",
            "PSVirtualSpace",
            "PSOldGen",
            "PSYoungGen",
            "Generation::",
            "SerialHeap",
            "ZPhysicalMemory",
            "ShenandoahHeap",
            "EpsilonHeap",
        ]) {
            return ("java_heap", "Java heap".to_string());
        }
        return ("jvm_other", who_name);
    }
    let detail = match who {
        Some(f) => format!("{} [{}]", f.function, short_lib(f)),
        None => who_name,
    };
    ("anon_mapped", detail)
}

/// The maps line that starts at `start`, and its neighbours, by address.
struct Neighbours<'a> {
    sorted: Vec<&'a Mapping>,
}

impl<'a> Neighbours<'a> {
    fn new(maps: &'a [Mapping]) -> Self {
        let mut sorted: Vec<&Mapping> = maps.iter().collect();
        sorted.sort_by_key(|m| m.start);
        Neighbours { sorted }
    }

    fn index(&self, start: u64) -> Option<usize> {
        let i = self.sorted.partition_point(|m| m.start < start);
        (self.sorted.get(i)?.start == start).then_some(i)
    }

    fn at(&self, start: u64) -> Option<&'a Mapping> {
        self.index(start).map(|i| self.sorted[i])
    }

    /// The mapping that ends where `start` begins.
    fn below(&self, start: u64) -> Option<&'a Mapping> {
        let i = self.sorted.partition_point(|m| m.start < start);
        let m = self.sorted.get(i.checked_sub(1)?)?;
        (m.end == start).then_some(*m)
    }

    fn above(&self, end: u64) -> Option<&'a Mapping> {
        self.at(end)
    }
}

fn prot_none(m: &Mapping) -> bool {
    !m.readable && !m.writable && !m.executable
}

/// A glibc arena heap: anonymous, 64 MiB-aligned, and with its `PROT_NONE` remainder (if any)
/// ending at the 64 MiB boundary.
fn glibc_heap(v: &RssMap, n: &Neighbours<'_>) -> bool {
    if !v.start.is_multiple_of(GLIBC_HEAP) || v.end - v.start > GLIBC_HEAP {
        return false;
    }
    let limit = v.start + GLIBC_HEAP;
    v.end == limit
        || n.above(v.end)
            .is_some_and(|m| prot_none(m) && m.path.is_none() && m.end == limit)
}

/// A thread's stack: read-write anonymous memory right above a small `PROT_NONE` guard.
fn thread_stack(v: &RssMap, n: &Neighbours<'_>) -> bool {
    let Some(m) = n.at(v.start) else { return false };
    if !(m.readable && m.writable) || m.executable {
        return false;
    }
    n.below(v.start)
        .is_some_and(|g| prot_none(g) && g.path.is_none() && g.end - g.start <= GUARD_MAX)
}

/// The file whose data segment this anonymous mapping extends (`.bss`).
fn bss_of<'a>(v: &RssMap, n: &Neighbours<'a>) -> Option<&'a str> {
    let b = n.below(v.start)?;
    let path = b.path.as_deref()?;
    // A loaded object's data segment: the file also has executable code mapped.
    let loaded = n
        .sorted
        .iter()
        .any(|m| m.executable && m.path.as_deref() == Some(path));
    (b.is_file() && b.writable && loaded).then_some(path)
}

/// Explain the RSS of `input.heap`. Errors say what the dump lacks.
pub fn compute(input: &Input<'_>) -> Result<Report, &'static str> {
    if let Some(why) = missing(input.heap) {
        return Err(why);
    }
    let heap = input.heap;
    let rss = heap.bytes("rss_bytes").unwrap_or(0);
    let n = Neighbours::new(&heap.mappings);
    let mut acc = Acc::default();

    // Tracked ranges, sorted, each with its category.
    let mut ranges: Vec<(u64, u64, f64, &'static str, String)> = Vec::new();
    if let Some((mp, stacks)) = input.mmap {
        let by_id: HashMap<u64, usize> = mp
            .samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.id?, i)))
            .collect();
        for r in &mp.mapped_ranges {
            let (cat, detail) = match by_id.get(&r.stack).and_then(|&i| stacks.get(i)) {
                Some(s) => classify_stack(input.tables, s),
                None => ("anon_mapped", "[stack not in the dump]".to_string()),
            };
            ranges.push((r.start, r.end, r.resident as f64, cat, detail));
        }
        ranges.sort_by_key(|r| r.0);
    }

    let mut malloc_space = 0.0; // resident bytes of [heap] and glibc's arena heaps
    let mut arena_heaps = 0usize;
    let mut stacks = 0usize;
    let mut untracked_anon = 0.0;
    for v in &heap.rss_maps {
        let mut rest = v.rss as f64;
        let first = ranges.partition_point(|r| r.1 <= v.start);
        for r in ranges[first..].iter().take_while(|r| r.0 < v.end) {
            let overlap = (r.1.min(v.end) - r.0.max(v.start)) as f64;
            let share = r.2 * overlap / (r.1 - r.0).max(1) as f64;
            let take = share.min(rest);
            if take <= 0.0 {
                continue;
            }
            rest -= take;
            if v.anon {
                acc.add(r.3, r.4.clone(), take);
            } else {
                acc.add("file_mapped", v.path.clone(), take);
            }
        }
        if rest <= 0.0 {
            continue;
        }
        let path = v.path.as_str();
        if !v.anon {
            acc.add("file_mapped", path, rest);
        } else if path == "[heap]" {
            malloc_space += rest;
        } else if path == "[stack]" {
            acc.add("thread_stacks", "[stack] (main thread)", rest);
        } else if path.starts_with("[anon:jeprof") {
            acc.add("profiler", "libjeprof_preload.so's tables", rest);
        } else if matches!(path, "[vdso]" | "[vvar]" | "[vsyscall]" | "[vvar_vclock]") {
            acc.add("kernel", path, rest);
        } else if !path.is_empty() {
            acc.add("anon_mapped", path, rest);
        } else if glibc_heap(v, &n) {
            malloc_space += rest;
            arena_heaps += 1;
        } else if thread_stack(v, &n) {
            stacks += 1;
            acc.add("thread_stacks", "thread stacks", rest);
        } else if let Some(file) = bss_of(v, &n) {
            acc.add("static_data", format!("{file} (.bss)"), rest);
        } else {
            untracked_anon += rest;
        }
    }
    if stacks > 0 {
        // Say how many, in the detail of the merged row.
        if let Some(b) = acc.rows.remove(&(
            rank("thread_stacks"),
            "thread_stacks".into(),
            "thread stacks".into(),
        )) {
            acc.add(
                "thread_stacks",
                format!("{stacks} thread stacks (below a guard page)"),
                b,
            );
        }
    }

    // The profiled heap, by library of the allocating frame.
    let mut in_use = 0.0;
    for s in input.heap_stacks {
        let b = s.values.inuse_bytes;
        if b == 0.0 {
            continue;
        }
        in_use += b;
        let lib = s.frames.first().map_or_else(
            || "[unknown]".to_string(),
            |&f| short_lib(&input.tables.frames[f]),
        );
        acc.add("malloc_in_use", lib, b);
    }

    let mut hints = Vec::new();
    let glibc = heap.metadata.get("allocator").map(|s| s.trim()) == Some("glibc");
    let retained;
    if glibc {
        let mi = |k: &str| heap.bytes(k).unwrap_or(0) as f64;
        let mmapped = mi("mallinfo_mmap_bytes");
        let arena_in_use = (mi("mallinfo_inuse_bytes") - mmapped).max(0.0);
        retained = (malloc_space - arena_in_use).max(0.0);
        let heaps = if arena_heaps > 0 {
            format!("[heap] and {arena_heaps} thread-arena heaps")
        } else {
            "[heap] (main arena only)".to_string()
        };
        acc.add(
            "malloc_free_retained",
            format!(
                "glibc: free chunks in {heaps}: {} free, {} trimmable at the top (keepcost), {} free chunks",
                humanize::bytes(mi("mallinfo_free_bytes")),
                humanize::bytes(mi("mallinfo_keepcost_bytes")),
                mi("mallinfo_free_chunks")
            ),
            retained,
        );
        // Chunks glibc mapped itself (large blocks) sit in anonymous mappings we did not see
        // being made.
        let chunks = mmapped.min(untracked_anon);
        untracked_anon -= chunks;
        let overhead = arena_in_use.min(malloc_space) + chunks - in_use;
        if overhead > 0.0 {
            acc.add(
                "malloc_overhead",
                "glibc: chunk headers and rounding (minus the profile's sampling error)",
                overhead,
            );
        } else {
            // The profile counts more than glibc has resident in use: blocks allocated but
            // never touched (not resident), or the sampling estimate's error.
            acc.add(
                "malloc_not_resident",
                "in malloc_in_use but not resident: allocated and never touched, or the sampled estimate's excess",
                overhead,
            );
        }
        if retained > 64.0 * MIB || (retained > in_use && retained > 8.0 * MIB) {
            hints.push(format!(
                "glibc keeps {} of free memory ({} in use by the program): that part of RSS is the \
                 allocator's, not a leak. To give it back: call malloc_trim(0) (`jeprof-rs trim PID` \
                 asks a profiled process to, at its next allocation); run with MALLOC_ARENA_MAX=2 \
                 (glibc gives threads their own arenas, up to 8 per core, each growing in 64 MiB \
                 heaps that keep their own free chunks: many threads times 64 MiB is how a JVM's or \
                 a thread pool's RSS outgrows what it uses); or use another allocator (jemalloc, \
                 tcmalloc).",
                humanize::bytes(retained),
                humanize::bytes(in_use)
            ));
        }
    } else {
        // Another allocator (or none known): its memory is in [heap] or anonymous mappings we
        // did not see being made; what the program uses comes out of those.
        let pool = malloc_space + untracked_anon;
        let used = in_use.min(pool);
        let from_heap = used.min(malloc_space);
        malloc_space -= from_heap;
        untracked_anon -= used - from_heap;
        retained = malloc_space;
        acc.add(
            "malloc_free_retained",
            "[heap] not in use (allocator statistics unknown)",
            retained,
        );
    }
    acc.add(
        "anon_mapped",
        "[untracked] mapped by the allocator, the runtime or before profiling started",
        untracked_anon,
    );

    let explained: f64 = acc.rows.values().sum();
    let mut rows: Vec<Row> = Vec::new();
    let mut by_rank: Vec<((usize, String, String), f64)> = acc.rows.into_iter().collect();
    by_rank.sort_by(|a, b| a.0.0.cmp(&b.0.0).then(b.1.total_cmp(&a.1)));
    for ((_, category, detail), resident) in by_rank {
        rows.push(Row {
            category,
            detail,
            resident,
        });
    }
    rows.push(Row {
        category: "unexplained".into(),
        detail: "RSS minus the rows above".into(),
        resident: rss as f64 - explained,
    });
    Ok(Report {
        rss_bytes: rss,
        rows,
        hints,
    })
}

fn rank(category: &str) -> usize {
    ORDER
        .iter()
        .position(|c| *c == category)
        .unwrap_or(ORDER.len())
}

/// The JSON document of `rss --json`.
pub fn to_json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}

/// The full table.
pub fn to_text(r: &Report, exact: bool) -> String {
    let total = r.rss_bytes as f64;
    let cells: Vec<[String; 2]> = r
        .rows
        .iter()
        .map(|row| {
            [
                humanize::value(row.resident, true, exact),
                humanize::percent(row.resident, total),
            ]
        })
        .collect();
    let w0 = cells.iter().map(|c| c[0].len()).max().unwrap_or(0).max(8);
    let w1 = cells.iter().map(|c| c[1].len()).max().unwrap_or(0).max(5);
    let wc = r
        .rows
        .iter()
        .map(|row| row.category.len())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "RSS {} at the dump, explained:\n{:>w0$} {:>w1$}  {:<wc$}  detail\n",
        humanize::value(total, true, exact),
        "resident",
        "share",
        "category"
    );
    for (row, c) in r.rows.iter().zip(&cells) {
        out.push_str(&format!(
            "{:>w0$} {:>w1$}  {:<wc$}  {}\n",
            c[0], c[1], row.category, row.detail
        ));
    }
    for h in &r.hints {
        out.push_str(&format!("\n{h}\n"));
    }
    out
}

/// A few lines: RSS by kind (the program's malloc'd memory, the allocator's, the runtime's and
/// the mappings'), then the hints.
pub fn summary(r: &Report) -> String {
    let total = r.rss_bytes as f64;
    let mut kinds: Vec<(&str, f64)> = Vec::new();
    let mut put = |k: &'static str, v: f64| match kinds.iter_mut().find(|e| e.0 == k) {
        Some(e) => e.1 += v,
        None => kinds.push((k, v)),
    };
    for row in &r.rows {
        let kind = match row.category.as_str() {
            "malloc_in_use" => "in use by the program (malloc)",
            "malloc_free_retained" | "malloc_overhead" => "kept by the allocator (free, overhead)",
            "malloc_not_resident" => "malloc'd but not resident (or sampling error)",
            "java_heap" | "gc_structures" | "metaspace" | "code_cache" | "jvm_other" => {
                "JVM (heap, GC, metaspace, code)"
            }
            "thread_stacks" => "thread stacks",
            "file_mapped" | "static_data" => "files and static data",
            "unexplained" => "unexplained",
            _ => "other mappings",
        };
        put(kind, row.resident);
    }
    let mut out = format!("RSS {} at the dump:\n", humanize::bytes(total));
    for (k, v) in kinds {
        if v.abs() < 0.5 {
            continue;
        }
        out.push_str(&format!(
            "  {:>10} {:>6}  {k}\n",
            humanize::bytes(v),
            humanize::percent(v, total)
        ));
    }
    for h in &r.hints {
        out.push_str(&format!("  {h}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader;

    const DUMP: &str = "heap_v2/1\n  t*: 2: 3000 [2: 3000]\n# rss_bytes: 20000000\n# allocator: glibc\n\
# mallinfo_inuse_bytes: 3200\n# mallinfo_mmap_bytes: 0\n# mallinfo_free_bytes: 9000000\n\
# mallinfo_keepcost_bytes: 4096\n# mallinfo_free_chunks: 7\n\
# rss_map 1000-2000 4096 file /bin/prog\n\
# rss_map 2000-3000 4096 file /bin/prog\n\
# rss_map 3000-5000 8192 anon \n\
# rss_map 10000-4010000 9003200 anon [heap]\n\
# rss_map 7f0000000000-7f0000800000 10000000 anon \n\
# rss_map 7f1000001000-7f1000081000 524288 anon \n\
# rss_map 7ffd0000-7ffe0000 65536 anon [stack]\n\
@ 0x1100\n  t*: 2: 3000 [2: 3000]\n\nMAPPED_LIBRARIES:\n\
1000-2000 r-xp 00000000 08:01 5 /bin/prog\n\
2000-3000 rw-p 00001000 08:01 5 /bin/prog\n\
3000-5000 rw-p 00000000 00:00 0\n\
10000-4010000 rw-p 00000000 00:00 0 [heap]\n\
7f0000000000-7f0000800000 rw-p 00000000 00:00 0\n\
7f0000800000-7f0004000000 ---p 00000000 00:00 0\n\
7f1000000000-7f1000001000 ---p 00000000 00:00 0\n\
7f1000001000-7f1000081000 rw-p 00000000 00:00 0\n\
7ffd0000-7ffe0000 rw-p 00000000 00:00 0 [stack]\n";

    #[test]
    fn rows_add_up_and_name_the_parts() {
        let p = reader::parse(DUMP.as_bytes()).unwrap();
        assert_eq!(p.rss_maps.len(), 7);
        let mut tables = Tables::default();
        let f = tables.intern_frame(Frame {
            function: "leak".into(),
            file: None,
            line: None,
            library: Some("/bin/prog".into()),
        });
        let stacks = vec![Stack {
            locations: vec![],
            frames: vec![f],
            values: p.samples[0].values,
        }];
        let r = compute(&Input {
            tables: &tables,
            heap: &p,
            heap_stacks: &stacks,
            mmap: None,
        })
        .unwrap();
        let get = |c: &str| -> f64 {
            r.rows
                .iter()
                .filter(|row| row.category == c)
                .map(|row| row.resident)
                .sum()
        };
        assert_eq!(get("malloc_in_use"), 3000.0);
        assert_eq!(get("malloc_overhead"), 200.0);
        // [heap] + one 64 MiB-aligned arena heap, minus glibc's in-use bytes.
        assert_eq!(get("malloc_free_retained"), 9003200.0 + 10000000.0 - 3200.0);
        assert_eq!(get("thread_stacks"), 65536.0 + 524288.0);
        assert_eq!(get("file_mapped"), 8192.0);
        assert_eq!(get("static_data"), 8192.0);
        let sum: f64 = r.rows.iter().map(|row| row.resident).sum();
        assert_eq!(sum, 20000000.0);
        assert_eq!(r.rows[0].detail, "prog");
        assert!(!r.hints.is_empty(), "retained 19 MB > 3 KB in use");
        let json: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
        assert_eq!(json["rss_bytes"], 20000000);
        assert_eq!(json["rows"][0]["category"], "malloc_in_use");
        assert_eq!(json["rows"][0]["resident_bytes"], 3000);
        let text = to_text(&r, true);
        assert!(
            text.contains("1 thread stacks (below a guard page)"),
            "{text}"
        );
        assert!(text.contains("MALLOC_ARENA_MAX=2"), "{text}");
    }

    #[test]
    fn says_what_an_old_dump_lacks() {
        let p = reader::parse(b"heap_v2/1\n  t*: 0: 0 [0: 0]\n\nMAPPED_LIBRARIES:\n").unwrap();
        assert!(missing(&p).unwrap().contains("rss_bytes"));
        assert!(
            reader::parse(b"heap_v2/1\n# rss_map 1000-zz 1 anon\n\nMAPPED_LIBRARIES:\n").is_err()
        );
    }
}
