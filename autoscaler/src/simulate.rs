//! Replaying a load trace through the policy on a simulated clock, so a team can see what a
//! policy would do before it runs in production.
//!
//! The trace is CSV with a header `t_seconds,concurrency` or `t_seconds,rps`; the load holds
//! from one row's time to the next. The simulation samples the load every second and decides
//! every `tick` (2 s, the live default), replicas becoming ready `ready_delay` after they are
//! asked for.

use std::fmt::Write as _;

use serde::Serialize;

use crate::policy::{Policy, PolicyConfig};

pub use crate::chart::svg;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TraceError {
    #[error("the trace is empty; it needs a header `t_seconds,concurrency` (or `t_seconds,rps`) and rows")]
    Empty,
    #[error("the trace's header must be `t_seconds,concurrency` or `t_seconds,rps`, found `{0}`")]
    Header(String),
    #[error("trace line {line}: {problem}")]
    Row { line: usize, problem: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `concurrency` or `rps`.
    pub metric: String,
    /// (time in seconds, load), in time order.
    pub points: Vec<(f64, f64)>,
}

impl Trace {
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let (_, header) = lines.next().ok_or(TraceError::Empty)?;
        let header: Vec<&str> = header.split(',').map(str::trim).collect();
        let metric = match header.as_slice() {
            ["t_seconds", metric @ ("concurrency" | "rps")] => (*metric).to_owned(),
            _ => return Err(TraceError::Header(header.join(","))),
        };
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (index, line) in lines {
            let row = |problem: String| TraceError::Row {
                line: index + 1,
                problem,
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [time, value] = fields.as_slice() else {
                return Err(row(format!("expected two fields, found {}", fields.len())));
            };
            let number = |text: &str, what: &str| {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| row(format!("{what} '{text}' is not a number ≥ 0")))
            };
            let (time, value) = (number(time, "time")?, number(value, &metric)?);
            if points.last().is_some_and(|(last, _)| time < *last) {
                return Err(row(format!("time {time} goes back")));
            }
            points.push((time, value));
        }
        if points.is_empty() {
            return Err(TraceError::Empty);
        }
        Ok(Trace { metric, points })
    }

    /// The load at time `t`: the last row at or before it.
    pub fn at(&self, t: f64) -> f64 {
        self.points
            .iter()
            .take_while(|(time, _)| *time <= t)
            .last()
            .map_or(0.0, |(_, v)| *v)
    }

    pub fn end(&self) -> f64 {
        self.points.last().map_or(0.0, |(t, _)| *t)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub t: f64,
    pub observed: f64,
    pub desired_replicas: u32,
    pub ready_replicas: u32,
    pub panic: bool,
    pub reason: &'static str,
}

/// Runs the trace through the policy; one step per tick.
pub fn simulate(config: &PolicyConfig, trace: &Trace, tick: f64, ready_delay: f64) -> Vec<Step> {
    let mut policy = Policy::new(config.clone());
    let mut ready = config.min_replicas;
    // Replica counts asked for, and when they are ready.
    let mut pending: Vec<(f64, u32)> = Vec::new();
    let mut steps = Vec::new();
    let end = trace.end() + tick;
    let mut second = 0.0;
    let mut next_tick = 0.0;
    while second <= end {
        policy.observe(second, trace.at(second));
        pending.retain(|(at, count)| {
            if *at <= second {
                ready = *count;
                false
            } else {
                true
            }
        });
        if second >= next_tick {
            let decision = policy.decide(second, ready);
            if decision.desired < ready {
                ready = decision.desired; // scale-down is immediate
            } else if decision.desired > ready {
                pending.push((second + ready_delay, decision.desired));
            }
            steps.push(Step {
                t: second,
                observed: trace.at(second),
                desired_replicas: decision.desired,
                ready_replicas: ready,
                panic: decision.panic,
                reason: decision.reason,
            });
            next_tick += tick;
        }
        second += 1.0;
    }
    steps
}

pub fn csv(steps: &[Step]) -> String {
    let mut out = String::from("t,observed,desired_replicas,panic\n");
    for step in steps {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            step.t, step.observed, step.desired_replicas, step.panic
        );
    }
    out
}

/// The decisions where something changed (and the first and last), aligned for reading.
pub fn table(steps: &[Step], metric: &str) -> String {
    let mut out = format!(
        "{:>8}  {:>12}  {:>8}  {:>6}  {:>5}  reason\n",
        "t (s)", metric, "desired", "ready", "panic"
    );
    let mut previous: Option<&Step> = None;
    for (index, step) in steps.iter().enumerate() {
        let changed = previous.is_none_or(|p| {
            p.desired_replicas != step.desired_replicas
                || p.panic != step.panic
                || p.observed != step.observed
        });
        if changed || index + 1 == steps.len() {
            let _ = writeln!(
                out,
                "{:>8}  {:>12.1}  {:>8}  {:>6}  {:>5}  {}",
                step.t,
                step.observed,
                step.desired_replicas,
                step.ready_replicas,
                if step.panic { "yes" } else { "" },
                step.reason
            );
        }
        previous = Some(step);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_parse_and_refuse_mistakes() {
        let trace = Trace::parse("t_seconds,concurrency\n0,10\n# a comment\n60,40\n").unwrap();
        assert_eq!(trace.metric, "concurrency");
        assert_eq!(
            (trace.at(59.0), trace.at(60.0), trace.at(500.0)),
            (10.0, 40.0, 40.0)
        );
        for (bad, expected) in [
            ("", "empty"),
            ("time,load\n0,1", "header"),
            ("t_seconds,rps\n0,1,2", "line 2: expected two fields"),
            ("t_seconds,rps\n0,-1", "not a number"),
            ("t_seconds,rps\n5,1\n2,1", "goes back"),
        ] {
            let err = Trace::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_step_trace_scales_up_in_panic_then_back_down() {
        let config = PolicyConfig {
            min_replicas: 1,
            max_replicas: 20,
            ..PolicyConfig::default()
        };
        let trace = Trace::parse("t_seconds,concurrency\n0,10\n120,40\n240,10\n400,10\n").unwrap();
        let steps = simulate(&config, &trace, 2.0, 0.0);
        let at = |t: f64| steps.iter().find(|s| s.t == t).unwrap();
        assert_eq!(at(110.0).desired_replicas, 2);
        assert!(at(122.0).panic);
        assert_eq!(at(200.0).desired_replicas, 6);
        assert_eq!(steps.last().unwrap().desired_replicas, 2);
        let csv = csv(&steps);
        assert!(
            csv.starts_with("t,observed,desired_replicas,panic\n0,10,2,"),
            "{csv}"
        );
        let table = table(&steps, "concurrency");
        assert!(table.lines().count() < steps.len());
        let svg = svg(&steps, "concurrency");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
