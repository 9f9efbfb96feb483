//! The serving pages: each route of the routers the registry watches (`weir registry --router
//! URL`), its weights, live split, error rate and p99 over the last minutes, its rollout and
//! events, its replicas and the autoscaler's recent decisions, with set-percent / promote /
//! rollback forms for admins.
//!
//! Pages never wait on a router: a background sampler ([`Serving::start`]) polls every router's
//! admin API and every autoscaler's `/metrics` every two seconds with deadlines, and the pages
//! read what it last saw. A router that does not answer is shown as unreachable, with its last
//! known state. Everything kept is bounded (routes per router, points per history, decisions
//! per target), so a long-running registry or a hostile answer cannot grow its memory.
//!
//! `sampler` polls, `history` remembers, `status` and `metrics_text` read the answers, `pages`
//! and `actions` are the handlers, `view` turns the state into what the templates show.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use weir_http::admin_token::AdminToken;
use weir_http::HttpClient;
use weir_mlflow_wire::{Access, Role, Routes};

use crate::State;

mod actions;
mod history;
mod metrics_text;
mod pages;
mod sampler;
mod status;
mod view;

pub use history::{Decision, RoutePoint, TargetHistory, TargetPoint, VersionPoint};
pub use metrics_text::TargetSample;
pub use status::RouteStatus;

/// How often the sampler polls (the pages refresh at the same pace).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Routes kept per router.
const MAX_ROUTES: usize = 64;
/// Routers and autoscalers one registry may watch.
const MAX_WATCHED: usize = 32;

/// What `weir registry --router/--router-token-file/--autoscaler` asked to watch.
#[derive(Debug, Clone, Default)]
pub struct ServingConfig {
    /// Base URLs of routers' admin APIs (`http://127.0.0.1:8001`).
    pub routers: Vec<String>,
    /// The routers' admin token (one for all of them), sent as `Authorization: Bearer`.
    pub router_token: Option<AdminToken>,
    /// Base URLs of autoscalers' metrics listeners (`http://127.0.0.1:9102`; `/metrics` is
    /// appended unless the URL ends with it).
    pub autoscalers: Vec<String>,
}

/// Why a watch list was refused at start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ServingError {
    #[error("invalid {what} URL '{url}': give http://HOST:PORT or https://HOST:PORT")]
    BadUrl { what: &'static str, url: String },
    #[error("too many {what}s ({count}): a registry watches at most {MAX_WATCHED}")]
    TooMany { what: &'static str, count: usize },
}

/// One watched router: its admin API and what the sampler last saw there.
pub(crate) struct WatchedRouter {
    pub url: String,
    pub state: Mutex<RouterState>,
}

/// A router as last polled.
#[derive(Debug, Clone, Default)]
pub struct RouterState {
    /// When the last poll ended (ms since the epoch); `None` before the first.
    pub polled_at_ms: Option<u64>,
    /// Why the last poll failed; `None` when it succeeded.
    pub error: Option<String>,
    pub routes: BTreeMap<String, RouteState>,
}

/// One route as last polled, and its recent history.
#[derive(Debug, Clone, Default)]
pub struct RouteState {
    pub status: RouteStatus,
    pub history: VecDeque<RoutePoint>,
    /// Why this route's last status call failed (the list call worked).
    pub error: Option<String>,
}

/// One watched autoscaler.
pub(crate) struct WatchedAutoscaler {
    pub url: String,
    pub state: Mutex<AutoscalerState>,
}

/// An autoscaler as last scraped.
#[derive(Debug, Clone, Default)]
pub struct AutoscalerState {
    pub polled_at_ms: Option<u64>,
    pub error: Option<String>,
    pub targets: BTreeMap<String, TargetHistory>,
}

/// The routers and autoscalers the registry watches, and what was last seen of them.
pub struct Serving {
    pub(crate) routers: Vec<WatchedRouter>,
    pub(crate) autoscalers: Vec<WatchedAutoscaler>,
    token: Option<AdminToken>,
    http: HttpClient,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field(
                "routers",
                &self.routers.iter().map(|r| &r.url).collect::<Vec<_>>(),
            )
            .field(
                "autoscalers",
                &self.autoscalers.iter().map(|a| &a.url).collect::<Vec<_>>(),
            )
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Default for Serving {
    fn default() -> Self {
        Serving::none()
    }
}

fn checked_urls(urls: &[String], what: &'static str) -> Result<Vec<String>, ServingError> {
    if urls.len() > MAX_WATCHED {
        return Err(ServingError::TooMany {
            what,
            count: urls.len(),
        });
    }
    urls.iter()
        .map(|url| {
            let trimmed = url.trim().trim_end_matches('/');
            let rest = trimmed
                .strip_prefix("http://")
                .or_else(|| trimmed.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !trimmed.chars().any(char::is_whitespace) => {
                    Ok(trimmed.to_owned())
                }
                _ => Err(ServingError::BadUrl {
                    what,
                    url: url.clone(),
                }),
            }
        })
        .collect()
}

impl Serving {
    /// Watches nothing: the serving pages say how to point the registry at a router.
    pub fn none() -> Serving {
        Serving {
            routers: Vec::new(),
            autoscalers: Vec::new(),
            token: None,
            http: HttpClient::default(),
        }
    }

    /// Watches what `config` names; a URL that is not `http(s)://HOST…` is refused here, at
    /// start, naming it. Nothing is contacted until [`Serving::start`].
    pub fn new(config: ServingConfig) -> Result<Serving, ServingError> {
        let routers = checked_urls(&config.routers, "router")?;
        let autoscalers = checked_urls(&config.autoscalers, "autoscaler")?;
        Ok(Serving {
            routers: routers
                .into_iter()
                .map(|url| WatchedRouter {
                    url,
                    state: Mutex::default(),
                })
                .collect(),
            autoscalers: autoscalers
                .into_iter()
                .map(|url| WatchedAutoscaler {
                    url,
                    state: Mutex::default(),
                })
                .collect(),
            token: config.router_token,
            http: HttpClient::default(),
        })
    }

    /// Whether any router or autoscaler is watched.
    pub fn is_watching(&self) -> bool {
        !self.routers.is_empty() || !self.autoscalers.is_empty()
    }

    /// The routes known on the watched routers, or `None` when no router is watched.
    pub fn route_count(&self) -> Option<usize> {
        if self.routers.is_empty() {
            return None;
        }
        Some(
            self.routers
                .iter()
                .map(|r| lock(&r.state).routes.len())
                .sum(),
        )
    }

    /// The admin API URLs watched, in the order given.
    pub fn router_urls(&self) -> Vec<String> {
        self.routers.iter().map(|r| r.url.clone()).collect()
    }

    /// What was last seen of router `index`.
    pub fn router_state(&self, index: usize) -> Option<RouterState> {
        self.routers.get(index).map(|r| lock(&r.state).clone())
    }

    /// What was last seen of autoscaler `index`.
    pub fn autoscaler_state(&self, index: usize) -> Option<AutoscalerState> {
        self.autoscalers.get(index).map(|a| lock(&a.state).clone())
    }

    /// The router showing `model`: `preferred` if it has the route, else the first that does.
    pub(crate) fn locate(&self, model: &str, preferred: Option<usize>) -> Option<usize> {
        let has = |index: usize| {
            self.routers
                .get(index)
                .is_some_and(|r| lock(&r.state).routes.contains_key(model))
        };
        match preferred {
            Some(index) => has(index).then_some(index),
            None => (0..self.routers.len()).find(|&index| has(index)),
        }
    }
}

/// The sampler's state stays usable after a panic elsewhere: it is only ever replaced whole.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The module's routes: reading needs `reader`, changing a route needs `admin` (what the
/// router's own admin token stands for).
pub(crate) fn routes() -> Routes<State> {
    Routes::new()
        .get("/ui/serving", Access::Needs(Role::Reader), pages::index)
        .get(
            "/ui/serving/{model}",
            Access::Needs(Role::Reader),
            pages::route,
        )
        .get(
            "/ui/serving/{model}/panel",
            Access::Needs(Role::Reader),
            pages::panel,
        )
        .post(
            "/ui/serving/{model}/canary",
            Access::Needs(Role::Admin),
            actions::canary,
        )
        .post(
            "/ui/serving/{model}/promote",
            Access::Needs(Role::Admin),
            actions::promote,
        )
        .post(
            "/ui/serving/{model}/rollback",
            Access::Needs(Role::Admin),
            actions::rollback,
        )
}

/// The module's templates, by the names the handlers render them under.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    (
        "serving/index.html",
        include_str!("../templates/serving/index.html"),
    ),
    (
        "serving/route.html",
        include_str!("../templates/serving/route.html"),
    ),
    (
        "serving/panel.html",
        include_str!("../templates/serving/panel.html"),
    ),
    (
        "serving/card.html",
        include_str!("../templates/serving/card.html"),
    ),
    (
        "serving/scaling.html",
        include_str!("../templates/serving/scaling.html"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_at_start_and_named_when_refused() {
        let config = ServingConfig {
            routers: vec!["http://127.0.0.1:8001/".into(), "https://r.example".into()],
            autoscalers: vec!["http://127.0.0.1:9102".into()],
            router_token: None,
        };
        let serving = Serving::new(config).unwrap();
        assert_eq!(
            serving.router_urls(),
            vec!["http://127.0.0.1:8001", "https://r.example"]
        );
        assert_eq!(serving.route_count(), Some(0));
        for bad in ["127.0.0.1:8001", "ftp://x", "http://", "http://a b"] {
            let err = Serving::new(ServingConfig {
                routers: vec![bad.into()],
                ..ServingConfig::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
        assert_eq!(Serving::none().route_count(), None);
        let many = ServingConfig {
            autoscalers: vec!["http://a".into(); MAX_WATCHED + 1],
            ..ServingConfig::default()
        };
        assert!(matches!(
            Serving::new(many),
            Err(ServingError::TooMany { .. })
        ));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let serving = Serving::new(ServingConfig {
            routers: vec!["http://127.0.0.1:8001".into()],
            router_token: Some(AdminToken::new("s3cret-value", "test").unwrap()),
            autoscalers: Vec::new(),
        })
        .unwrap();
        let shown = format!("{serving:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("8001"), "{shown}");
    }
}
