//! `[settings]` of `routes.toml`: timeouts, health checks, ejection, caps.
//!
//! Durations use weir's one syntax (`500ms`, `10s`, `2m`, or a number of seconds) under
//! unsuffixed keys (`request_timeout = "30s"`). The older `*_ms` keys (`request_timeout_ms =
//! 30000`) keep their meaning, milliseconds, so existing files and Helm values still load;
//! giving both spellings of one setting is refused, naming both, rather than guessing which
//! one was meant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_http::duration;

/// Written (by `weir up`, through `RoutesFile`) under the new keys with durations as text, which
/// [`RawSettings`] reads back as the same value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    /// Bounds each attempt to a replica; then the answer is a 504.
    #[serde(serialize_with = "duration::serialize")]
    pub request_timeout: Duration,
    /// How often every replica's `/v2/health/ready` is asked.
    #[serde(serialize_with = "duration::serialize")]
    pub health_check_interval: Duration,
    /// Consecutive failures that eject a replica.
    pub ejection_failures: u32,
    /// The first ejection; doubles with each, at most 60 s.
    #[serde(serialize_with = "duration::serialize")]
    pub ejection_base: Duration,
    /// Largest request body forwarded.
    pub max_body_bytes: usize,
    /// How long a request waits for a first replica of a version that has none (scale from
    /// zero) before a 503.
    #[serde(serialize_with = "duration::serialize")]
    pub hold_timeout: Duration,
    /// Requests that may wait at once per version; more get a 503 at once.
    pub max_held: usize,
    /// Shadow copies in flight at once, across routes; a copy beyond it is dropped and
    /// counted (`weir_router_shadow_dropped_total`), so a slow shadow cannot grow the
    /// router's tasks and memory. 0 sends none.
    pub max_shadow_in_flight: usize,
    /// The port every replica serves gRPC on (`weir serve --grpc-port`), on the host its HTTP
    /// endpoint names. One port for all replicas, not a second list of addresses, so that
    /// replicas the autoscaler adds or removes by their HTTP URL are gRPC replicas too and
    /// share one health, ejection and in-flight state. `None`: gRPC calls are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_port: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_timeout: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(2),
            ejection_failures: 5,
            ejection_base: Duration::from_secs(5),
            max_body_bytes: 64 << 20,
            hold_timeout: Duration::from_secs(10),
            max_held: 1000,
            max_shadow_in_flight: 64,
            grpc_port: None,
        }
    }
}

/// `[settings]` as written: each duration under its new key or its legacy `_ms` key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    #[serde(default, deserialize_with = "optional_duration")]
    request_timeout: Option<Duration>,
    request_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "optional_duration")]
    health_check_interval: Option<Duration>,
    health_check_interval_ms: Option<u64>,
    ejection_failures: Option<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    ejection_base: Option<Duration>,
    ejection_base_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    #[serde(default, deserialize_with = "optional_duration")]
    hold_timeout: Option<Duration>,
    hold_timeout_ms: Option<u64>,
    max_held: Option<usize>,
    max_shadow_in_flight: Option<usize>,
    grpc_port: Option<u16>,
}

/// A duration key that may be absent or `null` (a JSON client sending every field).
pub(crate) fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct Given(#[serde(deserialize_with = "weir_http::duration::deserialize")] Duration);
    Ok(Option::<Given>::deserialize(deserializer)?.map(|Given(duration)| duration))
}

/// A duration given under its new key (any duration) or its legacy key (milliseconds), never
/// both.
pub(crate) fn duration_key(
    new: (&str, Option<Duration>),
    legacy_ms: (&str, Option<u64>),
) -> Result<Option<Duration>, String> {
    match (new.1, legacy_ms.1) {
        (Some(_), Some(_)) => Err(format!(
            "both {} and {} are given; keep {} (a duration such as \"30s\"; {} is its older spelling in milliseconds)",
            new.0, legacy_ms.0, new.0, legacy_ms.0
        )),
        (Some(duration), None) => Ok(Some(duration)),
        (None, Some(ms)) => Ok(Some(Duration::from_millis(ms))),
        (None, None) => Ok(None),
    }
}

impl TryFrom<RawSettings> for Settings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Settings, String> {
        let defaults = Settings::default();
        let key = |new: (&str, Option<Duration>), legacy: (&str, Option<u64>), default| {
            duration_key(new, legacy).map(|d| d.unwrap_or(default))
        };
        Ok(Settings {
            request_timeout: key(
                ("request_timeout", raw.request_timeout),
                ("request_timeout_ms", raw.request_timeout_ms),
                defaults.request_timeout,
            )?,
            health_check_interval: key(
                ("health_check_interval", raw.health_check_interval),
                ("health_check_interval_ms", raw.health_check_interval_ms),
                defaults.health_check_interval,
            )?,
            ejection_failures: raw.ejection_failures.unwrap_or(defaults.ejection_failures),
            ejection_base: key(
                ("ejection_base", raw.ejection_base),
                ("ejection_base_ms", raw.ejection_base_ms),
                defaults.ejection_base,
            )?,
            max_body_bytes: raw.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            hold_timeout: key(
                ("hold_timeout", raw.hold_timeout),
                ("hold_timeout_ms", raw.hold_timeout_ms),
                defaults.hold_timeout,
            )?,
            max_held: raw.max_held.unwrap_or(defaults.max_held),
            max_shadow_in_flight: raw
                .max_shadow_in_flight
                .unwrap_or(defaults.max_shadow_in_flight),
            grpc_port: match raw.grpc_port {
                Some(0) => {
                    return Err(
                        "grpc_port 0 is not a port (give the replicas' gRPC port, e.g. 9000)"
                            .to_owned(),
                    )
                }
                port => port,
            },
        })
    }
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Settings, D::Error> {
        let raw = RawSettings::deserialize(deserializer)?;
        Settings::try_from(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, String> {
        toml::from_str::<Settings>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_take_the_one_syntax_and_the_ms_keys_stay_milliseconds() {
        let new = settings(
            "request_timeout = \"2m\"\nhealth_check_interval = \"500ms\"\nejection_base = 3\nhold_timeout = \"1.5s\"",
        )
        .unwrap();
        assert_eq!(new.request_timeout, Duration::from_secs(120));
        assert_eq!(new.health_check_interval, Duration::from_millis(500));
        assert_eq!(new.ejection_base, Duration::from_secs(3));
        assert_eq!(new.hold_timeout, Duration::from_millis(1500));
        let legacy = settings(
            "request_timeout_ms = 30000\nhealth_check_interval_ms = 250\nejection_base_ms = 7000\nhold_timeout_ms = 10",
        )
        .unwrap();
        assert_eq!(legacy.request_timeout, Duration::from_secs(30));
        assert_eq!(legacy.health_check_interval, Duration::from_millis(250));
        assert_eq!(legacy.ejection_base, Duration::from_secs(7));
        assert_eq!(legacy.hold_timeout, Duration::from_millis(10));
        assert_eq!(settings("").unwrap(), Settings::default());
    }

    #[test]
    fn the_grpc_port_is_optional_and_never_zero() {
        assert_eq!(settings("").unwrap().grpc_port, None);
        let given = settings("grpc_port = 9000").unwrap();
        assert_eq!(given.grpc_port, Some(9000));
        // Written (by `weir up`) and read back as the same value; absent when not set.
        let written = toml::to_string(&given).unwrap();
        assert!(written.contains("grpc_port = 9000"), "{written}");
        assert_eq!(settings(&written).unwrap(), given);
        assert!(!toml::to_string(&Settings::default())
            .unwrap()
            .contains("grpc_port"));
        let zero = settings("grpc_port = 0").unwrap_err();
        assert!(zero.contains("grpc_port 0"), "{zero}");
        assert!(settings("grpc_port = 70000").is_err());
    }

    #[test]
    fn both_spellings_or_a_bad_duration_are_refused_by_name() {
        let both = settings("request_timeout = \"30s\"\nrequest_timeout_ms = 30000").unwrap_err();
        assert!(
            both.contains("request_timeout and request_timeout_ms"),
            "{both}"
        );
        let bad = settings("health_check_interval = \"soon\"").unwrap_err();
        assert!(bad.contains("'soon'"), "{bad}");
        let unknown = settings("request_timeout_s = 3").unwrap_err();
        assert!(unknown.contains("unknown field"), "{unknown}");
    }
}
