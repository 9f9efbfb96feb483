//! Hostile clients against the real servers (`weir serve`, `weir registry`, `weir route`), all
//! on loopback: connections that stall in their headers or their body, more of them than the
//! connection cap, from several source addresses (all of 127/8 is loopback, so 127.0.0.2 and
//! 127.0.0.3 are other peers). A legitimate request must be answered and every stalled
//! connection closed by the server. Deadlines are set short with the flags so the tests are
//! quick; assertions are on outcomes, with generous bounds.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{scratch, wait_for, Process};

const IRIS_PATH: &str = "/v2/models/iris/infer";
const IRIS_ROW: &str = r#"{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;

/// Short deadlines and a cap of 32 (16 per peer), so 40 stalling clients from two addresses
/// fill the server.
const TIGHT: [&str; 12] = [
    "--header-timeout-secs",
    "2",
    "--body-grace-secs",
    "2",
    "--body-min-rate",
    "1000",
    "--idle-timeout-secs",
    "60",
    "--max-connections",
    "32",
    "--max-connections-per-peer",
    "16",
];

/// How a client stalls.
#[derive(Clone, Copy)]
enum Stall {
    /// Part of a header block, then nothing.
    Headers,
    /// Whole headers of a POST declaring 100 body bytes, 10 of them, then nothing.
    Body(&'static str),
}

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: &str) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(to.parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// `count` connections from `from` to `to` that stall as `how`. Writing may fail on a
/// connection the server has already refused; that is one of the outcomes tested.
fn stall(from: &str, to: &str, count: usize, how: Stall) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = connect_from(from, to);
            let bytes = match how {
                Stall::Headers => "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n".to_owned(),
                Stall::Body(path) => format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"inputs\":"
                ),
            };
            let _ = stream.write_all(bytes.as_bytes());
            stream
        })
        .collect()
}

/// What the server sent on `stream` until it closed it (EOF or reset); fails the test if it
/// is still open after 60 s.
fn until_closed(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buffer[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server left a stalled connection open for 60 s")
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Whether the server has closed `stream` (or sent something) within 100 ms.
fn closed_now(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(err) => !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        // Closed (0 bytes) or answered (a refusal's first byte).
        Ok(received) => received <= byte.len(),
    }
}

fn infer(address: &str) -> u16 {
    common::http(
        address,
        &format!("POST {IRIS_PATH}"),
        "Content-Type: application/json\r\n",
        IRIS_ROW.as_bytes(),
    )
    .map_or(0, |(status, _)| status)
}

/// A `weir serve` of the iris test model with `extra` flags, ready; its address.
fn serve(dir: &Path, extra: &[&str]) -> (Process, String) {
    let repo = dir.join("repo");
    common::add_test_model(&repo, "iris", 1);
    let mut args = vec![
        "serve",
        "--http-port",
        "0",
        "--model-repository",
        repo.to_str().unwrap(),
    ];
    args.extend(extra);
    let (process, address) = common::start_weir(&args, Path::new("."));
    wait_for("weir serve to be ready", 60, || {
        common::get(&address, "/v2/health/ready").0 == 200
    });
    (process, address)
}

/// The server at `address` (started with [`TIGHT`]) filled beyond its cap by clients stalling
/// in their headers (from 127.0.0.2) and bodies (127.0.0.3, posting to `body_path`): `legit`
/// is answered (once the deadlines have closed the stallers, if not before), and every stalled
/// connection is closed by the server. Returns what the body stallers were told.
fn fill_and_survive(
    address: &str,
    body_path: &'static str,
    legit: impl Fn() -> bool,
) -> Vec<String> {
    let mut headers = stall("127.0.0.2", address, 20, Stall::Headers);
    let mut bodies = stall("127.0.0.3", address, 20, Stall::Body(body_path));
    wait_for("a legitimate request to be answered", 60, &legit);
    for stream in &mut headers {
        until_closed(stream);
    }
    let told: Vec<String> = bodies.iter_mut().map(until_closed).collect();
    assert!(legit(), "answered once the stallers are gone");
    told
}

#[test]
fn serve_answers_and_closes_stallers_beyond_its_connection_cap() {
    let dir = scratch("hostile-serve");
    let (_serve, address) = serve(&dir, &TIGHT);
    let told = fill_and_survive(&address, IRIS_PATH, || infer(&address) == 200);
    // 16 body stallers were admitted and told why they were cut off; 4 were over the share
    // and refused (a 503 or nothing, as the socket was closed under them).
    let timed_out = told
        .iter()
        .filter(|t| t.starts_with("HTTP/1.1 408"))
        .count();
    assert_eq!(timed_out, 16, "{told:?}");
    for refusal in told.iter().filter(|t| !t.starts_with("HTTP/1.1 408")) {
        assert!(
            refusal.is_empty() || refusal.starts_with("HTTP/1.1 503"),
            "{refusal}"
        );
    }
    assert_listener_counted_the_stallers(&address, &told);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The operator can see what the stallers of [`fill_and_survive`] met: the listener's counts
/// are on the server's `/metrics`, a slow body for each staller that was told 408. (How many
/// body stallers got in before the cap depends on when the legitimate request connected, so
/// the count is read from what they were told, not fixed.)
fn assert_listener_counted_the_stallers(address: &str, told: &[String]) {
    let timed_out = told
        .iter()
        .filter(|t| t.starts_with("HTTP/1.1 408"))
        .count();
    assert!(timed_out >= 1, "{told:?}");
    let (status, metrics) = common::http(address, "GET /metrics", "", b"").unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    let count = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(
        count("weir_http_slow_bodies_total") >= timed_out as f64,
        "{timed_out} told 408: {metrics}"
    );
    assert!(
        count("weir_http_connections_refused_total") >= 1.0,
        "{metrics}"
    );
    assert!(count("weir_http_header_timeouts_total") >= 1.0, "{metrics}");
}

#[test]
fn one_peer_cannot_take_every_connection_of_serve() {
    let dir = scratch("hostile-peer");
    // Deadlines far beyond the test: only the per-peer share can let the request in.
    let (_serve, address) = serve(
        &dir,
        &[
            "--header-timeout-secs",
            "600",
            "--max-connections",
            "32",
            "--max-connections-per-peer",
            "16",
        ],
    );
    let mut stalled = stall("127.0.0.2", &address, 40, Stall::Headers);
    // The 24 beyond the share are closed at once; the 16 admitted ones stay open.
    wait_for("24 connections to be refused", 30, || {
        stalled.retain_mut(|stream| !closed_now(stream));
        stalled.len() <= 16
    });
    assert_eq!(stalled.len(), 16);
    for _ in 0..5 {
        assert_eq!(infer(&address), 200, "while one peer stalls on its share");
    }
    assert!(stalled.iter_mut().all(|stream| !closed_now(stream)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn five_hundred_and_twenty_stalled_bodies_no_longer_starve_inference() {
    let dir = scratch("hostile-520");
    // The documented defaults: 4096 connections, 1024 per peer, 512 requests admitted, a 10 s
    // body grace. The stalled bodies used to hold every admission slot (all answers 503).
    let (_serve, address) = serve(&dir, &[]);
    let mut stalled = stall("127.0.0.1", &address, 520, Stall::Body(IRIS_PATH));
    for _ in 0..5 {
        assert_eq!(infer(&address), 200, "inference while 520 bodies stall");
    }
    let told: Vec<String> = stalled.iter_mut().map(until_closed).collect();
    assert!(
        told.iter().all(|t| t.starts_with("HTTP/1.1 408")),
        "each stalled body is answered 408 after the grace: {:?}",
        told.iter().find(|t| !t.starts_with("HTTP/1.1 408"))
    );
    assert_eq!(infer(&address), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn registry_answers_and_closes_stallers_beyond_its_connection_cap() {
    let dir = scratch("hostile-registry");
    let db = format!("sqlite://{}/r.db", dir.display());
    let artifacts = dir.join("artifacts");
    let mut args = vec![
        "registry",
        "--http-port",
        "0",
        "--db",
        &db,
        "--artifacts",
        artifacts.to_str().unwrap(),
    ];
    args.extend(TIGHT);
    let (_registry, address) = common::start_weir(&args, &dir);
    let told = fill_and_survive(&address, "/api/2.0/mlflow/registered-models/create", || {
        common::get(&address, "/api/2.0/mlflow/registered-models/search").0 == 200
    });
    assert!(
        told.iter().all(|t| !t.starts_with("HTTP/1.1 2")),
        "{told:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn router_answers_and_closes_stallers_beyond_its_connection_cap() {
    let dir = scratch("hostile-route");
    let (_serve, replica) = serve(&dir, &[]);
    let routes = dir.join("routes.toml");
    std::fs::write(
        &routes,
        format!(
            "[[route]]\nmodel = \"iris\"\n[[route.backend]]\nversion = \"1\"\nendpoints = [\"http://{replica}\"]\nweight = 100\n"
        ),
    )
    .unwrap();
    let mut args = vec!["--config", routes.to_str().unwrap()];
    args.extend(TIGHT);
    let (_router, data, admin) = common::start_router(&args, &dir);
    wait_for("the router to reach its replica", 60, || {
        infer(&data) == 200
    });
    let told = fill_and_survive(&data, IRIS_PATH, || infer(&data) == 200);
    assert!(
        told.iter().all(|t| !t.starts_with("HTTP/1.1 2")),
        "{told:?}"
    );
    assert_listener_counted_the_stallers(&data, &told);
    // The admin listener has deadlines and caps of its own.
    let admin_ok = || common::get(&admin, "/admin/v1/routes").0 == 200;
    fill_and_survive(&admin, "/admin/v1/routes/iris/canary", admin_ok);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn router_refuses_a_huge_declared_body_at_once_and_holds_bodies_under_its_budget() {
    let dir = scratch("hostile-route-budget");
    let (_serve, replica) = serve(&dir, &[]);
    let routes = dir.join("routes.toml");
    std::fs::write(
        &routes,
        format!(
            "[[route]]\nmodel = \"iris\"\n[[route.backend]]\nversion = \"1\"\nendpoints = [\"http://{replica}\"]\nweight = 100\n"
        ),
    )
    .unwrap();
    // 64 KiB of memory: 32 KiB for bodies held at once. Body deadlines far away, so only the
    // declared length can explain a refusal before the body.
    let args = [
        "--config",
        routes.to_str().unwrap(),
        "--max-memory",
        "65536",
        "--body-grace",
        "10m",
    ];
    let (_router, data, _admin) = common::start_router(&args, &dir);
    wait_for("the router to reach its replica", 60, || {
        infer(&data) == 200
    });
    // Declares far more than max_body_bytes and sends two bytes: refused from the header alone,
    // not after waiting for a body that will never come.
    let mut huge = TcpStream::connect(&data).unwrap();
    let head =
        format!("POST {IRIS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{{}}");
    huge.write_all(head.as_bytes()).unwrap();
    let told = until_closed(&mut huge);
    assert!(told.starts_with("HTTP/1.1 413"), "{told}");
    assert!(told.contains("larger than the limit"), "{told}");
    // A valid request padded with 40 KiB of JSON whitespace does not fit the 32 KiB budget:
    // 503 with Retry-After and a JSON reason, and the router keeps answering.
    let padded = format!("{}{IRIS_ROW}", " ".repeat(40 * 1024));
    let (status, headers, body) = common::http_with_headers(
        &data,
        &format!("POST {IRIS_PATH}"),
        "Content-Type: application/json\r\n",
        padded.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains("retry-after: 1"), "{headers}");
    let reason: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reason = reason["error"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("memory for request bodies"), "{reason}");
    // What was drawn for it was given back: the next (small) request is answered.
    assert_eq!(infer(&data), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
