//! What the server follows in a registry: the `--registry` URL, its credentials, and each
//! `--model NAME=models:/NAME@ALIAS`.

use std::str::FromStr;
use std::time::Duration;

use weir_http::HttpClient;

/// Which registry version a served model follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Alias(String),
    Version(String),
}

/// One `--model NAME=models:/NAME@ALIAS` (or `models:/NAME/VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryModel {
    /// The name requests use.
    pub served_as: String,
    /// The registered model's name.
    pub name: String,
    pub selector: Selector,
}

/// A `--model` that is not `NAME=models:/NAME@ALIAS` or `NAME=models:/NAME/VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model {text:?}: expected NAME=models:/NAME@ALIAS or NAME=models:/NAME/VERSION")]
pub struct ModelRefError {
    /// The `--model` value as given.
    pub text: String,
}

impl FromStr for RegistryModel {
    type Err = ModelRefError;

    fn from_str(text: &str) -> Result<Self, ModelRefError> {
        let (served_as, uri) = match text.split_once('=') {
            Some((served, uri)) => (Some(served.trim()), uri.trim()),
            None => (None, text.trim()),
        };
        let bad = || ModelRefError {
            text: text.to_owned(),
        };
        let rest = uri.strip_prefix("models:/").ok_or_else(bad)?;
        let (name, selector) = match (rest.split_once('@'), rest.split_once('/')) {
            (Some((name, alias)), _) if !alias.is_empty() => {
                (name, Selector::Alias(alias.to_owned()))
            }
            (None, Some((name, version))) if version.parse::<u64>().is_ok_and(|v| v > 0) => {
                (name, Selector::Version(version.to_owned()))
            }
            _ => return Err(bad()),
        };
        let served_as = served_as.unwrap_or(name);
        let plain = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..";
        if !plain(name) || !plain(served_as) {
            return Err(bad());
        }
        Ok(RegistryModel {
            served_as: served_as.to_owned(),
            name: name.to_owned(),
            selector,
        })
    }
}

/// Where served models come from when a registry is configured.
#[derive(Clone)]
pub struct RegistrySource {
    /// `http://host:port` or `https://host:port` of `weir registry`.
    pub url: String,
    pub models: Vec<RegistryModel>,
    pub poll: Duration,
    /// Sent as `Authorization: Bearer TOKEN`, for registries started with `--tokens`.
    pub token: Option<String>,
    /// The client for the registry: which CA HTTPS trusts (`HttpClient::with_ca_file`).
    pub http: HttpClient,
    /// `--registry-direct-download`: ask the registry for presigned bucket URLs and download
    /// the files from the bucket (still verified against the registry's digests); a registry
    /// on a folder answers none, and the files come through the registry as without it.
    pub direct_download: bool,
}

/// Written by hand so the token never reaches a log line through `{:?}`.
impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySource")
            .field("url", &self.url)
            .field("models", &self.models)
            .field("poll", &self.poll)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("direct_download", &self.direct_download)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references_parse() {
        let alias: RegistryModel = "iris=models:/iris-prod@production".parse().unwrap();
        assert_eq!(
            alias,
            RegistryModel {
                served_as: "iris".into(),
                name: "iris-prod".into(),
                selector: Selector::Alias("production".into())
            }
        );
        let version: RegistryModel = "models:/fraud/3".parse().unwrap();
        assert_eq!(
            (version.served_as.as_str(), version.selector),
            ("fraud", Selector::Version("3".into()))
        );
        for bad in [
            "iris",
            "iris=runs:/abc",
            "models:/iris",
            "models:/iris/0",
            "models:/iris@",
            "../x=models:/x/1",
            "models:/a/b/1",
        ] {
            assert!(bad.parse::<RegistryModel>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refusal_names_the_model_and_the_forms() {
        let refused = "iris=runs:/abc".parse::<RegistryModel>().unwrap_err();
        assert_eq!(
            refused.to_string(),
            "invalid model \"iris=runs:/abc\": expected NAME=models:/NAME@ALIAS or NAME=models:/NAME/VERSION"
        );
    }
}
