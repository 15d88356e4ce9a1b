//! Java frames from HotSpot's own metadata: crossed and named with no JVM flags.
//!
//! A JVM's compiled code keeps no frame pointers (unless `-XX:+PreserveFramePointer`) and has no
//! unwind tables, so the walk learns each frame's shape from the JVM itself, as its
//! serviceability agent and async-profiler do. libjvm exports the layout of its own structures
//! for debuggers (`gHotSpotVMStructs`, `gHotSpotVMTypes`: type, field, offset or address); we
//! read them once, when the walk first meets code in no loaded object, and then, for a pc in
//! the code cache:
//!
//! - find its blob through the code heap's segment map (`CodeHeap::_segmap`: one byte per
//!   segment, counting back to the block's first segment), as `CodeHeap::find_blob` does;
//! - a compiled method (`nmethod`, also the wrapper of a JNI method): its frame is
//!   `CodeBlob::_frame_size` words; the return address sits below the caller's sp and the saved
//!   rbp below it. Its Java methods come from its debug information: the `PcDesc` of the return
//!   address gives a scope, and the scope chain (`ScopeDesc`, compressed integers) names the
//!   inlined methods innermost first, each a `Method*` from the nmethod's metadata;
//! - the interpreter: its frames keep rbp as a frame pointer; the `Method*` is at rbp − 24,
//!   the caller's sp at rbp − 8 (HotSpot's x86-64 frame layout, `frame_x86.hpp`);
//! - the call stub (Java called from C++) keeps rbp as a frame pointer too;
//! - any other stub with a frame size is crossed like a compiled method and left out.
//!
//! A Java frame is written as `JAVA_TAG | Method*`, the same for compiled, inlined and
//! interpreted code, so that one method is one frame however it ran. A dump names those
//! (`# java_method` lines, `name_of`): class and method from the method's constant pool,
//! read with `process_vm_readv` (a method unloaded since fails cleanly instead of faulting).
//!
//! Reads inside a hook: libjvm's tables (inside its mapped segments, checked), the code heap's
//! committed part (`VirtualSpace::_low.._high`, checked), the blob's fields (inside the blob,
//! checked), stack words (through the walk's checked reader). On JDK 23 and later the debug
//! information lives in a separate C-heap block of the nmethod (`_immutable_data`); reads of it
//! are checked against its recorded size and rely on the nmethod being alive, which it is
//! while its frame is on the stack being walked. No JVMTI or JNI call, no allocation, no lock.
//! Without usable metadata (another JVM, a libjvm without the tables), the walk crosses such
//! code with frame pointers as before, and says so once.

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Marks a frame that is a Java method (`JAVA_TAG | Method*`); no code address has it.
pub const JAVA_TAG: usize = 1 << 62;

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const ABSENT: u8 = 3;
/// No libjvm was loaded when we looked: looked again after `RETRY_AFTER` more lookups of
/// code in no object (a walk may meet such code, a bad return address say, before a JVM
/// loads libjvm; JIT code itself only exists after).
const NOT_YET: u8 = 4;
const RETRY_AFTER: u32 = 4096;
/// Looks before giving up for good (a process with other JIT code, libffi closures say, and
/// no JVM: then such code is cached like any code in no object).
const MAX_LOOKS: u32 = 8;
static LOOKS: AtomicU32 = AtomicU32::new(0);
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static MISSES: AtomicU32 = AtomicU32::new(0);

/// How the nmethod's metadata array (the `Method*`s its scopes index) is found.
#[derive(Clone, Copy, Default)]
enum Metadata {
    #[default]
    None,
    /// JDK ≤ 22: `int _metadata_offset` from the blob's start.
    FromBlob(usize),
    /// JDK 23–24: `u2 _metadata_offset` from `CodeBlob::_data_offset`.
    FromData { data: usize, meta: usize },
    /// JDK 25+: `CodeBlob::_mutable_data + CodeBlob::_relocation_size`.
    Mutable { mutable: usize, reloc_size: usize },
}

/// Field offsets and static addresses read from libjvm's tables (`usize::MAX`: absent).
#[derive(Clone, Copy)]
struct Layout {
    /// libjvm's readable segments.
    ranges: [(usize, usize); 8],
    nranges: usize,
    heaps_addr: usize,
    low_bound_addr: usize,
    high_bound_addr: usize,
    call_stub_ret_addr: usize,
    major: i32,
    ga_len: usize,
    ga_data: usize,
    heap_memory: usize,
    heap_segmap: usize,
    heap_shift: usize,
    vs_low: usize,
    vs_high: usize,
    block_used: usize,
    block_size: usize,
    blob_name: usize,
    blob_size: usize,
    blob_frame_size: usize,
    /// `CodeBlob::_code_begin` (a pointer, JDK ≤ 22) or `_code_offset` (an int).
    code_begin_ptr: usize,
    code_offset: usize,
    data_offset: usize,
    mutable_data: usize,
    mutable_data_size: usize,
    relocation_size: usize,
    nm_method: usize,
    nm_compile_id: usize,
    nm_scopes_pcs: usize,
    /// `_scopes_data_begin` (a pointer) or `_scopes_data_offset` (an int into immutable data).
    scopes_begin_ptr: usize,
    scopes_offset: usize,
    immutable: usize,
    immutable_size: usize,
    metadata_int: usize,
    metadata_u2: usize,
    method_const: usize,
    const_constants: usize,
    const_name_index: usize,
    cp_holder: usize,
    cp_size: usize,
    klass_name: usize,
    sym_length: usize,
    sym_body: usize,
}

const NONE: usize = usize::MAX;

impl Layout {
    const EMPTY: Layout = Layout {
        ranges: [(0, 0); 8],
        nranges: 0,
        heaps_addr: NONE,
        low_bound_addr: NONE,
        high_bound_addr: NONE,
        call_stub_ret_addr: NONE,
        major: 0,
        ga_len: NONE,
        ga_data: NONE,
        heap_memory: NONE,
        heap_segmap: NONE,
        heap_shift: NONE,
        vs_low: NONE,
        vs_high: NONE,
        block_used: NONE,
        block_size: NONE,
        blob_name: NONE,
        blob_size: NONE,
        blob_frame_size: NONE,
        code_begin_ptr: NONE,
        code_offset: NONE,
        data_offset: NONE,
        mutable_data: NONE,
        mutable_data_size: NONE,
        relocation_size: NONE,
        nm_method: NONE,
        nm_compile_id: NONE,
        nm_scopes_pcs: NONE,
        scopes_begin_ptr: NONE,
        scopes_offset: NONE,
        immutable: NONE,
        immutable_size: NONE,
        metadata_int: NONE,
        metadata_u2: NONE,
        method_const: NONE,
        const_constants: NONE,
        const_name_index: NONE,
        cp_holder: NONE,
        cp_size: NONE,
        klass_name: NONE,
        sym_length: NONE,
        sym_body: NONE,
    };

    fn in_jvm(&self, addr: usize, len: usize) -> bool {
        in_ranges(&self.ranges[..self.nranges], addr, len)
    }

    fn metadata(&self) -> Metadata {
        if self.metadata_int != NONE {
            Metadata::FromBlob(self.metadata_int)
        } else if self.metadata_u2 != NONE && self.data_offset != NONE {
            Metadata::FromData {
                data: self.data_offset,
                meta: self.metadata_u2,
            }
        } else if self.mutable_data != NONE
            && self.mutable_data_size != NONE
            && self.relocation_size != NONE
        {
            Metadata::Mutable {
                mutable: self.mutable_data,
                reloc_size: self.relocation_size,
            }
        } else {
            Metadata::None
        }
    }

    /// What the walk needs (naming needs more, checked by `can_name`).
    fn can_walk(&self) -> bool {
        [
            self.heaps_addr,
            self.low_bound_addr,
            self.high_bound_addr,
            self.ga_len,
            self.ga_data,
            self.heap_memory,
            self.heap_segmap,
            self.heap_shift,
            self.vs_low,
            self.vs_high,
            self.block_used,
            self.block_size,
            self.blob_name,
            self.blob_size,
            self.blob_frame_size,
            self.nm_method,
        ]
        .iter()
        .all(|&v| v != NONE)
    }

    fn can_name(&self) -> bool {
        [
            self.method_const,
            self.const_constants,
            self.const_name_index,
            self.cp_holder,
            self.cp_size,
            self.klass_name,
            self.sym_length,
            self.sym_body,
        ]
        .iter()
        .all(|&v| v != NONE)
    }

    fn can_decode_scopes(&self) -> bool {
        self.nm_scopes_pcs != NONE
            && (self.code_begin_ptr != NONE || self.code_offset != NONE)
            && (self.scopes_begin_ptr != NONE
                || (self.scopes_offset != NONE && self.immutable != NONE))
            && !matches!(self.metadata(), Metadata::None)
    }
}

struct Shared(UnsafeCell<Layout>);
// SAFETY: written only by the thread that moved STATE from UNINIT to BUSY, read only after
// STATE is READY (release/acquire), never written again.
unsafe impl Sync for Shared {}
static LAYOUT: Shared = Shared(UnsafeCell::new(Layout::EMPTY));

fn layout() -> Option<&'static Layout> {
    if STATE.load(Ordering::Acquire) != READY {
        return None;
    }
    // SAFETY: READY is stored (release) after the last write (see `Shared`).
    Some(unsafe { &*LAYOUT.0.get() })
}

// ---- reading libjvm -------------------------------------------------------------------------

/// Whether `[addr, addr + len)` lies inside one of `ranges` (libjvm's readable segments).
fn in_ranges(ranges: &[(usize, usize)], addr: usize, len: usize) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    ranges.iter().any(|&(lo, hi)| addr >= lo && end <= hi)
}

/// Reads a `T` at `addr`, which the caller checked to be readable.
///
/// # Safety
/// `[addr, addr + size_of::<T>())` must be mapped and readable.
unsafe fn raw<T: Copy>(addr: usize) -> T {
    // SAFETY: by the caller; unaligned reads are fine on x86-64 and read_unaligned is exact.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

struct Jvm {
    base: usize,
    dynamic: usize,
    ranges: [(usize, usize); 8],
    nranges: usize,
}

impl Jvm {
    fn readable(&self, addr: usize, len: usize) -> bool {
        in_ranges(&self.ranges[..self.nranges], addr, len)
    }

    fn get<T: Copy>(&self, addr: usize) -> Option<T> {
        if !self.readable(addr, core::mem::size_of::<T>()) {
            return None;
        }
        // SAFETY: inside one of libjvm's readable segments.
        Some(unsafe { raw::<T>(addr) })
    }

    /// The NUL-terminated string at `addr`, if it lies in libjvm (at most 128 bytes).
    fn str_at(&self, addr: usize) -> Option<&[u8]> {
        let mut len = 0;
        while len < 128 {
            if self.get::<u8>(addr + len)? == 0 {
                // SAFETY: the `len` bytes were just read from a readable segment.
                return Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) });
            }
            len += 1;
        }
        None
    }

    /// The address of the dynamic symbol `name`, through the GNU hash table.
    fn symbol(&self, name: &[u8]) -> Option<usize> {
        let (mut gnu_hash, mut symtab, mut strtab) = (0usize, 0usize, 0usize);
        let mut d = self.dynamic;
        for _ in 0..512 {
            let tag = self.get::<i64>(d)?;
            let val = self.get::<u64>(d + 8)? as usize;
            // Most loaders relocate these entries in place; an unrelocated one is an offset.
            let val = if val < self.base {
                val + self.base
            } else {
                val
            };
            match tag {
                0 => break,
                0x6fff_fef5 => gnu_hash = val, // DT_GNU_HASH
                6 => symtab = val,             // DT_SYMTAB
                5 => strtab = val,             // DT_STRTAB
                _ => {}
            }
            d += 16;
        }
        if gnu_hash == 0 || symtab == 0 || strtab == 0 {
            return None;
        }
        let nbuckets = self.get::<u32>(gnu_hash)? as usize;
        let symoffset = self.get::<u32>(gnu_hash + 4)? as usize;
        let bloom_size = self.get::<u32>(gnu_hash + 8)? as usize;
        if nbuckets == 0 {
            return None;
        }
        let buckets = gnu_hash + 16 + bloom_size * 8;
        let chains = buckets + nbuckets * 4;
        let h = name
            .iter()
            .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32));
        let first = self.get::<u32>(buckets + (h as usize % nbuckets) * 4)? as usize;
        if first < symoffset {
            return None;
        }
        // A chain ends at an entry with its low bit set; bounded in case the table is bad.
        for sym in first..first + 1_000_000 {
            let h2 = self.get::<u32>(chains + (sym - symoffset) * 4)?;
            if h | 1 == h2 | 1 {
                let s = symtab + sym * 24;
                let st_name = self.get::<u32>(s)? as usize;
                if self.str_at(strtab + st_name)? == name {
                    let value = self.get::<u64>(s + 8)? as usize;
                    return (value != 0).then_some(self.base + value);
                }
            }
            if h2 & 1 != 0 {
                return None;
            }
        }
        None
    }

    /// The value of the exported variable `name` (libjvm's tables are pointers and sizes).
    fn var(&self, name: &[u8]) -> Option<usize> {
        self.get::<usize>(self.symbol(name)?)
    }
}

struct Search(Option<Jvm>);

unsafe extern "C" fn on_object(info: *mut libc::dl_phdr_info, _: usize, arg: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for the call, and `arg` is our `Found`.
    let (info, found) = unsafe { (&*info, &mut *arg.cast::<Search>()) };
    if info.dlpi_name.is_null() {
        return 0;
    }
    // SAFETY: the loader's NUL-terminated name of the object.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
    if !name.ends_with(b"/libjvm.so") && name != b"libjvm.so" {
        return 0;
    }
    let mut jvm = Jvm {
        base: info.dlpi_addr as usize,
        dynamic: 0,
        ranges: [(0, 0); 8],
        nranges: 0,
    };
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: the loader's program headers, `dlpi_phnum` of them.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_R != 0 && jvm.nranges < 8 {
            let lo = jvm.base + ph.p_vaddr as usize;
            jvm.ranges[jvm.nranges] = (lo, lo + ph.p_memsz as usize);
            jvm.nranges += 1;
        } else if ph.p_type == libc::PT_DYNAMIC {
            jvm.dynamic = jvm.base + ph.p_vaddr as usize;
        }
    }
    found.0 = Some(jvm);
    1
}

/// Reads libjvm's tables into `l`.
fn read_tables(jvm: &Jvm, l: &mut Layout) -> Option<()> {
    let entry = jvm.var(b"gHotSpotVMStructs")?;
    let stride = jvm.var(b"gHotSpotVMStructEntryArrayStride")?;
    let type_off = jvm.var(b"gHotSpotVMStructEntryTypeNameOffset")?;
    let field_off = jvm.var(b"gHotSpotVMStructEntryFieldNameOffset")?;
    let tstr_off = jvm.var(b"gHotSpotVMStructEntryTypeStringOffset")?;
    let static_off = jvm.var(b"gHotSpotVMStructEntryIsStaticOffset")?;
    let offset_off = jvm.var(b"gHotSpotVMStructEntryOffsetOffset")?;
    let addr_off = jvm.var(b"gHotSpotVMStructEntryAddressOffset")?;
    if stride == 0 || stride > 256 {
        return None;
    }
    let mut e = entry;
    for _ in 0..20_000 {
        let (t, f) = (
            jvm.get::<usize>(e + type_off)?,
            jvm.get::<usize>(e + field_off)?,
        );
        if t == 0 || f == 0 {
            break;
        }
        let (ty, field) = (jvm.str_at(t)?, jvm.str_at(f)?);
        let tstr = match jvm.get::<usize>(e + tstr_off)? {
            0 => &b""[..],
            p => jvm.str_at(p).unwrap_or(b""),
        };
        let value = if jvm.get::<i32>(e + static_off)? != 0 {
            jvm.get::<usize>(e + addr_off)?
        } else {
            jvm.get::<u64>(e + offset_off)? as usize
        };
        let slot: Option<&mut usize> = match (ty, field) {
            (b"CodeCache", b"_heaps") => Some(&mut l.heaps_addr),
            (b"CodeCache", b"_low_bound") => Some(&mut l.low_bound_addr),
            (b"CodeCache", b"_high_bound") => Some(&mut l.high_bound_addr),
            (b"StubRoutines", b"_call_stub_return_address") => Some(&mut l.call_stub_ret_addr),
            (b"GrowableArrayBase" | b"GenericGrowableArray", b"_len") => Some(&mut l.ga_len),
            (b"GrowableArray<int>", b"_data") => Some(&mut l.ga_data),
            (b"CodeHeap", b"_memory") => Some(&mut l.heap_memory),
            (b"CodeHeap", b"_segmap") => Some(&mut l.heap_segmap),
            (b"CodeHeap", b"_log2_segment_size") => Some(&mut l.heap_shift),
            (b"VirtualSpace", b"_low") => Some(&mut l.vs_low),
            (b"VirtualSpace", b"_high") => Some(&mut l.vs_high),
            (b"HeapBlock::Header", b"_used") => Some(&mut l.block_used),
            (b"CodeBlob", b"_name") => Some(&mut l.blob_name),
            (b"CodeBlob", b"_size") => Some(&mut l.blob_size),
            (b"CodeBlob", b"_frame_size") => Some(&mut l.blob_frame_size),
            (b"CodeBlob", b"_code_begin") => Some(&mut l.code_begin_ptr),
            (b"CodeBlob", b"_code_offset") => Some(&mut l.code_offset),
            (b"CodeBlob", b"_data_offset") => Some(&mut l.data_offset),
            (b"CodeBlob", b"_mutable_data") => Some(&mut l.mutable_data),
            (b"CodeBlob", b"_mutable_data_size") => Some(&mut l.mutable_data_size),
            (b"CodeBlob", b"_relocation_size") => Some(&mut l.relocation_size),
            (b"CompiledMethod" | b"nmethod", b"_method") => Some(&mut l.nm_method),
            (b"nmethod", b"_scopes_pcs_offset") => Some(&mut l.nm_scopes_pcs),
            (b"nmethod", b"_compile_id") => Some(&mut l.nm_compile_id),
            (b"CompiledMethod" | b"nmethod", b"_scopes_data_begin") => {
                Some(&mut l.scopes_begin_ptr)
            }
            (b"nmethod", b"_scopes_data_offset") => Some(&mut l.scopes_offset),
            (b"nmethod", b"_immutable_data") => Some(&mut l.immutable),
            (b"nmethod", b"_immutable_data_size") => Some(&mut l.immutable_size),
            (b"nmethod", b"_metadata_offset") if tstr == b"int" => Some(&mut l.metadata_int),
            (b"nmethod", b"_metadata_offset") if tstr == b"u2" => Some(&mut l.metadata_u2),
            (b"Method", b"_constMethod") => Some(&mut l.method_const),
            (b"ConstMethod", b"_constants") => Some(&mut l.const_constants),
            (b"ConstMethod", b"_name_index") => Some(&mut l.const_name_index),
            (b"ConstantPool", b"_pool_holder") => Some(&mut l.cp_holder),
            (b"Klass", b"_name") => Some(&mut l.klass_name),
            (b"Symbol", b"_length") => Some(&mut l.sym_length),
            (b"Symbol", b"_body") => Some(&mut l.sym_body),
            (b"Abstract_VM_Version", b"_vm_major_version") => {
                l.major = jvm.get::<i32>(value).unwrap_or(0);
                None
            }
            _ => None,
        };
        if let Some(s) = slot {
            *s = value;
        }
        e += stride;
    }
    let entry = jvm.var(b"gHotSpotVMTypes")?;
    let stride = jvm.var(b"gHotSpotVMTypeEntryArrayStride")?;
    let type_off = jvm.var(b"gHotSpotVMTypeEntryTypeNameOffset")?;
    let size_off = jvm.var(b"gHotSpotVMTypeEntrySizeOffset")?;
    if stride == 0 || stride > 256 {
        return None;
    }
    let mut e = entry;
    for _ in 0..20_000 {
        let t = jvm.get::<usize>(e + type_off)?;
        if t == 0 {
            break;
        }
        let size = jvm.get::<u64>(e + size_off)? as usize;
        match jvm.str_at(t)? {
            b"HeapBlock" => l.block_size = size,
            b"ConstantPool" => l.cp_size = size,
            _ => {}
        }
        e += stride;
    }
    Some(())
}

/// What `try_init` found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The tables are read: the walk uses them (`claims`, `step`).
    Ready,
    /// No usable HotSpot here (its tables are unusable, or `prof_java:false`): for good.
    Absent,
    /// Not known yet (no libjvm loaded so far, another thread is reading the tables, or this
    /// one is in a signal handler): answers given now must not be cached.
    Unknown,
}

/// Looks for libjvm and its tables, once.
pub fn try_init() -> Found {
    let from = match STATE.load(Ordering::Acquire) {
        READY => return Found::Ready,
        ABSENT => return Found::Absent,
        BUSY => return Found::Unknown,
        NOT_YET => {
            if !MISSES
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
                .is_multiple_of(RETRY_AFTER)
            {
                return Found::Unknown;
            }
            NOT_YET
        }
        s => s,
    };
    if STATE
        .compare_exchange(from, BUSY, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return match STATE.load(Ordering::Acquire) {
            READY => Found::Ready,
            ABSENT => Found::Absent,
            _ => Found::Unknown,
        };
    }
    // The loader's list is walked under its lock: not from a signal handler, which may have
    // interrupted this very thread inside the loader.
    if crate::unwind::in_signal_handler() {
        STATE.store(from, Ordering::Release);
        return Found::Unknown;
    }
    let mut found = Search(None);
    // SAFETY: `on_object` matches the callback ABI and only touches `found` through `arg`.
    unsafe { libc::dl_iterate_phdr(Some(on_object), (&mut found as *mut Search).cast()) };
    let looks = LOOKS.fetch_add(1, Ordering::Relaxed) + 1;
    let not_yet = || {
        if looks >= MAX_LOOKS {
            STATE.store(ABSENT, Ordering::Release);
            Found::Absent
        } else {
            STATE.store(NOT_YET, Ordering::Release);
            Found::Unknown
        }
    };
    let Some(jvm) = found.0 else {
        return not_yet();
    };
    let mut l = Layout::EMPTY;
    l.ranges = jvm.ranges;
    l.nranges = jvm.nranges;
    // Tables that cannot be read yet: libjvm may be in the list before its relocations are
    // done (another thread inside its dlopen). Looked at again later.
    if read_tables(&jvm, &mut l).is_none() {
        return not_yet();
    }
    if !l.can_walk() {
        crate::sys::say(&[
            b"libjvm.so has no usable HotSpot metadata (gHotSpotVMStructs); ",
            b"Java frames are crossed with frame pointers and not named",
        ]);
        STATE.store(ABSENT, Ordering::Release);
        return Found::Absent;
    }
    // SAFETY: this thread moved STATE to BUSY, so no one else writes or reads LAYOUT yet.
    unsafe { *LAYOUT.0.get() = l };
    STATE.store(READY, Ordering::Release);
    // No rule was cached for code in no object while this ran (see `Found::Unknown`), but
    // walks memorized meanwhile crossed JIT code with frame pointers: forget them (and the
    // rules, which costs nothing more).
    crate::profiler::code_unloaded();
    Found::Ready
}

/// In a forked child: a look another thread was making when the process forked is made
/// again, and a cache entry it was writing is freed.
pub fn after_fork_child() {
    let _ = STATE.compare_exchange(BUSY, UNINIT, Ordering::AcqRel, Ordering::Relaxed);
    for e in &COMPILED {
        let s = e.seq.load(Ordering::Relaxed);
        if s & 1 != 0 {
            e.pc.store(0, Ordering::Relaxed);
            e.seq.store(s + 1, Ordering::Release);
        }
    }
}

/// `prof_java:false`: never look (JIT code is crossed with frame pointers).
pub fn disable() {
    STATE.store(ABSENT, Ordering::Release);
}

/// Whether the HotSpot tables were found (the dump writes names then).
pub fn ready() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

// ---- the walk -------------------------------------------------------------------------------

/// Whether `pc` lies in the JVM's code cache (the walk then calls `step`). Two loads.
#[inline]
pub fn claims(pc: usize) -> bool {
    let Some(l) = layout() else {
        return false;
    };
    // SAFETY: static variables of libjvm (addresses from its own tables), always mapped.
    let (lo, hi) = unsafe {
        (
            raw::<usize>(l.low_bound_addr),
            raw::<usize>(l.high_bound_addr),
        )
    };
    pc >= lo && pc < hi
}

/// A committed range of one code heap: reads inside it are safe.
#[derive(Clone, Copy)]
struct Heap {
    lo: usize,
    hi: usize,
}

impl Heap {
    fn get<T: Copy>(&self, addr: usize) -> Option<T> {
        let end = addr.checked_add(core::mem::size_of::<T>())?;
        if addr < self.lo || end > self.hi {
            return None;
        }
        // SAFETY: inside the heap's committed part, which is never uncommitted while the
        // JVM runs.
        Some(unsafe { raw::<T>(addr) })
    }
}

/// The blob holding `addr`: (blob address, its heap).
fn find_blob(l: &Layout, addr: usize) -> Option<(usize, Heap)> {
    // SAFETY: a static variable of libjvm.
    let heaps = unsafe { raw::<usize>(l.heaps_addr) };
    if heaps == 0 {
        return None;
    }
    // SAFETY: `CodeCache::_heaps` points at a GrowableArray allocated once at start-up and
    // never freed; its data array likewise.
    let (len, data) = unsafe {
        (
            raw::<i32>(heaps + l.ga_len),
            raw::<usize>(heaps + l.ga_data),
        )
    };
    if !(1..=8).contains(&len) || data == 0 {
        return None;
    }
    for i in 0..len as usize {
        // SAFETY: as above: element `i` of the array, `len` of them.
        let heap = unsafe { raw::<usize>(data + i * 8) };
        if heap == 0 {
            continue;
        }
        // SAFETY: a CodeHeap, allocated at start-up and never freed.
        let (lo, hi) = unsafe {
            (
                raw::<usize>(heap + l.heap_memory + l.vs_low),
                raw::<usize>(heap + l.heap_memory + l.vs_high),
            )
        };
        if addr < lo || addr >= hi {
            continue;
        }
        // SAFETY: as above.
        let (seg_lo, seg_hi, shift) = unsafe {
            (
                raw::<usize>(heap + l.heap_segmap + l.vs_low),
                raw::<usize>(heap + l.heap_segmap + l.vs_high),
                raw::<i32>(heap + l.heap_shift),
            )
        };
        if !(4..=16).contains(&shift) {
            return None;
        }
        let segmap = Heap {
            lo: seg_lo,
            hi: seg_hi,
        };
        let mut idx = (addr - lo) >> shift;
        let mut tag = segmap.get::<u8>(seg_lo + idx)?;
        if tag == 0xff {
            return None; // a free segment
        }
        // Each byte counts back towards its block's first segment (0); a long block takes
        // several jumps.
        let mut jumps = 0;
        while tag > 0 {
            idx = idx.checked_sub(tag as usize)?;
            tag = segmap.get::<u8>(seg_lo + idx)?;
            jumps += 1;
            if jumps > 1 << 16 {
                return None;
            }
        }
        let code = Heap { lo, hi };
        let block = lo + (idx << shift);
        if code.get::<u8>(block + l.block_used)? == 0 {
            return None;
        }
        let blob = block + l.block_size;
        let size = code.get::<i32>(blob + l.blob_size)?;
        if size <= 0 || addr >= blob + size as usize || blob + size as usize > hi {
            return None;
        }
        return Some((blob, code));
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlobKind {
    Compiled,
    Interpreter,
    Other,
}

/// Name pointers already recognized: `nmethod`, `native nmethod`, `Interpreter` (string
/// literals of libjvm, the same pointer in every blob of a kind).
static KNOWN_NAMES: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
const KINDS: [BlobKind; 3] = [
    BlobKind::Compiled,
    BlobKind::Compiled,
    BlobKind::Interpreter,
];

fn kind_of(l: &Layout, blob: usize, heap: Heap) -> Option<BlobKind> {
    let name = heap.get::<usize>(blob + l.blob_name)?;
    if name == 0 {
        return Some(BlobKind::Other);
    }
    for (known, kind) in KNOWN_NAMES.iter().zip(KINDS) {
        if known.load(Ordering::Relaxed) == name {
            return Some(kind);
        }
    }
    // Names are string literals in libjvm: read only there.
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        if !l.in_jvm(name + i, 1) {
            return Some(BlobKind::Other);
        }
        // SAFETY: inside libjvm's readable segments (checked just above).
        *b = unsafe { raw::<u8>(name + i) };
        if *b == 0 {
            break;
        }
    }
    let which = match &buf[..] {
        [b'n', b'm', b'e', b't', b'h', b'o', b'd', 0, ..] => 0,
        [
            b'n',
            b'a',
            b't',
            b'i',
            b'v',
            b'e',
            b' ',
            b'n',
            b'm',
            b'e',
            b't',
            b'h',
            b'o',
            b'd',
            0,
            ..,
        ] => 1,
        [
            b'I',
            b'n',
            b't',
            b'e',
            b'r',
            b'p',
            b'r',
            b'e',
            b't',
            b'e',
            b'r',
            0,
            ..,
        ] => 2,
        _ => return Some(BlobKind::Other),
    };
    KNOWN_NAMES[which].store(name, Ordering::Relaxed);
    Some(KINDS[which])
}

// ---- the compiled-frame cache ------------------------------------------------------------------

/// What a compiled frame's step found, by return address: its blob, the blob's compilation id
/// (so that code compiled again at the same address is not mistaken for it), its frame size
/// and up to four Java methods (its scope chain). Entries are written by any thread under a
/// sequence number (odd while written); a reader that sees it change, or odd, misses.
struct Compiled {
    seq: AtomicU64,
    pc: AtomicU64,
    blob: AtomicU64,
    /// compile id (low 32 bits) | frame words << 32 | methods << 48.
    shape: AtomicU64,
    methods: [AtomicU64; 4],
}

const COMPILED_BITS: u32 = 12;
static COMPILED: [Compiled; 1 << COMPILED_BITS] = [const {
    Compiled {
        seq: AtomicU64::new(0),
        pc: AtomicU64::new(0),
        blob: AtomicU64::new(0),
        shape: AtomicU64::new(0),
        methods: [const { AtomicU64::new(0) }; 4],
    }
}; 1 << COMPILED_BITS];

fn compiled_slot(pc: usize) -> &'static Compiled {
    &COMPILED[((pc as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - COMPILED_BITS)) as usize]
}

/// The cached frame size and methods of the frame at `pc` in `blob` (compile id `id`).
fn compiled_get(pc: usize, blob: usize, id: u32, out: &mut [usize; 4]) -> Option<(i32, usize)> {
    let e = compiled_slot(pc);
    let s1 = e.seq.load(Ordering::Acquire);
    if s1 & 1 != 0 || e.pc.load(Ordering::Relaxed) != pc as u64 {
        return None;
    }
    let b = e.blob.load(Ordering::Relaxed);
    let shape = e.shape.load(Ordering::Relaxed);
    for (o, m) in out.iter_mut().zip(&e.methods) {
        *o = m.load(Ordering::Relaxed) as usize;
    }
    core::sync::atomic::fence(Ordering::Acquire);
    if e.seq.load(Ordering::Relaxed) != s1 || b != blob as u64 || shape as u32 != id {
        return None;
    }
    let n = (shape >> 48) as usize;
    (1..=4)
        .contains(&n)
        .then_some(((shape >> 32) as u16 as i32, n))
}

fn compiled_put(pc: usize, blob: usize, id: u32, words: i32, methods: &[usize]) {
    let e = compiled_slot(pc);
    let s = e.seq.load(Ordering::Relaxed);
    if s & 1 != 0
        || e.seq
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return; // another thread is writing it
    }
    // The odd number is visible before any field changes (a seqlock's writer).
    core::sync::atomic::fence(Ordering::Release);
    e.pc.store(pc as u64, Ordering::Relaxed);
    e.blob.store(blob as u64, Ordering::Relaxed);
    e.shape.store(
        id as u64 | (words as u16 as u64) << 32 | (methods.len() as u64) << 48,
        Ordering::Relaxed,
    );
    for (m, &v) in e.methods.iter().zip(methods) {
        m.store(v as u64, Ordering::Relaxed);
    }
    e.seq.store(s + 2, Ordering::Release);
}

/// A user-space, aligned pointer (a `Method*` read from the JVM's memory).
fn plausible(p: usize) -> bool {
    p != 0 && p & 7 == 0 && p < 1 << 47
}

/// rbp at a Java step: `value`, or, when `at` is nonzero, the word saved at `at` (a compiled
/// frame's saved rbp, read only when a step uses it: compiled code keeps other values in rbp,
/// and a word read is a word the memo compares).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Bp {
    pub value: usize,
    pub at: usize,
}

/// What makes a Java step repeatable, for the thread's memo of its last walk (`memo.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Witness {
    /// The step depends on nothing that changes (the interpreter, the call stub).
    Fixed,
    /// A compiled method or a stub: the step holds while this aligned word of its blob (a
    /// method's compile id and level, a stub's size) is unchanged; the code heap's committed memory stays mapped for the life of
    /// the JVM (HotSpot never shrinks a code heap: `CodeHeap::shrink_by` is unimplemented).
    Word(usize, usize),
    /// No way to tell: the walk is not memorized.
    Missing,
}

/// One Java-side step from the frame at `pc` (a return address into the code cache) with
/// stack pointer `sp` and rbp `bp` (`trusted`: the walk got here by unwind rules and HotSpot
/// steps only, no frame-pointer guess): `emit` gets the frame's Java methods (innermost first;
/// false: no room); returns the caller's (sp, pc, rbp), or None to end the walk.
pub fn step(
    pc: usize,
    sp: usize,
    bp: Bp,
    trusted: bool,
    read: &mut dyn FnMut(usize) -> Option<usize>,
    emit: &mut dyn FnMut(usize) -> bool,
    witness: &mut Witness,
) -> Option<(usize, usize, Bp)> {
    *witness = Witness::Missing;
    let mut bp_now = || -> Option<usize> {
        if bp.at != 0 {
            read(bp.at)
        } else {
            Some(bp.value)
        }
    };
    let l = layout()?;
    let (blob, heap) = find_blob(l, pc - 1)?;
    // SAFETY: a static variable of libjvm.
    if l.call_stub_ret_addr != NONE && pc == unsafe { raw::<usize>(l.call_stub_ret_addr) } {
        // Java called from C++: the call stub keeps a frame pointer.
        *witness = Witness::Fixed;
        let bp = bp_now()?;
        if bp < sp {
            return None;
        }
        let value = read(bp)?;
        return Some((bp + 16, read(bp + 8)?, Bp { value, at: 0 }));
    }
    match kind_of(l, blob, heap)? {
        BlobKind::Interpreter => {
            *witness = Witness::Fixed;
            let bp = bp_now()?;
            if bp & 7 != 0 || bp <= sp {
                return None;
            }
            let method = read(bp - 24)?;
            let sender_sp = read(bp - 8)?;
            let (ra, caller_bp) = (read(bp + 8)?, read(bp)?);
            if sender_sp < bp + 16 {
                return None;
            }
            if plausible(method) {
                emit(JAVA_TAG | method);
            }
            Some((
                sender_sp,
                ra,
                Bp {
                    value: caller_bp,
                    at: 0,
                },
            ))
        }
        kind => {
            let id = match l.nm_compile_id {
                NONE => None,
                f if kind == BlobKind::Compiled => heap.get::<i32>(blob + f).map(|i| i as u32),
                _ => None,
            };
            // A compiled method's word holds its compile id; another stub's, its size (most
            // stubs live as long as the JVM, but some are freed: upcall stubs, say).
            let field = match (kind, l.nm_compile_id) {
                (BlobKind::Compiled, NONE) => None,
                (BlobKind::Compiled, f) => Some(f),
                _ => Some(l.blob_size),
            };
            *witness = field
                .map(|f| (blob + f) & !7)
                .and_then(|w| heap.get::<usize>(w).map(|v| Witness::Word(w, v)))
                .unwrap_or(Witness::Missing);
            let mut cached = [0usize; 4];
            let hit = id.and_then(|id| compiled_get(pc, blob, id, &mut cached));
            let words = match hit {
                Some((words, n)) => {
                    for &m in &cached[..n] {
                        if !emit(m) {
                            break;
                        }
                    }
                    words
                }
                None => {
                    let words = heap.get::<i32>(blob + l.blob_frame_size)?;
                    if !(2..1 << 16).contains(&words) {
                        return None;
                    }
                    if kind == BlobKind::Compiled {
                        let method = heap.get::<usize>(blob + l.nm_method)?;
                        // The methods, kept for the cache as they go out.
                        let (mut n, mut whole) = (0usize, true);
                        let mut keep = |f: usize| {
                            if n < cached.len() {
                                cached[n] = f;
                            }
                            n += 1;
                            let room = emit(f);
                            whole &= room;
                            room
                        };
                        if !(l.can_decode_scopes() && scopes(l, blob, heap, pc, trusted, &mut keep))
                            && plausible(method)
                        {
                            keep(JAVA_TAG | method);
                        }
                        if let Some(id) = id.filter(|_| whole && (1..=4).contains(&n)) {
                            compiled_put(pc, blob, id, words, &cached[..n]);
                        }
                    }
                    words
                }
            };
            let caller_sp = sp + words as usize * 8;
            // The saved rbp is read when a step needs it (`Bp`).
            Some((
                caller_sp,
                read(caller_sp - 8)?,
                Bp {
                    value: 0,
                    at: caller_sp - 16,
                },
            ))
        }
    }
}

/// Reads at `addr` for `len` bytes from a region known to hold `[lo, hi)`.
fn within(lo: usize, hi: usize, addr: usize, len: usize) -> bool {
    addr >= lo && addr.checked_add(len).is_some_and(|e| e <= hi)
}

/// Emits the methods of the scope chain recorded for the return address `pc` in the nmethod
/// at `blob`, innermost first. False when there is no exact record (then the caller names
/// the nmethod's own method).
fn scopes(
    l: &Layout,
    blob: usize,
    heap: Heap,
    pc: usize,
    trusted: bool,
    emit: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let Some(size) = heap.get::<i32>(blob + l.blob_size).filter(|&s| s > 0) else {
        return false;
    };
    let blob_end = blob.saturating_add(size as usize);
    let code_begin = if l.code_begin_ptr != NONE {
        heap.get::<usize>(blob + l.code_begin_ptr)
    } else {
        heap.get::<i32>(blob + l.code_offset)
            .and_then(|o| blob.checked_add_signed(o as isize))
    };
    let Some(code_begin) = code_begin.filter(|&c| c > blob && c <= pc && pc < blob_end) else {
        return false;
    };
    let pc_off = (pc - code_begin) as i32;
    // Where the debug information lives: in the blob (JDK ≤ 22) or in its immutable block
    // (read only when the walk is trusted, as the mutable block below).
    let (base, lo, hi) = if l.immutable != NONE {
        if !trusted {
            return false;
        }
        let Some(p) = heap.get::<usize>(blob + l.immutable) else {
            return false;
        };
        let size = if l.immutable_size != NONE {
            heap.get::<i32>(blob + l.immutable_size).unwrap_or(0)
        } else {
            0
        };
        if !plausible(p) || size <= 0 {
            return false;
        }
        (p, p, p.saturating_add(size as usize))
    } else {
        (blob, blob, blob_end)
    };
    // The PcDescs: [_scopes_pcs_offset, the next section's offset) of that region.
    let (Some(first), Some(end)) = (
        heap.get::<i32>(blob + l.nm_scopes_pcs),
        heap.get::<i32>(blob + l.nm_scopes_pcs + 4),
    ) else {
        return false;
    };
    if first < 0 || end < first {
        return false;
    }
    let (pcs, pcs_end) = (
        base.saturating_add(first as usize),
        base.saturating_add(end as usize),
    );
    if !within(lo, hi, pcs, pcs_end - pcs) {
        return false;
    }
    let n = (pcs_end - pcs) / 16;
    // SAFETY: every PcDesc read below is inside [pcs, pcs_end), checked to lie in the
    // nmethod's blob or immutable block.
    let pc_of = |i: usize| unsafe { raw::<i32>(pcs + i * 16) };
    let (mut lo_i, mut hi_i) = (0usize, n);
    while lo_i < hi_i {
        let mid = (lo_i + hi_i) / 2;
        if pc_of(mid) < pc_off {
            lo_i = mid + 1;
        } else {
            hi_i = mid;
        }
    }
    if lo_i >= n || pc_of(lo_i) != pc_off {
        return false;
    }
    // SAFETY: as above.
    let mut offset = unsafe { raw::<i32>(pcs + lo_i * 16 + 4) };
    let scopes = if l.scopes_begin_ptr != NONE {
        heap.get::<usize>(blob + l.scopes_begin_ptr)
    } else {
        heap.get::<i32>(blob + l.scopes_offset)
            .filter(|&o| o >= 0)
            .map(|o| base.saturating_add(o as usize))
    };
    let Some(scopes) = scopes.filter(|&s| s >= lo && s < hi) else {
        return false;
    };
    // The metadata array and where it ends: inside the blob (JDK ≤ 24), or the nmethod's
    // mutable block of `_mutable_data_size` bytes (JDK 25+), whose relocations come first.
    let at = |base: usize, off: i64| base.checked_add_signed(off as isize);
    let (metadata, meta_end, in_blob) = match l.metadata() {
        Metadata::FromBlob(f) => match heap.get::<i32>(blob + f).and_then(|o| at(blob, o as i64)) {
            Some(m) => (m, blob_end, true),
            None => return false,
        },
        Metadata::FromData { data, meta } => {
            match (heap.get::<i32>(blob + data), heap.get::<u16>(blob + meta)) {
                (Some(d), Some(m)) => match at(blob, d as i64 + m as i64) {
                    Some(p) => (p, blob_end, true),
                    None => return false,
                },
                _ => return false,
            }
        }
        Metadata::Mutable {
            mutable,
            reloc_size,
        } => match (
            heap.get::<usize>(blob + mutable),
            heap.get::<i32>(blob + reloc_size),
            heap.get::<i32>(blob + l.mutable_data_size),
        ) {
            (Some(p), Some(r), Some(size)) if plausible(p) && r >= 0 && size > r => {
                (p + r as usize, p + size as usize, false)
            }
            _ => return false,
        },
        Metadata::None => return false,
    };
    // Off-blob blocks are read only when the walk got here by unwind rules it trusts (the
    // nmethod is then alive: its frame is on this stack).
    if !in_blob && !trusted {
        return false;
    }
    let unsigned5_base: u8 = if l.major >= 20 { 1 } else { 0 };
    let mut emitted = false;
    for _ in 0..32 {
        if offset <= 0 {
            break;
        }
        let mut at = scopes.saturating_add(offset as usize);
        let mut int = || -> Option<u32> {
            // HotSpot's compressed integers (UNSIGNED5 since JDK 20: bytes offset by one).
            let mut shift = 0;
            let mut n: u32 = 0;
            loop {
                if !within(lo, hi, at, 1) {
                    return None;
                }
                // SAFETY: inside the debug information's region (checked just above).
                let c = unsafe { raw::<u8>(at) };
                at += 1;
                n = n.wrapping_add((c.wrapping_sub(unsigned5_base) as u32) << shift);
                if c < 192 || shift >= 24 {
                    return Some(n);
                }
                shift += 6;
            }
        };
        let (Some(sender), Some(method_index), Some(_bci)) = (int(), int(), int()) else {
            break;
        };
        if method_index == 0 {
            break;
        }
        // Metadata entries are words in the nmethod (≤ JDK 24) or its mutable block.
        let entry = metadata.saturating_add((method_index as usize - 1).saturating_mul(8));
        let method = if in_blob {
            heap.get::<usize>(entry)
        } else if within(metadata, meta_end, entry, 8) {
            // SAFETY: inside the nmethod's mutable block (bounded by its recorded size just
            // above), alive with the nmethod (see the module comment).
            Some(unsafe { raw::<usize>(entry) })
        } else {
            None
        };
        match method {
            Some(m) if plausible(m) => {
                if !emit(JAVA_TAG | m) {
                    return true;
                }
                emitted = true;
            }
            _ => break,
        }
        offset = sender as i32;
    }
    emitted
}

// ---- names, at dump time ----------------------------------------------------------------------

/// Reads `buf.len()` bytes at `addr` of our own memory without faulting (`process_vm_readv`
/// on ourselves): a method unloaded since its sample fails cleanly.
fn peek(addr: usize, buf: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: buf.len(),
    };
    let saved = crate::sys::errno();
    // SAFETY: writes only `buf`; a bad remote address is reported, not faulted on.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    crate::sys::set_errno(saved);
    n == buf.len() as isize
}

fn peek_word(addr: usize) -> Option<usize> {
    let mut b = [0u8; 8];
    peek(addr, &mut b).then(|| usize::from_ne_bytes(b))
}

fn peek_u16(addr: usize) -> Option<u16> {
    let mut b = [0u8; 2];
    peek(addr, &mut b).then(|| u16::from_ne_bytes(b))
}

/// The symbol at `sym` into `out` (at most `out.len()` bytes): its length.
fn symbol(l: &Layout, sym: usize, out: &mut [u8]) -> Option<usize> {
    if !plausible(sym) {
        return None;
    }
    let len = (peek_u16(sym + l.sym_length)? as usize).min(out.len());
    if len == 0 || !peek(sym + l.sym_body, &mut out[..len]) {
        return None;
    }
    Some(len)
}

/// Writes `pkg.Class.method` of the `Method*` in a Java frame (`JAVA_TAG | Method*`) into
/// `out`; returns its length, or None when the method cannot be read (unloaded, say).
pub fn name_of(frame: usize, out: &mut [u8; 512]) -> Option<usize> {
    let l = layout()?;
    if frame & JAVA_TAG == 0 || !l.can_name() {
        return None;
    }
    let method = frame & !JAVA_TAG;
    let cm = peek_word(method + l.method_const)?;
    let cp = peek_word(cm + l.const_constants)?;
    let name_index = peek_u16(cm + l.const_name_index)? as usize;
    let holder = peek_word(cp + l.cp_holder)?;
    let class_sym = peek_word(holder + l.klass_name)?;
    let name_sym = peek_word(cp + l.cp_size + name_index * 8)?;
    let mut n = symbol(l, class_sym, &mut out[..400])?;
    for b in &mut out[..n] {
        if *b == b'/' {
            *b = b'.';
        }
    }
    out[n] = b'.';
    n += 1;
    let m = symbol(l, name_sym, &mut out[n..])?;
    n += m;
    // No spaces or control characters (dump lines are split on spaces).
    out[..n].iter().all(|&b| b > b' ' && b != 0x7f).then_some(n)
}
