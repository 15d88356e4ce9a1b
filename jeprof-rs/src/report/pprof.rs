//! `pprof`: a gzipped profile.proto (github.com/google/pprof/proto/profile.proto) with the
//! four sample types of a heap profile, mappings (with build ids), locations with inlined
//! `Line`s (innermost first, the caller last), functions and the string table.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::proto::Writer;
use crate::maps::MapTable;
use crate::profile::Profile;
use crate::resolve::{Stack, Tables};

/// Interned strings; index 0 is the empty string, as profile.proto requires.
struct Strings {
    list: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            list: Vec::new(),
            index: HashMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The sample types, in the order of each sample's values.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Encode (uncompressed) profile.proto bytes.
pub fn encode(
    tables: &Tables,
    stacks: &[Stack],
    maps: &MapTable,
    build_ids: &HashMap<String, String>,
    profile: &Profile,
) -> Vec<u8> {
    let mut strings = Strings::new();
    let mut w = Writer::default();

    let types: Vec<(i64, i64)> = SAMPLE_TYPES
        .iter()
        .map(|(t, u)| (strings.get(t), strings.get(u)))
        .collect();
    for &(t, u) in &types {
        w.message(1, |m| {
            m.int64(1, t);
            m.int64(2, u);
        });
    }

    // Samples, collecting the locations they use (ids are 1-based).
    let mut location_ids: HashMap<usize, u64> = HashMap::new();
    let mut used_locations: Vec<usize> = Vec::new();
    for stack in stacks {
        let ids: Vec<u64> = stack
            .locations
            .iter()
            .map(|&l| {
                *location_ids.entry(l).or_insert_with(|| {
                    used_locations.push(l);
                    used_locations.len() as u64
                })
            })
            .collect();
        let v = &stack.values;
        let values = [
            v.alloc_objects,
            v.alloc_bytes,
            v.inuse_objects,
            v.inuse_bytes,
        ]
        .map(|x| x.round() as i64 as u64);
        w.message(2, |m| {
            m.packed(1, ids.iter().copied());
            m.packed(2, values);
        });
    }

    // Mappings used by those locations.
    let mut mapping_ids: HashMap<usize, u64> = HashMap::new();
    let mut used_mappings: Vec<usize> = Vec::new();
    for &l in &used_locations {
        if let Some(mi) = tables.locations[l].mapping {
            mapping_ids.entry(mi).or_insert_with(|| {
                used_mappings.push(mi);
                used_mappings.len() as u64
            });
        }
    }
    // In address order, which puts the main executable first (pprof takes mapping 1 as the
    // main binary); ids follow that order.
    used_mappings.sort_unstable();
    for (i, &mi) in used_mappings.iter().enumerate() {
        mapping_ids.insert(mi, i as u64 + 1);
    }
    for (i, &mi) in used_mappings.iter().enumerate() {
        let m = &maps.mappings()[mi];
        let path = m.path.clone().unwrap_or_default();
        let filename = strings.get(&path);
        let build_id = build_ids.get(&path).map_or(0, |id| strings.get(id));
        w.message(3, |msg| {
            msg.uint64(1, i as u64 + 1);
            msg.uint64(2, m.start);
            msg.uint64(3, m.end);
            msg.uint64(4, m.offset);
            msg.int64(5, filename);
            msg.int64(6, build_id);
            msg.bool(7, true);
            msg.bool(8, true);
            msg.bool(9, true);
            msg.bool(10, true);
        });
    }

    // Functions by (name, file).
    let mut function_ids: HashMap<(String, Option<String>), u64> = HashMap::new();
    let mut functions: Vec<(i64, i64)> = Vec::new();
    for (i, &l) in used_locations.iter().enumerate() {
        let loc = &tables.locations[l];
        let mut lines: Vec<(u64, i64)> = Vec::new();
        for &f in &loc.frames {
            let frame = &tables.frames[f];
            let key = (frame.function.clone(), frame.file.clone());
            let id = match function_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let name = strings.get(&frame.function);
                    let file = frame.file.as_deref().map_or(0, |f| strings.get(f));
                    functions.push((name, file));
                    function_ids.insert(key, functions.len() as u64);
                    functions.len() as u64
                }
            };
            lines.push((id, frame.line.map_or(0, i64::from)));
        }
        let mapping = loc
            .mapping
            .and_then(|mi| mapping_ids.get(&mi).copied())
            .unwrap_or(0);
        w.message(4, |msg| {
            msg.uint64(1, i as u64 + 1);
            msg.uint64(2, mapping);
            msg.uint64(3, loc.address);
            for &(function, line) in &lines {
                msg.message(4, |l| {
                    l.uint64(1, function);
                    l.int64(2, line);
                });
            }
        });
    }
    for (i, &(name, file)) in functions.iter().enumerate() {
        w.message(5, |msg| {
            msg.uint64(1, i as u64 + 1);
            msg.int64(2, name);
            msg.int64(3, name);
            msg.int64(4, file);
        });
    }

    let period_type = (strings.get("space"), strings.get("bytes"));
    let default_type = strings.get("inuse_space");
    let comment = strings.get("written by jeprof-rs");
    for s in &strings.list {
        w.bytes(6, s.as_bytes());
    }
    if let Some(t) = profile.time() {
        w.int64(9, (t * 1e9) as i64);
    }
    w.message(11, |m| {
        m.int64(1, period_type.0);
        m.int64(2, period_type.1);
    });
    w.int64(12, profile.period as i64);
    w.packed(13, [comment as u64]);
    w.int64(14, default_type);
    w.buf
}

/// Gzip bytes (pprof reads both, but `.pb.gz` is the convention).
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data)?;
    enc.finish()
}
