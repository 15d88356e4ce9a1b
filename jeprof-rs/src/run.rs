//! `run`: start a command with the preload, wait, then report the dumps it wrote.
//!
//! Environment given to the command: `LD_PRELOAD` (ours appended to any existing value),
//! `JEPROF_CONF=prof_prefix:<DIR>/jeprof[,lg_prof_sample:N][,prof_mmap:false]
//! [,prof_interval_secs:N][,--conf entries]` (after any `JEPROF_CONF` already set, so ours
//! wins), and with `--java-opts` `JAVA_TOOL_OPTIONS` with the perf-map and frame-pointer options
//! appended (HotSpot JVMs need neither: the preload walks and names their Java frames from the
//! JVM's own metadata). While the command runs we ignore SIGINT/SIGQUIT,
//! as `system(3)` does, so Ctrl-C stops the command and the report still prints. The exit
//! code is the command's (128 + signal when it was killed, 127 when it could not start).

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::{RunArgs, SelectArgs};
use crate::error::Error;
use crate::measure::Measure;
use crate::profile::DumpName;
use crate::report::top::{self, By};
use crate::report::{leading, rss};

/// The preload's file name.
pub use crate::target::PRELOAD_NAME;

/// `--preload`, else the library next to this executable.
pub fn find_preload(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = explicit {
        if p.is_file() {
            return std::path::absolute(p).map_err(|e| Error::io(p, "cannot resolve path", e));
        }
        return Err(Error::File {
            file: p.to_path_buf(),
            message: "preload library not found".into(),
        });
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::io(Path::new("jeprof-rs"), "cannot find own executable", e))?;
    let beside = exe.parent().map(|d| d.join(PRELOAD_NAME));
    match beside {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(Error::Usage(format!(
            "cannot find {PRELOAD_NAME} next to {}; build it (cargo build --release) or pass --preload PATH",
            exe.display()
        ))),
    }
}

/// `lg_prof_sample` for a mean sample interval of `bytes`: log2 rounded to the nearest integer.
pub fn lg_sample(bytes: u64) -> Result<u32, Error> {
    if bytes == 0 {
        return Err(Error::Usage("--sample must be at least 1 byte".into()));
    }
    Ok((bytes as f64).log2().round() as u32)
}

/// The `JEPROF_CONF` value for these options.
pub fn conf(args: &RunArgs, dir: &Path) -> Result<String, Error> {
    let mut conf = format!("prof_prefix:{}/jeprof", dir.display());
    if args.exact {
        conf.push_str(",lg_prof_sample:0");
    } else if let Some(bytes) = args.sample {
        conf.push_str(&format!(",lg_prof_sample:{}", lg_sample(bytes)?));
    }
    if args.no_mmap {
        conf.push_str(",prof_mmap:false");
    }
    if let Some(secs) = args.interval {
        conf.push_str(&format!(",prof_interval_secs:{secs}"));
    }
    if let Some(extra) = args.conf.as_deref().filter(|c| !c.is_empty()) {
        conf.push(',');
        conf.push_str(extra);
    }
    Ok(conf)
}

/// JVM options for `--java-opts`: a perf map of compiled code written at exit (the analyzer
/// reads `/tmp/perf-<pid>.map`), and frame pointers kept in compiled code, for JVMs whose
/// metadata the preload cannot read.
pub const JAVA_OPTS: &str =
    "-XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit -XX:+PreserveFramePointer";

/// `JAVA_TOOL_OPTIONS` for the command: ours appended to any existing value.
pub fn java_tool_options(existing: Option<&str>) -> String {
    match existing.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => format!("{e} {JAVA_OPTS}"),
        None => JAVA_OPTS.to_string(),
    }
}

fn default_out_dir() -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut dir = PathBuf::from(format!("jeprof-out.{now}"));
    let mut n = 1;
    while dir.exists() {
        dir = PathBuf::from(format!("jeprof-out.{now}.{n}"));
        n += 1;
    }
    dir
}

/// Dumps `jeprof.<pid>.<seq>.<tag>[.mmap].heap` in `dir`, sorted by pid, seq, tag.
pub fn list_dumps(dir: &Path) -> Vec<(DumpName, PathBuf)> {
    let mut dumps: Vec<(DumpName, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let parsed = DumpName::parse(&name).filter(|d| d.prefix == "jeprof")?;
            Some((parsed, e.path()))
        })
        .collect();
    dumps.sort_by(|a, b| {
        (a.0.pid, a.0.seq, &a.0.tag, a.0.mmap).cmp(&(b.0.pid, b.0.seq, &b.0.tag, b.0.mmap))
    });
    dumps
}

/// The dump to report for `pid`: its final dump if any, else its latest.
pub fn pick(dumps: &[(DumpName, PathBuf)], pid: u32, mmap: bool) -> Option<&PathBuf> {
    let mine = dumps.iter().filter(|(d, _)| d.pid == pid && d.mmap == mmap);
    mine.clone()
        .rfind(|(d, _)| d.tag == "f")
        .or_else(|| mine.clone().next_back())
        .map(|(_, p)| p)
}

/// Whether `path` is a regular file with an execute bit.
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The file `program` names, found the way a shell finds it: as given when it contains a
/// `/`, else in the directories of `PATH`. Errors like a shell's: not found (127), found but
/// not executable (126).
pub fn resolve_command(program: &str) -> Result<PathBuf, Error> {
    let not_runnable = |message: &'static str, code: i32| Error::Command {
        command: program.to_string(),
        message,
        code,
    };
    if program.is_empty() {
        return Err(not_runnable("command not found", 127));
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        return match std::fs::metadata(&path) {
            Err(_) => Err(not_runnable("no such file", 127)),
            Ok(m) if m.is_dir() => Err(not_runnable("is a directory", 126)),
            Ok(_) if !executable(&path) => {
                Err(not_runnable("permission denied (not executable)", 126))
            }
            Ok(_) => Ok(path),
        };
    }
    let path_var =
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found_not_executable = false;
    for dir in std::env::split_paths(&path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
        found_not_executable |= candidate.is_file();
    }
    if found_not_executable {
        Err(not_runnable("permission denied (not executable)", 126))
    } else {
        Err(not_runnable("command not found", 127))
    }
}

/// `SIGKILL`, `SIGSEGV`, ..., `SIGRTMIN+7`; `signal N` for numbers without a name.
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    match signal {
        1..=31 => format!("SIG{}", NAMES[signal as usize - 1]),
        // glibc's SIGRTMIN is 34 (32 and 33 are NPTL's own).
        34 => "SIGRTMIN".to_string(),
        35..=64 => format!("SIGRTMIN+{}", signal - 34),
        _ => format!("signal {signal}"),
    }
}

/// Whether the ELF executable at `path` is statically linked: it has no `PT_INTERP`, so no
/// dynamic loader runs and `LD_PRELOAD` is never read. `None` when it cannot be read or is not
/// an ELF file (a script: its interpreter is what runs).
pub fn statically_linked(path: &Path) -> Option<bool> {
    use object::elf::{FileHeader64, PT_INTERP};
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = crate::sys::map_file(path).ok()?;
    let data: &[u8] = &data;
    let header = FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.program_headers(endian, data).ok()?;
    Some(!headers.iter().any(|h| h.p_type(endian) == PT_INTERP))
}

/// Why `program` (`path`) left no dump of its own, in one line.
fn no_dump_reason(program: &str, path: &Path, signal: Option<i32>, pid: u32, dir: &Path) -> String {
    if let Some(s) = signal {
        return format!(
            "jeprof-rs: {program} was killed by {} before it could write its final dump; \
             use --interval SECS for long-running programs\n",
            signal_name(s)
        );
    }
    if statically_linked(path) == Some(true) {
        return format!(
            "jeprof-rs: {program} is statically linked: LD_PRELOAD cannot load into it, so \
             nothing was profiled\n"
        );
    }
    format!(
        "jeprof-rs: no dump from pid {pid} in {}: {program} ended without writing one (it may \
         have left through _exit, or the profiler did not start: see any `<jeprof>` line on its \
         stderr)\n",
        dir.display()
    )
}

pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::Usage("run: no command given".into()))?;
    // Before anything is created: a command that cannot run leaves no directory behind.
    let path = resolve_command(program)?;
    let preload = find_preload(args.preload.as_deref())?;
    let dir = args.out.clone().unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(&dir, "cannot create output directory", e))?;
    let dir = std::path::absolute(&dir).map_err(|e| Error::io(&dir, "cannot resolve path", e))?;
    let mut conf = conf(args, &dir)?;
    if let Some(existing) = std::env::var_os("JEPROF_CONF").filter(|v| !v.is_empty()) {
        conf = format!("{},{conf}", existing.to_string_lossy());
    }
    let mut ld_preload = preload.as_os_str().to_os_string();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        let mut joined = existing;
        joined.push(":");
        joined.push(&ld_preload);
        ld_preload = joined;
    }
    let mut command = Command::new(&path);
    command
        .arg0(program)
        .args(rest)
        .env("LD_PRELOAD", &ld_preload)
        .env("JEPROF_CONF", &conf);
    if args.java_opts {
        let existing = std::env::var("JAVA_TOOL_OPTIONS").ok();
        command.env("JAVA_TOOL_OPTIONS", java_tool_options(existing.as_deref()));
    }
    let mut child = command.spawn().map_err(|error| {
        // A directory we created and nothing wrote to goes again (remove_dir keeps a full one).
        if args.out.is_none() {
            let _ = std::fs::remove_dir(&dir);
        }
        Error::Spawn {
            command: program.clone(),
            error,
        }
    })?;
    let pid = child.id();
    crate::sys::ignore_terminal_signals();
    let status = child.wait();
    crate::sys::default_terminal_signals();
    let status = status.map_err(|error| Error::Spawn {
        command: program.clone(),
        error,
    })?;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    };

    let dumps = list_dumps(&dir);
    // The report goes to our stdout (the command's own stdout and stderr were inherited).
    let mut write_error = None;
    let mut say = |s: String| {
        if write_error.is_none()
            && let Err(e) = out.write_all(s.as_bytes())
        {
            write_error = Some(e);
        }
    };
    say(format!(
        "jeprof-rs: {program} (pid {pid}) exited with status {code}; dumps in {}\n",
        dir.display()
    ));
    // The command's own dumps; other processes (forked children, programs it ran, shell
    // wrappers' subshells) are listed when few, counted when many.
    let (mine, others): (Vec<_>, Vec<_>) = dumps.iter().partition(|(d, _)| d.pid == pid);
    for (_, p) in &mine {
        say(format!("  {}\n", p.display()));
    }
    let mut other_pids: Vec<u32> = others.iter().map(|(d, _)| d.pid).collect();
    other_pids.dedup();
    if others.len() <= 4 {
        for (_, p) in &others {
            say(format!(
                "  {} (another process, e.g. a forked child)\n",
                p.display()
            ));
        }
    } else {
        say(format!(
            "  and {} dumps from {} other processes (forked children or programs it ran)\n",
            others.len(),
            other_pids.len()
        ));
    }
    let Some(heap) = pick(&dumps, pid, false) else {
        say(no_dump_reason(program, &path, status.signal(), pid, &dir));
        return finish(code, write_error);
    };
    if let Some(s) = status.signal()
        && !heap.to_string_lossy().ends_with(".f.heap")
    {
        say(format!(
            "jeprof-rs: {program} was killed by {}: its last dump below is not a final one\n",
            signal_name(s)
        ));
    }
    let when = match heap
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(DumpName::parse)
    {
        Some(d) if d.tag != "f" => "at its last dump",
        _ => "at exit",
    };
    match report(heap, pick(&dumps, pid, true), args, when) {
        Ok(r) => say(r),
        Err(e) => eprintln!("jeprof-rs: {e}"),
    }
    finish(code, write_error)
}

/// The command's exit code, unless the report could not be written.
fn finish(code: i32, write_error: Option<std::io::Error>) -> Result<i32, Error> {
    match write_error {
        Some(e) => Err(Error::io(Path::new("<stdout>"), "cannot write", e)),
        None => Ok(code),
    }
}

/// The report of a heap dump and its mmap sibling: first the leading sites and the RSS in a
/// few lines, then the full tables.
fn report(
    heap: &Path,
    mmap: Option<&PathBuf>,
    args: &RunArgs,
    when: &str,
) -> Result<String, Error> {
    let select = SelectArgs::default();
    let mut paths = vec![heap];
    paths.extend(mmap.map(PathBuf::as_path));
    let loaded = crate::cli::load(&paths, &select)?;
    let tables = &loaded.analysis.tables;
    let stacks = &loaded.analysis.stacks[0];
    let t = top::compute(tables, stacks, Measure::InuseSpace, By::Function);
    let mut text = String::new();
    text.push_str(&format!("\nIn use {when} ({}):\n", heap.display()));
    let sites = leading::compute(tables, stacks);
    text.push_str(&leading::to_text(&sites, 5, t.total_bytes, false));
    match crate::cli::rss_of(&loaded, mmap.map(|_| 1)) {
        Ok(r) => {
            text.push_str(&rss::summary(&r));
            text.push_str(&format!(
                "  (jeprof-rs rss {} explains every row)\n",
                heap.display()
            ));
        }
        Err(why) => text.push_str(&format!("(no RSS breakdown: {why})\n")),
    }
    text.push_str(&format!("\nheap in use {when} ({}):\n", heap.display()));
    text.push_str(&top::to_text(&t, args.n, false));
    let mem = crate::report::memory::Memory::from_metadata(&loaded.profiles[0].metadata);
    text.push_str(&crate::report::memory::summary(&mem, t.total_bytes));
    if let Some(mmap) = mmap {
        let mstacks = &loaded.analysis.stacks[1];
        if !mstacks.is_empty() {
            let mt = top::compute(tables, mstacks, Measure::InuseSpace, By::Function);
            let resident = resident_rows(&loaded, 1);
            text.push_str(&format!(
                "\nmappings {when}, mapped and resident ({}):\n",
                mmap.display()
            ));
            text.push_str(&top::to_text_with(&mt, args.n, false, resident.as_ref()));
        }
    }
    Ok(text)
}

/// Resident bytes by row of profile `i` (a mappings profile), when it records them.
fn resident_rows(loaded: &crate::cli::Loaded, i: usize) -> Option<top::Resident> {
    let stacks = crate::cli::resident_stacks(loaded, i)?;
    Some(top::resident_rows(
        &loaded.analysis.tables,
        &stacks,
        By::Function,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_options_append() {
        assert_eq!(java_tool_options(None), JAVA_OPTS);
        assert_eq!(java_tool_options(Some("  ")), JAVA_OPTS);
        assert_eq!(
            java_tool_options(Some("-Xmx1g")),
            format!("-Xmx1g {JAVA_OPTS}")
        );
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(41), "SIGRTMIN+7");
        assert_eq!(signal_name(32), "signal 32");
    }

    #[test]
    fn dynamic_and_not_elf() {
        let me = std::env::current_exe().unwrap();
        assert_eq!(statically_linked(&me), Some(false));
        assert_eq!(statically_linked(Path::new("/etc/passwd")), None);
        assert_eq!(statically_linked(Path::new("/nonexistent")), None);
    }

    #[test]
    fn commands_resolve_like_a_shell() {
        assert!(resolve_command("sh").unwrap().is_absolute());
        let code = |c: &str| resolve_command(c).unwrap_err().exit_code();
        assert_eq!(code("/nonexistent"), 127);
        assert_eq!(code("no-such-command-jeprof"), 127);
        assert_eq!(code("/etc/passwd"), 126);
        assert_eq!(code("/"), 126);
        assert_eq!(code(""), 127);
    }

    #[test]
    fn sample_rounding() {
        assert_eq!(lg_sample(1).unwrap(), 0);
        assert_eq!(lg_sample(524288).unwrap(), 19);
        assert_eq!(lg_sample(1000).unwrap(), 10);
        assert_eq!(lg_sample(3000).unwrap(), 12);
        assert!(lg_sample(0).is_err());
    }

    #[test]
    fn picks_final_dump_of_pid() {
        let mk = |n: &str| (DumpName::parse(n).unwrap(), PathBuf::from(n));
        let dumps = vec![
            mk("jeprof.10.0.i0.heap"),
            mk("jeprof.10.1.f.heap"),
            mk("jeprof.10.1.f.mmap.heap"),
            mk("jeprof.11.0.f.heap"),
            mk("jeprof.12.3.m1.heap"),
        ];
        assert_eq!(
            pick(&dumps, 10, false),
            Some(&PathBuf::from("jeprof.10.1.f.heap"))
        );
        assert_eq!(
            pick(&dumps, 10, true),
            Some(&PathBuf::from("jeprof.10.1.f.mmap.heap"))
        );
        assert_eq!(
            pick(&dumps, 12, false),
            Some(&PathBuf::from("jeprof.12.3.m1.heap"))
        );
        assert_eq!(pick(&dumps, 13, false), None);
    }
}
