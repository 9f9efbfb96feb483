//! A closed-loop gRPC load generator for the Open Inference Protocol's `ModelInfer`: the gRPC
//! counterpart of `wrk -t1` in `scripts/bench_grpc.sh`, so gRPC and HTTP rows of one run
//! compare like with like.
//!
//! usage: grpc_load --addr 127.0.0.1:PORT --model NAME --input NAME --shape 1,4
//!        --values 5.1,3.5,1.4,0.2 [--datatype FP32] [--typed] [--concurrency 32]
//!        [--connections 1] [--duration 10s] [--max-requests N] [--version V]
//!
//! `--concurrency` closed-loop callers (each sends its next call when the last one answered)
//! share `--connections` HTTP/2 connections round-robin (default one connection: all callers
//! multiplex on it as concurrent streams, as `tritonclient.grpc` does with one channel). The
//! client is the runtime's tonic-generated one on hyper's HTTP/2 client; it runs on ONE thread (a current-thread tokio runtime), like `wrk -t1`, because the
//! load generator and the server share the machine's cores. It stops by itself at the
//! duration or the request count, whichever comes first. Loopback only: the address must be
//! 127.0.0.1 or ::1, so a typo cannot load a remote server.
//!
//! Inputs go as `raw_input_contents` (little-endian bytes, what `tritonclient.grpc` sends by
//! default) or, with `--typed`, as typed `contents`. `--values` shorter than the shape's
//! element count repeats cyclically (an MLP row of 256 from a short pattern).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weir_benches::percentile_us;
use weir_runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use weir_runtime::grpc::proto::model_infer_request::InferInputTensor;
use weir_runtime::grpc::proto::{InferTensorContents, ModelInferRequest, ServerLiveRequest};

#[derive(Parser, Debug)]
#[command(about = "closed-loop gRPC ModelInfer load on loopback")]
struct Args {
    /// Server address; loopback only (127.0.0.1:PORT or [::1]:PORT).
    #[arg(long)]
    addr: SocketAddr,
    /// Model name in ModelInferRequest.model_name.
    #[arg(long)]
    model: String,
    /// Model version ("" = the server's choice).
    #[arg(long, default_value = "")]
    version: String,
    /// Input tensor name.
    #[arg(long)]
    input: String,
    /// Input shape, comma-separated (e.g. 1,4).
    #[arg(long, value_delimiter = ',')]
    shape: Vec<i64>,
    /// Input values, comma-separated; repeated cyclically to fill the shape.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    values: Vec<f64>,
    /// Input datatype: FP32, FP64, INT32 or INT64.
    #[arg(long, default_value = "FP32")]
    datatype: String,
    /// Send typed `contents` instead of `raw_input_contents`.
    #[arg(long)]
    typed: bool,
    /// Concurrent closed-loop callers (HTTP/2 streams in flight).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// HTTP/2 connections the callers share round-robin.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to load, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Upper bound on calls sent in total (the run also stops at --duration).
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
}

/// `10s`, `500ms`, `2m` or bare seconds: the forms `wrk -d` and the scripts' DURATION use.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?}: expected e.g. 10s, 500ms or 1m");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(bad()),
    }
}

/// What one caller saw: each successful call's latency and failures by gRPC status code.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check(&args)?;
    let request = build_request(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, request))
}

/// Refuses a non-loopback address (a benchmark must not load someone else's server by a typo)
/// and a run with no caller or no connection.
fn check(args: &Args) -> anyhow::Result<()> {
    if !args.addr.ip().is_loopback() {
        bail!(
            "address {} is not loopback: grpc_load only loads 127.0.0.1 or ::1",
            args.addr
        );
    }
    if args.concurrency == 0 || args.connections == 0 {
        bail!("--concurrency and --connections must be at least 1");
    }
    Ok(())
}

/// One request reused for every call (prost messages clone cheaply enough next to a round
/// trip; the server sees exactly the same bytes each time, as wrk sends the same body).
fn build_request(args: &Args) -> anyhow::Result<ModelInferRequest> {
    let count: usize = args
        .shape
        .iter()
        .map(|&d| usize::try_from(d).with_context(|| format!("negative dimension {d} in --shape")))
        .product::<anyhow::Result<usize>>()?;
    if count == 0 || args.values.is_empty() {
        bail!("--shape must hold at least one element and --values at least one value");
    }
    let values: Vec<f64> = args.values.iter().copied().cycle().take(count).collect();
    let mut contents = InferTensorContents::default();
    let raw: Vec<u8> = match args.datatype.as_str() {
        "FP32" => {
            let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            contents.fp32_contents = v.clone();
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        "FP64" => {
            contents.fp64_contents = values.clone();
            values.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        "INT32" => {
            let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
            contents.int_contents = v.clone();
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        "INT64" => {
            let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
            contents.int64_contents = v.clone();
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        other => bail!("unsupported --datatype {other:?}: use FP32, FP64, INT32 or INT64"),
    };
    let typed = args.typed;
    Ok(ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        inputs: vec![InferInputTensor {
            name: args.input.clone(),
            datatype: args.datatype.clone(),
            shape: args.shape.clone(),
            contents: typed.then_some(contents),
            ..Default::default()
        }],
        raw_input_contents: if typed { Vec::new() } else { vec![raw] },
        ..Default::default()
    })
}

/// One HTTP/2 connection: hyper's client with `http2_only` multiplexes every call on the one
/// connection it keeps (tonic's own `Channel` would need tonic's `channel` feature, which
/// would build the runtime, and so `weir`, a second time with another feature set).
type Connection = Client<HttpConnector, tonic::body::Body>;

fn connection() -> Connection {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector)
}

async fn run(args: Args, request: ModelInferRequest) -> anyhow::Result<()> {
    let origin: http::Uri = format!("http://{}", args.addr).parse()?;
    let connections: Vec<Connection> = (0..args.connections).map(|_| connection()).collect();
    // Each connection opens on its first call; check the server answers before timing anything.
    for connection in &connections {
        GrpcInferenceServiceClient::with_origin(connection.clone(), origin.clone())
            .server_live(ServerLiveRequest {})
            .await
            .with_context(|| format!("no gRPC server answers at {origin}"))?;
    }
    // Callers take call numbers from one counter; the run ends at the count or the deadline.
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut callers = Vec::with_capacity(args.concurrency);
    for caller in 0..args.concurrency {
        let connection = connections[caller % connections.len()].clone();
        let mut client = GrpcInferenceServiceClient::with_origin(connection, origin.clone())
            .max_decoding_message_size(usize::MAX);
        let request = request.clone();
        let issued = issued.clone();
        let max = args.max_requests;
        callers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                let sent = Instant::now();
                match client.model_infer(request.clone()).await {
                    Ok(answer) if !answer.get_ref().outputs.is_empty() => {
                        tally.latencies.push(sent.elapsed());
                    }
                    Ok(_) => *tally.errors.entry("no outputs".into()).or_default() += 1,
                    Err(status) => {
                        *tally
                            .errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for caller in callers {
        let tally = caller.await?;
        total.latencies.extend(tally.latencies);
        for (code, n) in tally.errors {
            *total.errors.entry(code).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    report(&args, &mut total, elapsed);
    Ok(())
}

/// Prints one block in a fixed format the bench script parses (`Requests/sec:` as wrk's).
fn report(args: &Args, total: &mut Tally, elapsed: Duration) {
    total.latencies.sort_unstable();
    let ok = total.latencies.len() as u64;
    let errors: u64 = total.errors.values().sum();
    let contents = if args.typed {
        "typed contents"
    } else {
        "raw_input_contents"
    };
    println!(
        "grpc_load {} model {} ({contents}), {} streams over {} connection(s), {:.1}s",
        args.addr,
        args.model,
        args.concurrency,
        args.connections,
        elapsed.as_secs_f64()
    );
    println!("  {} ok, {errors} errors", ok);
    for (code, n) in &total.errors {
        println!("  error {code}: {n}");
    }
    println!(
        "  latency p50 {:.0} us, p90 {:.0} us, p99 {:.0} us",
        percentile_us(&total.latencies, 50.0),
        percentile_us(&total.latencies, 90.0),
        percentile_us(&total.latencies, 99.0)
    );
    println!("Requests/sec: {:.2}", ok as f64 / elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_wrk() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "grpc_load",
            "--addr",
            "127.0.0.1:1",
            "--model",
            "iris",
            "--input",
            "features",
            "--shape",
            "1,4",
            "--values",
            "1,-2",
        ];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn raw_request_repeats_values_as_little_endian_fp32() {
        let request = build_request(&args(&[])).unwrap();
        let expected: Vec<u8> = [1.0f32, -2.0, 1.0, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(request.raw_input_contents, vec![expected]);
        assert!(request.inputs[0].contents.is_none());
        assert_eq!(request.inputs[0].shape, vec![1, 4]);
    }

    #[test]
    fn typed_request_carries_contents_and_no_raw_bytes() {
        let request = build_request(&args(&["--typed", "--datatype", "INT64"])).unwrap();
        assert!(request.raw_input_contents.is_empty());
        let contents = request.inputs[0].contents.as_ref().unwrap();
        assert_eq!(contents.int64_contents, vec![1, -2, 1, -2]);
    }

    #[test]
    fn only_loopback_and_at_least_one_caller_are_accepted() {
        assert!(check(&args(&[])).is_ok());
        let mut remote = args(&[]);
        remote.addr = "10.0.0.1:8001".parse().unwrap();
        assert!(check(&remote).is_err());
        assert!(check(&args(&["--concurrency", "0"])).is_err());
        assert!(check(&args(&["--connections", "0"])).is_err());
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(build_request(&args(&["--datatype", "BYTES"])).is_err());
        assert!(build_request(&args(&["--shape", "1,-4"])).is_err());
        assert!(build_request(&args(&["--shape", "0,4"])).is_err());
    }
}
