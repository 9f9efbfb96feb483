//! What weir's MLflow-speaking servers (registry, tracking) share on the wire: who the caller
//! is ([`identity`], [`authenticator`]), what each endpoint needs of them ([`access`]),
//! MLflow's error body ([`error`]), how requests are read and paged and stores called
//! ([`request`]), and the filter language ([`filter`]). See docs/security.md for the roles and
//! the threat model.

pub mod access;
pub mod authenticator;
pub mod error;
pub mod filter;
pub mod identity;
pub mod request;

pub use access::{
    queued_sink, Access, AccessLayer, BrowserPages, Endpoint, EndpointTable, Refusal, Routes,
};
pub use authenticator::{Authenticator, LoadError, Unauthenticated};
pub use error::{mlflow_error, ErrorCode, MlflowError};
pub use filter::{Filter, FilterError, OrderBy};
pub use identity::{Identities, IdentitiesError, Identity, Role};
