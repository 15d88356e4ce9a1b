//! `JEPROF_CONF`: jemalloc's `MALLOC_CONF` syntax (`key:value,key:value`), jemalloc's key
//! names where they exist, plus our own keys. Parsing is pure and allocation-free; problems
//! are reported through a callback (one stderr line each) and the remaining keys still apply.

pub const PREFIX_MAX: usize = 480;

/// Largest accepted `lg_prof_sample`. Above 2^40 bytes between samples nothing is ever sampled;
/// the bound also keeps the fixed-point object weights far from overflow.
pub const LG_SAMPLE_MAX: u32 = 40;

#[derive(Clone, Copy)]
pub struct Config {
    /// `prof`: profiling on at all (default true; `prof:false` makes the preload inert).
    pub enabled: bool,
    /// `prof_prefix`: path prefix of dump files (default `jeprof`, i.e. the working directory).
    pub prefix: [u8; PREFIX_MAX],
    pub prefix_len: usize,
    /// `lg_prof_sample`: mean bytes between samples is 2^this; 0 records every allocation.
    pub lg_sample: u32,
    /// `prof_final`: dump at exit.
    pub final_dump: bool,
    /// `lg_prof_interval`: dump each time 2^this more bytes were allocated; -1 = off.
    pub lg_interval: i32,
    /// `prof_gdump`: dump at each new high-water mark of sampled in-use bytes.
    pub gdump: bool,
    /// `prof_leak`: one stderr line at exit summarizing what is still in use.
    pub leak: bool,
    /// `prof_mmap` (ours): track mmap/munmap/mremap and write the `.mmap.heap` sibling.
    pub mmap: bool,
    /// `prof_max_depth` (ours): frames kept per stack.
    pub max_depth: usize,
    /// `prof_interval_secs` (ours): dump every N seconds (0 = off).
    pub interval_secs: u64,
    /// `prof_unwinder` (ours): `auto` (our DWARF CFI unwinder where available, else libgcc's)
    /// or `libgcc` (always libgcc's `_Unwind_Backtrace`: the reference, and a way out).
    pub libgcc_unwinder: bool,
    /// `prof_java` (ours): cross and name HotSpot's Java frames from the JVM's own metadata
    /// (`hotspot.rs`); `false` crosses JIT code with frame pointers only, as without a JVM.
    pub java: bool,
    /// `prof_signal` (ours): signal number that requests a dump (0 = none). The default,
    /// 41 (SIGRTMIN+7 on glibc), is used by neither glibc nor HotSpot; the handler is only
    /// installed if the program has none for it.
    pub signal: i32,
    /// `prof_active` (jemalloc's name): sample from the start. `false` starts dormant: the
    /// hooks are in place but nothing is sampled until `jeprof-rs start PID` (a queued
    /// `prof_signal` carrying `CONTROL_START`), at the cost of the interposition alone.
    pub active: bool,
    /// `prof_trim_signal` (ours): signal number that asks the profiler to return free memory
    /// to the system (glibc's `malloc_trim(0)`) at the next allocation of the signalled thread
    /// (0 = none). Default 42 (SIGRTMIN+8), the dump signal's neighbour; installed only if the
    /// program has no handler for it.
    pub trim_signal: i32,
}

/// Values a control request carries in a queued `prof_signal` (`sigqueue`), beside plain
/// signals, which request a dump. ("jp" and a number, so that a stray value is no request.)
/// `start`/`stop` switch sampling on and off; `detach` (with or without a final dump first)
/// stops recording for good, until a `start`: the hooks then only forward (`profiler.rs`).
pub const CONTROL_START: i32 = 0x6a70_0001;
pub const CONTROL_STOP: i32 = 0x6a70_0002;
pub const CONTROL_DETACH: i32 = 0x6a70_0003;
pub const CONTROL_DETACH_DUMP: i32 = 0x6a70_0004;

pub const MAX_DEPTH_LIMIT: usize = 256;

impl Config {
    pub const fn default() -> Self {
        let mut prefix = [0u8; PREFIX_MAX];
        prefix[0] = b'j';
        prefix[1] = b'e';
        prefix[2] = b'p';
        prefix[3] = b'r';
        prefix[4] = b'o';
        prefix[5] = b'f';
        Config {
            enabled: true,
            prefix,
            prefix_len: 6,
            lg_sample: 19,
            final_dump: true,
            lg_interval: -1,
            gdump: false,
            leak: false,
            mmap: true,
            max_depth: 128,
            interval_secs: 0,
            libgcc_unwinder: false,
            java: true,
            signal: 41,
            active: true,
            trim_signal: 42,
        }
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len]
    }

    /// Mean bytes between samples (1 in exact mode).
    pub fn sample_period(&self) -> u64 {
        1u64 << self.lg_sample
    }

    /// Applies `JEPROF_CONF` text on top of `self`. For each bad entry, `report(key, why)`.
    pub fn apply(&mut self, text: &[u8], report: &mut dyn FnMut(&[u8], &str)) {
        for entry in text.split(|&c| c == b',') {
            if entry.is_empty() {
                continue;
            }
            let Some(colon) = entry.iter().position(|&c| c == b':') else {
                report(entry, "expected key:value");
                continue;
            };
            let (key, value) = (&entry[..colon], &entry[colon + 1..]);
            if let Err(why) = self.set(key, value) {
                report(entry, why);
            }
        }
    }

    fn set(&mut self, key: &[u8], v: &[u8]) -> Result<(), &'static str> {
        match key {
            b"prof" => self.enabled = parse_bool(v)?,
            b"prof_active" => self.active = parse_bool(v)?,
            b"prof_prefix" => {
                if v.is_empty() || v.len() >= PREFIX_MAX || v.contains(&0) {
                    return Err("prefix must be 1..479 bytes");
                }
                self.prefix[..v.len()].copy_from_slice(v);
                self.prefix_len = v.len();
            }
            b"lg_prof_sample" => {
                let n = parse_int(v)?;
                if !(0..=LG_SAMPLE_MAX as i64).contains(&n) {
                    return Err("lg_prof_sample must be 0..40");
                }
                self.lg_sample = n as u32;
            }
            b"prof_final" => self.final_dump = parse_bool(v)?,
            b"lg_prof_interval" => {
                let n = parse_int(v)?;
                if !(-1..=62).contains(&n) {
                    return Err("lg_prof_interval must be -1..62");
                }
                self.lg_interval = n as i32;
            }
            b"prof_gdump" => self.gdump = parse_bool(v)?,
            b"prof_leak" => self.leak = parse_bool(v)?,
            b"prof_mmap" => self.mmap = parse_bool(v)?,
            b"prof_max_depth" => {
                let n = parse_int(v)?;
                if !(1..=MAX_DEPTH_LIMIT as i64).contains(&n) {
                    return Err("prof_max_depth must be 1..256");
                }
                self.max_depth = n as usize;
            }
            b"prof_interval_secs" => {
                let n = parse_int(v)?;
                if !(0..=86_400 * 365).contains(&n) {
                    return Err("prof_interval_secs must be 0..31536000");
                }
                self.interval_secs = n as u64;
            }
            b"prof_unwinder" => {
                self.libgcc_unwinder = match v {
                    b"auto" => false,
                    b"libgcc" => true,
                    _ => return Err("prof_unwinder must be auto or libgcc"),
                }
            }
            b"prof_java" => self.java = parse_bool(v)?,
            b"prof_signal" => {
                let n = parse_int(v)?;
                if !(0..=64).contains(&n) || matches!(n, 9 | 19 | 11 | 7) {
                    return Err(
                        "prof_signal must be 0 or a catchable signal number other than SIGSEGV/SIGBUS",
                    );
                }
                self.signal = n as i32;
            }
            b"prof_trim_signal" => {
                let n = parse_int(v)?;
                if !(0..=64).contains(&n) || matches!(n, 9 | 19 | 11 | 7) {
                    return Err(
                        "prof_trim_signal must be 0 or a catchable signal number other than SIGSEGV/SIGBUS",
                    );
                }
                self.trim_signal = n as i32;
            }
            // jemalloc keys that are meaningful there but have no effect here: accepted so
            // that a MALLOC_CONF can be copied over, without pretending they do something.
            b"prof_accum" | b"prof_thread_active_init" => {
                parse_bool(v)?;
            }
            _ => return Err("unknown key"),
        }
        Ok(())
    }
}

fn parse_bool(v: &[u8]) -> Result<bool, &'static str> {
    match v {
        b"true" | b"1" => Ok(true),
        b"false" | b"0" => Ok(false),
        _ => Err("expected true or false"),
    }
}

fn parse_int(v: &[u8]) -> Result<i64, &'static str> {
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err("expected an integer");
    }
    let n = digits
        .iter()
        .fold(0i64, |acc, d| acc * 10 + (d - b'0') as i64);
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut errs = Vec::new();
        c.apply(text.as_bytes(), &mut |k, why| {
            errs.push(format!("{}: {why}", String::from_utf8_lossy(k)))
        });
        (c, errs)
    }

    #[test]
    fn defaults_match_jemalloc() {
        let c = Config::default();
        assert_eq!(c.prefix(), b"jeprof");
        assert_eq!(c.sample_period(), 512 * 1024);
        assert!(c.final_dump && !c.leak && c.mmap && c.enabled);
        assert_eq!(c.lg_interval, -1);
        assert_eq!(c.max_depth, 128);
        assert_eq!(c.signal, 41);
        assert_eq!(c.trim_signal, 42);
    }

    #[test]
    fn parses_all_keys() {
        let (c, errs) = parse(
            "prof_prefix:/tmp/a/b,lg_prof_sample:0,prof_final:false,lg_prof_interval:20,\
             prof_gdump:true,prof_leak:true,prof_mmap:false,prof_max_depth:64,\
             prof_interval_secs:30,prof_signal:41,prof:true,prof_unwinder:libgcc,prof_active:false,prof_trim_signal:0,\
             prof_java:false",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert!(!c.java);
        assert_eq!(c.prefix(), b"/tmp/a/b");
        assert_eq!(c.sample_period(), 1);
        assert!(!c.final_dump && c.gdump && c.leak && !c.mmap);
        assert_eq!(
            (c.lg_interval, c.max_depth, c.interval_secs, c.signal),
            (20, 64, 30, 41)
        );
        assert_eq!(c.trim_signal, 0);
        assert!(!c.active);
    }

    #[test]
    fn bad_entries_are_reported_and_the_rest_applies() {
        let (c, errs) = parse(
            "lg_prof_sample:banana,foo:1,prof_leak:true,oops,lg_prof_sample:41,prof_signal:11",
        );
        assert_eq!(
            errs,
            [
                "lg_prof_sample:banana: expected an integer",
                "foo:1: unknown key",
                "oops: expected key:value",
                "lg_prof_sample:41: lg_prof_sample must be 0..40",
                "prof_signal:11: prof_signal must be 0 or a catchable signal number other than SIGSEGV/SIGBUS",
            ]
        );
        assert!(c.leak);
        assert_eq!(c.lg_sample, 19);
    }

    #[test]
    fn negative_interval_and_empty_entries() {
        let (c, errs) = parse(",lg_prof_interval:-1,,");
        assert!(errs.is_empty());
        assert_eq!(c.lg_interval, -1);
        let (_, errs) = parse("lg_prof_interval:-2,prof_prefix:");
        assert_eq!(errs.len(), 2);
    }
}
