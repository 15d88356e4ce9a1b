//! Numbers for people: `1.5 MiB`, `12.0 KiB`, `999 B`; object counts as integers.

/// Binary-prefixed bytes with one decimal (exact below 1 KiB). Negative values keep their sign.
pub fn bytes(value: f64) -> String {
    let sign = if value < 0.0 { "-" } else { "" };
    let v = value.abs();
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if v.round() < 1024.0 {
        return format!("{sign}{} B", v.round() as u64);
    }
    let mut scaled = v / 1024.0;
    let mut unit = 0;
    while scaled >= 1023.95 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    format!("{sign}{scaled:.1} {}", UNITS[unit])
}

/// A value of the given unit: humanized bytes, or a rounded count.
pub fn value(v: f64, is_bytes: bool, exact: bool) -> String {
    if is_bytes && !exact {
        bytes(v)
    } else {
        format!("{}", v.round() as i64)
    }
}

/// A percentage with one decimal, or `-` when the total is zero.
pub fn percent(part: f64, total: f64) -> String {
    if total == 0.0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * part / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1024.0), "1.0 KiB");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(bytes(1024.0 * 1024.0 - 1.0), "1.0 MiB");
        assert_eq!(bytes(-2048.0), "-2.0 KiB");
        assert_eq!(value(2.6, false, false), "3");
        assert_eq!(value(2048.0, true, true), "2048");
        assert_eq!(percent(1.0, 4.0), "25.0%");
        assert_eq!(percent(1.0, 0.0), "-");
    }
}
