//! How a [`crate::Database`] is opened, and what its pool reports.

/// The pool size unless told otherwise: enough for a registry's concurrent requests without
/// taking much of PostgreSQL's `max_connections` (100 by default) when several replicas share it.
pub const DEFAULT_POOL_SIZE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The most PostgreSQL connections open at once (at least 1). SQLite ignores it: a file has
    /// one writer, so it keeps one connection.
    pub pool_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

/// A snapshot of the connection pool, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// The most connections the pool opens (SQLite: 1).
    pub size: usize,
    /// Connections lent to a unit of work right now (never more than `size`).
    pub in_use: usize,
}
