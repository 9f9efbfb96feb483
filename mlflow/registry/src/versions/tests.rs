use std::path::PathBuf;

use super::*;
use crate::test_bytes::noise;

use crate::store::NewVersion;

fn scratch(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("weir-versions-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

#[test]
fn the_digest_from_recorded_hashes_is_the_one_the_runtime_checks() {
    let files = [
        ("MLmodel", &b"flavors: {}"[..]),
        ("sub/model.onnx", &noise(1000)[..]),
    ];
    let recorded: Vec<VersionFile> = files
        .iter()
        .map(|(path, bytes)| VersionFile {
            path: (*path).to_owned(),
            sha256: hex(&Sha256::digest(bytes)),
            size: bytes.len() as u64,
        })
        .collect();
    assert_eq!(
        digest(&recorded),
        weir_models::digest::artifact_digest(files.iter().copied())
    );
    assert_ne!(digest(&recorded), digest(&recorded[..1]));
}

#[test]
fn version_paths_round_trip_any_name() {
    for name in ["iris", "my model", "a%b", "ünï/code?#", "x.y_z-~"] {
        let root = version_root(name, "3");
        assert!(!root.contains(' ') && !root.contains('?') && !root.contains('#'));
        assert_eq!(
            parse_version_path(&format!("{root}/sub/file"), NameForm::Encoded),
            Some(VersionPath {
                name: name.to_owned(),
                version: "3".to_owned(),
                rest: "sub/file".to_owned(),
            }),
            "{name:?}"
        );
    }
    assert_eq!(version_root("iris", "1"), ".weir/versions/iris/1");
    assert_eq!(
        parse_version_path("/./.weir/versions/my model/2/", NameForm::Decoded),
        Some(VersionPath {
            name: "my model".to_owned(),
            version: "2".to_owned(),
            rest: String::new(),
        })
    );
    for other in [
        ".weir",
        ".weir/versions",
        ".weir/versions/iris",
        ".weir/blobs/sha256/abc",
        "iris/1",
    ] {
        assert_eq!(
            parse_version_path(other, NameForm::Encoded),
            None,
            "{other}"
        );
    }
    assert_eq!(
        parse_version_path(".weir/versions/%zz/1", NameForm::Encoded),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_version_reads_and_lists_from_its_blobs() {
    for db in weir_sql::testing::each("capture") {
        for (backend, artifacts) in [
            (
                "folder",
                ArtifactStore::open(
                    &scratch(&format!("capture-{}", db.url.len())).join("artifacts"),
                )
                .unwrap(),
            ),
            ("bucket", ArtifactStore::in_memory()),
        ] {
            let url = db.url.clone();
            let store = std::sync::Arc::new(
                tokio::task::spawn_blocking(move || Store::open(&url))
                    .await
                    .unwrap()
                    .unwrap(),
            );
            let model = format!("my model {backend}");
            artifacts
                .put("run/model/MLmodel", b"flavors: {}")
                .await
                .unwrap();
            artifacts
                .put("run/model/data/weights.bin", b"w1")
                .await
                .unwrap();
            artifacts
                .put("run/model/.hidden", b"skipped")
                .await
                .unwrap();
            artifacts.put("single/model.onnx", b"onnx").await.unwrap();
            let on_store = |work: Box<dyn FnOnce(&Store) + Send>| {
                let store = store.clone();
                async move {
                    tokio::task::spawn_blocking(move || work(&store))
                        .await
                        .unwrap()
                }
            };
            let name = model.clone();
            on_store(Box::new(move |s| {
                s.create_registered_model("alice", &name, "", &[]).unwrap();
            }))
            .await;

            let files = capture(&artifacts, "run/model").await.unwrap();
            assert_eq!(
                files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
                ["MLmodel", "data/weights.bin"],
                "{backend}"
            );
            let (name, recorded) = (model.clone(), files.clone());
            on_store(Box::new(move |s| {
                s.create_model_version(
                    "alice",
                    &name,
                    &NewVersion {
                        sha256: digest(&recorded),
                        files: recorded,
                        ..NewVersion::default()
                    },
                )
                .unwrap();
            }))
            .await;
            artifacts
                .put("run/model/data/weights.bin", b"w2")
                .await
                .unwrap();
            let root_path = version_root(&model, "1");
            let (s1, s2, r1) = (store.clone(), store.clone(), root_path.clone());
            let (weights, mlmodel, name) = tokio::task::spawn_blocking({
                let model = model.clone();
                move || {
                    (
                        blob_of(&s1, &format!("{r1}/data/weights.bin"), NameForm::Encoded).unwrap(),
                        blob_of(
                            &s2,
                            &format!(".weir/versions/{model}/1/MLmodel"),
                            NameForm::Decoded,
                        )
                        .unwrap(),
                        model,
                    )
                }
            })
            .await
            .unwrap();
            assert_eq!(
                artifacts.get_blob(&weights).await.unwrap(),
                b"w1",
                "{backend}"
            );
            assert_eq!(artifacts.get_blob(&mlmodel).await.unwrap(), b"flavors: {}");

            let (checks, r2, n2) = (store.clone(), root_path.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                let store = &*checks;
                let encoded = encode_name(&n2);
                for missing in [
                    format!("{r2}/data"),
                    format!("{r2}/nothing"),
                    format!(".weir/versions/{encoded}/2/MLmodel"),
                    format!(".weir/versions/{encoded}/x/MLmodel"),
                    ".weir/blobs/sha256".to_owned(),
                ] {
                    assert!(
                        matches!(
                            blob_of(store, &missing, NameForm::Encoded),
                            Err(StoreError::NotFound(_))
                        ),
                        "{missing}"
                    );
                }
                let listed = list(store, &r2, NameForm::Encoded).unwrap();
                assert_eq!(
                    listed,
                    [
                        FileInfo {
                            path: "MLmodel".into(),
                            is_dir: false,
                            file_size: Some(11)
                        },
                        FileInfo {
                            path: "data".into(),
                            is_dir: true,
                            file_size: None
                        },
                    ]
                );
                assert_eq!(
                    list(store, &format!("{r2}/data"), NameForm::Encoded).unwrap()[0].path,
                    "weights.bin"
                );
                assert!(list(store, ".weir/versions", NameForm::Encoded)
                    .unwrap()
                    .is_empty());
                // Another version's folder is that version's recorded files, not a new copy.
                let again = recorded_copy(store, &r2).unwrap().unwrap();
                assert_eq!(again, store.version_files(&n2, "1").unwrap());
                assert_eq!(recorded_copy(store, "run/model").unwrap(), None);
                assert!(matches!(
                    recorded_copy(store, ".weir/blobs"),
                    Err(StoreError::InvalidParameter(_))
                ));
            })
            .await
            .unwrap();

            // A single file is recorded under its base name.
            let single = capture(&artifacts, "single/model.onnx").await.unwrap();
            assert_eq!(single[0].path, "model.onnx");
            for refused in [".weir/blobs", "", ".", "/", "../x"] {
                assert!(
                    matches!(
                        capture(&artifacts, refused).await,
                        Err(StoreError::InvalidParameter(_))
                    ),
                    "{backend} {refused:?}"
                );
            }
            assert!(capture(&artifacts, "nothing/here")
                .await
                .unwrap()
                .is_empty());
        }
    }
}

#[tokio::test]
async fn s3_sources_that_cannot_be_read_are_refused_saying_why() {
    let artifacts = ArtifactStore::in_memory();
    for (source, why) in [
        ("s3://", "s3://BUCKET/KEY"),
        ("s3://bucket", "whole bucket"),
        ("s3://bucket/", "whole bucket"),
        ("s3://bucket/../x", "without '..'"),
    ] {
        let Err(StoreError::InvalidParameter(message)) = capture_s3(&artifacts, source).await
        else {
            panic!("{source} was accepted");
        };
        assert!(message.contains(source), "{message}");
        assert!(message.contains(why), "{source}: {message}");
    }
}
