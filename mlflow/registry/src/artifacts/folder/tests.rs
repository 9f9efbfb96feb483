use super::*;
use crate::test_bytes::noise;

fn store(tag: &str) -> FolderStore {
    let root = std::env::temp_dir().join(format!("weir-folder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    FolderStore::open(&root).unwrap()
}

#[test]
fn digests_cover_names_and_contents() {
    let store = store("digest");
    store.put("m/1/model.onnx", b"weights").unwrap();
    store.put("m/1/config/extra.json", b"{}").unwrap();
    let digest = store.digest("m/1").unwrap().unwrap();
    assert_eq!(digest.len(), 64);
    assert_eq!(
        store.files("m/1").unwrap(),
        ["config/extra.json", "model.onnx"]
    );
    assert_eq!(
        digest,
        weir_models::digest::artifact_digest([
            ("config/extra.json", &b"{}"[..]),
            ("model.onnx", &b"weights"[..])
        ]),
        "the streamed digest is the runtime's"
    );
    assert_eq!(
        store.digest("m/1/model.onnx").unwrap().unwrap(),
        weir_models::digest::artifact_digest([("", &b"weights"[..])])
    );
    store.put("m/1/model.onnx", b"weightz").unwrap();
    assert_ne!(store.digest("m/1").unwrap().unwrap(), digest);
    assert_eq!(store.digest("m/nothing").unwrap(), None);
}

#[tokio::test]
async fn a_streamed_copy_hashes_exactly_the_bytes_it_stores() {
    let store = store("blob");
    let root = store.root().to_path_buf();
    // A few MiB, not a multiple of the chunk size, so the last read is short.
    let bytes = noise(3 * 1024 * 1024 + 4321);
    let source = root.join("model.bin");
    std::fs::write(&source, &bytes).unwrap();
    let mut reader = ByteReader::file(&source).await.unwrap();
    let (sha256, size) = store.store_blob(&mut reader).await.unwrap();
    assert_eq!(sha256, crate::versions::hex(&Sha256::digest(&bytes)));
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(std::fs::read(store.blob_path(&sha256)).unwrap(), bytes);
    // Storing the same bytes again keeps the one blob and leaves no temporary file behind.
    let mut again = ByteReader::file(&source).await.unwrap();
    assert_eq!(
        store.store_blob(&mut again).await.unwrap(),
        (sha256.clone(), size)
    );
    assert_eq!(
        std::fs::read_dir(root.join(".weir/blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(root.join(".weir/tmp")).unwrap().count(),
        0
    );
    // An empty file is a blob too (sha256 of nothing).
    std::fs::write(root.join("empty"), b"").unwrap();
    let mut empty = ByteReader::file(&root.join("empty")).await.unwrap();
    assert_eq!(
        store.store_blob(&mut empty).await.unwrap().0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(ByteReader::file(&root.join("missing")).await.is_err());
}

#[test]
fn paths_cannot_leave_the_root() {
    let store = store("traversal");
    for bad in [
        "../escape",
        "a/../../escape",
        "a\\b",
        "a\0b",
        "/../etc/passwd",
    ] {
        assert!(
            matches!(store.put(bad, b"x"), Err(StoreError::InvalidParameter(_))),
            "{bad:?}"
        );
        assert!(store.file(bad).is_err(), "{bad:?}");
    }
    // A leading slash is relative to the root, not the filesystem's.
    store.put("/inside.txt", b"ok").unwrap();
    assert_eq!(
        std::fs::read(store.file("inside.txt").unwrap()).unwrap(),
        b"ok"
    );
    assert!(matches!(
        store.put("", b"x"),
        Err(StoreError::InvalidParameter(_))
    ));
    assert!(matches!(
        store.put(".weir/x", b"x"),
        Err(StoreError::PermissionDenied(_))
    ));
}
