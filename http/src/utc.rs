//! Wall-clock times as people read them, in UTC: the CLI's audit table and the dashboard show
//! the same text for the same instant.

/// A time in milliseconds since the Unix epoch as RFC 3339 UTC to the second
/// (`2026-11-29T23:05:09Z`).
pub fn utc_seconds(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000);
    let (days, in_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil, proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_seconds;

    #[test]
    fn formats_instants_across_leap_days_and_before_the_epoch() {
        assert_eq!(utc_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_seconds(951_782_400_999), "2000-02-29T00:00:00Z");
        assert_eq!(utc_seconds(1_795_993_509_123), "2026-11-29T23:05:09Z");
        assert_eq!(utc_seconds(-1), "1969-12-31T23:59:59Z");
    }
}
