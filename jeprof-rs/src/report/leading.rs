//! The leading sites, one line each: bytes, objects, share, the allocating function and its
//! library, the first caller outside the allocator's wrappers, the JNI entry (`Java_…`) and the
//! Java method when the stack has them:
//!
//! `48.8 MiB  200 obj  25.3%  cv::fastMalloc [libopencv_core] <- Java_org_opencv_core_Mat_n_1Mat__III <- MatLeak.cacheThumbnail`

use std::collections::HashMap;

use crate::humanize;
use crate::report::rss::short_lib;
use crate::resolve::{Frame, Stack, Tables};
use crate::symbolize::perfmap::INTERPRETED;
use crate::symbolize::{JAVA_LIBRARY, JIT_LIBRARY};

/// One site: the parts of its line, and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub function: String,
    pub library: String,
    /// First caller that is not an allocation wrapper (absent when it is the JNI entry).
    pub caller: Option<String>,
    pub jni: Option<String>,
    pub java: Option<String>,
    pub bytes: f64,
    pub objects: f64,
}

/// A function that only wraps the allocator (`xmalloc`, `cv::fastMalloc`, `pixel_alloc`,
/// `std::allocator<…>::allocate`, `g_malloc0`, `os::malloc`): the line names its caller too.
fn wrapper(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("alloc") || n.contains("operator new") || n.starts_with("os::")
}

/// Java code, the interpreter, a JIT stub, or anonymous code nothing names (JIT code without
/// a perf map): not a native caller.
fn runtime(f: &Frame) -> bool {
    f.library.is_none()
        || f.library.as_deref() == Some(JAVA_LIBRARY)
        || f.library.as_deref() == Some(JIT_LIBRARY)
            && (is_java(f) || f.function == INTERPRETED || f.function.starts_with("Stub"))
}

/// A Java method named from the JVM's metadata (`demo.Mat.n_Mat`), or a compiled one as
/// HotSpot's perf map names it (`long demo.Mat.n_Mat(int)`), not a stub (`StubRoutines (1)`)
/// nor the interpreter.
fn is_java(f: &Frame) -> bool {
    f.library.as_deref() == Some(JAVA_LIBRARY)
        || f.library.as_deref() == Some(JIT_LIBRARY)
            && f.function != INTERPRETED
            && f.function.contains('.')
            && !f.function.starts_with("Stub")
}

/// The JDK's own classes (`java.nio.DirectByteBuffer.<init>`): the application's method is
/// further up.
fn in_jdk(name: &str) -> bool {
    let head = name.split('(').next().unwrap_or(name).trim();
    let full = head.rsplit(' ').next().unwrap_or(head);
    ["java.", "javax.", "jdk.", "sun.", "com.sun."]
        .iter()
        .any(|p| full.starts_with(p))
}

/// `void demo.NativeLeakDemo.cacheThumbnail(int)` -> `NativeLeakDemo.cacheThumbnail`.
fn java_method(name: &str) -> String {
    let head = name.split('(').next().unwrap_or(name).trim();
    let full = head.rsplit(' ').next().unwrap_or(head);
    let full = full.replace("::", ".");
    let mut parts: Vec<&str> = full.split('.').collect();
    if parts.len() > 2 {
        parts = parts.split_off(parts.len() - 2);
    }
    parts.join(".")
}

/// The class a JNI entry belongs to: `Java_org_opencv_core_Mat_n_1Mat__III` -> `Mat`.
fn jni_class(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("Java_")?;
    let mut parts: Vec<&str> = rest.split('_').collect();
    // Drop the method (the last part without `1`-escapes is good enough for matching).
    parts.pop()?;
    parts
        .iter()
        .rev()
        .find(|p| p.chars().next().is_some_and(char::is_uppercase))
        .copied()
}

fn site_of(tables: &Tables, stack: &Stack) -> (Site, u8) {
    let frames: Vec<&Frame> = stack.frames.iter().map(|&f| &tables.frames[f]).collect();
    let first = frames.first().copied();
    let jni_at = frames.iter().position(|f| f.function.starts_with("Java_"));
    let jni = jni_at.map(|i| frames[i].function.clone());
    // The first caller that is not a wrapper; none when that is already the JNI entry or Java.
    let caller = frames
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, f)| Some(*i) == jni_at || runtime(f) || !wrapper(&f.function))
        .filter(|(i, f)| Some(*i) != jni_at && !runtime(f))
        .map(|(_, f)| f.function.clone());
    let class = jni.as_deref().and_then(jni_class);
    // The Java method: the first one outside the JNI entry's own class and the JDK (the
    // application's code, not the native method's declaration), else the first Java frame, else the
    // interpreter. The rank says which, so that a site's line shows the best one seen.
    let app = frames
        .iter()
        .skip(jni_at.map_or(0, |i| i + 1))
        .filter(|f| is_java(f) && !in_jdk(&f.function))
        .map(|f| java_method(&f.function))
        .find(|m| class.is_none_or(|c| m.split('.').next() != Some(c)));
    let (java, rank) = match app {
        Some(m) => (Some(m), 3),
        None => match frames.iter().find(|f| is_java(f)) {
            Some(f) => (Some(java_method(&f.function)), 2),
            None if frames.iter().any(|f| f.function == INTERPRETED) => {
                (Some(INTERPRETED.to_string()), 1)
            }
            None => (None, 0),
        },
    };
    (
        Site {
            function: first.map_or_else(|| "[no frames]".to_string(), |f| f.function.clone()),
            library: first.map_or_else(|| "[unknown]".to_string(), short_lib),
            caller,
            jni,
            java,
            bytes: stack.values.inuse_bytes,
            objects: stack.values.inuse_objects,
        },
        rank,
    )
}

/// Sites holding in-use bytes, largest first. Stacks with the same allocating function,
/// caller and JNI entry are one site (the Java frames above a JNI call differ as methods get
/// compiled); its line shows the best-ranked Java method, the one holding most among those.
pub fn compute(tables: &Tables, stacks: &[Stack]) -> Vec<Site> {
    type Key = (String, String, Option<String>, Option<String>);
    /// Java method seen above the site -> (rank, bytes).
    type Javas = HashMap<Option<String>, (u8, f64)>;
    let mut by: HashMap<Key, (Site, Javas)> = HashMap::new();
    for s in stacks {
        if s.values.inuse_bytes <= 0.0 {
            continue;
        }
        let (site, rank) = site_of(tables, s);
        let key = (
            site.function.clone(),
            site.library.clone(),
            site.caller.clone(),
            site.jni.clone(),
        );
        let java = site.java.clone();
        let bytes = site.bytes;
        let entry = by.entry(key).or_insert_with(|| {
            (
                Site {
                    bytes: 0.0,
                    objects: 0.0,
                    ..site.clone()
                },
                HashMap::new(),
            )
        });
        entry.0.bytes += site.bytes;
        entry.0.objects += site.objects;
        let j = entry.1.entry(java).or_insert((rank, 0.0));
        j.1 += bytes;
    }
    let mut sites: Vec<Site> = by
        .into_values()
        .map(|(mut site, javas)| {
            site.java = javas
                .into_iter()
                .max_by(|a, b| {
                    (a.1.0)
                        .cmp(&b.1.0)
                        .then(a.1.1.total_cmp(&b.1.1))
                        .then_with(|| b.0.cmp(&a.0))
                })
                .and_then(|(java, _)| java);
            site
        })
        .collect();
    sites.sort_by(|a, b| {
        b.bytes
            .total_cmp(&a.bytes)
            .then_with(|| a.function.cmp(&b.function))
    });
    sites
}

/// The line of a site, without the numbers.
pub fn chain(s: &Site) -> String {
    // `?? in libfoo.so` already names its library.
    let mut out = if s.function.starts_with("?? in ") {
        s.function.clone()
    } else {
        format!("{} {}", s.function, crate::report::top::bracket(&s.library))
    };
    for part in [&s.caller, &s.jni, &s.java].into_iter().flatten() {
        if *part != s.function {
            out.push_str(&format!(" <- {part}"));
        }
    }
    out
}

/// Up to `limit` lines under a heading.
pub fn to_text(sites: &[Site], limit: usize, total: f64, exact: bool) -> String {
    let shown: Vec<&Site> = sites.iter().take(limit).collect();
    if shown.is_empty() {
        return String::new();
    }
    let cells: Vec<[String; 3]> = shown
        .iter()
        .map(|s| {
            [
                humanize::value(s.bytes, true, exact),
                format!("{} obj", s.objects.round() as i64),
                humanize::percent(s.bytes, total),
            ]
        })
        .collect();
    let w: Vec<usize> = (0..3)
        .map(|i| cells.iter().map(|c| c[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::from("Leading sites (in use):\n");
    for (s, c) in shown.iter().zip(&cells) {
        out.push_str(&format!(
            "  {:>w0$}  {:>w1$}  {:>w2$}  {}\n",
            c[0],
            c[1],
            c[2],
            chain(s),
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Values;

    #[test]
    fn names_allocator_caller_jni_and_java() {
        let mut t = Tables::default();
        let mut f = |name: &str, lib: &str| {
            t.intern_frame(Frame {
                function: name.into(),
                file: None,
                line: None,
                library: Some(lib.into()),
            })
        };
        let frames = vec![
            f("cv::fastMalloc", "/usr/lib/libopencv_core.so.4.5"),
            f("cv::Mat::create", "/usr/lib/libopencv_core.so.4.5"),
            f(
                "Java_org_opencv_core_Mat_n_1Mat__III",
                "/usr/lib/libopencv_java.so",
            ),
            f(
                "void org.opencv.core.Mat.<init>(int, int, int)",
                JIT_LIBRARY,
            ),
            f("void MatLeak.cacheThumbnail(int)", JIT_LIBRARY),
        ];
        let stack = Stack {
            locations: vec![],
            frames,
            values: Values {
                inuse_bytes: 100.0,
                inuse_objects: 2.0,
                ..Default::default()
            },
        };
        // The same call reached from interpreted code (before the method was compiled): one
        // site, named by the application's method.
        let mut interpreted = stack.clone();
        interpreted.frames.truncate(3);
        interpreted.frames.push(t.intern_frame(Frame {
            function: INTERPRETED.into(),
            file: None,
            line: None,
            library: Some(JIT_LIBRARY.into()),
        }));
        interpreted.values.inuse_bytes = 300.0;
        let sites = compute(&t, &[stack.clone(), stack.clone(), interpreted]);
        assert_eq!(sites.len(), 1);
        assert_eq!((sites[0].bytes, sites[0].objects), (500.0, 6.0));
        let sites = compute(&t, &[stack.clone(), stack]);
        assert_eq!(sites.len(), 1);
        assert_eq!(
            chain(&sites[0]),
            "cv::fastMalloc [libopencv_core] <- cv::Mat::create <- Java_org_opencv_core_Mat_n_1Mat__III <- MatLeak.cacheThumbnail"
        );
        let text = to_text(&sites, 5, 400.0, true);
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "  200  4 obj  50.0%  cv::fastMalloc [libopencv_core] <- cv::Mat::create <- Java_org_opencv_core_Mat_n_1Mat__III <- MatLeak.cacheThumbnail"
        );
    }
}
