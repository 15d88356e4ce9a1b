//! Symbolization: return addresses of one or more profiles ("address spaces", each with its
//! own `MAPPED_LIBRARIES`) to function/file/line frames.
//!
//! - Each address is placed in the mapping that contains it (`addr - 1`, see
//!   [`ReturnAddress`]); file-backed ones are grouped by object path, so every object is opened,
//!   checked and indexed once per run, however many profiles refer to it.
//! - Objects are processed in parallel (rayon), each with its own addr2line context; within an
//!   object every unique address is looked up once.
//! - DWARF first (inlined frames included), then `.symtab`, then `.dynsym`. Separate debug files
//!   are found by build id and `.gnu_debuglink` ([`debugfile`]).
//! - An object that is missing, deleted, or visibly not the file that was mapped is not
//!   symbolized: its frames stay `?? in <lib>` and one warning says why.
//! - Anonymous executable memory (JIT code) is named only by a perf map ([`perfmap`]).

pub mod debugfile;
pub mod dwarf;
pub mod elf;
pub mod perfmap;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use object::Object;
use rayon::prelude::*;

use crate::address::ReturnAddress;
use crate::demangle::demangle;
use crate::maps::MapTable;
use crate::sys;
use perfmap::PerfMap;

/// One frame of a symbolized address; an address inside inlined code gives several.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SymFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// What we know about one return address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressInfo {
    /// Innermost (most deeply inlined) first. Empty when nothing names the address.
    pub frames: Vec<SymFrame>,
    /// Path of the object, pseudo-path (`[vdso]`), `[jit]` for perf-map names, or `None`.
    pub library: Option<String>,
    /// Index into the space's [`MapTable::mappings`].
    pub mapping: Option<usize>,
}

/// The library name given to frames named by a perf map.
pub const JIT_LIBRARY: &str = "[jit]";

/// The library name of Java frames named from the JVM's own metadata.
pub const JAVA_LIBRARY: &str = "[java]";

/// Bit that marks a frame as a Java method (`JAVA_TAG | Method*`, written by the preload's
/// HotSpot walk); no code address has it.
pub const JAVA_TAG: u64 = 1 << 62;

/// The addresses of one profile and how to interpret them.
pub struct Space<'a> {
    pub maps: &'a MapTable,
    pub addrs: Vec<ReturnAddress>,
    /// Pid of the profiled process, to find `/tmp/perf-<pid>.map`.
    pub pid: Option<u32>,
    /// Build ids the dump recorded, by object path (lowercase hex).
    pub build_ids: BTreeMap<String, String>,
    /// Names of Java frames the dump recorded (`# java_method`), by frame.
    pub java_methods: &'a BTreeMap<u64, String>,
}

/// Where to look for extra symbol sources.
#[derive(Clone, Debug)]
pub struct Options {
    /// A perf map to use for every space instead of `/tmp/perf-<pid>.map`.
    pub perf_map: Option<PathBuf>,
    /// Roots of separate debug files (`/usr/lib/debug`).
    pub debug_roots: Vec<PathBuf>,
    /// Where the profiled process's files are (a container's root): an object's path is
    /// looked up under it first.
    pub root: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            perf_map: None,
            debug_roots: vec![PathBuf::from("/usr/lib/debug")],
            root: None,
        }
    }
}

/// The result of [`symbolize`].
#[derive(Debug, Default)]
pub struct Symbolized {
    /// One table per input space.
    pub spaces: Vec<HashMap<ReturnAddress, AddressInfo>>,
    /// Human-readable warnings, each once, sorted.
    pub warnings: Vec<String>,
    /// Build ids (hex) of the objects that were read, by path.
    pub build_ids: HashMap<String, String>,
}

struct Job {
    space: usize,
    addr: ReturnAddress,
    mapping: usize,
}

struct ObjectOutput {
    infos: Vec<(usize, ReturnAddress, AddressInfo)>,
    warnings: Vec<String>,
    build_id: Option<String>,
}

/// Symbolize the addresses of every space.
pub fn symbolize(spaces: &[Space<'_>], options: &Options) -> Symbolized {
    let mut out = Symbolized {
        spaces: vec![HashMap::new(); spaces.len()],
        ..Default::default()
    };
    let mut warnings: HashSet<String> = HashSet::new();
    let mut perf_maps: HashMap<PathBuf, Option<PerfMap>> = HashMap::new();
    let mut by_path: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    let mut unnamed_jit = 0usize;

    for (index, space) in spaces.iter().enumerate() {
        let mut addrs = space.addrs.clone();
        addrs.sort_unstable();
        addrs.dedup();
        let perf_path = options.perf_map.clone().or_else(|| {
            space
                .pid
                .map(|pid| PathBuf::from(format!("/tmp/perf-{pid}.map")))
        });
        let perf = perf_path.as_ref().and_then(|path| {
            perf_maps
                .entry(path.clone())
                .or_insert_with(|| load_perf_map(path, options.perf_map.is_some(), &mut warnings))
                .as_ref()
        });
        for addr in addrs {
            if addr.raw() & JAVA_TAG != 0 {
                let name = space
                    .java_methods
                    .get(&addr.raw())
                    .map_or_else(|| "[unknown Java method]".to_string(), |n| n.clone());
                let info = AddressInfo {
                    frames: vec![SymFrame {
                        function: Some(name),
                        file: None,
                        line: None,
                    }],
                    library: Some(JAVA_LIBRARY.to_string()),
                    mapping: None,
                };
                out.spaces[index].insert(addr, info);
                continue;
            }
            let probe = addr.lookup();
            let mapping = space.maps.find(probe);
            if let Some(mi) = mapping {
                let m = &space.maps.mappings()[mi];
                if m.is_file() {
                    let path = m.path.clone().unwrap_or_default();
                    by_path.entry(path).or_default().push(Job {
                        space: index,
                        addr,
                        mapping: mi,
                    });
                    continue;
                }
            }
            let jit = perf.and_then(|p| p.lookup(probe));
            let info = match jit {
                Some(name) => AddressInfo {
                    frames: vec![SymFrame {
                        function: Some(name.to_string()),
                        file: None,
                        line: None,
                    }],
                    library: Some(JIT_LIBRARY.to_string()),
                    mapping,
                },
                None => {
                    let m = mapping.map(|mi| &space.maps.mappings()[mi]);
                    if m.is_some_and(|m| m.executable && m.path.is_none()) {
                        unnamed_jit += 1;
                    }
                    AddressInfo {
                        frames: Vec::new(),
                        library: m.and_then(|m| m.path.clone()),
                        mapping,
                    }
                }
            };
            out.spaces[index].insert(addr, info);
        }
    }
    if unnamed_jit > 0 {
        warnings.insert(format!(
            "{unnamed_jit} frame(s) in anonymous executable memory (JIT code?) have no name; \
             pass --perf-map FILE or have the JIT write /tmp/perf-<pid>.map"
        ));
    }

    let jobs: Vec<(String, Vec<Job>)> = by_path.into_iter().collect();
    let outputs: Vec<(String, ObjectOutput)> = jobs
        .into_par_iter()
        .map(|(path, jobs)| {
            let output = symbolize_object(&path, &jobs, spaces, options);
            (path, output)
        })
        .collect();
    for (path, output) in outputs {
        for (space, addr, info) in output.infos {
            out.spaces[space].insert(addr, info);
        }
        warnings.extend(output.warnings);
        if let Some(id) = output.build_id {
            out.build_ids.insert(path, id);
        }
    }
    out.warnings = warnings.into_iter().collect();
    out.warnings.sort();
    out
}

fn load_perf_map(path: &Path, explicit: bool, warnings: &mut HashSet<String>) -> Option<PerfMap> {
    match PerfMap::load(path) {
        Ok(map) => {
            if map.bad_lines > 0 {
                warnings.insert(format!(
                    "{}:{}: skipped {} malformed perf map line(s) (expected `START SIZE name`)",
                    path.display(),
                    map.first_bad_line.unwrap_or(0),
                    map.bad_lines
                ));
            }
            Some(map)
        }
        Err(e) => {
            if explicit {
                warnings.insert(format!("{}: cannot read perf map: {e}", path.display()));
            }
            None
        }
    }
}

/// Lowercase hex of the build id of an object file.
fn build_id_hex(file: &object::File<'_>) -> Option<String> {
    file.build_id()
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())
        .map(debugfile::hex)
}

fn symbolize_object(
    path: &str,
    jobs: &[Job],
    spaces: &[Space<'_>],
    options: &Options,
) -> ObjectOutput {
    let base = path.rsplit('/').next().unwrap_or(path);
    let mut output = ObjectOutput {
        infos: Vec::new(),
        warnings: Vec::new(),
        build_id: None,
    };
    let unknown = |output: &mut ObjectOutput, job: &Job| {
        let info = AddressInfo {
            frames: Vec::new(),
            library: Some(path.to_string()),
            mapping: Some(job.mapping),
        };
        output.infos.push((job.space, job.addr, info));
    };
    // Under `--root` first (a container's files), else at the path itself.
    let under_root = options
        .root
        .as_ref()
        .map(|r| r.join(path.trim_start_matches('/')))
        .filter(|p| p.is_file());
    let mapped = match sys::map_file(under_root.as_deref().unwrap_or(Path::new(path))) {
        Ok(m) => m,
        Err(e) => {
            output.warnings.push(format!(
                "cannot open {path}: {e}; its frames are shown as `?? in {base}`"
            ));
            jobs.iter().for_each(|j| unknown(&mut output, j));
            return output;
        }
    };
    let file = match object::File::parse(&*mapped) {
        Ok(f) => f,
        Err(e) => {
            output.warnings.push(format!("{path}: cannot read as an object file ({e}); its frames are shown as `?? in {base}`"));
            jobs.iter().for_each(|j| unknown(&mut output, j));
            return output;
        }
    };
    let segments = elf::segments(&file);
    let build_id = build_id_hex(&file);
    output.build_id = build_id.clone();

    // Is the file on disk the one each mapping was made from?
    let mut rejected: HashSet<(usize, usize)> = HashSet::new();
    let mut checked: HashSet<(usize, usize)> = HashSet::new();
    for job in jobs {
        if !checked.insert((job.space, job.mapping)) {
            continue;
        }
        let space = &spaces[job.space];
        let m = &space.maps.mappings()[job.mapping];
        let reason = match space.build_ids.get(path) {
            Some(expected) if Some(expected.to_ascii_lowercase()) != build_id => Some(format!(
                "build id differs: the profile says {expected}, the file has {}",
                build_id.as_deref().unwrap_or("none")
            )),
            Some(_) => None,
            None if m.deleted => {
                Some("it was deleted or replaced after the process mapped it".to_string())
            }
            None => elf::mismatch(m, mapped.len() as u64, &segments),
        };
        if let Some(reason) = reason {
            rejected.insert((job.space, job.mapping));
            output.warnings.push(format!(
                "{path} on disk does not match the profiled process ({reason}); its frames are shown as `?? in {base}`"
            ));
        }
    }

    // Separate debug file, if any.
    let debuglink = file
        .gnu_debuglink()
        .ok()
        .flatten()
        .and_then(|(name, _crc)| std::str::from_utf8(name).ok().map(str::to_string));
    let raw_id = file.build_id().ok().flatten();
    let debug_map = debugfile::candidates(
        Path::new(path),
        raw_id,
        debuglink.as_deref(),
        &options.debug_roots,
    )
    .into_iter()
    .filter_map(|candidate| sys::map_file(&candidate).ok())
    .find(|m| match object::File::parse(&**m) {
        Ok(f) => build_id.is_none() || build_id_hex(&f).is_none() || build_id_hex(&f) == build_id,
        Err(_) => false,
    });
    let debug_file = debug_map
        .as_ref()
        .and_then(|m| object::File::parse(&**m).ok());

    let sections = debug_file
        .as_ref()
        .and_then(dwarf::Sections::load)
        .or_else(|| dwarf::Sections::load(&file));
    let context = sections.as_ref().and_then(|s| s.context());
    let mut symtab = elf::SymbolTable::new(&file, false);
    if symtab.is_empty()
        && let Some(d) = &debug_file
    {
        symtab = elf::SymbolTable::new(d, false);
    }
    if symtab.is_empty() {
        symtab = elf::SymbolTable::new(&file, true);
    }

    let mut cache: HashMap<u64, Vec<SymFrame>> = HashMap::new();
    for job in jobs {
        if rejected.contains(&(job.space, job.mapping)) {
            unknown(&mut output, job);
            continue;
        }
        let m = &spaces[job.space].maps.mappings()[job.mapping];
        let Some(svma) = elf::to_svma(m, job.addr.lookup(), &segments) else {
            unknown(&mut output, job);
            continue;
        };
        let frames = cache
            .entry(svma)
            .or_insert_with(|| {
                let mut frames = context
                    .as_ref()
                    .map(|c| dwarf::frames(c, svma))
                    .unwrap_or_default();
                let symbol = || symtab.lookup(svma).map(demangle);
                match frames.last_mut() {
                    None => {
                        if let Some(name) = symbol() {
                            frames.push(SymFrame {
                                function: Some(name),
                                file: None,
                                line: None,
                            });
                        }
                    }
                    Some(outer) if outer.function.is_none() => outer.function = symbol(),
                    Some(_) => {}
                }
                frames
            })
            .clone();
        let info = AddressInfo {
            frames,
            library: Some(path.to_string()),
            mapping: Some(job.mapping),
        };
        output.infos.push((job.space, job.addr, info));
    }
    output
}
