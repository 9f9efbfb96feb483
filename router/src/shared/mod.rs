//! Router replicas that agree (`weir route --registry URL`): the weights, the last promotion
//! and each model's rollout live in one document in the registry's database
//! (weir-coordination), changed by compare-and-set and polled by every replica.
//!
//! - A change through any replica's admin API is written to the document against the revision
//!   that replica last applied; when another replica wrote first, the change is refused by the
//!   registry (409), the replica applies the newer document and does the operation again on it.
//!   Only then is its own table swapped, so no replica serves a change the others will not see.
//! - Every replica reads the document every `poll_interval` (500 ms by default) and applies a
//!   newer revision to its table, so a change reaches all of them within a second.
//! - The registry down: admin changes are refused (503) rather than made on one replica only;
//!   routing goes on with the last state applied (also kept in the local state file, so a
//!   restart while the registry is away starts from it); failed polls are logged with backoff.
//! - A rollout is driven by the replica holding the lease `rollout/<model>`; see
//!   [`crate::rollout`].
//!
//! Why the registry and not the routes ConfigMap the chart mounts: a ConfigMap edit reaches the
//! pods after up to a minute (the kubelet's sync period), and writing one would need Kubernetes
//! credentials in every router (docs/router.md, "Several replicas").

pub mod client;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use client::SharedError;

use crate::control::ControlError;
use crate::state::{self, SavedState};
use crate::Router;

/// How a router shares its state; `None` in [`crate::Serving`] keeps it to itself.
pub struct SharedConfig {
    /// The registry's base URL (`http://registry:5000`).
    pub registry: String,
    /// A token holding the registry's `admin` role (writing the document and taking leases
    /// need it). A secret: never logged.
    pub token: Option<String>,
    /// The document's key; replicas serving the same routes use the same one.
    pub key: String,
    pub http: weir_http::HttpClient,
    /// How often the document is read.
    pub poll_interval: Duration,
    /// How long a rollout's lease lasts without renewal: how long a rollout stands still when
    /// the replica driving it disappears.
    pub lease_ttl: Duration,
    /// Each call to the registry ends within this.
    pub deadline: Duration,
}

impl SharedConfig {
    /// The defaults: a poll every 500 ms, 10 s leases, 2 s per call.
    pub fn new(registry: &str, token: Option<String>, key: String) -> SharedConfig {
        SharedConfig {
            registry: registry.to_owned(),
            token,
            key,
            http: weir_http::HttpClient::default(),
            poll_interval: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(10),
            deadline: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("registry", &self.registry)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The default document key: `routes/` and the routes file's name without its extension
/// (`routes.toml` → `routes/routes`), so replicas mounting the same file agree without a flag.
pub fn default_key(config: &Path) -> String {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(150)
        .collect();
    format!("routes/{}", if stem.is_empty() { "routes" } else { &stem })
}

/// A replica's end of the shared state.
pub(crate) struct Shared {
    pub client: client::Client,
    pub key: String,
    pub registry: String,
    pub poll_interval: Duration,
    pub lease_ttl: Duration,
    /// Who this replica is to the leases: the pod's name (HOSTNAME), the process and a random
    /// number, unique across restarts.
    pub holder: String,
    /// The document's revision the table reflects (`None`: none applied yet).
    revision: Mutex<Option<i64>>,
    /// Polls that failed in a row (logged at 1, 2, 4, 8, …).
    failures: AtomicU64,
}

impl Shared {
    pub fn new(config: SharedConfig) -> Shared {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .take(100)
            .collect();
        let holder = format!(
            "{}{}-{:08x}",
            if host.is_empty() {
                String::new()
            } else {
                format!("{host}-")
            },
            std::process::id(),
            rand::random::<u32>()
        );
        Shared {
            client: client::Client::new(
                &config.registry,
                config.token.as_deref(),
                config.http,
                config.deadline,
            ),
            key: config.key,
            registry: config.registry,
            poll_interval: config.poll_interval,
            lease_ttl: config.lease_ttl,
            holder,
            revision: Mutex::new(None),
            failures: AtomicU64::new(0),
        }
    }

    pub fn revision(&self) -> Option<i64> {
        *self.revision.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_revision(&self, revision: i64) {
        *self.revision.lock().unwrap_or_else(|p| p.into_inner()) = Some(revision);
    }

    fn unavailable(&self, err: &SharedError) -> ControlError {
        ControlError::Unavailable(format!(
            "the shared router state cannot be written ({err}); nothing was changed"
        ))
    }
}

/// Compare-and-set rounds before an admin change gives up (each lost round means another
/// replica changed the state in between).
const ROUNDS: usize = 8;

impl Router {
    /// The replica's identity to the leases and the revision it applied, when shared.
    pub fn shared_status(&self) -> Option<serde_json::Value> {
        self.shared.as_ref().map(|shared| {
            serde_json::json!({
                "key": shared.key,
                "revision": shared.revision(),
                "replica": shared.holder,
            })
        })
    }

    /// Runs a change that writes the shared document; when another replica wrote first, applies
    /// the newer document and runs the change again on it. Without a registry, runs it once.
    pub(crate) async fn retrying<F, Fut>(&self, change: F) -> Result<(), ControlError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), ControlError>>,
    {
        for _ in 0..ROUNDS {
            match change().await {
                Err(ControlError::Stale) => {
                    if let Err(err) = self.sync_shared().await {
                        return Err(self.shared.as_ref().map_or_else(
                            || ControlError::Unavailable(err.to_string()),
                            |s| s.unavailable(&err),
                        ));
                    }
                }
                other => return other,
            }
        }
        Err(ControlError::Conflict(format!(
            "the shared router state changed {ROUNDS} times while this change was tried; try again"
        )))
    }

    /// Writes `table` (and the rollouts) as the next revision of the shared document; called
    /// under the control lock, before `table` is swapped in. [`ControlError::Stale`] when
    /// another replica wrote since this one last applied the document.
    pub(crate) async fn publish(
        &self,
        table: &crate::table::RouteTable,
    ) -> Result<(), ControlError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let state = state::snapshot(&self.routes_file.load(), table, |model| {
            self.shared_rollout(model)
        });
        let value = serde_json::to_value(&state)
            .map_err(|e| ControlError::Invalid(format!("cannot encode the router state: {e}")))?;
        match shared
            .client
            .put(&shared.key, value, shared.revision())
            .await
        {
            Ok(revision) => {
                shared.set_revision(revision);
                Ok(())
            }
            Err(SharedError::Conflict) => Err(ControlError::Stale),
            Err(err) => Err(shared.unavailable(&err)),
        }
    }

    /// Publishes the current table and rollouts (a rollout started, stopped or moved on),
    /// retrying on lost compare-and-set rounds.
    pub(crate) async fn publish_rollouts(&self) -> Result<(), ControlError> {
        if self.shared.is_none() {
            return Ok(());
        }
        self.retrying(|| async move {
            let _guard = self.control.lock().await;
            let table = self.table.load_full();
            self.publish(&table).await
        })
        .await
    }

    /// [`Router::publish_rollouts`] for the rollout's driver: a failure is logged, and the
    /// driver goes on (the next step's write carries the progress too).
    pub(crate) async fn share_rollouts(&self) {
        if let Err(err) = self.publish_rollouts().await {
            tracing::warn!(error = %err, "cannot share the rollout's progress with the other replicas");
        }
    }

    /// Reads the shared document and applies it if it is newer than what this replica applied.
    pub(crate) async fn sync_shared(&self) -> Result<(), SharedError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let Some((revision, value)) = shared.client.get(&shared.key).await? else {
            return Ok(());
        };
        let _guard = self.control.lock().await;
        if shared.revision().is_some_and(|applied| applied >= revision) {
            return Ok(());
        }
        let saved: SavedState = serde_json::from_value(value).map_err(|e| {
            SharedError::Unreadable(format!(
                "document '{}' revision {revision}: {e}",
                shared.key
            ))
        })?;
        self.apply_shared(&saved, revision);
        shared.set_revision(revision);
        Ok(())
    }

    /// The shared document's weights and rollouts, applied to this replica (under the control
    /// lock). Routes made against other routes-file weights than this replica's are left alone,
    /// as in the local state file: the file is the newer intention.
    fn apply_shared(self: &Router, saved: &SavedState, revision: i64) {
        let file = self.routes_file.load_full();
        let mut table = self.table.load_full();
        let mut changed = false;
        for (model, weights, previous) in state::applicable(saved, &file) {
            let Some(route) = table.routes.get(&model) else {
                continue;
            };
            if route.weights() == weights && route.previous == previous {
                continue;
            }
            table = Arc::new(table.with_weights(&model, &weights, previous));
            let described: Vec<String> = weights.iter().map(|(v, w)| format!("{v}={w}%")).collect();
            self.event(
                &model,
                format!(
                    "shared state revision {revision}: weights {}",
                    described.join(" ")
                ),
            );
            changed = true;
        }
        if changed {
            self.metrics.set_weights(&table);
            state::save(&self.state_path, &file, &table);
            self.table.store(table);
        }
        for (model, route) in &saved.routes {
            if let Some(rollout) = &route.rollout {
                self.follow_rollout(model, rollout);
            }
        }
    }

    /// Reads the document every poll interval until the router is dropped. Failures are logged
    /// at the 1st, 2nd, 4th, 8th… in a row, and the recovery once.
    pub(crate) fn spawn_shared_poll(self: &Arc<Self>) {
        if self.shared.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(router) = weak.upgrade() else {
                    return;
                };
                let Some(shared) = &router.shared else {
                    return;
                };
                let interval = shared.poll_interval;
                match router.sync_shared().await {
                    Ok(()) => {
                        let failed = shared.failures.swap(0, Ordering::Relaxed);
                        if failed > 0 {
                            tracing::info!(failed, registry = %shared.registry, "the shared router state is reachable again");
                        }
                    }
                    Err(err) => {
                        let failed = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
                        if failed.is_power_of_two() {
                            tracing::warn!(failed, error = %err, "cannot read the shared router state; serving the last state applied");
                        }
                    }
                }
                drop(router);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_is_the_routes_files_name() {
        assert_eq!(
            default_key(Path::new("/etc/weir/routes.toml")),
            "routes/routes"
        );
        assert_eq!(
            default_key(Path::new("prod canary.toml")),
            "routes/prod_canary"
        );
        assert_eq!(default_key(Path::new("")), "routes/routes");
    }

    #[test]
    fn the_token_is_never_shown() {
        let config = SharedConfig::new(
            "http://127.0.0.1:5000",
            Some("s3cret".into()),
            "routes/r".into(),
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<hidden>"),
            "{shown}"
        );
    }
}
