//! Human-readable durations: `500ms`, `5s`, `1.5s`, `2m`, `1m30s`.

use std::time::Duration;

/// Parses a duration: one or more `<number><unit>` parts (`ns`, `us`, `ms`, `s`, `m`, `h`),
/// the number possibly fractional, as in `1m30s` or `1.5s`. A bare number is seconds.
///
/// # Errors
///
/// A message naming what is wrong: an empty string, a missing number, an unknown unit, or a
/// duration too large to represent.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. 500ms, 5s, 2m)".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs, s);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("bad duration {s:?}: expected a number before the unit"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("bad duration {s:?}: missing unit after {num}")),
            other => {
                return Err(format!(
                    "bad duration {s:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ));
            }
        };
        total += value * scale;
        rest = next;
    }
    seconds(total, s)
}

fn seconds(secs: f64, original: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {original:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("3"), Ok(ms(3000)));
        assert_eq!(parse_duration(" 10s "), Ok(ms(10_000)));
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for (input, needle) in [
            ("", "empty"),
            ("5x", "unknown unit"),
            ("s", "number"),
            ("5s3", "missing unit"),
            ("-1s", "number"),
            ("-1", "bad duration"),
        ] {
            let err = parse_duration(input).unwrap_err();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }
}
