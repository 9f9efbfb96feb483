//! A model instance's thread: take a batch, run it, answer each request.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use weir_models::{BackendError, Tensor};

use super::{batch, Answer, Job, ScheduleError, Shared};
use crate::stats::Execution;

pub(super) fn run(shared: &Shared) {
    while let Some(jobs) = next_batch(shared) {
        execute(shared, jobs);
        shared.lock().running -= 1;
    }
}

/// Runs one request on the caller's thread (see `INLINE_BUDGET_NS`); the caller has claimed an
/// instance.
pub(super) fn run_inline(
    shared: &Shared,
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    rows: usize,
) -> Result<Answer, ScheduleError> {
    let started = Instant::now();
    let result = call_model(shared, inputs, &outputs);
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
        queued: Duration::ZERO,
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

fn record(shared: &Shared, execution: &Execution) {
    shared.record_call(execution.compute_infer);
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

/// Waits for work and gathers a batch; `None` once the scheduler is closed and drained.
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
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
        state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
    };
    let (Some(key), Some(batching)) = (first.key.clone(), shared.policy.batching.as_ref()) else {
        state.running += 1;
        return Some(vec![first]);
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
        let now = Instant::now();
        if batch::ready_to_send(size.rows, limits.max_rows, &batching.preferred_batch_sizes)
            || now >= deadline
            || state.closed
        {
            break;
        }
        state = shared
            .wake
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    state.forming = false;
    state.running += 1;
    drop(state);
    shared.wake.notify_all();
    // Removal walked the queue backwards; answer in arrival order.
    jobs[1..].sort_by_key(|job| job.enqueued);
    Some(jobs)
}

fn execute(shared: &Shared, jobs: Vec<Job>) {
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
    let single = inputs.len() == 1;
    // Stacking, the model call and splitting each run under the panic guard: a panic in any
    // of them fails this batch's requests, never the worker.
    let stacked = if single {
        Ok(inputs.pop().unwrap_or_default())
    } else {
        guarded("stacking the batch", || {
            batch::assemble(inputs)
                .map_err(|message| ScheduleError::Backend(BackendError::Inference(message)))
        })
    };
    let compute_input = started.elapsed();
    let infer_started = Instant::now();
    let result = stacked.and_then(|stacked| call_model(shared, stacked, &outputs));
    let compute_infer = infer_started.elapsed();
    let output_started = Instant::now();
    let answers = result.and_then(|outputs| {
        if single {
            Ok(vec![outputs])
        } else {
            guarded("splitting the batch", || {
                batch::split(outputs, &rows)
                    .map_err(|message| ScheduleError::Backend(BackendError::Inference(message)))
            })
        }
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
