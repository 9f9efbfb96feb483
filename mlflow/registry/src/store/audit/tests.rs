use crate::store::tests::each_store;
use crate::store::*;

#[test]
fn every_change_is_audited_and_the_log_is_append_only() {
    each_store("audit", |store, url| {
        store
            .create_registered_model("alice", "m", "first", &[])
            .unwrap();
        store
            .create_model_version(
                "alice",
                "m",
                &NewVersion {
                    source: "s3://x".into(),
                    ..NewVersion::default()
                },
            )
            .unwrap();
        store
            .decide("bob", "m", "1", Decision::Approve, "fine")
            .unwrap();
        store.set_alias("bob", "m", "production", "1").unwrap();
        store
            .update_registered_model("carol", "m", "second")
            .unwrap();
        assert!(
            store.set_alias("carol", "nope", "x", "1").is_err(),
            "failed changes are not logged"
        );
        let events = store.audit(Some("m"), None, None, 100).unwrap();
        let summary: Vec<(&str, &str, &str, &str)> = events
            .iter()
            .rev()
            .map(|e| {
                (
                    e.user.as_str(),
                    e.action.as_str(),
                    e.before.as_str(),
                    e.after.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("alice", "create_registered_model", "", "first"),
                ("alice", "create_model_version", "", "s3://x"),
                ("bob", "approve", "", "fine"),
                ("bob", "set_alias", "production=", "production=1"),
                ("carol", "update_registered_model", "first", "second"),
            ]
        );
        assert_eq!(
            store
                .audit(None, Some("approve"), Some("bob"), 10)
                .unwrap()
                .len(),
            1
        );
        let db = weir_sql::Database::open(url).unwrap();
        for tampering in [
            "DELETE FROM audit_log",
            "UPDATE audit_log SET user_id = 'mallory'",
        ] {
            let result = db.transaction(|tx: &mut dyn weir_sql::Sql| tx.execute(tampering, &[]));
            let err = result.expect_err(tampering).to_string();
            assert!(err.contains("append-only"), "{url}: {err}");
        }
        if url.starts_with("postgres") {
            let result =
                db.transaction(|tx: &mut dyn weir_sql::Sql| tx.execute("TRUNCATE audit_log", &[]));
            assert!(result.is_err(), "truncating the audit log must fail");
        }
    });
}

#[test]
fn record_event_appends_to_the_audit_log() {
    each_store("record-event", |store, _| {
        store
            .record_event("mallory", "artifact.delete", "", "", "", "refused: .")
            .unwrap();
        let entry = &store.audit(None, None, Some("mallory"), 10).unwrap()[0];
        assert_eq!(
            (
                entry.action.as_str(),
                entry.model.as_str(),
                entry.after.as_str()
            ),
            ("artifact.delete", "", "refused: .")
        );
    });
}
