//! Who may call: the identities file, the roles it grants, and how a request's credential is
//! matched to an identity.
//!
//! Tokens are never kept in memory as given: each is reduced to its SHA-256 at load, and a
//! presented credential is hashed and compared against *every* entry in constant time, so
//! neither the comparison nor the position of a match leaks through timing. The file may hold
//! `token_sha256` instead of `token`, so it need not contain a usable secret at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What an identity may do. Every role includes reading; `admin` includes every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads models, versions, runs, metrics and artifacts.
    Reader,
    /// Creates runs and logs to them, uploads artifacts, registers versions, asks for review.
    Submitter,
    /// Approves or rejects other people's versions, moves aliases, transitions stages.
    Approver,
    /// Sets approval policies, renames and deletes models and versions, deletes artifacts.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Submitter, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Submitter => "submitter",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A caller the server recognised: a name for the audit log and the roles it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub roles: BTreeSet<Role>,
}

impl Identity {
    /// The caller of a server without identities (loopback, or `--allow-anonymous`): the name
    /// it gives itself, with every role, as the local default always behaved.
    pub fn unverified(name: &str) -> Identity {
        Identity {
            name: if name.is_empty() { "anonymous" } else { name }.to_owned(),
            roles: Role::ALL.into_iter().collect(),
        }
    }

    /// Whether this identity may call an endpoint that needs `role`.
    pub fn holds(&self, role: Role) -> bool {
        self.roles.contains(&role)
            || self.roles.contains(&Role::Admin)
            || (role == Role::Reader && !self.roles.is_empty())
    }
}

/// Why an identities file cannot be used. Messages never quote a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentitiesError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("user #{index} ('{name}'): {problem}")]
    User {
        index: usize,
        name: String,
        problem: String,
    },
    #[error(
        "two entries share one token (users '{first}' and '{second}'); every token must be unique"
    )]
    DuplicateToken { first: String, second: String },
    #[error("the file names no users: add [[user]] entries (see docs/security.md)")]
    Empty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    user: Vec<UserEntry>,
    /// The first form of the file: `"TOKEN" = "name"`, each with reader, submitter and approver.
    #[serde(default)]
    tokens: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    token: Option<String>,
    token_sha256: Option<String>,
    roles: Vec<Role>,
}

struct Entry {
    token_sha256: [u8; 32],
    identity: Identity,
}

/// The identities a server accepts; build with [`Identities::parse`].
pub struct Identities {
    entries: Vec<Entry>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.identity.name.as_str())
            .collect();
        f.debug_struct("Identities").field("users", &names).finish()
    }
}

/// SHA-256 of a token, the only form in which tokens are kept.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Identities {
    /// Reads an identities file. The whole file is refused on the first problem, so a typo
    /// never silently drops a user or grants a role.
    pub fn parse(text: &str) -> Result<Identities, IdentitiesError> {
        let file: File = toml::from_str(text).map_err(|e| IdentitiesError::Syntax {
            line: e
                .span()
                .map_or(0, |span| text[..span.start].matches('\n').count() + 1),
            // The message alone: toml's full rendering quotes the offending line, which may be
            // a token.
            message: e.message().to_owned(),
        })?;
        let mut entries = Vec::new();
        for (index, user) in file.user.into_iter().enumerate() {
            let problem = |problem: &str| IdentitiesError::User {
                index: index + 1,
                name: user.name.clone(),
                problem: problem.to_owned(),
            };
            if user.name.trim().is_empty() {
                return Err(problem("the name is empty"));
            }
            if user.roles.is_empty() {
                return Err(problem(
                    "roles is empty: give one or more of reader, submitter, approver, admin",
                ));
            }
            let token_sha256 = match (&user.token, &user.token_sha256) {
                (Some(token), None) if !token.trim().is_empty() => token_digest(token),
                (Some(_), None) => return Err(problem("the token is empty")),
                (None, Some(hex)) => parse_hex_digest(hex).ok_or_else(|| {
                    problem("token_sha256 must be 64 hexadecimal digits (sha256sum of the token)")
                })?,
                (Some(_), Some(_)) => return Err(problem("give token or token_sha256, not both")),
                (None, None) => return Err(problem("give token or token_sha256")),
            };
            entries.push(Entry {
                token_sha256,
                identity: Identity {
                    name: user.name,
                    roles: user.roles.into_iter().collect(),
                },
            });
        }
        for (token, name) in file.tokens {
            if token.trim().is_empty() || name.trim().is_empty() {
                return Err(IdentitiesError::User {
                    index: entries.len() + 1,
                    name,
                    problem: "an entry of [tokens] has an empty token or name".to_owned(),
                });
            }
            entries.push(Entry {
                token_sha256: token_digest(&token),
                identity: Identity {
                    name,
                    roles: [Role::Reader, Role::Submitter, Role::Approver].into(),
                },
            });
        }
        if entries.is_empty() {
            return Err(IdentitiesError::Empty);
        }
        for (i, a) in entries.iter().enumerate() {
            if let Some(b) = entries[i + 1..]
                .iter()
                .find(|b| bool::from(a.token_sha256.ct_eq(&b.token_sha256)))
            {
                return Err(IdentitiesError::DuplicateToken {
                    first: a.identity.name.clone(),
                    second: b.identity.name.clone(),
                });
            }
        }
        Ok(Identities { entries })
    }

    /// The identity holding `token`, compared against every entry in constant time.
    pub fn find(&self, token: &str) -> Option<&Identity> {
        let presented = token_digest(token);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.token_sha256.ct_eq(&presented)) {
                found = Some(&entry.identity);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A credential as a request carries it.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    /// `Authorization: Bearer TOKEN` (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
    /// `Authorization: Basic` (`MLFLOW_TRACKING_USERNAME`/`PASSWORD`): the token is the password.
    Basic {
        user: String,
        password: String,
    },
    /// An `Authorization` header weir cannot read.
    Malformed,
}

impl Credential {
    pub fn from_header(value: Option<&str>) -> Credential {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Credential::None;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Credential::Bearer(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return Credential::Basic {
                    user: user.to_owned(),
                    password: password.to_owned(),
                };
            }
        }
        Credential::Malformed
    }
}

#[cfg(test)]
mod tests;
