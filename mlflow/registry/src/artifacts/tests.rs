//! The one API on each backend: a folder, and a bucket (object_store's in-memory store; the
//! crate's end-to-end tests run the bucket half against a real S3 server too).

use super::*;
use crate::test_bytes::noise;

fn folder(tag: &str) -> ArtifactStore {
    let root = std::env::temp_dir().join(format!("weir-artifacts-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    ArtifactStore::open(&root).unwrap()
}

/// Each backend, for one test.
fn each(tag: &str) -> Vec<(&'static str, ArtifactStore)> {
    vec![
        ("folder", folder(tag)),
        ("bucket", ArtifactStore::in_memory()),
    ]
}

#[tokio::test]
async fn put_get_list_delete() {
    for (backend, store) in each("basics") {
        store
            .put("1/run/artifacts/model/model.onnx", b"weights")
            .await
            .unwrap();
        store
            .put("1/run/artifacts/model/MLmodel", b"flavors: {}")
            .await
            .unwrap();
        store
            .put("1/run/artifacts/model/.hidden", b"x")
            .await
            .unwrap();
        assert_eq!(
            store.get("1/run/artifacts/model/model.onnx").await.unwrap(),
            b"weights",
            "{backend}"
        );
        let listed = store.list("1/run/artifacts/model").await.unwrap();
        assert_eq!(
            listed.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["MLmodel", "model.onnx"],
            "{backend}"
        );
        assert_eq!(listed[1].file_size, Some(7));
        assert_eq!(
            store.list("1/run").await.unwrap(),
            [FileInfo {
                path: "artifacts".into(),
                is_dir: true,
                file_size: None
            }],
            "{backend}"
        );
        assert!(store.list("nothing/here").await.unwrap().is_empty());
        assert_eq!(
            store.files("1").await.unwrap(),
            [
                "run/artifacts/model/MLmodel",
                "run/artifacts/model/model.onnx"
            ],
            "{backend}"
        );
        // A file cannot be written over a folder.
        assert!(matches!(
            store.begin_upload("1/run").await.err(),
            Some(StoreError::InvalidParameter(_))
        ));
        store.delete("1/run/artifacts/model/MLmodel").await.unwrap();
        assert!(matches!(
            store.get("1/run/artifacts/model/MLmodel").await,
            Err(StoreError::NotFound(_))
        ));
        store.delete("1/run").await.unwrap();
        assert!(store.files("1").await.unwrap().is_empty(), "{backend}");
        assert!(matches!(
            store.delete("1/run").await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn paths_cannot_leave_the_root_or_touch_the_versions() {
    for (backend, store) in each("traversal") {
        for bad in [
            "../escape",
            "a/../../escape",
            "a\\b",
            "a\0b",
            "/../etc/passwd",
        ] {
            assert!(
                matches!(
                    store.put(bad, b"x").await,
                    Err(StoreError::InvalidParameter(_))
                ),
                "{backend} {bad:?}"
            );
            assert!(store.get(bad).await.is_err(), "{backend} {bad:?}");
            assert!(store.check_path(bad).is_err());
        }
        store.put("/inside.txt", b"ok").await.unwrap();
        assert_eq!(store.get("inside.txt").await.unwrap(), b"ok");
        for root in ["", ".", "/"] {
            assert!(matches!(
                store.put(root, b"x").await,
                Err(StoreError::InvalidParameter(_))
            ));
            assert!(matches!(
                store.delete(root).await,
                Err(StoreError::InvalidParameter(_))
            ));
        }
        for reserved in [".weir/x", "./.weir/blobs/sha256/x", ".WEIR/y"] {
            assert!(
                matches!(
                    store.put(reserved, b"x").await,
                    Err(StoreError::PermissionDenied(_))
                ),
                "{backend} {reserved}"
            );
            assert!(matches!(
                store.delete(reserved).await,
                Err(StoreError::PermissionDenied(_))
            ));
            assert!(matches!(
                store.mpu_create(reserved).await,
                Err(StoreError::PermissionDenied(_))
            ));
        }
        assert!(store.list(".weir").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn captured_files_become_deduplicated_blobs() {
    for (backend, store) in each("capture") {
        let weights = noise(6 * 1024 * 1024 + 17);
        store
            .put("run/model/MLmodel", b"flavors: {}")
            .await
            .unwrap();
        store.put("run/model/data/w.bin", &weights).await.unwrap();
        store.put("run/model/.hidden", b"skipped").await.unwrap();
        store.put("copy/MLmodel", b"flavors: {}").await.unwrap();
        let files = store.capture("run/model").await.unwrap();
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["MLmodel", "data/w.bin"],
            "{backend}"
        );
        assert_eq!(files[1].size, weights.len() as u64);
        assert_eq!(
            crate::versions::digest(&files),
            weir_models::digest::artifact_digest([
                ("MLmodel", &b"flavors: {}"[..]),
                ("data/w.bin", &weights[..])
            ])
        );
        assert_eq!(store.get_blob(&files[1].sha256).await.unwrap(), weights);
        let single = store.capture("copy/MLmodel").await.unwrap();
        assert_eq!(single[0].path, "MLmodel");
        assert_eq!(single[0].sha256, files[0].sha256);
        assert_eq!(store.blobs().await.unwrap().len(), 2, "{backend}");
        assert!(store.capture("nothing").await.unwrap().is_empty());
        // Blobs are neither listed nor readable as artifacts.
        assert!(matches!(
            store
                .get(&format!(".weir/blobs/sha256/{}", files[0].sha256))
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            store
                .list("")
                .await
                .unwrap()
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>(),
            ["copy", "run"]
        );
    }
}

#[tokio::test]
async fn ranges_read_only_the_bytes_asked_for() {
    for (backend, store) in each("ranges") {
        store.put("f.bin", b"0123456789").await.unwrap();
        let read = |spec: &'static str| {
            let store = &store;
            async move {
                let download = store.read("f.bin", RangeSpec::parse(spec)).await.unwrap();
                let served = download.served;
                let size = download.size;
                (served, size, collect(download, "f.bin").await.unwrap())
            }
        };
        assert_eq!(
            read("bytes=2-4").await,
            (Served::Part { start: 2, end: 5 }, 10, b"234".to_vec()),
            "{backend}"
        );
        assert_eq!(
            read("bytes=-3").await,
            (Served::Part { start: 7, end: 10 }, 10, b"789".to_vec())
        );
        assert_eq!(
            read("bytes=10-").await,
            (Served::Unsatisfiable, 10, Vec::new())
        );
        assert_eq!(
            read("bytes=0-1,3-4").await,
            (Served::Whole, 10, b"0123456789".to_vec())
        );
        assert!(matches!(
            store.read("missing", RangeSpec::parse("bytes=0-1")).await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn uploads_stream_under_the_limit_and_leave_nothing_when_refused() {
    for (backend, store) in each("uploads") {
        let store = store.with_max_file_bytes(12 << 20);
        // Larger than one part: the bucket sends it as a multipart upload.
        let bytes = noise(11 << 20);
        let mut upload = store.begin_upload("big.bin").await.unwrap();
        for chunk in bytes.chunks(64 * 1024) {
            upload.write(chunk).await.unwrap();
        }
        assert!(
            store.get("big.bin").await.is_err(),
            "{backend}: visible early"
        );
        assert_eq!(upload.finish().await.unwrap(), bytes.len() as u64);
        assert_eq!(store.get("big.bin").await.unwrap(), bytes, "{backend}");

        let mut upload = store.begin_upload("over.bin").await.unwrap();
        let mut refused = None;
        for chunk in noise(13 << 20).chunks(1 << 20) {
            if let Err(err) = upload.write(chunk).await {
                refused = Some(err);
                break;
            }
        }
        assert!(
            matches!(refused, Some(UploadError::TooLarge { .. })),
            "{backend}"
        );
        drop(upload);
        assert!(store.get("over.bin").await.is_err(), "{backend}");
        assert_eq!(store.files("").await.unwrap(), ["big.bin"], "{backend}");
    }
}

#[tokio::test]
async fn multipart_uploads_complete_in_part_order_and_abort_cleanly() {
    for (backend, store) in each("mpu") {
        let first = noise(5 << 20);
        let second = b"the last part".to_vec();
        let id = store.mpu_create("runs/1/model.bin").await.unwrap();
        // Parts may arrive in any order.
        let two = store
            .mpu_part("runs/1/model.bin", &id, 2, second.clone().into(), None)
            .await
            .unwrap();
        let one = store
            .mpu_part("runs/1/model.bin", &id, 1, first.clone().into(), None)
            .await
            .unwrap();
        assert!(store.get("runs/1/model.bin").await.is_err(), "{backend}");
        // An unknown id has no such upload (nor, on S3 and the folder, another path).
        assert!(store
            .mpu_part("runs/1/model.bin", "12345", 1, Vec::new().into(), None)
            .await
            .is_err());
        if backend == "folder" {
            assert!(store
                .mpu_part("runs/1/other.bin", &id, 1, Vec::new().into(), None)
                .await
                .is_err());
        }
        let parts = [
            PartFile {
                number: 2,
                etag: two,
            },
            PartFile {
                number: 1,
                etag: one,
            },
        ];
        store
            .mpu_complete("runs/1/model.bin", &id, &parts)
            .await
            .unwrap();
        let mut whole = first.clone();
        whole.extend_from_slice(&second);
        assert_eq!(
            store.get("runs/1/model.bin").await.unwrap(),
            whole,
            "{backend}"
        );

        let id = store.mpu_create("runs/1/dropped.bin").await.unwrap();
        store
            .mpu_part("runs/1/dropped.bin", &id, 1, b"x".to_vec().into(), None)
            .await
            .unwrap();
        store.mpu_abort("runs/1/dropped.bin", &id).await.unwrap();
        assert!(store.get("runs/1/dropped.bin").await.is_err());
        assert!(store
            .mpu_complete(
                "runs/1/dropped.bin",
                &id,
                &[PartFile {
                    number: 1,
                    etag: "x".into()
                }]
            )
            .await
            .is_err());
        assert_eq!(
            store.files("runs").await.unwrap(),
            ["1/model.bin"],
            "{backend}: parts left behind"
        );
    }
}

#[tokio::test]
async fn a_part_or_a_completed_upload_over_the_limit_is_refused() {
    for (backend, store) in each("mpu-limit") {
        let store = store.with_max_file_bytes(8);
        let id = store.mpu_create("f.bin").await.unwrap();
        assert!(
            matches!(
                store
                    .mpu_part("f.bin", &id, 1, b"123456789".to_vec().into(), Some(9))
                    .await,
                Err(UploadError::TooLarge { .. })
            ),
            "{backend}"
        );
        assert!(matches!(
            store
                .mpu_part("f.bin", &id, 1, b"123456789".to_vec().into(), None)
                .await,
            Err(UploadError::TooLarge { .. })
        ));
        let a = store
            .mpu_part("f.bin", &id, 1, b"12345".to_vec().into(), None)
            .await
            .unwrap();
        let b = store
            .mpu_part("f.bin", &id, 2, b"6789".to_vec().into(), None)
            .await
            .unwrap();
        let parts = [
            PartFile { number: 1, etag: a },
            PartFile { number: 2, etag: b },
        ];
        assert!(
            matches!(
                store.mpu_complete("f.bin", &id, &parts).await,
                Err(UploadError::TooLarge { .. })
            ),
            "{backend}"
        );
        assert!(store.get("f.bin").await.is_err(), "{backend}");
    }
}
