//! The router's own per-version measurements, for `status` and for judging rollouts.
//!
//! Cumulative lock-free counters and a log-bucketed latency histogram; a window is the
//! difference of two snapshots, so any interval can be judged without resetting anything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Bucket `i` holds latencies up to `50 µs × 1.25^i`; 64 buckets reach past 60 s.
const BUCKETS: usize = 64;

fn bucket_bound_us(index: usize) -> f64 {
    50.0 * 1.25_f64.powi(index as i32)
}

fn bucket_of(latency: Duration) -> usize {
    let micros = latency.as_secs_f64() * 1e6;
    if micros <= 50.0 {
        return 0;
    }
    (((micros / 50.0).ln() / 1.25_f64.ln()).ceil() as usize).min(BUCKETS - 1)
}

/// How a forwarded request ended, as the rollout judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 4xx: the client's mistake, not the version's.
    ClientError,
    /// 503 from a replica's full queue: load, not a fault of the model.
    Overloaded,
    /// 5xx (but 503), timeouts, unreachable replicas.
    Error,
}

pub struct VersionStats {
    requests: AtomicU64,
    errors: AtomicU64,
    overloaded: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    /// Snapshots every few seconds for the last minute, for `status`. The first is the empty
    /// snapshot at creation (exact: the counters start at zero), so `status` right after start
    /// measures from then instead of waiting for the first sample.
    history: Mutex<VecDeque<(Instant, Snapshot)>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub requests: u64,
    pub errors: u64,
    pub overloaded: u64,
    buckets: Vec<u64>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
    pub overloaded: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Default for VersionStats {
    fn default() -> Self {
        VersionStats {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            history: Mutex::new(VecDeque::from([(Instant::now(), Snapshot::default())])),
        }
    }
}

impl VersionStats {
    pub fn record(&self, latency: Duration, outcome: Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Error => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Overloaded => {
                self.overloaded.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Success | Outcome::ClientError => {}
        }
        self.buckets[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Keeps a snapshot for `last_minute` (called every few seconds).
    pub fn sample(&self, now: Instant) {
        let snapshot = self.snapshot();
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.push_back((now, snapshot));
        while history
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(65))
        {
            history.pop_front();
        }
    }

    /// The last minute (or since the oldest sample, at the latest the creation), and its
    /// length in seconds.
    pub fn last_minute(&self, now: Instant) -> (Window, f64) {
        let current = self.snapshot();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        match history
            .iter()
            .find(|(at, _)| now.duration_since(*at) <= Duration::from_secs(60))
        {
            Some((at, earlier)) => (
                current.since(earlier),
                now.duration_since(*at).as_secs_f64(),
            ),
            None => (current.since(&Snapshot::default()), 0.0),
        }
    }
}

/// Requests per second over a window of `seconds`; a window shorter than a second counts as
/// one, so ten requests just after start read as 10/s, not as thousands.
pub fn per_second(requests: u64, seconds: f64) -> f64 {
    requests as f64 / seconds.max(1.0)
}

impl Snapshot {
    pub fn since(&self, earlier: &Snapshot) -> Window {
        let requests = self.requests.saturating_sub(earlier.requests);
        let errors = self.errors.saturating_sub(earlier.errors);
        let counts: Vec<u64> = (0..BUCKETS)
            .map(|i| {
                let now = self.buckets.get(i).copied().unwrap_or(0);
                now.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0))
            })
            .collect();
        let quantile = |q: f64| -> f64 {
            let total: u64 = counts.iter().sum();
            if total == 0 {
                return 0.0;
            }
            let rank = (q * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return bucket_bound_us(index) / 1000.0;
                }
            }
            bucket_bound_us(BUCKETS - 1) / 1000.0
        };
        Window {
            requests,
            errors,
            overloaded: self.overloaded.saturating_sub(earlier.overloaded),
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_errors_and_bound_quantiles() {
        let stats = VersionStats::default();
        let before = stats.snapshot();
        for _ in 0..98 {
            stats.record(Duration::from_micros(900), Outcome::Success);
        }
        stats.record(Duration::from_millis(200), Outcome::Error);
        stats.record(Duration::from_millis(1), Outcome::Overloaded);
        let window = stats.snapshot().since(&before);
        assert_eq!(
            (window.requests, window.errors, window.overloaded),
            (100, 1, 1)
        );
        assert!((window.error_rate - 0.01).abs() < 1e-9);
        // Buckets are 25% wide: the bound is within 25% above the true value.
        assert!((0.9..=1.125).contains(&window.p50_ms), "{window:?}");
        assert!((1.0..=1.25).contains(&window.p99_ms), "{window:?}");
        assert_eq!(
            Snapshot::default().since(&Snapshot::default()),
            Window::default()
        );
    }

    #[test]
    fn the_last_minute_counts_from_creation_before_the_first_sample() {
        let stats = VersionStats::default();
        for _ in 0..7 {
            stats.record(Duration::from_millis(1), Outcome::Success);
        }
        let (window, seconds) = stats.last_minute(Instant::now());
        assert_eq!(window.requests, 7);
        assert!((0.0..5.0).contains(&seconds), "{seconds}");
        assert!(per_second(window.requests, seconds) >= 7.0 / 5.0);
        assert_eq!(per_second(7, 0.01), 7.0);
        assert_eq!(per_second(120, 60.0), 2.0);
    }

    #[test]
    fn buckets_cover_microseconds_to_a_minute() {
        assert_eq!(bucket_of(Duration::from_micros(10)), 0);
        assert!(bucket_bound_us(bucket_of(Duration::from_millis(3))) >= 3000.0);
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }
}
