//! What we need from an ELF file without DWARF: its loadable segments (to turn a file offset
//! into the virtual address the symbols use), a sanity check that the file on disk is the one
//! that was mapped, and a sorted function-symbol table (`.symtab`, else `.dynsym`).

use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};

use crate::maps::Mapping;

/// A `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u64,
    pub file_size: u64,
    pub vaddr: u64,
    pub executable: bool,
}

/// The loadable segments of an object file.
pub fn segments(file: &object::File<'_>) -> Vec<Segment> {
    file.segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            let executable = match s.flags() {
                SegmentFlags::Elf { p_flags, .. } => (p_flags & object::elf::PF_X).0 != 0,
                _ => true,
            };
            Segment {
                file_offset,
                file_size,
                vaddr: s.address(),
                executable,
            }
        })
        .collect()
}

/// The address the object's symbols and DWARF use ("stated virtual memory address") for the
/// runtime address `addr` inside `mapping`: file offset first, then through the segment that
/// holds that offset. Works for PIE executables, shared objects and non-PIE executables alike.
pub fn to_svma(mapping: &Mapping, addr: u64, segments: &[Segment]) -> Option<u64> {
    let offset = mapping.file_offset(addr);
    segments
        .iter()
        .find(|s| s.file_offset <= offset && offset - s.file_offset < s.file_size)
        .map(|s| offset - s.file_offset + s.vaddr)
}

#[cfg(target_arch = "x86_64")]
const MAX_PAGE: u64 = 4096;
#[cfg(not(target_arch = "x86_64"))]
const MAX_PAGE: u64 = 65536;

/// Why the file on disk cannot be the one that was mapped, if it cannot.
pub fn mismatch(mapping: &Mapping, file_len: u64, segments: &[Segment]) -> Option<String> {
    let len = mapping.end - mapping.start;
    let rounded = file_len.div_ceil(MAX_PAGE) * MAX_PAGE;
    if mapping.offset.saturating_add(len) > rounded {
        return Some(format!(
            "the mapping covers file offsets {:#x}..{:#x} but the file has only {} bytes",
            mapping.offset,
            mapping.offset.saturating_add(len),
            file_len
        ));
    }
    if mapping.executable && !segments.is_empty() {
        let page = |x: u64| x / MAX_PAGE * MAX_PAGE;
        let covered = segments.iter().any(|s| {
            s.executable
                && page(s.file_offset) < mapping.offset.saturating_add(len)
                && mapping.offset < s.file_offset + s.file_size
        });
        if !covered {
            return Some(format!(
                "no executable segment at file offset {:#x} where code was mapped",
                mapping.offset
            ));
        }
    }
    None
}

/// Function symbols sorted by address.
#[derive(Debug, Default)]
pub struct SymbolTable<'data> {
    entries: Vec<(u64, u64, &'data str)>,
}

impl<'data> SymbolTable<'data> {
    /// From `.symtab` (`dynamic == false`) or `.dynsym`.
    pub fn new(file: &object::File<'data>, dynamic: bool) -> Self {
        let symbols = if dynamic {
            file.dynamic_symbols()
        } else {
            file.symbols()
        };
        let mut ranked: Vec<(u64, u8, u64, &'data str)> = symbols
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok().filter(|n| !n.is_empty())?;
                // Among aliases at one address prefer global, then weak, then local, then
                // fewer leading underscores (`malloc` over `__libc_malloc`).
                let binding = if s.is_global() && !s.is_weak() {
                    0
                } else if s.is_weak() {
                    1
                } else {
                    2
                };
                let underscores = name.bytes().take_while(|&b| b == b'_').count() as u8;
                Some((
                    s.address(),
                    binding * 16 + underscores.min(15),
                    s.size(),
                    name,
                ))
            })
            .collect();
        ranked.sort_unstable();
        ranked.dedup_by_key(|e| e.0);
        SymbolTable {
            entries: ranked
                .into_iter()
                .map(|(a, _, size, name)| (a, size, name))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The function containing `svma`.
    pub fn lookup(&self, svma: u64) -> Option<&'data str> {
        let i = self
            .entries
            .partition_point(|e| e.0 <= svma)
            .checked_sub(1)?;
        let (addr, size, name) = self.entries[i];
        (size == 0 || svma - addr < size).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::parse_line;

    #[test]
    fn svma_through_segments() {
        // A typical PIE: text at file offset 0x4000, vaddr 0x4000; data at 0x23000 -> 0x24000.
        let segs = [
            Segment {
                file_offset: 0,
                file_size: 0x3fb8,
                vaddr: 0,
                executable: false,
            },
            Segment {
                file_offset: 0x4000,
                file_size: 0x16000,
                vaddr: 0x4000,
                executable: true,
            },
            Segment {
                file_offset: 0x23000,
                file_size: 0x2000,
                vaddr: 0x24000,
                executable: false,
            },
        ];
        let m = parse_line(
            "557598f06000-557598f1c000 r-xp 00004000 fe:00 247497 /usr/bin/ls",
            1,
        )
        .unwrap();
        assert_eq!(to_svma(&m, 0x557598f06786, &segs), Some(0x4786));
        assert_eq!(mismatch(&m, 0x26000, &segs), None);
        assert!(mismatch(&m, 0x5000, &segs).is_some());
        let d = parse_line(
            "557598f27000-557598f28000 rw-p 00023000 fe:00 247497 /usr/bin/ls",
            1,
        )
        .unwrap();
        assert_eq!(to_svma(&d, 0x557598f27010, &segs), Some(0x24010));
        let bad = parse_line("1000-2000 r-xp 00000000 fe:00 1 /x", 1).unwrap();
        assert!(mismatch(&bad, 0x26000, &segs).is_some());
    }
}
