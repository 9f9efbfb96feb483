use super::*;
use crate::store::Decision;

/// Runs a check against a fresh registry on SQLite and, when configured, on PostgreSQL.
fn each_store(tag: &str, check: impl Fn(&Store, &str)) {
    for db in weir_sql::testing::each(tag) {
        check(&Store::open(&db.url).unwrap(), &db.url);
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn models_versions_tags_and_aliases() {
    each_store("basics", |store, _| {
        let model = store
            .create_registered_model("alice", "iris", "flowers", &[tag("team", "ml")])
            .unwrap();
        assert_eq!(model.tags, [tag("team", "ml")]);
        assert!(matches!(
            store.create_registered_model("alice", "iris", "", &[]),
            Err(StoreError::AlreadyExists(_))
        ));
        let v1 = store
            .create_model_version(
                "alice",
                "iris",
                &NewVersion {
                    source: "s3://a".into(),
                    ..NewVersion::default()
                },
            )
            .unwrap();
        let v2 = store
            .create_model_version(
                "alice",
                "iris",
                &NewVersion {
                    tags: vec![tag("k", "v")],
                    ..NewVersion::default()
                },
            )
            .unwrap();
        assert_eq!((v1.version.as_str(), v2.version.as_str()), ("1", "2"));
        assert_eq!(v1.status, "READY");
        assert_eq!(v2.tags, [tag("k", "v")]);
        store.set_alias("alice", "iris", "candidate", "1").unwrap();
        assert_eq!(
            store
                .get_version_by_alias("iris", "candidate")
                .unwrap()
                .version,
            "1"
        );
        assert_eq!(
            store.get_model_version("iris", "1").unwrap().aliases,
            ["candidate"]
        );
        store.set_alias("alice", "iris", "candidate", "2").unwrap();
        assert_eq!(
            store
                .get_version_by_alias("iris", "candidate")
                .unwrap()
                .version,
            "2"
        );
        assert!(matches!(
            store.get_version_by_alias("iris", "nope"),
            Err(StoreError::InvalidParameter(_))
        ));
        assert!(matches!(
            store.set_alias("alice", "iris", "7", "1"),
            Err(StoreError::InvalidParameter(_))
        ));
        store.delete_alias("alice", "iris", "candidate").unwrap();
        assert!(store
            .get_registered_model("iris")
            .unwrap()
            .aliases
            .is_empty());
        store
            .set_model_version_tag("alice", "iris", "1", &tag("validated", "yes"))
            .unwrap();
        store
            .delete_model_version_tag("alice", "iris", "2", "k")
            .unwrap();
        assert!(store
            .get_model_version("iris", "2")
            .unwrap()
            .tags
            .is_empty());
        assert!(matches!(
            store.get_model_version("iris", "9"),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.get_model_version("iris", "x"),
            Err(StoreError::InvalidParameter(_))
        ));
        assert!(matches!(
            store.create_model_version("alice", "nope", &NewVersion::default()),
            Err(StoreError::NotFound(_))
        ));
    });
}

#[test]
fn renames_and_deletes_cascade() {
    each_store("cascade", |store, _| {
        store
            .create_registered_model("alice", "a", "", &[tag("t", "1")])
            .unwrap();
        store
            .create_model_version(
                "alice",
                "a",
                &NewVersion {
                    tags: vec![tag("x", "y")],
                    ..NewVersion::default()
                },
            )
            .unwrap();
        store.set_alias("alice", "a", "prod", "1").unwrap();
        let renamed = store.rename_registered_model("alice", "a", "b").unwrap();
        assert_eq!(
            renamed.aliases,
            [Alias {
                alias: "prod".into(),
                version: "1".into()
            }]
        );
        assert_eq!(renamed.tags, [tag("t", "1")]);
        assert_eq!(
            store.get_model_version("b", "1").unwrap().tags,
            [tag("x", "y")]
        );
        assert!(matches!(
            store.get_registered_model("a"),
            Err(StoreError::NotFound(_))
        ));
        store
            .create_registered_model("alice", "c", "", &[])
            .unwrap();
        assert!(matches!(
            store.rename_registered_model("alice", "b", "c"),
            Err(StoreError::AlreadyExists(_))
        ));
        store.delete_model_version("alice", "b", "1").unwrap();
        assert!(
            store.get_registered_model("b").unwrap().aliases.is_empty(),
            "deleting a version drops its aliases"
        );
        store.delete_registered_model("alice", "b").unwrap();
        assert!(matches!(
            store.delete_registered_model("alice", "b"),
            Err(StoreError::NotFound(_))
        ));
    });
}

#[test]
fn stages_and_latest_versions() {
    each_store("stages", |store, _| {
        store
            .create_registered_model("alice", "m", "", &[])
            .unwrap();
        for _ in 0..3 {
            store
                .create_model_version("alice", "m", &NewVersion::default())
                .unwrap();
        }
        store
            .transition_stage("alice", "m", "1", "production", false)
            .unwrap();
        let moved = store
            .transition_stage("alice", "m", "2", "Production", true)
            .unwrap();
        assert_eq!(moved.current_stage, "Production");
        assert_eq!(
            store.get_model_version("m", "1").unwrap().current_stage,
            "Archived"
        );
        assert!(matches!(
            store.transition_stage("alice", "m", "3", "Live", false),
            Err(StoreError::InvalidParameter(_))
        ));
        let latest: Vec<(String, String)> = store
            .get_registered_model("m")
            .unwrap()
            .latest_versions
            .into_iter()
            .map(|v| (v.current_stage, v.version))
            .collect();
        for expected in [("Archived", "1"), ("Production", "2"), ("None", "3")] {
            assert!(
                latest.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{latest:?}"
            );
        }
    });
}

#[test]
fn search_pages_and_writes_survive_reopening() {
    each_store("search", |_, url| {
        {
            let store = Store::open(url).unwrap();
            for name in ["alpha", "beta", "alphabet", "gamma"] {
                store
                    .create_registered_model("alice", name, "", &[])
                    .unwrap();
            }
            store
                .create_model_version("alice", "alpha", &NewVersion::default())
                .unwrap();
        }
        let store = Store::open(url).unwrap();
        let filter = |text: &str| Filter::parse(text).unwrap();
        let (page, next) = store
            .search_registered_models(&filter("name LIKE 'alpha%'"), 1, 0)
            .unwrap();
        assert_eq!(page[0].name, "alpha");
        assert_eq!(next, Some(1));
        let (page, next) = store
            .search_registered_models(&filter("name LIKE 'alpha%'"), 1, 1)
            .unwrap();
        assert_eq!((page[0].name.as_str(), next), ("alphabet", None));
        assert_eq!(
            store
                .search_registered_models(&filter(""), 100, 0)
                .unwrap()
                .0
                .len(),
            4
        );
        assert_eq!(
            store
                .search_registered_models(&filter("name ILIKE 'ALPHA'"), 100, 0)
                .unwrap()
                .0
                .len(),
            1
        );
        assert_eq!(
            store
                .search_model_versions(&filter("name = 'alpha'"), 10, 0)
                .unwrap()
                .0
                .len(),
            1
        );
        store
            .set_registered_model_tag("alice", "beta", &tag("mlflow.prompt.is_prompt", "true"))
            .unwrap();
        let not_prompts = store
            .search_registered_models(&filter("tag.`mlflow.prompt.is_prompt` != 'true'"), 100, 0)
            .unwrap()
            .0;
        assert_eq!(
            not_prompts
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["alpha", "alphabet", "gamma"]
        );
        let prompts = store
            .search_registered_models(&filter("tags.`mlflow.prompt.is_prompt` = 'true'"), 100, 0)
            .unwrap()
            .0;
        assert_eq!(prompts[0].name, "beta");
        // `_` is literal in an exact match.
        store
            .create_registered_model("alice", "a_b", "", &[])
            .unwrap();
        store
            .create_registered_model("alice", "axb", "", &[])
            .unwrap();
        assert_eq!(
            store
                .search_registered_models(&filter("name = 'a_b'"), 100, 0)
                .unwrap()
                .0
                .len(),
            1
        );
    });
}

#[test]
fn names_that_could_escape_are_refused() {
    each_store("names", |store, _| {
        for bad in ["", "a/b", "..", "x..y", "a\\b"] {
            assert!(
                matches!(
                    store.create_registered_model("alice", bad, "", &[]),
                    Err(StoreError::InvalidParameter(_))
                ),
                "{bad:?}"
            );
        }
    });
}

#[test]
fn approvals_need_other_people_and_protect_aliases() {
    each_store("approvals", |store, _| {
        store
            .create_registered_model("alice", "iris", "", &[])
            .unwrap();
        store
            .create_model_version("alice", "iris", &NewVersion::default())
            .unwrap();
        assert_eq!(
            store.get_model_version("iris", "1").unwrap().user_id,
            "alice"
        );
        // Unapproved: protected aliases refuse it, naming what is missing; others are fine.
        let refused = store
            .set_alias("alice", "iris", "production", "1")
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::PermissionDenied(m) if m.contains("0 of 1 required approvals")),
            "{refused}"
        );
        store.set_alias("alice", "iris", "candidate", "1").unwrap();
        // The creator cannot approve her own version.
        assert!(matches!(
            store.decide("alice", "iris", "1", Decision::Approve, "lgtm"),
            Err(StoreError::PermissionDenied(_))
        ));
        store
            .decide("alice", "iris", "1", Decision::Request, "please")
            .unwrap();
        // A quorum of two, then one approval is not enough.
        store.set_required_approvals("alice", "iris", 2).unwrap();
        let status = store
            .decide("bob", "iris", "1", Decision::Approve, "ok")
            .unwrap();
        assert!(!status.approved);
        assert_eq!(
            (status.approved_by.clone(), status.requested_by.clone()),
            (vec!["bob".to_owned()], vec!["alice".to_owned()])
        );
        let denied = store
            .set_alias("bob", "iris", "champion", "1")
            .unwrap_err()
            .to_string();
        assert!(
            denied.contains("1 of 2 required approvals (approved by bob"),
            "{denied}"
        );
        // A rejection blocks even a full quorum, until the rejecter approves.
        store
            .decide("carol", "iris", "1", Decision::Reject, "bad metrics")
            .unwrap();
        let status = store
            .decide("dave", "iris", "1", Decision::Approve, "ok")
            .unwrap();
        assert!(!status.approved);
        assert!(store
            .set_alias("bob", "iris", "production", "1")
            .unwrap_err()
            .to_string()
            .contains("rejected by carol"));
        assert!(
            store
                .decide("carol", "iris", "1", Decision::Approve, "fixed")
                .unwrap()
                .approved
        );
        store.set_alias("bob", "iris", "production", "1").unwrap();
        assert!(matches!(
            store.set_required_approvals("alice", "iris", 0),
            Err(StoreError::InvalidParameter(_))
        ));
    });
}

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

fn file(path: &str, sha256: &str, size: u64) -> VersionFile {
    VersionFile {
        path: path.into(),
        sha256: sha256.into(),
        size,
    }
}

#[test]
fn version_files_are_recorded_in_byte_order_and_follow_renames_and_deletes() {
    each_store("version-files", |store, url| {
        store
            .create_registered_model("alice", "a", "", &[])
            .unwrap();
        // Uppercase sorts before lowercase in byte order, which a PostgreSQL collation may not.
        let files = vec![
            file("b.txt", "22", 2),
            file("B.txt", "11", 1),
            file("dir/x", "33", 3),
        ];
        store
            .create_model_version(
                "alice",
                "a",
                &NewVersion {
                    files,
                    ..NewVersion::default()
                },
            )
            .unwrap();
        store
            .create_model_version("alice", "a", &NewVersion::default())
            .unwrap();
        assert_eq!(
            store.version_files("a", "1").unwrap(),
            [
                file("B.txt", "11", 1),
                file("b.txt", "22", 2),
                file("dir/x", "33", 3)
            ],
            "{url}"
        );
        assert!(store.version_files("a", "2").unwrap().is_empty());
        assert!(matches!(
            store.version_files("a", "3"),
            Err(StoreError::NotFound(_))
        ));
        store.rename_registered_model("alice", "a", "b").unwrap();
        assert_eq!(store.version_files("b", "1").unwrap().len(), 3);
        // A version whose file list cannot be recorded is not created at all.
        let duplicate = vec![file("x", "1", 1), file("x", "2", 2)];
        assert!(store
            .create_model_version(
                "alice",
                "b",
                &NewVersion {
                    files: duplicate,
                    ..NewVersion::default()
                },
            )
            .is_err());
        assert!(matches!(
            store.get_model_version("b", "3"),
            Err(StoreError::NotFound(_))
        ));
        store.delete_model_version("alice", "b", "1").unwrap();
        let db = weir_sql::Database::open(url).unwrap();
        let left: i64 = db
            .transaction(|tx: &mut dyn weir_sql::Sql| {
                tx.query_value("SELECT COUNT(*) FROM version_files", &[])
            })
            .unwrap()
            .unwrap();
        assert_eq!(left, 0, "deleting a version drops its file rows");
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
