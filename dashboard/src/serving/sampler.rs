//! The background sampler: every [`SAMPLE_EVERY`] it asks each watched router for its routes
//! and each route's status, and each autoscaler for its `/metrics`, all at once and each call
//! under a deadline, then records what came back. A page only ever reads what was recorded.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weir_http::JsonCallError;

use super::history::{push_point, RoutePoint};
use super::metrics_text;
use super::status::{RouteStatus, RoutesList};
use super::{lock, RouteState, RouterState, Serving, MAX_ROUTES, SAMPLE_EVERY};

/// Each call of a poll: a router slower than this is shown as not answering.
const CALL_DEADLINE: Duration = Duration::from_millis(1_500);
/// A whole router's poll (the list, then every route's status at once).
const POLL_DEADLINE: Duration = Duration::from_secs(4);
/// A change a person asked for: the router may take a moment to persist and share it.
pub(super) const ACTION_DEADLINE: Duration = Duration::from_secs(10);
/// Characters of a router's error message shown on a page.
const MAX_MESSAGE: usize = 300;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The percent-encoded path segment for a model name.
pub(super) fn segment(model: &str) -> String {
    weir_http::percent_encode(model)
}

fn clipped(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Why a call to a router did not succeed, in words for the page, with the HTTP status to
/// answer with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallError {
    /// The router's status when it refused, `None` when it did not answer.
    pub status: Option<u16>,
    pub message: String,
}

impl Serving {
    /// Polls forever, every [`SAMPLE_EVERY`], until the last `Arc` of this `Serving` is dropped
    /// (the server that showed it stopped) or the returned task is aborted. Watching nothing,
    /// it returns at once.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let watching = self.is_watching();
        tokio::spawn(async move {
            if !watching {
                return;
            }
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(serving) = weak.upgrade() else {
                    return;
                };
                serving.sample_once().await;
            }
        })
    }

    /// One poll of everything watched, at once; returns when every call answered or ran out of
    /// time. The tests call it to see a change without waiting for the clock.
    pub async fn sample_once(self: &Arc<Self>) {
        let mut polls = tokio::task::JoinSet::new();
        for index in 0..self.routers.len() {
            let serving = self.clone();
            polls.spawn(async move { serving.poll_router(index).await });
        }
        for index in 0..self.autoscalers.len() {
            let serving = self.clone();
            polls.spawn(async move { serving.poll_autoscaler(index).await });
        }
        while polls.join_next().await.is_some() {}
    }

    /// One call to router `base`'s admin API (`/admin/v1/{path}`), with the token.
    pub(super) async fn call_router(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        deadline: Duration,
    ) -> Result<Value, CallError> {
        let url = format!("{base}/admin/v1/{path}");
        let bearer = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {}", t.secret()));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.http
            .call_json(method, &url, &headers, body, deadline)
            .await
            .map_err(|err| match err {
                JsonCallError::Unreachable(reason) => CallError {
                    status: None,
                    message: clipped(format!("cannot reach the router at {base}: {reason}")),
                },
                JsonCallError::Refused(refusal) => CallError {
                    status: Some(refusal.status),
                    message: clipped(format!(
                        "the router at {base} refused ({}): {}",
                        refusal.status,
                        refusal.field_or_text("error").trim()
                    )),
                },
            })
    }

    async fn get_router<T: DeserializeOwned>(&self, base: &str, path: &str) -> Result<T, String> {
        let value = self
            .call_router(base, "GET", path, None, CALL_DEADLINE)
            .await
            .map_err(|e| e.message)?;
        serde_json::from_value(value)
            .map_err(|e| format!("the router at {base} answered {path} with something else: {e}"))
    }

    /// The routes of router `base` and each one's status (or why it is missing).
    async fn fetch_router(
        self: &Arc<Self>,
        base: &str,
    ) -> Result<Vec<(String, Result<RouteStatus, String>)>, String> {
        let list: RoutesList = self.get_router(base, "routes").await?;
        let mut calls = tokio::task::JoinSet::new();
        for (order, route) in list.routes.into_iter().take(MAX_ROUTES).enumerate() {
            let (serving, base) = (self.clone(), base.to_owned());
            calls.spawn(async move {
                let path = format!("routes/{}", segment(&route.model));
                let status = serving
                    .get_router::<RouteStatus>(&base, &path)
                    .await
                    .map(RouteStatus::bounded);
                (order, route.model, status)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = calls.join_next().await {
            if let Ok(answer) = joined {
                answers.push(answer);
            }
        }
        answers.sort_by_key(|(order, _, _)| *order);
        Ok(answers.into_iter().map(|(_, m, s)| (m, s)).collect())
    }

    async fn poll_router(self: &Arc<Self>, index: usize) {
        let Some(base) = self.routers.get(index).map(|r| r.url.clone()) else {
            return;
        };
        let fetched = tokio::time::timeout(POLL_DEADLINE, self.fetch_router(&base))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the router at {base} did not answer within {} s",
                    POLL_DEADLINE.as_secs()
                ))
            });
        let at_ms = now_ms();
        let mut state = lock(&self.routers[index].state);
        state.polled_at_ms = Some(at_ms);
        match fetched {
            Ok(routes) => {
                state.error = None;
                apply(&mut state, routes, at_ms);
            }
            Err(message) => state.error = Some(message),
        }
    }

    /// Records a route's status the router sent back (after a change): the page that follows
    /// shows it at once rather than at the next poll.
    pub(super) fn record_status(&self, index: usize, status: RouteStatus) {
        let Some(router) = self.routers.get(index) else {
            return;
        };
        let at_ms = now_ms();
        let mut state = lock(&router.state);
        if !state.routes.contains_key(&status.model) && state.routes.len() >= MAX_ROUTES {
            return;
        }
        let route = state.routes.entry(status.model.clone()).or_default();
        record_route(route, status, at_ms);
    }

    async fn poll_autoscaler(self: &Arc<Self>, index: usize) {
        let Some(base) = self.autoscalers.get(index).map(|a| a.url.clone()) else {
            return;
        };
        let url = if base.ends_with("/metrics") {
            base.clone()
        } else {
            format!("{base}/metrics")
        };
        let answer = self
            .http
            .send("GET", &url, &[], Bytes::new(), CALL_DEADLINE)
            .await;
        let at_ms = now_ms();
        let mut state = lock(&self.autoscalers[index].state);
        state.polled_at_ms = Some(at_ms);
        let text = match answer {
            Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
            Ok((status, _)) => {
                state.error = Some(format!("the autoscaler at {url} answered {status}"));
                return;
            }
            Err(reason) => {
                state.error = Some(clipped(format!(
                    "cannot reach the autoscaler at {url}: {reason}"
                )));
                return;
            }
        };
        state.error = None;
        let samples = metrics_text::parse(&text);
        state.targets.retain(|name, _| samples.contains_key(name));
        for (name, sample) in samples {
            state.targets.entry(name).or_default().record(sample, at_ms);
        }
    }
}

fn record_route(route: &mut RouteState, status: RouteStatus, at_ms: u64) {
    push_point(
        &mut route.history,
        RoutePoint::of(&status, at_ms),
        at_ms,
        |p| p.at_ms,
    );
    route.status = status;
    route.error = None;
}

/// The routes a successful poll listed: gone ones are dropped, each listed one records its new
/// status or why it has none (keeping the last one seen).
fn apply(state: &mut RouterState, routes: Vec<(String, Result<RouteStatus, String>)>, at_ms: u64) {
    state
        .routes
        .retain(|model, _| routes.iter().any(|(listed, _)| listed == model));
    for (model, status) in routes {
        let route = state.routes.entry(model.clone()).or_default();
        match status {
            Ok(mut status) => {
                status.model = model;
                record_route(route, status, at_ms);
            }
            Err(message) => {
                if route.status.model.is_empty() {
                    route.status.model = model;
                }
                route.error = Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::ServingConfig;

    fn status(model: &str, canary: f64) -> RouteStatus {
        serde_json::from_value(serde_json::json!({
            "model": model,
            "backends": [
                {"version": "stable", "role": "stable", "weight": 100.0 - canary},
                {"version": "canary", "role": "canary", "weight": canary},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn a_poll_keeps_listed_routes_and_the_last_status_of_one_that_failed() {
        let mut state = RouterState::default();
        apply(
            &mut state,
            vec![
                ("iris".into(), Ok(status("iris", 10.0))),
                ("wine".into(), Ok(status("wine", 0.0))),
            ],
            1_000,
        );
        apply(
            &mut state,
            vec![("iris".into(), Err("no answer".into()))],
            3_000,
        );
        assert_eq!(state.routes.keys().collect::<Vec<_>>(), vec!["iris"]);
        let iris = &state.routes["iris"];
        assert_eq!(iris.error.as_deref(), Some("no answer"));
        assert_eq!(iris.status.backends[1].weight, 10.0, "last status kept");
        assert_eq!(iris.history.len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_router_is_recorded_as_such_within_the_deadline() {
        let serving = Arc::new(
            Serving::new(ServingConfig {
                // Nobody listens on the discard port.
                routers: vec!["http://127.0.0.1:9".into()],
                autoscalers: vec!["http://127.0.0.1:9".into()],
                router_token: None,
            })
            .unwrap(),
        );
        serving.sample_once().await;
        let router = serving.router_state(0).unwrap();
        assert!(router.polled_at_ms.is_some());
        let error = router.error.unwrap();
        assert!(
            error.contains("cannot reach the router at http://127.0.0.1:9"),
            "{error}"
        );
        let autoscaler = serving.autoscaler_state(0).unwrap();
        let error = autoscaler.error.unwrap();
        assert!(error.contains("http://127.0.0.1:9/metrics"), "{error}");
    }

    #[test]
    fn long_messages_are_clipped() {
        let text = clipped("x".repeat(MAX_MESSAGE * 3));
        assert!(text.len() <= MAX_MESSAGE + '…'.len_utf8());
    }
}
