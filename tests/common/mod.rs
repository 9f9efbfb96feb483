//! Helpers for the tests that run the `weir` binary.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The generated test models (`make setup` writes them).
pub fn test_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-models")
}

/// Puts the test model `model/version` (its `model.onnx`) into the repository at `repo`.
pub fn add_test_model(repo: &Path, model: &str, version: u32) {
    let target = repo.join(model).join(version.to_string());
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(
        test_models().join(format!("{model}/{version}/model.onnx")),
        target.join("model.onnx"),
    )
    .unwrap();
}

/// Sends one HTTP/1.1 request (with `Connection: close`) on a fresh connection and returns the
/// status code and body; `None` when the server cannot be reached or answers nothing.
pub fn http(
    address: &str,
    method_and_path: &str,
    headers: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    http_with_headers(address, method_and_path, headers, body)
        .map(|(status, _, body)| (status, body))
}

/// As [`http`], with the response's header block (lower-cased) as well.
pub fn http_with_headers(
    address: &str,
    method_and_path: &str,
    headers: &str,
    body: &[u8],
) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let head = format!(
        "{method_and_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let status = std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    Some((status, head, answer[split..].to_vec()))
}

/// A GET whose body is read as text; status 0 when unreachable.
pub fn get(address: &str, path: &str) -> (u16, String) {
    http(address, &format!("GET {path}"), "", b"").map_or((0, String::new()), |(status, body)| {
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

/// The `http://host:port` a freshly started `weir serve` or `weir registry` announces on its
/// first line of output (`… listening on http://127.0.0.1:PORT`). The pipe is closed after that
/// line, as `weir serve | head -1` would close it: the server must keep running regardless.
pub fn announced_url(child: &mut std::process::Child) -> String {
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    first
        .trim()
        .rsplit("listening on ")
        .next()
        .unwrap()
        .to_owned()
}

/// The `host:port` part of [`announced_url`].
pub fn announced_address(child: &mut std::process::Child) -> String {
    announced_url(child)
        .trim_start_matches("http://")
        .to_owned()
}

/// A `weir registry` (with tracking) on a free port, SQLite in a fresh folder.
pub struct Registry {
    child: std::process::Child,
    pub url: String,
    pub folder: std::path::PathBuf,
}

impl Registry {
    pub fn start(tag: &str) -> Registry {
        let folder = std::env::temp_dir().join(format!("weir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["registry", "--http-port", "0", "--db"])
            .arg(format!("sqlite://{}/r.db", folder.display()))
            .arg("--artifacts")
            .arg(folder.join("artifacts"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = announced_url(&mut child);
        Registry { child, url, folder }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// A command's stdout, after checking that it succeeded.
pub fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process that is stopped with the test: SIGTERM (it drains), then SIGKILL after 20 s.
pub struct Process(pub std::process::Child);

impl Process {
    /// SIGKILL now: no chance to drain or say goodbye.
    pub fn kill_hard(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = std::process::Command::new("kill")
            .arg(self.0.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `weir` child (run in `dir`) that announces an address on its first line; that address.
pub fn start_weir<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    dir: &std::path::Path,
) -> (Process, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = announced_address(&mut child);
    (Process(child), address)
}

/// A `weir` child (run in `dir`) and the `host:port` on each of its first `lines` lines of
/// output (`weir route` announces its data address, then its admin API's). The pipe is closed
/// after those lines.
pub fn start_weir_announcing<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    dir: &std::path::Path,
    lines: usize,
) -> (Process, Vec<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut addresses = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let at = line
            .find("http://")
            .unwrap_or_else(|| panic!("no address announced in {line:?}"));
        addresses.push(line[at + "http://".len()..].trim().to_owned());
    }
    (Process(child), addresses)
}

/// `weir route` (run in `dir`) with `args` after `route`, data and admin ports free ones:
/// the process, the data address and the admin API's address.
pub fn start_router(args: &[&str], dir: &std::path::Path) -> (Process, String, String) {
    let mut all = vec!["route", "--http-port", "0", "--admin-port", "0"];
    all.extend(args);
    let (process, mut addresses) = start_weir_announcing(&all, dir, 2);
    let admin = addresses.pop().unwrap();
    let data = addresses.pop().unwrap();
    (process, data, admin)
}

/// A fresh folder for one test.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `done` every 100 ms; fails the test after `seconds`.
pub fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real Prometheus (the Debian package) on a free loopback port, scraping `targets`
/// (`host:port`) every `interval`; ready when this returns. Its `host:port`.
pub fn prometheus(dir: &std::path::Path, targets: &[&str], interval: &str) -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {interval}\nscrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus is missing: make setup installs the Debian package");
    let address = format!("127.0.0.1:{port}");
    let process = Process(child);
    wait_for("Prometheus to be ready", 30, || {
        get(&address, "/-/ready").0 == 200
    });
    (process, address)
}
