//! Builds the one piece of C the preload needs: initial-exec thread-local state.
//!
//! Stable Rust cannot choose a TLS model, and the general-dynamic model goes through
//! `__tls_get_addr`, which may allocate. A tiny C file with `tls_model("initial-exec")`
//! gives every thread an allocation-free slot that stays valid through thread teardown.
fn main() {
    println!("cargo:rerun-if-changed=src/thread_state.c");
    cc::Build::new()
        .file("src/thread_state.c")
        .flag_if_supported("-fvisibility=hidden")
        .opt_level(2)
        .compile("jeprof_thread_state");
}
