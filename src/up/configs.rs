//! The router's `routes.toml` and the autoscaler's `autoscaler.toml` for a stack, built as the
//! crates' own config values and written with `toml`: names and paths are escaped by the
//! serialiser, and there is one schema per file (the crate's), not a second copy in a template.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use weir_autoscaler::config::{AutoscalerFile, Scaler, Signal, Target};
use weir_autoscaler::policy::PolicyConfig;
use weir_router::config::{BackendConfig, RouteConfig};
use weir_router::RoutesFile;

use super::StackFile;

/// The registry version numbers behind each model's roles, as resolved at start: the router
/// accepts them wherever it accepts `stable`/`canary` (`x-weir-version: 2`,
/// `/v2/models/iris/versions/2/infer`).
#[derive(Default)]
pub struct Resolved(pub BTreeMap<(String, &'static str), u64>);

impl Resolved {
    pub fn get(&self, model: &str, role: &'static str) -> Option<u64> {
        self.0.get(&(model.to_owned(), role)).copied()
    }
}

/// One route per model: the stable backend first and the canary, when there is one, second
/// (the order the canary API relies on). No endpoints: the autoscaler adds the replicas.
pub fn routes(stack: &StackFile, resolved: &Resolved) -> RoutesFile {
    let route = stack
        .model
        .iter()
        .map(|model| {
            let canary = model.canary.as_ref().map(|_| model.canary_percent.min(100));
            let stable_number = resolved.get(&model.name, "stable");
            // The router refuses two backends with one number; when both roles point at the
            // same version, the number pins the stable one.
            let canary_number = resolved
                .get(&model.name, "canary")
                .filter(|n| Some(*n) != stable_number);
            let backend = |role: &str, number: Option<u64>, weight: u32| BackendConfig {
                version: role.to_owned(),
                registry_version: number.map(|n| n.to_string()),
                endpoints: Vec::new(),
                weight,
            };
            let mut backends = vec![backend("stable", stable_number, 100 - canary.unwrap_or(0))];
            if let Some(percent) = canary {
                backends.push(backend("canary", canary_number, percent));
            }
            RouteConfig {
                model: model.name.clone(),
                sticky_header: None,
                backend: backends,
                shadow: None,
            }
        })
        .collect();
    RoutesFile {
        settings: Default::default(),
        route,
    }
}

/// One local target per model version, its replicas fetching that version from the registry;
/// `router` is the router's admin API, where the autoscaler adds and removes replicas. With
/// `grpc` each replica also serves gRPC on a port of its own, announced with it.
pub fn autoscaler(
    stack: &StackFile,
    dir: &Path,
    registry: &str,
    router: &str,
    grpc: bool,
) -> AutoscalerFile {
    let mut target = Vec::new();
    for model in &stack.model {
        let roles = std::iter::once(("stable", &model.stable))
            .chain(model.canary.iter().map(|c| ("canary", c)));
        for (role, uri) in roles {
            target.push(Target {
                name: format!("{}-{role}", model.name),
                scaler: Scaler::Local {
                    model: model.name.clone(),
                    version: role.to_owned(),
                    repository: dir.join("replicas").join(format!("{}-{role}", model.name)),
                    router: router.to_owned(),
                    router_token: None,
                    router_token_file: None,
                    args: vec![
                        "--registry".to_owned(),
                        registry.to_owned(),
                        "--model".to_owned(),
                        format!("{}={uri}", model.name),
                        "--registry-poll-interval".to_owned(),
                        "5".to_owned(),
                    ],
                    fresh_repository: true,
                    grpc,
                },
                signal: Signal::Scrape,
                policy: PolicyConfig {
                    metric: "concurrency".to_owned(),
                    target: f64::from(model.target_concurrency),
                    min_replicas: model.min_replicas.max(1),
                    max_replicas: model.max_replicas.max(1),
                    ..PolicyConfig::default()
                },
            });
        }
    }
    AutoscalerFile {
        settings: Default::default(),
        target,
    }
}

/// `value` as TOML, under a line saying who wrote it.
pub fn to_toml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let text = toml::to_string(value).context("cannot write the configuration as TOML")?;
    Ok(format!(
        "# Written by `weir up` from the stack description, and rewritten on each start.\n{text}"
    ))
}

/// Writes `value` as TOML to `path`.
pub fn write<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    std::fs::write(path, to_toml(value)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::up::DEMO_STACK;

    fn demo() -> StackFile {
        toml::from_str(DEMO_STACK).unwrap()
    }

    fn routes_text(resolved: &Resolved) -> String {
        to_toml(&routes(&demo(), resolved)).unwrap()
    }

    #[test]
    fn the_demo_stack_renders_a_canary_route_and_two_targets() {
        let read = weir_router::RoutesFile::parse(&routes_text(&Resolved::default())).unwrap();
        let weights: Vec<u32> = read.route[0].backend.iter().map(|b| b.weight).collect();
        assert_eq!(weights, [90, 10]);
        let text = routes_text(&Resolved::default());
        assert!(
            !text.contains("registry_version"),
            "unknown numbers are left out: {text}"
        );
        let mut resolved = Resolved::default();
        resolved.0.insert(("iris".to_owned(), "stable"), 1);
        resolved.0.insert(("iris".to_owned(), "canary"), 2);
        let read = weir_router::RoutesFile::parse(&routes_text(&resolved)).unwrap();
        let numbers: Vec<Option<&str>> = read.route[0]
            .backend
            .iter()
            .map(|b| b.registry_version.as_deref())
            .collect();
        assert_eq!(numbers, [Some("1"), Some("2")]);
        // Both roles on one version: the number pins the stable backend only.
        resolved.0.insert(("iris".to_owned(), "canary"), 1);
        let read = weir_router::RoutesFile::parse(&routes_text(&resolved)).unwrap();
        assert_eq!(read.route[0].backend[1].registry_version, None);
        let scaler = autoscaler(
            &demo(),
            Path::new("/tmp/x"),
            "http://r:5000",
            "http://r:8001",
            false,
        );
        let file = AutoscalerFile::parse(&to_toml(&scaler).unwrap()).unwrap();
        assert_eq!(file.target.len(), 2);
        assert_eq!(file.target[1].name, "iris-canary");
        assert!(
            matches!(&file.target[0].scaler, Scaler::Local { router, grpc: false, .. } if router == "http://r:8001"),
            "the autoscaler talks to the router's admin API"
        );
        let with_grpc = autoscaler(
            &demo(),
            Path::new("/tmp/x"),
            "http://r",
            "http://r:8001",
            true,
        );
        let file = AutoscalerFile::parse(&to_toml(&with_grpc).unwrap()).unwrap();
        assert!(
            file.target
                .iter()
                .all(|t| matches!(t.scaler, Scaler::Local { grpc: true, .. })),
            "with a router gRPC port every replica serves gRPC"
        );
    }

    /// A stack whose names, URIs and folder need escaping in TOML (quotes, backslashes, a
    /// newline): the old `format!` templates wrote broken or different files for these.
    const AWKWARD: &str = r#"
        [[model]]
        name = "fraud\"v\"\\model"
        stable = "models:/fraud \"v\"/3"
        canary = "models:/fraud@can\nary"
        canary_percent = 25
        min_replicas = 2
        max_replicas = 7
        target_concurrency = 3
        [[model]]
        name = "iris"
        stable = "models:/iris@production"
    "#;

    #[test]
    fn what_up_writes_the_crates_read_back_as_the_same_values() {
        let stack: StackFile = toml::from_str(AWKWARD).unwrap();
        let mut resolved = Resolved::default();
        resolved
            .0
            .insert((stack.model[0].name.clone(), "stable"), 3);
        resolved
            .0
            .insert((stack.model[0].name.clone(), "canary"), 4);
        let written = routes(&stack, &resolved);
        let read = RoutesFile::parse(&to_toml(&written).unwrap()).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.route[0].model, "fraud\"v\"\\model");
        let weights: Vec<u32> = read.route[0].backend.iter().map(|b| b.weight).collect();
        assert_eq!(weights, [75, 25]);
        assert_eq!(read.route[1].backend.len(), 1, "no canary, one backend");
        assert_eq!(read.route[1].backend[0].weight, 100);

        let dir = Path::new("/tmp/a \"quoted\" folder\\x");
        let written = autoscaler(
            &stack,
            dir,
            "http://127.0.0.1:5000",
            "http://127.0.0.1:8001",
            true,
        );
        let read = AutoscalerFile::parse(&to_toml(&written).unwrap()).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.target.len(), 3);
        let Scaler::Local {
            repository, args, ..
        } = &read.target[1].scaler
        else {
            panic!("a local scaler");
        };
        assert_eq!(
            repository,
            &dir.join("replicas").join("fraud\"v\"\\model-canary")
        );
        assert!(args.contains(&"fraud\"v\"\\model=models:/fraud@can\nary".to_owned()));
        assert_eq!(read.target[1].policy.min_replicas, 2);
        assert_eq!(read.target[1].policy.max_replicas, 7);
        assert_eq!(read.target[1].policy.target, 3.0);
    }

    #[test]
    fn settings_that_are_not_the_defaults_are_written_and_read_back() {
        let mut routes = routes(&demo(), &Resolved::default());
        routes.settings.request_timeout = std::time::Duration::from_millis(2_500);
        routes.settings.hold_timeout = std::time::Duration::from_nanos(1_500);
        routes.settings.max_held = 3;
        let text = to_toml(&routes).unwrap();
        assert!(text.contains("request_timeout = \"2500ms\""), "{text}");
        assert_eq!(RoutesFile::parse(&text).unwrap(), routes);
        // Defaults are left out, and a file without them reads back the same.
        assert!(!to_toml(&routes_default()).unwrap().contains("[settings]"));

        let mut scaler = autoscaler(
            &demo(),
            Path::new("/tmp/x"),
            "http://r",
            "http://r:8001",
            false,
        );
        scaler.settings.sample = std::time::Duration::from_millis(250);
        scaler.target[0].policy.stable_window = std::time::Duration::from_secs(90);
        scaler.target[0].policy.scale_down_delay = std::time::Duration::from_millis(1_500);
        let text = to_toml(&scaler).unwrap();
        assert!(text.contains("stable_window = \"90s\""), "{text}");
        assert_eq!(AutoscalerFile::parse(&text).unwrap(), scaler);
    }

    fn routes_default() -> RoutesFile {
        routes(&demo(), &Resolved::default())
    }
}
