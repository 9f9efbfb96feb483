//! One SQL interface over SQLite, the embedded default, and PostgreSQL, for production.
//!
//! The registry and tracking stores write their queries once, in the portable subset of SQL
//! both engines speak (`ON CONFLICT … DO UPDATE`, `LIKE … ESCAPE`, `LIMIT … OFFSET`), with `?N`
//! placeholders; only schemas differ per dialect ([`Migration`]). Every unit of work runs in a
//! transaction on one connection, so a multi-statement change is all-or-nothing and a reader
//! never sees half of one. Both engines acknowledge a commit only once it is durable (SQLite in
//! WAL mode with `synchronous = FULL`; PostgreSQL with its default `synchronous_commit = on`).
//!
//! The PostgreSQL driver is the synchronous `postgres` crate: callers already run store work on
//! blocking threads, and it must not be called from inside an async task.

mod postgres_backend;
mod redact;
mod sqlite_backend;
mod store_error;
pub mod testing;
mod tls;
mod value;

use std::sync::Mutex;

pub use redact::redact_url;
pub use store_error::StoreError;
pub use value::{FromValue, Row, Value};

/// Parameters for a statement: `params![name, version]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::Value::from($value)),*][..]
    };
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The URL as [`redact_url`] shows it.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// A unique or primary key constraint refused the row.
    #[error("{0}")]
    UniqueViolation(String),
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Database(String),
}

impl From<rusqlite::Error> for SqlError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation)
                if err.to_string().contains("UNIQUE") =>
            {
                SqlError::UniqueViolation(err.to_string())
            }
            _ => SqlError::Database(err.to_string()),
        }
    }
}

impl From<postgres::Error> for SqlError {
    fn from(err: postgres::Error) -> Self {
        let message = match err.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => err.to_string(),
        };
        if err.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
            SqlError::UniqueViolation(message)
        } else {
            SqlError::Database(message)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection inside a transaction.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, SqlError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, SqlError>;
    /// Runs several statements without parameters (schemas).
    fn execute_batch(&mut self, sql: &str) -> Result<(), SqlError>;
}

impl dyn Sql + '_ {
    /// The first row, if any.
    pub fn query_row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, SqlError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first column of the first row, if there is a row.
    pub fn query_value<T: FromValue>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<T>, SqlError> {
        self.query_row(sql, params)?.map(|r| r.get(0)).transpose()
    }
}

/// A schema change, written for each dialect.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Migration {
    /// A change both engines read the same way.
    pub const fn same(sql: &'static str) -> Migration {
        Migration {
            sqlite: sql,
            postgres: sql,
        }
    }
}

/// A database opened from a URL: `sqlite://PATH` (or a bare path), `sqlite::memory:`, or
/// `postgres://…` / `postgresql://…`.
pub struct Database {
    backend: Backend,
    target: String,
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<postgres_backend::Shared>),
}

impl Database {
    pub fn open(url: &str) -> Result<Database, SqlError> {
        let (backend, target) = match url.split_once("://") {
            Some(("postgres" | "postgresql", _)) => (
                Backend::Postgres(Box::new(postgres_backend::Shared::connect(url)?)),
                redact_url(url),
            ),
            Some(("sqlite", path)) => (Backend::Sqlite(sqlite_backend::open(path)?), url.into()),
            Some(_) => return Err(SqlError::UnsupportedUrl(redact_url(url))),
            None if url == "sqlite::memory:" => (
                Backend::Sqlite(sqlite_backend::open(":memory:")?),
                url.into(),
            ),
            None => (Backend::Sqlite(sqlite_backend::open(url)?), url.into()),
        };
        Ok(Database { backend, target })
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The URL without its password, for logs and errors.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T, E: From<SqlError>>(
        &self,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(connection) => {
                let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
                sqlite_backend::transaction(&mut connection, work)
            }
            Backend::Postgres(pool) => pool.transaction(work),
        }
    }

    /// Brings a component's schema up to date. `table` records which steps ran; steps are
    /// append-only. Concurrent starters on PostgreSQL wait for each other (advisory lock).
    pub fn migrate(&self, table: &str, steps: &[Migration]) -> Result<(), SqlError> {
        self.transaction(|db: &mut dyn Sql| {
            if db.dialect() == Dialect::Postgres {
                db.query(
                    "SELECT pg_advisory_xact_lock(hashtext(?1))::text",
                    params![table],
                )?;
            }
            db.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (version BIGINT NOT NULL)"
            ))?;
            let applied: i64 = db
                .query_value(
                    &format!("SELECT COALESCE(MAX(version), 0) FROM {table}"),
                    &[],
                )?
                .unwrap_or(0);
            for (index, step) in steps.iter().enumerate().skip(applied.max(0) as usize) {
                db.execute_batch(match db.dialect() {
                    Dialect::Sqlite => step.sqlite,
                    Dialect::Postgres => step.postgres,
                })?;
                db.execute(
                    &format!("INSERT INTO {table} (version) VALUES (?1)"),
                    params![index + 1],
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
