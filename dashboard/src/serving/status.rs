//! The router's answers as the dashboard reads them (router/src/status.rs writes them): only the
//! fields the pages show, every one optional, so a router of another version still shows what
//! it shares with this one instead of nothing. Lists are cut to a bound here, once, so nothing a
//! router sends makes the registry's memory grow.

use serde::{Deserialize, Serialize};

/// Versions kept per route (a route has a stable, a canary and rarely more).
pub(crate) const MAX_VERSIONS: usize = 8;
/// Replicas kept per version.
pub(crate) const MAX_ENDPOINTS: usize = 64;
/// Newest router events kept per route.
pub(crate) const MAX_EVENTS: usize = 30;
/// Characters kept of any text a router sends (names, messages, URLs).
const MAX_TEXT: usize = 512;

/// `GET /admin/v1/routes`: the models, in the router's order.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RoutesList {
    #[serde(default)]
    pub routes: Vec<RouteName>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RouteName {
    pub model: String,
}

/// `GET /admin/v1/routes/{model}` (and the answer of every change).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteStatus {
    pub model: String,
    pub sticky_header: Option<String>,
    pub shadow: Option<Shadow>,
    pub backends: Vec<Backend>,
    pub rollout: Option<Rollout>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Shadow {
    pub percent: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Backend {
    pub version: String,
    pub registry_version: Option<String>,
    /// stable, canary, previous or other.
    pub role: String,
    /// Percent of the route's traffic.
    pub weight: f64,
    pub last_minute: LastMinute,
    /// Requests the router holds while the version has no replica.
    pub held: f64,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LastMinute {
    pub seconds: f64,
    pub requests: f64,
    pub requests_per_second: f64,
    /// 0..1.
    pub error_rate: f64,
    pub overloaded: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub url: String,
    pub available: bool,
    pub inflight: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Rollout {
    pub plan: Plan,
    pub progress: Progress,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    /// Canary percentages, increasing.
    pub steps: Vec<f64>,
    pub max_error_rate: Option<f64>,
    pub min_requests: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// running, promoted, rolled_back, failed or cancelled.
    pub phase: String,
    /// Index of the step being applied or measured.
    pub step: usize,
    pub failures: f64,
    pub last_check: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub message: String,
}

fn cut(text: &mut String) {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl RouteStatus {
    /// Cuts every list and text to its bound (newest events kept).
    pub(crate) fn bounded(mut self) -> RouteStatus {
        cut(&mut self.model);
        self.backends.truncate(MAX_VERSIONS);
        for backend in &mut self.backends {
            cut(&mut backend.version);
            cut(&mut backend.role);
            if let Some(number) = &mut backend.registry_version {
                cut(number);
            }
            backend.endpoints.truncate(MAX_ENDPOINTS);
            for endpoint in &mut backend.endpoints {
                cut(&mut endpoint.url);
            }
        }
        if self.events.len() > MAX_EVENTS {
            self.events.drain(..self.events.len() - MAX_EVENTS);
        }
        for event in &mut self.events {
            cut(&mut event.message);
        }
        if let Some(rollout) = &mut self.rollout {
            rollout.plan.steps.truncate(32);
            cut(&mut rollout.progress.phase);
            if let Some(check) = &mut rollout.progress.last_check {
                cut(check);
            }
        }
        if let Some(header) = &mut self.sticky_header {
            cut(header);
        }
        self
    }

    /// The version traffic is moved to by a canary percentage (the second backend), if any.
    pub fn canary(&self) -> Option<&Backend> {
        self.backends.get(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape router/src/status.rs writes, with a rollout and more events than are kept.
    #[test]
    fn reads_the_routers_status_and_bounds_it() {
        let events: Vec<serde_json::Value> = (0..100)
            .map(|i| serde_json::json!({"at_ms": i, "message": format!("event {i}")}))
            .collect();
        let status = serde_json::json!({
            "model": "iris",
            "sticky_header": null,
            "shadow": null,
            "backends": [
                {"version": "stable", "registry_version": "1", "role": "stable", "weight": 90,
                 "last_minute": {"seconds": 60.0, "requests": 120, "requests_per_second": 2.0,
                                 "error_rate": 0.0, "overloaded": 0, "p50_ms": 1.5, "p99_ms": 9.0},
                 "held": 0, "endpoints": [{"url": "http://127.0.0.1:1", "available": true, "inflight": 0}]},
                {"version": "canary", "registry_version": "2", "role": "canary", "weight": 10,
                 "last_minute": {"seconds": 60.0, "requests": 12, "requests_per_second": 0.2,
                                 "error_rate": 0.25, "overloaded": 0, "p50_ms": 2.0, "p99_ms": 30.0},
                 "held": 0, "endpoints": []}
            ],
            "rollout": {"plan": {"steps": [25, 50, 100], "interval": "10s", "max_error_rate": 0.05,
                                 "max_p99": null, "failure_threshold": 2, "min_requests": 20,
                                 "prometheus": null},
                        "progress": {"phase": "running", "step": 1, "failures": 0, "last_check": "ok"},
                        "driven_here": true},
            "events": events,
            "shared": null,
        });
        let read: RouteStatus = serde_json::from_value(status).unwrap();
        let read = read.bounded();
        assert_eq!(read.backends.len(), 2);
        assert_eq!(read.backends[1].weight, 10.0);
        assert_eq!(read.backends[1].last_minute.error_rate, 0.25);
        assert_eq!(
            read.canary().unwrap().registry_version.as_deref(),
            Some("2")
        );
        let rollout = read.rollout.unwrap();
        assert_eq!(rollout.plan.steps, vec![25.0, 50.0, 100.0]);
        assert_eq!(rollout.progress.phase, "running");
        assert_eq!(read.events.len(), MAX_EVENTS);
        assert_eq!(
            read.events.last().unwrap().message,
            "event 99",
            "newest kept"
        );
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let mut text = "é".repeat(MAX_TEXT);
        cut(&mut text);
        assert!(text.len() <= MAX_TEXT);
        assert!(text.chars().all(|c| c == 'é'));
    }
}
