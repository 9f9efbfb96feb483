//! A route's status as the admin API shows it: each version's role, weight, last minute of
//! traffic and replicas, the running or last rollout, and the recent events.

use std::time::Instant;

use serde_json::{json, Value};

use crate::control::ControlError;
use crate::stats::per_second;
use crate::Router;

impl Router {
    pub fn status(&self, model: &str) -> Result<Value, ControlError> {
        let table = self.table.load();
        let route = table
            .routes
            .get(model)
            .ok_or_else(|| ControlError::NotFound(format!("no route for model '{model}'")))?;
        let now = Instant::now();
        let backends: Vec<Value> = route
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let (window, seconds) = backend.stats.last_minute(now);
                json!({
                    "version": backend.version,
                    "registry_version": backend.registry_version,
                    "role": backend.role(index, route.previous.as_deref()),
                    "weight": backend.weight,
                    "last_minute": {
                        "seconds": seconds,
                        "requests": window.requests,
                        "requests_per_second": per_second(window.requests, seconds),
                        "error_rate": window.error_rate,
                        "overloaded": window.overloaded,
                        "p50_ms": window.p50_ms,
                        "p99_ms": window.p99_ms,
                    },
                    "held": backend.pool.held(),
                    "endpoints": backend.pool.endpoints().iter().map(|e| json!({
                        "url": e.base,
                        "grpc_port": e.grpc_port,
                        "available": e.available(now),
                        "inflight": e.inflight(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({
            "model": model,
            "sticky_header": route.sticky_header,
            "shadow": route.shadow.as_ref().map(|s| json!({"percent": s.percent})),
            "backends": backends,
            "rollout": self.rollout_status(model),
            "events": self.events(model),
            "shared": self.shared_status(),
        }))
    }

    /// Every route's weights, models in name order.
    pub fn routes_summary(&self) -> Value {
        let table = self.table.load();
        let mut models: Vec<&String> = table.routes.keys().collect();
        models.sort();
        let routes: Vec<Value> = models
            .into_iter()
            .map(|model| {
                let route = &table.routes[model];
                json!({
                    "model": model,
                    "weights": route.backends.iter().map(|b| json!({"version": b.version, "registry_version": b.registry_version, "weight": b.weight})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "routes": routes })
    }
}
