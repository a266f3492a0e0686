//! Durations as workflow files write them: `90s`, `15m`, `12h`, `2d`, `1h30m`, or a bare
//! number of seconds. Stored canonically with the largest units first (`90s` → `1m30s`).

use serde::{Deserialize, Serialize};

/// A whole number of seconds, written in workflow files with units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(u64);

/// The longest duration accepted: ten years, far past any sane human deadline.
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

impl Duration {
    /// A duration of `secs` seconds.
    pub fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// The length in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// Parses `90s`, `1h30m`, `2d` (units `s`, `m`, `h`, `d`, each at most once, largest first).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{text}` is not a duration (write e.g. `90s`, `15m`, `12h`, `1h30m`, `2d`)")
        };
        let text_trim = text.trim();
        if text_trim.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut last_unit = u64::MAX;
        for c in text_trim.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(bad()),
            };
            if digits.is_empty() || unit >= last_unit {
                return Err(bad());
            }
            let n: u64 = digits.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            digits.clear();
            last_unit = unit;
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        Self::checked(total)
    }

    /// Builds a duration from a number of `unit` seconds (e.g. `timeout_hours: 1.5`).
    pub fn from_units(amount: f64, unit: u64) -> Result<Self, String> {
        let secs = amount * unit as f64;
        if !secs.is_finite() || secs <= 0.0 {
            return Err(format!("`{amount}` is not a positive amount of time"));
        }
        if secs > MAX_SECONDS as f64 {
            return Err(format!(
                "longer than the maximum of {}",
                Duration(MAX_SECONDS)
            ));
        }
        Self::checked(secs.round() as u64)
    }

    fn checked(secs: u64) -> Result<Self, String> {
        if secs == 0 {
            Err("a duration must be longer than zero".into())
        } else if secs > MAX_SECONDS {
            Err(format!(
                "longer than the maximum of {}",
                Duration(MAX_SECONDS)
            ))
        } else {
            Ok(Self(secs))
        }
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        if rest == 0 {
            return f.write_str("0s");
        }
        for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
            if rest >= unit {
                write!(f, "{}{name}", rest / unit)?;
                rest %= unit;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(Duration::parse("90s"), Ok(Duration(90)));
        assert_eq!(Duration::parse("12h"), Ok(Duration(43_200)));
        assert_eq!(Duration::parse("1h30m"), Ok(Duration(5_400)));
        assert_eq!(Duration::parse("2d"), Ok(Duration(172_800)));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "h",
            "10",
            "1x",
            "30m1h",
            "1h1h",
            "0s",
            "-5s",
            "99999999999999999999d",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prints_the_shortest_exact_form_and_round_trips() {
        for secs in [1, 59, 60, 90, 3_600, 5_400, 86_400, 90_061] {
            let d = Duration(secs);
            assert_eq!(Duration::parse(&d.to_string()), Ok(d));
        }
        assert_eq!(Duration(5_400).to_string(), "1h30m");
    }

    #[test]
    fn hours_may_be_fractional() {
        assert_eq!(Duration::from_units(1.5, 3_600), Ok(Duration(5_400)));
        assert!(Duration::from_units(-1.0, 3_600).is_err());
        assert!(Duration::from_units(0.0, 3_600).is_err());
    }
}
