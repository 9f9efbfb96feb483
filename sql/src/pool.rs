//! A bounded pool of connections, generic over what a connection is so its rules are tested
//! without a server.
//!
//! At most `size` connections exist at once: a caller takes an idle one (the most recently
//! returned, whose prepared statements are warm), or a free slot in which it opens a new one,
//! or waits. The wait is bounded, because a caller that queues forever behind a stuck
//! transaction is worse than an error it can report; the pool never grows past its size, since
//! each connection is a server process and PostgreSQL's `max_connections` is shared by every
//! replica.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{PoolStats, SqlError};

pub(crate) struct Pool<C> {
    size: usize,
    timeout: Duration,
    state: Mutex<State<C>>,
    returned: Condvar,
}

struct State<C> {
    /// Open connections nobody holds, most recently returned last.
    idle: Vec<C>,
    /// Slots lent out: each holds an open connection or is about to open one.
    in_use: usize,
    /// Callers blocked in `acquire`. Rust's condvar makes a futex call on every notify, waiter
    /// or not, and every lease given back would pay for one.
    waiting: usize,
}

/// A slot of the pool, given back when dropped: with its connection (kept for the next
/// caller) or without one (a connection that failed to open or was lost frees its slot).
pub(crate) struct Lease<'a, C> {
    pool: &'a Pool<C>,
    /// `None` when the slot is new or its connection was discarded: open one to use it.
    pub(crate) connection: Option<C>,
}

impl<C> Pool<C> {
    pub(crate) fn new(size: usize, timeout: Duration) -> Pool<C> {
        Pool {
            size,
            timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                in_use: 0,
                waiting: 0,
            }),
            returned: Condvar::new(),
        }
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Keeps an already open connection (the one opened to check the URL at start).
    pub(crate) fn put_idle(&self, connection: C) {
        self.lock().idle.push(connection);
    }

    /// A slot, waiting up to the pool's timeout for one to be returned. `what` names the
    /// database in the error.
    pub(crate) fn acquire(&self, what: &str) -> Result<Lease<'_, C>, SqlError> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        loop {
            if let Some(connection) = state.idle.pop() {
                state.in_use += 1;
                return Ok(self.lease(Some(connection)));
            }
            if state.in_use < self.size {
                state.in_use += 1;
                return Ok(self.lease(None));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SqlError::Database(format!(
                    "database pool exhausted: all {} connections to {what} stayed in use for {:?}; raise the pool size or look for slow transactions",
                    self.size, self.timeout
                )));
            }
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.waiting -= 1;
        }
    }

    /// The idle connections, taken out of the pool (to close them somewhere else).
    pub(crate) fn drain(&self) -> Vec<C> {
        std::mem::take(&mut self.lock().idle)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.size,
            in_use: self.lock().in_use,
        }
    }

    /// Open connections, lent out or idle.
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        let state = self.lock();
        state.in_use + state.idle.len()
    }

    fn lease(&self, connection: Option<C>) -> Lease<'_, C> {
        Lease {
            pool: self,
            connection,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // The state is a list and a counter, each left whole by every critical section.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        state.in_use -= 1;
        if let Some(connection) = self.connection.take() {
            state.idle.push(connection);
        }
        let someone_waits = state.waiting > 0;
        drop(state);
        if someone_waits {
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn connections_are_reused_and_slots_bounded() {
        let pool: Pool<u32> = Pool::new(2, Duration::from_secs(5));
        let mut first = pool.acquire("db").unwrap();
        assert!(
            first.connection.is_none(),
            "a new slot opens its connection"
        );
        first.connection = Some(7);
        drop(first);
        assert_eq!(pool.stats(), PoolStats { size: 2, in_use: 0 });
        let again = pool.acquire("db").unwrap();
        assert_eq!(again.connection, Some(7), "the idle connection is reused");
        let second = pool.acquire("db").unwrap();
        assert!(second.connection.is_none());
        assert_eq!(pool.stats(), PoolStats { size: 2, in_use: 2 });
        drop((again, second));
        assert_eq!(
            pool.open_count(),
            1,
            "a slot that opened nothing holds nothing"
        );
    }

    #[test]
    fn an_exhausted_pool_refuses_after_its_timeout() {
        let pool: Pool<u32> = Pool::new(1, Duration::from_millis(50));
        let held = pool.acquire("postgres://weir@db/registry").unwrap();
        let err = pool
            .acquire("postgres://weir@db/registry")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("pool exhausted") && err.contains("postgres://weir@db/registry"),
            "{err}"
        );
        drop(held);
        assert!(pool.acquire("db").is_ok(), "a returned slot is lent again");
    }

    #[test]
    fn a_waiting_caller_gets_the_returned_connection() {
        let pool: Arc<Pool<u32>> = Arc::new(Pool::new(3, Duration::from_secs(30)));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pool, peak) = (pool.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let mut lease = pool.acquire("db").unwrap();
                        peak.fetch_max(pool.stats().in_use, Ordering::Relaxed);
                        lease.connection.get_or_insert(1);
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(pool.stats().in_use, 0);
        assert!(pool.open_count() <= 3);
    }
}
