//! PostgreSQL over the synchronous `postgres` driver: one connection per process (work is
//! serialised as it is on SQLite, so a store behaves the same on both), re-established when the
//! server restarts, with prepared statements cached per connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, NoTls, Statement};

use crate::redact::{redact_url, scrub};
use crate::tls::{client_config, tls_request, RustlsConnect};
use crate::value::from_postgres;
use crate::{Dialect, Row, Sql, SqlError, Value};

/// Statements kept prepared per connection; beyond this the cache starts over.
const STATEMENT_CACHE: usize = 512;

pub(crate) struct Shared {
    config: postgres::Config,
    /// Set when the URL asks for verified TLS (`sslmode=require` and stricter).
    tls: Option<RustlsConnect>,
    target: String,
    /// The URL as given, only to scrub its secrets from the driver's messages.
    url: String,
    connection: Mutex<Option<Connection>>,
}

struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Shared {
    pub(crate) fn connect(url: &str) -> Result<Shared, SqlError> {
        let target = redact_url(url);
        let refused = |message: String| SqlError::Connect {
            target: target.clone(),
            message: scrub(&message, url),
        };
        let request = tls_request(url).map_err(refused)?;
        let mut config: postgres::Config = request
            .url
            .parse()
            .map_err(|err: postgres::Error| refused(err.to_string()))?;
        let tls = if request.verified {
            config.ssl_mode(SslMode::Require);
            Some(client_config(request.root_cert.as_deref()).map_err(refused)?)
        } else {
            if request.disabled {
                config.ssl_mode(SslMode::Disable);
            }
            None
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("weir");
        }
        let connection = Connection::open(&config, tls.as_ref(), &target, url)?;
        Ok(Shared {
            config,
            tls,
            target,
            url: url.to_owned(),
            connection: Mutex::new(Some(connection)),
        })
    }

    pub(crate) fn transaction<T, E: From<SqlError>>(
        &self,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let connection = match slot.take() {
            Some(connection) if !connection.client.is_closed() => connection,
            _ => Connection::open(&self.config, self.tls.as_ref(), &self.target, &self.url)?,
        };
        let Connection { client, statements } = slot.insert(connection);
        let transaction = client.transaction().map_err(SqlError::from)?;
        let mut handle = PostgresTransaction {
            transaction,
            statements,
        };
        let result = work(&mut handle)?;
        handle.transaction.commit().map_err(SqlError::from)?;
        Ok(result)
    }
}

impl Connection {
    fn open(
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
}

struct PostgresTransaction<'a> {
    transaction: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl PostgresTransaction<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, SqlError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        let statement = self.transaction.prepare(&numbered_placeholders(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl Sql for PostgresTransaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
        let statement = self.statement(sql)?;
        Ok(self.transaction.execute(&statement, &arguments(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, SqlError> {
        let statement = self.statement(sql)?;
        self.transaction
            .query(&statement, &arguments(params))?
            .iter()
            .map(from_postgres)
            .collect()
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), SqlError> {
        Ok(self.transaction.batch_execute(sql)?)
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
