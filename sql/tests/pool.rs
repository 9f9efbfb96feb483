//! The PostgreSQL pool and its transactions under concurrency: bounded, reused, re-opened after
//! the server drops a connection, and correct when units of work collide (SERIALIZABLE, retried).
//! PostgreSQL comes from WEIR_TEST_POSTGRES_URL; without it these tests skip, unless
//! WEIR_REQUIRE_POSTGRES=1 (see `weir_sql::testing`).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use weir_sql::testing::{self, TestDatabase};
use weir_sql::{params, Database, Migration, Options, PoolStats, Sql, SqlError};

const SCHEMA: &[Migration] = &[Migration::same(
    "CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
     CREATE TABLE numbered (id BIGINT PRIMARY KEY, who TEXT NOT NULL);
     INSERT INTO counters (name, n) VALUES ('hits', 0);",
)];

fn postgres(tag: &str, pool_size: usize) -> Option<(TestDatabase, Database)> {
    let test_db = testing::postgres(tag)?;
    let db = Database::open_with(&test_db.url, Options { pool_size }).unwrap();
    db.migrate("pool_test_schema", SCHEMA).unwrap();
    Some((test_db, db))
}

fn counter(db: &Database) -> i64 {
    db.transaction(|tx: &mut dyn Sql| {
        tx.query_value("SELECT n FROM counters WHERE name = 'hits'", &[])
    })
    .unwrap()
    .unwrap()
}

/// Reads the counter and writes it back one higher: a lost update unless transactions are
/// serializable.
fn increment(tx: &mut dyn Sql) -> Result<(), SqlError> {
    let n: i64 = tx
        .query_value("SELECT n FROM counters WHERE name = 'hits'", &[])?
        .unwrap_or(0);
    tx.execute(
        "UPDATE counters SET n = ?1 WHERE name = 'hits'",
        params![n + 1],
    )?;
    Ok(())
}

fn backend_pid(tx: &mut dyn Sql) -> Result<i64, SqlError> {
    Ok(tx
        .query_value("SELECT pg_backend_pid()::bigint", &[])?
        .unwrap_or(0))
}

#[test]
fn a_conflicting_transaction_is_run_again_and_both_changes_land() {
    let Some((test_db, db)) = postgres("pool_conflict", 2) else {
        return;
    };
    let other = Database::open(&test_db.url).unwrap();
    let mut attempts = 0;
    db.transaction(|tx: &mut dyn Sql| {
        attempts += 1;
        let n: i64 = tx
            .query_value("SELECT n FROM counters WHERE name = 'hits'", &[])?
            .unwrap_or(0);
        if attempts == 1 {
            // Another replica changes the row this transaction has read, and commits first.
            other.transaction(increment)?;
        }
        tx.execute(
            "UPDATE counters SET n = ?1 WHERE name = 'hits'",
            params![n + 1],
        )?;
        Ok::<_, SqlError>(())
    })
    .unwrap();
    assert_eq!(attempts, 2, "the first attempt lost to the other replica");
    assert_eq!(db.retries(), 1);
    assert_eq!(counter(&db), 2, "neither increment was lost");
}

#[test]
fn conflicts_are_retried_a_bounded_number_of_times() {
    let Some((test_db, db)) = postgres("pool_bounded_retries", 2) else {
        return;
    };
    let other = Database::open(&test_db.url).unwrap();
    let mut attempts = 0;
    let err = db
        .transaction(|tx: &mut dyn Sql| {
            attempts += 1;
            tx.query("SELECT n FROM counters WHERE name = 'hits'", &[])?;
            other.transaction(increment)?;
            tx.execute("UPDATE counters SET n = n + 100 WHERE name = 'hits'", &[])?;
            Ok::<_, SqlError>(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("could not serialize"), "{err}");
    assert_eq!(attempts, 11, "the first attempt and 10 retries");
    assert_eq!(
        counter(&db),
        11,
        "only the other replica's changes committed"
    );
}

#[test]
fn a_unique_violation_from_a_lost_race_is_retried() {
    let Some((test_db, db)) = postgres("pool_unique_race", 2) else {
        return;
    };
    let other = Database::open(&test_db.url).unwrap();
    let mut attempts = 0;
    let id = db
        .transaction(|tx: &mut dyn Sql| {
            attempts += 1;
            let next: i64 = tx
                .query_value("SELECT COALESCE(MAX(id), 0) + 1 FROM numbered", &[])?
                .unwrap_or(1);
            if attempts == 1 {
                // The other replica takes the same number first.
                other.transaction(|o: &mut dyn Sql| {
                    o.execute(
                        "INSERT INTO numbered (id, who) VALUES (?1, 'other')",
                        params![next],
                    )
                })?;
            }
            tx.execute(
                "INSERT INTO numbered (id, who) VALUES (?1, 'me')",
                params![next],
            )?;
            Ok::<_, SqlError>(next)
        })
        .unwrap();
    assert_eq!((attempts, id), (2, 2), "the retry took the next number");
    // A genuine duplicate is still refused, after a few attempts that meet it again.
    let mut attempts = 0;
    let err = db
        .transaction(|tx: &mut dyn Sql| {
            attempts += 1;
            tx.execute("INSERT INTO numbered (id, who) VALUES (1, 'again')", &[])
        })
        .unwrap_err();
    assert!(matches!(err, SqlError::UniqueViolation(_)), "{err:?}");
    assert_eq!(attempts, 4, "the first attempt and 3 retries");
}

#[test]
fn other_failures_are_not_retried_and_ignored_failures_do_not_commit() {
    let Some((_test_db, db)) = postgres("pool_no_retry", 2) else {
        return;
    };
    let mut attempts = 0;
    let err = db
        .transaction(|tx: &mut dyn Sql| {
            attempts += 1;
            tx.query("SELECT nope FROM counters", &[])
        })
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(attempts, 1);
    // Work that swallows a failed statement and claims success is not committed: PostgreSQL
    // ignored everything after the failure.
    let err = db
        .transaction(|tx: &mut dyn Sql| {
            tx.execute("UPDATE counters SET n = 5 WHERE name = 'hits'", &[])?;
            let _ = tx.query("SELECT nope FROM counters", &[]);
            Ok::<_, SqlError>(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("aborted"), "{err}");
    assert_eq!(counter(&db), 0);
    assert_eq!(db.retries(), 0);
}

#[test]
fn concurrent_increments_through_the_pool_add_up_exactly() {
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let Some((_test_db, db)) = postgres("pool_counter", 4) else {
        return;
    };
    let db = Arc::new(db);
    let attempts = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (db, attempts, peak) = (db.clone(), attempts.clone(), peak.clone());
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    db.transaction(|tx: &mut dyn Sql| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        peak.fetch_max(db.pool_stats().in_use, Ordering::Relaxed);
                        increment(tx)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(counter(&db), (THREADS * EACH) as i64);
    let attempts = attempts.load(Ordering::Relaxed);
    assert_eq!(
        attempts as u64,
        (THREADS * EACH) as u64 + db.retries(),
        "every attempt beyond one per increment is a counted retry"
    );
    assert!(peak.load(Ordering::Relaxed) <= 4);
    assert_eq!(db.pool_stats(), PoolStats { size: 4, in_use: 0 });
    eprintln!("{} increments took {attempts} attempts", THREADS * EACH);
}

#[test]
fn the_pool_never_opens_more_connections_than_its_size() {
    let Some((_test_db, db)) = postgres("pool_bounded", 3) else {
        return;
    };
    let db = Arc::new(db);
    let pids = Arc::new(Mutex::new(HashSet::new()));
    // All eight start together, so the pool is asked for more than it has.
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (db, pids, start) = (db.clone(), pids.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..10 {
                    let pid = db
                        .transaction(|tx: &mut dyn Sql| {
                            let stats = db.pool_stats();
                            assert!(stats.in_use >= 1 && stats.in_use <= 3, "{stats:?}");
                            tx.query("SELECT pg_sleep(0.005)::text", &[])?;
                            backend_pid(tx)
                        })
                        .unwrap();
                    pids.lock().unwrap().insert(pid);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let pids = pids.lock().unwrap().len();
    assert!((1..=3).contains(&pids), "{pids} connections were used");
}

#[test]
fn an_exhausted_pool_makes_callers_wait_then_refuses() {
    let Some((_test_db, db)) = postgres("pool_exhausted", 1) else {
        return;
    };
    let db = db.with_pool_timeout(Duration::from_millis(200));
    db.transaction(|tx: &mut dyn Sql| {
        // This transaction holds the only connection while another caller asks for one.
        let refused = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    db.transaction(|other: &mut dyn Sql| other.query("SELECT 1::bigint", &[]))
                })
                .join()
                .unwrap()
        });
        let err = refused.unwrap_err().to_string();
        assert!(err.contains("pool exhausted"), "{err}");
        assert_eq!(db.pool_stats(), PoolStats { size: 1, in_use: 1 });
        tx.query("SELECT 1::bigint", &[])
    })
    .unwrap();
    // Once it is given back, the next caller gets it.
    db.transaction(|tx: &mut dyn Sql| tx.query("SELECT 1::bigint", &[]))
        .unwrap();
}

#[test]
fn killed_connections_are_replaced_without_failing_the_work() {
    let Some((test_db, db)) = postgres("pool_reconnect", 2) else {
        return;
    };
    // Two transactions at once, so the pool opens (and then keeps) two connections.
    let both = Barrier::new(2);
    let pids: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    db.transaction(|tx: &mut dyn Sql| {
                        both.wait();
                        backend_pid(tx)
                    })
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(pids[0], pids[1]);
    let killer = Database::open(&test_db.url).unwrap();
    for pid in &pids {
        killer
            .transaction(|tx: &mut dyn Sql| {
                tx.query("SELECT pg_terminate_backend(?1::int)::text", params![*pid])
            })
            .unwrap();
    }
    // pg_terminate_backend only signals: wait until both backends are really gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: i64 = killer
            .transaction(|tx: &mut dyn Sql| {
                tx.query_value(
                    "SELECT count(*)::bigint FROM pg_stat_activity WHERE pid = ANY(ARRAY[?1, ?2]::int[])",
                    params![pids[0], pids[1]],
                )
            })
            .unwrap()
            .unwrap();
        if alive == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backends {pids:?} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both pooled connections are dead; the work still succeeds, on a new one.
    let pid = db.transaction(backend_pid).unwrap();
    assert!(!pids.contains(&pid), "{pid} is one of the killed {pids:?}");
    assert!(db.retries() >= 1, "the dead connections cost a retry");
    let again = db.transaction(backend_pid).unwrap();
    assert!(!pids.contains(&again));
    assert!(db.pool_stats().in_use == 0);
}

#[test]
fn pool_options_are_checked_and_sqlite_keeps_one_connection() {
    let err = Database::open_with("sqlite::memory:", Options { pool_size: 0 })
        .err()
        .unwrap();
    assert!(matches!(err, SqlError::PoolSize(0)), "{err:?}");
    assert!(err.to_string().contains("pool size 0"), "{err}");
    assert_eq!(Options::default().pool_size, weir_sql::DEFAULT_POOL_SIZE);
    let sqlite = testing::sqlite("pool_sqlite");
    let db = Database::open_with(&sqlite.url, Options { pool_size: 16 }).unwrap();
    db.migrate("pool_test_schema", SCHEMA).unwrap();
    assert_eq!(db.pool_stats(), PoolStats { size: 1, in_use: 0 });
    let inside = db
        .transaction(|tx: &mut dyn Sql| {
            increment(tx)?;
            Ok::<_, SqlError>(db.pool_stats())
        })
        .unwrap();
    assert_eq!(inside, PoolStats { size: 1, in_use: 1 });
    assert_eq!(counter(&db), 1);
    assert_eq!(db.retries(), 0);
}

/// The last holder of a database may be an async task (a server shutting down, an async
/// test): dropping it there closes its connections without upsetting the runtime.
#[test]
fn a_database_can_be_dropped_on_an_async_thread() {
    let Some((_test_db, db)) = postgres("pool_async_drop", 2) else {
        return;
    };
    db.transaction(backend_pid).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move { drop(db) });
}
