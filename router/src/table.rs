//! The routing table: models → weighted versions → replicas, and the choices made on it.
//!
//! A table is immutable; a weight change builds a new one that shares the replicas (their
//! in-flight counts, health and ejection state) and swaps it in atomically, so no request sees
//! half a change and none is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rand::Rng;

use crate::config::{RouteConfig, Settings};
use crate::pool::Pool;
use crate::stats::VersionStats;

pub struct Backend {
    /// The name the router knows the backend by (the routes file's `version`).
    pub version: String,
    /// The version number its replicas serve, when `version` is another name.
    pub registry_version: Option<String>,
    pub weight: u32,
    pub pool: Arc<Pool>,
    pub stats: Arc<VersionStats>,
}

pub struct Shadow {
    pub percent: u32,
    pub pool: Arc<Pool>,
    pub stats: Arc<VersionStats>,
}

pub struct Route {
    pub model: String,
    pub sticky_header: Option<String>,
    /// Requests placed so far, and a random start: request n lands at frac(start + n·φ) on the
    /// weight line. The golden-ratio (Weyl) sequence covers the line evenly, so the split is
    /// exact within a fraction of a point after a few hundred requests, where independent
    /// random draws would wander by ±1.6 points (2σ) at 50/50 over 4,000. The start is drawn
    /// from the caller's RNG at the route's first choice (so a seeded RNG repeats a run).
    sequence: AtomicU64,
    start: OnceLock<f64>,
    /// The stable version first, then the canary (if any), then others.
    pub backends: Vec<Backend>,
    pub shadow: Option<Shadow>,
    /// Set by a promotion, until the next weight change: the version that was stable before
    /// it. It is the second backend then, at 0 %: not a canary, but what a rollback returns
    /// to.
    pub previous: Option<String>,
}

impl Backend {
    /// Whether a pin or an admin call naming `name` means this backend: its own name or the
    /// version number its replicas serve.
    pub fn answers_to(&self, name: &str) -> bool {
        self.version == name || self.registry_version.as_deref() == Some(name)
    }

    /// Its role in the route, from its place and the last promotion.
    pub fn role(&self, index: usize, previous: Option<&str>) -> &'static str {
        match index {
            0 => "stable",
            1 if previous == Some(self.version.as_str()) => "previous",
            1 => "canary",
            _ => "other",
        }
    }
}

impl Route {
    /// The backend a pin or admin call names, by its name or by its registry version (names
    /// are checked first; the routes file keeps them from overlapping).
    pub fn backend(&self, version: &str) -> Option<&Backend> {
        self.backends
            .iter()
            .find(|b| b.version == version)
            .or_else(|| self.backends.iter().find(|b| b.answers_to(version)))
    }

    fn new(
        model: String,
        sticky_header: Option<String>,
        backends: Vec<Backend>,
        shadow: Option<Shadow>,
        previous: Option<String>,
    ) -> Route {
        Route {
            model,
            sticky_header,
            backends,
            shadow,
            previous,
            sequence: AtomicU64::new(0),
            start: OnceLock::new(),
        }
    }

    /// By weight: a sticky key always lands on the same point of the weight line (see
    /// [`crate::sticky`]), so it keeps its version while the weights hold; without one, the
    /// next point of the sequence.
    pub fn choose(&self, sticky_key: Option<&[u8]>, rng: &mut impl Rng) -> Option<&Backend> {
        let total: u32 = self.backends.iter().map(|b| b.weight).sum();
        if total == 0 {
            return None;
        }
        let point = match sticky_key {
            Some(key) => crate::sticky::point(key, total),
            None => {
                let start = *self.start.get_or_init(|| rng.random::<f64>());
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                sequence_point(start, n, total)
            }
        };
        let mut edge = 0;
        self.backends.iter().find(|b| {
            edge += b.weight;
            point < edge
        })
    }

    /// A shadow copy for this request? Decided independently of the version choice.
    pub fn shadow_for_this_request(&self, rng: &mut impl Rng) -> Option<&Shadow> {
        self.shadow
            .as_ref()
            .filter(|s| s.percent > 0 && rng.random_range(0..100) < s.percent)
    }

    pub fn weights(&self) -> Vec<(String, u32)> {
        self.backends
            .iter()
            .map(|b| (b.version.clone(), b.weight))
            .collect()
    }
}

/// The point of a weight line of length `total` (at least 1) where request `n` of a Weyl
/// sequence starting at `start` (in [0, 1)) lands.
fn sequence_point(start: f64, n: u64, total: u32) -> u32 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    let fraction = (start + n as f64 * GOLDEN).fract();
    ((fraction * f64::from(total)) as u32).min(total.saturating_sub(1))
}

pub struct RouteTable {
    pub routes: HashMap<String, Arc<Route>>,
    pub settings: Settings,
}

impl RouteTable {
    /// A table from configuration; replicas and stats of `previous` are kept where the same
    /// model, version and endpoint list appear again.
    pub fn build(
        routes: &[RouteConfig],
        settings: Settings,
        previous: Option<&RouteTable>,
    ) -> RouteTable {
        let routes = routes
            .iter()
            .map(|config| {
                let old = previous.and_then(|p| p.routes.get(&config.model));
                let backends = config
                    .backend
                    .iter()
                    .map(|b| {
                        let old = old.and_then(|r| r.backend(&b.version));
                        let same_endpoints = old.is_some_and(|o| {
                            let known = o.pool.endpoints();
                            known.len() == b.endpoints.len()
                                && known.iter().zip(&b.endpoints).all(|(e, c)| e.is(c))
                        });
                        Backend {
                            version: b.version.clone(),
                            registry_version: b.registry_version.clone(),
                            weight: b.weight,
                            pool: match old {
                                Some(o) if same_endpoints => o.pool.clone(),
                                _ => Pool::new(&b.endpoints),
                            },
                            stats: old.map_or_else(Default::default, |o| o.stats.clone()),
                        }
                    })
                    .collect();
                let shadow = config.shadow.as_ref().map(|s| Shadow {
                    percent: s.percent,
                    pool: Pool::new(&s.endpoints),
                    stats: old
                        .and_then(|r| r.shadow.as_ref())
                        .map_or_else(Default::default, |o| o.stats.clone()),
                });
                let route = Route::new(
                    config.model.clone(),
                    config.sticky_header.clone(),
                    backends,
                    shadow,
                    None,
                );
                (config.model.clone(), Arc::new(route))
            })
            .collect();
        RouteTable { routes, settings }
    }

    /// The same table with one route's weights replaced (and its backends reordered, stable
    /// first) and its `previous` stable version set (a promotion) or cleared (any other
    /// change); everything else is shared.
    pub fn with_weights(
        &self,
        model: &str,
        weights: &[(String, u32)],
        previous: Option<String>,
    ) -> RouteTable {
        let routes = self
            .routes
            .iter()
            .map(|(name, route)| {
                if name != model {
                    return (name.clone(), route.clone());
                }
                let backends = weights
                    .iter()
                    .filter_map(|(version, weight)| {
                        route.backend(version).map(|b| Backend {
                            version: b.version.clone(),
                            registry_version: b.registry_version.clone(),
                            weight: *weight,
                            pool: b.pool.clone(),
                            stats: b.stats.clone(),
                        })
                    })
                    .collect();
                let shadow = route.shadow.as_ref().map(|s| Shadow {
                    percent: s.percent,
                    pool: s.pool.clone(),
                    stats: s.stats.clone(),
                });
                let updated = Route::new(
                    route.model.clone(),
                    route.sticky_header.clone(),
                    backends,
                    shadow,
                    previous.clone(),
                );
                (name.clone(), Arc::new(updated))
            })
            .collect();
        RouteTable {
            routes,
            settings: self.settings,
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
