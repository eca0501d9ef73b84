//! Human durations for command-line flags: `500ms`, `5s`, `2m`, `2h`, `1d`.

use std::time::Duration;

/// Why a duration flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No unit after the number (a bare integer is refused).
    #[error("{0:?}: missing unit (use ms, s, m, h or d)")]
    MissingUnit(String),
    /// No number before the unit.
    #[error("{0:?}: expected a number then a unit, e.g. 500ms")]
    MissingNumber(String),
    /// A unit other than ms, s, m, h or d.
    #[error("{0:?}: unknown unit (use ms, s, m, h or d)")]
    UnknownUnit(String),
    /// Over `u64::MAX` milliseconds.
    #[error("{0:?}: duration out of range")]
    OutOfRange(String),
}

/// Parses a duration written as an integer and a unit (`ms`, `s`, `m`,
/// `h`, `d`). A bare integer is refused: a timing flag whose unit is
/// guessed is a classic source of off-by-1000 bugs.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::MissingUnit(s.to_owned()))?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::MissingNumber(s.to_owned()));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| DurationError::OutOfRange(s.to_owned()))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::UnknownUnit(s.to_owned())),
    };
    let ms = value
        .checked_mul(unit_ms)
        .ok_or_else(|| DurationError::OutOfRange(s.to_owned()))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "5", "ms", "5x", "-5s", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration(&format!("{}d", u64::MAX / 1000)).is_err());
    }
}
