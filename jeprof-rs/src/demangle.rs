//! Symbol names for humans: Rust (legacy and v0) via rustc-demangle, C++ via cpp_demangle,
//! anything else unchanged.

/// Demangle a linkage name; returns it unchanged when it is not mangled (C names).
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        // `{:#}` drops the `::h0123456789abcdef` hash.
        return format!("{d:#}");
    }
    if name.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(name.as_bytes())
    {
        let options = cpp_demangle::DemangleOptions::new().no_return_type();
        if let Ok(text) = sym.demangle_with_options(&options) {
            return text;
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn demangles() {
        assert_eq!(demangle("malloc"), "malloc");
        assert_eq!(demangle("_Znwm"), "operator new(unsigned long)");
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    }
}
