//! The one way weir reads a duration, on every command-line flag and every config key:
//! `500ms`, `10s`, `2m`, `1h`, or a bare number meaning seconds (`10`, `0.5`). Kubernetes,
//! Prometheus and Go users write the suffixed form; weir's older `*-secs` flags took bare
//! numbers, and both keep meaning the same thing.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// Why a text is not a duration; the message names the text and the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a duration: write 500ms, 10s, 2m, 1h or a number of seconds")]
pub struct DurationError {
    text: String,
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds (fractions allowed). Negative,
/// non-finite and absurdly large values are refused rather than wrapped or saturated.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let refuse = || DurationError {
        text: text.to_string(),
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| refuse())?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(refuse()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| refuse())
}

/// For clap's `value_parser`: the same rule, with the error as text.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

/// For serde's `deserialize_with` on config keys: a TOML/JSON number is seconds, a string is
/// read with [`parse_duration`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// Like [`deserialize`] for an `Option<Duration>` key (absent stays `None` with `#[serde(default)]`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(DurationVisitor).map(Some)
}

/// Writes a duration in the syntax [`parse_duration`] reads, so a config weir writes (`weir up`'s
/// routes and autoscaler files) reads back as the same value: whole seconds as `10s`, whole
/// milliseconds as `500ms`, anything finer as fractional seconds (`0.0000015s`, exact to the
/// nanosecond as far as an `f64` carries it).
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        format!("{}s", duration.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        let fraction = format!("{nanos:09}");
        format!("{}.{}s", duration.as_secs(), fraction.trim_end_matches('0'))
    }
}

/// For serde's `serialize_with` on config keys: the text of [`format_duration`], which
/// [`deserialize`] reads back.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a duration such as \"500ms\", \"10s\", \"2m\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("{seconds} is not a duration: it is negative")))
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| E::custom(format!("{seconds} is not a duration of seconds")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_is_read() {
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10", Duration::from_secs(10)),
            ("0.5", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            (" 30s ", Duration::from_secs(30)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_text() {
        for text in [
            "",
            "s",
            "-1",
            "-1s",
            "10 parsecs",
            "1d",
            "1e400",
            "ten",
            "1..2s",
            "NaN",
        ] {
            let error = parse_duration(text).expect_err(text);
            assert!(error.to_string().contains(&format!("'{text}'")), "{error}");
        }
    }

    #[test]
    fn written_durations_read_back_as_the_same_value() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(3600), "3600s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_nanos(1_500), "0.0000015s"),
            (Duration::new(2, 100), "2.0000001s"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        // Every whole number of milliseconds up to a day, sampled, reads back exactly.
        for ms in (0..86_400_000u64).step_by(999_983) {
            let duration = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        let written = serde_json::to_string(&Written {
            every: Duration::from_millis(250),
        })
        .unwrap();
        assert_eq!(written, r#"{"every":"250ms"}"#);
        let config: Config = serde_json::from_str(&written).unwrap();
        assert_eq!(config.every, Duration::from_millis(250));
    }

    #[derive(serde::Serialize)]
    struct Written {
        #[serde(serialize_with = "serialize")]
        every: Duration,
    }

    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(deserialize_with = "deserialize")]
        every: Duration,
        #[serde(default, deserialize_with = "deserialize_option")]
        maybe: Option<Duration>,
    }

    #[test]
    fn config_keys_take_numbers_and_strings() {
        let read = |text: &str| serde_json::from_str::<Config>(text);
        let config = read(r#"{"every": 2}"#).expect("number");
        assert_eq!(config.every, Duration::from_secs(2));
        assert_eq!(config.maybe, None);
        let config = read(r#"{"every": 0.25, "maybe": "2m"}"#).expect("strings");
        assert_eq!(config.every, Duration::from_millis(250));
        assert_eq!(config.maybe, Some(Duration::from_secs(120)));
        assert!(read(r#"{"every": "soon"}"#).is_err());
        assert!(read(r#"{"every": -3}"#).is_err());
    }
}
