use crate::store::tests::each_store;
use crate::store::*;

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
