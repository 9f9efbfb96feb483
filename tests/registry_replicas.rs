//! Two `weir registry` processes on one PostgreSQL database and one artifact store, as a
//! Deployment with two replicas behind a Service runs them: clients alternate between the two
//! while registering, approving and aliasing versions of one model at once, and numbering, the
//! audit log and aliases stay consistent; then one replica is killed (SIGKILL) in the middle of
//! an upload, and everything acknowledged before is intact through the other.
//!
//! PostgreSQL comes from WEIR_TEST_POSTGRES_URL (scripts/postgres.sh prints it); without it the
//! test is skipped, unless WEIR_REQUIRE_POSTGRES=1. Artifacts are a shared local folder, and
//! again a prefix of the S3 test bucket (WEIR_TEST_S3_BUCKET and the AWS_* variables that
//! scripts/s3.sh prints; skipped without them unless WEIR_REQUIRE_S3=1).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{json, Value};

use common::Process;

const MODEL: &str = "iris";
const CLIENTS: usize = 6;
const VERSIONS_EACH: usize = 4;

/// A fresh database on the test server, dropped with this value.
struct Postgres {
    admin: String,
    name: String,
    url: String,
}

impl Postgres {
    /// `None` (the test is skipped) when no test server is configured.
    fn create(tag: &str) -> Option<Postgres> {
        let admin = match std::env::var("WEIR_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("WEIR_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "WEIR_REQUIRE_POSTGRES=1 but WEIR_TEST_POSTGRES_URL is not set (scripts/postgres.sh prints it)"
                );
                eprintln!("WEIR_TEST_POSTGRES_URL is not set: skipping");
                return None;
            }
        };
        let name = format!("weir_{tag}_{}", std::process::id());
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let (server, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{server}/{name}");
        Some(Postgres { admin, name, url })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .arg(url)
        .args(["-Atqc", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql is missing: scripts/postgres.sh installs PostgreSQL's client");
    assert!(status.success(), "psql failed: {sql}");
}

/// Where both replicas keep artifacts (`--artifacts`): a local folder both processes share (on
/// Kubernetes, a ReadWriteMany volume), or a fresh prefix of the S3 test bucket, which the
/// replicas reach through the AWS_* variables scripts/s3.sh printed; `None` skips the test.
fn shared_artifacts(dir: &Path, kind: Storage) -> Option<String> {
    match kind {
        Storage::Folder => Some(dir.join("artifacts").display().to_string()),
        Storage::Bucket => {
            let bucket = match std::env::var("WEIR_TEST_S3_BUCKET") {
                Ok(bucket) if !bucket.is_empty() => bucket,
                _ => {
                    assert!(
                        std::env::var("WEIR_REQUIRE_S3").as_deref() != Ok("1"),
                        "WEIR_REQUIRE_S3=1 but WEIR_TEST_S3_BUCKET is not set (scripts/s3.sh prints it)"
                    );
                    eprintln!("WEIR_TEST_S3_BUCKET is not set: skipping");
                    return None;
                }
            };
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            Some(format!(
                "s3://{bucket}/replicas-{}-{nanos}",
                std::process::id()
            ))
        }
    }
}

#[derive(Clone, Copy)]
enum Storage {
    Folder,
    Bucket,
}

/// A `weir registry` replica; its `host:port`.
struct Replica {
    process: Process,
    address: String,
}

/// Starts the replicas at the same moment (their schema migrations race, as two pods'
/// would), each announcing its address.
fn start_replicas(count: usize, db: &str, artifacts: &str, dir: &Path) -> Vec<Replica> {
    let mut children: Vec<_> = (0..count)
        .map(|_| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
            command
                .args(["registry", "--http-port", "0", "--db", db])
                .args(["--artifacts", artifacts])
                .current_dir(dir)
                .env_remove("WEIR_DB")
                .env_remove("WEIR_ARTIFACTS")
                .env_remove("WEIR_TOKENS")
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            command.spawn().unwrap()
        })
        .collect();
    let addresses: Vec<String> = children.iter_mut().map(common::announced_address).collect();
    addresses
        .into_iter()
        .zip(children)
        .map(|(address, child)| Replica {
            process: Process(child),
            address,
        })
        .collect()
}

/// One request as `user` (a registry without identities lets callers name themselves); the
/// status and the JSON answer (`null` when the body is not JSON).
fn call(address: &str, user: &str, method_and_path: &str, body: &[u8]) -> (u16, Value) {
    let headers = format!("X-Weir-User: {user}\r\nContent-Type: application/json\r\n");
    let (status, body) = common::http(address, method_and_path, &headers, body)
        .unwrap_or_else(|| panic!("{address} did not answer {method_and_path}"));
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A call that must succeed; its JSON answer.
fn ok(address: &str, user: &str, method_and_path: &str, body: Value) -> Value {
    let (status, answer) = call(address, user, method_and_path, body.to_string().as_bytes());
    assert_eq!(status, 200, "{method_and_path} on {address}: {answer}");
    answer
}

fn upload(address: &str, user: &str, path: &str, bytes: &[u8]) {
    let (status, answer) = call(
        address,
        user,
        &format!("PUT /api/2.0/mlflow-artifacts/artifacts/{path}"),
        bytes,
    );
    assert_eq!(status, 200, "upload of {path} to {address}: {answer}");
}

fn download(address: &str, path: &str) -> (u16, Vec<u8>) {
    common::http(
        address,
        &format!("GET /api/2.0/mlflow-artifacts/artifacts/{path}"),
        "X-Weir-User: reader\r\n",
        b"",
    )
    .unwrap()
}

/// The model file of client `client`'s `i`-th version: distinct bytes for each.
fn model_bytes(client: usize, i: usize) -> Vec<u8> {
    format!("not really onnx: client {client}, version {i}\n")
        .repeat(100)
        .into_bytes()
}

/// What a client registered: version number → the bytes of its model file.
type Registered = BTreeMap<i64, Vec<u8>>;

#[test]
fn two_replicas_on_one_database_and_a_shared_folder_stay_consistent_and_survive_a_kill() {
    two_replicas_stay_consistent_and_survive_a_kill(Storage::Folder, "replicas_folder");
}

#[test]
fn two_replicas_on_one_database_and_one_bucket_stay_consistent_and_survive_a_kill() {
    two_replicas_stay_consistent_and_survive_a_kill(Storage::Bucket, "replicas_bucket");
}

fn two_replicas_stay_consistent_and_survive_a_kill(storage: Storage, tag: &str) {
    let Some(db) = Postgres::create(tag) else {
        return;
    };
    let dir = common::scratch(&tag.replace('_', "-"));
    let Some(artifacts) = shared_artifacts(&dir, storage) else {
        return;
    };
    let mut replicas = start_replicas(2, &db.url, &artifacts, &dir);
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();

    ok(
        &addresses[0],
        "admin",
        "POST /api/2.0/mlflow/registered-models/create",
        json!({ "name": MODEL }),
    );
    ok(
        &addresses[1],
        "admin",
        "POST /api/2.0/weir/approvals/policy",
        json!({ "name": MODEL, "required_approvals": 1 }),
    );

    // Clients alternate between the replicas request by request, all at once.
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addresses, start) = (addresses.clone(), start.clone());
            std::thread::spawn(move || -> Registered {
                start.wait();
                let creator = format!("creator-{client}");
                let mut registered = Registered::new();
                for i in 0..VERSIONS_EACH {
                    let one = &addresses[(client + i) % 2];
                    let other = &addresses[(client + i + 1) % 2];
                    let bytes = model_bytes(client, i);
                    let folder = format!("clients/{client}/{i}");
                    upload(one, &creator, &format!("{folder}/model.onnx"), &bytes);
                    let created = ok(
                        other,
                        &creator,
                        "POST /api/2.0/mlflow/model-versions/create",
                        json!({ "name": MODEL, "source": format!("mlflow-artifacts:/{folder}") }),
                    );
                    let version = created["model_version"]["version"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    ok(
                        one,
                        "reviewer",
                        "POST /api/2.0/weir/approvals/approve",
                        json!({ "name": MODEL, "version": version }),
                    );
                    ok(
                        other,
                        "reviewer",
                        "POST /api/2.0/mlflow/registered-models/alias",
                        json!({ "name": MODEL, "alias": "champion", "version": version }),
                    );
                    registered.insert(version.parse().unwrap(), bytes);
                }
                registered
            })
        })
        .collect();
    let mut registered = Registered::new();
    for client in clients {
        for (version, bytes) in client.join().unwrap() {
            assert!(
                registered.insert(version, bytes).is_none(),
                "version {version} was handed out twice"
            );
        }
    }
    let total = (CLIENTS * VERSIONS_EACH) as i64;
    assert_eq!(
        registered.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "versions are numbered 1..{total} without gaps"
    );
    check_consistent(&addresses, &registered);

    // One more upload acknowledged by the first replica, then a large one to it that is still
    // arriving when the replica is killed.
    let last = model_bytes(99, 0);
    upload(&addresses[0], "creator-99", "last/model.onnx", &last);
    let mut unfinished = TcpStream::connect(&addresses[0]).unwrap();
    unfinished
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let declared = 64 * 1024 * 1024;
    write!(
        unfinished,
        "PUT /api/2.0/mlflow-artifacts/artifacts/big/model.onnx HTTP/1.1\r\nHost: x\r\nX-Weir-User: creator-99\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    unfinished.write_all(&vec![7u8; 1024 * 1024]).unwrap();
    replicas.remove(0).process.kill_hard();
    drop(unfinished);

    let survivor = &addresses[1..];
    check_consistent(survivor, &registered);
    assert_eq!(download(&survivor[0], "last/model.onnx"), (200, last));
    let (status, _) = download(&survivor[0], "big/model.onnx");
    assert_eq!(
        status, 404,
        "the unfinished upload is not visible, even in part"
    );
    // And the survivor carries on: the next version is the next number.
    let created = ok(
        &survivor[0],
        "creator-99",
        "POST /api/2.0/mlflow/model-versions/create",
        json!({ "name": MODEL, "source": "mlflow-artifacts:/last" }),
    );
    assert_eq!(created["model_version"]["version"], (total + 1).to_string());
    drop(replicas);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through every replica in `addresses`: each registered version exists with its files intact,
/// is approved, has exactly its audit entries, and the alias history is one chain ending at
/// the alias's current version.
fn check_consistent(addresses: &[String], registered: &Registered) {
    for address in addresses {
        for (version, bytes) in registered {
            let (status, file) = download(
                address,
                &format!(".weir/versions/{MODEL}/{version}/model.onnx"),
            );
            assert_eq!(status, 200, "version {version} through {address}");
            assert!(file == *bytes, "version {version}'s file through {address}");
            let (status, approval) = call(
                address,
                "reader",
                &format!("GET /api/2.0/weir/approvals/get?name={MODEL}&version={version}"),
                b"",
            );
            assert_eq!(status, 200, "{approval}");
            assert_eq!(approval["approval"]["approved"], true, "{approval}");
        }
        let (status, audit) = call(
            address,
            "reader",
            &format!("GET /api/2.0/weir/audit/list?name={MODEL}&max_results=1000"),
            b"",
        );
        assert_eq!(status, 200, "{audit}");
        let events = audit["events"].as_array().unwrap();
        let mut per_version: BTreeMap<String, HashMap<String, usize>> = BTreeMap::new();
        for event in events {
            *per_version
                .entry(event["version"].as_str().unwrap().to_owned())
                .or_default()
                .entry(event["action"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let expected: HashMap<String, usize> = [
            ("create_model_version", 1),
            ("approve", 1),
            ("set_alias", 1),
        ]
        .into_iter()
        .map(|(a, n)| (a.to_owned(), n))
        .collect();
        for version in registered.keys() {
            assert_eq!(
                per_version.get(&version.to_string()),
                Some(&expected),
                "audit of version {version} through {address}"
            );
        }
        // Every move of the alias saw the one before it: no two share a "before".
        let moves: HashMap<&str, &str> = events
            .iter()
            .filter(|e| e["action"] == "set_alias")
            .map(|e| (e["before"].as_str().unwrap(), e["after"].as_str().unwrap()))
            .collect();
        assert_eq!(
            moves.len(),
            registered.len(),
            "two alias moves saw the same value"
        );
        let mut current = "champion=".to_owned();
        for _ in 0..moves.len() {
            current = moves[current.as_str()].to_owned();
        }
        let (status, alias) = call(
            address,
            "reader",
            &format!("GET /api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion"),
            b"",
        );
        assert_eq!(status, 200, "{alias}");
        assert_eq!(
            current,
            format!(
                "champion={}",
                alias["model_version"]["version"].as_str().unwrap()
            )
        );
    }
}
