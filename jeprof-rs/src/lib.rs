//! jeprof-rs: reads heap profiles (jemalloc `heap_v2`, gperftools `heap profile:`) and answers
//! "which stack holds the memory".
//!
//! The pipeline is a straight line, one module per step:
//!
//! ```text
//! reader  ─► Profile (raw counts, unsampled values, metadata, maps)
//! maps    ─► Mapping table from MAPPED_LIBRARIES
//! symbolize ─► one Symbol list per unique return address (ELF, DWARF, perf maps)
//! resolve ─► Resolved: interned frames, allocator frames dropped, stacks of frame ids
//! filter  ─► --focus / --ignore / --base
//! report::{top, collapsed, flame, diff, trend, pprof} ─► text, JSON, SVG, profile.proto
//! ```
//!
//! [`attach`] is apart from the pipeline: a client of HotSpot's attach mechanism (`jcmd`, and
//! loading an agent into a running JVM).
//!
//! `main.rs` is a thin shell over [`cli`]. The only `unsafe` lives in [`sys`] (memory-mapping
//! object files, pidfds and signals) and `attach::sys` (per-thread credentials, the attach
//! trigger); everything else is safe code. [`target`] checks a live process running the preload
//! before any command sends it anything.

#![deny(unsafe_code)]

pub mod address;
pub mod attach;
pub mod cli;
pub mod demangle;
pub mod error;
pub mod filter;
pub mod html_report;
pub mod humanize;
pub mod maps;
pub mod measure;
pub mod profile;
pub mod reader;
pub mod report;
pub mod resolve;
pub mod run;
pub mod serve;
pub mod symbolize;
pub mod sys;
pub mod target;
pub mod unsample;
