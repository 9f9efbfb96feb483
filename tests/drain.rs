//! Graceful drain of the real binary: SIGTERM while requests are in flight.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A binary-tensor request for the MLP test model, `rows` rows: its extra headers and body.
fn mlp_request(rows: usize) -> (String, Vec<u8>) {
    let header = format!(
        r#"{{"inputs": [{{"name": "x", "shape": [{rows}, 256], "datatype": "FP32", "parameters": {{"binary_data_size": {}}}}}]}}"#,
        rows * 1024
    );
    let mut body = header.clone().into_bytes();
    body.extend(std::iter::repeat_n(0.25f32.to_le_bytes(), rows * 256).flatten());
    (
        format!("Inference-Header-Content-Length: {}\r\n", header.len()),
        body,
    )
}

/// A number from the metrics text, 0 when the series is absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_every_accepted_request_then_exits_zero() {
    let repo = std::env::temp_dir().join(format!("weir-drain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    common::add_test_model(&repo, "mlp", 1);

    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--http-port",
            "0",
            "--drain-timeout",
            "1m",
            "--model-repository",
        ])
        .arg(&repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = common::announced_address(&mut child);
    wait_until("ready", || {
        common::get(&address, "/v2/health/ready").0 == 200
    });

    // Six large requests on one model instance: one runs while five wait in its queue.
    // Large requests (~1 s of model time each) on one instance: while one runs the others wait.
    let request = std::sync::Arc::new(mlp_request(8192));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (address, request) = (address.clone(), request.clone());
            std::thread::spawn(move || {
                common::http(
                    &address,
                    "POST /v2/models/mlp/infer",
                    &request.0,
                    &request.1,
                )
                .map_or(0, |(status, _)| status)
            })
        })
        .collect();
    // Accepted = in flight + already answered: it only grows, so no poll can miss it.
    let mut in_flight_at_signal = 0;
    wait_until("all six requests accepted", || {
        let text = common::get(&address, "/metrics").1;
        in_flight_at_signal = metric(&text, r#"weir_inflight_requests{model="mlp",version="1"}"#);
        let answered = metric(
            &text,
            r#"weir_inference_requests_total{model="mlp",version="1",code="200",protocol="http"}"#,
        );
        in_flight_at_signal + answered == 6
    });
    assert!(
        in_flight_at_signal >= 1,
        "no request was in flight when the signal went out"
    );
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());

    for client in clients {
        assert_eq!(
            client.join().unwrap(),
            200,
            "an accepted request failed during the drain"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "weir serve did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(&address).is_err(),
        "the port should be closed after exit"
    );
    let _ = std::fs::remove_dir_all(&repo);
}
