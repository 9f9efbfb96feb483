//! A model instance's thread: take a batch, run it, answer each request. Also the inline path
//! (a request run on its caller's thread), since both take an instance: this file is the only
//! one that counts instances in use (`State::running`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use weir_models::{BackendError, Tensor};

use super::batch::{self, Next};
use super::{Answer, Job, ScheduleError, Shared, State};
use crate::stats::Execution;

/// A model instance taken for one call (a batch on a worker, or one request inline); dropping
/// it gives the instance back. The one place `running` goes down, so no path can forget to.
pub(super) struct Instance<'a>(&'a Shared);

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
    }
}

pub(super) fn run(shared: &Shared) {
    while let Some((instance, jobs)) = next_batch(shared) {
        execute(shared, jobs);
        drop(instance);
    }
}

/// Claims an idle instance for an inline call when the rules allow one now
/// ([`batch::may_run_inline`] on the arrival and call averages) and nothing is queued.
pub(super) fn claim_inline(shared: &Shared) -> Option<Instance<'_>> {
    let now = shared.epoch.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    let last = shared.last_arrival_ns.swap(now, Ordering::Relaxed);
    let average = batch::arrival_gap(shared.arrival_gap_ns.load(Ordering::Relaxed), last, now);
    shared.arrival_gap_ns.store(average, Ordering::Relaxed);
    let call = shared.recent_call_ns.load(Ordering::Relaxed);
    if !batch::may_run_inline(average, call, shared.policy.batching.is_some()) {
        return None;
    }
    let mut state = shared.lock();
    if state.closed || !state.jobs.is_empty() || state.running >= shared.policy.instances {
        return None;
    }
    state.running += 1;
    Some(Instance(shared))
}

/// Runs one request on the caller's thread on an instance [`claim_inline`] gave.
pub(super) fn run_inline(
    instance: Instance<'_>,
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    rows: usize,
) -> Result<Answer, ScheduleError> {
    let answer = run_one(instance.0, inputs, &outputs, rows, Duration::ZERO);
    drop(instance);
    answer
}

/// One request's model call, accounted for, with nothing to stack or split: the inline path's
/// and a worker's whenever a batch holds one request (always, for a model that does not batch).
fn run_one(
    shared: &Shared,
    inputs: Vec<Tensor>,
    outputs: &[String],
    rows: usize,
    queued: Duration,
) -> Result<Answer, ScheduleError> {
    let started = Instant::now();
    let result = call_model(shared, inputs, outputs);
    let execution = Execution {
        rows,
        compute_infer: started.elapsed(),
        ..Execution::default()
    };
    record(shared, &execution);
    let outputs = result?;
    shared.stats.executed(&execution);
    Ok(Answer {
        outputs,
        queued,
        execution,
    })
}

/// A model call; a model that panics fails its requests instead of killing the thread.
fn call_model(
    shared: &Shared,
    inputs: Vec<Tensor>,
    outputs: &[String],
) -> Result<Vec<Tensor>, ScheduleError> {
    guarded("the model", || {
        shared
            .backend
            .infer(inputs, outputs)
            .map_err(ScheduleError::from)
    })
}

/// Runs `work` so that a panic in it fails the batch's requests (a 500 naming `what`) instead
/// of unwinding through the worker: a dead worker would leave its queue unanswered for good.
fn guarded<T>(
    what: &str,
    work: impl FnOnce() -> Result<T, ScheduleError>,
) -> Result<T, ScheduleError> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        tracing::error!("{what} panicked; failing the batch's requests");
        Err(ScheduleError::Backend(BackendError::Inference(format!(
            "{what} panicked"
        ))))
    })
}

/// Accounts for one model execution (not per request: a batch is one execution).
fn record(shared: &Shared, execution: &Execution) {
    let average = shared.recent_call_ns.load(Ordering::Relaxed);
    shared.recent_call_ns.store(
        batch::call_average(average, execution.compute_infer),
        Ordering::Relaxed,
    );
    shared
        .metrics
        .compute_duration
        .observe(execution.compute_infer.as_secs_f64());
    shared.metrics.batch_size.observe(execution.rows as f64);
}

/// Pops the oldest job a worker may run, dropping (and counting) those nobody waits for.
fn pop_live(shared: &Shared, jobs: &mut std::collections::VecDeque<Job>) -> Option<Job> {
    while let Some(job) = jobs.pop_front() {
        shared.metrics.queue_depth.dec();
        if job.claim() {
            return Some(job);
        }
        if job.reply.is_closed() {
            shared.metrics.rejected_cancelled.inc();
        }
    }
    None
}

/// Waits for work and gathers a batch, taking an instance for it; `None` once the scheduler is
/// closed and drained.
fn next_batch(shared: &Shared) -> Option<(Instance<'_>, Vec<Job>)> {
    let mut state = shared.lock();
    let first = loop {
        if !state.forming {
            if let Some(job) = pop_live(shared, &mut state.jobs) {
                break job;
            }
        }
        if state.closed && state.jobs.is_empty() {
            return None;
        }
        state = wait(shared, state, None);
    };
    let (Some(key), Some(batching)) = (first.key.clone(), shared.policy.batching.as_ref()) else {
        state.running += 1;
        return Some((Instance(shared), vec![first]));
    };
    let limits = batch::Limits {
        max_rows: shared.policy.max_batch_size,
        max_tokens: batching.max_batch_tokens,
    };
    let deadline = first.enqueued + batching.max_queue_delay;
    let mut size = first.size;
    let mut jobs = vec![first];
    state.forming = true;
    loop {
        let queued = state
            .jobs
            .iter()
            .map(|j| (j.key.as_ref().unwrap_or(&key), j.size));
        let chosen = batch::cut(&key, size, &limits, queued);
        for index in chosen.into_iter().rev() {
            let Some(job) = state.jobs.remove(index) else {
                continue;
            };
            shared.metrics.queue_depth.dec();
            if job.claim() {
                size = size.join(job.size);
                jobs.push(job);
            } else if job.reply.is_closed() {
                shared.metrics.rejected_cancelled.inc();
            }
        }
        let next = batch::next_step(
            Instant::now(),
            deadline,
            size.rows,
            limits.max_rows,
            &batching.preferred_batch_sizes,
            state.closed,
        );
        let Next::Wait(left) = next else {
            break;
        };
        state = wait(shared, state, Some(left));
    }
    state.forming = false;
    state.running += 1;
    let others_waiting = state.waiting > 0;
    drop(state);
    if others_waiting {
        shared.wake.notify_all();
    }
    // Removal walked the queue backwards; answer in arrival order.
    jobs[1..].sort_by_key(|job| job.enqueued);
    Some((Instance(shared), jobs))
}

/// Blocks on `Shared::wake` (for at most `limit`), counted in `State::waiting` so that
/// notifiers skip the futex call when no worker waits.
fn wait<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    limit: Option<Duration>,
) -> MutexGuard<'a, State> {
    state.waiting += 1;
    let mut state = match limit {
        None => shared.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
        Some(limit) => {
            shared
                .wake
                .wait_timeout(state, limit)
                .unwrap_or_else(|p| p.into_inner())
                .0
        }
    };
    state.waiting -= 1;
    state
}

fn execute(shared: &Shared, mut jobs: Vec<Job>) {
    if jobs.len() == 1 {
        if let Some(job) = jobs.pop() {
            let queued = job.enqueued.elapsed();
            let answer = run_one(shared, job.inputs, &job.outputs, job.size.rows, queued);
            let _ = job.reply.send(answer);
            return;
        }
    }
    let started = Instant::now();
    let rows: Vec<usize> = jobs.iter().map(|job| job.size.rows).collect();
    let total_rows: usize = rows.iter().sum();
    let outputs = jobs[0].outputs.clone();
    let mut replies = Vec::with_capacity(jobs.len());
    let mut inputs = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.reply, started.saturating_duration_since(job.enqueued)));
        inputs.push(job.inputs);
    }
    // Stacking, the model call and splitting each run under the panic guard: a panic in any
    // of them fails this batch's requests, never the worker.
    let stacked = guarded("stacking the batch", || {
        batch::assemble(inputs)
            .map_err(|message| ScheduleError::Backend(BackendError::Inference(message)))
    });
    let compute_input = started.elapsed();
    let infer_started = Instant::now();
    let result = stacked.and_then(|stacked| call_model(shared, stacked, &outputs));
    let compute_infer = infer_started.elapsed();
    let output_started = Instant::now();
    let answers = result.and_then(|outputs| {
        guarded("splitting the batch", || {
            batch::split(outputs, &rows)
                .map_err(|message| ScheduleError::Backend(BackendError::Inference(message)))
        })
    });
    let execution = Execution {
        rows: total_rows,
        compute_input,
        compute_infer,
        compute_output: output_started.elapsed(),
    };
    record(shared, &execution);
    match answers {
        Ok(answers) => {
            shared.stats.executed(&execution);
            for ((reply, queued), outputs) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(Answer {
                    outputs,
                    queued,
                    execution,
                }));
            }
        }
        Err(err) => {
            for (reply, _) in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
