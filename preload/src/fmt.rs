//! Allocation-free text formatting: a fixed buffer implementing `core::fmt::Write`.
//!
//! `core::fmt` never allocates by itself; only `format!`/`String` do. Formatting into a
//! fixed buffer is therefore safe inside a malloc hook. Output that does not fit is cut.

use core::fmt;

pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends bytes, silently truncating at capacity.
    pub fn push(&mut self, s: &[u8]) {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The contents followed by a NUL, for system calls; `None` if there is no room for it or
    /// the contents contain a NUL.
    pub fn as_cstr(&mut self) -> Option<&core::ffi::CStr> {
        if self.len >= N || self.buf[..self.len].contains(&0) {
            return None;
        }
        self.buf[self.len] = 0;
        core::ffi::CStr::from_bytes_with_nul(&self.buf[..=self.len]).ok()
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn formats_and_truncates() {
        let mut b = StackBuf::<8>::new();
        write!(b, "{}-{:#x}", 12, 255).unwrap();
        assert_eq!(b.as_bytes(), b"12-0xff");
        b.push(b"abc");
        assert_eq!(b.as_bytes(), b"12-0xffa");
        assert!(b.as_cstr().is_none(), "no room for the NUL");
        b.clear();
        b.push(b"/tmp/x");
        assert_eq!(b.as_cstr().unwrap().to_bytes(), b"/tmp/x");
    }
}
