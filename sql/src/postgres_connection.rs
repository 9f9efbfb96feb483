//! One PostgreSQL connection of the pool, with its prepared statements, and one attempt at a
//! unit of work on it: what the attempt's statements ran into decides whether the pool runs the
//! work again (see `retry`).

use std::collections::HashMap;

use postgres::{Client, IsolationLevel, NoTls, Statement};

use crate::redact::scrub;
use crate::retry::Failure;
use crate::tls::RustlsConnect;
use crate::value::from_postgres;
use crate::{Dialect, Row, Sql, SqlError, Value};

/// Statements kept prepared per connection; beyond this the cache starts over.
const STATEMENT_CACHE: usize = 512;

pub(crate) struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// How a transaction sees others. Units of work run SERIALIZABLE; schema migrations run READ
/// COMMITTED, since they wait on an advisory lock and must then see what the holder committed,
/// which a snapshot taken before the wait would hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    Serializable,
    ReadCommitted,
}

/// What one attempt came to; `retry` says why another attempt may fare better.
pub(crate) struct Attempt<T, E> {
    pub(crate) result: Result<T, E>,
    pub(crate) retry: Option<Failure>,
}

impl Connection {
    pub(crate) fn open(
        config: &postgres::Config,
        tls: Option<&RustlsConnect>,
        target: &str,
        url: &str,
    ) -> Result<Connection, SqlError> {
        let connected = match tls {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(NoTls),
        };
        let client = connected.map_err(|err| SqlError::Connect {
            target: target.to_owned(),
            // The driver's Display stops at "error performing TLS handshake"; the cause (an
            // unknown issuer, a name mismatch) is what the user can act on.
            message: scrub(
                &match std::error::Error::source(&err) {
                    Some(cause) => format!("{err}: {cause}"),
                    None => err.to_string(),
                },
                url,
            ),
        })?;
        Ok(Connection {
            client,
            statements: HashMap::new(),
        })
    }

    /// Whether the server or the network ended this connection (a restart, a failover,
    /// `pg_terminate_backend`): it is dropped rather than returned to the pool.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Waits for, then holds, the session's advisory lock on `key` (see
    /// `Database::transaction_on`). Taken outside any transaction, so the snapshot of the
    /// transaction that follows is taken after the previous holder committed.
    pub(crate) fn lock(&mut self, key: &str) -> Result<(), postgres::Error> {
        let statement = self.cached("SELECT pg_advisory_lock(hashtext('weir:' || $1))::text")?;
        self.client.execute(&statement, &[&key]).map(|_| ())
    }

    /// Releases what [`Connection::lock`] took. A failure means the connection is gone, and
    /// the server released the lock with it.
    pub(crate) fn unlock(&mut self, key: &str) {
        if let Ok(statement) =
            self.cached("SELECT pg_advisory_unlock(hashtext('weir:' || $1))::text")
        {
            let _ = self.client.execute(&statement, &[&key]);
        }
    }

    fn cached(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `work` once in a transaction: committed when it returns `Ok` and every statement
    /// succeeded, rolled back otherwise.
    pub(crate) fn attempt<T, E: From<SqlError>>(
        &mut self,
        isolation: Isolation,
        work: &mut impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> Attempt<T, E> {
        let level = match isolation {
            Isolation::Serializable => IsolationLevel::Serializable,
            Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
        };
        let Connection { client, statements } = self;
        let begun = client.build_transaction().isolation_level(level).start();
        // (`map_err` consumes the result whole, so no part of it lives on past the match.)
        let transaction = match begun.map_err(SqlError::from) {
            Ok(transaction) => transaction,
            // Typically an idle connection the server has since closed (a restart,
            // `pg_terminate_backend`). Nothing was done, so the work may run on another one;
            // the pool drops this one if it is closed.
            Err(err) => {
                return Attempt {
                    result: Err(err.into()),
                    retry: Some(Failure::Lost),
                }
            }
        };
        let mut handle = PostgresTransaction {
            transaction,
            statements,
            failure: None,
        };
        let result = work(&mut handle);
        let (transaction, failure) = handle.finish();
        match (result, failure) {
            (Ok(value), None) => match transaction.commit() {
                Ok(()) => Attempt {
                    result: Ok(value),
                    retry: None,
                },
                // The commit's own conflict: the server rolled it back. Any other failure here
                // (a lost connection) leaves the outcome unknown, so the work is not re-run.
                Err(err) => Attempt {
                    retry: (Failure::of(&err) == Failure::Conflict).then_some(Failure::Conflict),
                    result: Err(SqlError::from(err).into()),
                },
            },
            (result, failure) => {
                // Nothing is committed: the server rolls back a transaction whose connection
                // is gone, so a lost connection is safe to retry too.
                let _ = transaction.rollback();
                let retry = if client.is_closed() {
                    Some(Failure::Lost)
                } else {
                    failure.filter(|f| *f != Failure::Other)
                };
                let result = match result {
                    Err(err) => Err(err),
                    // The work went on after a failed statement (PostgreSQL then ignores every
                    // statement until the end) and claims success: it cannot be committed.
                    Ok(_) => Err(SqlError::Database(
                        "the transaction was aborted by a failed statement that the unit of work ignored"
                            .to_owned(),
                    )
                    .into()),
                };
                Attempt { result, retry }
            }
        }
    }
}

struct PostgresTransaction<'a> {
    transaction: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
    /// How the first failed statement failed: after it, the server refuses every statement
    /// until the transaction ends, and only the first says why.
    failure: Option<Failure>,
}

impl<'a> PostgresTransaction<'a> {
    fn finish(self) -> (postgres::Transaction<'a>, Option<Failure>) {
        (self.transaction, self.failure)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, SqlError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        let prepared = self.transaction.prepare(&numbered_placeholders(sql));
        let statement = self.checked(prepared)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// `result`, noting how it failed.
    fn checked<R>(&mut self, result: Result<R, postgres::Error>) -> Result<R, SqlError> {
        result.map_err(|err| {
            self.failure.get_or_insert(Failure::of(&err));
            SqlError::from(err)
        })
    }
}

impl Sql for PostgresTransaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
        let statement = self.statement(sql)?;
        let changed = self.transaction.execute(&statement, &arguments(params));
        self.checked(changed)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, SqlError> {
        let statement = self.statement(sql)?;
        let rows = self.transaction.query(&statement, &arguments(params));
        self.checked(rows)?.iter().map(from_postgres).collect()
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), SqlError> {
        let done = self.transaction.batch_execute(sql);
        self.checked(done)
    }
}

fn arguments(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// SQLite's `?N` and `?` placeholders as PostgreSQL's `$N`, leaving quoted text alone.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                        out.push(digit);
                    }
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT ?1, ?12 WHERE a = '?' AND b LIKE ? ESCAPE '\\'"),
            "SELECT $1, $12 WHERE a = '?' AND b LIKE $1 ESCAPE '\\'"
        );
        assert_eq!(numbered_placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
    }
}
