//! The weight operations: set weights, set the canary's share, promote, roll back, change a
//! version's replicas, and the event log that records each of them. The admin API's handlers
//! and the rollout driver both call these; neither knows the other.
//!
//! Every change reads the current table and swaps in the next one under one lock, so two
//! changes never interleave and a request in flight finishes on the table it started with.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

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

/// Why a weight operation was refused; the admin API maps each to its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The call does not fit the route's state (e.g. no canary to promote).
    #[error("{0}")]
    Conflict(String),
    /// Replicas sharing their state: the shared state cannot be written (the registry is
    /// unreachable or refused), so nothing changed on any replica.
    #[error("{0}")]
    Unavailable(String),
    /// Replicas sharing their state: another replica changed it since this one last read it.
    /// [`Router::retrying`] reads it again and repeats the change; it never reaches a caller.
    #[error("the shared router state changed meanwhile")]
    Stale,
}

/// What the weight operations share: the lock that serialises changes and the event log.
#[derive(Default)]
pub struct Control {
    /// Serialises weight changes: each reads the current table and swaps in the next.
    changes: tokio::sync::Mutex<()>,
    events: Mutex<HashMap<String, VecDeque<Event>>>,
}

impl Control {
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn no_route(model: &str) -> ControlError {
    ControlError::NotFound(format!("no route for model '{model}'"))
}

impl Router {
    /// Records an event for a model's status, and logs it.
    pub fn event(&self, model: &str, message: String) {
        tracing::info!(model, "{message}");
        let mut events = self
            .control
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let list = events.entry(model.to_owned()).or_default();
        list.push_back(Event {
            at_ms: now_ms(),
            message,
        });
        while list.len() > EVENTS_KEPT {
            list.pop_front();
        }
    }

    /// A model's recent events, oldest first.
    pub fn events(&self, model: &str) -> Vec<Event> {
        self.control
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets a model's weights (stable version first), atomically, and persists them (in the
    /// shared state too, when replicas share it). Versions may be named by the backend's name
    /// or by its registry version.
    pub async fn set_weights(
        &self,
        model: &str,
        weights: Vec<(String, u32)>,
        why: &str,
    ) -> Result<(), ControlError> {
        self.retrying(|| self.apply_weights(model, weights.clone(), None, why))
            .await
    }

    /// [`Router::set_weights`], recording `previous` as the stable version a rollback returns
    /// to (a promotion) or clearing it (`None`, any other change).
    async fn apply_weights(
        &self,
        model: &str,
        weights: Vec<(String, u32)>,
        previous: Option<String>,
        why: &str,
    ) -> Result<(), ControlError> {
        let _guard = self.control.lock().await;
        let current = self.table.load_full();
        let route = current.routes.get(model).ok_or_else(|| no_route(model))?;
        let known_versions = || describe_versions(route);
        let mut named = Vec::with_capacity(weights.len());
        for (version, weight) in weights {
            let backend = route.backend(&version).ok_or_else(|| {
                ControlError::Invalid(format!(
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
            return Err(ControlError::Invalid(format!(
                "weights must name each version of '{model}' once: {}",
                known_versions()
            )));
        }
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        if total != 100 || weights.iter().any(|(_, w)| *w > 100) {
            return Err(ControlError::Invalid(format!(
                "weights must add up to 100, got {total}"
            )));
        }
        let table = current.with_weights(model, &weights, previous);
        // Shared first: a change the other replicas will not see is not made here either.
        self.publish(&table).await?;
        self.metrics.set_weights(&table);
        state::save(&self.state_path, &self.routes_file.load(), &table);
        self.table.store(Arc::new(table));
        let described: Vec<String> = weights.iter().map(|(v, w)| format!("{v}={w}%")).collect();
        self.event(model, format!("{why}: weights {}", described.join(" ")));
        Ok(())
    }

    /// Named weights (by backend name or registry version, in any order) put in the order of
    /// the backends they name, so the stable version stays first; unknown names go last, for
    /// [`Router::set_weights`] to refuse.
    pub fn in_route_order(&self, model: &str, weights: HashMap<String, u32>) -> Vec<(String, u32)> {
        let table = self.table.load_full();
        let place = |name: &str| {
            table
                .routes
                .get(model)
                .and_then(|route| {
                    let backend = route.backend(name)?;
                    route
                        .backends
                        .iter()
                        .position(|b| b.version == backend.version)
                })
                .unwrap_or(usize::MAX)
        };
        let mut weights: Vec<(String, u32)> = weights.into_iter().collect();
        weights.sort_by_key(|(name, _)| (place(name), name.clone()));
        weights
    }

    /// The first two backends: the stable version and the second one, whatever its role.
    pub fn stable_and_canary(&self, model: &str) -> Result<(String, String), ControlError> {
        let table = self.table.load();
        let route = table.routes.get(model).ok_or_else(|| no_route(model))?;
        match route.backends.as_slice() {
            [stable, canary, ..] => Ok((stable.version.clone(), canary.version.clone())),
            _ => Err(ControlError::Conflict(format!(
                "model '{model}' has one version behind the router; a canary needs a second backend in the routes file"
            ))),
        }
    }

    /// The stable version and a true canary: refused right after a promotion, when the
    /// second backend is the former stable version, not a candidate.
    pub fn stable_and_true_canary(&self, model: &str) -> Result<(String, String), ControlError> {
        let (stable, second) = self.stable_and_canary(model)?;
        if self.previous_stable(model).as_deref() == Some(second.as_str()) {
            return Err(ControlError::Conflict(format!(
                "model '{model}' has no canary: '{stable}' was promoted and '{second}' is the previous stable version; \
                 `weir canary rollback {model}` returns to '{second}', `weir canary set {model} PERCENT` makes it a canary again"
            )));
        }
        Ok((stable, second))
    }

    /// The version that was stable before the last promotion, until the next weight change.
    fn previous_stable(&self, model: &str) -> Option<String> {
        self.table
            .load()
            .routes
            .get(model)
            .and_then(|r| r.previous.clone())
    }

    /// Canary at `percent`, the stable version at the rest (other versions at 0). Right after
    /// a promotion the second backend is the former stable version: naming a percentage makes
    /// it a canary again, on purpose.
    pub async fn set_canary(
        &self,
        model: &str,
        percent: u32,
        why: &str,
    ) -> Result<(), ControlError> {
        self.retrying(|| self.set_canary_once(model, percent, why))
            .await
    }

    /// [`Router::set_canary`] on the current table, once.
    pub(crate) async fn set_canary_once(
        &self,
        model: &str,
        percent: u32,
        why: &str,
    ) -> Result<(), ControlError> {
        if percent > 100 {
            return Err(ControlError::Invalid(format!(
                "canary percent must be 0 to 100, got {percent}"
            )));
        }
        let (stable, canary) = self.stable_and_canary(model)?;
        let weights = self.weights_with(model, &[(stable, 100 - percent), (canary, percent)]);
        self.apply_weights(model, weights, None, why).await
    }

    /// The canary takes all traffic and becomes the stable version; the former stable version
    /// is kept (at 0 %, role `previous`) for a rollback.
    pub async fn promote(&self, model: &str, why: &str) -> Result<(), ControlError> {
        self.retrying(|| self.promote_once(model, why)).await
    }

    /// [`Router::promote`] on the current table, once.
    pub(crate) async fn promote_once(&self, model: &str, why: &str) -> Result<(), ControlError> {
        let (stable, canary) = self.stable_and_true_canary(model)?;
        let weights = self.weights_with(model, &[(canary, 100), (stable.clone(), 0)]);
        self.apply_weights(model, weights, Some(stable), why).await
    }

    /// Canary to 0 %; right after a promotion, the promotion undone instead: the previous
    /// stable version takes all traffic again and the promoted one is the canary at 0 %.
    pub async fn rollback(&self, model: &str) -> Result<(), ControlError> {
        self.retrying(|| self.rollback_once(model)).await
    }

    async fn rollback_once(&self, model: &str) -> Result<(), ControlError> {
        let (stable, second) = self.stable_and_canary(model)?;
        if self.previous_stable(model).as_deref() == Some(second.as_str()) {
            let weights = self.weights_with(model, &[(second.clone(), 100), (stable.clone(), 0)]);
            let why = format!(
                "rolled back the promotion of '{stable}': '{second}' is the stable version again, '{stable}' the canary at 0%"
            );
            return self.apply_weights(model, weights, None, &why).await;
        }
        self.set_canary_once(model, 0, "rolled back").await
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

    /// Adds and removes replicas of one version (an autoscaler adds them once ready and
    /// removes them before stopping them). Not persisted: replicas are facts of the running
    /// system, re-announced by whoever runs them.
    pub fn change_endpoints(
        &self,
        model: &str,
        version: &str,
        add: &[crate::config::EndpointConfig],
        remove: &[String],
    ) -> Result<(), ControlError> {
        for endpoint in add {
            endpoint.check().map_err(ControlError::Invalid)?;
        }
        let table = self.table.load_full();
        let backend = table
            .routes
            .get(model)
            .and_then(|route| route.backend(version))
            .ok_or_else(|| {
                ControlError::NotFound(format!(
                    "no version '{version}' of model '{model}' behind this router"
                ))
            })?;
        let before = backend.pool.endpoints().len();
        backend.pool.change(add, remove);
        let after = backend.pool.endpoints().len();
        if before != after {
            self.event(
                model,
                format!("version {version}: {before} → {after} replicas"),
            );
        }
        Ok(())
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
