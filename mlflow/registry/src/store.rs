//! Registry storage: registered models, versions, tags, aliases, approvals and the audit log,
//! on SQLite (embedded default) or PostgreSQL through `weir-sql`.
//!
//! Every change and its audit entry commit in one transaction, so the log holds exactly the
//! changes that happened, and a change is acknowledged only once it is durable: a `kill -9`
//! loses nothing acknowledged. Names cascade on rename through foreign keys, so a rename is one
//! statement.
//!
//! One file a concern: `schema` (the migrations), `types` (what is stored), `models`,
//! `versions`, `aliases`, `approvals` and `audit` (the operations on each, as `impl Store`
//! blocks beside their SQL helpers).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use weir_sql::{Database, Row, Sql, Value};

use audit::append_audit;

mod aliases;
mod approvals;
mod audit;
mod models;
mod schema;
mod types;
mod versions;

pub use crate::error::StoreError;
pub use types::{
    Alias, ApprovalStatus, AuditEntry, Decision, ModelVersion, NewVersion, RegisteredModel, Tag,
    VersionFile,
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct Store {
    db: Arc<Database>,
    /// Aliases that may point only at approved versions.
    protected_aliases: Vec<String>,
}

impl Store {
    /// Opens (creating if needed) the registry at a database URL (`sqlite://PATH`,
    /// `postgres://…`) and brings its schema up to date.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::new(Arc::new(Database::open(url)?))
    }

    /// The registry on a database other stores (tracking) share.
    pub fn new(db: Arc<Database>) -> Result<Store, StoreError> {
        db.migrate("schema_version", schema::SCHEMA)?;
        Ok(Store {
            db,
            protected_aliases: vec!["production".to_owned(), "champion".to_owned()],
        })
    }

    /// Replaces the default protected aliases (`production`, `champion`).
    pub fn with_protected_aliases(mut self, aliases: Vec<String>) -> Store {
        self.protected_aliases = aliases;
        self
    }

    /// Whether an alias may point only at approved (and servable) versions.
    pub fn is_protected(&self, alias: &str) -> bool {
        self.protected_aliases.iter().any(|p| p == alias)
    }

    /// Runs a change and appends its audit entry in one transaction. `work` returns its result
    /// and the entry's before/after. On PostgreSQL `work` may run more than once (see
    /// `weir_sql::Database::transaction`); only the attempt that commits leaves a trace, so
    /// each change has exactly one audit entry.
    fn write<T>(
        &self,
        actor: &str,
        action: &str,
        model: &str,
        version: &str,
        mut work: impl FnMut(&mut dyn Sql) -> Result<(T, String, String), StoreError>,
    ) -> Result<T, StoreError> {
        self.change(model, |db: &mut dyn Sql| {
            let (result, before, after) = work(db)?;
            append_audit(db, actor, action, model, version, &before, &after)?;
            Ok(result)
        })
    }

    /// A transaction changing `model`: changes of one model queue behind each other, across
    /// replicas (`weir_sql::Database::transaction_on`), since they mostly touch the same rows
    /// (its version counter, aliases, approvals) and would otherwise abort one another.
    fn change<T>(
        &self,
        model: &str,
        work: impl FnMut(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.db
            .transaction_on(&format!("registry-model:{model}"), work)
    }

    fn read<T>(
        &self,
        work: impl FnMut(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.db.transaction(work)
    }
}

/// A filter's values followed by the page's LIMIT (one extra row tells whether more follow) and
/// OFFSET. Borrowed, since the transaction reading the page may run again.
fn page_values(filter_values: &[String], max_results: usize, offset: usize) -> Vec<Value> {
    let mut values: Vec<Value> = filter_values.iter().map(Value::from).collect();
    values.extend([Value::from(max_results + 1), Value::from(offset)]);
    values
}

fn tags(rows: Vec<Row>) -> Result<Vec<Tag>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Tag {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
