//! Triton's statistics extension: per-version counters and durations, read by
//! `GET /v2/models/{m}[/versions/{v}]/stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A count and the nanoseconds it took, as Triton reports each phase.
#[derive(Default)]
pub struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    pub fn add(&self, duration: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
    }

    fn read(&self) -> Timing {
        Timing {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// `{"count", "ns"}` on the wire.
#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub count: u64,
    pub ns: u64,
}

#[derive(Default, Clone, Copy)]
struct BatchTally {
    compute_input: Timing,
    compute_infer: Timing,
    compute_output: Timing,
}

/// The timings of one model execution, shared by every request in its batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Execution {
    pub rows: usize,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// One version's statistics.
#[derive(Default)]
pub struct VersionStats {
    last_inference_ms: AtomicU64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
    batches: Mutex<BTreeMap<usize, BatchTally>>,
}

fn add(tally: &mut Timing, duration: Duration) {
    tally.count += 1;
    tally.ns += duration.as_nanos() as u64;
}

impl VersionStats {
    /// Records one model execution (called once per batch, by the worker).
    pub fn executed(&self, execution: &Execution) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(execution.rows as u64, Ordering::Relaxed);
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        let tally = batches.entry(execution.rows).or_default();
        add(&mut tally.compute_input, execution.compute_input);
        add(&mut tally.compute_infer, execution.compute_infer);
        add(&mut tally.compute_output, execution.compute_output);
    }

    /// Records one answered request: its whole duration, queue wait and its batch's timings.
    pub fn succeeded(&self, total: Duration, queued: Duration, execution: &Execution) {
        self.success.add(total);
        self.queue.add(queued);
        self.compute_input.add(execution.compute_input);
        self.compute_infer.add(execution.compute_infer);
        self.compute_output.add(execution.compute_output);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_inference_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn failed(&self, total: Duration) {
        self.fail.add(total);
    }

    /// The wire form for one version.
    pub fn report(&self, name: &str, version: &str) -> serde_json::Value {
        let batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        let batch_stats: Vec<_> = batches
            .iter()
            .map(|(size, tally)| {
                serde_json::json!({
                    "batch_size": size,
                    "compute_input": tally.compute_input,
                    "compute_infer": tally.compute_infer,
                    "compute_output": tally.compute_output,
                })
            })
            .collect();
        serde_json::json!({
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms.load(Ordering::Relaxed),
            "inference_count": self.inference_count.load(Ordering::Relaxed),
            "execution_count": self.execution_count.load(Ordering::Relaxed),
            "inference_stats": {
                "success": self.success.read(),
                "fail": self.fail.read(),
                "queue": self.queue.read(),
                "compute_input": self.compute_input.read(),
                "compute_infer": self.compute_infer.read(),
                "compute_output": self.compute_output.read(),
            },
            "batch_stats": batch_stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_three_requests_is_one_execution_and_three_inferences() {
        let stats = VersionStats::default();
        let execution = Execution {
            rows: 3,
            compute_input: Duration::from_nanos(10),
            compute_infer: Duration::from_nanos(1000),
            compute_output: Duration::from_nanos(20),
        };
        stats.executed(&execution);
        for _ in 0..3 {
            stats.succeeded(
                Duration::from_nanos(5000),
                Duration::from_nanos(300),
                &execution,
            );
        }
        stats.failed(Duration::from_nanos(7));
        let report = stats.report("m", "1");
        assert_eq!(report["inference_count"], 3);
        assert_eq!(report["execution_count"], 1);
        assert_eq!(
            report["inference_stats"]["success"],
            serde_json::json!({"count": 3, "ns": 15000})
        );
        assert_eq!(
            report["inference_stats"]["fail"],
            serde_json::json!({"count": 1, "ns": 7})
        );
        assert_eq!(report["inference_stats"]["queue"]["ns"], 900);
        assert_eq!(report["batch_stats"][0]["batch_size"], 3);
        assert_eq!(
            report["batch_stats"][0]["compute_infer"],
            serde_json::json!({"count": 1, "ns": 1000})
        );
        assert!(report["last_inference"].as_u64().unwrap() > 1_700_000_000_000);
    }
}
