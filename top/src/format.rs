//! Human units and timestamps for the terminal and JSON output.

pub fn fit(s: &str, width: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(width)
        .collect()
}

/// A rate or count with k/M/G suffixes: 950, 1.2k, 34M.
pub fn count(v: f64) -> String {
    scaled(v, 1000.0, &["", "k", "M", "G", "T"])
}

/// Bytes with binary units: 512B, 1.5Ki, 34Mi.
pub fn bytes(v: f64) -> String {
    scaled(v, 1024.0, &["B", "Ki", "Mi", "Gi", "Ti"])
}

fn scaled(mut v: f64, base: f64, units: &[&str]) -> String {
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 || v >= 100.0 {
        format!("{:.0}{}", v, units[i])
    } else {
        format!("{:.1}{}", v, units[i])
    }
}

/// Dollars in at most 7 cells: 0.42, 12.30, 1234, 12.3k.
pub fn money(usd: f64) -> String {
    if !usd.is_finite() || usd < 0.0 {
        "?".into()
    } else if usd < 100.0 {
        format!("{usd:.2}")
    } else if usd < 10_000.0 {
        format!("{usd:.0}")
    } else {
        count(usd)
    }
}

pub use tally_core::time::rfc3339;

#[cfg(test)]
mod tests {

    #[test]
    fn money_is_short() {
        assert_eq!(money(0.421), "0.42");
        assert_eq!(money(12.3), "12.30");
        assert_eq!(money(1234.4), "1234");
        assert_eq!(money(12_345.0), "12.3k");
        assert_eq!(money(f64::NAN), "?");
    }

    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_743_000_123);
        assert_eq!(rfc3339(t), "2026-11-27T01:30:00.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn units() {
        assert_eq!(count(950.0), "950");
        assert_eq!(count(1234.0), "1.2k");
        assert_eq!(count(123_456.0), "123k");
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(bytes(1536.0), "1.5Ki");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0Gi");
    }
}
