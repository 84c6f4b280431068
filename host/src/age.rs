//! Ages and points in time as people write them in flags and commands: `7d`, `36h`,
//! `90m`, `30s`, `2w`, or an RFC 3339 time where a point in time is meant.

use chrono::{DateTime, Duration, Utc};

/// A non-negative duration: a whole number and a unit (`s`, `m`, `h`, `d`, `w`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: write e.g. 7d, 12h, 30m or 45s"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not an age: write a whole number and a unit, e.g. 7d, 12h, 30m or 45s"
        ));
    }
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too long an age"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; the units are s, m, h, d and w"
            ));
        }
    };
    n.checked_mul(seconds)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::seconds)
        .ok_or_else(|| format!("{text:?} is more than 100 years"))
}

/// How old an unreferenced file must be to be removed: at least an hour, since a
/// younger one may belong to an upload still streaming.
pub fn parse_orphan_age(text: &str) -> Result<Duration, String> {
    let age = parse_age(text)?;
    if age < Duration::hours(1) {
        return Err(format!(
            "{text:?} is under an hour: files that young may belong to an upload in progress"
        ));
    }
    Ok(age)
}

/// `age` as [`parse_age`] reads it, in its largest whole unit up to days.
pub fn format_age(age: Duration) -> String {
    let seconds = age.num_seconds();
    [("d", 86_400), ("h", 3_600), ("m", 60)]
        .iter()
        .find(|(_, unit)| seconds != 0 && seconds % unit == 0)
        .map_or_else(
            || format!("{seconds}s"),
            |(name, unit)| format!("{}{name}", seconds / unit),
        )
}

/// A point in time: an RFC 3339 time, or an age meaning that long before now.
pub fn parse_time_or_age(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(time.with_timezone(&Utc));
    }
    parse_age(text)
        .map(|age| Utc::now() - age)
        .map_err(|err| format!("{err} (or give an RFC 3339 time, e.g. 2026-11-01T00:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_have_a_unit_and_no_sign() {
        assert_eq!(parse_age("7d"), Ok(Duration::days(7)));
        assert_eq!(parse_age("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_age("0s"), Ok(Duration::zero()));
        assert!(parse_age("7").unwrap_err().contains("no unit"));
        assert!(parse_age("-1d").unwrap_err().contains("not an age"));
        assert!(parse_age("3y").unwrap_err().contains("unknown unit"));
        assert!(parse_age("99999999999w").is_err());
        for text in ["7d", "14d", "36h", "90m", "45s", "0s"] {
            assert_eq!(format_age(parse_age(text).unwrap()), text);
        }
    }

    #[test]
    fn times_are_rfc3339_or_ages_ago() {
        let at = parse_time_or_age("2026-11-01T00:00:00Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        let ago = parse_time_or_age("1h").unwrap();
        assert!((Utc::now() - ago - Duration::hours(1)).num_seconds().abs() < 5);
        assert!(
            parse_time_or_age("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }
}
