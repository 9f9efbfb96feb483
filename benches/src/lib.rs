//! Helpers shared by weir's benchmark programs.

use std::time::Duration;

/// Percentile (0–100) of sorted durations, in microseconds.
pub fn percentile_us(sorted: &[Duration], percent: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((percent / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}
