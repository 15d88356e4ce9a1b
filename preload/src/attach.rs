//! Attached to a running process: the library was loaded with `dlopen` (HotSpot's dynamic
//! attach, `load` of a native agent, which calls `Agent_OnAttach`), after every object that
//! allocates was bound to the real malloc. Nothing calls our exported functions by name then;
//! the objects call through their import slots (GOT entries of `R_X86_64_JUMP_SLOT` and
//! `R_X86_64_GLOB_DAT` relocations). So `Agent_OnAttach` starts the profiler with the agent's
//! options (`JEPROF_CONF` syntax) and points those slots at the same functions `LD_PRELOAD`
//! uses: one profiler, two ways in.
//!
//! - Every loaded object is patched (the executable, libc, libjvm, JNI libraries loaded before
//!   the attach), read-only (RELRO) slots through a brief `mprotect`. Frees are patched in every
//!   object before any allocation is, so that no block we record can be freed past us.
//! - `dlopen` slots point at `jeprof_dlopen`, which patches the objects a load brought in
//!   (also a library unloaded and loaded again); `dlclose` at the preload's `dlclose`.
//! - Never unpatched: `jeprof-rs stop` turns sampling off; `jeprof-rs detach` stops recording
//!   and empties the tables, and the hooks then only forward (`profiler.rs`). Objects loaded
//!   while detached are still patched, so that a `start` finds every free going through us.
//! - Blocks and mappings made before the attach are unknown: their frees go straight through.
//! - The walk over the loaded objects (`dl_iterate_phdr`, which takes the loader's lock) runs
//!   in `Agent_OnAttach` and after a `dlopen` returns, never inside an allocation hook.

use core::ffi::{CStr, c_char, c_int, c_void};

use crate::profiler::{self, AttachRefusal};
use crate::sync::SpinLock;
use crate::{real, sys};

/// What `Agent_OnAttach` returns besides 0 (`jeprof-rs attach` names them).
pub const ALREADY_PROFILED: c_int = 200;
pub const CANNOT_START: c_int = 201;
/// Profiled before, detached since: `jeprof-rs start` profiles it again (with its options).
pub const DETACHED: c_int = 202;

/// The import slots we take over (frees first, see the module doc), as our functions' names:
/// their addresses come from `dlsym` on this library's own handle. (Taking the address of an
/// exported function in Rust goes through our own import slot, which the loader bound to the
/// first definition in the global scope: libc's, when we were loaded with `dlopen`.)
const NAMES: [(&CStr, bool); 18] = [
    (c"free", true),
    (c"realloc", true),
    (c"reallocarray", true),
    (c"munmap", true),
    (c"mremap", true),
    (c"dlclose", true),
    (c"malloc", false),
    (c"calloc", false),
    (c"posix_memalign", false),
    (c"aligned_alloc", false),
    (c"memalign", false),
    (c"valloc", false),
    (c"pvalloc", false),
    (c"mmap", false),
    (c"mmap64", false),
    (c"malloc_usable_size", false),
    (c"_exit", false),
    (c"_Exit", false),
];

/// Our definitions of `NAMES` (0: not found), and `dlopen`'s replacement; set once by
/// `on_attach` before the first patch.
struct Targets([(usize, bool); NAMES.len() + 1]);
static TARGETS: SpinLock<Targets> = SpinLock::new(Targets([(0, false); NAMES.len() + 1]));

fn resolve_targets(t: &mut Targets) -> bool {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr only writes `info`; the address is a function of this library.
    if unsafe { libc::dladdr(on_attach as *const c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return false;
    }
    // SAFETY: our own file name, already loaded (RTLD_NOLOAD only finds it).
    let me = unsafe { libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if me.is_null() {
        return false;
    }
    for (slot, (name, free)) in t.0.iter_mut().zip(NAMES) {
        // SAFETY: a handle dlopen returned and a NUL-terminated name; lookups start at us.
        *slot = (unsafe { libc::dlsym(me, name.as_ptr()) } as usize, free);
    }
    t.0[NAMES.len()] = (jeprof_dlopen as *const () as usize, true);
    t.0[..NAMES.len()].iter().all(|&(p, _)| p != 0)
}

fn target_of(t: &Targets, name: &[u8], frees: bool) -> Option<usize> {
    if name == b"dlopen" {
        return frees.then_some(t.0[NAMES.len()].0);
    }
    NAMES
        .iter()
        .zip(&t.0)
        .find(|(n, t)| t.1 == frees && t.0 != 0 && n.0.to_bytes() == name)
        .map(|(_, t)| t.0)
}

/// Serializes patching (an attach and a `dlopen` on another thread).
static PATCHING: SpinLock<()> = SpinLock::new(());

/// `Agent_OnAttach` (see `lib.rs`): start with `options`, then patch every loaded object.
///
/// # Safety
/// `options` is null or a NUL-terminated string valid for the call.
pub unsafe fn on_attach(options: *const c_char) -> c_int {
    let conf: &[u8] = if options.is_null() {
        b""
    } else {
        // SAFETY: HotSpot passes a NUL-terminated string (or null), valid for this call.
        unsafe { CStr::from_ptr(options) }.to_bytes()
    };
    match profiler::init_attached(conf) {
        Err(AttachRefusal::Already) => return ALREADY_PROFILED,
        Err(AttachRefusal::Detached) => return DETACHED,
        Err(AttachRefusal::Failed) => return CANNOT_START,
        Ok(()) => {}
    }
    let resolved = TARGETS
        .acquire()
        .is_some_and(|mut t| resolve_targets(&mut t));
    if !resolved {
        sys::say(&[b"attach: cannot find this library's own functions; nothing is profiled"]);
        return CANNOT_START;
    }
    let patched = patch_all();
    let mut line = crate::fmt::StackBuf::<160>::new();
    {
        use core::fmt::Write as _;
        let _ = write!(
            line,
            "attached: {patched} import slots now go through the profiler"
        );
    }
    sys::say(&[line.as_bytes()]);
    0
}

/// Points the import slots of every loaded object at our functions; returns how many slots
/// changed.
pub fn patch_all() -> usize {
    let Some(_g) = PATCHING.acquire() else {
        return 0;
    };
    let Some(t) = TARGETS.acquire() else {
        return 0;
    };
    let mut n = 0usize;
    for frees in [true, false] {
        let mut pass = Pass {
            frees,
            changed: 0,
            targets: &t,
        };
        // SAFETY: the callback only reads the object descriptions dl_iterate_phdr hands it
        // (valid during the call; the loader lock keeps the objects mapped) and `pass`.
        unsafe { libc::dl_iterate_phdr(Some(on_object), (&mut pass as *mut Pass<'_>).cast()) };
        n += pass.changed;
    }
    n
}

struct Pass<'a> {
    frees: bool,
    changed: usize,
    targets: &'a Targets,
}

extern "C" fn on_object(info: *mut libc::dl_phdr_info, _size: usize, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Pass of patch_all; `info` is valid for this call.
    let (pass, info) = unsafe { (&mut *(arg as *mut Pass<'_>), &*info) };
    let name: &[u8] = if info.dlpi_name.is_null() {
        b""
    } else {
        // SAFETY: a NUL-terminated path owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let base = info.dlpi_addr as usize;
    if name.starts_with(b"linux-vdso")
        || name.starts_with(b"linux-gate")
        || contains(name, b"/ld-linux")
        || contains(name, b"libjeprof_preload")
    {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers of a mapped object.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    // SAFETY: the object is mapped and relocated (dl_iterate_phdr lists only loaded objects).
    pass.changed += unsafe { patch_object(base, phdrs, pass.frees, pass.targets) };
    0
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// ELF64 `Elf64_Dyn` (not in the libc crate).
#[repr(C)]
struct Dyn {
    d_tag: i64,
    d_un: u64,
}

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_STRSZ: i64 = 10;
const DT_JMPREL: i64 = 23;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const PT_GNU_RELRO: u32 = 0x6474_e552;

/// Patches one object; returns the slots changed.
///
/// # Safety
/// `base` and `phdrs` describe a mapped, relocated ELF64 object.
unsafe fn patch_object(
    base: usize,
    phdrs: &[libc::Elf64_Phdr],
    frees: bool,
    targets: &Targets,
) -> usize {
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        return 0;
    };
    let relro = phdrs.iter().find(|p| p.p_type == PT_GNU_RELRO).map(|p| {
        (
            base + p.p_vaddr as usize,
            base + (p.p_vaddr + p.p_memsz) as usize,
        )
    });
    let (mut strtab, mut strsz, mut symtab) = (0usize, 0usize, 0usize);
    let (mut rela, mut relasz, mut jmprel, mut pltrelsz) = (0usize, 0usize, 0usize, 0usize);
    // glibc relocates most dynamic entries in place; a value below the base was not.
    let addr = |v: u64| {
        let v = v as usize;
        if v < base { v + base } else { v }
    };
    let mut d = (base + dynamic.p_vaddr as usize) as *const Dyn;
    for _ in 0..4096 {
        // SAFETY: inside the object's PT_DYNAMIC, which ends with DT_NULL.
        let e = unsafe { &*d };
        match e.d_tag {
            DT_NULL => break,
            DT_STRTAB => strtab = addr(e.d_un),
            DT_STRSZ => strsz = e.d_un as usize,
            DT_SYMTAB => symtab = addr(e.d_un),
            DT_RELA => rela = addr(e.d_un),
            DT_RELASZ => relasz = e.d_un as usize,
            DT_JMPREL => jmprel = addr(e.d_un),
            DT_PLTRELSZ => pltrelsz = e.d_un as usize,
            _ => {}
        }
        // SAFETY: the next entry of the same array (the loop stops at DT_NULL).
        d = unsafe { d.add(1) };
    }
    if strtab == 0 || symtab == 0 {
        return 0;
    }
    let mut changed = 0;
    for (table, bytes) in [(rela, relasz), (jmprel, pltrelsz)] {
        if table == 0 {
            continue;
        }
        let n = bytes / core::mem::size_of::<libc::Elf64_Rela>();
        // SAFETY: the object's relocation table of `bytes` bytes.
        let relocs = unsafe { core::slice::from_raw_parts(table as *const libc::Elf64_Rela, n) };
        for r in relocs {
            let kind = (r.r_info & 0xffff_ffff) as u32;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            let sym = (r.r_info >> 32) as usize;
            // SAFETY: symbol `sym` of the object's dynamic symbol table.
            let st_name =
                unsafe { (*(symtab as *const libc::Elf64_Sym).add(sym)).st_name } as usize;
            if st_name >= strsz {
                continue;
            }
            // SAFETY: a NUL-terminated name inside the string table.
            let name = unsafe { CStr::from_ptr((strtab + st_name) as *const c_char) }.to_bytes();
            let Some(ours) = target_of(targets, name, frees) else {
                continue;
            };
            let slot = base + r.r_offset as usize;
            // SAFETY: a GOT slot of this object (relocations name addresses inside it).
            if unsafe { write_slot(slot, ours, relro) } {
                changed += 1;
            }
        }
    }
    changed
}

/// Stores `value` into the pointer-sized slot at `slot`, making a read-only (RELRO) page
/// writable for the moment. True if the slot changed.
///
/// # Safety
/// `slot` is an aligned GOT slot of a loaded object.
unsafe fn write_slot(slot: usize, value: usize, relro: Option<(usize, usize)>) -> bool {
    // SAFETY: an aligned, mapped pointer-sized slot; calls through it race harmlessly with
    // the store (each sees the old or the new function, both correct).
    let cell = unsafe { core::sync::atomic::AtomicUsize::from_ptr(slot as *mut usize) };
    if cell.load(core::sync::atomic::Ordering::Relaxed) == value {
        return false;
    }
    let protected = relro.is_some_and(|(lo, hi)| slot >= lo && slot < hi);
    let page = slot & !(sys::PAGE - 1);
    if protected {
        // SAFETY: our own request on a page of a loaded object; restored just below.
        if unsafe {
            libc::mprotect(
                page as *mut c_void,
                sys::PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } != 0
        {
            return false;
        }
    }
    cell.store(value, core::sync::atomic::Ordering::Release);
    if protected {
        // SAFETY: as above: back to read-only.
        unsafe { libc::mprotect(page as *mut c_void, sys::PAGE, libc::PROT_READ) };
    }
    true
}

/// What the `dlopen` slots of an attached process point at: the real `dlopen`, then the new
/// objects are patched. (The real `dlopen` sees this library as its caller, so a bare name is
/// resolved with this library's search path, not the calling object's `DT_RUNPATH`; JVMs load
/// JNI libraries by absolute path.)
///
/// # Safety
/// C `dlopen` contract.
pub unsafe extern "C" fn jeprof_dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let f = real::DLOPEN.get();
    if f.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: the real dlopen, with the caller's arguments.
    let h = unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void>(
            f,
        )(file, mode)
    };
    if !h.is_null() {
        let saved = sys::errno();
        patch_all();
        sys::set_errno(saved);
    }
    h
}
