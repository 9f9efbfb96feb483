//! Leases: a name held by one holder until a time on the database's clock ([`crate::clock`]).
//!
//! Acquiring is one upsert that takes the row only when it is free, expired, or already the
//! caller's (a renewal), followed by a read of who holds it now, in one transaction: two
//! replicas asking at once get one yes and one "held by X". A holder learns how long it may act
//! as `remaining_ms`, which it counts from before it asked on its own monotonic clock, so a slow
//! answer shortens its tenure rather than stretching it past the database's expiry.

use std::time::Duration;

use serde::Serialize;
use weir_sql::{params, Sql};

use crate::clock::Clock;
use crate::{names, Coordination, CoordinationError};

/// Longest lease one call grants: a holder that vanishes blocks the others for at most this.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Who holds a lease after an acquire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub name: String,
    /// The holder now: the caller when `granted`, else the one that keeps it.
    pub holder: String,
    /// When it ends, by the database's clock (milliseconds since the Unix epoch).
    pub expires_at_ms: i64,
    /// Whether the caller holds it now (taken or renewed).
    pub granted: bool,
    /// How long it still runs, measured when it was decided: what a holder may count down on
    /// its own clock, which need not agree with the database's.
    pub remaining_ms: i64,
}

impl Coordination {
    /// Takes or renews the lease `name` for `holder` for `ttl`: granted when nobody holds it,
    /// its holder's time ran out, or `holder` holds it already. Otherwise says who holds it.
    pub fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        self.acquire_at(name, holder, ttl, Clock::Database)
    }

    pub(crate) fn acquire_at(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        clock: Clock,
    ) -> Result<Lease, CoordinationError> {
        names::check("name", name)?;
        names::check("holder", holder)?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(CoordinationError::Invalid(format!(
                "'ttl' must be more than 0 and at most {}, got {}",
                weir_http::duration::format_duration(MAX_TTL),
                weir_http::duration::format_duration(ttl)
            )));
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        self.db.transaction(|db: &mut dyn Sql| {
            let now = clock.now_ms(db)?;
            db.execute(
                "INSERT INTO weir_coordination_leases (name, holder, expires_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
                 WHERE weir_coordination_leases.holder = excluded.holder
                    OR weir_coordination_leases.expires_at_ms <= ?4",
                params![name, holder, now.saturating_add(ttl_ms), now],
            )?;
            let row = db
                .query_row(
                    "SELECT holder, expires_at_ms FROM weir_coordination_leases WHERE name = ?1",
                    params![name],
                )?
                .ok_or_else(|| {
                    weir_sql::SqlError::Database(format!("lease '{name}' vanished while taken"))
                })?;
            let (current, expires_at_ms): (String, i64) = (row.get(0)?, row.get(1)?);
            Ok(Lease {
                name: name.to_owned(),
                granted: current == holder,
                holder: current,
                expires_at_ms,
                remaining_ms: (expires_at_ms - now).max(0),
            })
        })
    }

    /// Gives the lease up if `holder` holds it (a clean hand-over, without waiting for the
    /// expiry); whether it did.
    pub fn release(&self, name: &str, holder: &str) -> Result<bool, CoordinationError> {
        names::check("name", name)?;
        names::check("holder", holder)?;
        let released = self.db.transaction(|db: &mut dyn Sql| {
            db.execute(
                "DELETE FROM weir_coordination_leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
        })?;
        Ok(released == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_SECONDS: Duration = Duration::from_secs(10);

    fn each() -> Vec<(weir_sql::testing::TestDatabase, Coordination)> {
        weir_sql::testing::each("coordination_leases")
            .into_iter()
            .map(|db| {
                let coordination = Coordination::open(&db.url).unwrap();
                (db, coordination)
            })
            .collect()
    }

    #[test]
    fn a_lease_is_granted_denied_renewed_and_taken_over_after_expiry() {
        for (_db, store) in each() {
            let at = |ms| Clock::Fixed(ms);
            let a = store
                .acquire_at("rollout/iris", "a", TEN_SECONDS, at(1_000))
                .unwrap();
            assert!(a.granted);
            assert_eq!(
                (a.holder.as_str(), a.expires_at_ms, a.remaining_ms),
                ("a", 11_000, 10_000)
            );

            // Held: another holder is told who has it and until when.
            let b = store
                .acquire_at("rollout/iris", "b", TEN_SECONDS, at(5_000))
                .unwrap();
            assert!(!b.granted);
            assert_eq!(
                (b.holder.as_str(), b.expires_at_ms, b.remaining_ms),
                ("a", 11_000, 6_000)
            );

            // The holder renews: the expiry moves from the renewal.
            let renewed = store
                .acquire_at("rollout/iris", "a", TEN_SECONDS, at(9_000))
                .unwrap();
            assert!(renewed.granted);
            assert_eq!(renewed.expires_at_ms, 19_000);
            let b = store
                .acquire_at("rollout/iris", "b", TEN_SECONDS, at(18_999))
                .unwrap();
            assert!(!b.granted, "one millisecond before the end it is still a's");

            // Expired: the next caller takes it, and the former holder cannot renew.
            let b = store
                .acquire_at("rollout/iris", "b", TEN_SECONDS, at(19_000))
                .unwrap();
            assert!(b.granted);
            assert_eq!((b.holder.as_str(), b.expires_at_ms), ("b", 29_000));
            let a = store
                .acquire_at("rollout/iris", "a", TEN_SECONDS, at(19_001))
                .unwrap();
            assert!(!a.granted);
            assert_eq!(a.holder, "b");

            // Other names are other leases.
            assert!(
                store
                    .acquire_at("rollout/other", "a", TEN_SECONDS, at(19_001))
                    .unwrap()
                    .granted
            );
        }
    }

    #[test]
    fn release_hands_over_only_the_holders_lease() {
        for (_db, store) in each() {
            assert!(
                store
                    .acquire("rollout/iris", "a", TEN_SECONDS)
                    .unwrap()
                    .granted
            );
            assert!(
                !store
                    .acquire("rollout/iris", "b", TEN_SECONDS)
                    .unwrap()
                    .granted
            );
            assert!(
                !store.release("rollout/iris", "b").unwrap(),
                "b does not hold it"
            );
            assert!(
                !store
                    .acquire("rollout/iris", "b", TEN_SECONDS)
                    .unwrap()
                    .granted
            );
            assert!(store.release("rollout/iris", "a").unwrap());
            assert!(
                !store.release("rollout/iris", "a").unwrap(),
                "released once"
            );
            let b = store.acquire("rollout/iris", "b", TEN_SECONDS).unwrap();
            assert!(b.granted);
            assert!(b.remaining_ms > 0 && b.remaining_ms <= 10_000, "{b:?}");
        }
    }

    #[test]
    fn the_database_clock_is_the_one_that_counts() {
        for (db, store) in each() {
            let lease = store.acquire("clock", "a", TEN_SECONDS).unwrap();
            let local = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            // The test's database runs on this machine: its clock is within a minute of ours
            // (what matters is that the expiry came from a clock, not from zero or a constant).
            let started = lease.expires_at_ms - 10_000;
            assert!(
                (started - local).abs() < 60_000,
                "{} {lease:?} vs {local}",
                db.url
            );
        }
    }

    #[test]
    fn bad_names_holders_and_ttls_are_refused_by_field() {
        for (_db, store) in each() {
            for (name, holder, ttl, field) in [
                ("", "a", TEN_SECONDS, "'name'"),
                ("x", "a b", TEN_SECONDS, "'holder'"),
                ("x", "a", Duration::ZERO, "'ttl'"),
                ("x", "a", MAX_TTL + Duration::from_millis(1), "'ttl'"),
            ] {
                let refused = store.acquire(name, holder, ttl).unwrap_err().to_string();
                assert!(refused.contains(field), "{refused}");
            }
            assert!(store.release("x", "").is_err());
        }
    }
}
