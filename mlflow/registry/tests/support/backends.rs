//! The artifact stores the end-to-end tests run on: the folder, and a bucket — the real S3
//! server `scripts/s3.sh` starts (`WEIR_TEST_S3_BUCKET` and the `AWS_*` variables it prints),
//! under a prefix of the test's own, or object_store's in-memory store when no server is
//! configured. `WEIR_REQUIRE_S3=1` (as `make test` sets it) makes a missing server a failure
//! instead, so CI cannot pass on the in-memory store alone — as `WEIR_REQUIRE_POSTGRES` does
//! for PostgreSQL.

use std::path::Path;

use weir_registry::artifacts::ArtifactStore;

/// Which artifact store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Folder,
    Bucket,
}

/// Every backend, for a test to run once on each.
pub fn each() -> [Backend; 2] {
    [Backend::Folder, Backend::Bucket]
}

/// A fresh, empty store of `backend`: a folder under `root`, or a bucket prefix named by
/// `name` (and the process and time, so parallel tests and runs never share one).
pub fn store(backend: Backend, root: &Path, name: &str) -> ArtifactStore {
    match backend {
        Backend::Folder => ArtifactStore::open(&root.join("artifacts")).unwrap(),
        Backend::Bucket => match s3_bucket() {
            Some(bucket) => {
                let prefix = unique_prefix(name);
                let store = weir_registry::artifacts::bucket::config::open(&bucket, &prefix)
                    .unwrap_or_else(|e| panic!("cannot open s3://{bucket}/{prefix}: {e}"));
                ArtifactStore::on_bucket(store)
            }
            None => ArtifactStore::in_memory(),
        },
    }
}

/// The test bucket of the real S3 server, if one is configured; `WEIR_REQUIRE_S3=1` without
/// one fails.
pub fn s3_bucket() -> Option<String> {
    match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(bucket) if !bucket.trim().is_empty() => Some(bucket),
        _ => {
            assert!(
                std::env::var("WEIR_REQUIRE_S3").as_deref() != Ok("1"),
                "WEIR_REQUIRE_S3=1 but WEIR_TEST_S3_BUCKET is not set (eval \"$(scripts/s3.sh)\" sets it)"
            );
            eprintln!(
                "WEIR_TEST_S3_BUCKET is not set: the bucket half runs on the in-memory store"
            );
            None
        }
    }
}

/// A key prefix no other test or run uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("weir-tests/{name}-{}-{nanos}", std::process::id())
}
