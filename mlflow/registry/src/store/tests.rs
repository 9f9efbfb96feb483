use super::*;
use crate::filter::Filter;

/// Runs a check against a fresh registry on SQLite and, when configured, on PostgreSQL.
pub(super) fn each_store(tag: &str, check: impl Fn(&Store, &str)) {
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
