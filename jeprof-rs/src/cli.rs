//! The command line: clap definitions and one function per command. Commands write their
//! output to the given writer (stdout in `main`), warnings to stderr, and return the exit code
//! or an [`Error`] that `main` prints as one line.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
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
    ///
    /// OLD and NEW must be of one kind (heap or mmap) and, unless --cross-process, of one
    /// process (from their `# kind:`/`# pid:`/`# exe:` metadata, else their file names).
    Diff(DiffArgs),
    /// Gzipped profile.proto for pprof, Pyroscope, Parca.
    Pprof(PprofArgs),
    /// Serve the newest dump of DIR over HTTP, as profile.proto for scrapers (Parca, Grafana
    /// Alloy, Pyroscope, `go tool pprof URL`).
    ///
    /// `/debug/pprof/heap`: the newest complete heap dump (`*.heap`), gzipped profile.proto
    /// with function names and build ids (what `pprof` writes); `/debug/pprof/mmap`: the
    /// newest mapping-space dump (`*.mmap.heap`); `/`: the list of dumps. Dot-files (dumps
    /// being written) are ignored, a dump that does not parse is skipped with one line on
    /// stderr and the next-newest served; 503 when there is none. Runs until killed.
    Serve(ServeArgs),
    /// One self-contained HTML file over a series of dumps: leading sites, RSS, in-use bytes
    /// over time of the top sites (one chart per process and kind), flame graph, top table.
    Report(ReportArgs),
    /// Sites whose in-use bytes keep growing across a series of dumps.
    ///
    /// The dumps are grouped by process and kind (heap, mmap), from their `# pid:`, `# exe:`
    /// and `# kind:` metadata, else their file names (`<prefix>.<pid>.<seq>.<tag>[.mmap].heap`),
    /// and each group is ordered by `# time:` (else sequence number) and reported under its own
    /// heading.
    ///
    /// A site is growing when its in-use bytes rose in at least 2/3 of the intervals (equal
    /// counts as not rising), its last value exceeds its first by more than the larger of 1% of
    /// the group's largest total and one sample period, and it never fell by more than half of
    /// that growth. Growth is shown per hour only when the dumps span at least 10 minutes;
    /// otherwise as the total growth and the span (`+12.0 MiB over 2.1 s`).
    Trend(TrendArgs),
    /// Run a command under the profiler and report what it left allocated.
    Run(RunArgs),
    /// Ask a running process (profiled by libjeprof_preload.so) to write a dump now.
    ///
    /// Sends nothing unless the process exists, is not a zombie, may be signalled and read by
    /// this user, has libjeprof_preload.so mapped, and catches the dump signal; otherwise one
    /// line says what is missing and the exit status is 1.
    Dump(DumpArgs),
    /// Switch sampling on in a process that runs the preload dormant (`prof_active:false`) or
    /// was stopped: its next allocations are sampled, at no restart.
    Start(DumpArgs),
    /// Switch sampling off (the hooks then only forward; frees of recorded blocks are still
    /// followed, and dumps still work).
    Stop(DumpArgs),
    /// Stop profiling a running process for good (until `start`): its hooks stay in place
    /// (import slots are never unpatched) but only forward from its next allocation on; what
    /// was recorded is dropped and no more dumps are written (--dump: a final one first).
    ///
    /// The same checks as `dump`; then a queued `prof_signal` carrying the request to every
    /// thread. `jeprof-rs start PID` profiles it again, with the options it had, from an empty
    /// table; `attach` to it says it was detached.
    Detach(DetachArgs),
    /// Run a diagnostic command in a running HotSpot JVM, like the JDK's jcmd (no JDK needed).
    ///
    /// Speaks the JVM's attach protocol: connects to its socket /tmp/.java_pid<PID> (seen
    /// through /proc/PID/root), first starting its attach listener with an .attach_pid<PID>
    /// file and one SIGQUIT when the socket is not there yet. Refuses, with nothing sent, a
    /// process that is not a HotSpot JVM (SIGQUIT kills most processes) or a JVM started
    /// with -XX:+DisableAttachMechanism (or -Xrs without a socket). As root, it acts as the
    /// JVM's user. Examples: `jeprof-rs jcmd 1234 VM.version`, `jeprof-rs jcmd 1234
    /// VM.native_memory summary`, `jeprof-rs jcmd 1234 help` (the commands this JVM knows).
    Jcmd(JcmdArgs),
    /// Profile a HotSpot JVM that is already running, without a restart or JVM flags.
    ///
    /// Loads libjeprof_preload.so into it as a native agent over the JVM's attach protocol
    /// (the checks and refusals of `jcmd` apply); the library points the import slots of
    /// every loaded object at the profiler's hooks. Allocations from now on are sampled (or
    /// recorded, --exact) like under LD_PRELOAD; blocks made before are unknown. Dumps go to
    /// --out: `jeprof-rs dump PID` for one now, --interval for periodic ones, and a final one
    /// when the JVM exits. `jeprof-rs stop PID` / `start PID` switch sampling off and on;
    /// `jeprof-rs detach PID` ends the profiling (the hooks then only forward).
    Attach(AttachArgs),
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
    /// Read the objects a dump names under DIR (a container's files: `/proc/<pid>/root`
    /// while it runs, or an unpacked image); an object missing there is read at its path.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
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
    /// Allow OLD and NEW to come from different processes (e.g. two runs of one program).
    /// Dumps of different kinds (heap and mmap) are never compared.
    #[arg(long)]
    pub cross_process: bool,
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
pub struct ServeArgs {
    /// Address and port to listen on (HOST:PORT; port 0 picks a free one, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:6060", value_name = "HOST:PORT")]
    pub listen: String,
    /// Directory the dumps are written to (the preload's prof_prefix directory).
    pub dir: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Dumps (grouped by process and kind like `trend`; the last of each group is detailed).
    #[arg(required = true, num_args = 1..)]
    pub dumps: Vec<PathBuf>,
    /// Output HTML file.
    #[arg(short = 'o', long = "output", value_name = "OUT.html")]
    pub output: PathBuf,
    /// Rows of the tables (each chart draws up to 8 sites, fewer when N is smaller).
    #[arg(short = 'n', long = "nodes", default_value_t = 20, value_name = "N")]
    pub n: usize,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
pub struct TrendArgs {
    /// Dumps (grouped by process and kind, each group ordered by `# time:`, else by sequence
    /// number).
    #[arg(required = true, num_args = 2..)]
    pub dumps: Vec<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print JSON: one object per group: {"pid", "exe", "kind", "dumps", "span_seconds",
    /// "intervals", "threshold_bytes", "sites_seen", "growing": [{"name", "library",
    /// "first_bytes", "last_bytes", "growth_bytes", "growth_bytes_per_hour" (null under 10
    /// minutes), "rises", "series_bytes"}]}, in an array.
    #[arg(long)]
    pub json: bool,
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
    /// Add `-XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit -XX:+PreserveFramePointer`
    /// to JAVA_TOOL_OPTIONS. Not needed by HotSpot JVMs, whose Java frames the preload crosses
    /// and names from the JVM's own metadata; for JVMs without that metadata.
    #[arg(long)]
    pub java_opts: bool,
    /// No longer needed (the JVM options are added only with `--java-opts`); accepted for
    /// scripts written before.
    #[arg(long, hide = true)]
    pub no_java_opts: bool,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Process to signal.
    pub pid: i32,
    /// Signal number the preload listens on (default: the `prof_signal` of the process's
    /// JEPROF_CONF when readable, else 41 = SIGRTMIN+7).
    #[arg(long, value_name = "N")]
    pub signal: Option<i32>,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    #[command(flatten)]
    pub target: DumpArgs,
    /// Write a final dump (<prof_prefix>.PID.<seq>.f.heap) before the recorded blocks are
    /// dropped.
    #[arg(long)]
    pub dump: bool,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The JVM's process id.
    pub pid: i32,
    /// Record every allocation (lg_prof_sample:0): exact counts.
    #[arg(long, conflicts_with = "sample")]
    pub exact: bool,
    /// Mean bytes between samples (rounded to a power of two; default 512 KiB).
    #[arg(long, value_name = "BYTES")]
    pub sample: Option<u64>,
    /// Also dump every SECS seconds (prof_interval_secs).
    #[arg(long, value_name = "SECS")]
    pub interval: Option<u64>,
    /// Directory for the dumps (default: ./jeprof-attach.<PID>); the JVM writes there.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The library to load (default: libjeprof_preload.so next to this executable).
    #[arg(long, value_name = "PATH")]
    pub preload: Option<PathBuf>,
    /// Seconds to wait for the JVM's attach socket, and for each read of its answer.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
}

#[derive(Args, Debug)]
pub struct JcmdArgs {
    /// Seconds to wait for the JVM's attach socket to appear, and for each read of its answer.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// The JVM's process id.
    pub pid: i32,
    /// Diagnostic command (e.g. VM.version, GC.heap_info, Compiler.perfmap, help).
    #[arg(value_name = "COMMAND")]
    pub command: String,
    /// Its arguments (e.g. `summary` for VM.native_memory); sent as one line with the command.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
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
        Command::Serve(a) => crate::serve::run(&a, out),
        Command::Report(a) => crate::html_report::run(&a, out),
        Command::Trend(a) => cmd_trend(a, out),
        Command::Run(a) => run::run(&a, out),
        Command::Dump(a) => cmd_dump(&a, out),
        Command::Start(a) => cmd_control(&a, true, out),
        Command::Stop(a) => cmd_control(&a, false, out),
        Command::Detach(a) => cmd_detach(&a, out),
        Command::Jcmd(a) => cmd_jcmd(&a, out),
        Command::Attach(a) => cmd_attach(&a, out),
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

/// Each dump's pid: its metadata's, else its file name's (`<prefix>.<pid>.<seq>…`).
pub fn pids_of(profiles: &[Profile], paths: &[&Path]) -> Vec<Option<u32>> {
    profiles
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
        .collect()
}

/// Read `paths`, symbolize them together, print warnings.
pub fn load(paths: &[&Path], select: &SelectArgs) -> Result<Loaded, Error> {
    let profiles = paths
        .iter()
        .map(|p| reader::read_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let pids = pids_of(&profiles, paths);
    let options = symbolize::Options {
        perf_map: select.perf_map.clone(),
        root: select.root.clone(),
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
        text.push_str(&coverage_note(&loaded.profiles[0].metadata));
        text
    };
    write_out(out, &text)?;
    Ok(0)
}

/// What a dump's samples cover when that is not "since the process started": since an attach
/// or a `jeprof-rs start` (`# sampling_since:`), and whether sampling was off at the dump.
fn coverage_note(meta: &std::collections::BTreeMap<String, String>) -> String {
    let mut note = String::new();
    if let Some(since) = meta.get("sampling_since") {
        let secs: f64 = since.parse().unwrap_or(0.0);
        let before = meta
            .get("time")
            .and_then(|t| t.parse::<f64>().ok())
            .map(|t| {
                format!(
                    ", {} before this dump",
                    crate::report::trend::duration(t - secs)
                )
            })
            .unwrap_or_default();
        note.push_str(&format!(
            "Covers allocations since sampling started (attach or `jeprof-rs start`) at unix time \
             {since}{before}; blocks allocated earlier are not in it.\n"
        ));
    }
    if meta.get("sampling").is_some_and(|v| v == "off") {
        note.push_str("Sampling was off at this dump (prof_active:false or `jeprof-rs stop`).\n");
    }
    note
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
    // The checks of `dump` (the preload mapped, the signal caught), then every thread.
    let target = crate::target::Target::check(pid)?;
    target.require_caught(sig, "prof_trim_signal")?;
    let before = status_kb(pid, "VmRSS:")?;
    let threads = target.signal_all_threads(sig)?;
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
    let old = Origin::of(&loaded.profiles[0], &a.old);
    let new = Origin::of(&loaded.profiles[1], &a.new);
    if old.kind != new.kind {
        return Err(Error::Usage(format!(
            "diff: {} is a {} dump and {} a {} dump; compare two dumps of one kind",
            a.old.display(),
            old.kind,
            a.new.display(),
            new.kind
        )));
    }
    let other = old.pid.is_some() && new.pid.is_some() && old.pid != new.pid
        || old.exe.is_some() && new.exe.is_some() && old.exe != new.exe;
    if other && !a.cross_process {
        return Err(Error::Usage(format!(
            "diff: {} is from {} and {} from {}; pass --cross-process to compare two processes",
            a.old.display(),
            old.process(),
            a.new.display(),
            new.process()
        )));
    }
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

/// Where a dump comes from: its process and its kind, from its metadata (`# pid:`, `# exe:`,
/// `# kind:`), else from its file name (`<prefix>.<pid>.<seq>.<tag>[.mmap].heap`; jemalloc's
/// and gperftools' dumps have no metadata).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// `heap` or `mmap`.
    pub kind: String,
}

impl Origin {
    pub fn of(profile: &Profile, path: &Path) -> Origin {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(DumpName::parse);
        let kind = match profile.metadata.get("kind").map(|k| k.trim()) {
            Some(k) if !k.is_empty() => k.to_string(),
            _ if name.as_ref().is_some_and(|n| n.mmap) => "mmap".to_string(),
            _ => "heap".to_string(),
        };
        Origin {
            pid: profile.pid().or(name.map(|n| n.pid)),
            exe: profile
                .metadata
                .get("exe")
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty()),
            kind,
        }
    }

    /// `pid 1234 (/usr/bin/app)`, `pid 1234`, `an unknown process`.
    pub fn process(&self) -> String {
        match (self.pid, &self.exe) {
            (Some(p), Some(e)) => format!("pid {p} ({e})"),
            (Some(p), None) => format!("pid {p}"),
            (None, Some(e)) => format!("an unknown pid ({e})"),
            (None, None) => "an unknown process".to_string(),
        }
    }
}

/// Sequence number from the file name, when it follows the naming convention.
fn seq_of(path: &Path) -> Option<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(DumpName::parse)
        .map(|d| d.seq)
}

/// Indices of `paths` grouped by origin (sorted), each group in time order: by `# time:` when
/// every dump of the group has one, else by sequence number when every name has one, else as
/// given.
pub fn series(profiles: &[Profile], paths: &[&Path]) -> Vec<(Origin, Vec<usize>)> {
    let mut groups: std::collections::BTreeMap<Origin, Vec<usize>> = Default::default();
    for (i, (p, path)) in profiles.iter().zip(paths).enumerate() {
        groups.entry(Origin::of(p, path)).or_default().push(i);
    }
    groups
        .into_iter()
        .map(|(origin, mut members)| {
            let times: Option<Vec<f64>> = members.iter().map(|&i| profiles[i].time()).collect();
            let seqs: Option<Vec<u64>> = members.iter().map(|&i| seq_of(paths[i])).collect();
            let order: Vec<usize> = (0..members.len()).collect();
            let mut order = order;
            match (times, seqs) {
                (Some(t), seqs) => order.sort_by(|&a, &b| {
                    t[a].total_cmp(&t[b]).then_with(|| {
                        seqs.as_ref()
                            .map_or(std::cmp::Ordering::Equal, |s| s[a].cmp(&s[b]))
                    })
                }),
                (None, Some(s)) => order.sort_by_key(|&a| s[a]),
                (None, None) => {}
            }
            members = order.iter().map(|&k| members[k]).collect();
            (origin, members)
        })
        .collect()
}

pub fn cmd_trend(a: TrendArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let filter = Filter::new(a.select.focus.as_deref(), a.select.ignore.as_deref())?;
    let paths: Vec<&Path> = a.dumps.iter().map(PathBuf::as_path).collect();
    let loaded = load(&paths, &a.select)?;
    let stacks: Vec<Vec<Stack>> = (0..paths.len())
        .map(|i| selected(&loaded, i, &filter))
        .collect();
    let measure = Measure::InuseSpace;
    let mut text = String::new();
    let mut json = Vec::new();
    for (origin, members) in series(&loaded.profiles, &paths) {
        let points: Vec<trend::Point<'_>> = members
            .iter()
            .map(|&i| trend::Point {
                time: loaded.profiles[i].time(),
                period: loaded.profiles[i].period as f64,
                stacks: &stacks[i],
            })
            .collect();
        let t = trend::compute(&loaded.analysis.tables, &points, measure, a.rows.by);
        if a.json {
            json.push(trend_json(&origin, &members, &paths, &t, a.rows.n));
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        let span = match t.span {
            Some(s) => format!(" over {}", trend::duration(s)),
            None => String::new(),
        };
        text.push_str(&format!(
            "== {}, {} dumps: {}{span}\n",
            origin.process(),
            origin.kind,
            members.len()
        ));
        if members.len() < 2 {
            text.push_str("one dump: nothing to compare\n");
            continue;
        }
        text.push_str(&t.to_text(a.rows.n, measure, a.rows.bytes));
    }
    if a.json {
        text = serde_json::to_string(&json).map_err(|e| Error::Usage(format!("json: {e}")))?;
        text.push('\n');
    }
    write_out(out, &text)?;
    Ok(0)
}

fn trend_json(
    origin: &Origin,
    members: &[usize],
    paths: &[&Path],
    t: &trend::Trend,
    limit: usize,
) -> serde_json::Value {
    let sites: Vec<serde_json::Value> = t
        .rows
        .iter()
        .take(limit)
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "library": r.library,
                "first_bytes": r.first,
                "last_bytes": r.last,
                "growth_bytes": r.growth,
                "growth_bytes_per_hour": t.per_hour(r.growth),
                "rises": r.rises,
                "series_bytes": r.series,
            })
        })
        .collect();
    serde_json::json!({
        "pid": origin.pid,
        "exe": origin.exe,
        "kind": origin.kind,
        "dumps": members.iter().map(|&i| paths[i].display().to_string()).collect::<Vec<_>>(),
        "span_seconds": t.span,
        "intervals": t.dumps.saturating_sub(1),
        "threshold_bytes": t.threshold,
        "sites_seen": t.sites,
        "growing": sites,
    })
}

/// `start` / `stop`: the same checks as `dump`, then a queued `prof_signal` carrying the
/// request to every thread.
pub fn cmd_control(a: &DumpArgs, on: bool, out: &mut dyn Write) -> Result<i32, Error> {
    use crate::target::{CONTROL_START, CONTROL_STOP};
    let target = crate::target::Target::check(a.pid)?;
    let signal = target.dump_signal(a.signal)?;
    let value = if on { CONTROL_START } else { CONTROL_STOP };
    let threads = target.queue_all_threads(signal, value)?;
    let what = if on {
        "sampling is on; its dumps say since when (# sampling_since)"
    } else {
        "sampling is off (dumps still work and show what was recorded)"
    };
    write_out(
        out,
        &format!(
            "pid {} ({}, {threads} threads): {what}\n",
            a.pid, target.name
        ),
    )?;
    Ok(0)
}

/// `detach`: the same checks as `stop`, then the request queued to every thread.
pub fn cmd_detach(a: &DetachArgs, out: &mut dyn Write) -> Result<i32, Error> {
    use crate::target::{CONTROL_DETACH, CONTROL_DETACH_DUMP};
    let pid = a.target.pid;
    let target = crate::target::Target::check(pid)?;
    let signal = target.dump_signal(a.target.signal)?;
    let value = if a.dump {
        CONTROL_DETACH_DUMP
    } else {
        CONTROL_DETACH
    };
    let threads = target.queue_all_threads(signal, value)?;
    let dump = if a.dump {
        format!(", after a final dump <prof_prefix>.{pid}.<seq>.f.heap")
    } else {
        String::new()
    };
    write_out(
        out,
        &format!(
            "pid {pid} ({}, {threads} threads): detaching at its next allocation{dump}: recording \
             stops, what was recorded is dropped, and its hooks only forward from then on (they \
             stay in place); `jeprof-rs start {pid}` profiles it again\n",
            target.name
        ),
    )?;
    Ok(0)
}

pub fn cmd_dump(a: &DumpArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let target = crate::target::Target::check(a.pid)?;
    let signal = target.dump_signal(a.signal)?;
    let threads = target.signal_all_threads(signal)?;
    write_out(
        out,
        &format!(
            "sent signal {} to pid {} ({}, {threads} threads); its profiler writes \
             <prof_prefix>.{}.<seq>.m<n>.heap at the next allocation\n",
            signal, a.pid, target.name, a.pid
        ),
    )?;
    // A JVM needs no perf map (the dump names its Java frames, `# java_method`), but an idle
    // one may not allocate for a long time: a harmless command over its attach socket makes
    // its attach listener allocate, and so write the dump now.
    if target.jvm {
        // Short: the dump is requested already; this only hurries an idle JVM.
        let opts = crate::attach::Options {
            timeout: std::time::Duration::from_secs(2),
        };
        if crate::attach::jcmd(a.pid, &["VM.version".to_string()], &opts).is_ok() {
            write_out(
                out,
                "and asked the JVM for its version, so that it allocates (and dumps) now\n",
            )?;
        }
    }
    Ok(0)
}

/// The preload's `Agent_OnAttach` return codes besides 0 (its `attach::ALREADY_PROFILED`,
/// `attach::CANNOT_START` and `attach::DETACHED`).
const AGENT_ALREADY_PROFILED: i32 = 200;
const AGENT_CANNOT_START: i32 = 201;
const AGENT_DETACHED: i32 = 202;

pub fn cmd_attach(a: &AttachArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 86_400.0) {
        return Err(Error::Usage(format!(
            "--timeout must be between 0 and 86400 seconds, not {}",
            a.timeout
        )));
    }
    let pid = a.pid;
    let preload = crate::run::find_preload(a.preload.as_deref())?;
    let preload = std::path::absolute(&preload).map_err(|e| Error::Io {
        file: preload.clone(),
        what: "cannot resolve",
        error: e,
    })?;
    // Paths are opened by the JVM, in its own mount namespace: in a container (another root
    // directory) the library and the dump directory are put inside it.
    let same_root = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let container = matches!(
        (same_root("/"), same_root(&format!("/proc/{pid}/root"))),
        (Ok(ours), Ok(theirs)) if ours != theirs
    );
    let (preload, dir, shown) = if container {
        in_container(pid, &preload, a.out.as_deref())?
    } else {
        let dir = match &a.out {
            Some(d) => d.clone(),
            None => PathBuf::from(format!("jeprof-attach.{pid}")),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            file: dir.clone(),
            what: "cannot create the dump directory",
            error: e,
        })?;
        let dir = std::fs::canonicalize(&dir).map_err(|e| Error::Io {
            file: dir.clone(),
            what: "cannot resolve",
            error: e,
        })?;
        hand_dir_to(pid, &dir)?;
        (preload, dir.clone(), dir)
    };
    let mut conf = format!("prof_prefix:{}/jeprof", dir.display());
    if a.exact {
        conf.push_str(",lg_prof_sample:0");
    } else if let Some(bytes) = a.sample {
        conf.push_str(&format!(
            ",lg_prof_sample:{}",
            crate::run::lg_sample(bytes)?
        ));
    }
    if let Some(secs) = a.interval {
        conf.push_str(&format!(",prof_interval_secs:{secs}"));
    }
    if conf.contains(' ') {
        return Err(Error::Usage(format!(
            "{}: the dump directory's path may not contain spaces (the JVM splits agent \
             options at them)",
            dir.display()
        )));
    }
    let opts = crate::attach::Options {
        timeout: std::time::Duration::from_secs_f64(a.timeout),
    };
    match crate::attach::load_agent(pid, &preload, Some(&conf), &opts)? {
        0 => {
            let mode = if a.exact {
                "every allocation (exact)".to_string()
            } else {
                format!(
                    "allocations sampled every ~{} on average",
                    crate::humanize::bytes(
                        (1u64 << crate::run::lg_sample(a.sample.unwrap_or(1 << 19))?) as f64
                    )
                )
            };
            write_out(
                out,
                &format!(
                    "attached to pid {pid}: {mode} from now on (blocks made before are not \
                     known); dumps go to {}/jeprof.<pid>.<seq>.<tag>.heap: `jeprof-rs dump \
                     {pid}` writes one now{}, and the JVM writes the final one when it exits\n",
                    shown.display(),
                    a.interval
                        .map(|s| format!(", one every {s} s"))
                        .unwrap_or_default()
                ),
            )?;
            Ok(0)
        }
        AGENT_ALREADY_PROFILED => Err(Error::Target(format!(
            "pid {pid} is profiled already (attached before, or started with the preload); \
             nothing changed"
        ))),
        AGENT_DETACHED => Err(Error::Target(format!(
            "pid {pid} was profiled and then detached: `jeprof-rs start {pid}` profiles it again, \
             with the options it had; nothing changed"
        ))),
        AGENT_CANNOT_START => Err(Error::Target(format!(
            "pid {pid}: the profiler loaded but could not start (its reason is on the JVM's \
             stderr)"
        ))),
        rc => Err(Error::Target(format!(
            "pid {pid}: {} answered the attach with {rc}: is it another version of the library?",
            preload.display()
        ))),
    }
}

/// A JVM in a container: the library is copied into it (`/tmp/.jeprof-<hash>/`, never
/// rewritten once there: a JVM may have it mapped) and the dump directory is a path inside it
/// (`--out`, absolute, default `/tmp/jeprof-attach.<pid inside>`), both made through its root
/// directory with links resolved inside it, and owned by the JVM's user when we are root.
/// Returns the library and directory as the JVM sees them, and the directory as we see it.
fn in_container(
    pid: i32,
    preload: &Path,
    out: Option<&Path>,
) -> Result<(PathBuf, PathBuf, PathBuf), Error> {
    // The checks first: nothing is put into a process that is no JVM we may attach to.
    let target = crate::attach::check(pid)?;
    let inside = match out {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => {
            return Err(Error::Usage(format!(
                "pid {pid} runs in a container: --out is a directory inside it and must be \
                 absolute, not {}",
                d.display()
            )));
        }
        None => PathBuf::from(format!("/tmp/jeprof-attach.{}", target.nspid)),
    };
    let owner = (crate::attach::effective_ids().0 == 0).then_some((target.euid, target.egid));
    let io = |file: &Path, what: &'static str| {
        let file = PathBuf::from(format!("/proc/{pid}/root{}", file.display()));
        move |error| Error::Io { file, what, error }
    };
    let bytes = std::fs::read(preload).map_err(|error| Error::Io {
        file: preload.to_path_buf(),
        what: "cannot read",
        error,
    })?;
    // FNV-1a: a name per build of the library.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let lib_dir = PathBuf::from(format!("/tmp/.jeprof-{hash:016x}"));
    let lib = lib_dir.join(crate::run::PRELOAD_NAME);
    let root = crate::sys::InRoot::open(pid).map_err(io(Path::new("/"), "cannot open"))?;
    // Root's when we are root (the JVM only reads it; its user must not be able to swap the
    // library another attach in the same container loads).
    root.create_dir_all(&lib_dir, 0o755, None)
        .map_err(io(&lib_dir, "cannot create"))?;
    root.put_file(&lib, &bytes)
        .map_err(io(&lib, "cannot put the library at"))?;
    root.create_dir_all(&inside, 0o700, owner)
        .map_err(io(&inside, "cannot create the dump directory"))?;
    let shown = PathBuf::from(format!("/proc/{pid}/root{}", inside.display()));
    Ok((lib, inside, shown))
}

/// As root, the JVM (another user) writes the dumps: the directory becomes its user's.
fn hand_dir_to(pid: i32, dir: &Path) -> Result<(), Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let effective = |key: &str| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let (Some(uid), Some(gid)) = (effective("Uid:"), effective("Gid:")) else {
        return Ok(()); // the attach itself will say what is wrong with the pid
    };
    let meta = std::fs::metadata(dir).map_err(|e| Error::Io {
        file: dir.to_path_buf(),
        what: "cannot read",
        error: e,
    })?;
    if meta.uid() != uid && crate::attach::effective_ids().0 == 0 {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| Error::Io {
            file: dir.to_path_buf(),
            what: "cannot hand the dump directory to the JVM's user",
            error: e,
        })?;
    }
    Ok(())
}

pub fn cmd_jcmd(a: &JcmdArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 86_400.0) {
        return Err(Error::Usage(format!(
            "--timeout must be between 0 and 86400 seconds, not {}",
            a.timeout
        )));
    }
    let opts = crate::attach::Options {
        timeout: std::time::Duration::from_secs_f64(a.timeout),
    };
    let mut command = vec![a.command.clone()];
    command.extend(a.args.iter().cloned());
    let mut text = crate::attach::jcmd(a.pid, &command, &opts)?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    write_out(out, &text)?;
    Ok(0)
}
