//! Duration and size strings as the TOML and the command line write them.

use std::time::Duration;

/// Parse `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"1.5s"`; a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid duration {s:?} (needs a unit: ms, s, m, h)"))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 250ms, 10s, 5m)"))?;
    let mult = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {s:?} (unit must be ms, s, m or h)"
            ))
        }
    };
    let secs = n * mult;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("invalid duration {s:?} (out of range)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Render a duration the way the config writes it (`250ms`, `10s`, `5m`).
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parse a size like `10M`, `512k`, `1G` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. 10M, 512k)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid size {s:?} (unit must be k, M or G)")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

/// `recording.min_free`: a percentage of the filesystem (`"5%"`, above 0 and at most 50)
/// or a size like `parse_size`.
pub fn parse_min_free(s: &str) -> Result<super::MinFree, String> {
    let t = s.trim();
    let Some(num) = t.strip_suffix('%') else {
        return parse_size(t)
            .map(super::MinFree::Bytes)
            .map_err(|_| format!("invalid min_free {s:?} (expected e.g. \"5%\" or \"100M\")"));
    };
    match num.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 50.0 => Ok(super::MinFree::Percent(p)),
        _ => Err(format!(
            "invalid min_free {s:?} (a percentage above 0 and at most 50%)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1.5s", 1500),
            ("0", 0),
            ("0s", 0),
        ];
        for (s, ms) in table {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        for bad in ["", "10", "s", "10x", "-1s", "1e400s", "ten s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("10X").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn min_free() {
        use super::super::MinFree;
        let table = [
            ("5%", Some(MinFree::Percent(5.0))),
            ("0.5 %", Some(MinFree::Percent(0.5))),
            ("50%", Some(MinFree::Percent(50.0))),
            ("100M", Some(MinFree::Bytes(100 << 20))),
            ("4096", Some(MinFree::Bytes(4096))),
            ("0%", None),
            ("51%", None),
            ("-1%", None),
            ("x%", None),
            ("0", None),
            ("lots", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_min_free(s).ok(), want, "{s}");
        }
        assert_eq!(MinFree::Percent(5.0).bytes(1000), 50);
        assert_eq!(MinFree::Percent(0.5).bytes(1001), 6);
        assert_eq!(MinFree::Bytes(7).bytes(1000), 7);
        for (v, shown) in [
            (MinFree::Bytes(640 << 10), "640K"),
            (MinFree::Bytes(100 << 20), "100M"),
            (MinFree::Bytes(2 << 30), "2G"),
            (MinFree::Bytes(1000), "1000"),
            (MinFree::Percent(0.5), "0.5%"),
        ] {
            assert_eq!(v.show(), shown);
            assert_eq!(parse_min_free(shown), Ok(v), "{shown}");
        }
    }
}
