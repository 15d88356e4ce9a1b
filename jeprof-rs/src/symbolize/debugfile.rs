//! Finding separate debug information for an object: by build id
//! (`<root>/.build-id/ab/cdef….debug`) and by `.gnu_debuglink` (next to the object, in its
//! `.debug/` directory, or under `<root>/<dir>/`), as gdb does.

use std::path::{Path, PathBuf};

/// Candidate paths for the debug file of `object_path`, most specific first.
pub fn candidates(
    object_path: &Path,
    build_id: Option<&[u8]>,
    debuglink: Option<&str>,
    roots: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() >= 2) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        for root in roots {
            out.push(
                root.join(".build-id")
                    .join(&hex[..2])
                    .join(format!("{}.debug", &hex[2..])),
            );
        }
    }
    if let Some(link) = debuglink.filter(|l| !l.is_empty() && !l.contains('/')) {
        let dir = object_path.parent().unwrap_or(Path::new("/"));
        out.push(dir.join(link));
        out.push(dir.join(".debug").join(link));
        for root in roots {
            let relative = dir.strip_prefix("/").unwrap_or(dir);
            out.push(root.join(relative).join(link));
        }
    }
    out.retain(|p| p != object_path);
    out
}

/// Lowercase hex of a build id.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_paths() {
        let c = candidates(
            Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1"),
            Some(&[0xab, 0xcd, 0xef]),
            Some("libz.so.1.debug"),
            &[PathBuf::from("/usr/lib/debug")],
        );
        let c: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            c,
            [
                "/usr/lib/debug/.build-id/ab/cdef.debug",
                "/usr/lib/x86_64-linux-gnu/libz.so.1.debug",
                "/usr/lib/x86_64-linux-gnu/.debug/libz.so.1.debug",
                "/usr/lib/debug/usr/lib/x86_64-linux-gnu/libz.so.1.debug",
            ]
        );
    }
}
