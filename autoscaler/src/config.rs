//! `autoscaler.toml`: what to scale, on which signal, with which policy.
//!
//! ```toml
//! [settings]                       # optional; defaults shown
//! sample = "1s"                    # how often the signal is read
//! tick = "2s"                      # how often a decision is made
//!
//! [[target]]
//! name = "iris-v2"
//! scaler = { kind = "local", model = "iris", version = "2", repository = "models/iris-v2", router = "http://127.0.0.1:8001", router_token_file = "/run/secrets/router-admin" }
//! signal = { kind = "scrape" }
//! policy = { metric = "concurrency", target = 10, min_replicas = 0, max_replicas = 20 }
//! ```

use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_http::admin_token::AdminToken;
use weir_http::duration;

use crate::policy::{one_of, PolicyConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid autoscaler file: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalerFile {
    #[serde(default, skip_serializing_if = "is_default")]
    pub settings: Settings,
    #[serde(default)]
    pub target: Vec<Target>,
}

/// How often the live loop reads signals and decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SettingsKeys")]
pub struct Settings {
    /// How often each signal is read.
    #[serde(serialize_with = "duration::serialize")]
    pub sample: Duration,
    /// How often a decision is made.
    #[serde(serialize_with = "duration::serialize")]
    pub tick: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sample: Duration::from_secs(1),
            tick: Duration::from_secs(2),
        }
    }
}

/// `[settings]` as written: `sample`/`tick` in weir's duration syntax, or the older
/// `sample_ms`/`tick_ms` (milliseconds), which keep working; both spellings of one is refused.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsKeys {
    #[serde(deserialize_with = "duration::deserialize_option")]
    sample: Option<Duration>,
    sample_ms: Option<u64>,
    #[serde(deserialize_with = "duration::deserialize_option")]
    tick: Option<Duration>,
    tick_ms: Option<u64>,
}

impl TryFrom<SettingsKeys> for Settings {
    type Error = String;

    fn try_from(keys: SettingsKeys) -> Result<Settings, String> {
        let default = Settings::default();
        Ok(Settings {
            sample: one_of(
                "settings.sample",
                keys.sample,
                "settings.sample_ms",
                keys.sample_ms.map(Duration::from_millis),
            )?
            .unwrap_or(default.sample),
            tick: one_of(
                "settings.tick",
                keys.tick,
                "settings.tick_ms",
                keys.tick_ms.map(Duration::from_millis),
            )?
            .unwrap_or(default.tick),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub scaler: Scaler,
    pub signal: Signal,
    #[serde(default)]
    pub policy: PolicyConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Scaler {
    /// Replicas of `weir serve` on loopback, registered with a router.
    Local {
        model: String,
        version: String,
        /// The model repository each replica serves.
        repository: PathBuf,
        /// The router's admin API (`weir route --admin-port`), which learns about replicas.
        router: String,
        /// The router's admin token; prefer `router_token_file`, which keeps it out of this
        /// file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        router_token: Option<Secret>,
        /// A file holding the router's admin token (surrounding whitespace ignored).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        router_token_file: Option<PathBuf>,
        /// Extra flags for `weir serve`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// Give each replica its own empty folder under `repository` (for replicas that fetch
        /// their model from a registry with `--registry … --model …` in `args`).
        #[serde(default, skip_serializing_if = "is_false")]
        fresh_repository: bool,
        /// Each replica also serves gRPC, on a port of its own (`--grpc-port 0`), and is
        /// announced to the router with it, so the router's gRPC port reaches replicas that
        /// share this host.
        #[serde(default, skip_serializing_if = "is_false")]
        grpc: bool,
    },
    /// A Deployment's `scale` subresource.
    Kubernetes {
        namespace: String,
        deployment: String,
        /// The port of the pods' `/metrics` (the runtime's HTTP port), for the scrape signal.
        #[serde(default = "default_runtime_port")]
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Signal {
    /// Read the replicas' `/metrics` directly (`weir_inflight_requests`): local replicas for
    /// their model and version, plus requests the router holds for a version without replicas;
    /// a Deployment's ready pods, found by its selector, for every model they serve.
    Scrape,
    /// A PromQL query yielding the total load of the target.
    Prometheus { url: String, query: String },
}

/// A secret written in the file; its `Debug` (what `weir autoscale --check` prints) hides it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Target {
    /// The router admin token of a local target, from `router_token` or `router_token_file`
    /// (not both; never empty); `None` without one or for other scalers. Reads the file.
    pub fn router_token(&self) -> Result<Option<String>, ConfigError> {
        let Scaler::Local {
            router_token,
            router_token_file,
            ..
        } = &self.scaler
        else {
            return Ok(None);
        };
        AdminToken::from_value_or_file(
            router_token.as_ref().map(|t| t.0.as_str()),
            router_token_file.as_deref(),
            "from router_token",
        )
        .map(|token| token.map(|t| t.secret().to_owned()))
        .map_err(|e| ConfigError::Invalid(format!("target '{}': {e}", self.name)))
    }
}

fn default_runtime_port() -> u16 {
    8080
}

/// Defaults are left out of a written file, which then reads back as the same value.
fn is_default(settings: &Settings) -> bool {
    *settings == Settings::default()
}

fn is_false(value: &bool) -> bool {
    !value
}

impl AutoscalerFile {
    pub fn load(path: &Path) -> Result<AutoscalerFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let file = AutoscalerFile::parse(&text)?;
        // A token file that is missing or empty stops the autoscaler at start, not a target
        // later on.
        for target in &file.target {
            target.router_token()?;
        }
        Ok(file)
    }

    pub fn parse(text: &str) -> Result<AutoscalerFile, ConfigError> {
        let file: AutoscalerFile =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let Settings { sample, tick } = file.settings;
        if sample.is_zero() || tick < sample {
            return invalid(format!(
                "settings: sample must be above 0 and tick at least sample, got sample {sample:?} and tick {tick:?}"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for target in &file.target {
            if !names.insert(target.name.as_str()) {
                return invalid(format!("two targets are named '{}'", target.name));
            }
            target
                .policy
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("target '{}': {e}", target.name)))?;
            if let Scaler::Local {
                router_token: Some(token),
                router_token_file,
                ..
            } = &target.scaler
            {
                if router_token_file.is_some() {
                    return invalid(format!(
                        "target '{}': give router_token or router_token_file, not both",
                        target.name
                    ));
                }
                if let Err(err) = AdminToken::new(&token.0, "from router_token") {
                    return invalid(format!("target '{}': {err}", target.name));
                }
            }
            if target.policy.metric == "rps" && target.signal == Signal::Scrape {
                return invalid(format!(
                    "target '{}': scraping measures concurrency; use a prometheus signal for rps",
                    target.name
                ));
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[target]]
        name = "iris-v2"
        scaler = { kind = "local", model = "iris", version = "2", repository = "models", router = "http://127.0.0.1:8001" }
        signal = { kind = "scrape" }
        policy = { metric = "concurrency", target = 10, min_replicas = 0, max_replicas = 20 }

        [[target]]
        name = "iris-v1"
        scaler = { kind = "kubernetes", namespace = "ml", deployment = "iris-v1" }
        signal = { kind = "prometheus", url = "http://127.0.0.1:9090", query = "sum(weir_inflight_requests{model='iris'})" }
    "#;

    #[test]
    fn the_documented_example_parses() {
        let file = AutoscalerFile::parse(EXAMPLE).unwrap();
        assert_eq!(file.target.len(), 2);
        assert_eq!(file.target[0].policy.max_replicas, 20);
        assert_eq!(
            file.target[0].policy.target_utilization, 0.7,
            "defaults fill the rest"
        );
        assert_eq!(file.settings, Settings::default());
    }

    #[test]
    fn router_tokens_come_inline_or_from_a_file_and_never_show() {
        let dir =
            std::env::temp_dir().join(format!("weir-autoscaler-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = |extra: &str| {
            EXAMPLE.replacen(
                "repository = \"models\",",
                &format!("repository = \"models\", {extra}"),
                1,
            )
        };
        let inline = AutoscalerFile::parse(&with("router_token = \"s3cret\",")).unwrap();
        assert_eq!(
            inline.target[0].router_token().unwrap().as_deref(),
            Some("s3cret")
        );
        assert!(!format!("{:?}", inline.target[0].scaler).contains("s3cret"));
        assert_eq!(
            AutoscalerFile::parse(EXAMPLE).unwrap().target[0]
                .router_token()
                .unwrap(),
            None
        );

        let good = dir.join("good");
        std::fs::write(&good, "s3cret\n").unwrap();
        let config = dir.join("good.toml");
        std::fs::write(
            &config,
            with(&format!("router_token_file = \"{}\",", good.display())),
        )
        .unwrap();
        let file = AutoscalerFile::load(&config).unwrap();
        assert_eq!(
            file.target[0].router_token().unwrap().as_deref(),
            Some("s3cret")
        );

        let blank = dir.join("blank");
        std::fs::write(&blank, "\n").unwrap();
        for (name, token_file, expected) in [
            ("blank.toml", blank.clone(), "is empty"),
            (
                "missing.toml",
                dir.join("missing"),
                "cannot read the token file",
            ),
        ] {
            let config = dir.join(name);
            std::fs::write(
                &config,
                with(&format!(
                    "router_token_file = \"{}\",",
                    token_file.display()
                )),
            )
            .unwrap();
            let err = AutoscalerFile::load(&config).unwrap_err().to_string();
            assert!(err.contains("iris-v2") && err.contains(expected), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn settings_take_durations_and_the_legacy_ms_keys() {
        let settings = |text: &str| {
            AutoscalerFile::parse(&format!("[settings]\n{text}\n{EXAMPLE}")).map(|f| f.settings)
        };
        let expected = Settings {
            sample: Duration::from_millis(250),
            tick: Duration::from_millis(500),
        };
        assert_eq!(
            settings("sample = \"250ms\"\ntick = 0.5").unwrap(),
            expected
        );
        assert_eq!(
            settings("sample_ms = 250\ntick_ms = 500").unwrap(),
            expected
        );
        for (bad, names) in [
            ("sample = \"1s\"\nsample_ms = 1000", "settings.sample_ms"),
            ("tick = \"2s\"\ntick_ms = 2000", "settings.tick_ms"),
            ("sample = 0", "sample must be above 0"),
            ("sample = \"2s\"\ntick = \"1s\"", "tick at least sample"),
            (
                "tick = \"2 fortnights\"",
                "'2 fortnights' is not a duration",
            ),
        ] {
            let err = settings(bad).unwrap_err().to_string();
            assert!(err.contains(names), "{bad}: {err}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (from, to, expected) in [
            ("max_replicas = 20", "max_replicas = 0", "min_replicas"),
            ("kind = \"local\"", "kind = \"docker\"", "unknown variant"),
            ("name = \"iris-v1\"", "name = \"iris-v2\"", "two targets"),
            (
                "repository = \"models\",",
                "repository = \"models\", router_token = \" \",",
                "router_token is empty",
            ),
            (
                "repository = \"models\",",
                "repository = \"models\", router_token = \"t\", router_token_file = \"t\",",
                "not both",
            ),
        ] {
            let err = AutoscalerFile::parse(&EXAMPLE.replacen(from, to, 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{to}: {err}");
        }
    }
}
