//! Which of the four numbers of a heap profile a report shows.

use std::fmt;

/// The measure of a report: in-use or allocated, bytes or objects (jeprof's four options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Measure {
    #[default]
    InuseSpace,
    InuseObjects,
    AllocSpace,
    AllocObjects,
}

impl Measure {
    /// True for the two byte measures.
    pub fn is_bytes(self) -> bool {
        matches!(self, Self::InuseSpace | Self::AllocSpace)
    }

    /// True for the two allocated (cumulative since start) measures.
    pub fn is_alloc(self) -> bool {
        matches!(self, Self::AllocSpace | Self::AllocObjects)
    }

    /// The unit word: `bytes` or `objects`.
    pub fn unit(self) -> &'static str {
        if self.is_bytes() { "bytes" } else { "objects" }
    }

    /// The option-like name, e.g. `inuse_space`.
    pub fn name(self) -> &'static str {
        match self {
            Self::InuseSpace => "inuse_space",
            Self::InuseObjects => "inuse_objects",
            Self::AllocSpace => "alloc_space",
            Self::AllocObjects => "alloc_objects",
        }
    }

    /// The same measure, for the other unit (space <-> objects).
    pub fn companion(self) -> Self {
        match self {
            Self::InuseSpace => Self::InuseObjects,
            Self::InuseObjects => Self::InuseSpace,
            Self::AllocSpace => Self::AllocObjects,
            Self::AllocObjects => Self::AllocSpace,
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
