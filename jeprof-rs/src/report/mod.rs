//! Reports over resolved stacks. Each submodule computes a value and formats it to a `String`
//! or bytes; writing files and printing are the CLI's job.

pub mod collapsed;
pub mod diff;
pub mod flame;
pub mod memory;
pub mod pprof;
pub mod proto;
pub mod top;
pub mod trend;
