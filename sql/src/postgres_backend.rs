//! PostgreSQL over the synchronous `postgres` driver: a pool of connections (opened as work
//! needs them, up to the configured size; re-opened when the server restarts), and the
//! transactions that make concurrent work on them — from this process or another replica —
//! correct: SERIALIZABLE, and run again when the server aborts one to keep that promise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postgres::config::SslMode;

use crate::pool::{Lease, Pool};
use crate::postgres_connection::{Attempt, Connection, Isolation};
use crate::redact::{redact_url, scrub};
use crate::retry::{backoff, Failure};
use crate::tls::{client_config, tls_request, RustlsConnect};
use crate::{PoolStats, Sql, SqlError};

/// How long a caller waits for a connection when all are in use.
pub(crate) const POOL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Shared {
    config: postgres::Config,
    /// Set when the URL asks for verified TLS (`sslmode=require` and stricter).
    tls: Option<RustlsConnect>,
    target: String,
    /// The URL as given, only to scrub its secrets from the driver's messages.
    url: String,
    pool: Pool<Connection>,
    /// Units of work run again after a conflict or a lost connection, since open.
    retries: AtomicU64,
}

impl Shared {
    /// Opens the first connection now, so a wrong URL, password or certificate is reported at
    /// start rather than by the first request; the others open when work needs them.
    pub(crate) fn connect(url: &str, pool_size: usize) -> Result<Shared, SqlError> {
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
        if config.get_options().is_none() {
            // No wait on a lock is endless: a replica frozen while it holds a model's queue
            // (`transaction_on`) or a row makes the others fail after this, not hang.
            config.options("-c lock_timeout=30s");
        }
        if config.get_application_name().is_none() {
            config.application_name("weir");
        }
        let connection = Connection::open(&config, tls.as_ref(), &target, url)?;
        let pool = Pool::new(pool_size, POOL_TIMEOUT);
        pool.put_idle(connection);
        Ok(Shared {
            config,
            tls,
            target,
            url: url.to_owned(),
            pool,
            retries: AtomicU64::new(0),
        })
    }

    pub(crate) fn set_pool_timeout(&mut self, timeout: Duration) {
        self.pool.set_timeout(timeout);
    }

    pub(crate) fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Runs `work` on a pooled connection until it commits, fails for a reason of its own,
    /// or runs out of retries (see `retry` for which failures are retried, and how often).
    /// Each attempt gives its connection back before the pause, so waiting holds no slot.
    pub(crate) fn transaction<T, E: From<SqlError>>(
        &self,
        isolation: Isolation,
        key: Option<&str>,
        mut work: impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut retries = 0;
        loop {
            let attempt = {
                let mut lease = self.pool.acquire(&self.target)?;
                // Out of the lease while in use: should `work` panic, the connection (and any
                // advisory lock its session holds) is dropped rather than pooled.
                let mut connection = self.ready(&mut lease)?;
                let attempt = match key {
                    None => connection.attempt(isolation, &mut work),
                    Some(key) => match connection.lock(key) {
                        Ok(()) => {
                            let attempt = connection.attempt(isolation, &mut work);
                            connection.unlock(key);
                            attempt
                        }
                        Err(err) => Attempt {
                            retry: connection.is_closed().then_some(Failure::Lost),
                            result: Err(SqlError::from(err).into()),
                        },
                    },
                };
                if !connection.is_closed() {
                    lease.connection = Some(connection);
                }
                attempt
            };
            match attempt.retry {
                Some(failure) if failure.may_retry(retries + 1) => {
                    retries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff(retries));
                }
                _ => return attempt.result,
            }
        }
    }

    /// The lease's connection, taken out of it; opened now if the slot has none or the one it
    /// had is closed.
    fn ready(&self, lease: &mut Lease<'_, Connection>) -> Result<Connection, SqlError> {
        match lease.connection.take() {
            Some(connection) if !connection.is_closed() => Ok(connection),
            _ => Connection::open(&self.config, self.tls.as_ref(), &self.target, &self.url),
        }
    }
}

impl Drop for Shared {
    /// The driver closes a connection by blocking on its own tokio runtime, which tokio
    /// refuses (a panic) on a thread that is driving another one. The last holder of a
    /// database may well be an async task, so its connections are closed on a thread of
    /// their own there.
    fn drop(&mut self) {
        let idle = self.pool.drain();
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let _ = std::thread::spawn(move || drop(idle)).join();
    }
}
