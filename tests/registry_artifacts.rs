//! `weir registry --artifacts`: a folder or `s3://BUCKET/PREFIX`, anything else refused at start
//! naming it; a bucket that cannot be used refused at start too; and a 64 MiB upload streamed
//! through the HTTP API with the registry's peak memory (VmHWM) growing by a bounded amount, on
//! the folder and on the real S3 server of `scripts/s3.sh` (`WEIR_TEST_S3_BUCKET`; skipped
//! without it unless `WEIR_REQUIRE_S3=1`).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `weir registry` with `--artifacts location`, SQLite in `folder`, and `env` added.
fn registry(folder: &std::path::Path, location: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["registry", "--http-port", "0", "--db"])
        .arg(format!("sqlite://{}/r.db", folder.display()))
        .args(["--artifacts", location])
        .current_dir(folder)
        .env_remove("WEIR_ARTIFACTS");
    if !env.is_empty() {
        // The test's own S3 settings (scripts/s3.sh exports them) must not leak into a case
        // that names its own.
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs a registry that must refuse to start; its stderr.
fn refused(folder: &std::path::Path, location: &str, env: &[(&str, &str)]) -> String {
    let mut child = registry(folder, location, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a registry that starts would block here, so wait at most a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir registry --artifacts {location} started");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{location} was accepted: {stderr}");
    stderr
}

#[test]
fn an_unsupported_scheme_is_refused_at_start_naming_it() {
    let folder = common::scratch("artifacts-scheme");
    for (location, scheme) in [("ftp://x", "ftp"), ("gs://bucket/models", "gs")] {
        let said = refused(&folder, location, &[]);
        assert!(said.contains(&format!("scheme '{scheme}'")), "{said}");
        assert!(said.contains("s3://BUCKET/PREFIX"), "{said}");
    }
    assert!(
        std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(':')),
        "a folder named after the scheme was made"
    );
}

#[test]
fn a_bucket_that_cannot_be_used_is_refused_at_start() {
    let folder = common::scratch("artifacts-bad-bucket");
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-value"),
        ("AWS_REGION", "garage"),
    ];
    // A plain-http endpoint needs AWS_ALLOW_HTTP, as object_store and the SDKs require.
    let mut env = keys.to_vec();
    env.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
    let said = refused(&folder, "s3://models/weir", &env);
    assert!(said.contains("AWS_ALLOW_HTTP"), "{said}");
    assert!(!said.contains("not-a-real-secret-value"), "{said}");
    // An endpoint nobody answers on: said at start, not at the first upload.
    env.push(("AWS_ALLOW_HTTP", "true"));
    let said = refused(&folder, "s3://models/weir", &env);
    assert!(said.contains("s3://models/weir"), "{said}");
    assert!(!said.contains("not-a-real-secret-value"), "{said}");
}

/// The registry's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Deterministic bytes, a chunk at a time (a xorshift stream), so the test never holds the file.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buffer: &mut [u8]) {
        for byte in buffer {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
    }
}

const FILE: usize = 64 << 20;
const CHUNK: usize = 256 << 10;

/// A 64 MiB upload streamed to the registry at `address`, then read back and compared chunk by
/// chunk; the registry's peak memory may grow by at most `bound_mib` meanwhile.
fn streams_a_large_file(address: &str, pid: u32, bound_mib: u64) {
    let before = peak_kib(pid);
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    write!(
        stream,
        "PUT /api/2.0/mlflow-artifacts/artifacts/big/model.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Weir-User: alice\r\nContent-Length: {FILE}\r\n\r\n"
    )
    .unwrap();
    let (mut noise, mut buffer) = (Noise(0x2545_f491_4f6c_dd1d), vec![0u8; CHUNK]);
    for _ in 0..FILE / CHUNK {
        noise.fill(&mut buffer);
        stream.write_all(&buffer).unwrap();
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    write!(
        stream,
        "GET /api/2.0/mlflow-artifacts/artifacts/big/model.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    assert_eq!(length, Some(FILE));
    let (mut expected, mut expected_buffer) = (Noise(0x2545_f491_4f6c_dd1d), vec![0u8; CHUNK]);
    let mut received = vec![0u8; CHUNK];
    for index in 0..FILE / CHUNK {
        reader.read_exact(&mut received).unwrap();
        expected.fill(&mut expected_buffer);
        assert!(received == expected_buffer, "chunk {index} differs");
    }
    let grown_mib = peak_kib(pid).saturating_sub(before) / 1024;
    eprintln!("the registry's peak memory grew by {grown_mib} MiB for a 64 MiB file");
    assert!(
        grown_mib <= bound_mib,
        "the registry's peak memory grew by {grown_mib} MiB for a 64 MiB file (bound {bound_mib} MiB)"
    );
}

fn start(folder: &std::path::Path, location: &str) -> (common::Process, String) {
    let mut child = registry(folder, location, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = common::announced_address(&mut child);
    (common::Process(child), address)
}

#[test]
fn a_large_upload_streams_through_a_folder_in_bounded_memory() {
    let folder = common::scratch("artifacts-large-folder");
    let artifacts = folder.join("artifacts");
    let (registry, address) = start(&folder, artifacts.to_str().unwrap());
    streams_a_large_file(&address, registry.0.id(), 24);
    assert_eq!(
        std::fs::metadata(artifacts.join("big/model.bin"))
            .unwrap()
            .len(),
        FILE as u64
    );
}

#[test]
fn a_large_upload_streams_through_s3_in_bounded_memory() {
    let bucket = match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(bucket) if !bucket.is_empty() => bucket,
        _ => {
            assert!(
                std::env::var("WEIR_REQUIRE_S3").as_deref() != Ok("1"),
                "WEIR_REQUIRE_S3=1 but WEIR_TEST_S3_BUCKET is not set (eval \"$(scripts/s3.sh)\")"
            );
            eprintln!("WEIR_TEST_S3_BUCKET is not set: skipping the S3 half");
            return;
        }
    };
    let folder = common::scratch("artifacts-large-s3");
    let prefix = format!(
        "weir-tests/registry-artifacts-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (registry, address) = start(&folder, &format!("s3://{bucket}/{prefix}"));
    // Parts of 5 MiB, two in flight while the next fills, and the connection pool's buffers.
    streams_a_large_file(&address, registry.0.id(), 48);
}
