//! The one clock leases are judged by: the database's. Router replicas run on different
//! machines whose clocks drift apart; if each judged expiry by its own clock, a replica whose
//! clock runs ahead would take a lease the holder still believes it has. Reading the time in
//! the same transaction that decides, from the database every replica talks to, leaves one
//! clock and no disagreement. (With SQLite there is one registry process, so its clock is that
//! clock; with PostgreSQL, the server's.)

use weir_sql::{Dialect, Sql, SqlError};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The database server's clock, read inside the transaction.
    Database,
    /// A fixed time (milliseconds since the Unix epoch), for tests of expiry without sleeping.
    #[cfg(test)]
    Fixed(i64),
}

impl Clock {
    /// Milliseconds since the Unix epoch, by this clock.
    pub(crate) fn now_ms(self, db: &mut dyn Sql) -> Result<i64, SqlError> {
        let query = match self {
            #[cfg(test)]
            Clock::Fixed(ms) => return Ok(ms),
            Clock::Database => match db.dialect() {
                // julianday('now') is fixed for the duration of one statement.
                Dialect::Sqlite => {
                    "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
                }
                // clock_timestamp(), not now(): now() is the transaction's start, and a
                // transaction retried after a serialization failure must see the time it runs.
                Dialect::Postgres => {
                    "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
                }
            },
        };
        db.query_value(query, &[])?
            .ok_or_else(|| SqlError::Database("the database did not tell the time".to_owned()))
    }
}
