//! Writes heap profiles in jemalloc's `heap_v2` text format.
//!
//! ```text
//! heap_v2/<sample period>
//!   t*: <inuse objs>: <inuse bytes> [<alloc objs>: <alloc bytes>]
//! # key: value                       (our metadata; jeprof skips such lines)
//! @ 0x<ret addr> 0x<ret addr> …       (innermost first)
//!   t*: <inuse objs>: <inuse bytes> [<alloc objs>: <alloc bytes>]
//! …
//!
//! MAPPED_LIBRARIES:
//! <contents of /proc/self/maps>
//! ```
//!
//! Counts are written as jemalloc ≥ 5.3 writes them (see `sampler::rebias`). The totals line
//! is the sum of the stack lines of the same snapshot: counters are read once into scratch
//! memory, then written. Runs with the dump lock held and the thread marked busy; formats into
//! a fixed buffer and writes with `write(2)`: no allocation.

use core::ffi::{CStr, c_int};
use core::fmt::Write as _;

use crate::fmt::StackBuf;
use crate::live::LiveTable;
use crate::sampler;
use crate::stacks::StackTable;
use crate::sys;

const BUF: usize = 64 * 1024;

/// Buffered writer over a file descriptor; remembers the first error.
pub struct FdWriter<'a> {
    fd: c_int,
    buf: &'a mut [u8; BUF],
    len: usize,
    failed: bool,
}

impl<'a> FdWriter<'a> {
    pub fn new(fd: c_int, buf: &'a mut [u8; BUF]) -> Self {
        FdWriter {
            fd,
            buf,
            len: 0,
            failed: false,
        }
    }

    pub fn put(&mut self, mut s: &[u8]) {
        while !s.is_empty() {
            if self.len == BUF {
                self.flush();
            }
            let n = s.len().min(BUF - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
            self.len += n;
            s = &s[n..];
        }
    }

    pub fn flush(&mut self) {
        if !self.failed && !sys::write_all(self.fd, &self.buf[..self.len]) {
            self.failed = true;
        }
        self.len = 0;
    }

    /// Flushes; true if every write succeeded.
    pub fn finish(mut self) -> bool {
        self.flush();
        !self.failed
    }
}

impl core::fmt::Write for FdWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// Everything a dump needs beyond a few words of stack (lives in the dump lock): the output
/// buffer, a read buffer, a stack's frames and the loaded objects' build ids. A dump can run
/// on a thread with a 16 KiB stack, or from `exit()` called deep in one.
pub struct DumpBuf {
    pub out: [u8; BUF],
    pub read: [u8; 4096],
    pub frames: [usize; crate::config::MAX_DEPTH_LIMIT],
    pub ids: [sys::ObjectId; 256],
    /// The `/proc/self/smaps` header line of the mapping whose `Rss:` is being read.
    pub head: [u8; 512],
    /// `/proc/self/pagemap` entries (or `mincore` flags) of a chunk of a tracked mapping.
    pub cores: [u8; 4096],
    /// The temporary name a dump is written under.
    pub tmp: crate::fmt::StackBuf<640>,
}

impl DumpBuf {
    pub const fn new() -> Self {
        DumpBuf {
            out: [0; BUF],
            read: [0; 4096],
            frames: [0; crate::config::MAX_DEPTH_LIMIT],
            ids: [sys::ObjectId::EMPTY; 256],
            head: [0; 512],
            cores: [0; 4096],
            tmp: crate::fmt::StackBuf::new(),
        }
    }
}

impl Default for DumpBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// What a dump wrote, for the leak summary.
#[derive(Clone, Copy, Default)]
pub struct Written {
    pub stacks: u64,
    pub inuse_objs: u64,
    pub inuse_bytes: u64,
    /// jeprof-scaled estimates of in-use objects and bytes (equal to the written counts in
    /// exact mode).
    pub est_objs: f64,
    pub est_bytes: f64,
}

/// Per-dump facts written as `# key: value` lines.
pub struct Meta<'a> {
    pub kind: &'a str,
    pub tag: &'a [u8],
    /// glibc's statistics when it is the allocator: bytes it holds (arena + mmapped chunks),
    /// bytes in use by the program, bytes free inside its arenas.
    pub mallinfo: Option<sys::MallInfo2>,
    /// When sampling was last switched on by `jeprof-rs start` (microseconds since the epoch;
    /// 0 or 1: from start-up): samples cover only the time since.
    pub since: u64,
    /// Sampling is on now (off: `prof_active:false` or `jeprof-rs stop`).
    pub sampling: bool,
    /// The mmap space's ranges (a copy taken for this dump), written as `# mapped_range`
    /// lines with their resident bytes.
    pub ranges: &'a [crate::mmaps::Range],
}

#[derive(Clone, Copy)]
struct Row {
    id: u32,
    c: [u64; 4],
}

/// Where a profile's in-use counts come from.
#[derive(Clone, Copy)]
pub enum InUse<'a> {
    /// The table's own counters (allocated minus freed): mappings.
    Counters,
    /// The live blocks in this table, summed now (`LiveTable::tally`): the heap, whose `free`
    /// path then only removes an entry and touches no counter.
    Live(&'a LiveTable),
}

/// Writes one profile of `table` to a new file at `path`. `lg_sample` is the sample period's
/// log2 (0 for exact counts; the mmap space is always exact). Returns what was written, or the
/// errno of the failed open/write (`EDEADLK`: the live table could not be read within
/// `wait_ns`, see `LiveTable::tally`; nothing is written then).
pub fn write_profile(
    path: &CStr,
    table: &StackTable,
    inuse: InUse<'_>,
    lg_sample: u32,
    meta: &Meta<'_>,
    buf: &mut DumpBuf,
    wait_ns: u64,
) -> Result<Written, c_int> {
    // Pass 0: in-use counts from the live blocks, before the cumulative counters are read (a
    // block is counted as allocated before it enters the table, so every stack's allocated
    // count then covers its in-use one).
    let live = match inuse {
        InUse::Counters => None,
        InUse::Live(l) => {
            let ids = table.len() + 1;
            let bytes = ids * core::mem::size_of::<[u64; 2]>();
            let mem = sys::map_anon(bytes).ok_or(libc::ENOMEM)?;
            // SAFETY: a fresh zeroed mapping of `ids` pairs, unmapped below.
            let sums = unsafe { core::slice::from_raw_parts_mut(mem.cast::<[u64; 2]>(), ids) };
            if !l.tally(lg_sample, sums, wait_ns) {
                // SAFETY: the mapping made above, no longer referenced.
                unsafe { sys::unmap(mem, bytes) };
                return Err(libc::EDEADLK);
            }
            Some(sums)
        }
    };
    let written = write_rows(path, table, live.as_deref(), lg_sample, meta, buf);
    if let Some(sums) = live {
        // SAFETY: the mapping made above, no longer referenced.
        unsafe { sys::unmap(sums.as_mut_ptr().cast(), core::mem::size_of_val(sums)) };
    }
    written
}

fn write_rows(
    path: &CStr,
    table: &StackTable,
    live: Option<&[[u64; 2]]>,
    lg_sample: u32,
    meta: &Meta<'_>,
    buf: &mut DumpBuf,
) -> Result<Written, c_int> {
    // Pass 1: snapshot rebiased counters of every stack with something to say.
    let cap = table.len() + 64;
    let bytes = cap * core::mem::size_of::<Row>();
    let scratch = sys::map_anon(bytes).ok_or(libc::ENOMEM)?;
    // SAFETY: fresh zeroed mapping of `cap` rows (all-zero is a valid Row), unmapped below.
    let rows = unsafe { core::slice::from_raw_parts_mut(scratch.cast::<Row>(), cap) };
    let mut n = 0;
    let mut total = [0u64; 4];
    let DumpBuf {
        out: obuf,
        read: rbuf,
        frames,
        ids,
        head,
        cores,
        tmp: tmpbuf,
    } = buf;
    let mut w = Written::default();
    let period = (1u64 << lg_sample) as f64;
    table.for_each(frames, |id, _, mut c| {
        if let Some(sums) = live {
            [c.inuse_objs, c.inuse_bytes] = sums.get(id as usize).copied().unwrap_or([0, 0]);
        }
        if n == cap || (c.inuse_objs == 0 && c.alloc_objs == 0) {
            return;
        }
        let (io, ib) = sampler::rebias(c.inuse_objs, c.inuse_bytes, lg_sample);
        let (ao, ab) = sampler::rebias(c.alloc_objs, c.alloc_bytes, lg_sample);
        if io == 0 && ao == 0 {
            return;
        }
        rows[n] = Row {
            id,
            c: [io, ib, ao, ab],
        };
        n += 1;
        for (t, v) in total.iter_mut().zip(rows[n - 1].c) {
            *t += v;
        }
        if io != 0 {
            w.stacks += 1;
            let (eo, eb) = sampler::jeprof_scale(io as f64, ib as f64, period);
            w.est_objs += eo;
            w.est_bytes += eb;
        }
    });
    w.inuse_objs = total[0];
    w.inuse_bytes = total[1];

    // Written under a hidden temporary name beside the file and renamed into place when whole
    // (never replacing a file of that name): a reader sees a complete dump or none.
    let Some(tmp) = temp_name(tmpbuf, path) else {
        // SAFETY: the scratch rows are no longer referenced.
        unsafe { sys::unmap(scratch, bytes) };
        return Err(libc::ENAMETOOLONG);
    };
    let result = (|| {
        let fd = sys::create_exclusive(tmp)?;
        let mut out = FdWriter::new(fd, obuf);
        let _ = write!(
            out,
            "heap_v2/{}\n  t*: {}: {} [{}: {}]\n",
            1u64 << lg_sample,
            total[0],
            total[1],
            total[2],
            total[3]
        );
        write_meta(&mut out, meta, lg_sample, rbuf, ids, head, cores);
        let ids_too = meta.kind == "mmap";
        // Java frames are gathered as their stacks are written, and named after them.
        let mut java = crate::hotspot::ready().then(JavaNames::new).flatten();
        for r in &rows[..n] {
            let depth = table.frames(r.id, frames);
            if let Some(j) = java.as_mut() {
                j.gather(&frames[..depth]);
            }
            if ids_too {
                // Which `# mapped_range` lines belong to the next stack.
                let _ = writeln!(out, "# stack_id {}", r.id);
            }
            out.put(b"@");
            for f in &frames[..depth] {
                let _ = write!(out, " {f:#x}");
            }
            let _ = write!(
                out,
                "\n  t*: {}: {} [{}: {}]\n",
                r.c[0], r.c[1], r.c[2], r.c[3]
            );
        }
        if let Some(j) = java {
            j.write(&mut out);
        }
        out.put(b"\nMAPPED_LIBRARIES:\n");
        copy_file(&mut out, c"/proc/self/maps", rbuf);
        let ok = out.finish();
        sys::close(fd);
        if !ok {
            sys::unlink(tmp);
            return Err(libc::EIO);
        }
        if let Err(e) = sys::rename_noreplace(tmp, path) {
            sys::unlink(tmp);
            return Err(e);
        }
        Ok(w)
    })();
    // SAFETY: the scratch rows are no longer referenced.
    unsafe { sys::unmap(scratch, bytes) };
    result
}

/// The distinct Java frames of a dump's stacks (`hotspot.rs`), in a set in a scratch mapping,
/// written as `# java_method <frame> <pkg.Class.method>` lines: named now, from the JVM's
/// metadata, so that the analyzer needs neither the live JVM nor a perf map.
struct JavaNames {
    set: &'static mut [usize],
    /// Frames the set had no room for (a name may then repeat; the reader keeps the first).
    spill: [usize; 64],
    spilled: usize,
}

impl JavaNames {
    const SET: usize = 1 << 16;
    const BYTES: usize = Self::SET * core::mem::size_of::<usize>();

    fn new() -> Option<JavaNames> {
        let mem = sys::map_anon(Self::BYTES)?;
        Some(JavaNames {
            // SAFETY: a fresh zeroed mapping of SET words, unmapped in `write` only.
            set: unsafe { core::slice::from_raw_parts_mut(mem.cast::<usize>(), Self::SET) },
            spill: [0; 64],
            spilled: 0,
        })
    }

    fn gather(&mut self, frames: &[usize]) {
        for &f in frames {
            if f & crate::hotspot::JAVA_TAG == 0 {
                continue;
            }
            let mut i = (f as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize >> 48;
            let mut placed = false;
            for _ in 0..64 {
                if self.set[i] == f || self.set[i] == 0 {
                    self.set[i] = f;
                    placed = true;
                    break;
                }
                i = (i + 1) % Self::SET;
            }
            if !placed && self.spilled < self.spill.len() {
                self.spill[self.spilled] = f;
                self.spilled += 1;
            }
        }
    }

    fn write(self, out: &mut FdWriter<'_>) {
        let mut name = [0u8; 512];
        let spill = &self.spill[..self.spilled];
        for &f in self.set.iter().chain(spill).filter(|&&f| f != 0) {
            let _ = write!(out, "# java_method {f:#x} ");
            match crate::hotspot::name_of(f, &mut name) {
                Some(len) => out.put(&name[..len]),
                None => out.put(b"[unknown Java method]"),
            }
            out.put(b"\n");
        }
        // SAFETY: the mapping made in `new`; `self` goes with this call.
        unsafe { sys::unmap(self.set.as_mut_ptr().cast(), Self::BYTES) };
    }
}

/// `<dir>/.<name>.tmp` for `<dir>/<name>`, in `buf`.
fn temp_name<'a>(buf: &'a mut crate::fmt::StackBuf<640>, path: &CStr) -> Option<&'a CStr> {
    let bytes = path.to_bytes();
    let cut = bytes.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1);
    buf.clear();
    buf.push(&bytes[..cut]);
    buf.push(b".");
    buf.push(&bytes[cut..]);
    buf.push(b".tmp");
    buf.as_cstr()
}

fn write_meta(
    out: &mut FdWriter<'_>,
    meta: &Meta<'_>,
    lg_sample: u32,
    rbuf: &mut [u8; 4096],
    ids: &mut [sys::ObjectId; 256],
    head: &mut [u8; 512],
    cores: &mut [u8; 4096],
) {
    let (sec, nsec) = sys::now_realtime();
    let _ = write!(
        out,
        "# jeprof-preload: {}\n# kind: {}\n# pid: {}\n# time: {}.{:06}\n# sample_period: {}\n",
        env!("CARGO_PKG_VERSION"),
        meta.kind,
        sys::getpid(),
        sec,
        nsec / 1000,
        1u64 << lg_sample
    );
    out.put(b"# tag: ");
    out.put(meta.tag);
    out.put(b"\n");
    if meta.since > 1 {
        let _ = writeln!(
            out,
            "# sampling_since: {}.{:06}",
            meta.since / 1_000_000,
            meta.since % 1_000_000
        );
    }
    if !meta.sampling {
        out.put(b"# sampling: off\n");
    }
    let n = sys::readlink(c"/proc/self/exe", rbuf);
    if n > 0 && !rbuf[..n].contains(&b'\n') {
        out.put(b"# exe: ");
        out.put(&rbuf[..n]);
        out.put(b"\n");
    }
    let n = sys::read_small_file(c"/proc/self/statm", &mut rbuf[..256]);
    // statm: size resident shared text lib data dt (pages)
    if let Some(rss_pages) = rbuf[..n].split(|&c| c == b' ').nth(1).and_then(parse_u64) {
        let _ = writeln!(out, "# rss_bytes: {}", rss_pages * sys::PAGE as u64);
    }
    if meta.kind == "heap" {
        write_build_ids(out, rbuf, ids);
    }
    if let Some(m) = &meta.mallinfo {
        let _ = write!(
            out,
            "# allocator: glibc\n# mallinfo_arena_bytes: {}\n# mallinfo_inuse_bytes: {}\n# mallinfo_free_bytes: {}\n# mallinfo_mmap_bytes: {}\n# mallinfo_keepcost_bytes: {}\n# mallinfo_free_chunks: {}\n",
            m.arena + m.hblkhd,
            m.uordblks + m.hblkhd,
            m.fordblks,
            m.hblkhd,
            m.keepcost,
            m.ordblks
        );
    }
    if meta.kind == "heap" {
        write_rss_maps(out, rbuf, head);
    }
    let pagemap = if meta.ranges.is_empty() {
        None
    } else {
        sys::open_read(c"/proc/self/pagemap")
    };
    for r in meta.ranges {
        let len = r.end - r.start;
        // Pages mapped in this process (what RSS counts); mincore, which says what is in the
        // page cache, only when pagemap cannot be read.
        let pages = pagemap
            .and_then(|fd| sys::present_pages(fd, r.start, len, cores))
            .unwrap_or_else(|| sys::resident_pages(r.start, len, cores));
        let resident = pages * sys::PAGE;
        let _ = writeln!(
            out,
            "# mapped_range {:x}-{:x} {} {}",
            r.start, r.end, resident, r.stack
        );
    }
    if let Some(fd) = pagemap {
        sys::close(fd);
    }
}

/// `# rss_map <start>-<end> <rss bytes> <anon|file> <path>` for each mapping of
/// `/proc/self/smaps` with resident pages: what the analyzer's `rss` report adds up. (jeprof
/// skips `#` lines; the MAPPED_LIBRARIES section stays the plain maps file it parses.)
fn write_rss_maps(out: &mut FdWriter<'_>, rbuf: &mut [u8; 4096], head: &mut [u8; 512]) {
    let mut head_len = 0usize;
    sys::for_each_line(c"/proc/self/smaps", rbuf, &mut |line| {
        if crate::unwind::parse_range(line).is_some() {
            // A mapping's header: `start-end perms offset dev inode [path]`; its fields follow.
            head_len = if line.len() <= head.len() {
                head[..line.len()].copy_from_slice(line);
                line.len()
            } else {
                0 // a path too long to keep: its pages stay unexplained
            };
            return true;
        }
        let Some(kb) = line.strip_prefix(b"Rss:") else {
            return true;
        };
        let kb = kb
            .split(|&c| c == b' ')
            .find(|f| !f.is_empty())
            .and_then(parse_u64)
            .unwrap_or(0);
        if kb == 0 || head_len == 0 {
            return true;
        }
        let h = &head[..head_len];
        let mut fields = h.split(|&c| c == b' ').filter(|f| !f.is_empty());
        let range = fields.next().unwrap_or(b"");
        let inode = fields.nth(3).unwrap_or(b"0");
        // The path is the rest of the line after the inode (it may contain spaces).
        let path = path_of(h);
        out.put(b"# rss_map ");
        out.put(range);
        let _ = write!(
            out,
            " {} {} ",
            kb.saturating_mul(1024),
            if inode == b"0" { "anon" } else { "file" }
        );
        out.put(path);
        out.put(b"\n");
        head_len = 0;
        true
    });
}

/// The path field of a maps/smaps header line (empty for anonymous memory).
fn path_of(h: &[u8]) -> &[u8] {
    let mut rest = h;
    for _ in 0..5 {
        let start = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    let start = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
    &rest[start..]
}

/// `# build_id <path>: <hex>` for each mapped executable object, so that the analyzer can tell
/// when a file on disk is no longer the one that ran. Paths are the ones /proc/self/maps shows
/// (the analyzer matches on them); objects are matched to mappings by address.
fn write_build_ids(
    out: &mut FdWriter<'_>,
    rbuf: &mut [u8; 4096],
    objects: &mut [sys::ObjectId; 256],
) {
    let n = sys::loaded_object_ids(objects);
    let objects = &objects[..n];
    let mut last = [0usize; 2];
    sys::for_each_maps_line(rbuf, &mut |line| {
        // start-end perms offset dev inode path
        let mut fields = line.split(|&c| c == b' ').filter(|f| !f.is_empty());
        let perms = fields.nth(1).unwrap_or(b"");
        let path = fields.nth(3).unwrap_or(b"");
        if perms.get(2) != Some(&b'x') || !path.starts_with(b"/") {
            return true;
        }
        let Some((lo, hi)) = crate::unwind::parse_range(line) else {
            return true;
        };
        // The object's code (its executable PT_LOAD) overlaps this executable mapping.
        if let Some(o) = objects.iter().find(|o| o.lo < hi && lo < o.hi)
            && [o.lo, o.hi] != last
        {
            last = [o.lo, o.hi];
            out.put(b"# build_id ");
            out.put(path);
            out.put(b": ");
            for b in &o.id[..o.id_len] {
                let _ = write!(out, "{b:02x}");
            }
            out.put(b"\n");
        }
        true
    });
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |a, d| {
        a.wrapping_mul(10).wrapping_add((d - b'0') as u64)
    }))
}

fn copy_file(out: &mut FdWriter<'_>, path: &CStr, chunk: &mut [u8; 4096]) {
    let Some(fd) = sys::open_read(path) else {
        return;
    };
    loop {
        let n = sys::read(fd, chunk);
        if n == 0 {
            break;
        }
        out.put(&chunk[..n]);
    }
    sys::close(fd);
}

/// Builds `<prefix>.<pid>.<seq>.<tag>[.mmap].heap`.
pub fn file_name(
    out: &mut StackBuf<600>,
    prefix: &[u8],
    pid: i32,
    seq: u64,
    tag: &[u8],
    mmap: bool,
) {
    out.clear();
    out.push(prefix);
    let _ = write!(out, ".{pid}.{seq}.");
    out.push(tag);
    out.push(if mmap { b".mmap.heap" } else { b".heap" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_heap_v2_profile() {
        let t = StackTable::new();
        assert!(t.init(16, 4096));
        let a = t.intern(&[0x1000, 0x2000]);
        let b = t.intern(&[0x3000]);
        t.add(a, sampler::OBJ_ONE, 100);
        t.add(a, sampler::OBJ_ONE, 100);
        t.add(b, sampler::OBJ_ONE, 7);
        t.adjust_inuse(b, -(sampler::OBJ_ONE as i64), -7);
        let dir = std::env::temp_dir().join(format!("jeprof-dump-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.heap");
        let _ = std::fs::remove_file(&path);
        let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut buf = Box::new(DumpBuf::new());
        let w = write_profile(
            &cpath,
            &t,
            InUse::Counters,
            0,
            &Meta {
                kind: "heap",
                tag: b"f",
                mallinfo: Some(sys::MallInfo2 {
                    arena: 100,
                    fordblks: 40,
                    uordblks: 60,
                    ..Default::default()
                }),
                since: 0,
                sampling: true,
                ranges: &[],
            },
            &mut buf,
            u64::MAX,
        )
        .unwrap();
        assert_eq!((w.inuse_objs, w.inuse_bytes, w.stacks), (2, 200, 1));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("heap_v2/1\n  t*: 2: 200 [3: 207]\n# jeprof-preload: "),
            "{text}"
        );
        assert!(
            text.contains("\n@ 0x1000 0x2000\n  t*: 2: 200 [2: 200]\n"),
            "{text}"
        );
        assert!(text.contains("\n@ 0x3000\n  t*: 0: 0 [1: 7]\n"), "{text}");
        assert!(text.contains("\n# kind: heap\n"));
        assert!(
            text.contains("\n# mallinfo_arena_bytes: 100\n# mallinfo_inuse_bytes: 60\n# mallinfo_free_bytes: 40\n"),
            "{text}"
        );
        // Every resident mapping of this test process, by smaps: the library's own code is one.
        assert!(
            text.lines().any(|l| l.starts_with("# rss_map ")
                && l.ends_with(" file /proc/self/exe")
                || l.starts_with("# rss_map ") && l.contains(" file /")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("# rss_map ") && l.ends_with(" anon [stack]")),
            "{text}"
        );
        assert_eq!(path_of(b"1000-2000 rw-p 00000000 00:00 0 "), b"");
        assert_eq!(
            path_of(b"1000-2000 r-xp 00000000 08:01 12   /a b/c.so"),
            b"/a b/c.so"
        );
        assert!(text.contains("\n\nMAPPED_LIBRARIES:\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // O_EXCL: never overwrite.
        assert_eq!(
            write_profile(
                &cpath,
                &t,
                InUse::Counters,
                0,
                &Meta {
                    kind: "heap",
                    tag: b"f",
                    mallinfo: None,
                    since: 0,
                    sampling: true,
                    ranges: &[],
                },
                &mut buf,
                u64::MAX
            )
            .err(),
            Some(libc::EEXIST)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_files_like_jemalloc() {
        let mut b = StackBuf::<600>::new();
        file_name(&mut b, b"/tmp/jeprof", 42, 3, b"i7", false);
        assert_eq!(b.as_bytes(), b"/tmp/jeprof.42.3.i7.heap");
        file_name(&mut b, b"x", 1, 0, b"f", true);
        assert_eq!(b.as_bytes(), b"x.1.0.f.mmap.heap");
    }
}

#[cfg(test)]
mod build_id_tests {
    use super::*;

    #[test]
    fn writes_build_ids_of_mapped_objects() {
        let dir = std::env::temp_dir().join(format!("jeprof-bid-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ids.txt");
        let _ = std::fs::remove_file(&path);
        let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let fd = sys::create_exclusive(&cpath).unwrap();
        let mut buf = Box::new(DumpBuf::new());
        let DumpBuf { out, read, ids, .. } = &mut *buf;
        let mut out = FdWriter::new(fd, out);
        write_build_ids(&mut out, read, ids);
        assert!(out.finish());
        sys::close(fd);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            text.lines()
                .any(|l| l.contains("libc.so") && l.starts_with("# build_id /")),
            "{text}"
        );
    }
}
