//! When a PostgreSQL transaction is run again, and how long to wait first.
//!
//! Transactions run SERIALIZABLE: the server guarantees that the committed ones behave as if
//! they ran one at a time, and keeps that promise by aborting one side of a conflict with
//! SQLSTATE 40001 (or 40P01, a deadlock). The aborted unit of work did nothing, so running it
//! again from the start on a fresh snapshot is always correct; it usually succeeds, since the
//! transaction it lost to has committed by then.
//!
//! A unique violation (23505) can be the same thing in disguise: two replicas both read that
//! version 4 is free and both insert it. The server cannot always tell that from a genuine
//! duplicate, but weir's stores never rely on the database to refuse a duplicate (they check,
//! or use `ON CONFLICT`), so one that reaches the database lost a race, and the next attempt
//! sees the winner's row and answers accordingly. It gets a smaller budget all the same, so a
//! real bug surfaces quickly.

use std::time::Duration;

use postgres::error::SqlState;

/// Attempts after the first for serialization failures and deadlocks.
pub(crate) const CONFLICT_RETRIES: u32 = 10;
/// Attempts after the first for unique violations.
pub(crate) const UNIQUE_RETRIES: u32 = 3;
/// Attempts after the first when the connection was lost before the commit: enough to get
/// past the stale connections a database restart leaves idle in the pool, few enough not to
/// hammer a server that is down (opening a connection that fails is not retried at all).
pub(crate) const LOST_RETRIES: u32 = 3;

/// Why a statement of a transaction failed, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Serialization failure or deadlock: retry.
    Conflict,
    /// A unique or primary key refused a row: retry, within a smaller budget.
    Unique,
    /// The connection was gone before the commit, so nothing was committed: retry on another.
    Lost,
    /// Anything else (bad SQL, a trigger's refusal): the caller's answer.
    Other,
}

impl Failure {
    pub(crate) fn of(err: &postgres::Error) -> Failure {
        match err.code() {
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Failure::Conflict
            }
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => Failure::Unique,
            _ => Failure::Other,
        }
    }

    /// Whether the `retries`-th retry (1 = the first) of a unit of work that failed this way
    /// is still within budget.
    pub(crate) fn may_retry(self, retries: u32) -> bool {
        match self {
            Failure::Conflict => retries <= CONFLICT_RETRIES,
            Failure::Unique => retries <= UNIQUE_RETRIES,
            Failure::Lost => retries <= LOST_RETRIES,
            Failure::Other => false,
        }
    }
}

/// The pause before the `retry`-th retry: random in [0, 2 ms × 2^retry], capped at 250 ms.
/// Randomised so that the transactions that collided do not collide again in step.
pub(crate) fn backoff(retry: u32) -> Duration {
    let ceiling_ms = 2u64.saturating_mul(1 << retry.min(16)).min(250);
    Duration::from_micros(rand::random_range(0..=ceiling_ms * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_differ_by_failure() {
        assert!(Failure::Conflict.may_retry(CONFLICT_RETRIES));
        assert!(!Failure::Conflict.may_retry(CONFLICT_RETRIES + 1));
        assert!(Failure::Unique.may_retry(UNIQUE_RETRIES));
        assert!(!Failure::Unique.may_retry(UNIQUE_RETRIES + 1));
        assert!(!Failure::Lost.may_retry(LOST_RETRIES + 1));
        assert!(!Failure::Other.may_retry(1));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for retry in 1..40 {
            let ceiling = Duration::from_millis((2u64 << retry.min(16)).min(250));
            assert!(backoff(retry) <= ceiling, "retry {retry}");
        }
        assert!(backoff(1) <= Duration::from_millis(4));
    }
}
