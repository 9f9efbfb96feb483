//! The rooms of the house and who may import whom (docs/architecture.md), read from
//! `cargo metadata`: a rule broken here is an import that crept in, not a style question.
//!
//! Only normal dependencies count, followed through our crates (what a crate compiles in); a
//! dev-dependency (a test talking to a real registry) is allowed. Each failure names the chain
//! of crates that breaks the rule.

#![allow(clippy::unwrap_used)] // a test that cannot read the metadata should fail loudly

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The MLflow stores and the server that puts them behind one port.
const STORES: &[&str] = &["weir-registry", "weir-tracking", "weir-coordination"];

/// The crates that may compile the stores in: the binary (which starts `weir registry`) and the
/// server crate that wires both stores behind one access layer.
const STORE_OWNERS: &[&str] = &["weir", "weir-mlflow-server", "weir-dashboard"];

/// Each room's package and folder (issue 18's layout).
const ROOMS: &[(&str, &str)] = &[
    ("weir-sql", "sql"),
    ("weir-http", "http"),
    ("weir-models", "models"),
    ("weir-mlflow-wire", "mlflow/wire"),
    ("weir-registry", "mlflow/registry"),
    ("weir-tracking", "mlflow/tracking"),
    ("weir-mlflow-client", "mlflow/client"),
    ("weir-mlflow-server", "mlflow/server"),
    ("weir-runtime", "runtime"),
    ("weir-router", "router"),
    ("weir-autoscaler", "autoscaler"),
    ("weir-training", "training"),
    ("weir-coordination", "coordination"),
    ("weir-dashboard", "dashboard"),
];

/// The workspace's graph: each member's folder, and each member's normal dependencies (by
/// package name; ours and others').
struct Graph {
    members: BTreeMap<String, String>,
    normal: BTreeMap<String, BTreeSet<String>>,
}

fn metadata() -> &'static Value {
    static METADATA: OnceLock<Value> = OnceLock::new();
    METADATA.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    })
}

fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(|| read_graph(metadata()))
}

/// The workspace's own manifests are enough: every rule is about what our crates declare, and
/// a dependency outside the workspace is a leaf here (axum is forbidden to the client whether it
/// declares it or reaches it through one of our crates). Optional and platform-specific
/// dependencies count, so a rule cannot be dodged behind a feature.
fn read_graph(metadata: &Value) -> Graph {
    let root = metadata["workspace_root"].as_str().unwrap();
    let mut members = BTreeMap::new();
    let mut normal: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let manifest = package["manifest_path"].as_str().unwrap();
        let folder = manifest
            .strip_prefix(root)
            .unwrap_or(manifest)
            .trim_start_matches('/')
            .trim_end_matches("Cargo.toml")
            .trim_end_matches('/');
        members.insert(name.clone(), folder.to_owned());
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| dep["kind"].is_null())
            .map(|dep| dep["name"].as_str().unwrap().to_owned())
            .collect();
        normal.insert(name, deps);
    }
    Graph { members, normal }
}

impl Graph {
    /// The chain of normal dependencies from `from` to `to` (`from → … → to`), if any.
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            for next in self.normal.get(at).into_iter().flatten() {
                if next == from || came_from.contains_key(next.as_str()) {
                    continue;
                }
                came_from.insert(next, at);
                if next == to {
                    let mut chain = vec![to.to_owned()];
                    let mut step = to;
                    while step != from {
                        step = came_from[step];
                        chain.push(step.to_owned());
                    }
                    chain.reverse();
                    return Some(chain);
                }
                queue.push_back(next);
            }
        }
        None
    }

    /// Every chain by which a crate in `crates` reaches one in `forbidden`.
    fn violations<'a>(
        &self,
        crates: impl IntoIterator<Item = &'a str>,
        forbidden: &[&str],
    ) -> Vec<String> {
        let mut found = Vec::new();
        for from in crates {
            for to in forbidden {
                if let Some(chain) = self.path(from, to) {
                    found.push(chain.join(" → "));
                }
            }
        }
        found
    }

    fn is_member(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }
}

#[test]
fn every_room_is_a_workspace_crate_in_its_folder() {
    let graph = graph();
    let wrong: Vec<String> = ROOMS
        .iter()
        .filter(|(name, folder)| graph.members.get(*name).map(String::as_str) != Some(*folder))
        .map(|(name, folder)| {
            format!(
                "{name} should be at {folder}/, is {}",
                graph
                    .members
                    .get(*name)
                    .map_or("not a workspace member".to_owned(), |f| format!("at {f}/"))
            )
        })
        .collect();
    assert!(wrong.is_empty(), "the layout differs: {wrong:#?}");
}

#[test]
fn the_leaves_import_no_room() {
    let graph = graph();
    let rooms: Vec<&str> = graph.members.keys().map(String::as_str).collect();
    let found = graph.violations(["weir-sql", "weir-http"], &rooms);
    assert!(
        found.is_empty(),
        "weir-sql and weir-http know nothing of models or protocols: {found:#?}"
    );
}

#[test]
fn the_autoscaler_reaches_the_router_over_http_only() {
    let found = graph().violations(["weir-autoscaler"], &["weir-router"]);
    assert!(
        found.is_empty(),
        "weir-autoscaler must not depend on weir-router (it talks to the router's admin API \
         through weir-http's clients): {found:#?}"
    );
}

#[test]
fn only_the_binary_and_the_mlflow_server_compile_the_stores_in() {
    let graph = graph();
    let others = graph
        .members
        .keys()
        .map(String::as_str)
        .filter(|name| !STORE_OWNERS.contains(name));
    let found = graph.violations(others, STORES);
    assert!(
        found.is_empty(),
        "only {STORE_OWNERS:?} may depend on {STORES:?}; clients use weir-mlflow-client: \
         {found:#?}"
    );
}

#[test]
fn routers_share_their_state_over_http_only() {
    let found = graph().violations(["weir-router"], &["weir-coordination", "weir-sql"]);
    assert!(
        found.is_empty(),
        "weir-router reaches the shared state through the registry's HTTP API, never its \
         database: {found:#?}"
    );
}

#[test]
fn the_dashboard_watches_serving_over_http_only() {
    let found = graph().violations(
        ["weir-dashboard"],
        &[
            "weir-router",
            "weir-autoscaler",
            "weir-runtime",
            "weir-mlflow-server",
        ],
    );
    assert!(
        found.is_empty(),
        "weir-dashboard reads routers and autoscalers through their HTTP APIs and is mounted by \
         the MLflow server, never the other way round: {found:#?}"
    );
}

#[test]
fn training_uses_the_mlflow_client_not_the_stores() {
    let found = graph().violations(["weir-training"], STORES);
    assert!(
        found.is_empty(),
        "weir-training must reach the registry and tracking through weir-mlflow-client: \
         {found:#?}"
    );
}

#[test]
fn the_mlflow_client_is_http_only() {
    let graph = graph();
    assert!(
        graph.is_member("weir-mlflow-client"),
        "weir-mlflow-client is not a workspace member"
    );
    let forbidden = [
        "axum",
        "weir-registry",
        "weir-tracking",
        "weir-mlflow-server",
        "weir-sql",
    ];
    let found = graph.violations(["weir-mlflow-client"], &forbidden);
    assert!(
        found.is_empty(),
        "weir-mlflow-client must compile no server and no store ({forbidden:?}): {found:#?}"
    );
}

/// The rules above pass vacuously if the graph were read wrong; these edges are known to exist.
#[test]
fn the_graph_is_read_with_its_known_edges() {
    let graph = graph();
    for (from, to) in [
        ("weir", "weir-router"),
        ("weir", "weir-registry"),
        ("weir", "weir-autoscaler"),
        ("weir-registry", "weir-sql"),
        ("weir-router", "axum"),
    ] {
        assert!(
            graph.path(from, to).is_some(),
            "{from} → {to} was not found in cargo metadata"
        );
    }
    // Followed transitively: the binary declares no hyper of its own, yet compiles it in.
    let chain = graph.path("weir", "hyper").unwrap();
    assert!(chain.len() >= 3, "{chain:?}");
    assert!(graph.is_member("weir") && !graph.is_member("axum"));
}

/// A dependency a member declares only under `[dev-dependencies]` is not among its normal
/// ones (if this fails, the `kind` filter is wrong, and every rule above with it).
#[test]
fn dev_dependencies_do_not_count() {
    let graph = graph();
    let mut checked = 0;
    for package in metadata()["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !graph.is_member(name) {
            continue;
        }
        let declared = package["dependencies"].as_array().unwrap();
        let kinds_of = |dep: &str| -> Vec<&Value> {
            declared
                .iter()
                .filter(|d| d["name"] == dep)
                .map(|d| &d["kind"])
                .collect()
        };
        for dep in declared.iter().filter(|d| d["kind"] == "dev") {
            let dep = dep["name"].as_str().unwrap();
            if kinds_of(dep).iter().all(|kind| *kind == "dev") {
                assert!(
                    !graph.normal[name].contains(dep),
                    "{name} declares {dep} for its tests only, yet it was read as a normal dependency"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no member has a dev-only dependency to check");
}
