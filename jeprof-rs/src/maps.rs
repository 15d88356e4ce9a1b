//! The `MAPPED_LIBRARIES:` section: `/proc/<pid>/maps` lines of the profiled process, and the
//! lookup from an address to the mapping that contains it.

use crate::error::{ParseError, ParseErrorKind};

/// One line of `/proc/<pid>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// File offset of `start`.
    pub offset: u64,
    pub inode: u64,
    /// Path or pseudo-path (`[heap]`, `[vdso]`), without a ` (deleted)` suffix. `None` for
    /// anonymous memory.
    pub path: Option<String>,
    /// The maps line ended in ` (deleted)`: the file was removed or replaced after it was mapped.
    pub deleted: bool,
}

impl Mapping {
    /// True when the mapping is backed by a file we may open (not `[vdso]`, `[heap]`, anon).
    pub fn is_file(&self) -> bool {
        matches!(&self.path, Some(p) if p.starts_with('/')) && self.inode != 0
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The file offset that `addr` (inside the mapping) corresponds to.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr.wrapping_sub(self.start).wrapping_add(self.offset)
    }

    /// Last path component, or the pseudo-path itself.
    pub fn basename(&self) -> Option<&str> {
        self.path
            .as_deref()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
    }
}

/// Parse one maps line (already trimmed of the newline). `line_no` is for the error.
pub fn parse_line(line: &str, line_no: usize) -> Result<Mapping, ParseError> {
    let bad = || ParseError::new(line_no, ParseErrorKind::BadMapsLine);
    let mut rest = line.trim_start();
    let mut field = || -> Option<&str> {
        let s = rest.trim_start();
        let end = s.find([' ', '\t']).unwrap_or(s.len());
        let (f, r) = s.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field().ok_or_else(bad)?;
    let perms = field().ok_or_else(bad)?;
    let offset = field().ok_or_else(bad)?;
    let _dev = field().ok_or_else(bad)?;
    let inode = field().ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let start = u64::from_str_radix(start, 16).map_err(|_| bad())?;
    let end = u64::from_str_radix(end, 16).map_err(|_| bad())?;
    let offset = u64::from_str_radix(offset, 16).map_err(|_| bad())?;
    let inode: u64 = inode.parse().map_err(|_| bad())?;
    let p = perms.as_bytes();
    if p.len() < 4 || end < start {
        return Err(bad());
    }
    let mut path = rest.trim();
    let mut deleted = false;
    if let Some(p) = path.strip_suffix("(deleted)") {
        path = p.trim_end();
        deleted = true;
    }
    Ok(Mapping {
        start,
        end,
        readable: p[0] == b'r',
        writable: p[1] == b'w',
        executable: p[2] == b'x',
        offset,
        inode,
        path: (!path.is_empty()).then(|| path.to_string()),
        deleted,
    })
}

/// Mappings sorted by start address, for address lookups.
#[derive(Clone, Debug, Default)]
pub struct MapTable {
    sorted: Vec<Mapping>,
}

impl MapTable {
    pub fn new(mappings: &[Mapping]) -> Self {
        let mut sorted = mappings.to_vec();
        sorted.sort_by_key(|m| (m.start, m.end));
        Self { sorted }
    }

    /// Index (into [`Self::mappings`]) of the mapping that contains `addr`.
    pub fn find(&self, addr: u64) -> Option<usize> {
        let i = self.sorted.partition_point(|m| m.start <= addr);
        let i = i.checked_sub(1)?;
        self.sorted[i].contains(addr).then_some(i)
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse_line(
            "557598f06000-557598f1c000 r-xp 00004000 fe:00 247497                     /usr/bin/ls",
            1,
        )
        .unwrap();
        assert_eq!(
            (m.start, m.end, m.offset, m.inode),
            (0x557598f06000, 0x557598f1c000, 0x4000, 247497)
        );
        assert!(m.executable && m.readable && !m.writable && m.is_file());
        assert_eq!(m.path.as_deref(), Some("/usr/bin/ls"));
        let m = parse_line("7f00-8f00 rw-p 00000000 00:00 0 ", 2).unwrap();
        assert_eq!(m.path, None);
        assert!(!m.is_file());
        let m = parse_line("1000-2000 r-xp 00000000 08:01 12 /tmp/a b.so (deleted)", 3).unwrap();
        assert_eq!(m.path.as_deref(), Some("/tmp/a b.so"));
        assert!(m.deleted);
        assert_eq!(parse_line("1000-zz r-xp 0 0 0", 7).unwrap_err().line, 7);
        assert!(parse_line("1000-2000 r-xp", 7).is_err());
    }

    #[test]
    fn finds_addresses() {
        let a = parse_line("1000-2000 r-xp 00000000 08:01 12 /a", 1).unwrap();
        let b = parse_line("3000-4000 r-xp 00000000 08:01 13 /b", 2).unwrap();
        let t = MapTable::new(&[b, a]);
        assert_eq!(t.find(0x1000), Some(0));
        assert_eq!(t.find(0x1fff), Some(0));
        assert_eq!(t.find(0x2000), None);
        assert_eq!(t.find(0x3500), Some(1));
        assert_eq!(t.find(0x10), None);
    }
}
