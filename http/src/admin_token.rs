//! The router's admin token as both ends hold it: the router checks calls against it, the
//! clients that call the admin API (`weir canary`, the autoscaler) read it from a flag, a file
//! or a config key and send it. It lives here so a client need not compile the router.
//!
//! An empty token that quietly meant "no check" once left the admin API open, so a token is
//! validated where it is read, never when the first call comes in.

use std::path::Path;

use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the admin token {source_name} is empty; give a non-empty token or none")]
    Empty { source_name: String },
    #[error("cannot read the token file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the admin API would listen on {address} (not loopback) without a token: give \
         --admin-token-file, or --allow-anonymous to let anyone who reaches it change weights"
    )]
    ExposedWithoutToken { address: String },
    #[error("give the admin token either {value_name} or in a file, not both")]
    Both { value_name: String },
}

/// A non-empty bearer token; its `Debug` never shows the value.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<hidden>)")
    }
}

impl AdminToken {
    /// Trims surrounding whitespace (a secret file or variable often ends in a newline) and
    /// refuses what is left empty; `source_name` says where it came from, for the error.
    pub fn new(token: &str, source_name: &str) -> Result<AdminToken, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                source_name: source_name.to_owned(),
            });
        }
        Ok(AdminToken(token.to_owned()))
    }

    /// The token in `path` (whole file, trimmed).
    pub fn from_file(path: &Path) -> Result<AdminToken, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        AdminToken::new(&text, &format!("in {}", path.display()))
    }

    /// The token given inline or in a file (at most one of them; the CLI and config files
    /// refuse both), validated.
    pub fn from_value_or_file(
        value: Option<&str>,
        file: Option<&Path>,
        value_name: &str,
    ) -> Result<Option<AdminToken>, TokenError> {
        match (value, file) {
            (Some(_), Some(_)) => Err(TokenError::Both {
                value_name: value_name.to_owned(),
            }),
            (None, Some(path)) => AdminToken::from_file(path).map(Some),
            (Some(value), None) => AdminToken::new(value, value_name).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The token, to send it (clients) — never to log it.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time that does not depend on where they differ (only
    /// on their lengths), so the token cannot be guessed byte by byte from response times.
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn empty_and_blank_tokens_are_refused_and_newlines_trimmed() {
        for blank in ["", " ", "\n", " \t\r\n "] {
            let err = AdminToken::new(blank, "--admin-token").unwrap_err();
            assert!(err.to_string().contains("--admin-token is empty"), "{err}");
        }
        let token = AdminToken::new("  s3cret\n", "x").unwrap();
        assert!(token.matches(b"s3cret"));
        assert_eq!(format!("{token:?}"), "AdminToken(<hidden>)");
    }

    #[test]
    fn token_files_are_read_trimmed_and_refused_when_blank_or_missing() {
        let dir = std::env::temp_dir().join(format!("weir-http-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "s3cret\n").unwrap();
        assert!(AdminToken::from_file(&good).unwrap().matches(b"s3cret"));
        let blank = dir.join("blank");
        std::fs::write(&blank, " \n").unwrap();
        let err = AdminToken::from_file(&blank).unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("blank"), "{err}");
        let err = AdminToken::from_file(&dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the token file"), "{err}");
        assert!(
            AdminToken::from_value_or_file(None, None, "x")
                .unwrap()
                .is_none(),
            "no token at all is allowed here; exposure is checked separately"
        );
        let both = AdminToken::from_value_or_file(Some("t"), Some(&good), "--admin-token");
        assert!(matches!(both, Err(TokenError::Both { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
