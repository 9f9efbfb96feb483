//! Turns a request's headers into an [`Identity`], against identities that can be reloaded
//! while the server runs (token rotation without a restart).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use crate::identity::{Credential, Identities, IdentitiesError, Identity};

/// Why a request has no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("a credential is required: Authorization: Bearer <token> (MLFLOW_TRACKING_TOKEN) or HTTP Basic with the token as password")]
    Missing,
    #[error("the credential is not valid")]
    Invalid,
    #[error("the Authorization header is neither Bearer nor Basic")]
    Malformed,
}

/// Why an identities file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read identities file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid identities file {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: IdentitiesError,
    },
}

/// How a server knows its callers; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    /// `None`: no identities configured (the local default), callers name themselves.
    identities: Option<Arc<ArcSwap<Identities>>>,
    /// The digest of the file the identities were read from, so a watcher started later still
    /// sees a change made in between.
    loaded_from: Option<[u8; 32]>,
}

impl Authenticator {
    /// No identities: every caller holds every role under the name it gives (HTTP Basic user,
    /// else `X-Weir-User`, else `anonymous`). Only for loopback or `--allow-anonymous`.
    pub fn anonymous() -> Authenticator {
        Authenticator {
            identities: None,
            loaded_from: None,
        }
    }

    pub fn with_identities(identities: Identities) -> Authenticator {
        Authenticator {
            identities: Some(Arc::new(ArcSwap::from_pointee(identities))),
            loaded_from: None,
        }
    }

    /// Reads an identities file once; see [`Authenticator::watch`] to follow its changes.
    pub fn from_file(path: &Path) -> Result<Authenticator, LoadError> {
        let (digest, identities) = load(path)?;
        Ok(Authenticator {
            loaded_from: Some(digest),
            ..Authenticator::with_identities(identities)
        })
    }

    pub fn requires_credentials(&self) -> bool {
        self.identities.is_some()
    }

    /// Rereads `path` every `interval` and swaps in what it holds when it changed. A file that
    /// cannot be read or parsed keeps the identities in force (a half-saved edit must not lock
    /// everyone out or let everyone in) and says why in the log.
    pub fn watch(&self, path: PathBuf, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let identities = self.identities.clone()?;
        let loaded_from = self.loaded_from;
        Some(tokio::spawn(async move {
            let mut seen = loaded_from;
            loop {
                tokio::time::sleep(interval).await;
                let path = path.clone();
                let previous = seen;
                let outcome = tokio::task::spawn_blocking(move || -> Result<_, LoadError> {
                    let text = std::fs::read(&path).map_err(|source| LoadError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    let digest: [u8; 32] = Sha256::digest(&text).into();
                    if Some(digest) == previous {
                        return Ok(None);
                    }
                    Ok(Some((digest, parse(&path, &text))))
                })
                .await;
                match outcome {
                    Ok(Ok(Some((digest, parsed)))) => {
                        // Remember this version of the file either way: a broken one is
                        // reported once, not every interval.
                        seen = Some(digest);
                        match parsed {
                            Ok(loaded) => {
                                tracing::info!(users = loaded.len(), "identities file reloaded");
                                identities.store(Arc::new(loaded));
                            }
                            Err(err) => {
                                tracing::error!(error = %err, "identities file not reloaded; the previous identities stay in force")
                            }
                        }
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "identities file not reloaded; the previous identities stay in force");
                    }
                    Err(_) => {}
                }
            }
        }))
    }

    /// The caller of a request, or why there is none.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Unauthenticated> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let credential = Credential::from_header(authorization);
        let Some(identities) = &self.identities else {
            let named = match credential {
                Credential::Basic { user, .. } => Some(user),
                _ => None,
            }
            .filter(|u| !u.is_empty())
            .or_else(|| {
                headers
                    .get("x-weir-user")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
            return Ok(Identity::unverified(named.trim()));
        };
        let identities = identities.load();
        match credential {
            Credential::None => Err(Unauthenticated::Missing),
            Credential::Malformed => Err(Unauthenticated::Malformed),
            Credential::Bearer(token) => identities
                .find(&token)
                .cloned()
                .ok_or(Unauthenticated::Invalid),
            Credential::Basic { user, password } => identities
                .find(&password)
                // A user name, when given, must be the token's: a token lent under another
                // name would put the wrong person in the audit log.
                .filter(|identity| user.is_empty() || identity.name == user)
                .cloned()
                .ok_or(Unauthenticated::Invalid),
        }
    }
}

impl Authenticator {
    /// The identity a bare token names (a browser session's cookie, a sign-in form). Without
    /// identities there is nothing to check a token against, so it names nobody.
    pub fn authenticate_token(&self, token: &str) -> Result<Identity, Unauthenticated> {
        let Some(identities) = &self.identities else {
            return Err(Unauthenticated::Invalid);
        };
        identities
            .load()
            .find(token)
            .cloned()
            .ok_or(Unauthenticated::Invalid)
    }
}

fn parse(path: &Path, text: &[u8]) -> Result<Identities, LoadError> {
    let invalid = |source| LoadError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let text = std::str::from_utf8(text).map_err(|_| {
        invalid(IdentitiesError::Syntax {
            line: 0,
            message: "the file is not UTF-8".to_owned(),
        })
    })?;
    Identities::parse(text).map_err(invalid)
}

fn load(path: &Path) -> Result<([u8; 32], Identities), LoadError> {
    let text = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = Sha256::digest(&text).into();
    Ok((digest, parse(path, &text)?))
}

#[cfg(test)]
mod tests;
