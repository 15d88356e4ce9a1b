//! Addresses in stacks are return addresses: the instruction after the call. Looking one up
//! as-is names the *next* line (or, after a call to a `noreturn` function, the next function).
//! [`ReturnAddress::lookup`] is the only way to get the address to symbolize, so the `- 1` rule
//! cannot be forgotten.

use std::fmt;

/// A return address as found in a stack of a heap profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReturnAddress(pub u64);

impl ReturnAddress {
    /// The address to look up: inside the call instruction.
    pub fn lookup(self) -> u64 {
        self.0.saturating_sub(1)
    }

    /// The address as written in the profile.
    pub fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReturnAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_inside_the_call() {
        assert_eq!(ReturnAddress(0x1000).lookup(), 0xfff);
        assert_eq!(ReturnAddress(0).lookup(), 0);
    }
}
