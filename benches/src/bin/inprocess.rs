//! The physical limit the server is measured against: the same model called in-process through
//! weir's ONNX backend (ONNX Runtime via `ort`), one call at a time, no HTTP.
//!
//! usage: inprocess MODEL_DIR INPUT_NAME ROWS COLUMNS [CALLS]

use std::time::{Duration, Instant};

use anyhow::Context;
use weir_benches::percentile_us;
use weir_models::repository::{load_version, ModelConfig};
use weir_models::{Tensor, TensorData};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, input, rows, columns, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: inprocess MODEL_DIR INPUT_NAME ROWS COLUMNS [CALLS]");
    };
    let rows: usize = rows.parse().context("ROWS")?;
    let columns: usize = columns.parse().context("COLUMNS")?;
    let calls: usize = rest
        .first()
        .map_or(Ok(20_000), |c| c.parse())
        .context("CALLS")?;
    let model = load_version(std::path::Path::new(dir), &ModelConfig::default())?;
    let outputs: Vec<String> = model
        .signature()
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let values: Vec<f32> = (0..rows * columns).map(|i| (i % 7) as f32 * 0.9).collect();
    let mut times: Vec<Duration> = Vec::with_capacity(calls);
    for call in 0..calls + calls / 10 {
        let tensor = Tensor::new(
            input.clone(),
            vec![rows, columns],
            TensorData::Fp32(values.clone()),
        );
        let started = Instant::now();
        model.infer(vec![tensor], &outputs)?;
        if call >= calls / 10 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let total: Duration = times.iter().sum();
    println!(
        "in-process {dir} [{rows}x{columns}]: {calls} calls, p50 {:.1} us, p99 {:.1} us, mean {:.1} us, {:.0} calls/s on one thread",
        percentile_us(&times, 50.0),
        percentile_us(&times, 99.0),
        total.as_secs_f64() * 1e6 / calls as f64,
        calls as f64 / total.as_secs_f64()
    );
    Ok(())
}
