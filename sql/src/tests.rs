use super::*;

const SCHEMA: &[Migration] = &[
    Migration::same(
        "CREATE TABLE things (name TEXT PRIMARY KEY, size BIGINT, ratio DOUBLE PRECISION);",
    ),
    Migration {
        sqlite: "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT NOT NULL);",
        postgres: "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, what TEXT NOT NULL);",
    },
];

fn each_database(tag: &str, check: impl Fn(&Database)) {
    for test_db in testing::each(tag) {
        let db = Database::open(&test_db.url).unwrap();
        db.migrate("test_schema", SCHEMA).unwrap();
        check(&db);
    }
}

#[test]
fn values_round_trip_with_placeholders_in_both_styles() {
    each_database("roundtrip", |db| {
        db.transaction(|tx: &mut dyn Sql| {
            tx.execute(
                "INSERT INTO things (name, size, ratio) VALUES (?1, ?2, ?3)",
                params!["it's", 42_i64, 0.25],
            )?;
            tx.execute(
                "INSERT INTO things (name, size, ratio) VALUES (?, ?, ?)",
                params!["empty", None::<i64>, f64::INFINITY],
            )
        })
        .unwrap();
        let rows = db
            .transaction(|tx: &mut dyn Sql| {
                tx.query(
                    "SELECT name, size, ratio FROM things WHERE name LIKE ?1 OR name = ?2 ORDER BY name",
                    params!["it%", "empty"],
                )
            })
            .unwrap();
        assert_eq!(rows.len(), 2, "{:?}", db.dialect());
        assert_eq!(rows[0].get::<Option<i64>>(1).unwrap(), None);
        assert_eq!(rows[0].get::<f64>(2).unwrap(), f64::INFINITY);
        assert_eq!(rows[1].get::<String>(0).unwrap(), "it's");
        assert_eq!(rows[1].get::<i64>(1).unwrap(), 42);
        // LIKE is case-sensitive on both engines.
        let upper: Option<String> = db
            .transaction(|tx: &mut dyn Sql| {
                tx.query_value("SELECT name FROM things WHERE name LIKE 'IT%'", &[])
            })
            .unwrap();
        assert_eq!(upper, None);
    });
}

#[test]
fn failed_work_rolls_back_and_conflicts_are_recognised() {
    each_database("rollback", |db| {
        let result: Result<(), SqlError> = db.transaction(|tx: &mut dyn Sql| {
            tx.execute("INSERT INTO events (what) VALUES (?1)", params!["first"])?;
            tx.execute("INSERT INTO things (name) VALUES (?1)", params!["a"])?;
            tx.execute("INSERT INTO things (name) VALUES (?1)", params!["a"])?;
            Ok(())
        });
        assert!(
            matches!(result, Err(SqlError::UniqueViolation(_))),
            "{:?}: {result:?}",
            db.dialect()
        );
        let count: i64 = db
            .transaction(|tx: &mut dyn Sql| tx.query_value("SELECT COUNT(*) FROM events", &[]))
            .unwrap()
            .unwrap();
        assert_eq!(count, 0, "the whole transaction rolled back");
        // Errors in SQL itself name the problem and leave the connection usable.
        let err = db
            .transaction(|tx: &mut dyn Sql| tx.query("SELECT nope FROM things", &[]))
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        db.transaction(|tx: &mut dyn Sql| {
            tx.execute("INSERT INTO events (what) VALUES ('x')", &[])
        })
        .unwrap();
    });
}

#[test]
fn migrations_run_once_and_record_their_steps() {
    each_database("migrate", |db| {
        db.migrate("test_schema", SCHEMA).unwrap();
        let steps: i64 = db
            .transaction(|tx: &mut dyn Sql| tx.query_value("SELECT COUNT(*) FROM test_schema", &[]))
            .unwrap()
            .unwrap();
        assert_eq!(steps, 2);
    });
}

#[test]
fn postgres_reconnects_after_losing_its_connection() {
    let Some(test_db) = testing::postgres("reconnect") else {
        return;
    };
    let db = Database::open(&test_db.url).unwrap();
    db.migrate("test_schema", SCHEMA).unwrap();
    let pid: i64 = db
        .transaction(|tx: &mut dyn Sql| tx.query_value("SELECT pg_backend_pid()::bigint", &[]))
        .unwrap()
        .unwrap();
    let killer = Database::open(&test_db.url).unwrap();
    killer
        .transaction(|tx: &mut dyn Sql| {
            tx.query("SELECT pg_terminate_backend(?1::int)::text", params![pid])
        })
        .unwrap();
    // pg_terminate_backend only signals: wait until the backend is really gone, or the first
    // use below could still be answered by it and the second meet the loss.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alive: i64 = killer
            .transaction(|tx: &mut dyn Sql| {
                tx.query_value(
                    "SELECT count(*)::bigint FROM pg_stat_activity WHERE pid = ?1::int",
                    params![pid],
                )
            })
            .unwrap()
            .unwrap();
        if alive == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend {pid} still alive"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The first use may learn of the loss; the next one is on a new connection.
    let _ = db.transaction(|tx: &mut dyn Sql| tx.query("SELECT 1::bigint", &[]));
    let again: i64 = db
        .transaction(|tx: &mut dyn Sql| tx.query_value("SELECT pg_backend_pid()::bigint", &[]))
        .unwrap()
        .unwrap();
    assert_ne!(again, pid);
}

#[test]
fn postgres_over_tls_verifies_the_server() {
    let Some(test_db) = testing::postgres("tls") else {
        return;
    };
    let setting = |db: &Database, sql: &str| -> String {
        db.transaction(|tx: &mut dyn Sql| tx.query_value(sql, &[]))
            .unwrap()
            .unwrap()
    };
    let plain = Database::open(&test_db.url).unwrap();
    // scripts/postgres.sh turns TLS on and keeps its CAs beside the server's certificate.
    assert_eq!(setting(&plain, "SELECT current_setting('ssl')"), "on");
    let certificate = setting(&plain, "SELECT current_setting('ssl_cert_file')");
    let tls_dir = std::path::Path::new(&certificate)
        .parent()
        .unwrap()
        .to_owned();
    let encrypted = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(setting(&plain, encrypted), "false", "no TLS unless asked");

    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!(
            "{}?sslmode={mode}&sslrootcert={}",
            test_db.url,
            tls_dir.join("ca.pem").display()
        );
        let db = Database::open(&url).unwrap();
        assert_eq!(setting(&db, encrypted), "true", "{mode}");
    }
    // A CA that did not sign the server's certificate: refused, and the message says why.
    let stranger = format!(
        "{}?sslmode=require&sslrootcert={}",
        test_db.url,
        tls_dir.join("other-ca.pem").display()
    );
    let err = Database::open(&stranger).err().unwrap().to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The server's name is checked too: the certificate names 127.0.0.1 and localhost, so
    // the same server reached as another name (hostaddr keeps the address) is refused.
    let renamed = format!(
        "{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        test_db.url.replacen("@127.0.0.1:", "@db.example:", 1),
        tls_dir.join("ca.pem").display()
    );
    assert!(
        renamed.contains("@db.example:"),
        "the test server is on 127.0.0.1"
    );
    let err = Database::open(&renamed).err().unwrap().to_string();
    assert!(err.contains("not valid for name \"db.example\""), "{err}");
}

#[test]
fn urls_choose_the_engine() {
    assert!(matches!(
        Database::open("mysql://x"),
        Err(SqlError::UnsupportedUrl(_))
    ));
    assert_eq!(
        Database::open("sqlite::memory:").unwrap().dialect(),
        Dialect::Sqlite
    );
    let err = Database::open("postgres://weir@127.0.0.1:1/none")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn errors_never_show_a_password() {
    let err = Database::open("mysql://u:secret@h/db")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("'mysql://u:***@h/db'") && !err.contains("secret"),
        "{err}"
    );
    for url in [
        "postgres://weir:secret@127.0.0.1:1/none",
        "postgres://weir@127.0.0.1:1/none?password=secret",
        "postgres://weir@127.0.0.1:1/none?connect_timeout=5&password=secret",
        // Refused by the driver's parser rather than at connect time.
        "postgres://weir:secret@127.0.0.1:notaport/none",
        "postgres://weir:secret@127.0.0.1:1/none?sslmode=nonsense",
        "postgres://weir:secret@127.0.0.1:1/none?sslmode=require&sslrootcert=/nonexistent/ca.pem",
    ] {
        let err = Database::open(url).err().unwrap();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("secret"), "{url}: {shown}");
        assert!(
            shown.contains("cannot connect to postgres://weir"),
            "{url}: {shown}"
        );
    }
}
