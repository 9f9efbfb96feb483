//! Why a call to the registry or the tracking server failed.

use std::path::PathBuf;

/// One enum for both clients: they share a server (`weir registry` serves both APIs), and a
/// caller such as `weir train` handles their failures alike.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer came. `server` names which API was called ("registry", "tracking server").
    #[error("cannot reach the {server} at {url}: {reason}")]
    Unreachable {
        server: &'static str,
        url: String,
        reason: String,
    },
    /// The server refused: its MLflow error code (or the HTTP status when it sent none) and
    /// message.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// A local file to upload could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A version folder with nothing in it: registering it would make an unservable version.
    #[error("{} holds no files to register", folder.display())]
    NothingToRegister { folder: PathBuf },
    /// Only `mlflow-artifacts:/` locations are uploaded through the server; anything else
    /// (s3://, a local path) is the server's own storage, which this client cannot write.
    #[error(
        "artifact location {location} is not served by the tracking server (mlflow-artifacts:/…)"
    )]
    ArtifactsElsewhere { location: String },
    /// A 2xx answer without the fields MLflow's API documents for it.
    #[error("the {server}'s answer to {call} is not MLflow's: {source}")]
    UnexpectedAnswer {
        server: &'static str,
        call: &'static str,
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The thing asked for does not exist (MLflow's `RESOURCE_DOES_NOT_EXIST`).
    pub fn is_not_found(&self) -> bool {
        self.has_code("RESOURCE_DOES_NOT_EXIST")
    }

    /// The thing to create exists already (MLflow's `RESOURCE_ALREADY_EXISTS`).
    pub fn is_already_existing(&self) -> bool {
        self.has_code("RESOURCE_ALREADY_EXISTS")
    }

    /// The server does not have the endpoint at all (an MLflow 2 server asked for MLflow 3's
    /// logged models answers a bare 404).
    pub fn is_missing_endpoint(&self) -> bool {
        self.has_code("ENDPOINT_NOT_FOUND") || self.has_code("404")
    }

    fn has_code(&self, wanted: &str) -> bool {
        matches!(self, ClientError::Refused { code, .. } if code == wanted)
    }
}
