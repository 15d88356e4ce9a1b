//! Symbolization checked against the running test binary itself (as addr2line's
//! tests/correctness.rs does): a synthetic heap_v2 dump whose frames are return addresses just
//! after the start of functions of this process, with MAPPED_LIBRARIES from /proc/self/maps.

use jeprof_rs::measure::Measure;
use jeprof_rs::reader;
use jeprof_rs::report::{collapsed, top};
use jeprof_rs::resolve;
use jeprof_rs::symbolize;

#[inline(never)]
fn marker_leaf_alpha() -> u64 {
    std::hint::black_box(1)
}

#[inline(never)]
fn marker_middle_beta() -> u64 {
    std::hint::black_box(marker_leaf_alpha() + 1)
}

#[inline(never)]
fn marker_root_gamma() -> u64 {
    std::hint::black_box(marker_middle_beta() + 1)
}

/// A return address "inside" `f`: one past its first byte, so `addr - 1` is `f` itself.
fn ret(f: fn() -> u64) -> u64 {
    f as usize as u64 + 1
}

fn dump(stacks: &[(&[u64], u64)]) -> String {
    let mut s = String::from("heap_v2/1\n  t*: 0: 0 [0: 0]\n");
    for (frames, bytes) in stacks {
        s.push('@');
        for f in *frames {
            s.push_str(&format!(" {f:#x}"));
        }
        s.push_str(&format!("\n  t*: 1: {bytes} [1: {bytes}]\n"));
    }
    s.push_str("\nMAPPED_LIBRARIES:\n");
    s.push_str(&std::fs::read_to_string("/proc/self/maps").unwrap());
    s
}

#[test]
fn names_functions_of_this_process() {
    assert_eq!(marker_root_gamma(), 3);
    let (a, b, c) = (
        ret(marker_leaf_alpha),
        ret(marker_middle_beta),
        ret(marker_root_gamma),
    );
    let text = dump(&[(&[a, b, c], 1000), (&[b, c], 24)]);
    let profile = reader::parse(text.as_bytes()).unwrap();
    let analysis = resolve::analyze(&[&profile], &[None], &symbolize::Options::default());
    let stacks = &analysis.stacks[0];
    // The outermost frame of each location is the function the address is in; inlined
    // callees (e.g. `black_box`) may precede it.
    let outer: Vec<&str> = stacks[0]
        .locations
        .iter()
        .map(|&l| {
            analysis.tables.frames[*analysis.tables.locations[l].frames.last().unwrap()]
                .function
                .as_str()
        })
        .collect();
    assert_eq!(outer.len(), 3, "{outer:?}");
    assert!(outer[0].ends_with("marker_leaf_alpha"), "{outer:?}");
    assert!(outer[1].ends_with("marker_middle_beta"), "{outer:?}");
    assert!(outer[2].ends_with("marker_root_gamma"), "{outer:?}");
    let leaf_location = &analysis.tables.locations[stacks[0].locations[0]];
    let leaf = &analysis.tables.frames[*leaf_location.frames.last().unwrap()];
    assert!(
        leaf.file
            .as_deref()
            .is_some_and(|f| f.ends_with("symbolize_self.rs")),
        "{leaf:?}"
    );
    assert!(leaf.line.is_some_and(|l| (10..16).contains(&l)), "{leaf:?}");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(leaf.library.as_deref(), exe.to_str());

    let t = top::compute(
        &analysis.tables,
        stacks,
        Measure::InuseSpace,
        top::By::Function,
    );
    assert_eq!(t.total_bytes, 1024.0);
    let row = |suffix: &str| t.rows.iter().find(|r| r.name.ends_with(suffix)).unwrap();
    assert_eq!(row("marker_leaf_alpha").cum_bytes, 1000.0);
    assert_eq!(row("marker_middle_beta").cum_bytes, 1024.0);
    assert_eq!(row("marker_root_gamma").cum_bytes, 1024.0);

    let folded = collapsed::folded(&analysis.tables, stacks, Measure::InuseSpace, false);
    let line = folded
        .iter()
        .find(|(_, v)| *v == 1000)
        .expect("the 1000-byte stack");
    let parts: Vec<&str> = line.0.split(';').collect();
    assert!(
        parts[0].ends_with("marker_root_gamma") && parts[1].ends_with("marker_middle_beta"),
        "{folded:?}"
    );
    assert!(
        parts.iter().any(|p| p.ends_with("marker_leaf_alpha")),
        "{folded:?}"
    );
}

#[test]
fn std_and_libc_functions_are_named() {
    // A libc function (symbols from .dynsym/.symtab or debug info) and a Rust std function.
    let libc_open = libc_addr();
    let text = dump(&[(&[libc_open + 1], 8)]);
    let profile = reader::parse(text.as_bytes()).unwrap();
    let analysis = resolve::analyze(&[&profile], &[None], &symbolize::Options::default());
    let frame = &analysis.tables.frames[analysis.stacks[0][0].frames[0]];
    assert!(
        frame
            .library
            .as_deref()
            .is_some_and(|l| l.contains("libc.so")),
        "{frame:?}"
    );
    assert!(frame.function.contains("getpid"), "{frame:?}");
}

fn libc_addr() -> u64 {
    libc::getpid as *const () as usize as u64
}

#[test]
fn wrong_file_is_not_trusted() {
    // Claim our code was mapped from a file too small to hold it: frames must stay unnamed.
    let a = ret(marker_leaf_alpha);
    let exe = std::env::current_exe().unwrap();
    let text = format!(
        "heap_v2/1\n@ {a:#x}\n  t*: 1: 8 [1: 8]\nMAPPED_LIBRARIES:\n{:x}-{:x} r-xp 7fff0000000 08:01 12 {}\n",
        a - 0x100,
        a + 0x100,
        exe.display()
    );
    let profile = reader::parse(text.as_bytes()).unwrap();
    let analysis = resolve::analyze(&[&profile], &[None], &symbolize::Options::default());
    let frame = &analysis.tables.frames[analysis.stacks[0][0].frames[0]];
    assert!(frame.function.starts_with("?? in "), "{frame:?}");
    assert_eq!(analysis.warnings.len(), 1, "{:?}", analysis.warnings);
    assert!(
        analysis.warnings[0].contains("does not match"),
        "{:?}",
        analysis.warnings
    );
}

#[test]
fn separate_debug_file_by_build_id() {
    // libc is stripped; with libc6-dbg installed its DWARF is found by build id.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let Some(libc) = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: a missing install step in .ci/run"
        );
        eprintln!("skipping: no libc.so mapped");
        return;
    };
    let data = std::fs::read(libc).unwrap();
    use object::Object;
    let file = object::File::parse(&*data).unwrap();
    let Some(id) = file.build_id().ok().flatten() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: a missing install step in .ci/run"
        );
        eprintln!("skipping: {libc} has no build id");
        return;
    };
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    if !std::path::Path::new(&debug).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: a missing install step in .ci/run"
        );
        eprintln!("skipping: {debug} absent (apt-get install libc6-dbg)");
        return;
    }
    let text = dump(&[(&[libc_addr() + 1], 8)]);
    let profile = reader::parse(text.as_bytes()).unwrap();
    let analysis = resolve::analyze(&[&profile], &[None], &symbolize::Options::default());
    let frame = &analysis.tables.frames[analysis.stacks[0][0].frames[0]];
    assert!(frame.file.is_some() && frame.line.is_some(), "{frame:?}");
}
