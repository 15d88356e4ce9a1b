//! Mappings as their own space: the address ranges made by mmap/mmap64/mremap that are still
//! mapped, each with the stack that made it.
//!
//! A sorted array of disjoint ranges in memory from `map_anon`, under one spin lock (mapping
//! calls are rare next to malloc, and each is a system call anyway). Partial `munmap` trims or
//! splits ranges; `MAP_FIXED` over existing ranges replaces them; `mremap` is an unmap of the
//! old range plus a map of the new one at the mremap call's stack. PROT_NONE reservations are
//! not memory in use and are not recorded.
//!
//! Changes are reported to the caller as (stack, objects delta, bytes delta) so that the
//! counters live in an ordinary `StackTable` and dump like heap stacks (objects = ranges).

use crate::sync::SpinLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub end: usize,
    pub stack: u32,
}

pub struct MapList {
    ptr: *mut Range,
    len: usize,
    cap: usize,
}

// SAFETY: the raw pointer is owned memory; access is serialized by the SpinLock around it.
unsafe impl Send for MapList {}

impl MapList {
    pub const fn new() -> Self {
        MapList {
            ptr: core::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    fn as_slice(&self) -> &[Range] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: ptr[..len] are initialized ranges owned by this list.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn grow(&mut self) -> bool {
        let cap = (self.cap * 2).max(256);
        let bytes = cap * core::mem::size_of::<Range>();
        let Some(p) = crate::sys::map_anon(bytes) else {
            return false;
        };
        let p = p.cast::<Range>();
        if !self.ptr.is_null() {
            // SAFETY: copying len initialized elements into a fresh, larger, disjoint mapping,
            // then returning the old mapping which nothing else references.
            unsafe {
                core::ptr::copy_nonoverlapping(self.ptr, p, self.len);
                crate::sys::unmap(self.ptr.cast(), self.cap * core::mem::size_of::<Range>());
            }
        }
        self.ptr = p;
        self.cap = cap;
        true
    }

    fn insert_at(&mut self, i: usize, r: Range) -> bool {
        if self.len == self.cap && !self.grow() {
            return false;
        }
        // SAFETY: len < cap; shifting the tail right by one stays in bounds.
        unsafe {
            core::ptr::copy(self.ptr.add(i), self.ptr.add(i + 1), self.len - i);
            self.ptr.add(i).write(r);
        }
        self.len += 1;
        true
    }

    fn remove_at(&mut self, i: usize) {
        // SAFETY: i < len; shifting the tail left by one stays in bounds.
        unsafe { core::ptr::copy(self.ptr.add(i + 1), self.ptr.add(i), self.len - i - 1) };
        self.len -= 1;
    }

    fn set(&mut self, i: usize, r: Range) {
        // SAFETY: i < len.
        unsafe { self.ptr.add(i).write(r) };
    }

    /// Removes `[start, end)` from every range it overlaps; `f(stack, objs_delta, bytes_delta)`
    /// reports each change.
    pub fn unmap(&mut self, start: usize, end: usize, f: &mut dyn FnMut(u32, i64, i64)) {
        if start >= end {
            return;
        }
        // First range whose end is above `start`.
        let mut i = self.as_slice().partition_point(|r| r.end <= start);
        while i < self.len {
            let r = self.as_slice()[i];
            if r.start >= end {
                break;
            }
            let cut_lo = r.start.max(start);
            let cut_hi = r.end.min(end);
            let removed = (cut_hi - cut_lo) as i64;
            match (r.start < start, r.end > end) {
                (false, false) => {
                    self.remove_at(i);
                    f(r.stack, -1, -removed);
                    continue;
                }
                (true, false) => self.set(i, Range { end: start, ..r }),
                (false, true) => self.set(i, Range { start: end, ..r }),
                (true, true) => {
                    self.set(i, Range { end: start, ..r });
                    if self.insert_at(i + 1, Range { start: end, ..r }) {
                        f(r.stack, 1, -removed);
                    } else {
                        // Out of memory for the split: forget the upper part.
                        f(r.stack, 0, -removed - (r.end - end) as i64);
                    }
                    return;
                }
            }
            f(r.stack, 0, -removed);
            i += 1;
        }
    }

    /// Records a new mapping (replacing whatever it overlaps). False if out of memory.
    pub fn map(
        &mut self,
        start: usize,
        end: usize,
        stack: u32,
        f: &mut dyn FnMut(u32, i64, i64),
    ) -> bool {
        self.unmap(start, end, f);
        if start >= end {
            return true;
        }
        let i = self.as_slice().partition_point(|r| r.end <= start);
        let ok = self.insert_at(i, Range { start, end, stack });
        if ok {
            f(stack, 1, (end - start) as i64);
        }
        ok
    }

    /// The range containing `addr`, if recorded.
    pub fn find(&self, addr: usize) -> Option<Range> {
        let s = self.as_slice();
        let i = s.partition_point(|r| r.end <= addr);
        s.get(i).copied().filter(|r| r.start <= addr)
    }

    pub fn ranges(&self) -> &[Range] {
        self.as_slice()
    }
}

impl Default for MapList {
    fn default() -> Self {
        Self::new()
    }
}

pub static MAPS: SpinLock<MapList> = SpinLock::new(MapList::new());

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        ops: &[(&str, usize, usize, u32)],
    ) -> (Vec<Range>, std::collections::BTreeMap<u32, (i64, i64)>) {
        let mut l = MapList::new();
        let mut totals = std::collections::BTreeMap::new();
        let mut f = |s: u32, o: i64, b: i64| {
            let e = totals.entry(s).or_insert((0i64, 0i64));
            e.0 += o;
            e.1 += b;
        };
        for &(op, a, b, s) in ops {
            match op {
                "map" => assert!(l.map(a, b, s, &mut f)),
                "unmap" => l.unmap(a, b, &mut f),
                _ => unreachable!(),
            }
        }
        (l.ranges().to_vec(), totals)
    }

    #[test]
    fn partial_unmap_trims_and_splits() {
        let (ranges, totals) = run(&[
            ("map", 0x1000, 0x5000, 1),
            ("unmap", 0x3000, 0x5000, 0), // upper half
            ("map", 0x10000, 0x14000, 2),
            ("unmap", 0x11000, 0x12000, 0), // middle: split
            ("map", 0x20000, 0x21000, 3),
            ("unmap", 0x20000, 0x21000, 0), // whole
        ]);
        assert_eq!(
            ranges,
            [
                Range {
                    start: 0x1000,
                    end: 0x3000,
                    stack: 1
                },
                Range {
                    start: 0x10000,
                    end: 0x11000,
                    stack: 2
                },
                Range {
                    start: 0x12000,
                    end: 0x14000,
                    stack: 2
                },
            ]
        );
        assert_eq!(totals[&1], (1, 0x2000));
        assert_eq!(totals[&2], (2, 0x3000));
        assert_eq!(totals[&3], (0, 0));
    }

    #[test]
    fn fixed_mapping_replaces_overlap() {
        let (ranges, totals) = run(&[
            ("map", 0x1000, 0x9000, 1),
            ("map", 0x2000, 0x4000, 2), // MAP_FIXED inside
            ("unmap", 0x0, 0x100000, 0),
        ]);
        assert!(ranges.is_empty());
        assert_eq!(totals[&1], (0, 0));
        assert_eq!(totals[&2], (0, 0));
    }

    #[test]
    fn unmap_spanning_several_ranges() {
        let (ranges, totals) = run(&[
            ("map", 0x1000, 0x2000, 1),
            ("map", 0x3000, 0x4000, 2),
            ("map", 0x5000, 0x6000, 3),
            ("unmap", 0x1800, 0x5800, 0),
        ]);
        assert_eq!(
            ranges,
            [
                Range {
                    start: 0x1000,
                    end: 0x1800,
                    stack: 1
                },
                Range {
                    start: 0x5800,
                    end: 0x6000,
                    stack: 3
                }
            ]
        );
        assert_eq!(totals[&1], (1, 0x800));
        assert_eq!(totals[&2], (0, 0));
        assert_eq!(totals[&3], (1, 0x800));
        let mut l = MapList::new();
        assert!(l.map(0x1000, 0x2000, 9, &mut |_, _, _| {}));
        assert_eq!(l.find(0x1fff).map(|r| r.stack), Some(9));
        assert_eq!(l.find(0x2000), None);
    }

    #[test]
    fn grows_past_initial_capacity() {
        let mut l = MapList::new();
        for i in 0..1000usize {
            assert!(l.map(i * 0x2000, i * 0x2000 + 0x1000, 1, &mut |_, _, _| {}));
        }
        assert_eq!(l.ranges().len(), 1000);
        assert!(l.ranges().windows(2).all(|w| w[0].end <= w[1].start));
    }
}
