//! The physical limit the server is measured against: the same model called in-process through
//! weir's ONNX backend (ONNX Runtime via `ort`), no HTTP.
//!
//! usage: inprocess MODEL_DIR INPUT_NAME ROWS COLUMNS [CALLS] [THREADS]
//!
//! With THREADS > 1, that many threads call the model at once, each with its own ONNX Runtime
//! session (as `instance_count` gives the server), and the aggregate rate is reported.

use std::time::{Duration, Instant};

use anyhow::Context;
use weir_benches::percentile_us;
use weir_models::repository::{load_version, ModelConfig};
use weir_models::{Backend, Tensor, TensorData};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, input, rows, columns, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: inprocess MODEL_DIR INPUT_NAME ROWS COLUMNS [CALLS] [THREADS]");
    };
    let rows: usize = rows.parse().context("ROWS")?;
    let columns: usize = columns.parse().context("COLUMNS")?;
    let calls: usize = rest
        .first()
        .map_or(Ok(20_000), |c| c.parse())
        .context("CALLS")?;
    let threads: usize = rest
        .get(1)
        .map_or(Ok(1), |t| t.parse())
        .context("THREADS")?;
    let config = ModelConfig {
        instance_count: threads.max(1),
        ..ModelConfig::default()
    };
    let model = load_version(std::path::Path::new(dir), &config)?;
    let outputs: Vec<String> = model
        .signature()
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let values: Vec<f32> = (0..rows * columns).map(|i| (i % 7) as f32 * 0.9).collect();
    let call = |model: &dyn Backend| -> anyhow::Result<Duration> {
        let tensor = Tensor::new(
            input.clone(),
            vec![rows, columns],
            TensorData::Fp32(values.clone()),
        );
        let started = Instant::now();
        model.infer(vec![tensor], &outputs)?;
        Ok(started.elapsed())
    };
    if threads > 1 {
        let started = Instant::now();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| (0..calls).try_for_each(|_| call(model.as_ref()).map(drop)))
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread panicked")))
            })
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        let total = (calls * threads) as f64;
        println!(
            "in-process {dir} [{rows}x{columns}]: {threads} threads x {calls} calls, {:.0} calls/s, {:.0} rows/s",
            total / elapsed,
            total * rows as f64 / elapsed
        );
        return Ok(());
    }
    // A tenth of the calls warm up first and are not measured.
    for _ in 0..calls / 10 {
        call(model.as_ref())?;
    }
    let mut times: Vec<Duration> = (0..calls)
        .map(|_| call(model.as_ref()))
        .collect::<anyhow::Result<_>>()?;
    times.sort();
    let total: Duration = times.iter().sum();
    println!(
        "in-process {dir} [{rows}x{columns}]: {calls} calls, p50 {:.1} us, p99 {:.1} us, mean {:.1} us, {:.0} calls/s, {:.0} rows/s on one thread",
        percentile_us(&times, 50.0),
        percentile_us(&times, 99.0),
        total.as_secs_f64() * 1e6 / calls as f64,
        calls as f64 / total.as_secs_f64(),
        (calls * rows) as f64 / total.as_secs_f64()
    );
    Ok(())
}
