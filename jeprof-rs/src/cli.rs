//! The command line: clap definitions and one function per command. Commands write their
//! output to the given writer (stdout in `main`), warnings to stderr, and return the exit code
//! or an [`Error`] that `main` prints as one line.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::error::Error;
use crate::filter::{self, Filter};
use crate::measure::Measure;
use crate::profile::{DumpName, Profile};
use crate::reader;
use crate::report::top::By;
use crate::report::{collapsed, diff, flame, leading, memory, pprof, rss, top, trend};
use crate::resolve::{self, Analysis, Stack};
use crate::run;
use crate::symbolize;

/// Heap profile analyzer: which stack holds the memory.
///
/// Reads jemalloc `heap_v2` dumps (from jemalloc's profiler or libjeprof_preload.so) and
/// gperftools heap profiles, symbolizes them (DWARF, ELF symbols, separate debug files, perf
/// maps for JIT code) and reports the allocation sites.
#[derive(Parser, Debug)]
#[command(name = "jeprof-rs", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Top allocation sites (jeprof --text columns: flat, flat%, sum%, cum, cum%).
    Top(TopArgs),
    /// Folded stacks (`root;...;leaf VALUE`), for flamegraph tools.
    Collapsed(CollapsedArgs),
    /// Flame graph SVG (differential with --base).
    Flame(FlameArgs),
    /// Sites by change from OLD to NEW, largest growth first.
    Diff(DiffArgs),
    /// Gzipped profile.proto for pprof, Pyroscope, Parca.
    Pprof(PprofArgs),
    /// Sites whose in-use bytes grow across a series of dumps.
    Trend(TrendArgs),
    /// Run a command under the profiler and report what it left allocated.
    Run(RunArgs),
    /// Ask a running process (profiled by libjeprof_preload.so) to write a dump now.
    Dump(DumpArgs),
    /// The process's resident memory at a dump, explained row by row (adds up to its RSS).
    Rss(RssArgs),
    /// Ask a profiled process to return free memory to the system (glibc's malloc_trim(0)) and
    /// report its RSS before and after.
    Trim(TrimArgs),
}

/// Which number to report (default: --inuse-space).
#[derive(Args, Debug, Clone, Default)]
#[group(multiple = false)]
pub struct MeasureArgs {
    /// Bytes in use at the time of the dump (default).
    #[arg(long)]
    pub inuse_space: bool,
    /// Objects in use at the time of the dump.
    #[arg(long)]
    pub inuse_objects: bool,
    /// Bytes allocated since the start (freed or not).
    #[arg(long)]
    pub alloc_space: bool,
    /// Objects allocated since the start.
    #[arg(long)]
    pub alloc_objects: bool,
}

impl MeasureArgs {
    pub fn measure(&self) -> Measure {
        if self.inuse_objects {
            Measure::InuseObjects
        } else if self.alloc_space {
            Measure::AllocSpace
        } else if self.alloc_objects {
            Measure::AllocObjects
        } else {
            Measure::InuseSpace
        }
    }
}

/// Stack selection and symbol sources shared by the reports.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectArgs {
    /// Keep only stacks with a frame whose function or library matches REGEX.
    #[arg(long, value_name = "REGEX")]
    pub focus: Option<String>,
    /// Drop stacks with a frame whose function or library matches REGEX.
    #[arg(long, value_name = "REGEX")]
    pub ignore: Option<String>,
    /// Perf map naming JIT code (`START SIZE name` lines); default /tmp/perf-<pid>.map.
    #[arg(long, value_name = "FILE")]
    pub perf_map: Option<PathBuf>,
}

/// How `top`, `diff` and `trend` print their table.
#[derive(Args, Debug)]
pub struct RowsArgs {
    /// Number of rows.
    #[arg(short = 'n', long = "nodes", default_value_t = 20, value_name = "N")]
    pub n: usize,
    /// Group rows by function, source line or library.
    #[arg(long, value_enum, default_value_t = By::Function)]
    pub by: By,
    /// Print exact byte counts instead of KiB/MiB/GiB.
    #[arg(long)]
    pub bytes: bool,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Heap profile (default: the newest *.heap file in the current directory).
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub measure: MeasureArgs,
    /// Subtract this older profile's stacks from FILE's.
    #[arg(long, value_name = "OLD")]
    pub base: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print JSON: {"total_bytes", "total_objects", "unit", "rows": [{"name", "library",
    /// "file", "line", "flat_bytes", "flat_objects", "cum_bytes", "cum_objects"}]}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub rows: RowsArgs,
}

#[derive(Args, Debug)]
pub struct CollapsedArgs {
    /// Heap profile.
    pub file: PathBuf,
    #[command(flatten)]
    pub measure: MeasureArgs,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
pub struct FlameArgs {
    /// Heap profile.
    pub file: PathBuf,
    /// Output SVG file.
    #[arg(short = 'o', long = "output", value_name = "OUT.svg")]
    pub output: PathBuf,
    /// Draw a differential flame graph from this older profile to FILE.
    #[arg(long, value_name = "OLD")]
    pub base: Option<PathBuf>,
    #[command(flatten)]
    pub measure: MeasureArgs,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Older profile.
    pub old: PathBuf,
    /// Newer profile.
    pub new: PathBuf,
    #[command(flatten)]
    pub measure: MeasureArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub rows: RowsArgs,
}

#[derive(Args, Debug)]
pub struct PprofArgs {
    /// Heap profile.
    pub file: PathBuf,
    /// Output file (gzipped profile.proto).
    #[arg(short = 'o', long = "output", value_name = "OUT.pb.gz")]
    pub output: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
pub struct TrendArgs {
    /// Dumps of one process (ordered by their `# time:` metadata, else by sequence number).
    #[arg(required = true, num_args = 2..)]
    pub dumps: Vec<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub rows: RowsArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Record every allocation (lg_prof_sample:0): exact counts.
    #[arg(long, conflicts_with = "sample")]
    pub exact: bool,
    /// Mean bytes between samples (rounded to a power of two; default 512 KiB).
    #[arg(long, value_name = "BYTES")]
    pub sample: Option<u64>,
    /// Do not track mmap/mremap/munmap.
    #[arg(long)]
    pub no_mmap: bool,
    /// Directory for the dumps (default: ./jeprof-out.<unix time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The preload library (default: libjeprof_preload.so next to this executable).
    #[arg(long, value_name = "PATH")]
    pub preload: Option<PathBuf>,
    /// Number of rows of the report.
    #[arg(short = 'n', long = "nodes", default_value_t = 20, value_name = "N")]
    pub n: usize,
    /// Also dump every SECS seconds while the command runs (prof_interval_secs).
    #[arg(long, value_name = "SECS")]
    pub interval: Option<u64>,
    /// More JEPROF_CONF entries (`key:value,...`, e.g. `lg_prof_interval:30,prof_leak:true`),
    /// applied after the ones these options set.
    #[arg(long, value_name = "KEY:VALUE,...")]
    pub conf: Option<String>,
    /// Do not add `-XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit
    /// -XX:+PreserveFramePointer` to JAVA_TOOL_OPTIONS (they let JVMs under the command show
    /// their compiled Java frames).
    #[arg(long)]
    pub no_java_opts: bool,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Process to signal.
    pub pid: i32,
    /// Signal number the preload listens on (its `prof_signal` key; 41 = SIGRTMIN+7).
    #[arg(long, default_value_t = 41, value_name = "N")]
    pub signal: i32,
}

#[derive(Args, Debug)]
pub struct RssArgs {
    /// Heap dump of libjeprof_preload.so (its `.mmap.heap` sibling is read too, when present).
    pub file: PathBuf,
    /// Print JSON: {"rss_bytes", "rows": [{"category", "detail", "resident_bytes"}], "hints"}.
    #[arg(long)]
    pub json: bool,
    /// Print exact byte counts instead of KiB/MiB/GiB.
    #[arg(long)]
    pub bytes: bool,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
pub struct TrimArgs {
    /// Process to ask (it must run under libjeprof_preload.so, with its trim handler).
    pub pid: i32,
    /// Signal number the preload listens on for trims (its `prof_trim_signal` key; 42 =
    /// SIGRTMIN+8).
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub signal: i32,
    /// Seconds to wait for the RSS to drop (the trim runs at the process's next allocation).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub wait: f64,
}

/// Run a parsed command line. Returns the exit code.
pub fn execute(cli: Cli, out: &mut dyn Write) -> Result<i32, Error> {
    match cli.command {
        Command::Top(a) => cmd_top(a, out),
        Command::Collapsed(a) => cmd_collapsed(a, out),
        Command::Flame(a) => cmd_flame(a, out),
        Command::Diff(a) => cmd_diff(a, out),
        Command::Pprof(a) => cmd_pprof(a, out),
        Command::Trend(a) => cmd_trend(a, out),
        Command::Run(a) => run::run(&a, out),
        Command::Dump(a) => cmd_dump(&a, out),
        Command::Rss(a) => cmd_rss(&a, out),
        Command::Trim(a) => cmd_trim(&a, out),
    }
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io(Path::new("<stdout>"), "cannot write", e)
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes()).map_err(stdout_error)
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("jeprof-rs: warning: {w}");
    }
}

/// Profiles read and resolved together.
pub struct Loaded {
    pub profiles: Vec<Profile>,
    pub analysis: Analysis,
}

/// Read `paths`, symbolize them together, print warnings.
pub fn load(paths: &[&Path], select: &SelectArgs) -> Result<Loaded, Error> {
    let profiles = paths
        .iter()
        .map(|p| reader::read_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let pids: Vec<Option<u32>> = profiles
        .iter()
        .zip(paths)
        .map(|(p, path)| {
            p.pid().or_else(|| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(DumpName::parse)
                    .map(|d| d.pid)
            })
        })
        .collect();
    let options = symbolize::Options {
        perf_map: select.perf_map.clone(),
        ..Default::default()
    };
    let refs: Vec<&Profile> = profiles.iter().collect();
    let analysis = resolve::analyze(&refs, &pids, &options);
    warn(&analysis.warnings);
    Ok(Loaded { profiles, analysis })
}

/// The stacks of profile `i`, filtered.
fn selected(loaded: &Loaded, i: usize, filter: &Filter) -> Vec<Stack> {
    filter.apply(&loaded.analysis.tables, loaded.analysis.stacks[i].clone())
}

/// The newest `*.heap` (not `.mmap.heap`) in the current directory.
fn newest_dump() -> Result<PathBuf, Error> {
    let dir = Path::new(".");
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list directory", e))?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".heap") || name.ends_with(".mmap.heap") {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, PathBuf::from(name)));
        }
    }
    let (_, path) = best.ok_or_else(|| {
        Error::Usage("top: no FILE given and no *.heap file in the current directory".into())
    })?;
    eprintln!("jeprof-rs: using {}", path.display());
    Ok(path)
}

/// Stacks of `file` (minus `base`'s when given), filtered.
fn stacks_with_base(
    file: &Path,
    base: Option<&Path>,
    select: &SelectArgs,
) -> Result<(Loaded, Vec<Stack>), Error> {
    let filter = Filter::new(select.focus.as_deref(), select.ignore.as_deref())?;
    let mut paths = vec![file];
    paths.extend(base);
    let loaded = load(&paths, select)?;
    let mut stacks = selected(&loaded, 0, &filter);
    if base.is_some() {
        stacks = filter::subtract(stacks, selected(&loaded, 1, &filter));
    }
    Ok((loaded, stacks))
}

/// The `.mmap.heap` sibling of a heap dump, when it exists.
pub fn mmap_sibling(heap: &Path) -> Option<PathBuf> {
    let name = heap.file_name()?.to_str()?;
    if name.ends_with(".mmap.heap") {
        return None;
    }
    let sibling = heap.with_file_name(format!("{}.mmap.heap", name.strip_suffix(".heap")?));
    sibling.is_file().then_some(sibling)
}

/// The RSS report of profile 0 of `loaded`, with profile `mmap` as its mmap space.
pub fn rss_of(loaded: &Loaded, mmap: Option<usize>) -> Result<rss::Report, &'static str> {
    rss::compute(&rss::Input {
        tables: &loaded.analysis.tables,
        heap: &loaded.profiles[0],
        heap_stacks: &loaded.analysis.stacks[0],
        mmap: mmap.map(|i| (&loaded.profiles[i], loaded.analysis.stacks[i].as_slice())),
    })
}

/// Resident bytes by row for a mappings profile (`None` for a heap profile).
fn resident_of(loaded: &Loaded, i: usize, filter: &Filter, by: By) -> Option<top::Resident> {
    let stacks = resident_stacks(loaded, i)?;
    let stacks = filter.apply(&loaded.analysis.tables, stacks);
    Some(top::resident_rows(&loaded.analysis.tables, &stacks, by))
}

/// The stacks of profile `i` with their resident bytes as in-use bytes, when it records them.
pub fn resident_stacks(loaded: &Loaded, i: usize) -> Option<Vec<Stack>> {
    let per_sample = loaded.profiles[i].resident_by_sample();
    if per_sample.is_empty() {
        return None;
    }
    Some(
        loaded.analysis.stacks[i]
            .iter()
            .zip(&per_sample)
            .map(|(s, &r)| Stack {
                values: crate::profile::Values {
                    inuse_bytes: r as f64,
                    inuse_objects: s.values.inuse_objects,
                    ..Default::default()
                },
                ..s.clone()
            })
            .collect(),
    )
}

pub fn cmd_top(a: TopArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let file = match a.file {
        Some(f) => f,
        None => newest_dump()?,
    };
    let filter = Filter::new(a.select.focus.as_deref(), a.select.ignore.as_deref())?;
    // Profile 1 is the base, or the heap dump's mmap sibling (for the RSS lines).
    let sibling = if a.base.is_none() && !a.json {
        mmap_sibling(&file)
    } else {
        None
    };
    let mut paths = vec![file.as_path()];
    paths.extend(a.base.as_deref().or(sibling.as_deref()));
    let loaded = load(&paths, &a.select)?;
    let mut stacks = selected(&loaded, 0, &filter);
    if a.base.is_some() {
        stacks = filter::subtract(stacks, selected(&loaded, 1, &filter));
    }
    let t = top::compute(
        &loaded.analysis.tables,
        &stacks,
        a.measure.measure(),
        a.rows.by,
    );
    let text = if a.json {
        top::to_json(&t, a.rows.n)
    } else {
        let whole = a.base.is_none() && a.select.focus.is_none() && a.select.ignore.is_none();
        let inuse = a.measure.measure() == Measure::InuseSpace;
        let mut text = String::new();
        if inuse {
            let sites = leading::compute(&loaded.analysis.tables, &stacks);
            text.push_str(&leading::to_text(&sites, 5, t.total_bytes, a.rows.bytes));
        }
        if whole
            && inuse
            && let Ok(r) = rss_of(&loaded, sibling.as_ref().map(|_| 1))
        {
            text.push_str(&rss::summary(&r));
        }
        if !text.is_empty() {
            text.push('\n');
        }
        let resident = if a.base.is_none() {
            resident_of(&loaded, 0, &filter, a.rows.by)
        } else {
            None
        };
        text.push_str(&top::to_text_with(
            &t,
            a.rows.n,
            a.rows.bytes,
            resident.as_ref(),
        ));
        if whole && inuse {
            let mem = memory::Memory::from_metadata(&loaded.profiles[0].metadata);
            text.push_str(&memory::summary(&mem, t.total_bytes));
        }
        text
    };
    write_out(out, &text)?;
    Ok(0)
}

pub fn cmd_rss(a: &RssArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let mut file = a.file.clone();
    // Given the sibling, read the heap dump it belongs to.
    if let Some(name) = file.file_name().and_then(|n| n.to_str())
        && let Some(stem) = name.strip_suffix(".mmap.heap")
    {
        file = file.with_file_name(format!("{stem}.heap"));
    }
    // Say what the dump lacks before symbolizing it (and warning about its frames).
    if let Some(why) = rss::missing(&reader::read_file(&file)?) {
        return Err(Error::File {
            file,
            message: format!("cannot explain its RSS: {why}"),
        });
    }
    let sibling = mmap_sibling(&file);
    let mut paths = vec![file.as_path()];
    paths.extend(sibling.as_deref());
    let loaded = load(&paths, &a.select)?;
    let report = rss_of(&loaded, sibling.as_ref().map(|_| 1)).map_err(|why| Error::File {
        file: file.clone(),
        message: format!("cannot explain its RSS: {why}"),
    })?;
    if sibling.is_none() {
        eprintln!(
            "jeprof-rs: warning: {}: no .mmap.heap sibling; mappings made through mmap are not told apart",
            file.display()
        );
    }
    let text = if a.json {
        rss::to_json(&report)
    } else {
        rss::to_text(&report, a.bytes)
    };
    write_out(out, &text)?;
    Ok(0)
}

/// A `/proc/<pid>/status` field in kB, as bytes.
fn status_kb(pid: i32, key: &str) -> Result<u64, Error> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| Error::File {
            file: path.clone(),
            message: format!("no {key} line"),
        })
}

pub fn cmd_trim(a: &TrimArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let (pid, sig) = (a.pid, a.signal);
    if pid <= 0 {
        return Err(Error::Usage(format!("trim: bad pid {pid}")));
    }
    if !(1..=64).contains(&sig) {
        return Err(Error::Usage(format!("trim: bad signal {sig} (1..64)")));
    }
    let maps_path = PathBuf::from(format!("/proc/{pid}/maps"));
    let maps =
        std::fs::read_to_string(&maps_path).map_err(|e| Error::io(&maps_path, "cannot read", e))?;
    if !maps.lines().any(|l| l.ends_with(run::PRELOAD_NAME)) {
        return Err(Error::Usage(format!(
            "trim: pid {pid} has no {} mapped; not sending signal {sig} (without our handler it would end the process)",
            run::PRELOAD_NAME
        )));
    }
    let status_path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(&status_path)
        .map_err(|e| Error::io(&status_path, "cannot read", e))?;
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig - 1)) != 0);
    if !caught {
        return Err(Error::Usage(format!(
            "trim: pid {pid} has no handler for signal {sig} (prof_trim_signal off or another value, or the program's own); not sending it"
        )));
    }
    let before = status_kb(pid, "VmRSS:")?;
    let threads = crate::sys::signal_all_threads(pid, sig)
        .map_err(|e| Error::Usage(format!("trim: cannot signal pid {pid}: {e}")))?;
    // The trim runs at the process's next allocation: watch the RSS until it has dropped and
    // settled, or the wait is over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(a.wait.max(0.0));
    let mut after = before;
    let mut steady = 0;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = match status_kb(pid, "VmRSS:") {
            Ok(v) => v,
            Err(_) => break, // the process is gone
        };
        steady = if now == after { steady + 1 } else { 0 };
        after = now;
        if after < before && steady >= 4 {
            break;
        }
    }
    let b = |v: u64| crate::humanize::bytes(v as f64);
    let mut text = format!(
        "pid {pid}: sent signal {sig} to {threads} threads; RSS before {}, after {} ({}{})\n",
        b(before),
        b(after),
        if after <= before { "-" } else { "+" },
        b(before.abs_diff(after))
    );
    if after >= before {
        text.push_str(
            "RSS did not drop: nothing to give back, another allocator than glibc, or the process has not allocated since (the trim runs at its next allocation)\n",
        );
    }
    write_out(out, &text)?;
    Ok(0)
}

pub fn cmd_collapsed(a: CollapsedArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let (loaded, stacks) = stacks_with_base(&a.file, None, &a.select)?;
    let lines = collapsed::folded(&loaded.analysis.tables, &stacks, a.measure.measure(), false);
    write_out(out, &collapsed::to_text(&lines))?;
    Ok(0)
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

pub fn cmd_flame(a: FlameArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let measure = a.measure.measure();
    let filter = Filter::new(a.select.focus.as_deref(), a.select.ignore.as_deref())?;
    let mut paths = vec![a.file.as_path()];
    paths.extend(a.base.as_deref());
    let loaded = load(&paths, &a.select)?;
    let tables = &loaded.analysis.tables;
    let after = collapsed::folded(tables, &selected(&loaded, 0, &filter), measure, false);
    let svg = match &a.base {
        Some(base) => {
            let before = collapsed::folded(tables, &selected(&loaded, 1, &filter), measure, false);
            let title = format!("{} vs {} ({measure})", file_name(&a.file), file_name(base));
            flame::differential_svg(&before, &after, &title, measure)
        }
        None => flame::svg(
            &after,
            &format!("{} ({measure})", file_name(&a.file)),
            measure,
        ),
    }
    .map_err(|e| Error::io(&a.output, "cannot draw flame graph", e))?;
    std::fs::write(&a.output, svg).map_err(|e| Error::io(&a.output, "cannot write", e))?;
    write_out(out, &format!("wrote {}\n", a.output.display()))?;
    Ok(0)
}

pub fn cmd_diff(a: DiffArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let filter = Filter::new(a.select.focus.as_deref(), a.select.ignore.as_deref())?;
    let loaded = load(&[a.old.as_path(), a.new.as_path()], &a.select)?;
    let measure = a.measure.measure();
    let rows = diff::compute(
        &loaded.analysis.tables,
        &selected(&loaded, 0, &filter),
        &selected(&loaded, 1, &filter),
        measure,
        a.rows.by,
    );
    write_out(out, &diff::to_text(&rows, a.rows.n, measure, a.rows.bytes))?;
    Ok(0)
}

pub fn cmd_pprof(a: PprofArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let (loaded, stacks) = stacks_with_base(&a.file, None, &a.select)?;
    let bytes = pprof::encode(
        &loaded.analysis.tables,
        &stacks,
        &loaded.analysis.maps[0],
        &loaded.analysis.build_ids,
        &loaded.profiles[0],
    );
    let gz = pprof::gzip(&bytes).map_err(|e| Error::io(&a.output, "cannot compress", e))?;
    std::fs::write(&a.output, gz).map_err(|e| Error::io(&a.output, "cannot write", e))?;
    write_out(
        out,
        &format!("wrote {} ({} samples)\n", a.output.display(), stacks.len()),
    )?;
    Ok(0)
}

pub fn cmd_trend(a: TrendArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let filter = Filter::new(a.select.focus.as_deref(), a.select.ignore.as_deref())?;
    let paths: Vec<&Path> = a.dumps.iter().map(PathBuf::as_path).collect();
    let loaded = load(&paths, &a.select)?;
    // Order: by `# time:` when every dump has one, else by sequence number, else as given.
    let times: Option<Vec<f64>> = loaded.profiles.iter().map(Profile::time).collect();
    let seqs: Option<Vec<f64>> = paths
        .iter()
        .map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(DumpName::parse)
                .map(|d| d.seq as f64)
        })
        .collect();
    let per_hour = times.is_some();
    let keys: Vec<f64> = times
        .or(seqs)
        .unwrap_or_else(|| (0..paths.len()).map(|i| i as f64).collect());
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by(|&x, &y| keys[x].total_cmp(&keys[y]));
    let stacks: Vec<Vec<Stack>> = (0..paths.len())
        .map(|i| selected(&loaded, i, &filter))
        .collect();
    let points: Vec<trend::Point<'_>> = order
        .iter()
        .enumerate()
        .map(|(step, &i)| trend::Point {
            time: if per_hour { keys[i] } else { step as f64 },
            stacks: &stacks[i],
        })
        .collect();
    let rows = trend::compute(
        &loaded.analysis.tables,
        &points,
        Measure::InuseSpace,
        a.rows.by,
    );
    write_out(
        out,
        &trend::to_text(
            &rows,
            a.rows.n,
            Measure::InuseSpace,
            per_hour,
            paths.len(),
            a.rows.bytes,
        ),
    )?;
    Ok(0)
}

pub fn cmd_dump(a: &DumpArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let threads = crate::sys::signal_all_threads(a.pid, a.signal)
        .map_err(|e| Error::Usage(format!("cannot signal pid {}: {e}", a.pid)))?;
    write_out(
        out,
        &format!(
            "sent signal {} to pid {} ({threads} threads); its profiler writes \
             <prof_prefix>.{}.<seq>.m<n>.heap at the next allocation\n",
            a.signal, a.pid, a.pid
        ),
    )?;
    Ok(0)
}
