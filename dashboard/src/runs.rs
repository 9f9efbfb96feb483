//! The experiments and runs pages: experiments (searched by name), an experiment's runs
//! (MLflow's filter language and `order_by`), a run's params, tags, metric charts, artifacts and
//! logged models, an artifact browser with previews, and the comparison of 2–10 runs.
//!
//! Everything is read through the same tracking store and artifact store as the MLflow API
//! (`weir_tracking::TrackingStore`, `weir_registry::artifacts::ArtifactStore`), so a page can
//! show nothing the API would not: ids and paths in URLs are user input and every refusal the
//! store gives (unknown run, bad filter, `..` in a path) becomes a page with its status.
//!
//! `experiments` lists and searches, `run` shows one run, `artifacts` browses, previews and
//! serves artifact bytes, `compare` overlays runs; `query` reads query strings and `history`
//! turns metric histories into charts.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use weir_mlflow_wire::request::blocking;
use weir_mlflow_wire::{Access, MlflowError, Role, Routes};
use weir_tracking::store::RunInfo;
use weir_tracking::{TrackingError, TrackingStore};

use crate::page::{error_page, Viewer};
use crate::{Dashboard, State};

mod artifacts;
mod compare;
mod experiments;
mod history;
mod query;
mod run;

/// The module's routes: every page only reads, so each needs a reader.
pub(crate) fn routes() -> Routes<State> {
    let read = Access::Needs(Role::Reader);
    Routes::new()
        .get("/ui/experiments", read, experiments::list)
        .get("/ui/experiments/{id}", read, experiments::runs)
        .get("/ui/experiments/{id}/runs/{run_id}", read, run::page)
        .get("/ui/runs/{run_id}/artifacts", read, artifacts::browse)
        .get("/ui/runs/{run_id}/artifact", read, artifacts::preview)
        .get("/ui/runs/{run_id}/raw", read, artifacts::raw)
        .get("/ui/compare", read, compare::page)
}

/// The module's templates, by the names the handlers render them under.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    (
        "runs/macros.html",
        include_str!("../templates/runs/macros.html"),
    ),
    (
        "runs/experiments.html",
        include_str!("../templates/runs/experiments.html"),
    ),
    (
        "runs/experiment.html",
        include_str!("../templates/runs/experiment.html"),
    ),
    ("runs/run.html", include_str!("../templates/runs/run.html")),
    (
        "runs/artifacts.html",
        include_str!("../templates/runs/artifacts.html"),
    ),
    (
        "runs/artifact.html",
        include_str!("../templates/runs/artifact.html"),
    ),
    (
        "runs/compare.html",
        include_str!("../templates/runs/compare.html"),
    ),
];

/// Runs `work` on the tracking store off the async threads; a refusal becomes the page that
/// says so (404 for an unknown experiment or run, 400 for a filter the store cannot answer).
async fn tracking<T: Send + 'static>(
    dashboard: &State,
    viewer: &Viewer,
    work: impl FnOnce(&TrackingStore) -> Result<T, TrackingError> + Send + 'static,
) -> Result<T, Response> {
    blocking(dashboard, move |d: &Dashboard| work(&d.tracking.store))
        .await
        .map_err(|err| failure(viewer, err))
}

/// The page for a failed store call. A client's mistake is named as the store named it; an
/// internal failure is logged and not shown (it may name files or hosts).
fn failure(viewer: &Viewer, err: MlflowError) -> Response {
    let status = err.code.status();
    if status.is_server_error() {
        tracing::error!(error = %err.message, "a dashboard page's store call failed");
        return error_page(
            viewer,
            status,
            "the store could not answer this page; the registry's log says why",
        );
    }
    error_page(viewer, status, &err.message)
}

/// 404 for an id that cannot name anything (experiment ids are numbers).
fn not_found(viewer: &Viewer, what: &str) -> Response {
    error_page(viewer, StatusCode::NOT_FOUND, what)
}

/// 400 for a query string the page cannot use.
fn bad_request(viewer: &Viewer, message: &str) -> Response {
    error_page(viewer, StatusCode::BAD_REQUEST, message)
}

/// Where a run's artifacts are in this registry's artifact store: the path under the store
/// for an `mlflow-artifacts:/…` URI (what this server gives every run), `None` for a location
/// elsewhere (`s3://…`, `file:…`), which the dashboard cannot read.
fn artifact_root(artifact_uri: &str) -> Option<String> {
    let root = artifact_uri
        .strip_prefix("mlflow-artifacts:/")?
        .trim_matches('/');
    Some(root.to_owned())
}

/// A path below `root` in the store: `relative` with its slashes tidied (the store itself
/// refuses `..`, backslashes and NUL).
fn join(root: &str, relative: &str) -> String {
    let relative = relative.trim_matches('/');
    match (root.is_empty(), relative.is_empty()) {
        (_, true) => root.to_owned(),
        (true, false) => relative.to_owned(),
        (false, false) => format!("{root}/{relative}"),
    }
}

/// Percent-encodes a query value (paths, filters) for a link; `/` stays readable.
fn encode(text: &str) -> String {
    percent(text, b"-_.~/")
}

/// Percent-encodes one path segment (an id) for a link.
fn segment(text: &str) -> String {
    percent(text, b"-_.~")
}

fn percent(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn experiment_href(experiment_id: &str) -> String {
    format!("/ui/experiments/{}", segment(experiment_id))
}

/// A folder of a run's artifacts (`""`: the root).
fn browse_href(run_id: &str, path: &str) -> String {
    let base = format!("/ui/runs/{}/artifacts", segment(run_id));
    if path.is_empty() {
        base
    } else {
        format!("{base}?path={}", encode(path))
    }
}

fn preview_href(run_id: &str, path: &str) -> String {
    format!(
        "/ui/runs/{}/artifact?path={}",
        segment(run_id),
        encode(path)
    )
}

fn raw_href(run_id: &str, path: &str) -> String {
    format!("/ui/runs/{}/raw?path={}", segment(run_id), encode(path))
}

/// A run as the pages link to it.
#[derive(Serialize)]
struct RunLink {
    id: String,
    name: String,
    experiment_id: String,
    href: String,
    experiment_href: String,
    artifacts_href: String,
}

impl RunLink {
    fn of(info: &RunInfo) -> RunLink {
        RunLink {
            id: info.run_id.clone(),
            name: info.run_name.clone(),
            experiment_id: info.experiment_id.clone(),
            href: format!(
                "{}/runs/{}",
                experiment_href(&info.experiment_id),
                segment(&info.run_id)
            ),
            experiment_href: experiment_href(&info.experiment_id),
            artifacts_href: browse_href(&info.run_id, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_servers_artifact_uris_have_a_root() {
        assert_eq!(
            artifact_root("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            artifact_root("mlflow-artifacts:/1/abc/artifacts/").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(artifact_root("s3://bucket/1/abc"), None);
        assert_eq!(artifact_root("file:///tmp/mlruns/1"), None);
    }

    #[test]
    fn paths_join_under_the_root() {
        assert_eq!(join("1/abc/artifacts", ""), "1/abc/artifacts");
        assert_eq!(join("1/abc/artifacts", "/model/"), "1/abc/artifacts/model");
        assert_eq!(join("", "a/b"), "a/b");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("model/MLmodel"), "model/MLmodel");
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(browse_href("ab", ""), "/ui/runs/ab/artifacts");
        assert_eq!(
            browse_href("ab", "model dir/x"),
            "/ui/runs/ab/artifacts?path=model%20dir/x"
        );
    }
}
