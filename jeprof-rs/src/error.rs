//! Errors: a small `Copy` parse error (line number + kind) produced by the reader, and the
//! [`Error`] the CLI prints, which adds the file name at the file boundary.
//!
//! Every error prints as one line: `<file>:<line>: <what is wrong>` (or `<file>: <what>` when no
//! line applies). `main` prefixes `jeprof-rs: ` and exits non-zero.

use std::fmt;
use std::path::{Path, PathBuf};

/// What is wrong with one line of a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The file has no bytes at all.
    Empty,
    /// The first line is neither `heap_v2/<period>` nor `heap profile: ...`.
    NotAProfile,
    /// `heap_v2/` followed by something that is not a sample period.
    BadHeader,
    /// The line is not valid UTF-8 (binary data in a text profile).
    NotUtf8,
    /// The file ends without a newline: it was cut in the middle of this line.
    CutLine,
    /// A `@ ...` stack line is not followed by its `t*:` counts line.
    StackWithoutCounts,
    /// A stack has two `t*:` lines.
    DuplicateCounts,
    /// A counts field is not a decimal number.
    BadNumber,
    /// A count does not fit in 64 bits.
    NumberOverflow,
    /// A frame of a stack is not a hexadecimal address.
    BadAddress,
    /// A frame address does not fit in 64 bits.
    AddressOverflow,
    /// A counts line does not have the `n: s [n: s]` shape.
    BadCounts,
    /// A line that is none of the known kinds.
    Malformed,
    /// The file ends before the `MAPPED_LIBRARIES:` section (truncated dump).
    MissingMaps,
    /// A line of the `MAPPED_LIBRARIES:` section is not a `/proc/<pid>/maps` line.
    BadMapsLine,
    /// A `# rss_map` or `# mapped_range` line does not have its fields.
    BadResidency,
    /// A `# java_method` line is not `0x<frame> <name>`.
    BadJavaMethod,
}

impl ParseErrorKind {
    /// A short English description, used in the one-line error message.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Empty => "empty file, not a heap profile",
            Self::NotAProfile => {
                "not a heap profile (expected a `heap_v2/<period>` or `heap profile:` header)"
            }
            Self::BadHeader => "bad header: expected `heap_v2/<sample period in bytes>`",
            Self::NotUtf8 => "line is not text (invalid UTF-8)",
            Self::CutLine => "file truncated in the middle of this line (no final newline)",
            Self::StackWithoutCounts => {
                "stack `@ ...` is not followed by its `t*:` counts line (truncated or malformed)"
            }
            Self::DuplicateCounts => "second `t*:` line for the same stack",
            Self::BadNumber => "count is not a decimal number",
            Self::NumberOverflow => "count does not fit in 64 bits",
            Self::BadAddress => "frame is not a hexadecimal address",
            Self::AddressOverflow => "frame address does not fit in 64 bits",
            Self::BadCounts => "counts line is not of the form `N: BYTES [N: BYTES]`",
            Self::Malformed => "unrecognized line",
            Self::MissingMaps => "file truncated: no `MAPPED_LIBRARIES:` section",
            Self::BadMapsLine => {
                "malformed `MAPPED_LIBRARIES:` line (expected a /proc/<pid>/maps line)"
            }
            Self::BadResidency => {
                "malformed `# rss_map START-END RSS anon|file PATH` or `# mapped_range START-END RESIDENT STACK_ID` line"
            }
            Self::BadJavaMethod => "malformed `# java_method 0xFRAME NAME` line",
        }
    }
}

/// A parse error: 1-based line number and kind. `Copy`, never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub fn new(line: usize, kind: ParseErrorKind) -> Self {
        Self { line, kind }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.kind.describe())
    }
}

impl std::error::Error for ParseError {}

/// An error as the CLI reports it: always names the file it is about, when there is one.
#[derive(Debug)]
pub enum Error {
    /// A profile (or perf map) that does not parse.
    Parse { file: PathBuf, error: ParseError },
    /// A file that cannot be opened, read or written.
    Io {
        file: PathBuf,
        what: &'static str,
        error: std::io::Error,
    },
    /// A problem with one file that is not about a line (e.g. an empty series).
    File { file: PathBuf, message: String },
    /// A bad command-line argument (e.g. a regex that does not compile).
    Usage(String),
    /// A live process that a command refused to touch (see `target`), with the reason.
    Target(String),
    /// The command of `run` cannot run: not found (127) or not executable (126).
    Command {
        command: String,
        message: &'static str,
        code: i32,
    },
    /// Talking to a JVM through its attach mechanism failed.
    Attach(crate::attach::AttachError),
    /// The command of `run` could not be started.
    Spawn {
        command: String,
        error: std::io::Error,
    },
}

impl Error {
    pub fn parse(file: &Path, error: ParseError) -> Self {
        Self::Parse {
            file: file.to_path_buf(),
            error,
        }
    }

    pub fn io(file: &Path, what: &'static str, error: std::io::Error) -> Self {
        Self::Io {
            file: file.to_path_buf(),
            what,
            error,
        }
    }

    /// The process exit code for this error (127 when a command could not be started).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Spawn { .. } => 127,
            Self::Command { code, .. } => *code,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse { file, error } => write!(f, "{}:{}", file.display(), error),
            Self::Io { file, what, error } => write!(f, "{}: {what}: {error}", file.display()),
            Self::File { file, message } => write!(f, "{}: {message}", file.display()),
            Self::Usage(message) | Self::Target(message) => f.write_str(message),
            Self::Command {
                command, message, ..
            } => write!(f, "{command}: {message}"),
            Self::Attach(e) => write!(f, "{e}"),
            Self::Spawn { command, error } => write!(f, "{command}: cannot run command: {error}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::attach::AttachError> for Error {
    fn from(e: crate::attach::AttachError) -> Self {
        Self::Attach(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
