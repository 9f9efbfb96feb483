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
//!
//! On PostgreSQL, several units of work run at once (a pool of connections, and any number of
//! processes on the same database: registry replicas). They run SERIALIZABLE, and a unit the
//! server aborts to keep them apart is run again, so [`Database::transaction`] takes an
//! `FnMut`: the work must be safe to repeat, which it is when it only touches the database
//! (and clones, rather than moves, what it captured).

mod options;
mod pool;
mod postgres_backend;
mod postgres_connection;
mod redact;
mod retry;
mod sqlite_backend;
mod store_error;
pub mod testing;
mod tls;
mod value;

use std::time::Duration;

use postgres_connection::Isolation;

pub use options::{Options, PoolStats, DEFAULT_POOL_SIZE};
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
    #[error("invalid database pool size {0}: it must be at least 1")]
    PoolSize(usize),
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
    Sqlite(sqlite_backend::Shared),
    Postgres(Box<postgres_backend::Shared>),
}

impl Database {
    /// Opens with the default [`Options`].
    pub fn open(url: &str) -> Result<Database, SqlError> {
        Database::open_with(url, Options::default())
    }

    /// Opens a database. On PostgreSQL one connection opens now (so a bad URL, password or
    /// certificate fails here) and up to `options.pool_size` as work needs them; SQLite keeps
    /// its one connection whatever the size.
    pub fn open_with(url: &str, options: Options) -> Result<Database, SqlError> {
        if options.pool_size == 0 {
            return Err(SqlError::PoolSize(options.pool_size));
        }
        let (backend, target) = match url.split_once("://") {
            Some(("postgres" | "postgresql", _)) => (
                Backend::Postgres(Box::new(postgres_backend::Shared::connect(
                    url,
                    options.pool_size,
                )?)),
                redact_url(url),
            ),
            Some(("sqlite", path)) => (
                Backend::Sqlite(sqlite_backend::Shared::open(path)?),
                url.into(),
            ),
            Some(_) => return Err(SqlError::UnsupportedUrl(redact_url(url))),
            None if url == "sqlite::memory:" => (
                Backend::Sqlite(sqlite_backend::Shared::open(":memory:")?),
                url.into(),
            ),
            None => (
                Backend::Sqlite(sqlite_backend::Shared::open(url)?),
                url.into(),
            ),
        };
        Ok(Database { backend, target })
    }

    /// How long a unit of work waits for a pooled connection when all are in use before it
    /// fails with "pool exhausted" (30 s unless set). SQLite's callers queue on its one
    /// connection without a limit, as its writers would on the file's lock.
    pub fn with_pool_timeout(mut self, timeout: Duration) -> Database {
        if let Backend::Postgres(shared) = &mut self.backend {
            shared.set_pool_timeout(timeout);
        }
        self
    }

    /// The pool's size and how many of its connections are lent out now (SQLite: size 1).
    pub fn pool_stats(&self) -> PoolStats {
        match &self.backend {
            Backend::Sqlite(shared) => shared.pool_stats(),
            Backend::Postgres(shared) => shared.pool_stats(),
        }
    }

    /// How many times a unit of work was run again since open, after PostgreSQL aborted it to
    /// keep concurrent transactions serializable, or lost its connection before the commit.
    /// Always 0 on SQLite. A steadily rising count means contention worth a look.
    pub fn retries(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(_) => 0,
            Backend::Postgres(shared) => shared.retries(),
        }
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
    ///
    /// On PostgreSQL the transaction is SERIALIZABLE, and `work` runs again from the start (on
    /// a fresh snapshot, after a short random pause) when the server aborts it for a
    /// serialization failure or deadlock, when a unique constraint refuses a row another
    /// transaction committed meanwhile (a lost race, which the next attempt sees), or when the
    /// connection was lost before the commit; each a bounded number of times, after which the
    /// last error is returned. So `work` must not act outside the database.
    pub fn transaction<T, E: From<SqlError>>(
        &self,
        work: impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction_at(Isolation::Serializable, None, work)
    }

    /// [`Database::transaction`], after waiting for every other unit of work on the same `key`
    /// — in this process or any other on the database — to finish (a PostgreSQL advisory lock
    /// held from before the transaction begins until after it ends).
    ///
    /// For writes that all touch one hot row, such as a model's version counter and aliases:
    /// SERIALIZABLE would abort all but one of them and make the rest retry, each retry
    /// colliding again, until some run out of retries; queued on a key, each one's snapshot
    /// starts after the previous one committed, so they rarely conflict at all. SQLite runs one
    /// transaction at a time anyway and ignores the key.
    pub fn transaction_on<T, E: From<SqlError>>(
        &self,
        key: &str,
        work: impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction_at(Isolation::Serializable, Some(key), work)
    }

    fn transaction_at<T, E: From<SqlError>>(
        &self,
        isolation: Isolation,
        key: Option<&str>,
        work: impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(shared) => shared.transaction(work),
            Backend::Postgres(shared) => shared.transaction(isolation, key, work),
        }
    }

    /// Brings a component's schema up to date. `table` records which steps ran; steps are
    /// append-only. Concurrent starters on PostgreSQL wait for each other (advisory lock), in
    /// a READ COMMITTED transaction so that the one that waited sees the steps the other ran.
    pub fn migrate(&self, table: &str, steps: &[Migration]) -> Result<(), SqlError> {
        self.transaction_at(Isolation::ReadCommitted, None, |db: &mut dyn Sql| {
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
