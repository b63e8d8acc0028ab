//! Sizes, durations and rates as people type them: `64`, `1K`, `64KiB`,
//! `10s`, `2m`, `500ms`, `20k` (per second).

use std::time::Duration;

/// A byte size: a number with an optional binary suffix (K, KB, KiB = 1024;
/// M, MB, MiB = 1024²; G, GB, GiB = 1024³), case-insensitive.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?}: expected a size like 64, 1K, 64KiB, 1M"))?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown size unit {unit:?} (use K, KiB, M, MiB, G, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
}

/// A duration: a number with a unit (us, ms, s, m, h); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 500ms, 10s, 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown duration unit {unit:?} (use us, ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration above zero (how long to run, an expiry, a timeout).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: a duration must be positive"));
    }
    Ok(d)
}

/// A rate per second: a number with an optional decimal suffix (k = 1000, M = 10⁶).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches("/s");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a rate like 1000, 20k, 1M"))?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("{s:?}: a rate must be positive"));
    }
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO), "a spin or a timeout may be zero");
        assert!(parse_positive_duration("0s").unwrap_err().contains("must be positive"));
        assert!(parse_positive_duration("0.0ms").is_err());
        assert_eq!(parse_positive_duration("1us"), Ok(Duration::from_micros(1)));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20k"), Ok(20_000.0));
        assert_eq!(parse_rate("1000/s"), Ok(1000.0));
        assert!(parse_rate("0").is_err());
    }
}
