//! Versioned documents: a JSON value under a key, changed only by compare-and-set.
//!
//! A write says which revision it was made against (`None`: the document must not exist yet).
//! The check and the write happen in one transaction, and the UPDATE repeats the revision in
//! its WHERE clause, so two writers racing from the same revision cannot both win whatever
//! isolation level the database runs (SQLite's single writer; PostgreSQL's row lock, or its
//! SERIALIZABLE retries, which re-run the closure and then see the winner's revision).

use serde::Serialize;
use serde_json::Value;
use weir_sql::{params, Sql, SqlError};

use crate::clock::Clock;
use crate::{names, Coordination, CoordinationError};

/// Largest document, as JSON text: shared router state is a few kilobytes per model.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub key: String,
    /// 1 for the first write, one more for each write since.
    pub revision: i64,
    pub value: Value,
    /// When it was last written, by the database's clock (milliseconds since the Unix epoch).
    pub updated_at_ms: i64,
}

impl Coordination {
    /// The document under `key`, or `None` when it was never written.
    pub fn get(&self, key: &str) -> Result<Option<Document>, CoordinationError> {
        names::check("key", key)?;
        let row = self.db.transaction(|db: &mut dyn Sql| {
            db.query_row(
                "SELECT revision, value, updated_at_ms FROM weir_coordination_documents WHERE key = ?1",
                params![key],
            )
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: String = row.get(1)?;
        let value = serde_json::from_str(&text).map_err(|e| {
            SqlError::Type(format!("document '{key}' holds text that is not JSON: {e}"))
        })?;
        Ok(Some(Document {
            key: key.to_owned(),
            revision: row.get(0)?,
            value,
            updated_at_ms: row.get(2)?,
        }))
    }

    /// Writes `value` under `key` if the document is at `expected_revision` (`None`: if it does
    /// not exist yet); its new revision, or [`CoordinationError::Conflict`] naming the revision
    /// it is at.
    pub fn put(
        &self,
        key: &str,
        value: &Value,
        expected_revision: Option<i64>,
    ) -> Result<i64, CoordinationError> {
        names::check("key", key)?;
        if let Some(expected) = expected_revision.filter(|r| *r < 1) {
            return Err(CoordinationError::Invalid(format!(
                "'expected_revision' must be 1 or more (revisions start at 1), got {expected}"
            )));
        }
        let text = value.to_string();
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(CoordinationError::Invalid(format!(
                "'value' is {} bytes of JSON; a document holds at most {MAX_DOCUMENT_BYTES}",
                text.len()
            )));
        }
        let conflict = |current| CoordinationError::Conflict {
            key: key.to_owned(),
            expected: expected_revision,
            current,
        };
        // Borrows only: the closure may run again when PostgreSQL retries the transaction.
        self.db.transaction(|db: &mut dyn Sql| {
            let current: Option<i64> = db.query_value(
                "SELECT revision FROM weir_coordination_documents WHERE key = ?1",
                params![key],
            )?;
            if current != expected_revision {
                return Err(conflict(current));
            }
            let now = Clock::Database.now_ms(db)?;
            let next = current.unwrap_or(0) + 1;
            let written = match current {
                None => db
                    .execute(
                        "INSERT INTO weir_coordination_documents (key, revision, value, updated_at_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![key, next, text.as_str(), now],
                    )
                    .map_err(|err| match err {
                        SqlError::UniqueViolation(_) => conflict(None),
                        other => other.into(),
                    })?,
                Some(revision) => db.execute(
                    "UPDATE weir_coordination_documents SET revision = ?2, value = ?3, updated_at_ms = ?4 WHERE key = ?1 AND revision = ?5",
                    params![key, next, text.as_str(), now, revision],
                )?,
            };
            if written != 1 {
                return Err(conflict(current));
            }
            Ok(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn each() -> Vec<(weir_sql::testing::TestDatabase, Coordination)> {
        weir_sql::testing::each("coordination_documents")
            .into_iter()
            .map(|db| {
                let coordination = Coordination::open(&db.url).unwrap();
                (db, coordination)
            })
            .collect()
    }

    #[test]
    fn documents_are_created_once_and_changed_from_their_revision_only() {
        for (_db, store) in each() {
            assert_eq!(store.get("routes/iris").unwrap(), None);
            assert_eq!(
                store.put("routes/iris", &json!({"w": 10}), None).unwrap(),
                1
            );
            let first = store.get("routes/iris").unwrap().unwrap();
            assert_eq!((first.revision, first.value.clone()), (1, json!({"w": 10})));
            assert!(first.updated_at_ms > 1_600_000_000_000, "{first:?}");

            // Creating again, or writing from a stale or unknown revision, is a conflict that
            // names the revision the document is at; nothing changes.
            for expected in [None, Some(2), Some(7)] {
                let refused = store
                    .put("routes/iris", &json!({"w": 99}), expected)
                    .unwrap_err();
                assert!(
                    matches!(
                        refused,
                        CoordinationError::Conflict {
                            current: Some(1),
                            ..
                        }
                    ),
                    "{refused:?}"
                );
                assert!(refused.to_string().contains("revision 1"), "{refused}");
            }
            assert_eq!(
                store
                    .put("routes/iris", &json!({"w": 20}), Some(1))
                    .unwrap(),
                2
            );
            let stale = store.put("routes/iris", &json!({"w": 30}), Some(1));
            assert!(matches!(stale, Err(CoordinationError::Conflict { .. })));
            let now = store.get("routes/iris").unwrap().unwrap();
            assert_eq!((now.revision, now.value), (2, json!({"w": 20})));

            // A write against a revision of a document that does not exist is a conflict too.
            let missing = store.put("routes/other", &json!(1), Some(1)).unwrap_err();
            assert!(
                matches!(missing, CoordinationError::Conflict { current: None, .. }),
                "{missing:?}"
            );
            assert_eq!(store.get("routes/other").unwrap(), None);
        }
    }

    #[test]
    fn bad_keys_revisions_and_sizes_are_refused_by_field() {
        for (_db, store) in each() {
            let bad_key = store.put("has space", &json!(1), None).unwrap_err();
            assert!(bad_key.to_string().contains("'key'"), "{bad_key}");
            assert!(store.get("").is_err());
            let zero = store.put("k", &json!(1), Some(0)).unwrap_err();
            assert!(zero.to_string().contains("'expected_revision'"), "{zero}");
            let huge = json!("x".repeat(MAX_DOCUMENT_BYTES));
            let too_big = store.put("k", &huge, None).unwrap_err();
            assert!(too_big.to_string().contains("'value'"), "{too_big}");
            assert_eq!(store.get("k").unwrap(), None);
        }
    }

    #[test]
    fn racing_writers_from_one_revision_have_one_winner() {
        for (db, store) in each() {
            store.put("race", &json!(0), None).unwrap();
            let store = std::sync::Arc::new(store);
            let winners: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|writer| {
                        let store = store.clone();
                        scope.spawn(move || store.put("race", &json!(writer), Some(1)).is_ok())
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| usize::from(h.join().unwrap()))
                    .sum()
            });
            assert_eq!(winners, 1, "{}", db.url);
            assert_eq!(store.get("race").unwrap().unwrap().revision, 2);
        }
    }
}
