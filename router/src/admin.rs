//! The admin API under `/admin/v1/`: route status, canary percentage, promote, rollback,
//! explicit weights, and progressive rollouts. Served on its own listener (`--admin-port`), never
//! on the data port. With a token configured every call needs `Authorization: Bearer TOKEN`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{bearer_matches, AdminToken};
use crate::config::valid_endpoint;
use crate::proxy::{error, json_response};
use crate::rollout::{Rollout, RolloutPlan};
use crate::stats::per_second;
use crate::table::Route;
use crate::{state, Router};

/// Events kept per model for `status`.
const EVENTS_KEPT: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub message: String,
}

pub struct AdminState {
    /// Validated at start-up (never empty): without one the API is open, which the router
    /// allows only on loopback or with `--allow-anonymous`.
    token: Option<AdminToken>,
    /// Serialises weight changes: each reads the current table and swaps in the next.
    changes: tokio::sync::Mutex<()>,
    events: Mutex<HashMap<String, VecDeque<Event>>>,
    pub(crate) rollouts: Mutex<HashMap<String, Arc<Rollout>>>,
}

impl AdminState {
    pub fn new(token: Option<AdminToken>) -> AdminState {
        AdminState {
            token,
            changes: tokio::sync::Mutex::new(()),
            events: Mutex::new(HashMap::new()),
            rollouts: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The call does not fit the route's state (e.g. no canary to promote).
    #[error("{0}")]
    Conflict(String),
    #[error("the admin API needs Authorization: Bearer <token>")]
    Unauthorized,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
        };
        error(status, self.to_string())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Router {
    /// Records an event for a model's status, and logs it.
    pub fn event(&self, model: &str, message: String) {
        tracing::info!(model, "{message}");
        let mut events = self.admin.events.lock().unwrap_or_else(|p| p.into_inner());
        let list = events.entry(model.to_owned()).or_default();
        list.push_back(Event {
            at_ms: now_ms(),
            message,
        });
        while list.len() > EVENTS_KEPT {
            list.pop_front();
        }
    }

    /// Sets a model's weights (stable version first), atomically, and persists them. Versions
    /// may be named by the backend's name or by its registry version.
    pub async fn set_weights(
        &self,
        model: &str,
        weights: Vec<(String, u32)>,
        why: &str,
    ) -> Result<(), AdminError> {
        self.apply_weights(model, weights, None, why).await
    }

    /// [`Router::set_weights`], recording `previous` as the stable version a rollback returns
    /// to (a promotion) or clearing it (`None`, any other change).
    async fn apply_weights(
        &self,
        model: &str,
        weights: Vec<(String, u32)>,
        previous: Option<String>,
        why: &str,
    ) -> Result<(), AdminError> {
        let _guard = self.admin.lock().await;
        let current = self.table.load_full();
        let route = current
            .routes
            .get(model)
            .ok_or_else(|| AdminError::NotFound(format!("no route for model '{model}'")))?;
        let known_versions = || describe_versions(route);
        let mut named = Vec::with_capacity(weights.len());
        for (version, weight) in weights {
            let backend = route.backend(&version).ok_or_else(|| {
                AdminError::Invalid(format!(
                    "model '{model}' has no version '{version}' behind this router; its versions: {}",
                    known_versions()
                ))
            })?;
            named.push((backend.version.clone(), weight));
        }
        let weights = named;
        let mut known: Vec<&String> = route.backends.iter().map(|b| &b.version).collect();
        let mut given: Vec<&String> = weights.iter().map(|(v, _)| v).collect();
        known.sort();
        given.sort();
        if known != given {
            return Err(AdminError::Invalid(format!(
                "weights must name each version of '{model}' once: {}",
                known_versions()
            )));
        }
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        if total != 100 || weights.iter().any(|(_, w)| *w > 100) {
            return Err(AdminError::Invalid(format!(
                "weights must add up to 100, got {total}"
            )));
        }
        let table = current.with_weights(model, &weights, previous);
        self.metrics.set_weights(&table);
        state::save(&self.state_path, &self.routes_file.load(), &table);
        self.table.store(Arc::new(table));
        let described: Vec<String> = weights.iter().map(|(v, w)| format!("{v}={w}%")).collect();
        self.event(model, format!("{why}: weights {}", described.join(" ")));
        Ok(())
    }

    /// The first two backends: the stable version and the second one, whatever its role.
    pub fn stable_and_canary(&self, model: &str) -> Result<(String, String), AdminError> {
        let table = self.table.load();
        let route = table
            .routes
            .get(model)
            .ok_or_else(|| AdminError::NotFound(format!("no route for model '{model}'")))?;
        match route.backends.as_slice() {
            [stable, canary, ..] => Ok((stable.version.clone(), canary.version.clone())),
            _ => Err(AdminError::Conflict(format!(
                "model '{model}' has one version behind the router; a canary needs a second backend in the routes file"
            ))),
        }
    }

    /// The stable version and a true canary: refused right after a promotion, when the
    /// second backend is the former stable version, not a candidate.
    pub fn stable_and_true_canary(&self, model: &str) -> Result<(String, String), AdminError> {
        let (stable, second) = self.stable_and_canary(model)?;
        let previous = self
            .table
            .load()
            .routes
            .get(model)
            .and_then(|r| r.previous.clone());
        if previous.as_deref() == Some(second.as_str()) {
            return Err(AdminError::Conflict(format!(
                "model '{model}' has no canary: '{stable}' was promoted and '{second}' is the previous stable version; \
                 `weir canary rollback {model}` returns to '{second}', `weir canary set {model} PERCENT` makes it a canary again"
            )));
        }
        Ok((stable, second))
    }

    /// Canary at `percent`, the stable version at the rest (other versions at 0). Right after
    /// a promotion the second backend is the former stable version: naming a percentage makes
    /// it a canary again, on purpose.
    pub async fn set_canary(&self, model: &str, percent: u32, why: &str) -> Result<(), AdminError> {
        if percent > 100 {
            return Err(AdminError::Invalid(format!(
                "canary percent must be 0 to 100, got {percent}"
            )));
        }
        let (stable, canary) = self.stable_and_canary(model)?;
        let weights = self.weights_with(model, &[(stable, 100 - percent), (canary, percent)]);
        self.set_weights(model, weights, why).await
    }

    /// The canary takes all traffic and becomes the stable version; the former stable version
    /// is kept (at 0 %, role `previous`) for a rollback.
    pub async fn promote(&self, model: &str, why: &str) -> Result<(), AdminError> {
        let (stable, canary) = self.stable_and_true_canary(model)?;
        let weights = self.weights_with(model, &[(canary, 100), (stable.clone(), 0)]);
        self.apply_weights(model, weights, Some(stable), why).await
    }

    /// Canary to 0 %; right after a promotion, the promotion undone instead: the previous
    /// stable version takes all traffic again and the promoted one is the canary at 0 %.
    pub async fn rollback(&self, model: &str) -> Result<(), AdminError> {
        let (stable, second) = self.stable_and_canary(model)?;
        let previous = self
            .table
            .load()
            .routes
            .get(model)
            .and_then(|r| r.previous.clone());
        if previous.as_deref() == Some(second.as_str()) {
            let weights = self.weights_with(model, &[(second.clone(), 100), (stable.clone(), 0)]);
            let why = format!(
                "rolled back the promotion of '{stable}': '{second}' is the stable version again, '{stable}' the canary at 0%"
            );
            return self.set_weights(model, weights, &why).await;
        }
        self.set_canary(model, 0, "rolled back").await
    }

    /// `first` in order, then every other version at 0.
    fn weights_with(&self, model: &str, first: &[(String, u32)]) -> Vec<(String, u32)> {
        let table = self.table.load();
        let mut weights = first.to_vec();
        if let Some(route) = table.routes.get(model) {
            for backend in &route.backends {
                if !weights.iter().any(|(v, _)| *v == backend.version) {
                    weights.push((backend.version.clone(), 0));
                }
            }
        }
        weights
    }

    /// Stops a running rollout of `model`, if any.
    pub fn cancel_rollout(&self, model: &str, why: &str) {
        let rollout = self
            .admin
            .rollouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned();
        if let Some(rollout) = rollout {
            if rollout.cancel() {
                self.event(model, format!("rollout cancelled: {why}"));
            }
        }
    }

    pub fn status(&self, model: &str) -> Result<Value, AdminError> {
        let table = self.table.load();
        let route = table
            .routes
            .get(model)
            .ok_or_else(|| AdminError::NotFound(format!("no route for model '{model}'")))?;
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
                        "available": e.available(),
                        "inflight": e.inflight(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let events: Vec<Event> = self
            .admin
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default();
        let rollout = self
            .admin
            .rollouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .map(|r| r.describe());
        Ok(json!({
            "model": model,
            "sticky_header": route.sticky_header,
            "shadow": route.shadow.as_ref().map(|s| json!({"percent": s.percent})),
            "backends": backends,
            "rollout": rollout,
            "events": events,
        }))
    }
}

/// `stable (registry version 1), canary (2)`-style list of a route's versions for errors.
fn describe_versions(route: &Route) -> String {
    route
        .backends
        .iter()
        .map(|b| match &b.registry_version {
            Some(number) if *number != b.version => {
                format!("{} (registry version {number})", b.version)
            }
            _ => b.version.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn authorized(router: &Router, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &router.admin.token else {
        return Ok(());
    };
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if bearer_matches(token, given) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AdminError::Invalid(format!("invalid request body: {e}")))
}

type Answer = Result<Response, AdminError>;

fn done(router: &Router, model: &str) -> Answer {
    Ok(json_response(StatusCode::OK, &router.status(model)?))
}

async fn list(State(router): State<Arc<Router>>, headers: HeaderMap) -> Answer {
    authorized(&router, &headers)?;
    let table = router.table.load();
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
    Ok(json_response(StatusCode::OK, &json!({ "routes": routes })))
}

async fn status(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    done(&router, &model)
}

#[derive(Deserialize)]
struct CanaryBody {
    percent: u32,
}

async fn canary(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let request: CanaryBody = body(&bytes)?;
    router.cancel_rollout(&model, "the canary was set by hand");
    router
        .set_canary(&model, request.percent, "canary set")
        .await?;
    done(&router, &model)
}

async fn promote(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    router.cancel_rollout(&model, "promoted by hand");
    router.promote(&model, "promoted").await?;
    done(&router, &model)
}

async fn rollback(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    router.cancel_rollout(&model, "rolled back by hand");
    router.rollback(&model).await?;
    done(&router, &model)
}

#[derive(Deserialize)]
struct WeightsBody {
    /// Version → weight; the order of a JSON object is not kept, so the stable version stays
    /// first when it is named.
    weights: HashMap<String, u32>,
}

async fn weights(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let request: WeightsBody = body(&bytes)?;
    let table = router.table.load_full();
    // Each key at the place of the backend it names (by name or registry version), so the
    // stable version stays first; unknown names go last, for `set_weights` to refuse.
    let place = |name: &str| {
        table
            .routes
            .get(&model)
            .and_then(|route| {
                let backend = route.backend(name)?;
                route
                    .backends
                    .iter()
                    .position(|b| b.version == backend.version)
            })
            .unwrap_or(usize::MAX)
    };
    let mut weights: Vec<(String, u32)> = request.weights.into_iter().collect();
    weights.sort_by_key(|(name, _)| (place(name), name.clone()));
    router.cancel_rollout(&model, "weights were set by hand");
    router.set_weights(&model, weights, "weights set").await?;
    done(&router, &model)
}

async fn start_rollout(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let plan: RolloutPlan = body(&bytes)?;
    plan.validate()?;
    router.stable_and_true_canary(&model)?;
    router.cancel_rollout(&model, "a new rollout started");
    Rollout::start(&router, &model, plan);
    done(&router, &model)
}

async fn stop_rollout(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    router.cancel_rollout(&model, "stopped by hand; weights stay where they are");
    done(&router, &model)
}

#[derive(Deserialize)]
struct EndpointsBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// An autoscaler adds replicas once they are ready and removes them before stopping them.
/// Not persisted: replicas are facts of the running system, re-announced by whoever runs them.
async fn endpoints(
    State(router): State<Arc<Router>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let request: EndpointsBody = body(&bytes)?;
    if let Some(bad) = request.add.iter().find(|url| !valid_endpoint(url)) {
        return Err(AdminError::Invalid(format!(
            "endpoint '{bad}' must be http://HOST:PORT"
        )));
    }
    let table = router.table.load_full();
    let backend = table
        .routes
        .get(&model)
        .and_then(|route| route.backend(&version))
        .ok_or_else(|| {
            AdminError::NotFound(format!(
                "no version '{version}' of model '{model}' behind this router"
            ))
        })?;
    let before = backend.pool.endpoints().len();
    backend.pool.change(&request.add, &request.remove);
    let after = backend.pool.endpoints().len();
    if before != after {
        router.event(
            &model,
            format!("version {version}: {before} → {after} replicas"),
        );
    }
    done(&router, &model)
}

pub fn routes() -> axum::Router<Arc<Router>> {
    axum::Router::new()
        .route("/admin/v1/routes", get(list))
        .route("/admin/v1/routes/{model}", get(status))
        .route("/admin/v1/routes/{model}/canary", post(canary))
        .route("/admin/v1/routes/{model}/promote", post(promote))
        .route("/admin/v1/routes/{model}/rollback", post(rollback))
        .route("/admin/v1/routes/{model}/weights", post(weights))
        .route(
            "/admin/v1/routes/{model}/versions/{version}/endpoints",
            post(endpoints),
        )
        .route(
            "/admin/v1/routes/{model}/rollout",
            post(start_rollout).delete(stop_rollout),
        )
}
