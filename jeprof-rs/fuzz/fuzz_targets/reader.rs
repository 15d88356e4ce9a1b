//! Fuzz the profile reader: any bytes must parse or give a line-numbered error, never panic.
//! Also checks invariants of what parses. Seed corpus: `../tests/corpus`.
//!
//! ```sh
//! cd jeprof-rs/fuzz && cargo +nightly fuzz run reader ../tests/corpus
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match jeprof_rs::reader::parse(data) {
        Ok(profile) => {
            for sample in &profile.samples {
                let v = &sample.values;
                assert!(v.inuse_bytes.is_finite() && v.inuse_objects.is_finite());
                assert!(v.alloc_bytes.is_finite() && v.alloc_objects.is_finite());
                assert!(v.inuse_bytes >= sample.raw.inuse_bytes as f64 * 0.999_999);
            }
            let table = jeprof_rs::maps::MapTable::new(&profile.mappings);
            for sample in &profile.samples {
                for addr in &sample.stack {
                    let _ = table.find(addr.lookup());
                }
            }
        }
        Err(e) => {
            assert!(e.line >= 1);
            let newlines = data.iter().filter(|&&b| b == b'\n').count();
            assert!(e.line <= newlines + 2);
        }
    }
});
