//! A rollout's plan as the admin API takes it, its validation, and the judge of one check:
//! the canary's window (from the router's own measurements or from Prometheus) against the
//! plan's limits.
//!
//! An interval with fewer than `min_requests` canary requests is a failed check, never a pass:
//! silence is not evidence of health.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_http::prometheus::PrometheusError;

use crate::control::ControlError;
use crate::settings::{duration_key, optional_duration};
use crate::stats::Window;

/// A rollout as the admin API takes it. `interval` and `max_p99` are durations in weir's one
/// syntax (`"30s"`, `"250ms"`, or a number of seconds); the older `interval_ms` and
/// `max_p99_ms` (milliseconds) still work, and giving both spellings is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawPlan")]
pub struct RolloutPlan {
    /// Canary percentages, increasing; the last is usually 100.
    pub steps: Vec<u32>,
    #[serde(serialize_with = "as_text")]
    pub interval: Duration,
    pub max_error_rate: f64,
    #[serde(serialize_with = "as_optional_text")]
    pub max_p99: Option<Duration>,
    pub failure_threshold: u32,
    pub min_requests: u64,
    /// Judge from a Prometheus server instead of the router's own measurements.
    pub prometheus: Option<PrometheusJudge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    steps: Vec<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    interval: Option<Duration>,
    interval_ms: Option<u64>,
    #[serde(default = "default_max_error_rate")]
    max_error_rate: f64,
    #[serde(default, deserialize_with = "optional_duration")]
    max_p99: Option<Duration>,
    max_p99_ms: Option<f64>,
    #[serde(default = "default_failure_threshold")]
    failure_threshold: u32,
    #[serde(default = "default_min_requests")]
    min_requests: u64,
    #[serde(default)]
    prometheus: Option<PrometheusJudge>,
}

impl TryFrom<RawPlan> for RolloutPlan {
    type Error = String;

    fn try_from(raw: RawPlan) -> Result<RolloutPlan, String> {
        let interval = duration_key(("interval", raw.interval), ("interval_ms", raw.interval_ms))?
            .ok_or("a rollout needs an interval, e.g. \"30s\"")?;
        let legacy_p99 = match raw.max_p99_ms {
            Some(ms) => Some(
                Duration::try_from_secs_f64(ms / 1000.0)
                    .map_err(|_| format!("max_p99_ms {ms} is not a number of milliseconds"))?,
            ),
            None => None,
        };
        let max_p99 = match (raw.max_p99, legacy_p99) {
            (Some(_), Some(_)) => {
                return Err("both max_p99 and max_p99_ms are given; keep max_p99 (a duration such as \"250ms\")".to_owned())
            }
            (new, legacy) => new.or(legacy),
        };
        Ok(RolloutPlan {
            steps: raw.steps,
            interval,
            max_error_rate: raw.max_error_rate,
            max_p99,
            failure_threshold: raw.failure_threshold,
            min_requests: raw.min_requests,
            prometheus: raw.prometheus,
        })
    }
}

/// A duration as people write it, for `status` (`30s`, `250ms`).
pub fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn as_text<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&human(*duration))
}

fn as_optional_text<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => as_text(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// PromQL that yields one number each; `$model`, `$version` (the canary) and `$interval` (the
/// check's length, e.g. `30s`) are filled in. The defaults read the router's own metrics as
/// Prometheus scraped them; point them at the runtime's (`weir_inference_requests_total`) to
/// judge what the replicas saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusJudge {
    pub url: String,
    #[serde(default = "default_requests_query")]
    pub requests_query: String,
    #[serde(default = "default_error_rate_query")]
    pub error_rate_query: String,
    #[serde(default = "default_p99_ms_query")]
    pub p99_ms_query: String,
}

fn default_requests_query() -> String {
    r#"sum(increase(weir_router_requests_total{model="$model",version="$version"}[$interval]))"#
        .to_owned()
}

fn default_error_rate_query() -> String {
    r#"(sum(increase(weir_router_requests_total{model="$model",version="$version",code=~"0|5..",code!="503"}[$interval])) or vector(0)) / sum(increase(weir_router_requests_total{model="$model",version="$version"}[$interval]))"#
        .to_owned()
}

fn default_p99_ms_query() -> String {
    r#"1000 * histogram_quantile(0.99, sum by (le) (rate(weir_router_request_duration_seconds_bucket{model="$model",version="$version"}[$interval])))"#
        .to_owned()
}

impl PrometheusJudge {
    /// The interval as Prometheus saw it; a query that fails is a failed check, never a pass.
    pub(crate) async fn window(
        &self,
        model: &str,
        version: &str,
        interval: Duration,
    ) -> Result<Window, PrometheusError> {
        let range = format!("{}s", interval.as_millis().div_ceil(1000).max(1));
        let fill = |query: &str| {
            query
                .replace("$model", model)
                .replace("$version", version)
                .replace("$interval", &range)
        };
        let requests = weir_http::prometheus::query(&self.url, &fill(&self.requests_query))
            .await?
            .unwrap_or(0.0);
        let error_rate = weir_http::prometheus::query(&self.url, &fill(&self.error_rate_query))
            .await?
            .unwrap_or(0.0);
        let p99_ms = weir_http::prometheus::query(&self.url, &fill(&self.p99_ms_query))
            .await?
            .unwrap_or(0.0);
        Ok(Window {
            requests: requests.round().max(0.0) as u64,
            error_rate,
            p99_ms,
            ..Window::default()
        })
    }
}

fn default_max_error_rate() -> f64 {
    0.01
}

fn default_failure_threshold() -> u32 {
    2
}

fn default_min_requests() -> u64 {
    50
}

impl RolloutPlan {
    pub fn validate(&self) -> Result<(), ControlError> {
        let invalid = |m: String| Err(ControlError::Invalid(m));
        if self.steps.is_empty() || self.steps.iter().any(|s| *s == 0 || *s > 100) {
            return invalid(format!(
                "steps must be percentages from 1 to 100, got {:?}",
                self.steps
            ));
        }
        if self.steps.windows(2).any(|w| w[0] >= w[1]) {
            return invalid(format!("steps must increase, got {:?}", self.steps));
        }
        if self.interval < Duration::from_millis(100) {
            return invalid(format!(
                "interval must be at least 100ms, got {}",
                human(self.interval)
            ));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return invalid(format!(
                "max_error_rate is a fraction from 0 to 1, got {}",
                self.max_error_rate
            ));
        }
        if self.failure_threshold == 0 {
            return invalid("failure_threshold must be at least 1".to_owned());
        }
        if let Some(prometheus) = &self.prometheus {
            if !prometheus.url.starts_with("http://") {
                return invalid(format!(
                    "prometheus.url must be http://HOST:PORT, got '{}'",
                    prometheus.url
                ));
            }
        }
        Ok(())
    }

    /// Why an interval fails, or `None` when it passes.
    pub fn judge(&self, window: &Window) -> Option<String> {
        if window.requests < self.min_requests {
            return Some(format!(
                "only {} canary requests (at least {} are needed to judge)",
                window.requests, self.min_requests
            ));
        }
        if window.error_rate > self.max_error_rate {
            return Some(format!(
                "error rate {:.2}% is above {:.2}%",
                window.error_rate * 100.0,
                self.max_error_rate * 100.0
            ));
        }
        match self.max_p99.map(|d| d.as_secs_f64() * 1000.0) {
            Some(limit) if window.p99_ms > limit => Some(format!(
                "p99 {:.1} ms is above {limit:.1} ms",
                window.p99_ms
            )),
            _ => None,
        }
    }
}
#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn plan() -> RolloutPlan {
        serde_json::from_value(
            json!({"steps": [10, 50, 100], "interval": "1s", "max_p99": "250ms"}),
        )
        .unwrap()
    }

    #[test]
    fn judging_needs_traffic_and_health() {
        let plan = plan();
        let healthy = Window {
            requests: 100,
            error_rate: 0.0,
            p99_ms: 20.0,
            ..Window::default()
        };
        assert_eq!(plan.judge(&healthy), None);
        let quiet = Window {
            requests: 10,
            ..healthy.clone()
        };
        assert!(plan.judge(&quiet).unwrap().contains("only 10"));
        let failing = Window {
            error_rate: 0.05,
            ..healthy.clone()
        };
        assert!(plan.judge(&failing).unwrap().contains("error rate 5.00%"));
        let slow = Window {
            p99_ms: 400.0,
            ..healthy
        };
        assert!(plan.judge(&slow).unwrap().contains("p99"));
    }

    #[test]
    fn plans_are_checked() {
        assert!(plan().validate().is_ok());
        for bad in [
            json!({"steps": [], "interval_ms": 1000}),
            json!({"steps": [50, 10], "interval_ms": 1000}),
            json!({"steps": [10, 150], "interval_ms": 1000}),
            json!({"steps": [10], "interval_ms": 5}),
            json!({"steps": [10], "interval": "50ms"}),
            json!({"steps": [10], "interval_ms": 1000, "max_error_rate": 2.0}),
            json!({"steps": [10], "interval_ms": 1000, "prometheus": {"url": "localhost:9090"}}),
        ] {
            let plan: RolloutPlan = serde_json::from_value(bad.clone()).unwrap();
            assert!(plan.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_take_the_one_syntax_and_the_ms_keys_stay_milliseconds() {
        let read = |value: Value| serde_json::from_value::<RolloutPlan>(value);
        let new = read(json!({"steps": [50], "interval": "2m", "max_p99": 0.25})).unwrap();
        let unset = read(json!({"steps": [50], "interval": 30.0, "max_p99": null})).unwrap();
        assert_eq!(
            (unset.interval, unset.max_p99),
            (Duration::from_secs(30), None)
        );
        assert_eq!(new.interval, Duration::from_secs(120));
        assert_eq!(new.max_p99, Some(Duration::from_millis(250)));
        let legacy =
            read(json!({"steps": [50], "interval_ms": 30000, "max_p99_ms": 250.0})).unwrap();
        assert_eq!(legacy.interval, Duration::from_secs(30));
        assert_eq!(legacy.max_p99, Some(Duration::from_millis(250)));
        let shown = serde_json::to_value(&legacy).unwrap();
        assert_eq!(
            (shown["interval"].as_str(), shown["max_p99"].as_str()),
            (Some("30s"), Some("250ms"))
        );
        for (bad, expected) in [
            (
                json!({"steps": [50], "interval": "30s", "interval_ms": 30000}),
                "both interval and interval_ms",
            ),
            (
                json!({"steps": [50], "interval": "1s", "max_p99": "1s", "max_p99_ms": 1000}),
                "both max_p99 and max_p99_ms",
            ),
            (json!({"steps": [50]}), "needs an interval"),
            (json!({"steps": [50], "interval": "soon"}), "'soon'"),
        ] {
            let err = read(bad.clone()).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
