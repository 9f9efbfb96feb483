//! Which route template of the endpoint table a request is for: the `endpoint` label, so that
//! `/api/2.0/mlflow-artifacts/artifacts/a/b.bin` is counted as
//! `/api/2.0/mlflow-artifacts/artifacts/{*path}` and a client cannot mint series with paths.

use axum::http::Method;
use weir_mlflow_wire::access::pattern_matches;
use weir_mlflow_wire::Endpoint;

/// The label of requests no route matches (unknown paths, probes for files).
pub(super) const UNMATCHED: &str = "unmatched";

/// The route templates of a server, looked up the way axum matches them.
#[derive(Debug, Default)]
pub(super) struct Templates {
    endpoints: Vec<Endpoint>,
}

impl Templates {
    pub(super) fn new(endpoints: &[Endpoint]) -> Templates {
        Templates {
            endpoints: endpoints.to_vec(),
        }
    }

    /// The template `path` matches: a static route before a parameterised one (as axum
    /// prefers them), one declared for `method` before one of another method (whose answer
    /// is a 405, still counted under its route). `None` when no route matches.
    pub(super) fn find(&self, method: &Method, path: &str) -> Option<&str> {
        let exact = |e: &&Endpoint| e.path == path;
        let pattern = |e: &&Endpoint| pattern_matches(&e.path, path);
        let same = || self.endpoints.iter().filter(|e| e.method == method);
        let any = || self.endpoints.iter();
        any()
            .find(exact)
            .or_else(|| same().find(pattern))
            .or_else(|| any().find(pattern))
            .map(|e| e.path.as_str())
    }
}

/// A method as a label: the standard ones by name, anything else (a client may send any token)
/// as `other`.
pub(super) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_mlflow_wire::{Access, Role};

    fn endpoint(method: Method, path: &str) -> Endpoint {
        Endpoint {
            method,
            path: path.to_owned(),
            access: Access::Needs(Role::Reader),
        }
    }

    #[test]
    fn requests_are_labelled_with_their_template_never_their_path() {
        let templates = Templates::new(&[
            endpoint(Method::GET, "/api/2.0/mlflow-artifacts/artifacts"),
            endpoint(Method::GET, "/api/2.0/mlflow-artifacts/artifacts/{*path}"),
            endpoint(Method::PUT, "/api/2.0/mlflow-artifacts/artifacts/{*path}"),
            endpoint(Method::GET, "/api/2.0/mlflow/runs/{id}"),
            endpoint(Method::GET, "/api/2.0/mlflow/runs/search"),
            endpoint(Method::GET, "/metrics"),
        ]);
        let find = |method: Method, path: &str| templates.find(&method, path);
        assert_eq!(
            find(Method::PUT, "/api/2.0/mlflow-artifacts/artifacts/a/b.bin"),
            Some("/api/2.0/mlflow-artifacts/artifacts/{*path}")
        );
        assert_eq!(
            find(Method::GET, "/api/2.0/mlflow-artifacts/artifacts"),
            Some("/api/2.0/mlflow-artifacts/artifacts")
        );
        assert_eq!(
            find(Method::GET, "/api/2.0/mlflow/runs/search"),
            Some("/api/2.0/mlflow/runs/search"),
            "a static route wins over a parameter"
        );
        assert_eq!(
            find(Method::GET, "/api/2.0/mlflow/runs/r-1"),
            Some("/api/2.0/mlflow/runs/{id}")
        );
        assert_eq!(
            find(Method::DELETE, "/metrics"),
            Some("/metrics"),
            "a wrong method still counts under its route"
        );
        for unknown in [
            "/api/2.0/mlflow/runs/",
            "/api/2.0/mlflow/runs/r-1/x",
            "/api/2.0/mlflow-artifacts/artifacts/",
            "/etc/passwd",
            "",
        ] {
            assert_eq!(find(Method::GET, unknown), None, "{unknown}");
        }
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let custom = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
