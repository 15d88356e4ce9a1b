//! `trend` and `diff` on synthetic heap_v2 series, where every value is chosen: the growth
//! rule (a steady leak is found; flat noise, a spike and growth below the noise floor are
//! not), the rate only over ten minutes, grouping by process and kind (from metadata, else
//! from file names), and `diff` refusing a mix. Real dumps: `tests/tests/trend.rs`.

mod common;
use common::*;

use std::path::{Path, PathBuf};

const PERF: &str = "--perf-map=tests/data/app.perf.map";
const MIB: u64 = 1 << 20;
// Return addresses inside the functions of tests/data/app.perf.map.
const BASE: &str = "0x7f0000003010 0x7f0000007010"; // parse_config <- main
const LEAK: &str = "0x7f0000005010 0x7f0000007010"; // cache_insert <- main
const NOISY: &str = "0x7f0000004010 0x7f0000007010"; // load_image <- main
const SPIKE: &str = "0x7f0000009010 0x7f0000007010"; // decode_png <- main

/// Metadata of a synthetic dump; `None` fields are left out (like jemalloc's dumps).
#[derive(Clone, Copy)]
struct Meta<'a> {
    pid: Option<u32>,
    kind: Option<&'a str>,
    time: Option<f64>,
}

/// Writes an exact (`heap_v2/1`) dump holding `bytes` at each stack, in 1 MiB objects.
fn write_dump(path: &Path, meta: Meta<'_>, sites: &[(&str, u64)]) {
    let mut text = String::from("heap_v2/1\n  t*: 0: 0 [0: 0]\n");
    if let Some(pid) = meta.pid {
        text.push_str(&format!("# pid: {pid}\n# exe: /opt/app/bin/app\n"));
    }
    if let Some(kind) = meta.kind {
        text.push_str(&format!("# kind: {kind}\n"));
    }
    if let Some(t) = meta.time {
        text.push_str(&format!("# time: {t:.3}\n"));
    }
    for (stack, bytes) in sites {
        let objs = bytes.div_ceil(MIB);
        text.push_str(&format!(
            "@ {stack}\n  t*: {objs}: {bytes} [{objs}: {bytes}]\n"
        ));
    }
    text.push_str("\nMAPPED_LIBRARIES:\n7f0000000000-7f0000100000 r-xp 00000000 00:00 0 \n");
    std::fs::write(path, text).unwrap();
}

/// The four sites' values (MiB) at each of 6 dumps: a steady leak with one pause, noise that
/// ends higher than it started, a spike, and a large constant.
fn series(i: usize) -> Vec<(&'static str, u64)> {
    let leak = [10, 12, 14, 14, 17, 20][i];
    let noisy = [5, 6, 5, 6, 5, 7][i];
    let spike = [1, 1, 1, 40, 1, 1][i];
    vec![
        (BASE, 100 * MIB),
        (LEAK, leak * MIB),
        (NOISY, noisy * MIB),
        (SPIKE, spike * MIB),
    ]
}

/// Six dumps of pid 100, `step` seconds apart; returns their paths, last first.
fn write_series(dir: &Path, step: f64) -> Vec<String> {
    let mut paths = Vec::new();
    for i in (0..6).rev() {
        let path = dir.join(format!("jeprof.100.{i}.i{i}.heap"));
        let meta = Meta {
            pid: Some(100),
            kind: Some("heap"),
            time: Some(1_700_000_000.0 + step * i as f64),
        };
        write_dump(&path, meta, &series(i));
        paths.push(path.display().to_string());
    }
    paths
}

fn trend(args: &[String]) -> (i32, String, String) {
    let mut all: Vec<&str> = vec!["trend", PERF];
    all.extend(args.iter().map(String::as_str));
    let o = jeprof(&all);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

/// The names of the growing sites listed in a table (the rows after the `site` header).
fn growing(block: &str) -> Vec<&'static str> {
    const NAMES: [&str; 4] = ["parse_config", "cache_insert", "load_image", "decode_png"];
    block
        .lines()
        .skip_while(|l| !l.ends_with(" site"))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("=="))
        .map(|l| {
            NAMES
                .into_iter()
                .find(|n| l.contains(&format!(" {n}  [jit]")))
                .unwrap_or_else(|| panic!("unknown site in {l:?}"))
        })
        .collect()
}

#[test]
fn a_steady_leak_is_found_and_noise_and_spikes_are_not() {
    let dir = temp_dir("trend-hour");
    let (code, out, err) = trend(&write_series(&dir, 720.0));
    assert_eq!(code, 0, "{err}");
    let want = "== pid 100 (/opt/app/bin/app), heap dumps: 6 over 1.0 hours\n\
                inuse_space: 1 of 4 sites growing (rose in >= 2/3 of the intervals, grew more \
                than 1.6 MiB, never fell back by half)\n";
    assert!(out.starts_with(want), "{out}");
    assert_eq!(growing(&out), ["cache_insert"], "{out}");
    // 10 MiB over one hour, from first to last.
    assert!(
        out.contains("10.0 MiB 20.0 MiB +10.0 MiB/hour  4/5  cache_insert"),
        "{out}"
    );
}

#[test]
fn a_short_series_reports_the_span_not_a_rate() {
    let dir = temp_dir("trend-short");
    let (code, out, err) = trend(&write_series(&dir, 0.5));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("heap dumps: 6 over 2.5 s\n"), "{out}");
    assert!(out.contains("+10.0 MiB over 2.5 s"), "{out}");
    assert!(!out.contains("/hour"), "{out}");
    // 599 s is still short; 600 s is enough for a rate.
    let dir = temp_dir("trend-ten-minutes");
    let (_, out, _) = trend(&write_series(&dir, 120.0));
    assert!(out.contains("+60.0 MiB/hour"), "{out}");
    let dir = temp_dir("trend-under-ten-minutes");
    let (_, out, _) = trend(&write_series(&dir, 119.8));
    assert!(out.contains("+10.0 MiB over 10.0 min"), "{out}");

    let (_, json, _) = trend(&[
        "--json".to_string(),
        dir.join("jeprof.100.0.i0.heap").display().to_string(),
        dir.join("jeprof.100.5.i5.heap").display().to_string(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sites = v[0]["growing"].as_array().unwrap();
    assert_eq!(sites[0]["name"], "cache_insert", "{json}");
    assert!(sites[0]["growth_bytes_per_hour"].is_null(), "{json}");
    assert_eq!(sites[0]["growth_bytes"], 10.0 * MIB as f64, "{json}");
}

#[test]
fn mixed_inputs_are_grouped_by_process_and_kind() {
    let dir = temp_dir("trend-mixed");
    let mut args = Vec::new();
    for i in 0..6 {
        let t = Some(1_700_000_000.0 + i as f64);
        // pid 100: the leaking heap, and mmap siblings with a growing mapping.
        let heap = dir.join(format!("jeprof.100.{i}.i{i}.heap"));
        write_dump(
            &heap,
            Meta {
                pid: Some(100),
                kind: Some("heap"),
                time: t,
            },
            &series(i),
        );
        let mmap = dir.join(format!("jeprof.100.{i}.i{i}.mmap.heap"));
        let mapped = vec![(SPIKE, (4 + 4 * i as u64) * MIB), (BASE, 64 * MIB)];
        write_dump(
            &mmap,
            Meta {
                pid: Some(100),
                kind: Some("mmap"),
                time: t,
            },
            &mapped,
        );
        // pid 200: a flat heap ten times larger (alone it would dwarf pid 100's leak).
        let other = dir.join(format!("jeprof.200.{i}.i{i}.heap"));
        let flat = vec![(BASE, 1000 * MIB), (LEAK, MIB)];
        write_dump(
            &other,
            Meta {
                pid: Some(200),
                kind: Some("heap"),
                time: t,
            },
            &flat,
        );
        args.extend([other, mmap, heap].map(|p| p.display().to_string()));
    }
    let (code, out, err) = trend(&args);
    assert_eq!(code, 0, "{err}");
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 3, "{out}");
    assert!(blocks[0].starts_with("== pid 100 (/opt/app/bin/app), heap dumps: 6 over 5.0 s"));
    assert_eq!(growing(blocks[0]), ["cache_insert"], "{out}");
    assert!(blocks[1].starts_with("== pid 100 (/opt/app/bin/app), mmap dumps: 6 over 5.0 s"));
    assert_eq!(growing(blocks[1]), ["decode_png"], "{out}");
    assert!(blocks[2].starts_with("== pid 200 (/opt/app/bin/app), heap dumps: 6 over 5.0 s"));
    assert!(blocks[2].contains("0 of 2 sites growing"), "{out}");

    let (_, json, _) = trend(&[vec!["--json".to_string()], args].concat());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let groups: Vec<(u64, &str, usize)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let n = g["dumps"].as_array().unwrap().len();
            (g["pid"].as_u64().unwrap(), g["kind"].as_str().unwrap(), n)
        })
        .collect();
    assert_eq!(
        groups,
        [(100, "heap", 6), (100, "mmap", 6), (200, "heap", 6)]
    );
}

#[test]
fn dumps_without_metadata_are_grouped_and_ordered_by_file_name() {
    let dir = temp_dir("trend-names");
    let mut args = Vec::new();
    for i in [3, 0, 5, 1, 4, 2] {
        let no_meta = Meta {
            pid: None,
            kind: None,
            time: None,
        };
        let heap = dir.join(format!("app.300.{i}.i{i}.heap"));
        write_dump(&heap, no_meta, &series(i));
        let mmap = dir.join(format!("app.300.{i}.i{i}.mmap.heap"));
        write_dump(&mmap, no_meta, &[(BASE, 64 * MIB)]);
        args.extend([heap, mmap].map(|p| p.display().to_string()));
    }
    let (code, out, err) = trend(&args);
    assert_eq!(code, 0, "{err}");
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert!(
        blocks[0].starts_with("== pid 300, heap dumps: 6\n"),
        "{out}"
    );
    assert_eq!(growing(blocks[0]), ["cache_insert"], "{out}");
    assert!(blocks[0].contains("+10.0 MiB over 6 dumps"), "{out}");
    assert!(
        blocks[1].starts_with("== pid 300, mmap dumps: 6\n"),
        "{out}"
    );
    assert!(blocks[1].contains("0 of 1 sites growing"), "{out}");
}

#[test]
fn diff_refuses_two_kinds_or_two_processes() {
    let dir = temp_dir("diff-mixed");
    let at = |name: &str| -> PathBuf { dir.join(name) };
    let t = Some(1_700_000_000.0);
    write_dump(
        &at("a.heap"),
        Meta {
            pid: Some(100),
            kind: Some("heap"),
            time: t,
        },
        &series(0),
    );
    write_dump(
        &at("b.heap"),
        Meta {
            pid: Some(100),
            kind: Some("heap"),
            time: t,
        },
        &series(5),
    );
    write_dump(
        &at("a.mmap.heap"),
        Meta {
            pid: Some(100),
            kind: Some("mmap"),
            time: t,
        },
        &series(5),
    );
    write_dump(
        &at("c.heap"),
        Meta {
            pid: Some(200),
            kind: Some("heap"),
            time: t,
        },
        &series(5),
    );
    // jemalloc-style names without metadata: the kind comes from the name.
    write_dump(
        &at("je.7.0.f.mmap.heap"),
        Meta {
            pid: None,
            kind: None,
            time: None,
        },
        &series(5),
    );
    let s = |p: PathBuf| p.display().to_string();
    let diff = |args: &[String]| {
        let mut all: Vec<&str> = vec!["diff", PERF];
        all.extend(args.iter().map(String::as_str));
        jeprof(&all)
    };

    let o = diff(&[s(at("a.heap")), s(at("b.heap"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cache_insert"));

    let o = diff(&[s(at("a.heap")), s(at("a.mmap.heap"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert_eq!(
        stderr(&o).lines().last().unwrap(),
        format!(
            "jeprof-rs: diff: {} is a heap dump and {} a mmap dump; compare two dumps of one kind",
            s(at("a.heap")),
            s(at("a.mmap.heap"))
        )
    );
    let o = diff(&[
        s(at("a.heap")),
        s(at("je.7.0.f.mmap.heap")),
        "--cross-process".into(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is a heap dump and"), "{}", stderr(&o));

    let o = diff(&[s(at("a.heap")), s(at("c.heap"))]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).lines().last().unwrap(),
        format!(
            "jeprof-rs: diff: {} is from pid 100 (/opt/app/bin/app) and {} from pid 200 \
             (/opt/app/bin/app); pass --cross-process to compare two processes",
            s(at("a.heap")),
            s(at("c.heap"))
        )
    );
    let o = diff(&[s(at("a.heap")), s(at("c.heap")), "--cross-process".into()]);
    assert!(o.status.success(), "{}", stderr(&o));
}
