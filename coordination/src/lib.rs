//! State that several weir processes must agree on, kept in the registry's database (SQLite
//! or PostgreSQL, through weir-sql) and served by the registry under
//! `/api/2.0/weir/coordination/…`: router replicas share their canary weights and rollouts
//! through it (docs/router.md, "Several replicas").
//!
//! Two primitives, both small enough to reason about:
//! - [`Document`]s: a JSON value under a key with a revision that grows by one on each write.
//!   A write names the revision it was made against ([`Coordination::put`]) and is refused
//!   with [`CoordinationError::Conflict`] when someone wrote in between (compare-and-set), so
//!   two writers never silently undo each other: the loser re-reads and tries again.
//! - [`Lease`]s: a name held by one holder until a time; acquiring again renews
//!   ([`Coordination::acquire`]). Time is the DATABASE's clock, never the caller's: two routers
//!   whose clocks disagree by seconds still agree on who holds a lease, because only one clock
//!   ever decides. Callers learn how long they may act as `remaining_ms` (a duration, not a
//!   point in time), which they count on their own monotonic clock from before they asked.
//!
//! Why the registry's database and not a ConfigMap: a ConfigMap edit takes up to a minute to
//! reach the pods (the kubelet's sync period), and writing one needs Kubernetes credentials in
//! every router; the registry is already there, already replicated on PostgreSQL, and already
//! checks who may change what.

mod api;
mod clock;
mod documents;
mod error;
mod leases;
mod names;

use std::sync::Arc;

use weir_sql::{Database, Migration, SqlError};

pub use api::{routes, API_PREFIX};
pub use documents::Document;
pub use error::CoordinationError;
pub use leases::Lease;

/// The documents and leases of one database.
pub struct Coordination {
    db: Arc<Database>,
}

/// Its own migration table: the coordination schema changes on its own schedule, apart from the
/// registry's and tracking's.
const MIGRATIONS: &[Migration] = &[Migration::same(
    "CREATE TABLE weir_coordination_documents (
        key TEXT PRIMARY KEY,
        revision BIGINT NOT NULL,
        value TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE weir_coordination_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    );",
)];

impl Coordination {
    /// Creates or updates the schema on `db` (which the registry and tracking may share). Blocks:
    /// call it off the async threads.
    pub fn new(db: Arc<Database>) -> Result<Coordination, SqlError> {
        db.migrate("weir_coordination_schema", MIGRATIONS)?;
        Ok(Coordination { db })
    }

    /// [`Coordination::new`] on the database at `url`.
    pub fn open(url: &str) -> Result<Coordination, SqlError> {
        Coordination::new(Arc::new(Database::open(url)?))
    }
}
