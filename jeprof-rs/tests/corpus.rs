//! Replays the seed corpus of the fuzz target (tests/corpus) through the reader: every file
//! parses or fails with a line number, never panics. Also mutates each file a little
//! (truncations, byte flips) to cover more of the reader in a normal `cargo test`.

use jeprof_rs::reader;

fn check(bytes: &[u8]) {
    match reader::parse(bytes) {
        Ok(p) => {
            for s in &p.samples {
                assert!(s.values.inuse_bytes.is_finite() && s.values.alloc_bytes.is_finite());
            }
        }
        Err(e) => assert!(
            e.line >= 1 && e.line <= bytes.iter().filter(|&&b| b == b'\n').count() + 2,
            "{e:?}"
        ),
    }
}

#[test]
fn corpus_replays_without_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = reader::parse(&bytes);
        if name.starts_with("good-") {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else if name.starts_with("bad-") {
            assert!(result.is_err(), "{name} must not parse");
        }
        check(&bytes);
        // Every truncation point of the first 4 KiB, and a flipped byte at each of them.
        for cut in 0..bytes.len().min(4096) {
            check(&bytes[..cut]);
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0x5a;
            check(&flipped);
        }
        n += 1;
    }
    assert!(n >= 10, "corpus has {n} files");
}
