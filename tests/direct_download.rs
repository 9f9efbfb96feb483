//! `weir serve --registry-direct-download`: the server takes a version's bytes from the
//! registry's bucket through presigned URLs the registry hands out, with no S3 credentials of
//! its own, and verifies them exactly as when they come through the registry.
//!
//! - against a real `weir registry --artifacts s3://…` on the Garage test server (scripts/s3.sh;
//!   skipped without WEIR_TEST_S3_BUCKET unless WEIR_REQUIRE_S3=1): the version serves, and the
//!   registry's artifact bytes out did not grow (they did without the flag);
//! - against a folder registry: no URLs are offered, the server falls back and serves;
//! - against a scripted registry and bucket on loopback: tampered bucket bytes are refused, the
//!   registry's token is never sent to the bucket, and no presigned URL reaches the log.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Process, Registry};

/// `weir` with none of the registry, identity, cache, log or S3 variables of the environment
/// running the tests: a server started from it has no S3 credentials.
fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    for variable in [
        "WEIR_REGISTRY",
        "WEIR_REGISTRY_DIRECT_DOWNLOAD",
        "WEIR_REGISTRY_TOKEN_FILE",
        "WEIR_TOKEN",
        "WEIR_TOKEN_FILE",
        "WEIR_USER",
        "WEIR_CA_FILE",
        "WEIR_CACHE_DIR",
        "WEIR_MODEL_REPOSITORY",
        "WEIR_MODEL",
        "MLFLOW_TRACKING_URI",
        "RUST_LOG",
    ] {
        command.env_remove(variable);
    }
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
        command.env_remove(name);
    }
    command
}

fn demo_model(version: u32) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("src/demo/iris/{version}/model.onnx")),
    )
    .unwrap()
}

/// Registers the demo iris 1 as `iris` (by alice), approves it (by bob) and points
/// `production` at it.
fn register_iris(url: &str, scratch: &Path) {
    let folder = scratch.join("upload");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("model.onnx"), demo_model(1)).unwrap();
    let models = |args: &[&str]| {
        common::stdout(
            &weir()
                .args(["models", "--registry", url])
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let registered = models(&[
        "--as",
        "alice",
        "register",
        "iris",
        folder.to_str().unwrap(),
    ]);
    assert!(
        registered.starts_with("registered iris version 1"),
        "{registered}"
    );
    models(&["--as", "bob", "approve", "iris", "1"]);
    models(&["--as", "alice", "alias", "iris", "production", "1"]);
}

/// `weir serve --registry URL --model iris=models:/iris@production` (plus `extra`), its stderr
/// written to `log`; the process and its address.
fn serve(url: &str, cache: &Path, log: &Path, extra: &[&str]) -> (Process, String) {
    let mut child = weir()
        .args(["serve", "--http-port", "0", "--registry", url])
        .args(["--model", "iris=models:/iris@production"])
        .args(["--registry-poll-interval", "200ms", "--cache-dir"])
        .arg(cache)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let address = common::announced_address(&mut child);
    (Process(child), address)
}

fn wait_until_serving(address: &str) {
    common::wait_for("the registry's version to serve", 60, || {
        common::get(address, "/v2/models/iris/ready").0 == 200
    });
    let body = br#"{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;
    let (status, answer) = common::http(
        address,
        "POST /v2/models/iris/infer",
        "Content-Type: application/json\r\n",
        body,
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// The registry's `weir_registry_artifact_bytes_total{direction="out"}`.
fn artifact_bytes_out(url: &str) -> f64 {
    let address = url.trim_start_matches("http://");
    let (status, text) = common::get(address, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| {
            line.strip_prefix("weir_registry_artifact_bytes_total{direction=\"out\"} ")
                .map(|value| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no artifact bytes out in {text}"))
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A fresh prefix of the S3 test bucket; `None` skips the test.
fn bucket_prefix() -> Option<String> {
    match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(bucket) if !bucket.is_empty() => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            Some(format!(
                "s3://{bucket}/direct-{}-{nanos}",
                std::process::id()
            ))
        }
        _ => {
            assert!(
                std::env::var("WEIR_REQUIRE_S3").as_deref() != Ok("1"),
                "WEIR_REQUIRE_S3=1 but WEIR_TEST_S3_BUCKET is not set (scripts/s3.sh prints it)"
            );
            eprintln!("WEIR_TEST_S3_BUCKET is not set: skipping");
            None
        }
    }
}

#[test]
fn a_server_without_s3_credentials_downloads_from_the_bucket() {
    let Some(artifacts) = bucket_prefix() else {
        return;
    };
    let scratch = common::scratch("direct-s3");
    // The registry keeps the test's AWS_* variables: it is the one holding S3 credentials.
    let mut registry = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["registry", "--http-port", "0", "--db"])
        .arg(format!("sqlite://{}/r.db", scratch.display()))
        .args(["--artifacts", &artifacts])
        .current_dir(&scratch)
        .env_remove("WEIR_ARTIFACTS")
        .env_remove("WEIR_DB")
        .env_remove("WEIR_TOKENS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = common::announced_url(&mut registry);
    let _registry = Process(registry);
    register_iris(&url, &scratch);
    let model_size = demo_model(1).len() as f64;

    // The resolve answer: one presigned URL per file, with the file's sha256; none unasked.
    let address = url.trim_start_matches("http://");
    let (status, plain) = common::get(address, "/api/2.0/weir/resolve?name=iris&alias=production");
    assert_eq!(status, 200, "{plain}");
    assert!(!plain.contains("direct_downloads"), "{plain}");
    let (status, direct) = common::get(
        address,
        "/api/2.0/weir/resolve?name=iris&alias=production&direct=true",
    );
    assert_eq!(status, 200, "{direct}");
    let direct: serde_json::Value = serde_json::from_str(&direct).unwrap();
    let downloads = direct["direct_downloads"].as_array().unwrap();
    assert_eq!(downloads.len(), 1, "{direct}");
    assert_eq!(downloads[0]["path"], "model.onnx");
    let url_of_blob = downloads[0]["url"].as_str().unwrap();
    assert!(url_of_blob.contains("X-Amz-Signature="), "{url_of_blob}");
    assert!(url_of_blob.contains(&format!(
        "/.weir/blobs/sha256/{}",
        downloads[0]["sha256"].as_str().unwrap()
    )));
    assert_eq!(direct["direct_expires_in_secs"], 900);
    let (status, _) = common::get(
        address,
        "/api/2.0/weir/resolve?name=iris&alias=production&direct=maybe",
    );
    assert_eq!(status, 400);

    // With the flag and no AWS_* variables: served, and no artifact byte left the registry.
    let before = artifact_bytes_out(&url);
    let log = scratch.join("direct.log");
    let (server, served) = serve(
        &url,
        &scratch.join("cache-direct"),
        &log,
        &["--registry-direct-download"],
    );
    wait_until_serving(&served);
    drop(server);
    assert_eq!(
        artifact_bytes_out(&url),
        before,
        "the bytes came through the registry"
    );
    let said = log_of(&log);
    assert!(
        !said.contains("X-Amz-"),
        "a presigned URL in the log: {said}"
    );

    // Without it, the same version comes through the registry (what the check above measures).
    let (server, served) = serve(
        &url,
        &scratch.join("cache-proxied"),
        &scratch.join("proxied.log"),
        &[],
    );
    wait_until_serving(&served);
    drop(server);
    assert!(artifact_bytes_out(&url) >= before + model_size);
}

#[test]
fn a_folder_registry_offers_no_urls_and_the_server_falls_back() {
    let registry = Registry::start("direct-folder");
    let scratch = common::scratch("direct-folder-client");
    register_iris(&registry.url, &scratch);
    let address = registry.url.trim_start_matches("http://");
    let (status, answer) = common::get(
        address,
        "/api/2.0/weir/resolve?name=iris&alias=production&direct=true",
    );
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains("direct_downloads"), "{answer}");

    let before = artifact_bytes_out(&registry.url);
    let log = scratch.join("serve.log");
    let (server, served) = serve(
        &registry.url,
        &scratch.join("cache"),
        &log,
        &["--registry-direct-download"],
    );
    wait_until_serving(&served);
    drop(server);
    assert!(artifact_bytes_out(&registry.url) >= before + demo_model(1).len() as f64);
    let said = log_of(&log);
    assert_eq!(
        said.matches("offers no direct downloads").count(),
        1,
        "the fall-back is said once: {said}"
    );
}

/// A loopback HTTP server answering each GET with `answer(request line)`, keeping every
/// request's head (lower-cased) for the test to read.
struct Scripted {
    address: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn scripted(answer: impl Fn(&str) -> (u16, Vec<u8>) + Send + 'static) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let (status, body) = answer(head.lines().next().unwrap_or_default());
            kept.lock().unwrap().push(head.to_lowercase());
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    Scripted { address, heads }
}

impl Scripted {
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A registry that resolves iris@production to version 1 (approved, digest of the real
/// model) with a presigned-looking URL at `bucket`, which serves `bytes`.
fn registry_and_bucket(bytes: Vec<u8>) -> (Scripted, Scripted) {
    let bucket = scripted(move |_| (200, bytes.clone()));
    let model = demo_model(1);
    let sha256 = weir_models::digest::artifact_digest([("model.onnx", model.as_slice())]);
    let blob = "ab".repeat(32);
    let resolve = serde_json::json!({
        "name": "iris", "version": "1", "source": "mlflow-artifacts:/models/iris/1",
        "artifact_path": "models/iris/1", "files": ["model.onnx"], "sha256": sha256,
        "approved": true,
        "approval": {"required_approvals": 1, "approved_by": ["bob"], "rejected_by": []},
        "direct_downloads": [{
            "path": "model.onnx", "sha256": blob, "size": model.len(),
            "url": format!("http://{}/bucket/.weir/blobs/sha256/{blob}?X-Amz-Signature=sekrit", bucket.address),
        }],
        "direct_expires_in_secs": 900,
    })
    .to_string()
    .into_bytes();
    let registry = scripted(move |line| {
        if line.starts_with("GET /api/2.0/weir/resolve") {
            (200, resolve.clone())
        } else {
            (404, b"{\"message\": \"not here\"}".to_vec())
        }
    });
    (registry, bucket)
}

#[test]
fn bucket_bytes_are_verified_and_the_registry_token_stays_with_the_registry() {
    let scratch = common::scratch("direct-scripted");
    let token_file = scratch.join("token");
    std::fs::write(&token_file, "registry-token\n").unwrap();
    let token_flags = ["--registry-token-file", token_file.to_str().unwrap()];

    // Honest bucket: served from it, the registry's artifact route never asked.
    let (registry, bucket) = registry_and_bucket(demo_model(1));
    let url = format!("http://{}", registry.address);
    let log = scratch.join("honest.log");
    let mut flags = vec!["--registry-direct-download"];
    flags.extend(token_flags);
    let (server, served) = serve(&url, &scratch.join("cache-honest"), &log, &flags);
    wait_until_serving(&served);
    drop(server);
    let asked = registry.heads();
    assert!(
        asked
            .iter()
            .all(|h| h.starts_with("get /api/2.0/weir/resolve")
                && h.contains("direct=true")
                && h.contains("authorization: bearer registry-token")),
        "{asked:?}"
    );
    let fetched = bucket.heads();
    assert!(!fetched.is_empty());
    assert!(
        fetched.iter().all(|h| !h.contains("authorization")),
        "the registry's token went to the bucket: {fetched:?}"
    );

    // Tampered bucket: refused by the digest check, with the reason on record; no URL logged.
    let mut tampered = demo_model(1);
    tampered[100] ^= 0xff;
    let (registry, bucket) = registry_and_bucket(tampered);
    let url = format!("http://{}", registry.address);
    let log = scratch.join("tampered.log");
    let (server, served) = serve(&url, &scratch.join("cache-tampered"), &log, &flags);
    common::wait_for("the tampered version to be refused", 60, || {
        let (_, index) = common::http(&served, "POST /v2/repository/index", "", b"").unwrap();
        String::from_utf8_lossy(&index).contains("failed its integrity check")
    });
    assert_ne!(common::get(&served, "/v2/models/iris/ready").0, 200);
    assert!(!bucket.heads().is_empty());
    drop(server);
    let said = log_of(&log);
    assert!(said.contains("failed its integrity check"), "{said}");
    assert!(
        !said.contains("sekrit"),
        "a presigned URL in the log: {said}"
    );
}
