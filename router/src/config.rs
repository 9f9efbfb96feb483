//! `routes.toml`: which versions of which models sit behind the router, at what weights.
//!
//! ```toml
//! [settings]                      # optional; the defaults are shown (see `settings.rs`)
//! request_timeout = "30s"
//! health_check_interval = "2s"
//! ejection_failures = 5           # consecutive failures that eject a replica
//! ejection_base = "5s"            # first ejection; doubles each time, at most 60 s
//! max_shadow_in_flight = 64       # shadow copies in flight at once; more are dropped
//!
//! [[route]]
//! model = "iris"
//! sticky_header = "x-user-id"
//! [[route.backend]]
//! version = "1"
//! endpoints = ["http://127.0.0.1:9001"]
//! weight = 90
//! [[route.backend]]
//! version = "canary"
//! registry_version = 2            # optional: the version number its replicas serve
//! endpoints = ["http://127.0.0.1:9002"]
//! weight = 10
//! [route.shadow]
//! endpoints = ["http://127.0.0.1:9003"]
//! percent = 5
//! ```
//!
//! An endpoint is a replica's HTTP URL, or a table that also names the port it serves gRPC on
//! (`{ url = "http://127.0.0.1:9001", grpc_port = 9101 }`): replicas sharing one host, as
//! `weir up`'s local ones do, cannot share the one `grpc_port` of `[settings]`.
//!
//! The first backend is the stable version and the second, when there is one, the canary: the
//! canary API moves weight between those two.
//!
//! A backend's `version` is the name the router knows it by; `weir up` names them by role
//! (`stable`, `canary`) because the registry aliases behind them move. `registry_version`
//! says which version number the replicas actually serve, so a client that pins the number it
//! knows from the registry (`x-weir-version: 2`, `/v2/models/iris/versions/2/infer`) reaches
//! that backend too.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid routes file: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    #[serde(default, skip_serializing_if = "is_default")]
    pub settings: Settings,
    #[serde(default)]
    pub route: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    pub backend: Vec<BackendConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub version: String,
    /// The version number the backend's replicas serve, when `version` is another name (a
    /// role such as `stable`): pins and admin calls accept either.
    #[serde(
        default,
        deserialize_with = "number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_version: Option<String>,
    pub endpoints: Vec<EndpointConfig>,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub endpoints: Vec<EndpointConfig>,
    pub percent: u32,
}

/// One replica: its HTTP URL and, when it has its own, the port it serves gRPC on (on the
/// URL's host). Written as the bare URL when there is no such port, so files and admin calls
/// from before per-replica gRPC ports read and write as they did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub url: String,
    /// `None`: the replica serves gRPC on `[settings] grpc_port`, if anywhere.
    pub grpc_port: Option<u16>,
}

impl From<&str> for EndpointConfig {
    fn from(url: &str) -> EndpointConfig {
        EndpointConfig {
            url: url.to_owned(),
            grpc_port: None,
        }
    }
}

impl EndpointConfig {
    /// The URL is `http://HOST:PORT` and the gRPC port, when given, is a port.
    pub fn check(&self) -> Result<(), String> {
        let url = &self.url;
        if !valid_endpoint(url) {
            return Err(format!("endpoint '{url}' must be http://HOST:PORT"));
        }
        if self.grpc_port == Some(0) {
            return Err(format!("endpoint '{url}': grpc_port 0 is not a port"));
        }
        Ok(())
    }
}

/// The table form of an endpoint.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointTable {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grpc_port: Option<u16>,
}

impl Serialize for EndpointConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.grpc_port {
            None => serializer.serialize_str(&self.url),
            Some(port) => EndpointTable {
                url: self.url.clone(),
                grpc_port: Some(port),
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for EndpointConfig {
    /// A string or a table, by hand rather than `untagged`, so that a mistake inside the table
    /// (an unknown key, a port above 65535) is reported as itself.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = EndpointConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a replica's URL, or a table { url, grpc_port }")
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<EndpointConfig, E> {
                Ok(EndpointConfig::from(url))
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<EndpointConfig, M::Error> {
                let table =
                    EndpointTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(EndpointConfig {
                    url: table.url,
                    grpc_port: table.grpc_port,
                })
            }
        }
        deserializer.deserialize_any(Either)
    }
}

impl RoutesFile {
    pub fn load(path: &Path) -> Result<RoutesFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        RoutesFile::parse(&text)
    }

    pub fn parse(text: &str) -> Result<RoutesFile, ConfigError> {
        let file: RoutesFile =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        file.validate()?;
        Ok(file)
    }

    /// Every rule a running router relies on, each refusal naming the route and field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.settings.request_timeout.is_zero() {
            return invalid("settings: request_timeout must be above 0".to_owned());
        }
        if self.settings.health_check_interval.is_zero() {
            return invalid("settings: health_check_interval must be above 0".to_owned());
        }
        let mut models = HashSet::new();
        for route in &self.route {
            let model = &route.model;
            if model.is_empty() || model.contains(['/', ' ', '?', '#']) {
                return invalid(format!("route model '{model}' is not a valid model name"));
            }
            if !models.insert(model.as_str()) {
                return invalid(format!("model '{model}' has two routes"));
            }
            if route.backend.is_empty() {
                return invalid(format!("route '{model}' has no backend"));
            }
            check_names(route)?;
            let mut total = 0;
            for backend in &route.backend {
                let version = &backend.version;
                if backend.weight > 100 {
                    return invalid(format!(
                        "route '{model}' version {version}: weight {} is above 100",
                        backend.weight
                    ));
                }
                total += backend.weight;
                // No endpoints is allowed: an autoscaler adds replicas (scale from zero).
                if !backend.endpoints.is_empty() {
                    check_endpoints(
                        &format!("route '{model}' version {version}"),
                        &backend.endpoints,
                    )?;
                }
            }
            if total != 100 {
                return invalid(format!(
                    "route '{model}': backend weights add up to {total}, not 100"
                ));
            }
            if let Some(shadow) = &route.shadow {
                if shadow.percent > 100 {
                    return invalid(format!(
                        "route '{model}': shadow percent {} is above 100",
                        shadow.percent
                    ));
                }
                check_endpoints(&format!("route '{model}' shadow"), &shadow.endpoints)?;
            }
        }
        Ok(())
    }
}

/// Every name a backend answers to (its `version`, its `registry_version`) is non-empty, fits
/// in a path segment, and belongs to one backend only: a pin must never be ambiguous.
fn check_names(route: &RouteConfig) -> Result<(), ConfigError> {
    let model = &route.model;
    let mut seen: HashMap<&str, String> = HashMap::new();
    for backend in &route.backend {
        let registry = backend
            .registry_version
            .as_deref()
            .filter(|n| *n != backend.version)
            .map(|n| ("registry_version", n));
        for (field, name) in std::iter::once(("version", backend.version.as_str())).chain(registry)
        {
            if name.is_empty() || name.contains(['/', ' ', '?', '#']) {
                return Err(ConfigError::Invalid(format!(
                    "route '{model}': {field} '{name}' is not a valid version name"
                )));
            }
            let this = format!("{field} '{name}' of backend '{}'", backend.version);
            if let Some(other) = seen.insert(name, this.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "route '{model}': backend versions must be distinct: the {this} is also the {other}"
                )));
            }
        }
    }
    Ok(())
}

/// Default settings are left out of a written file, which then reads back as the same value.
fn is_default(settings: &Settings) -> bool {
    *settings == Settings::default()
}

/// `registry_version = 2` and `registry_version = "2"` say the same.
fn number_or_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    Ok(Some(match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => n.to_string(),
        NumberOrText::Text(text) => text,
    }))
}

fn check_endpoints(what: &str, endpoints: &[EndpointConfig]) -> Result<(), ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::Invalid(format!("{what} has no endpoints")));
    }
    for endpoint in endpoints {
        endpoint
            .check()
            .map_err(|problem| ConfigError::Invalid(format!("{what}: {problem}")))?;
    }
    Ok(())
}

/// `http://HOST:PORT`, nothing more.
pub(crate) fn valid_endpoint(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#']))
        && endpoint.parse::<hyper::Uri>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[route]]
        model = "iris"
        sticky_header = "x-user-id"
        [[route.backend]]
        version = "1"
        endpoints = ["http://127.0.0.1:9001", "http://127.0.0.1:9011"]
        weight = 90
        [[route.backend]]
        version = "2"
        endpoints = ["http://127.0.0.1:9002"]
        weight = 10
        [route.shadow]
        endpoints = ["http://127.0.0.1:9003"]
        percent = 5
    "#;

    #[test]
    fn the_documented_example_parses() {
        let file = RoutesFile::parse(EXAMPLE).unwrap();
        assert_eq!(file.route[0].backend[1].weight, 10);
        assert_eq!(file.route[0].shadow.as_ref().unwrap().percent, 5);
        assert_eq!(file.settings, Settings::default());
    }

    #[test]
    fn mistakes_name_the_route_and_field() {
        for (change, expected) in [
            (("weight = 10", "weight = 20"), "add up to 110"),
            (("weight = 10", "weight = 101"), "above 100"),
            (("percent = 5", "percent = 500"), "shadow percent 500"),
            (
                ("\"http://127.0.0.1:9002\"", "\"127.0.0.1:9002\""),
                "must be http://HOST:PORT",
            ),
            (("version = \"2\"", "version = \"1\""), "distinct"),
            (("sticky_header", "stiky_header"), "unknown field"),
        ] {
            let text = EXAMPLE.replacen(change.0, change.1, 1);
            let err = RoutesFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{change:?}: {err}");
        }
    }

    #[test]
    fn an_endpoint_is_a_url_or_a_table_naming_its_grpc_port() {
        let text = EXAMPLE.replacen(
            "\"http://127.0.0.1:9011\"",
            "{ url = \"http://127.0.0.1:9011\", grpc_port = 9111 }",
            1,
        );
        let file = RoutesFile::parse(&text).unwrap();
        let endpoints = &file.route[0].backend[0].endpoints;
        assert_eq!(endpoints[0], EndpointConfig::from("http://127.0.0.1:9001"));
        assert_eq!(endpoints[1].grpc_port, Some(9111));
        // Written back: a bare URL stays a string, the other a table, and both read back.
        let written = toml::to_string(&file).unwrap();
        assert!(written.contains("\"http://127.0.0.1:9001\""), "{written}");
        assert!(written.contains("grpc_port = 9111"), "{written}");
        assert_eq!(RoutesFile::parse(&written).unwrap(), file);
        // As JSON (the admin API's form) too.
        let json: EndpointConfig =
            serde_json::from_str(r#"{"url": "http://127.0.0.1:9001", "grpc_port": 9101}"#).unwrap();
        assert_eq!(json.grpc_port, Some(9101));
        assert_eq!(
            serde_json::to_string(&EndpointConfig::from("http://a:1")).unwrap(),
            "\"http://a:1\""
        );

        for (table, expected) in [
            (
                "{ url = \"http://127.0.0.1:9011\", grpc_port = 0 }",
                "grpc_port 0 is not a port",
            ),
            (
                "{ url = \"http://127.0.0.1:9011\", grpc_port = 70000 }",
                "70000",
            ),
            (
                "{ url = \"http://127.0.0.1:9011\", grpc = 9111 }",
                "unknown field `grpc`",
            ),
            ("{ grpc_port = 9111 }", "missing field `url`"),
            ("{ url = \"127.0.0.1:9011\" }", "must be http://HOST:PORT"),
            ("9011", "a replica's URL, or a table"),
        ] {
            let text = EXAMPLE.replacen("\"http://127.0.0.1:9011\"", table, 1);
            let err = RoutesFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{table}: {err}");
        }
    }

    const ROLES: &str = r#"
        [[route]]
        model = "iris"
        [[route.backend]]
        version = "stable"
        registry_version = 1
        endpoints = []
        weight = 90
        [[route.backend]]
        version = "canary"
        registry_version = "2"
        endpoints = []
        weight = 10
    "#;

    #[test]
    fn registry_versions_are_numbers_or_text_and_never_ambiguous() {
        let file = RoutesFile::parse(ROLES).unwrap();
        let numbers: Vec<Option<&str>> = file.route[0]
            .backend
            .iter()
            .map(|b| b.registry_version.as_deref())
            .collect();
        assert_eq!(numbers, [Some("1"), Some("2")]);
        // The same name twice on one backend says nothing new and is fine.
        assert!(RoutesFile::parse(
            &ROLES.replace("registry_version = 1", "registry_version = \"stable\"")
        )
        .is_ok());
        for (change, expected) in [
            (
                ("registry_version = \"2\"", "registry_version = 1"),
                "registry_version '1' of backend 'canary' is also the registry_version '1' of backend 'stable'",
            ),
            (
                ("registry_version = \"2\"", "registry_version = \"stable\""),
                "registry_version 'stable' of backend 'canary' is also the version 'stable'",
            ),
            (
                ("version = \"canary\"", "version = \"1\""),
                "version '1' of backend '1' is also the registry_version '1'",
            ),
            (
                ("registry_version = \"2\"", "registry_version = \"2/infer\""),
                "registry_version '2/infer' is not a valid version name",
            ),
            (
                ("registry_version = \"2\"", "registry_version = -2"),
                "registry_version",
            ),
        ] {
            let text = ROLES.replacen(change.0, change.1, 1);
            let err = RoutesFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{change:?}: {err}");
        }
    }
}
