//! From profiles + symbols to stacks of named frames, the form every report works on.
//!
//! - Frames and locations are interned in one [`Tables`] shared by all profiles of a command
//!   (so `--base`, `diff` and `trend` compare by name, not by address, which ASLR changes).
//! - An address in inlined code becomes several frames (innermost first), like pprof.
//! - Leading allocator frames are dropped (the profiler's own library, jemalloc, malloc & co,
//!   `operator new`), so the innermost frame of a stack is the code that asked for memory.

use std::collections::{BTreeMap, HashMap};

use crate::address::ReturnAddress;
use crate::maps::MapTable;
use crate::profile::{Profile, Values};
use crate::symbolize::{self, AddressInfo, Space};

/// A named frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Demangled function name, `?? in <lib>` or a hex address when unknown.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Object path, `[jit]`, pseudo-path, or `None` for anonymous memory.
    pub library: Option<String>,
}

impl Frame {
    pub fn library_basename(&self) -> Option<&str> {
        self.library
            .as_deref()
            .map(|l| l.rsplit('/').next().unwrap_or(l))
    }
}

/// One address of a stack with its (possibly inlined) frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub address: u64,
    /// Index into the profile's [`MapTable::mappings`].
    pub mapping: Option<usize>,
    /// Innermost first.
    pub frames: Vec<usize>,
}

/// Interned frames and locations.
#[derive(Debug, Default)]
pub struct Tables {
    pub frames: Vec<Frame>,
    frame_ids: HashMap<Frame, usize>,
    pub locations: Vec<Location>,
    location_ids: HashMap<(u64, Vec<usize>), usize>,
}

impl Tables {
    pub fn intern_frame(&mut self, frame: Frame) -> usize {
        if let Some(&id) = self.frame_ids.get(&frame) {
            return id;
        }
        let id = self.frames.len();
        self.frames.push(frame.clone());
        self.frame_ids.insert(frame, id);
        id
    }

    fn intern_location(
        &mut self,
        address: u64,
        mapping: Option<usize>,
        frames: Vec<usize>,
    ) -> usize {
        let key = (address, frames);
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let id = self.locations.len();
        self.locations.push(Location {
            address,
            mapping,
            frames: key.1.clone(),
        });
        self.location_ids.insert(key, id);
        id
    }
}

/// A stack of a profile, after symbolization.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    /// Location ids, innermost first.
    pub locations: Vec<usize>,
    /// Frame ids, innermost first (locations expanded).
    pub frames: Vec<usize>,
    pub values: Values,
}

/// Everything a report needs about a set of profiles.
#[derive(Debug)]
pub struct Analysis {
    pub tables: Tables,
    /// One list of stacks per input profile, in input order.
    pub stacks: Vec<Vec<Stack>>,
    /// One map table per input profile.
    pub maps: Vec<MapTable>,
    pub warnings: Vec<String>,
    pub build_ids: HashMap<String, String>,
}

/// Build ids a dump records as `# build_id <path>: <hex>` metadata.
pub fn recorded_build_ids(profile: &Profile) -> BTreeMap<String, String> {
    profile
        .metadata
        .iter()
        .filter_map(|(k, v)| {
            let path = k
                .strip_prefix("build_id ")
                .or_else(|| k.strip_prefix("build-id "))?;
            Some((path.trim().to_string(), v.trim().to_ascii_lowercase()))
        })
        .collect()
}

/// Symbolize and resolve several profiles together.
pub fn analyze(
    profiles: &[&Profile],
    pids: &[Option<u32>],
    options: &symbolize::Options,
) -> Analysis {
    let maps: Vec<MapTable> = profiles
        .iter()
        .map(|p| MapTable::new(&p.mappings))
        .collect();
    let spaces: Vec<Space<'_>> = profiles
        .iter()
        .zip(&maps)
        .enumerate()
        .map(|(i, (p, m))| {
            let mut addrs: Vec<ReturnAddress> = p
                .samples
                .iter()
                .flat_map(|s| s.stack.iter().copied())
                .collect();
            addrs.sort_unstable();
            addrs.dedup();
            Space {
                maps: m,
                addrs,
                pid: pids.get(i).copied().flatten().or(p.pid()),
                build_ids: recorded_build_ids(p),
                java_methods: &p.java_methods,
            }
        })
        .collect();
    let symbols = symbolize::symbolize(&spaces, options);
    let mut tables = Tables::default();
    let stacks = profiles
        .iter()
        .zip(&symbols.spaces)
        .map(|(p, syms)| resolve_profile(&mut tables, p, syms))
        .collect();
    Analysis {
        tables,
        stacks,
        maps,
        warnings: symbols.warnings,
        build_ids: symbols.build_ids,
    }
}

fn frames_of(tables: &mut Tables, addr: ReturnAddress, info: Option<&AddressInfo>) -> Vec<usize> {
    let Some(info) = info else {
        return vec![tables.intern_frame(Frame {
            function: format!("{:#x}", addr.raw()),
            file: None,
            line: None,
            library: None,
        })];
    };
    let unknown = || match &info.library {
        Some(lib) => format!("?? in {}", lib.rsplit('/').next().unwrap_or(lib)),
        None => format!("{:#x}", addr.raw()),
    };
    if info.frames.is_empty() {
        return vec![tables.intern_frame(Frame {
            function: unknown(),
            file: None,
            line: None,
            library: info.library.clone(),
        })];
    }
    info.frames
        .iter()
        .map(|f| {
            tables.intern_frame(Frame {
                function: f.function.clone().unwrap_or_else(unknown),
                file: f.file.clone(),
                line: f.line,
                library: info.library.clone(),
            })
        })
        .collect()
}

/// The stacks of one profile, allocator frames dropped.
pub fn resolve_profile(
    tables: &mut Tables,
    profile: &Profile,
    syms: &HashMap<ReturnAddress, AddressInfo>,
) -> Vec<Stack> {
    let mut by_address: HashMap<ReturnAddress, (Vec<usize>, Option<usize>)> = HashMap::new();
    let mut out = Vec::with_capacity(profile.samples.len());
    for sample in &profile.samples {
        // (address, mapping, frames) per location, innermost first.
        let mut locs: Vec<(u64, Option<usize>, Vec<usize>)> =
            Vec::with_capacity(sample.stack.len());
        for &addr in &sample.stack {
            let (frames, mapping) = by_address
                .entry(addr)
                .or_insert_with(|| {
                    let info = syms.get(&addr);
                    (frames_of(tables, addr, info), info.and_then(|i| i.mapping))
                })
                .clone();
            locs.push((addr.raw(), mapping, frames));
        }
        drop_allocator_frames(tables, &mut locs);
        let locations: Vec<usize> = locs
            .iter()
            .map(|(a, m, f)| tables.intern_location(*a, *m, f.clone()))
            .collect();
        let frames = locs.into_iter().flat_map(|(_, _, f)| f).collect();
        out.push(Stack {
            locations,
            frames,
            values: sample.values,
        });
    }
    out
}

/// Drop leading allocator frames, keeping at least one frame.
fn drop_allocator_frames(tables: &Tables, locs: &mut Vec<(u64, Option<usize>, Vec<usize>)>) {
    let total: usize = locs.iter().map(|l| l.2.len()).sum();
    let mut skip = locs
        .iter()
        .flat_map(|l| l.2.iter())
        .position(|&f| !is_allocator(&tables.frames[f]))
        .unwrap_or(total);
    if skip == total {
        skip = total.saturating_sub(1);
    }
    while skip > 0 {
        let first = &mut locs[0].2;
        if skip >= first.len() {
            skip -= first.len();
            locs.remove(0);
        } else {
            first.drain(..skip);
            skip = 0;
        }
    }
}

/// Allocation entry points and allocator internals, by exact name.
const ALLOCATOR_FUNCTIONS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "mmap",
    "mmap64",
    "mremap",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__libc_reallocarray",
    "__posix_memalign",
    "__mmap",
    "__mmap64",
    "__mremap",
    "_int_malloc",
    "_int_realloc",
    "_int_memalign",
    "tcache_init",
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "__rdl_alloc",
    "__rdl_alloc_zeroed",
    "__rdl_realloc",
];

/// Is this frame part of the allocator or the profiler rather than the program?
pub fn is_allocator(frame: &Frame) -> bool {
    if let Some(lib) = frame.library_basename()
        && (lib.starts_with("libjeprof_preload")
            || lib.starts_with("libjemalloc")
            || lib.starts_with("libtcmalloc"))
    {
        return true;
    }
    let name = frame.function.as_str();
    // Strip a GNU symbol version: `malloc@@GLIBC_2.2.5`.
    let base = name.split(['@']).next().unwrap_or(name);
    ALLOCATOR_FUNCTIONS.contains(&base)
        || base.starts_with("operator new")
        || base.starts_with("_Znw")
        || base.starts_with("_Zna")
        || base.starts_with("je_")
        || base.starts_with("_rjem_")
        || base.starts_with("prof_backtrace")
        || base.starts_with("imalloc")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, lib: Option<&str>) -> Frame {
        Frame {
            function: name.to_string(),
            file: None,
            line: None,
            library: lib.map(str::to_string),
        }
    }

    #[test]
    fn allocator_frames() {
        assert!(is_allocator(&frame("malloc", Some("/lib/libc.so.6"))));
        assert!(is_allocator(&frame("operator new(unsigned long)", None)));
        assert!(is_allocator(&frame(
            "anything",
            Some("/x/libjeprof_preload.so")
        )));
        assert!(is_allocator(&frame(
            "?? in libjemalloc.so.2",
            Some("/usr/lib/libjemalloc.so.2")
        )));
        assert!(is_allocator(&frame("je_prof_backtrace", None)));
        assert!(!is_allocator(&frame("leak_a", Some("/tmp/prog"))));
        assert!(!is_allocator(&frame("strdup", Some("/lib/libc.so.6"))));
    }

    #[test]
    fn drops_leading_allocator_frames_across_inlined_locations() {
        let mut t = Tables::default();
        let m = t.intern_frame(frame("malloc", None));
        let inner = t.intern_frame(frame("imalloc_body", None));
        let user = t.intern_frame(frame("leak_a", None));
        let main = t.intern_frame(frame("main", None));
        let mut locs = vec![
            (1, None, vec![m]),
            (2, None, vec![inner, user]),
            (3, None, vec![main]),
        ];
        drop_allocator_frames(&t, &mut locs);
        assert_eq!(locs, vec![(2, None, vec![user]), (3, None, vec![main])]);
        // All allocator frames: keep the outermost one.
        let mut locs = vec![(1, None, vec![m]), (2, None, vec![inner])];
        drop_allocator_frames(&t, &mut locs);
        assert_eq!(locs, vec![(2, None, vec![inner])]);
    }
}
