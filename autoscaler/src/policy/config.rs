//! What a target is scaled on: the policy's settings as TOML gives them (durations in weir's
//! one syntax, the legacy `*_secs` names still read) and their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_http::duration;

/// Why a policy is refused; each message names the key and the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.{name} must be above 0, got {value}")]
    NotPositive { name: &'static str, value: f64 },
    #[error("policy.target_utilization is a fraction up to 1, got {0}")]
    Utilization(f64),
    #[error("policy: min_replicas {min} must not exceed max_replicas {max} (at least 1)")]
    Replicas { min: u32, max: u32 },
    #[error("policy: max_scale_up_rate and max_scale_down_rate must be at least 1")]
    Rates,
    #[error("policy.metric must be concurrency or rps, got '{0}'")]
    Metric(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Knative's KPA: stable and panic windows.
    Kpa,
    /// The HPA's rule: desired = ceil(current × value / target), ignoring changes within 10%.
    Hpa,
}

/// What a target is scaled on, and how.
///
/// Read from TOML through [`PolicyKeys`], which also takes the legacy `*_secs` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PolicyKeys")]
pub struct PolicyConfig {
    /// `concurrency` (requests in flight) or `rps`: only a name here; the signal supplies it.
    pub metric: String,
    /// Load one replica should carry.
    pub target: f64,
    /// Fraction of `target` to aim for, leaving headroom (KPA default 70%).
    pub target_utilization: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The window whose average drives normal decisions.
    #[serde(serialize_with = "duration::serialize")]
    pub stable_window: Duration,
    /// Panic window as a share of the stable window (KPA default 10%).
    pub panic_window_percent: f64,
    /// Panic when the panic window asks for this share of the ready replicas (200% = 2×).
    pub panic_threshold_percent: f64,
    /// At most this many times the ready replicas in one decision.
    pub max_scale_up_rate: f64,
    /// At most down to ready / this in one decision.
    pub max_scale_down_rate: f64,
    /// Waited after a stable window without traffic before going to zero.
    #[serde(serialize_with = "duration::serialize")]
    pub scale_to_zero_grace: Duration,
    /// A lower desired count must hold this long before it is acted on.
    #[serde(serialize_with = "duration::serialize")]
    pub scale_down_delay: Duration,
    pub mode: Mode,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            metric: "concurrency".to_owned(),
            target: 10.0,
            target_utilization: 0.7,
            min_replicas: 1,
            max_replicas: 10,
            stable_window: Duration::from_secs(60),
            panic_window_percent: 10.0,
            panic_threshold_percent: 200.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_to_zero_grace: Duration::from_secs(30),
            scale_down_delay: Duration::ZERO,
            mode: Mode::Kpa,
        }
    }
}

/// The policy as written in TOML: every key optional (defaults fill the rest), durations in
/// weir's one syntax (`"60s"`, `"2m"`, or a number of seconds). The `*_secs` names are what
/// older files (and Helm charts rendered before durations) say; they keep working, and a file
/// giving both spellings of one setting is refused rather than silently picking one.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyKeys {
    metric: Option<String>,
    target: Option<f64>,
    target_utilization: Option<f64>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    stable_window: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    stable_window_secs: Option<Duration>,
    panic_window_percent: Option<f64>,
    panic_threshold_percent: Option<f64>,
    max_scale_up_rate: Option<f64>,
    max_scale_down_rate: Option<f64>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    scale_to_zero_grace: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    scale_to_zero_grace_secs: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    scale_down_delay: Option<Duration>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    scale_down_delay_secs: Option<Duration>,
    mode: Option<Mode>,
}

/// One setting under its documented name or its legacy `*_secs` name, not both.
pub(crate) fn one_of<T>(
    name: &str,
    value: Option<T>,
    legacy: &str,
    legacy_value: Option<T>,
) -> Result<Option<T>, String> {
    match (value, legacy_value) {
        (Some(_), Some(_)) => Err(format!(
            "give {name} or its older spelling {legacy}, not both"
        )),
        (value, legacy_value) => Ok(value.or(legacy_value)),
    }
}

impl TryFrom<PolicyKeys> for PolicyConfig {
    type Error = String;

    fn try_from(keys: PolicyKeys) -> Result<PolicyConfig, String> {
        let default = PolicyConfig::default();
        Ok(PolicyConfig {
            metric: keys.metric.unwrap_or(default.metric),
            target: keys.target.unwrap_or(default.target),
            target_utilization: keys
                .target_utilization
                .unwrap_or(default.target_utilization),
            min_replicas: keys.min_replicas.unwrap_or(default.min_replicas),
            max_replicas: keys.max_replicas.unwrap_or(default.max_replicas),
            stable_window: one_of(
                "policy.stable_window",
                keys.stable_window,
                "policy.stable_window_secs",
                keys.stable_window_secs,
            )?
            .unwrap_or(default.stable_window),
            panic_window_percent: keys
                .panic_window_percent
                .unwrap_or(default.panic_window_percent),
            panic_threshold_percent: keys
                .panic_threshold_percent
                .unwrap_or(default.panic_threshold_percent),
            max_scale_up_rate: keys.max_scale_up_rate.unwrap_or(default.max_scale_up_rate),
            max_scale_down_rate: keys
                .max_scale_down_rate
                .unwrap_or(default.max_scale_down_rate),
            scale_to_zero_grace: one_of(
                "policy.scale_to_zero_grace",
                keys.scale_to_zero_grace,
                "policy.scale_to_zero_grace_secs",
                keys.scale_to_zero_grace_secs,
            )?
            .unwrap_or(default.scale_to_zero_grace),
            scale_down_delay: one_of(
                "policy.scale_down_delay",
                keys.scale_down_delay,
                "policy.scale_down_delay_secs",
                keys.scale_down_delay_secs,
            )?
            .unwrap_or(default.scale_down_delay),
            mode: keys.mode.unwrap_or(default.mode),
        })
    }
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = [
            ("target", self.target),
            ("target_utilization", self.target_utilization),
            ("stable_window", self.stable_window_secs()),
            ("panic_window_percent", self.panic_window_percent),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| v.is_nan() || *v <= 0.0) {
            return Err(PolicyError::NotPositive {
                name,
                value: *value,
            });
        }
        if self.target_utilization > 1.0 {
            return Err(PolicyError::Utilization(self.target_utilization));
        }
        if self.max_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(PolicyError::Replicas {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if self.max_scale_up_rate < 1.0 || self.max_scale_down_rate < 1.0 {
            return Err(PolicyError::Rates);
        }
        if !["concurrency", "rps"].contains(&self.metric.as_str()) {
            return Err(PolicyError::Metric(self.metric.clone()));
        }
        Ok(())
    }

    pub(crate) fn per_replica(&self) -> f64 {
        self.target * self.target_utilization
    }

    pub(crate) fn stable_window_secs(&self) -> f64 {
        self.stable_window.as_secs_f64()
    }

    pub(crate) fn panic_window_secs(&self) -> f64 {
        self.stable_window_secs() * self.panic_window_percent / 100.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config() -> PolicyConfig {
        PolicyConfig {
            min_replicas: 0,
            max_replicas: 50,
            ..PolicyConfig::default()
        }
    }

    #[test]
    fn durations_take_units_and_the_legacy_secs_keys_still_work() {
        let read = |text: &str| toml::from_str::<PolicyConfig>(text);
        let new = read(
            r#"stable_window = "2m"
scale_to_zero_grace = "1500ms"
scale_down_delay = 5"#,
        )
        .unwrap();
        assert_eq!(new.stable_window, Duration::from_secs(120));
        assert_eq!(new.scale_to_zero_grace, Duration::from_millis(1500));
        assert_eq!(new.scale_down_delay, Duration::from_secs(5));
        let legacy = read(
            "stable_window_secs = 120\nscale_to_zero_grace_secs = 1.5\nscale_down_delay_secs = 5",
        )
        .unwrap();
        assert_eq!(legacy, new, "the *_secs keys mean seconds, as before");
        assert_eq!(read("").unwrap(), PolicyConfig::default());
        for (both, names) in [
            (
                "stable_window = \"60s\"\nstable_window_secs = 60",
                ["policy.stable_window", "stable_window_secs"],
            ),
            (
                "scale_to_zero_grace = 1\nscale_to_zero_grace_secs = 1",
                ["policy.scale_to_zero_grace", "scale_to_zero_grace_secs"],
            ),
            (
                "scale_down_delay = \"1s\"\nscale_down_delay_secs = 2",
                ["policy.scale_down_delay", "scale_down_delay_secs"],
            ),
        ] {
            let err = read(both).unwrap_err().to_string();
            assert!(
                names.iter().all(|name| err.contains(name)) && err.contains("not both"),
                "{both}: {err}"
            );
        }
        for bad in [
            "stable_window = \"soon\"",
            "stable_window = -1",
            "stable_windw = 1",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            PolicyConfig {
                target: 0.0,
                ..config()
            },
            PolicyConfig {
                min_replicas: 5,
                max_replicas: 2,
                ..config()
            },
            PolicyConfig {
                target_utilization: 1.5,
                ..config()
            },
            PolicyConfig {
                metric: "cpu".into(),
                ..config()
            },
            PolicyConfig {
                stable_window: Duration::ZERO,
                ..config()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
