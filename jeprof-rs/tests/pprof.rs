//! `pprof` output parsed back with the crate's tiny protobuf decoder, and by `go tool pprof`
//! when Go is installed (skipped, saying so, otherwise).

mod common;
use common::*;

use std::collections::HashMap;
use std::io::Read;

use jeprof_rs::report::proto::{Value, decode, decode_packed};

fn varint(fields: &[(u32, Value<'_>)], field: u32) -> u64 {
    fields
        .iter()
        .find_map(|(f, v)| match v {
            Value::Varint(x) if *f == field => Some(*x),
            _ => None,
        })
        .unwrap_or(0)
}

fn messages<'a>(fields: &[(u32, Value<'a>)], field: u32) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter_map(|(f, v)| match v {
            Value::Bytes(b) if *f == field => Some(*b),
            _ => None,
        })
        .collect()
}

#[test]
fn profile_proto_round_trip() {
    let dir = temp_dir("pprof");
    let out = dir.join("app.pb.gz");
    let o = jeprof(&[
        "pprof",
        "tests/data/app.heap",
        "--perf-map=tests/data/app.perf.map",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let gz = std::fs::read(&out).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let top = decode(&raw).expect("valid protobuf");

    let strings: Vec<String> = messages(&top, 6)
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(strings[0], "");
    let types: Vec<(String, String)> = messages(&top, 1)
        .iter()
        .map(|m| {
            let f = decode(m).unwrap();
            (
                strings[varint(&f, 1) as usize].clone(),
                strings[varint(&f, 2) as usize].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(types, expected);
    assert_eq!(strings[varint(&top, 14) as usize], "inuse_space");
    assert_eq!(varint(&top, 12), 524288);

    // Functions by id, locations by id (with their lines).
    let functions: HashMap<u64, String> = messages(&top, 5)
        .iter()
        .map(|m| {
            let f = decode(m).unwrap();
            (varint(&f, 1), strings[varint(&f, 2) as usize].clone())
        })
        .collect();
    let locations: HashMap<u64, Vec<String>> = messages(&top, 4)
        .iter()
        .map(|m| {
            let f = decode(m).unwrap();
            let lines = messages(&f, 4)
                .iter()
                .map(|l| functions[&varint(&decode(l).unwrap(), 1)].clone())
                .collect();
            (varint(&f, 1), lines)
        })
        .collect();

    // Samples: leaf function -> inuse_space.
    let mut by_leaf: HashMap<String, i64> = HashMap::new();
    let mut total = 0;
    for s in messages(&top, 2) {
        let f = decode(s).unwrap();
        let ids = decode_packed(messages(&f, 1)[0]).unwrap();
        let values = decode_packed(messages(&f, 2)[0]).unwrap();
        assert_eq!(values.len(), 4);
        let leaf = locations[&ids[0]][0].clone();
        assert_ne!(leaf, "malloc", "allocator frames are dropped");
        *by_leaf.entry(leaf).or_default() += values[3] as i64;
        total += values[3] as i64;
    }
    // Same numbers as `top --json`.
    let o = jeprof(&[
        "top",
        "tests/data/app.heap",
        "--perf-map=tests/data/app.perf.map",
        "--json",
        "-n",
        "100",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let json_total = json["total_bytes"].as_i64().unwrap();
    assert!((total - json_total).abs() <= 5, "{total} vs {json_total}");
    for row in json["rows"].as_array().unwrap() {
        let flat = row["flat_bytes"].as_i64().unwrap();
        if flat != 0 {
            let got = by_leaf[row["name"].as_str().unwrap()];
            assert!((got - flat).abs() <= 2, "{row}: {got}");
        }
    }

    // go tool pprof reads it, when Go is installed (CI installs it: there, a missing `go` is a
    // failure, not a skip).
    if !have_command("go") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install golang-go for this check"
        );
        eprintln!("skipping go tool pprof check: `go` not installed (apt-get install golang-go)");
        return;
    }
    let o = std::process::Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=inuse_space"])
        .arg(&out)
        .env("HOME", &dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("PPROF_TMPDIR", &dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "go tool pprof failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("load_image") && text.contains("cache_insert"),
        "{text}"
    );
}
