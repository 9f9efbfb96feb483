//! The append-only audit log: reading it, and appending to it (every change appends its entry
//! in its own transaction, see `Store::write`).

use weir_sql::{params, Sql};

use super::{now_ms, AuditEntry, Store, StoreError};

impl Store {
    /// Audit entries, newest first, optionally for one model, action or user.
    pub fn audit(
        &self,
        model: Option<&str>,
        action: Option<&str>,
        user: Option<&str>,
        max_results: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|db| {
            let rows = db.query(
                "SELECT id, timestamp, user_id, action, model, version, before, after FROM audit_log
                 WHERE (CAST(?1 AS TEXT) IS NULL OR model = ?1) AND (CAST(?2 AS TEXT) IS NULL OR action = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR user_id = ?3)
                 ORDER BY id DESC LIMIT ?4",
                params![model, action, user, max_results],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        timestamp: r.get(1)?,
                        user: r.get(2)?,
                        action: r.get(3)?,
                        model: r.get(4)?,
                        version: r.get(5)?,
                        before: r.get(6)?,
                        after: r.get(7)?,
                    })
                })
                .collect()
        })
    }

    /// Appends an audit entry for something that is not a registry change in itself: an
    /// artifact write or delete, or a refused request, so the log shows who tried what.
    pub fn record_event(
        &self,
        actor: &str,
        action: &str,
        model: &str,
        version: &str,
        before: &str,
        after: &str,
    ) -> Result<(), StoreError> {
        self.db.transaction(|db: &mut dyn Sql| {
            append_audit(db, actor, action, model, version, before, after)
        })
    }
}

pub(super) fn append_audit(
    db: &mut dyn Sql,
    actor: &str,
    action: &str,
    model: &str,
    version: &str,
    before: &str,
    after: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO audit_log (timestamp, user_id, action, model, version, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![now_ms(), actor, action, model, version, before, after],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
