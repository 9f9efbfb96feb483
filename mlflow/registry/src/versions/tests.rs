use super::*;

use crate::store::NewVersion;

fn scratch(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("weir-versions-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// Deterministic bytes that are not one repeated pattern (a xorshift stream).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_streamed_copy_hashes_exactly_the_bytes_it_stores() {
    let root = scratch("stream");
    // A few MiB, not a multiple of the chunk size, so the last read is short.
    let bytes = noise(3 * 1024 * 1024 + 4321);
    let source = root.join("model.bin");
    std::fs::write(&source, &bytes).unwrap();
    let (sha256, size) = store_blob(&root, &source).unwrap();
    assert_eq!(sha256, hex(&Sha256::digest(&bytes)));
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(std::fs::read(blob_path(&root, &sha256)).unwrap(), bytes);
    // Storing the same bytes again keeps the one blob and leaves no temporary file behind.
    let copy = root.join("copy.bin");
    std::fs::write(&copy, &bytes).unwrap();
    assert_eq!(store_blob(&root, &copy).unwrap(), (sha256.clone(), size));
    let blobs = std::fs::read_dir(root.join(".weir/blobs/sha256")).unwrap();
    assert_eq!(blobs.count(), 1);
    let temporary = std::fs::read_dir(root.join(".weir/tmp")).unwrap();
    assert_eq!(temporary.count(), 0);
    // An empty file is a blob too (sha256 of nothing).
    std::fs::write(root.join("empty"), b"").unwrap();
    assert_eq!(
        store_blob(&root, &root.join("empty")).unwrap().0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(store_blob(&root, &root.join("missing")).is_err());
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

#[test]
fn a_captured_version_reads_and_lists_from_its_blobs() {
    for db in weir_sql::testing::each("capture") {
        let root = scratch(&format!("capture-{}", db.url.len()));
        let store = Store::open(&db.url).unwrap();
        let artifacts = ArtifactStore::open(&root.join("artifacts")).unwrap();
        artifacts.put("run/model/MLmodel", b"flavors: {}").unwrap();
        artifacts.put("run/model/data/weights.bin", b"w1").unwrap();
        artifacts.put("run/model/.hidden", b"skipped").unwrap();
        artifacts.put("single/model.onnx", b"onnx").unwrap();
        store
            .create_registered_model("alice", "my model", "", &[])
            .unwrap();

        let files = capture(&store, &artifacts, "run/model").unwrap();
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["MLmodel", "data/weights.bin"]
        );
        store
            .create_model_version(
                "alice",
                "my model",
                &NewVersion {
                    sha256: digest(&files),
                    files,
                    ..NewVersion::default()
                },
            )
            .unwrap();
        artifacts.put("run/model/data/weights.bin", b"w2").unwrap();
        let root_path = version_root("my model", "1");
        assert_eq!(
            get(
                &store,
                &artifacts,
                &format!("{root_path}/data/weights.bin"),
                NameForm::Encoded
            )
            .unwrap(),
            b"w1"
        );
        assert_eq!(
            get(
                &store,
                &artifacts,
                ".weir/versions/my model/1/MLmodel",
                NameForm::Decoded
            )
            .unwrap(),
            b"flavors: {}"
        );
        for missing in [
            format!("{root_path}/data"),
            format!("{root_path}/nothing"),
            ".weir/versions/my%20model/2/MLmodel".to_owned(),
            ".weir/versions/my%20model/x/MLmodel".to_owned(),
            ".weir/blobs/sha256".to_owned(),
        ] {
            assert!(
                matches!(
                    get(&store, &artifacts, &missing, NameForm::Encoded),
                    Err(StoreError::NotFound(_))
                ),
                "{missing}"
            );
        }
        let listed = list(&store, &root_path, NameForm::Encoded).unwrap();
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
            list(&store, &format!("{root_path}/data"), NameForm::Encoded).unwrap()[0].path,
            "weights.bin"
        );
        assert!(list(&store, ".weir/versions", NameForm::Encoded)
            .unwrap()
            .is_empty());

        // A single file is recorded under its base name; another version's folder copies that
        // version's recorded bytes, not the source's current ones.
        let single = capture(&store, &artifacts, "single/model.onnx").unwrap();
        assert_eq!(single[0].path, "model.onnx");
        let again = capture(&store, &artifacts, &root_path).unwrap();
        assert_eq!(again, store.version_files("my model", "1").unwrap());
        for refused in [".weir/blobs", "", ".", "/"] {
            assert!(
                matches!(
                    capture(&store, &artifacts, refused),
                    Err(StoreError::InvalidParameter(_))
                ),
                "{refused:?}"
            );
        }
        assert!(capture(&store, &artifacts, "nothing/here")
            .unwrap()
            .is_empty());
    }
}
