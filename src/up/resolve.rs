//! The registry version numbers behind a stack's `models:/` URIs, resolved once at start so the
//! routes file can name them (`registry_version`): a client pinning the number it knows from the
//! registry then reaches the right backend.

use weir_mlflow_client::{Identity, RegistryClient};

use super::configs::Resolved;
use super::StackFile;

/// `models:/NAME/VERSION` or `models:/NAME@ALIAS` as a version number, asking the registry for
/// an alias; `None` (with a warning) when the registry does not know it yet.
async fn resolve_version(registry: &RegistryClient, uri: &str) -> Option<u64> {
    let rest = uri.strip_prefix("models:/")?;
    if let Some((name, alias)) = rest.split_once('@') {
        let path = format!(
            "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
            query_escape(name),
            query_escape(alias)
        );
        match registry.get(&path).await {
            Ok(answer) => answer["model_version"]["version"]
                .as_str()
                .and_then(|v| v.parse().ok()),
            Err(err) => {
                tracing::warn!(%uri, error = %err, "cannot resolve the alias; the router will know this backend by its role only");
                None
            }
        }
    } else {
        rest.rsplit_once('/')?.1.parse().ok()
    }
}

/// Percent-encodes a query value (model names and aliases are usually plain already).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The version numbers behind every model's roles; a role the registry cannot resolve is left
/// out (the router then knows that backend by its role only).
pub async fn resolve_all(registry: &str, stack: &StackFile) -> Resolved {
    let client = RegistryClient::new(registry, Identity::User("weir-up".to_owned()));
    let mut resolved = Resolved::default();
    for model in &stack.model {
        let roles = std::iter::once(("stable", &model.stable))
            .chain(model.canary.iter().map(|c| ("canary", c)));
        for (role, uri) in roles {
            if let Some(number) = resolve_version(&client, uri).await {
                resolved.0.insert((model.name.clone(), role), number);
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_name_their_version_and_query_values_are_escaped() {
        assert_eq!(query_escape("iris"), "iris");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A number in the URI needs no registry (nothing listens on port 9).
        let client = RegistryClient::new("http://127.0.0.1:9", Identity::User("t".to_owned()));
        assert_eq!(
            runtime.block_on(resolve_version(&client, "models:/iris/3")),
            Some(3)
        );
        assert_eq!(
            runtime.block_on(resolve_version(&client, "runs:/x/model")),
            None
        );
        assert_eq!(
            runtime.block_on(resolve_version(&client, "models:/iris@gone")),
            None
        );
    }
}
