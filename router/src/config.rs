//! `routes.toml`: which versions of which models sit behind the router, at what weights.
//!
//! ```toml
//! [settings]                      # optional; the defaults are shown
//! request_timeout_ms = 30000
//! health_check_interval_ms = 2000
//! ejection_failures = 5           # consecutive failures that eject a replica
//! ejection_base_ms = 5000         # first ejection; doubles each time, at most 60 s
//! max_shadow_in_flight = 64       # shadow copies in flight at once; more are dropped
//!
//! [[route]]
//! model = "iris"
//! sticky_header = "x-user-id"
//! [[route.backend]]
//! version = "1"
//! endpoints = ["http://127.0.0.1:9001"]
//! weight = 90
//! [[route.backend]]
//! version = "2"
//! endpoints = ["http://127.0.0.1:9002"]
//! weight = 10
//! [route.shadow]
//! endpoints = ["http://127.0.0.1:9003"]
//! percent = 5
//! ```
//!
//! The first backend is the stable version and the second, when there is one, the canary: the
//! canary API moves weight between those two.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid routes file: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub route: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub request_timeout_ms: u64,
    pub health_check_interval_ms: u64,
    pub ejection_failures: u32,
    pub ejection_base_ms: u64,
    /// Largest request body forwarded.
    pub max_body_bytes: usize,
    /// How long a request waits for a first replica of a version that has none (scale from
    /// zero) before a 503.
    pub hold_timeout_ms: u64,
    /// Requests that may wait at once per version; more get a 503 at once.
    pub max_held: usize,
    /// Shadow copies in flight at once, across routes; a copy beyond it is dropped and
    /// counted (`weir_router_shadow_dropped_total`), so a slow shadow cannot grow the
    /// router's tasks and memory. 0 sends none.
    pub max_shadow_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_timeout_ms: 30_000,
            health_check_interval_ms: 2_000,
            ejection_failures: 5,
            ejection_base_ms: 5_000,
            max_body_bytes: 64 << 20,
            hold_timeout_ms: 10_000,
            max_held: 1000,
            max_shadow_in_flight: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub model: String,
    #[serde(default)]
    pub sticky_header: Option<String>,
    pub backend: Vec<BackendConfig>,
    #[serde(default)]
    pub shadow: Option<ShadowConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub version: String,
    pub endpoints: Vec<String>,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub endpoints: Vec<String>,
    pub percent: u32,
}

impl RoutesFile {
    pub fn load(path: &Path) -> Result<RoutesFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        RoutesFile::parse(&text)
    }

    pub fn parse(text: &str) -> Result<RoutesFile, ConfigError> {
        let file: RoutesFile =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        file.validate()?;
        Ok(file)
    }

    /// Every rule a running router relies on, each refusal naming the route and field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.settings.request_timeout_ms == 0 || self.settings.health_check_interval_ms == 0 {
            return invalid("settings: timeouts and intervals must be above 0".to_owned());
        }
        let mut models = HashSet::new();
        for route in &self.route {
            let model = &route.model;
            if model.is_empty() || model.contains(['/', ' ', '?', '#']) {
                return invalid(format!("route model '{model}' is not a valid model name"));
            }
            if !models.insert(model.as_str()) {
                return invalid(format!("model '{model}' has two routes"));
            }
            if route.backend.is_empty() {
                return invalid(format!("route '{model}' has no backend"));
            }
            let mut versions = HashSet::new();
            let mut total = 0;
            for backend in &route.backend {
                let version = &backend.version;
                if version.is_empty() || !versions.insert(version.as_str()) {
                    return invalid(format!(
                        "route '{model}': backend versions must be non-empty and distinct ('{version}')"
                    ));
                }
                if backend.weight > 100 {
                    return invalid(format!(
                        "route '{model}' version {version}: weight {} is above 100",
                        backend.weight
                    ));
                }
                total += backend.weight;
                // No endpoints is allowed: an autoscaler adds replicas (scale from zero).
                if !backend.endpoints.is_empty() {
                    check_endpoints(
                        &format!("route '{model}' version {version}"),
                        &backend.endpoints,
                    )?;
                }
            }
            if total != 100 {
                return invalid(format!(
                    "route '{model}': backend weights add up to {total}, not 100"
                ));
            }
            if let Some(shadow) = &route.shadow {
                if shadow.percent > 100 {
                    return invalid(format!(
                        "route '{model}': shadow percent {} is above 100",
                        shadow.percent
                    ));
                }
                check_endpoints(&format!("route '{model}' shadow"), &shadow.endpoints)?;
            }
        }
        Ok(())
    }
}

fn check_endpoints(what: &str, endpoints: &[String]) -> Result<(), ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::Invalid(format!("{what} has no endpoints")));
    }
    for endpoint in endpoints {
        if !valid_endpoint(endpoint) {
            return Err(ConfigError::Invalid(format!(
                "{what}: endpoint '{endpoint}' must be http://HOST:PORT"
            )));
        }
    }
    Ok(())
}

/// `http://HOST:PORT`, nothing more.
pub(crate) fn valid_endpoint(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#']))
        && endpoint.parse::<hyper::Uri>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[route]]
        model = "iris"
        sticky_header = "x-user-id"
        [[route.backend]]
        version = "1"
        endpoints = ["http://127.0.0.1:9001", "http://127.0.0.1:9011"]
        weight = 90
        [[route.backend]]
        version = "2"
        endpoints = ["http://127.0.0.1:9002"]
        weight = 10
        [route.shadow]
        endpoints = ["http://127.0.0.1:9003"]
        percent = 5
    "#;

    #[test]
    fn the_documented_example_parses() {
        let file = RoutesFile::parse(EXAMPLE).unwrap();
        assert_eq!(file.route[0].backend[1].weight, 10);
        assert_eq!(file.route[0].shadow.as_ref().unwrap().percent, 5);
        assert_eq!(file.settings, Settings::default());
    }

    #[test]
    fn mistakes_name_the_route_and_field() {
        for (change, expected) in [
            (("weight = 10", "weight = 20"), "add up to 110"),
            (("weight = 10", "weight = 101"), "above 100"),
            (("percent = 5", "percent = 500"), "shadow percent 500"),
            (
                ("\"http://127.0.0.1:9002\"", "\"127.0.0.1:9002\""),
                "must be http://HOST:PORT",
            ),
            (("version = \"2\"", "version = \"1\""), "distinct"),
            (("sticky_header", "stiky_header"), "unknown field"),
        ] {
            let text = EXAMPLE.replacen(change.0, change.1, 1);
            let err = RoutesFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{change:?}: {err}");
        }
    }
}
