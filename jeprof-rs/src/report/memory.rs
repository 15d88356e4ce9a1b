//! "Leak or allocator?": what the profile tracks against what the process holds.
//!
//! Our dumps record the process RSS and, when glibc is the allocator, its `mallinfo2` totals:
//! bytes glibc holds (arenas plus mmapped chunks), bytes the program uses, and bytes free
//! inside the arenas. A native leak shows as tracked in-use bytes close to what glibc says is
//! in use; memory kept by the allocator shows as a large free part that the program no longer
//! uses but RSS still counts (the seed articles' glibc-arena case).

use std::collections::BTreeMap;

use crate::humanize;

/// What the metadata says, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Memory {
    pub rss: Option<f64>,
    pub arena: Option<f64>,
    pub inuse: Option<f64>,
    pub free: Option<f64>,
}

impl Memory {
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Memory {
        let get = |k: &str| meta.get(k).and_then(|v| v.trim().parse::<f64>().ok());
        Memory {
            rss: get("rss_bytes"),
            arena: get("mallinfo_arena_bytes"),
            inuse: get("mallinfo_inuse_bytes"),
            free: get("mallinfo_free_bytes"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rss.is_none() && self.arena.is_none()
    }
}

/// Lines to print under a heap report: `tracked` is the profile's unsampled in-use bytes.
/// Empty when the dump carries no such metadata (jemalloc's, gperftools', older ours).
pub fn summary(m: &Memory, tracked: f64) -> String {
    if m.is_empty() {
        return String::new();
    }
    let b = |v: f64| humanize::value(v, true, false);
    let mut out = format!("Memory: profiled heap in use {}", b(tracked));
    if let Some(rss) = m.rss {
        out.push_str(&format!("; process RSS {}", b(rss)));
    }
    if let (Some(arena), Some(free)) = (m.arena, m.free) {
        out.push_str(&format!(
            "; glibc holds {} ({} of it free)",
            b(arena),
            b(free)
        ));
    }
    out.push('\n');
    if let (Some(free), Some(arena)) = (m.free, m.arena) {
        let big = free >= 32.0 * 1024.0 * 1024.0 && free >= 0.25 * arena;
        if big {
            out.push_str(&format!(
                "  glibc keeps {} of freed memory in its arenas: that part of RSS is the allocator's, \
                 not a leak in the program. Try malloc_trim(0), MALLOC_ARENA_MAX=2, or another \
                 allocator (jemalloc, tcmalloc).\n",
                b(free)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_without_metadata() {
        assert_eq!(
            summary(&Memory::from_metadata(&meta(&[("pid", "1")])), 5.0),
            ""
        );
    }

    #[test]
    fn reports_rss_and_arenas() {
        let m = Memory::from_metadata(&meta(&[
            ("rss_bytes", "209715200"),
            ("mallinfo_arena_bytes", "157286400"),
            ("mallinfo_inuse_bytes", "52428800"),
            ("mallinfo_free_bytes", "104857600"),
        ]));
        let s = summary(&m, 50.0 * 1024.0 * 1024.0);
        assert!(s.starts_with("Memory: profiled heap in use 50.0 MiB; process RSS 200.0 MiB; glibc holds 150.0 MiB (100.0 MiB of it free)\n"), "{s}");
        assert!(s.contains("malloc_trim(0)"), "{s}");
        let small_free = Memory {
            free: Some(1e6),
            ..m
        };
        assert!(!summary(&small_free, 1.0).contains("malloc_trim"));
    }
}
