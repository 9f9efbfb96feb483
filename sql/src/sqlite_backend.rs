//! SQLite: one connection, WAL journal with `synchronous = FULL` (a commit is on disk before it
//! is acknowledged), foreign keys on, and `LIKE` case-sensitive as PostgreSQL's is.
//!
//! One connection rather than a pool: SQLite has a single writer per file, so more connections
//! would only queue on its lock (and fail with `SQLITE_BUSY` past the timeout) instead of here.
//! Transactions on it run one after another, which is serializable by construction, so there is
//! nothing to retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::{params_from_iter, Connection};

use crate::value::from_sqlite;
use crate::{Dialect, PoolStats, Row, Sql, SqlError, Value};

pub(crate) struct Shared {
    connection: Mutex<Connection>,
    /// 1 while a transaction holds the connection, for [`PoolStats`].
    in_use: AtomicUsize,
}

impl Shared {
    pub(crate) fn open(path: &str) -> Result<Shared, SqlError> {
        Ok(Shared {
            connection: open(path)?,
            in_use: AtomicUsize::new(0),
        })
    }

    pub(crate) fn transaction<T, E: From<SqlError>>(
        &self,
        work: impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let _busy = Busy::new(&self.in_use);
        transaction(&mut connection, work)
    }

    pub(crate) fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: 1,
            in_use: self.in_use.load(Ordering::Relaxed),
        }
    }
}

/// Counts a holder of the connection for as long as it lives, even if the work panics.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(count: &'a AtomicUsize) -> Busy<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Busy(count)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn open(path: &str) -> Result<Mutex<Connection>, SqlError> {
    let connection = Connection::open(path).map_err(|err| SqlError::Connect {
        target: format!("sqlite://{path}"),
        message: err.to_string(),
    })?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000; PRAGMA case_sensitive_like = ON;",
    )?;
    connection.set_prepared_statement_cache_capacity(256);
    Ok(Mutex::new(connection))
}

fn transaction<T, E: From<SqlError>>(
    connection: &mut Connection,
    mut work: impl FnMut(&mut dyn Sql) -> Result<T, E>,
) -> Result<T, E> {
    let transaction = connection.transaction().map_err(SqlError::from)?;
    let result = work(&mut SqliteTransaction(&transaction))?;
    transaction.commit().map_err(SqlError::from)?;
    Ok(result)
}

struct SqliteTransaction<'a>(&'a rusqlite::Transaction<'a>);

impl Sql for SqliteTransaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
        let changed = self
            .0
            .prepare_cached(sql)?
            .execute(params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, SqlError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let width = statement.column_count();
        let mut rows = statement.query(params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| from_sqlite(row.get_ref(i)?))
                .collect::<Result<_, SqlError>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), SqlError> {
        Ok(self.0.execute_batch(sql)?)
    }
}
