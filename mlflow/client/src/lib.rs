//! Clients for an MLflow server — `weir registry` or MLflow's own — as `weir models`, `weir runs`,
//! `weir train`, `weir up` and the training crate use it: the model registry (with weir's
//! approvals) in [`registry`], experiment tracking in [`tracking`], and the wire types they send
//! and read in [`types`].
//!
//! The crate speaks HTTP only (through `weir-http`): a program that talks to a registry does
//! not compile the SQL stores that serve one.

mod connection;
mod error;
mod files;
pub mod registry;
pub mod tracking;
pub mod types;

#[cfg(test)]
mod loopback;

pub use error::ClientError;
pub use registry::{Link, RegistryClient};
pub use tracking::TrackingClient;
pub use types::{
    now_ms, KeyValue, LoggedModel, LoggedModelInfo, Metric, Run, RunData, RunInfo,
    MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS,
};

/// Who a client acts as.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// A user name, for servers without tokens (`X-Weir-User` to the registry, the HTTP Basic
    /// user name to tracking, as the mlflow client sends it).
    User(String),
    /// A bearer token, for servers started with `--tokens` (the token names the user there).
    Token(String),
}

/// Written by hand so a token never reaches a log line through `{:?}`.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::User(user) => f.debug_tuple("User").field(user).finish(),
            Identity::Token(_) => f.write_str("Token(<hidden>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_stay_out_of_debug_output() {
        let shown = format!("{:?}", super::Identity::Token("s3cret".to_owned()));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            format!("{:?}", super::Identity::User("alice".to_owned())),
            "User(\"alice\")"
        );
    }
}
