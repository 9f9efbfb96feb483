//! What the serving templates show, made from what the sampler recorded: each version's weight,
//! live split, error rate and p99, the rollout's steps, the events newest first, the charts
//! (SVG made here by [`crate::chart`]) and the autoscaler targets that belong to a route.

use std::collections::VecDeque;

use serde::Serialize;

use super::history::{RoutePoint, TargetHistory};
use super::status::{Backend, Event, RouteStatus};
use super::{AutoscalerState, RouteState, RouterState, Serving};
use crate::chart::{self, Chart, Series};

/// Decisions listed on a route's page.
const DECISIONS_SHOWN: usize = 20;

/// The page path of a route (the model name percent-encoded), with the router it is on.
pub(crate) fn route_path(model: &str, router: usize) -> String {
    format!(
        "/ui/serving/{}?router={router}",
        weir_http::percent_encode(model)
    )
}

/// The base path of a route's pages and forms (no query).
fn route_base(model: &str) -> String {
    format!("/ui/serving/{}", weir_http::percent_encode(model))
}

#[derive(Debug, Serialize)]
pub(crate) struct VersionView {
    pub version: String,
    pub registry_version: Option<String>,
    pub role: String,
    pub weight: f64,
    /// This version's share of the last minute's requests, in percent; `None` without traffic.
    pub share: Option<f64>,
    pub requests_per_second: f64,
    pub requests: f64,
    /// Percent.
    pub error_percent: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub held: f64,
    pub replicas_available: usize,
    pub replicas: usize,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EndpointView {
    pub url: String,
    pub available: bool,
    pub inflight: f64,
}

fn versions(status: &RouteStatus) -> Vec<VersionView> {
    let total: f64 = status.backends.iter().map(|b| b.last_minute.requests).sum();
    status
        .backends
        .iter()
        .map(|b: &Backend| VersionView {
            version: b.version.clone(),
            registry_version: b.registry_version.clone(),
            role: b.role.clone(),
            weight: b.weight,
            share: (total > 0.0).then(|| b.last_minute.requests / total * 100.0),
            requests_per_second: b.last_minute.requests_per_second,
            requests: b.last_minute.requests,
            error_percent: b.last_minute.error_rate * 100.0,
            p50_ms: b.last_minute.p50_ms,
            p99_ms: b.last_minute.p99_ms,
            held: b.held,
            replicas_available: b.endpoints.iter().filter(|e| e.available).count(),
            replicas: b.endpoints.len(),
            endpoints: b
                .endpoints
                .iter()
                .map(|e| EndpointView {
                    url: e.url.clone(),
                    available: e.available,
                    inflight: e.inflight,
                })
                .collect(),
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub(crate) struct RolloutView {
    pub phase: String,
    pub running: bool,
    /// 1-based, for people.
    pub step: usize,
    pub steps: Vec<StepView>,
    pub failures: f64,
    pub last_check: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StepView {
    pub percent: f64,
    /// done, current or next.
    pub state: &'static str,
}

fn rollout(status: &RouteStatus) -> Option<RolloutView> {
    let rollout = status.rollout.as_ref()?;
    let progress = &rollout.progress;
    let running = progress.phase == "running";
    let steps = rollout
        .plan
        .steps
        .iter()
        .enumerate()
        .map(|(index, percent)| StepView {
            percent: *percent,
            state: match index.cmp(&progress.step) {
                std::cmp::Ordering::Less => "done",
                std::cmp::Ordering::Equal if running => "current",
                std::cmp::Ordering::Equal if progress.phase == "promoted" => "done",
                _ => "next",
            },
        })
        .collect();
    Some(RolloutView {
        phase: progress.phase.replace('_', " "),
        running,
        step: progress.step + 1,
        steps,
        failures: progress.failures,
        last_check: progress.last_check.clone(),
    })
}

/// One chart series per version, `pick` reading its value at each point.
fn per_version(
    history: &VecDeque<RoutePoint>,
    status: &RouteStatus,
    pick: impl Fn(&super::history::VersionPoint) -> f64,
) -> Vec<Series> {
    status
        .backends
        .iter()
        .map(|backend| Series {
            label: match &backend.registry_version {
                Some(number) => format!("{} (v{number})", backend.version),
                None => backend.version.clone(),
            },
            points: history
                .iter()
                .filter_map(|point| {
                    point
                        .versions
                        .iter()
                        .find(|v| v.version == backend.version)
                        .map(|v| (point.at_ms as f64, pick(v)))
                })
                .collect(),
        })
        .collect()
}

fn time_chart(title: &str, y_label: &str, series: Vec<Series>) -> String {
    // The SVG is built by our own code with every label escaped; the templates place it as is.
    chart::svg(&Chart {
        title: title.to_owned(),
        x_label: "time (UTC)".to_owned(),
        y_label: y_label.to_owned(),
        x_is_time: true,
        series,
    })
}

#[derive(Debug, Serialize)]
pub(crate) struct Charts {
    pub traffic: String,
    pub weights: String,
    pub errors: String,
    pub latency: String,
}

fn charts(route: &RouteState) -> Charts {
    let (history, status) = (&route.history, &route.status);
    Charts {
        traffic: time_chart(
            "Requests per second (last minute), by version",
            "requests/s",
            per_version(history, status, |v| v.requests_per_second),
        ),
        weights: time_chart(
            "Weights, by version",
            "percent",
            per_version(history, status, |v| v.weight),
        ),
        errors: time_chart(
            "Error rate (last minute), by version",
            "percent",
            per_version(history, status, |v| v.error_rate * 100.0),
        ),
        latency: time_chart(
            "p99 latency (last minute), by version",
            "ms",
            per_version(history, status, |v| v.p99_ms),
        ),
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct TargetView {
    pub name: String,
    pub autoscaler: String,
    pub desired: Option<f64>,
    pub observed: Option<f64>,
    pub panic: bool,
    pub scale_ups: f64,
    pub scale_downs: f64,
    /// Replicas the router lists for the version this target scales (`MODEL-ROLE`), if known.
    pub replicas: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DecisionView {
    pub target: String,
    pub at_ms: u64,
    pub from: f64,
    pub to: f64,
    pub direction: &'static str,
    pub panic: bool,
}

/// Whether autoscaler target `name` scales a version of `model`: `weir up` names its targets
/// `MODEL-ROLE` (iris-stable, iris-canary); a target named after the model alone counts too.
/// The role part has no `-`, so `iris-v2-stable` belongs to `iris-v2`, not to `iris`.
pub(crate) fn target_role<'a>(name: &'a str, model: &str) -> Option<&'a str> {
    if name == model {
        return Some("");
    }
    let role = name.strip_prefix(model)?.strip_prefix('-')?;
    (!role.is_empty() && !role.contains('-')).then_some(role)
}

fn target_view(
    name: &str,
    url: &str,
    target: &TargetHistory,
    status: Option<&RouteStatus>,
) -> TargetView {
    let last = target.last.clone().unwrap_or_default();
    let replicas = status.and_then(|status| {
        let role = target_role(name, &status.model)?;
        status
            .backends
            .iter()
            .find(|b| b.role == role || b.version == role)
            .map(|b| b.endpoints.len())
    });
    TargetView {
        name: name.to_owned(),
        autoscaler: url.to_owned(),
        desired: last.desired,
        observed: last.observed,
        panic: last.panic.unwrap_or(false),
        scale_ups: last.scale_ups,
        scale_downs: last.scale_downs,
        replicas,
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AutoscalerView {
    pub url: String,
    pub error: Option<String>,
    pub polled_at_ms: Option<u64>,
}

/// The autoscaler part of a page: the targets (of `status`'s model when given, else all), their
/// decisions newest first, and a chart of desired replicas.
#[derive(Debug, Serialize)]
pub(crate) struct Scaling {
    pub autoscalers: Vec<AutoscalerView>,
    pub targets: Vec<TargetView>,
    pub decisions: Vec<DecisionView>,
    pub chart: Option<String>,
}

fn scaling(serving: &Serving, status: Option<&RouteStatus>) -> Scaling {
    let states: Vec<(String, AutoscalerState)> = (0..serving.autoscalers.len())
        .filter_map(|i| {
            Some((
                serving.autoscalers[i].url.clone(),
                serving.autoscaler_state(i)?,
            ))
        })
        .collect();
    let mut targets = Vec::new();
    let mut decisions = Vec::new();
    let mut series = Vec::new();
    for (url, state) in &states {
        for (name, target) in &state.targets {
            if status.is_some_and(|s| target_role(name, &s.model).is_none()) {
                continue;
            }
            targets.push(target_view(name, url, target, status));
            decisions.extend(target.decisions.iter().map(|d| DecisionView {
                target: name.clone(),
                at_ms: d.at_ms,
                from: d.from,
                to: d.to,
                direction: if d.to > d.from { "up" } else { "down" },
                panic: d.panic,
            }));
            series.push(Series {
                label: format!("{name} desired"),
                points: target
                    .points
                    .iter()
                    .filter_map(|p| Some((p.at_ms as f64, p.desired?)))
                    .collect(),
            });
        }
    }
    decisions.sort_by_key(|d| std::cmp::Reverse(d.at_ms));
    decisions.truncate(DECISIONS_SHOWN);
    let chart = (!series.is_empty())
        .then(|| time_chart("Desired replicas, by autoscaler target", "replicas", series));
    Scaling {
        autoscalers: states
            .into_iter()
            .map(|(url, state)| AutoscalerView {
                url,
                error: state.error,
                polled_at_ms: state.polled_at_ms,
            })
            .collect(),
        targets,
        decisions,
        chart,
    }
}

/// A route's page and panel.
#[derive(Debug, Serialize)]
pub(crate) struct RouteView {
    pub model: String,
    pub router: usize,
    pub router_url: String,
    /// The page's own path (`/ui/serving/NAME?router=N`), the panel's, and the forms' base.
    pub path: String,
    pub panel_path: String,
    pub card_path: String,
    pub action_base: String,
    pub polled_at_ms: Option<u64>,
    /// Why the router (or this route's status) could not be read at the last poll.
    pub error: Option<String>,
    pub versions: Vec<VersionView>,
    pub has_canary: bool,
    pub canary_weight: f64,
    pub sticky_header: Option<String>,
    pub shadow_percent: Option<f64>,
    pub rollout: Option<RolloutView>,
    /// Newest first.
    pub events: Vec<Event>,
    pub charts: Charts,
    pub scaling: Scaling,
}

pub(crate) fn route_view(serving: &Serving, router: usize, model: &str) -> Option<RouteView> {
    let url = serving.routers.get(router)?.url.clone();
    let state: RouterState = serving.router_state(router)?;
    let route = state.routes.get(model)?;
    let status = &route.status;
    let base = route_base(model);
    Some(RouteView {
        model: model.to_owned(),
        router,
        router_url: url,
        path: route_path(model, router),
        panel_path: format!("{base}/panel?router={router}"),
        card_path: format!("{base}/panel?router={router}&view=card"),
        action_base: base,
        polled_at_ms: state.polled_at_ms,
        error: state.error.clone().or_else(|| route.error.clone()),
        versions: versions(status),
        has_canary: status.canary().is_some(),
        canary_weight: status.canary().map_or(0.0, |b| b.weight),
        sticky_header: status.sticky_header.clone(),
        shadow_percent: status.shadow.as_ref().map(|s| s.percent),
        rollout: rollout(status),
        events: status.events.iter().rev().cloned().collect(),
        charts: charts(route),
        scaling: scaling(serving, Some(status)),
    })
}

/// One watched router on the overview.
#[derive(Debug, Serialize)]
pub(crate) struct RouterView {
    pub index: usize,
    pub url: String,
    pub polled_at_ms: Option<u64>,
    pub error: Option<String>,
    pub routes: Vec<RouteView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub routers: Vec<RouterView>,
    pub scaling: Scaling,
    pub watching: bool,
}

pub(crate) fn overview(serving: &Serving) -> Overview {
    let routers = (0..serving.routers.len())
        .filter_map(|index| {
            let state = serving.router_state(index)?;
            Some(RouterView {
                index,
                url: serving.routers[index].url.clone(),
                polled_at_ms: state.polled_at_ms,
                error: state.error.clone(),
                routes: state
                    .routes
                    .keys()
                    .filter_map(|model| route_view(serving, index, model))
                    .collect(),
            })
        })
        .collect();
    Overview {
        routers,
        scaling: scaling(serving, None),
        watching: serving.is_watching(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_belong_to_the_model_they_are_named_after() {
        assert_eq!(target_role("iris-stable", "iris"), Some("stable"));
        assert_eq!(target_role("iris", "iris"), Some(""));
        assert_eq!(target_role("iris-v2-stable", "iris"), None);
        assert_eq!(target_role("iris-v2-stable", "iris-v2"), Some("stable"));
        assert_eq!(target_role("irises-stable", "iris"), None);
        assert_eq!(target_role("iris-", "iris"), None);
    }

    #[test]
    fn the_live_split_is_each_versions_share_of_requests() {
        let status: RouteStatus = serde_json::from_value(serde_json::json!({
            "model": "iris",
            "backends": [
                {"version": "stable", "role": "stable", "weight": 90,
                 "last_minute": {"requests": 30, "error_rate": 0.1}},
                {"version": "canary", "role": "canary", "weight": 10,
                 "last_minute": {"requests": 10}},
            ],
        }))
        .unwrap();
        let shown = versions(&status);
        assert_eq!(shown[0].share, Some(75.0));
        assert_eq!(shown[1].share, Some(25.0));
        assert!((shown[0].error_percent - 10.0).abs() < 1e-9);
        let idle: RouteStatus = serde_json::from_value(serde_json::json!({
            "backends": [{"version": "stable", "weight": 100}],
        }))
        .unwrap();
        assert_eq!(versions(&idle)[0].share, None, "no traffic, no split");
    }

    #[test]
    fn rollout_steps_are_done_current_or_next() {
        let status: RouteStatus = serde_json::from_value(serde_json::json!({
            "rollout": {"plan": {"steps": [25, 50, 100]},
                        "progress": {"phase": "running", "step": 1, "failures": 1}},
        }))
        .unwrap();
        let view = rollout(&status).unwrap();
        let states: Vec<&str> = view.steps.iter().map(|s| s.state).collect();
        assert_eq!(states, vec!["done", "current", "next"]);
        assert_eq!(view.step, 2);
        assert!(view.running);
    }

    #[test]
    fn route_paths_encode_the_model_name() {
        assert_eq!(route_path("iris", 0), "/ui/serving/iris?router=0");
        assert_eq!(route_path("a b/c", 2), "/ui/serving/a%20b%2Fc?router=2");
    }
}
