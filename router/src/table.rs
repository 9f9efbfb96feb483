//! The routing table: models → weighted versions → replicas, and the choices made on it.
//!
//! A table is immutable; a weight change builds a new one that shares the replicas (their
//! in-flight counts, health and ejection state) and swaps it in atomically, so no request sees
//! half a change and none is dropped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::Rng;

use crate::config::{RouteConfig, Settings};
use crate::stats::VersionStats;

/// One replica of a version.
pub struct Endpoint {
    pub base: String,
    inflight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the replica is ejected (0: not ejected).
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    /// The last active health check answered ready.
    healthy: AtomicBool,
    epoch: Instant,
}

impl Endpoint {
    pub fn new(base: &str) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            base: base.trim_end_matches('/').to_owned(),
            inflight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; the `threshold`th in a row ejects the replica for `base × 2^(n-1)`
    /// (at most 60 s), n being how often it was ejected before. Returning from an ejection, a
    /// replica is on probation: one more failure ejects it again, for longer.
    pub fn record_failure(&self, threshold: u32, base: Duration) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let on_probation = self.ejections.load(Ordering::Relaxed) > 0;
        if failures < threshold && !on_probation {
            return false;
        }
        let times = self.ejections.fetch_add(1, Ordering::Relaxed).min(6);
        let ejection = (base * 2u32.pow(times)).min(Duration::from_secs(60));
        self.ejected_until_ms.store(
            self.now_ms() + ejection.as_millis() as u64,
            Ordering::Relaxed,
        );
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }

    /// A run of successes after a return forgives past ejections.
    pub fn forgive(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) == 0 && self.available() {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Marks a request as in flight on this replica until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The replicas of one version (or of the shadow). The list changes in place when an
/// autoscaler adds or removes replicas, waking requests held while there were none.
pub struct Pool {
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Requests waiting for a first replica (scale from zero).
    held: AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl Pool {
    pub fn new(endpoints: &[String]) -> Arc<Pool> {
        Arc::new(Pool {
            endpoints: ArcSwap::from_pointee(endpoints.iter().map(|e| Endpoint::new(e)).collect()),
            held: AtomicUsize::new(0),
            arrived: tokio::sync::Notify::new(),
        })
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Adds and removes replicas by URL; replicas that stay keep their state. Removed ones get
    /// no new requests; those in flight finish.
    pub fn change(&self, add: &[String], remove: &[String]) {
        let current = self.endpoints();
        let mut next: Vec<Arc<Endpoint>> = current
            .iter()
            .filter(|e| !remove.iter().any(|r| r.trim_end_matches('/') == e.base))
            .cloned()
            .collect();
        for url in add {
            if !next.iter().any(|e| e.base == url.trim_end_matches('/')) {
                next.push(Endpoint::new(url));
            }
        }
        self.endpoints.store(Arc::new(next));
        self.arrived.notify_waiters();
    }

    /// Waits up to `timeout` for a replica while there is none; false when the wait timed out
    /// or `max_held` requests are already waiting.
    pub async fn wait_for_replica(&self, timeout: Duration, max_held: usize) -> bool {
        if self.held.fetch_add(1, Ordering::Relaxed) >= max_held {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let arrived = loop {
            let notified = self.arrived.notified();
            if !self.endpoints().is_empty() {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break !self.endpoints().is_empty();
            }
        };
        self.held.fetch_sub(1, Ordering::Relaxed);
        arrived
    }

    /// Power of two choices on in-flight requests among available replicas (all of them when
    /// none is available: a guess beats a refusal), skipping `exclude`.
    pub fn pick(&self, exclude: Option<&Arc<Endpoint>>) -> Option<Arc<Endpoint>> {
        let allowed = |e: &&Arc<Endpoint>| exclude.is_none_or(|x| !Arc::ptr_eq(x, e));
        let endpoints = self.endpoints();
        let mut candidates: Vec<&Arc<Endpoint>> = endpoints
            .iter()
            .filter(|e| e.available())
            .filter(allowed)
            .collect();
        if candidates.is_empty() {
            candidates = endpoints.iter().filter(allowed).collect();
        }
        let mut rng = rand::rng();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates[a], candidates[b]);
                Some(if b.inflight() < a.inflight() { b } else { a }.clone())
            }
        }
    }
}

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
    /// random draws would wander by ±1.6 points (2σ) at 50/50 over 4,000.
    sequence: AtomicU64,
    start: f64,
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
            start: rand::rng().random::<f64>(),
        }
    }

    /// By weight: a sticky key always lands on the same point of the weight line, so it keeps
    /// its version while the weights hold; without one, the next point of the sequence.
    pub fn choose(&self, sticky_key: Option<&[u8]>) -> Option<&Backend> {
        const GOLDEN: f64 = 0.618_033_988_749_894_9;
        let total: u32 = self.backends.iter().map(|b| b.weight).sum();
        if total == 0 {
            return None;
        }
        let point = match sticky_key {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % u64::from(total)) as u32
            }
            None => {
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                let fraction = (self.start + n as f64 * GOLDEN).fract();
                ((fraction * f64::from(total)) as u32).min(total - 1)
            }
        };
        let mut edge = 0;
        self.backends.iter().find(|b| {
            edge += b.weight;
            point < edge
        })
    }

    /// A shadow copy for this request? Decided independently of the version choice.
    pub fn shadow_for_this_request(&self) -> Option<&Shadow> {
        self.shadow
            .as_ref()
            .filter(|s| s.percent > 0 && rand::rng().random_range(0..100) < s.percent)
    }

    pub fn weights(&self) -> Vec<(String, u32)> {
        self.backends
            .iter()
            .map(|b| (b.version.clone(), b.weight))
            .collect()
    }
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
                            o.pool
                                .endpoints()
                                .iter()
                                .map(|e| &e.base)
                                .eq(b.endpoints.iter())
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
mod tests {
    use super::*;
    use crate::config::RoutesFile;

    fn table(weights: (u32, u32)) -> RouteTable {
        let text = format!(
            r#"[[route]]
            model = "m"
            [[route.backend]]
            version = "1"
            endpoints = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
            weight = {}
            [[route.backend]]
            version = "2"
            endpoints = ["http://127.0.0.1:3"]
            weight = {}"#,
            weights.0, weights.1
        );
        let file = RoutesFile::parse(&text).unwrap();
        RouteTable::build(&file.route, file.settings, None)
    }

    #[test]
    fn weights_split_and_sticky_keys_stay() {
        let table = table((70, 30));
        let route = &table.routes["m"];
        let canary = (0..10_000)
            .filter(|_| route.choose(None).unwrap().version == "2")
            .count();
        assert!((2_990..=3_010).contains(&canary), "{canary}");
        for key in ["alice", "bob", "carol"] {
            let first = route.choose(Some(key.as_bytes())).unwrap().version.clone();
            assert!((0..50).all(|_| route.choose(Some(key.as_bytes())).unwrap().version == first));
        }
        let all_stable = table.with_weights("m", &[("1".into(), 100), ("2".into(), 0)], None);
        assert!((0..1000).all(|_| all_stable.routes["m"].choose(None).unwrap().version == "1"));
    }

    #[test]
    fn weight_changes_keep_replica_state() {
        let table = table((90, 10));
        let endpoint = table.routes["m"].backends[0].pool.endpoints()[0].clone();
        let _busy = endpoint.start();
        let changed = table.with_weights("m", &[("2".into(), 50), ("1".into(), 50)], None);
        let route = &changed.routes["m"];
        assert_eq!(route.backends[0].version, "2");
        assert_eq!(
            route.backend("1").unwrap().pool.endpoints()[0].inflight(),
            1
        );
    }

    #[test]
    fn failures_eject_and_probation_reejects() {
        let endpoint = Endpoint::new("http://127.0.0.1:1");
        let base = Duration::from_millis(0);
        assert!(!endpoint.record_failure(3, base));
        assert!(!endpoint.record_failure(3, base));
        assert!(endpoint.record_failure(3, base));
        // Back (the ejection was 0 ms), but one failure on probation ejects again.
        assert!(endpoint.record_failure(3, base));
        endpoint.record_success();
        endpoint.forgive();
        assert!(!endpoint.record_failure(3, Duration::from_secs(5)));
    }

    #[test]
    fn two_choices_prefer_the_idle_replica() {
        let pool = Pool::new(&["http://a:1".into(), "http://b:1".into()]);
        let endpoints = pool.endpoints();
        let _busy = endpoints[0].start();
        assert!((0..50).all(|_| pool.pick(None).unwrap().base == "http://b:1"));
        assert_eq!(pool.pick(Some(&endpoints[1])).unwrap().base, "http://a:1");
        endpoints[1].set_healthy(false);
        assert_eq!(pool.pick(None).unwrap().base, "http://a:1");
    }
}
