//! Fresh databases for tests of the stores built on this crate.
//!
//! SQLite is always there. PostgreSQL is used when `WEIR_TEST_POSTGRES_URL` names a server the
//! tests may create databases on (`make test` starts a private one with `scripts/postgres.sh`);
//! when `WEIR_REQUIRE_POSTGRES=1` is set, as `make test` does, its absence fails the test instead
//! of skipping that half, so CI cannot pass on SQLite alone.

use std::sync::atomic::{AtomicUsize, Ordering};

/// An empty database that is dropped (PostgreSQL) or deleted (SQLite) with this value.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Files(std::path::PathBuf),
    Database { admin: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Files(path) => remove_sqlite(path),
            Cleanup::Database { admin, name } => {
                // The driver runs its own runtime; keep it off any async test's thread.
                let (admin, name) = (admin.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    if let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) {
                        let _ = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                    }
                })
                .join();
            }
        }
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    format!(
        "weir_{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

pub fn sqlite(tag: &str) -> TestDatabase {
    let path = std::env::temp_dir().join(format!("{}.db", unique(tag)));
    remove_sqlite(&path);
    TestDatabase {
        url: format!("sqlite://{}", path.display()),
        cleanup: Cleanup::Files(path),
    }
}

/// A fresh PostgreSQL database, or `None` when no test server is configured.
pub fn postgres(tag: &str) -> Option<TestDatabase> {
    let admin = match std::env::var("WEIR_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("WEIR_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "WEIR_REQUIRE_POSTGRES=1 but WEIR_TEST_POSTGRES_URL is not set (scripts/postgres.sh prints it)"
            );
            eprintln!("WEIR_TEST_POSTGRES_URL is not set: skipping the PostgreSQL half");
            return None;
        }
    };
    let name = unique(tag);
    let (admin_for_thread, name_for_thread) = (admin.clone(), name.clone());
    std::thread::spawn(move || -> Result<(), postgres::Error> {
        let mut client = postgres::Client::connect(&admin_for_thread, postgres::NoTls)?;
        client.batch_execute(&format!("CREATE DATABASE {name_for_thread}"))
    })
    .join()
    .expect("creating the test database panicked")
    .unwrap_or_else(|err| panic!("cannot create a test database on {admin}: {err}"));
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("WEIR_TEST_POSTGRES_URL must end in /DATABASE, got {admin}"),
    };
    Some(TestDatabase {
        url,
        cleanup: Cleanup::Database { admin, name },
    })
}

/// A fresh SQLite database and, when configured, a fresh PostgreSQL one.
pub fn each(tag: &str) -> Vec<TestDatabase> {
    let mut databases = vec![sqlite(tag)];
    databases.extend(postgres(tag));
    databases
}
