//! Why a registry model is not (or not yet) the version the registry names.

/// Why a registry model is not (or not yet) the version the registry names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("cannot reach the registry at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A non-2xx answer: `status` as "401 Unauthorized", the registry's own message.
    #[error("the registry answered {status} for {url}: {message}")]
    Answered {
        status: String,
        url: String,
        message: String,
    },
    #[error("unexpected answer from the registry: {0}")]
    Unexpected(String),
    #[error("the registry named version {0:?}")]
    BadVersion(String),
    /// The version was refused (not approved, no digest, tampered with, cannot be placed);
    /// the reason is also in the repository index.
    #[error("{0}")]
    Refused(String),
    /// The version's files are in place but did not load.
    #[error("{0}")]
    Load(String),
    #[error("the registry sync stopped unexpectedly: {0}")]
    Task(String),
}

/// A registry's non-2xx answer: its status in words and its own message.
pub(super) fn answered(status: u16, url: String, body: &[u8]) -> SyncError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    SyncError::Answered {
        status: http::StatusCode::from_u16(status)
            .map_or_else(|_| status.to_string(), |s| s.to_string()),
        url,
        message,
    }
}
