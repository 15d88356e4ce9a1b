//! DWARF call-frame information (`.eh_frame_hdr` + `.eh_frame`) for x86-64: given a code
//! address, how to find the caller's frame.
//!
//! Pure: the caller injects the memory reader (`Bytes`), so the parser runs on a byte array in
//! tests and on the loaded objects' mapped unwind tables in the profiler. No allocation, no
//! panics on malformed input (every read is bounds-checked and returns `None`).
//!
//! Only what an unwinder for return addresses needs is evaluated: the CFA rule (a register
//! plus an offset), where the return address is saved, and where `rbp` is saved. Rules built
//! from DWARF expressions (signal trampolines, some hand-written assembly) are reported as
//! unsupported, and the walk ends there instead of guessing.
//!
//! Lookup: the binary search table of `.eh_frame_hdr` (sorted initial locations, as GNU ld,
//! gold and lld write it) → FDE → its CIE → run the CIE's initial instructions and the FDE's
//! instructions up to the address.

/// Read access to the memory the unwind tables live in.
pub trait Bytes {
    /// `len` bytes at `addr`, if readable.
    fn get(&self, addr: usize, len: usize) -> Option<&[u8]>;
}

/// A byte slice standing at address `base` (tests, and any fully mapped region).
pub struct Slice<'a> {
    pub base: usize,
    pub data: &'a [u8],
}

impl Bytes for Slice<'_> {
    fn get(&self, addr: usize, len: usize) -> Option<&[u8]> {
        let off = addr.checked_sub(self.base)?;
        self.data.get(off..off.checked_add(len)?)
    }
}

/// DWARF register numbers on x86-64.
pub const RBP: u16 = 6;
pub const RSP: u16 = 7;
pub const RA: u16 = 16;

/// How to step from a frame to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// CFA = (rbp if true, else rsp) + `cfa_offset`.
    pub cfa_is_rbp: bool,
    pub cfa_offset: i64,
    /// The caller's rbp is saved at CFA + this, or unchanged when `None`.
    pub rbp_at: Option<i64>,
    /// The return address is saved at CFA + this.
    pub ra_at: i64,
}

/// Why a rule could not be produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRule {
    /// No FDE covers the address.
    NotCovered,
    /// Tables we do not understand (expressions, unusual encodings, malformed data).
    Unsupported,
}

struct Cursor<'a, B: Bytes> {
    mem: &'a B,
    pos: usize,
    end: usize,
}

impl<'a, B: Bytes> Cursor<'a, B> {
    fn new(mem: &'a B, pos: usize, end: usize) -> Self {
        Cursor { mem, pos, end }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.pos.checked_add(n)? > self.end {
            return None;
        }
        let s = self.mem.get(self.pos, n)?;
        self.pos += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn sleb(&mut self) -> Option<i64> {
        let mut v = 0i64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            v |= ((b & 0x7f) as i64) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
            if shift >= 64 {
                return None;
            }
        }
    }

    /// A pointer in `DW_EH_PE_*` encoding `enc`. `datarel` is the base for datarel values.
    fn encoded(&mut self, enc: u8, datarel: usize) -> Option<usize> {
        if enc == 0xff {
            return None; // omit
        }
        let here = self.pos;
        let raw: i64 = match enc & 0x0f {
            0x00 => self.u64()? as i64,
            0x01 => self.uleb()? as i64,
            0x02 => self.u16()? as i64,
            0x03 => self.u32()? as i64,
            0x04 => self.u64()? as i64,
            0x09 => self.sleb()?,
            0x0a => self.u16()? as i16 as i64,
            0x0b => self.u32()? as i32 as i64,
            0x0c => self.u64()? as i64,
            _ => return None,
        };
        let base = match enc & 0x70 {
            0x00 => 0,
            0x10 => here,
            0x30 => datarel,
            _ => return None, // textrel/funcrel/aligned: not used in .eh_frame on Linux
        };
        if enc & 0x80 != 0 {
            return None; // indirect: only personality pointers use it, and we skip those
        }
        Some((base as i64).wrapping_add(raw) as usize)
    }

    /// Skips a value of encoding `enc` without interpreting it.
    fn skip_encoded(&mut self, enc: u8) -> Option<()> {
        match enc & 0x0f {
            0x00 | 0x04 | 0x0c => self.take(8).map(drop),
            0x01 => self.uleb().map(drop),
            0x09 => self.sleb().map(drop),
            0x02 | 0x0a => self.take(2).map(drop),
            0x03 | 0x0b => self.take(4).map(drop),
            _ => None,
        }
    }
}

/// What we keep of a CIE.
struct Cie {
    code_align: u64,
    data_align: i64,
    ra_reg: u16,
    fde_enc: u8,
    has_aug_data: bool,
    instructions: (usize, usize),
}

/// Where an entry's length field says it ends: (first byte after the length field, end).
fn entry_bounds<B: Bytes>(mem: &B, at: usize) -> Option<(usize, usize)> {
    let mut c = Cursor::new(mem, at, usize::MAX);
    let len = c.u32()?;
    if len == 0 {
        return None; // terminator
    }
    let len = if len == 0xffff_ffff {
        c.u64()?
    } else {
        len as u64
    };
    let start = c.pos;
    Some((start, start.checked_add(usize::try_from(len).ok()?)?))
}

fn parse_cie<B: Bytes>(mem: &B, at: usize) -> Option<Cie> {
    let (start, end) = entry_bounds(mem, at)?;
    let mut c = Cursor::new(mem, start, end);
    if c.u32()? != 0 {
        return None; // not a CIE
    }
    let version = c.u8()?;
    if !matches!(version, 1 | 3 | 4) {
        return None;
    }
    let mut aug = [0u8; 8];
    let mut n = 0;
    loop {
        let b = c.u8()?;
        if b == 0 {
            break;
        }
        if n == aug.len() {
            return None;
        }
        aug[n] = b;
        n += 1;
    }
    let aug = &aug[..n];
    if aug.windows(2).any(|w| w == b"eh") {
        c.take(8)?;
    }
    if version == 4 {
        c.take(2)?; // address size, segment selector size
    }
    let code_align = c.uleb()?;
    let data_align = c.sleb()?;
    let ra_reg = if version == 1 {
        c.u8()? as u16
    } else {
        c.uleb()? as u16
    };
    let mut fde_enc = 0u8;
    let has_aug_data = aug.first() == Some(&b'z');
    if has_aug_data {
        let len = c.uleb()? as usize;
        let data_end = c.pos.checked_add(len)?;
        for &ch in &aug[1..] {
            match ch {
                b'R' => fde_enc = c.u8()?,
                b'P' => {
                    let enc = c.u8()?;
                    c.skip_encoded(enc)?;
                }
                b'L' => {
                    c.u8()?;
                }
                b'S' | b'B' | b'G' => {}
                _ => break, // unknown: the length lets us skip the rest
            }
        }
        c.pos = data_end;
    } else if !aug.is_empty() {
        return None;
    }
    Some(Cie {
        code_align,
        data_align,
        ra_reg,
        fde_enc,
        has_aug_data,
        instructions: (c.pos, end),
    })
}

/// Register state while running CFA instructions.
#[derive(Clone, Copy)]
struct State {
    cfa_reg: u16,
    cfa_offset: i64,
    rbp: Reg,
    ra: Reg,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reg {
    Same,
    At(i64),
    Unknown,
}

const STACK: usize = 8;

/// Runs CFA instructions in `[from, to)` while the location stays at or below `target`.
/// Returns false when it meets something unsupported.
#[allow(clippy::too_many_arguments)]
fn run<B: Bytes>(
    mem: &B,
    (from, to): (usize, usize),
    cie: &Cie,
    loc: &mut usize,
    target: usize,
    st: &mut State,
    initial: &State,
    saved: &mut ([State; STACK], usize),
) -> Option<bool> {
    let mut c = Cursor::new(mem, from, to);
    let set_reg = |st: &mut State, reg: u16, r: Reg| {
        if reg == RBP {
            st.rbp = r;
        } else if reg == cie.ra_reg {
            st.ra = r;
        }
    };
    let restore = |st: &mut State, reg: u16| {
        if reg == RBP {
            st.rbp = initial.rbp;
        } else if reg == cie.ra_reg {
            st.ra = initial.ra;
        }
    };
    while c.pos < to {
        let op = c.u8()?;
        let (high, low) = (op & 0xc0, op & 0x3f);
        let advance = |loc: &mut usize, delta: u64| -> bool {
            *loc = loc.wrapping_add((delta * cie.code_align) as usize);
            *loc > target
        };
        match high {
            0x40 => {
                if advance(loc, low as u64) {
                    return Some(true);
                }
                continue;
            }
            0x80 => {
                let off = c.uleb()? as i64 * cie.data_align;
                set_reg(st, low as u16, Reg::At(off));
                continue;
            }
            0xc0 => {
                restore(st, low as u16);
                continue;
            }
            _ => {}
        }
        match op {
            0x00 => {}
            0x01 => {
                *loc = c.encoded(cie.fde_enc, 0)?;
                if *loc > target {
                    return Some(true);
                }
            }
            0x02 => {
                let d = c.u8()? as u64;
                if advance(loc, d) {
                    return Some(true);
                }
            }
            0x03 => {
                let d = c.u16()? as u64;
                if advance(loc, d) {
                    return Some(true);
                }
            }
            0x04 => {
                let d = c.u32()? as u64;
                if advance(loc, d) {
                    return Some(true);
                }
            }
            0x05 => {
                let reg = c.uleb()? as u16;
                let off = c.uleb()? as i64 * cie.data_align;
                set_reg(st, reg, Reg::At(off));
            }
            0x06 => {
                let reg = c.uleb()? as u16;
                restore(st, reg);
            }
            0x07 => {
                let reg = c.uleb()? as u16;
                set_reg(st, reg, Reg::Unknown);
            }
            0x08 => {
                let reg = c.uleb()? as u16;
                set_reg(st, reg, Reg::Same);
            }
            0x09 => {
                let reg = c.uleb()? as u16;
                c.uleb()?;
                set_reg(st, reg, Reg::Unknown); // saved in another register: not tracked
            }
            0x0a => {
                if saved.1 == STACK {
                    return Some(false);
                }
                saved.0[saved.1] = *st;
                saved.1 += 1;
            }
            0x0b => {
                if saved.1 == 0 {
                    return Some(false);
                }
                saved.1 -= 1;
                // The whole row, CFA included (DWARF 5 §6.4.2.4).
                *st = saved.0[saved.1];
            }
            0x0c => {
                st.cfa_reg = c.uleb()? as u16;
                st.cfa_offset = c.uleb()? as i64;
            }
            0x0d => st.cfa_reg = c.uleb()? as u16,
            0x0e => st.cfa_offset = c.uleb()? as i64,
            0x0f => return Some(false), // def_cfa_expression
            0x10 | 0x16 => {
                let reg = c.uleb()? as u16;
                let len = c.uleb()? as usize;
                c.take(len)?;
                if reg == RBP || reg == cie.ra_reg {
                    return Some(false);
                }
            }
            0x11 => {
                let reg = c.uleb()? as u16;
                let off = c.sleb()? * cie.data_align;
                set_reg(st, reg, Reg::At(off));
            }
            0x12 => {
                st.cfa_reg = c.uleb()? as u16;
                st.cfa_offset = c.sleb()? * cie.data_align;
            }
            0x13 => st.cfa_offset = c.sleb()? * cie.data_align,
            0x14 | 0x15 => {
                let reg = c.uleb()? as u16;
                if op == 0x14 {
                    c.uleb()?;
                } else {
                    c.sleb()?;
                }
                if reg == RBP || reg == cie.ra_reg {
                    return Some(false);
                }
            }
            0x2e => {
                c.uleb()?; // GNU_args_size
            }
            0x2f => {
                let reg = c.uleb()? as u16;
                let off = -(c.uleb()? as i64) * cie.data_align;
                set_reg(st, reg, Reg::At(off));
            }
            _ => return Some(false),
        }
    }
    Some(true)
}

/// Looks up the FDE covering `pc` through the `.eh_frame_hdr` at `hdr` and evaluates its rule.
pub fn rule_for<B: Bytes>(mem: &B, hdr: usize, pc: usize) -> Result<Rule, NoRule> {
    let fde = find_fde(mem, hdr, pc)
        .ok_or(NoRule::Unsupported)?
        .ok_or(NoRule::NotCovered)?;
    eval_fde(mem, fde, pc)?.ok_or(NoRule::Unsupported)
}

/// `Some(None)`: the table was read and no entry covers `pc`.
fn find_fde<B: Bytes>(mem: &B, hdr: usize, pc: usize) -> Option<Option<usize>> {
    let mut c = Cursor::new(mem, hdr, usize::MAX);
    let version = c.u8()?;
    let ptr_enc = c.u8()?;
    let count_enc = c.u8()?;
    let table_enc = c.u8()?;
    if version != 1 || table_enc != 0x3b {
        return None; // only the datarel|sdata4 table that linkers write
    }
    c.encoded(ptr_enc, hdr)?;
    let count = c.encoded(count_enc, hdr)?;
    let table = c.pos;
    if count == 0 {
        return Some(None);
    }
    let entry = |i: usize| -> Option<(usize, usize)> {
        let mut e = Cursor::new(mem, table + i * 8, usize::MAX);
        let a = e.u32()? as i32 as i64;
        let b = e.u32()? as i32 as i64;
        Some((
            (hdr as i64).wrapping_add(a) as usize,
            (hdr as i64).wrapping_add(b) as usize,
        ))
    };
    // Last entry whose initial location is <= pc.
    let (mut lo, mut hi) = (0usize, count);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if entry(mid)?.0 <= pc {
            lo = mid
        } else {
            hi = mid
        }
    }
    let (start, fde) = entry(lo)?;
    if start > pc {
        return Some(None);
    }
    Some(Some(fde))
}

/// `Err(NotCovered)` when the nearest FDE ends before `pc`; `Ok(None)` when unsupported.
fn eval_fde<B: Bytes>(mem: &B, fde: usize, pc: usize) -> Result<Option<Rule>, NoRule> {
    let Some((cie, pc_begin, mut c, end)) = open_fde(mem, fde) else {
        return Ok(None);
    };
    let pc_range = match c.encoded(cie.fde_enc & 0x0f, 0) {
        Some(r) => r,
        None => return Ok(None),
    };
    if pc < pc_begin || pc >= pc_begin.wrapping_add(pc_range) {
        return Err(NoRule::NotCovered); // a gap between functions
    }
    Ok(eval_body(mem, &cie, pc_begin, &mut c, end, pc))
}

#[allow(clippy::type_complexity)]
fn open_fde<B: Bytes>(mem: &B, fde: usize) -> Option<(Cie, usize, Cursor<'_, B>, usize)> {
    let (start, end) = entry_bounds(mem, fde)?;
    let mut c = Cursor::new(mem, start, end);
    let cie_ptr = c.u32()? as usize;
    if cie_ptr == 0 {
        return None; // a CIE, not an FDE
    }
    let cie = parse_cie(mem, start.checked_sub(cie_ptr)?)?;
    let pc_begin = c.encoded(cie.fde_enc, 0)?;
    Some((cie, pc_begin, c, end))
}

fn eval_body<B: Bytes>(
    mem: &B,
    cie: &Cie,
    pc_begin: usize,
    c: &mut Cursor<'_, B>,
    end: usize,
    pc: usize,
) -> Option<Rule> {
    if cie.has_aug_data {
        let len = c.uleb()? as usize;
        c.take(len)?;
    }
    let mut st = State {
        cfa_reg: RSP,
        cfa_offset: 8,
        rbp: Reg::Same,
        ra: Reg::Unknown,
    };
    let mut saved = ([st; STACK], 0usize);
    let mut loc = pc_begin;
    let initial_template = st;
    if !run(
        mem,
        cie.instructions,
        cie,
        &mut loc,
        usize::MAX,
        &mut st,
        &initial_template,
        &mut saved,
    )? {
        return None;
    }
    let initial = st;
    loc = pc_begin;
    if !run(
        mem,
        (c.pos, end),
        cie,
        &mut loc,
        pc,
        &mut st,
        &initial,
        &mut saved,
    )? {
        return None;
    }
    let cfa_is_rbp = match st.cfa_reg {
        RSP => false,
        RBP => true,
        _ => return None,
    };
    let Reg::At(ra_at) = st.ra else { return None };
    let rbp_at = match st.rbp {
        Reg::At(o) => Some(o),
        _ => None,
    };
    Some(Rule {
        cfa_is_rbp,
        cfa_offset: st.cfa_offset,
        rbp_at,
        ra_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny .eh_frame_hdr + .eh_frame by hand: one CIE (zR, sdata4|pcrel) and FDEs
    /// for two functions, like GCC emits for `push rbp; mov rbp, rsp; …; leave; ret`.
    fn image() -> (Vec<u8>, usize, usize) {
        let base = 0x10_0000usize;
        let mut eh = Vec::new();
        // CIE at offset 0 of .eh_frame
        let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b];
        cie.extend([0x0c, 7, 8, 0x90, 1]); // def_cfa rsp+8; offset r16 at cfa-8
        while (cie.len() + 4) % 8 != 0 {
            cie.push(0);
        }
        eh.extend((cie.len() as u32).to_le_bytes());
        eh.extend(&cie);
        let eh_frame_addr = base + 0x1000;
        let mut fdes = Vec::new();
        for (func, len) in [(0x2000usize, 0x40usize), (0x3000, 0x20)] {
            let at = eh.len();
            let mut f = Vec::new();
            f.extend(((at + 4) as u32).to_le_bytes()); // CIE pointer
            let pc_field = eh_frame_addr + at + 8;
            f.extend(((base + func) as i64 - pc_field as i64).to_le_bytes()[..4].iter());
            f.extend((len as u32).to_le_bytes());
            f.push(0); // aug data length
            // push rbp at +1: cfa=rsp+16, rbp at cfa-16; mov rbp,rsp at +4: cfa=rbp+16;
            // leave at +0x30: cfa=rsp+8
            f.extend([
                0x41,
                0x0e,
                16,
                0x86,
                2,
                0x43,
                0x0d,
                6,
                0x42 + 0x29,
                0x0c,
                7,
                8,
            ]);
            while (f.len() + 4) % 8 != 0 {
                f.push(0);
            }
            eh.extend((f.len() as u32).to_le_bytes());
            eh.extend(&f);
            fdes.push((base + func, eh_frame_addr + at));
        }
        eh.extend([0, 0, 0, 0]);
        let hdr_addr = base;
        let mut hdr = vec![1, 0x1b, 0x03, 0x3b];
        hdr.extend(((eh_frame_addr as i64 - (hdr_addr + 4) as i64) as i32).to_le_bytes());
        hdr.extend((fdes.len() as u32).to_le_bytes());
        for (pc, fde) in fdes {
            hdr.extend(((pc - hdr_addr) as i32).to_le_bytes());
            hdr.extend(((fde - hdr_addr) as i32).to_le_bytes());
        }
        let mut mem = vec![0u8; 0x4000];
        mem[..hdr.len()].copy_from_slice(&hdr);
        mem[0x1000..0x1000 + eh.len()].copy_from_slice(&eh);
        (mem, base, hdr_addr)
    }

    #[test]
    fn evaluates_a_frame_pointer_prologue() {
        let (mem, base, hdr) = image();
        let m = Slice { base, data: &mem };
        let f = base + 0x2000;
        let r = |pc| rule_for(&m, hdr, pc);
        assert_eq!(
            r(f),
            Ok(Rule {
                cfa_is_rbp: false,
                cfa_offset: 8,
                rbp_at: None,
                ra_at: -8
            })
        );
        assert_eq!(
            r(f + 1),
            Ok(Rule {
                cfa_is_rbp: false,
                cfa_offset: 16,
                rbp_at: Some(-16),
                ra_at: -8
            })
        );
        assert_eq!(
            r(f + 4),
            Ok(Rule {
                cfa_is_rbp: true,
                cfa_offset: 16,
                rbp_at: Some(-16),
                ra_at: -8
            })
        );
        assert_eq!(r(f + 0x2e).map(|r| r.cfa_is_rbp), Ok(true));
        assert_eq!(
            r(f + 0x2f),
            Ok(Rule {
                cfa_is_rbp: false,
                cfa_offset: 8,
                rbp_at: Some(-16),
                ra_at: -8
            })
        );
        assert_eq!(r(base + 0x3004).map(|r| r.cfa_is_rbp), Ok(true));
        assert_eq!(
            r(f + 0x40),
            Err(NoRule::NotCovered),
            "past the FDE's range, before the next"
        );
        assert_eq!(r(base + 0x100), Err(NoRule::NotCovered));
    }

    #[test]
    fn malformed_tables_never_panic() {
        let (mem, base, hdr) = image();
        for i in 0..0x1100 {
            for v in [0u8, 0xff, 0x7f, 0x80] {
                let mut m2 = mem.clone();
                m2[i] = v;
                let m = Slice { base, data: &m2 };
                let _ = rule_for(&m, hdr, base + 0x2010);
            }
        }
        let m = Slice {
            base,
            data: &mem[..0x1008],
        };
        assert!(rule_for(&m, hdr, base + 0x2010).is_err());
    }

    #[test]
    fn leb128() {
        let data = [0xe5, 0x8e, 0x26, 0x7f, 0x80, 0x7f];
        let m = Slice {
            base: 0,
            data: &data,
        };
        let mut c = Cursor::new(&m, 0, data.len());
        assert_eq!(c.uleb(), Some(624485));
        assert_eq!(c.sleb(), Some(-1));
        assert_eq!(c.sleb(), Some(-128));
        assert_eq!(c.u8(), None);
    }
}
