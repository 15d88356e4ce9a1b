//! Fuzzing on the stable toolchain, as part of `cargo test --release`: every reader of
//! untrusted input gets its real inputs mutated for a bounded time (`JEPROF_FUZZ_SECS` per
//! target, default 2) and must neither panic, nor hang (2 s per input), nor allocate beyond a
//! budget proportional to the input. See `fuzz/harness.rs` for how each property is checked.
//!
//! Targets: the profile reader on our dumps (`heap_v2` with `# key: value` metadata, and the
//! `.mmap.heap` kind), on jemalloc's `heap_v2` and on gperftools' `heap profile:` dumps (each
//! parsed profile is also run through symbol-less analysis and reports); the perf-map reader;
//! the preload's `JEPROF_CONF` parser (which must also never allocate); and symbolization of
//! corrupted ELF/DWARF files (a C program built with `gcc -g -O2`, the same with compressed
//! debug sections, and libc's separate debug file when libc6-dbg is installed).
//!
//! Seeds: `fuzz/seeds/` (real dumps: `leak.c` run under the preload with
//! `JEPROF_CONF=lg_prof_sample:0` and `lg_prof_sample:12`, under jemalloc 5.3 with
//! `MALLOC_CONF=prof:true` and under gperftools' `HEAPPROFILE`; a HotSpot perf map with and
//! without `0x`), and the test fixtures in `corpus/` and `data/`.
//!
//! A failure prints the seed and saves the input under `target/tmp/fuzz-failures/`;
//! `JEPROF_FUZZ_INPUT=FILE cargo test --release -p jeprof-rs --test fuzz TARGET` replays it.

#[path = "fuzz/harness.rs"]
mod harness;
#[path = "fuzz/mutate.rs"]
mod mutate;

/// The preload's configuration parser, compiled into this test binary from its source: linking
/// the preload's rlib would bring its constructor and its malloc into the test process.
#[path = "../../preload/src/config.rs"]
#[allow(dead_code)]
mod preload_config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use harness::{Failure, Settings, Target};
use jeprof_rs::maps::{self, MapTable};
use jeprof_rs::measure::Measure;
use jeprof_rs::report::{collapsed, diff, pprof, top, trend};
use jeprof_rs::symbolize::{self, dwarf, elf, perfmap::PerfMap};
use jeprof_rs::{reader, resolve};
use mutate::{ElfSeed, Rng, TextFormat};

#[global_allocator]
static ALLOCATOR: harness::Counting = harness::Counting;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[derive(Clone, Copy, PartialEq)]
enum DumpKind {
    Ours,
    Jemalloc,
    Gperftools,
}

/// Profile seeds of one kind: ours have `# key: value` metadata after a `heap_v2` header,
/// jemalloc's have none, gperftools' start `heap profile:`. Files that are none of these
/// (empty, binary, bad header) go with ours.
fn dump_seeds(kind: DumpKind) -> Vec<Vec<u8>> {
    let dirs = ["tests/fuzz/seeds", "tests/corpus", "tests/data"];
    let seeds: Vec<Vec<u8>> = dirs
        .iter()
        .flat_map(|d| read_dir_files(&crate_dir().join(d)))
        .filter(|(name, _)| name.ends_with(".heap"))
        .map(|(_, bytes)| bytes)
        .filter(|b| {
            let k = if b.starts_with(b"heap profile:") {
                DumpKind::Gperftools
            } else if b.starts_with(b"heap_v2/") && !b.windows(3).any(|w| w == b"\n# ") {
                DumpKind::Jemalloc
            } else {
                DumpKind::Ours
            };
            k == kind
        })
        .collect();
    assert!(seeds.len() >= 2, "too few seeds");
    seeds
}

const DUMP_TOKENS: &[&str] = &[
    "heap_v2/1",
    "heap_v2/524288",
    "heap_v2/",
    "heap profile:    1:   100 [    1:   100] @ heap_v2/524288",
    "heap profile: 1: 1 [1: 1] @ heapprofile",
    "heap profile: 1: 1 [1: 1] @ heap/0",
    "@ 0x1 0x2",
    "@",
    "@ ",
    "  t*: 1: 8 [1: 8]",
    "  t*: 0: 0 [0: 0]",
    "  t*:",
    "  t0: 1: 8 [1: 8] thread name",
    "t:",
    "t-1: 1: 1 [1: 1]",
    "   1:   100 [     1:   100] @ 0x1",
    "# kind: heap",
    "# kind: mmap",
    "# pid: 4294967296",
    "# time: 1e400",
    "# time: NaN",
    "# build_id /x: zz",
    "# sample_period: 0",
    "#",
    "# :",
    "MAPPED_LIBRARIES:",
    "--- Memory map: ---",
    "ffffffffffff0000-ffffffffffffffff r-xp ffffffffffffffff 00:00 1 /x",
    "1000-0 r-xp 0 0 0",
    "0-0 ---- 0 0 0 [vdso] (deleted)",
    "7f00-8f00 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6",
    "[",
    "]",
    ":",
    "t",
    "t*",
    "t*1: 1 [1: 1]",
    "tx: 1: 1 [1: 1]",
];

/// What the analyzer does with a parsed profile, minus reading object files: unsampled values,
/// the map table, analysis with every address unmapped, and the text reports.
fn check_profile(data: &[u8]) {
    match reader::parse(data) {
        Ok(profile) => {
            let lines = data.iter().filter(|&&b| b == b'\n').count();
            for s in &profile.samples {
                let v = &s.values;
                for x in [
                    v.inuse_bytes,
                    v.inuse_objects,
                    v.alloc_bytes,
                    v.alloc_objects,
                ] {
                    assert!(x.is_finite() && x >= 0.0, "{v:?} from {:?}", s.raw);
                }
                assert!(v.inuse_bytes >= s.raw.inuse_bytes as f64 * 0.999_999);
                assert!(s.line >= 1 && s.line <= lines, "line {}", s.line);
            }
            let _ = (profile.totals(), profile.pid(), profile.time());
            let table = MapTable::new(&profile.mappings);
            for s in &profile.samples {
                for a in &s.stack {
                    if let Some(i) = table.find(a.lookup()) {
                        assert!(table.mappings()[i].contains(a.lookup()));
                    }
                }
            }
            // Reports with no object files to read (every frame stays an address).
            let mut bare = profile.clone();
            bare.mappings.clear();
            let options = symbolize::Options {
                perf_map: Some(PathBuf::from("/nonexistent/perf.map")),
                debug_roots: Vec::new(),
                root: None,
            };
            let analysis = resolve::analyze(&[&bare], &[None], &options);
            let stacks = &analysis.stacks[0];
            for measure in [Measure::InuseSpace, Measure::AllocObjects] {
                let t = top::compute(&analysis.tables, stacks, measure, top::By::Function);
                let _ = top::to_text(&t, 20, false);
                let _ = top::to_json(&t, 5);
                let _ = collapsed::to_text(&collapsed::folded(
                    &analysis.tables,
                    stacks,
                    measure,
                    false,
                ));
            }
            // Against itself: diff, a two-dump trend (the dump's own time, if any, then a
            // second later), and the pprof encoding of the original, mappings included.
            let rows = diff::compute(
                &analysis.tables,
                stacks,
                stacks,
                Measure::InuseSpace,
                top::By::Function,
            );
            let _ = diff::to_text(&rows, 10, Measure::InuseSpace, false);
            let t0 = profile.time();
            let points = [
                trend::Point {
                    time: t0,
                    period: 1.0,
                    stacks,
                },
                trend::Point {
                    time: t0.map(|t| t + 1.0),
                    period: 1.0,
                    stacks,
                },
            ];
            let rows = trend::compute(
                &analysis.tables,
                &points,
                Measure::AllocSpace,
                top::By::Library,
            );
            let _ = rows.to_text(10, Measure::AllocSpace, true);
            let _ = pprof::encode(
                &analysis.tables,
                stacks,
                &table,
                &analysis.build_ids,
                &profile,
            );
        }
        Err(e) => {
            let newlines = data.iter().filter(|&&b| b == b'\n').count();
            assert!(e.line >= 1 && e.line <= newlines + 2, "{e:?}");
            let message = jeprof_rs::error::Error::parse(Path::new("x.heap"), e).to_string();
            assert!(!message.contains('\n') && message.starts_with("x.heap:"));
        }
    }
}

/// A parsed profile holds its stacks as 8 bytes per frame (a frame is at least 2 bytes of
/// text), and the analysis a few copies of that: tens of bytes per input byte, never more.
fn dump_budget(len: usize) -> usize {
    (4 << 20) + 64 * len
}

fn dump_target(name: &'static str, kind: DumpKind) -> Target {
    let format = TextFormat {
        sep: b'\n',
        tokens: DUMP_TOKENS,
    };
    Target {
        name,
        seeds: dump_seeds(kind),
        mutate: Box::new(move |rng, seeds| mutate::text(rng, seeds, &format)),
        check: Arc::new(check_profile),
        budget: dump_budget,
        text: true,
    }
}

#[test]
fn fuzz_dump_ours() {
    harness::isolated("fuzz_dump_ours", fuzz_dump_ours_body);
}

fn fuzz_dump_ours_body() {
    harness::run(
        &dump_target("fuzz_dump_ours", DumpKind::Ours),
        &Settings::from_env(),
    )
    .assert_ok();
}

#[test]
fn fuzz_dump_jemalloc() {
    harness::isolated("fuzz_dump_jemalloc", fuzz_dump_jemalloc_body);
}

fn fuzz_dump_jemalloc_body() {
    let target = dump_target("fuzz_dump_jemalloc", DumpKind::Jemalloc);
    harness::run(&target, &Settings::from_env()).assert_ok();
}

#[test]
fn fuzz_dump_gperftools() {
    harness::isolated("fuzz_dump_gperftools", fuzz_dump_gperftools_body);
}

fn fuzz_dump_gperftools_body() {
    let target = dump_target("fuzz_dump_gperftools", DumpKind::Gperftools);
    harness::run(&target, &Settings::from_env()).assert_ok();
}

fn check_perf_map(data: &[u8]) {
    // As `PerfMap::load` reads a file.
    let text = String::from_utf8_lossy(data);
    let map = PerfMap::parse(&text);
    let lines = text.lines().count();
    assert!(map.bad_lines <= lines);
    assert_eq!(map.first_bad_line.is_some(), map.bad_lines > 0);
    assert!(map.first_bad_line.is_none_or(|l| l >= 1 && l <= lines));
    let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1, 0x7f00_0000_0000];
    for line in text.lines().take(64) {
        let word = line.split_whitespace().next().unwrap_or("");
        let word = word.strip_prefix("0x").unwrap_or(word);
        if let Ok(v) = u64::from_str_radix(word, 16) {
            probes.extend([
                v,
                v.wrapping_sub(1),
                v.wrapping_add(1),
                v.wrapping_add(0x100),
            ]);
        }
    }
    for p in probes {
        if let Some(name) = map.lookup(p) {
            assert!(!name.is_empty());
        }
    }
}

#[test]
fn fuzz_perf_map() {
    harness::isolated("fuzz_perf_map", fuzz_perf_map_body);
}

fn fuzz_perf_map_body() {
    let seeds: Vec<Vec<u8>> = read_dir_files(&crate_dir().join("tests/fuzz/seeds"))
        .into_iter()
        .chain(read_dir_files(&crate_dir().join("tests/data")))
        .filter(|(name, _)| name.ends_with(".map"))
        .map(|(_, b)| b)
        .collect();
    assert!(seeds.len() >= 3);
    let format = TextFormat {
        sep: b'\n',
        tokens: &[
            "0x7f0000001000 0x100 Interpreter",
            "7f0000001000 100 name",
            "ffffffffffffffff ffffffffffffffff wrap",
            "0 0 zero",
            "0x 0x empty",
            "1000 10",
            "1000",
            "Interpreter",
            " ",
            "\t",
        ],
    };
    let target = Target {
        name: "fuzz_perf_map",
        seeds,
        mutate: Box::new(move |rng, seeds| mutate::text(rng, seeds, &format)),
        check: Arc::new(check_perf_map),
        budget: |len| (1 << 20) + 32 * len,
        text: true,
    };
    harness::run(&target, &Settings::from_env()).assert_ok();
}

fn check_conf(data: &[u8]) {
    use preload_config::{Config, LG_SAMPLE_MAX, MAX_DEPTH_LIMIT, PREFIX_MAX};
    let mut c = Config::default();
    let mut reports = 0usize;
    let range = data.as_ptr_range();
    c.apply(data, &mut |entry, why| {
        reports += 1;
        // The entry reported is a piece of the input; the reason is a fixed text.
        let r = entry.as_ptr_range();
        assert!(entry.is_empty() || (r.start >= range.start && r.end <= range.end));
        assert!(!why.is_empty() && !why.contains('\n'));
    });
    assert!(reports <= data.len());
    assert!(c.prefix_len >= 1 && c.prefix_len < PREFIX_MAX);
    assert!(!c.prefix().contains(&0));
    assert!(c.lg_sample <= LG_SAMPLE_MAX);
    assert!(c.sample_period() >= 1);
    assert!((-1..=62).contains(&c.lg_interval));
    assert!((1..=MAX_DEPTH_LIMIT).contains(&c.max_depth));
    assert!((0..=64).contains(&c.signal) && ![7, 9, 11, 19].contains(&c.signal));
    assert!(c.interval_secs <= 86_400 * 365);
}

#[test]
fn fuzz_jeprof_conf() {
    harness::isolated("fuzz_jeprof_conf", fuzz_jeprof_conf_body);
}

fn fuzz_jeprof_conf_body() {
    let seeds: Vec<Vec<u8>> = [
        "prof_prefix:/tmp/prof/app,lg_prof_sample:19",
        "prof_prefix:/tmp/a/b,lg_prof_sample:0,prof_final:false,lg_prof_interval:20,\
         prof_gdump:true,prof_leak:true,prof_mmap:false,prof_max_depth:64,\
         prof_interval_secs:30,prof_signal:41,prof:true,prof_unwinder:libgcc",
        "prof:false",
        "lg_prof_interval:-1,prof_unwinder:auto,prof_signal:0,prof_active:true,prof_accum:false",
        "prof_thread_active_init:1,prof_max_depth:256,prof_interval_secs:31536000",
        ",,lg_prof_sample:banana,foo:1,oops,:,prof_prefix:",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let format = TextFormat {
        sep: b',',
        tokens: &[
            "prof",
            "prof_prefix:",
            "lg_prof_sample:",
            "prof_final:",
            "lg_prof_interval:",
            "prof_gdump:",
            "prof_leak:",
            "prof_mmap:",
            "prof_max_depth:",
            "prof_unwinder:",
            "prof_interval_secs:",
            "prof_signal:",
            "prof_active:",
            "prof_accum:",
            ":",
            ",",
            "-",
            "--1",
            "-9223372036854775808",
            "999999999999999999",
            "9999999999999999999",
        ],
    };
    let target = Target {
        name: "fuzz_jeprof_conf",
        seeds,
        mutate: Box::new(move |rng, seeds| {
            let mut data = mutate::text(rng, seeds, &format);
            // Prefixes around the 480-byte limit.
            if rng.chance(16) {
                let n = 470 + rng.below(20);
                data.extend_from_slice(b",prof_prefix:");
                data.extend(std::iter::repeat_n(b'p', n));
            }
            data
        }),
        check: Arc::new(check_conf),
        // It runs inside the host process's allocator hooks: it must not allocate at all.
        budget: |_| 0,
        text: true,
    };
    harness::run(&target, &Settings::from_env()).assert_ok();
}

/// Object files to corrupt: `leak.c` built with `gcc -g -O2`, the same with compressed debug
/// sections, and libc's separate debug file (libc6-dbg). `None` when gcc is missing.
fn elf_seeds(dir: &Path) -> Option<Vec<ElfSeed>> {
    let source = crate_dir().join("tests/fuzz/seeds/leak.c");
    let mut seeds = Vec::new();
    for (out, extra) in [("leak", None), ("leak-gz", Some("-gz"))] {
        let path = dir.join(out);
        let mut cmd = std::process::Command::new("gcc");
        cmd.args(["-g", "-O2", "-pthread", "-o"])
            .arg(&path)
            .arg(&source);
        cmd.args(extra);
        match cmd.status() {
            Ok(s) if s.success() => seeds.push(ElfSeed::new(std::fs::read(&path).unwrap(), 4)),
            Ok(_) if extra.is_some() => {} // a gcc/ld without zlib support
            _ => return None,
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"));
    if let Some(debug) = libc.and_then(|l| {
        use object::Object;
        let data = std::fs::read(l).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let id = file.build_id().ok()??;
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let p = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
        std::fs::read(p).ok()
    }) {
        // 4 MiB of compressed DWARF 5, about 100 times slower per input than leak.c's.
        seeds.push(ElfSeed::new(debug, 1));
    } else {
        eprintln!(
            "fuzz_symbolize: no libc debug file (apt-get install libc6-dbg); fuzzing without it"
        );
    }
    Some(seeds)
}

/// Where the corrupted object goes, mapped at this base in the synthetic profile.
const BASE: u64 = 0x5555_0000_0000;

/// Mappings and return addresses for an object file, read from the (corrupted) file itself:
/// its executable segments, mapped at [`BASE`], and up to 12 of its function symbols.
fn probes(data: &[u8], path: &Path) -> (Vec<maps::Mapping>, Vec<u64>, Vec<u64>) {
    use object::{Object, ObjectSymbol};
    let mut mappings = Vec::new();
    let mut svmas = Vec::new();
    let mut addrs = Vec::new();
    if let Ok(file) = object::File::parse(data) {
        let segments = elf::segments(&file);
        for s in segments.iter().filter(|s| s.executable).take(4) {
            let page = s.file_offset & !0xfff;
            let (Some(start), Some(end)) = (
                BASE.checked_add(page),
                BASE.checked_add(s.file_offset)
                    .and_then(|e| e.checked_add(s.file_size.min(1 << 40))),
            ) else {
                continue;
            };
            let line = format!(
                "{start:x}-{end:x} r-xp {page:08x} 08:01 7 {}",
                path.display()
            );
            if let Ok(m) = maps::parse_line(&line, 1) {
                mappings.push(m);
            }
        }
        let symbols: Vec<u64> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
            .map(|s| s.address())
            .take(4096)
            .collect();
        let step = (symbols.len() / 12).max(1);
        svmas.extend(
            symbols
                .iter()
                .step_by(step)
                .take(12)
                .map(|a| a.wrapping_add(4)),
        );
        for &svma in &svmas {
            if let Some(s) = segments
                .iter()
                .find(|s| s.executable && s.vaddr <= svma && svma - s.vaddr < s.file_size)
            {
                addrs.push(
                    BASE.wrapping_add(svma - s.vaddr)
                        .wrapping_add(s.file_offset)
                        + 1,
                );
            }
        }
    }
    if mappings.is_empty() {
        let line = format!(
            "{BASE:x}-{:x} r-xp 00000000 08:01 7 {}",
            BASE + 0x10_0000,
            path.display()
        );
        mappings.push(maps::parse_line(&line, 1).unwrap());
        addrs.extend([BASE + 0x1001, BASE + 0x2345]);
    }
    (mappings, addrs, svmas)
}

fn check_object(data: &[u8], dir: &Path) {
    use object::Object;
    let path = dir.join("object");
    std::fs::write(&path, data).expect("write the object file");
    let (mappings, addrs, svmas) = probes(data, &path);
    let table = MapTable::new(&mappings);
    let space = symbolize::Space {
        maps: &table,
        addrs: addrs
            .iter()
            .map(|&a| jeprof_rs::address::ReturnAddress(a))
            .collect(),
        pid: None,
        build_ids: Default::default(),
        java_methods: &Default::default(),
    };
    let options = symbolize::Options {
        perf_map: None,
        debug_roots: vec![dir.join("debug")],
        root: None,
    };
    let result = symbolize::symbolize(&[space], &options);
    assert_eq!(result.spaces.len(), 1);
    // The layers underneath, on the same file even where the symbolizer gave up on it (a file
    // that does not match its mapping is not read further).
    let Ok(mapped) = jeprof_rs::sys::map_file(&path) else {
        return;
    };
    let Ok(file) = object::File::parse(&*mapped) else {
        return;
    };
    let segments = elf::segments(&file);
    for m in &mappings {
        let _ = elf::mismatch(m, data.len() as u64, &segments);
        for &a in &addrs {
            let _ = elf::to_svma(m, a.wrapping_sub(1), &segments);
        }
    }
    let symtab = elf::SymbolTable::new(&file, false);
    let dynsym = elf::SymbolTable::new(&file, true);
    let sections = dwarf::Sections::load(&file);
    let context = sections.as_ref().and_then(|s| s.context());
    for &svma in svmas.iter().chain(&[0, u64::MAX]) {
        let _ = (symtab.lookup(svma), dynsym.lookup(svma));
        if let Some(ctx) = &context {
            let _ = dwarf::frames(ctx, svma);
        }
    }
    let _ = (file.build_id(), file.gnu_debuglink());
}

#[test]
fn fuzz_symbolize() {
    harness::isolated("fuzz_symbolize", fuzz_symbolize_body);
}

fn fuzz_symbolize_body() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-elf.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("debug")).unwrap();
    let Some(seeds) = elf_seeds(&dir) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: gcc is missing (a missing install step in .ci/run)"
        );
        eprintln!("SKIPPED fuzz_symbolize: gcc not found");
        return;
    };
    let seeds = Arc::new(seeds);
    let check_dir = dir.clone();
    let mutate_seeds = seeds.clone();
    let target = Target {
        name: "fuzz_symbolize",
        seeds: seeds.iter().map(|s| s.bytes.clone()).collect(),
        mutate: Box::new(move |rng, _| mutate::elf(rng, &mutate_seeds)),
        check: Arc::new(move |data| check_object(data, &check_dir)),
        // addr2line's units, line tables and function lists, and the symbol tables: a few
        // times the object's size at most.
        budget: |len| (64 << 20) + 16 * len,
        text: false,
    };
    let report = harness::run(&target, &Settings::from_env());
    if report.failure.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    report.assert_ok();
}

/// Found by `fuzz_symbolize`: a compressed debug section (`SHF_COMPRESSED`, zlib) whose header
/// claims more bytes than its data holds. The claim was reserved and zero-filled before
/// inflating (a 4 MiB libc debug file claiming 600 MiB took 600 MiB and a second; a claim of
/// half the machine's memory would take it). Now the buffer grows with what the data really
/// inflates to, and a section whose size does not match its claim is left out.
#[test]
fn compressed_section_claiming_too_much() {
    harness::isolated(
        "compressed_section_claiming_too_much",
        compressed_section_claiming_too_much_body,
    );
}

fn compressed_section_claiming_too_much_body() {
    use object::read::elf::{FileHeader, SectionHeader};
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fuzz-claim.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("leak-gz");
    let built = std::process::Command::new("gcc")
        .args(["-g", "-O2", "-gz", "-pthread", "-o"])
        .arg(&path)
        .arg(crate_dir().join("tests/fuzz/seeds/leak.c"))
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: gcc (with -gz) is missing (a missing install step in .ci/run)"
        );
        eprintln!("SKIPPED compressed_section_claiming_too_much: gcc -gz failed");
        return;
    }
    let original = std::fs::read(&path).unwrap();
    let le = object::Endianness::Little;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*original).unwrap();
    let sections = header.sections(le, &*original).unwrap();
    let info = sections
        .iter()
        .find(|s| sections.section_name(le, s).unwrap() == b".debug_info")
        .unwrap();
    assert_ne!(
        info.sh_flags(le).0 & 0x800,
        0,
        ".debug_info is not compressed"
    );
    // Elf64_Chdr: ch_type (1 = zlib), reserved, ch_size.
    let chdr = info.sh_offset(le) as usize;
    assert_eq!(&original[chdr..chdr + 4], &1u32.to_le_bytes());
    let real = u64::from_le_bytes(original[chdr + 8..chdr + 16].try_into().unwrap());
    let leak_small = {
        use object::{Object, ObjectSymbol};
        let file = object::File::parse(&*original).unwrap();
        let symbol = file.symbols().find(|s| s.name() == Ok("leak_small"));
        symbol.unwrap().address() + 4
    };
    let names = |data: &[u8]| -> Vec<String> {
        let file = object::File::parse(data).unwrap();
        let sections = dwarf::Sections::load(&file);
        let context = sections.as_ref().and_then(|s| s.context());
        let frames = context.map(|c| dwarf::frames(&c, leak_small));
        frames
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| f.function)
            .collect()
    };
    // The file as built: its compressed DWARF is read.
    assert!(names(&original).iter().any(|n| n == "leak_small"));
    for claim in [
        1u64 << 30,
        1 << 40,
        u64::MAX,
        real * 20,
        real + 1,
        real - 1,
        0,
    ] {
        let mut data = original.clone();
        data[chdr + 8..chdr + 16].copy_from_slice(&claim.to_le_bytes());
        let (found, peak) = harness::measure(|| names(&data));
        assert!(peak < 4 << 20, "claim {claim}: {peak} bytes allocated");
        assert!(found.is_empty(), "claim {claim}: {found:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// The harness itself: each kind of failure is caught and reported (a fuzz test that cannot
// fail would be worth nothing). These also show that `catch_unwind` works in this test binary
// under `cargo test --release`, whose profile says `panic = "abort"`.

fn planted(check: harness::Check, time_limit: Duration) -> harness::Report {
    let target = Target {
        name: "planted",
        seeds: vec![b"a harmless line\nanother one\n".to_vec()],
        mutate: Box::new(|rng: &mut Rng, seeds: &[Vec<u8>]| {
            let mut data = seeds[0].clone();
            if rng.chance(20) {
                let at = rng.below(data.len());
                data.splice(at..at, b"BAD".iter().copied());
            }
            data
        }),
        check,
        budget: |_| 1 << 20,
        text: true,
    };
    let settings = Settings {
        seed: 42,
        duration: Duration::from_secs(10),
        time_limit,
        replay: None,
    };
    harness::run(&target, &settings)
}

fn has_bad(data: &[u8]) -> bool {
    data.windows(3).any(|w| w == b"BAD")
}

#[test]
fn planted_panic_is_caught_and_minimized() {
    harness::isolated(
        "planted_panic_is_caught_and_minimized",
        planted_panic_is_caught_and_minimized_body,
    );
}

fn planted_panic_is_caught_and_minimized_body() {
    let report = planted(
        Arc::new(|data: &[u8]| assert!(!has_bad(data), "planted panic")),
        Duration::from_secs(2),
    );
    let (index, failure, saved) = report.failure.expect("the planted panic was not found");
    assert!(index >= 1);
    assert!(
        matches!(&failure, Failure::Panic(m) if m.contains("planted panic")),
        "{failure:?}"
    );
    assert!(has_bad(&std::fs::read(&saved[0]).unwrap()));
    assert_eq!(std::fs::read(saved.last().unwrap()).unwrap(), b"BAD");
}

#[test]
fn planted_hang_is_caught() {
    harness::isolated("planted_hang_is_caught", planted_hang_is_caught_body);
}

fn planted_hang_is_caught_body() {
    let report = planted(
        Arc::new(|data: &[u8]| {
            if has_bad(data) {
                std::thread::sleep(Duration::from_millis(800));
            }
        }),
        Duration::from_millis(200),
    );
    let (_, failure, _) = report.failure.expect("the planted hang was not found");
    assert!(matches!(failure, Failure::Hang(_)), "{failure:?}");
}

#[test]
fn planted_blowup_is_caught() {
    harness::isolated("planted_blowup_is_caught", planted_blowup_is_caught_body);
}

fn planted_blowup_is_caught_body() {
    let report = planted(
        Arc::new(|data: &[u8]| {
            if has_bad(data) {
                std::hint::black_box(vec![1u8; 8 << 20]);
            }
        }),
        Duration::from_secs(2),
    );
    let (_, failure, _) = report.failure.expect("the planted blow-up was not found");
    assert!(
        matches!(failure, Failure::Memory { peak, budget } if peak >= 8 << 20 && budget == 1 << 20),
        "{failure:?}"
    );
}
