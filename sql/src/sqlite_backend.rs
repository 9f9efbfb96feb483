//! SQLite: one connection, WAL journal with `synchronous = FULL` (a commit is on disk before it
//! is acknowledged), foreign keys on, and `LIKE` case-sensitive as PostgreSQL's is.

use rusqlite::{params_from_iter, Connection};

use crate::value::from_sqlite;
use crate::{Dialect, Row, Sql, SqlError, Value};

pub(crate) fn open(path: &str) -> Result<std::sync::Mutex<Connection>, SqlError> {
    let connection = Connection::open(path).map_err(|err| SqlError::Connect {
        target: format!("sqlite://{path}"),
        message: err.to_string(),
    })?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000; PRAGMA case_sensitive_like = ON;",
    )?;
    connection.set_prepared_statement_cache_capacity(256);
    Ok(std::sync::Mutex::new(connection))
}

pub(crate) fn transaction<T, E: From<SqlError>>(
    connection: &mut Connection,
    work: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
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
