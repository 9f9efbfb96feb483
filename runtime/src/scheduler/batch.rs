//! Pure batch logic: which requests may share a model call, how many join, how a batch is
//! stacked and split, when a forming batch stops waiting, and when a request may skip the
//! queue and run on its caller's thread. No clocks or threads here: the time is an argument
//! (`now`), so every rule is tested directly on a simulated clock. The worker reads the clock
//! and calls these.

use std::time::{Duration, Instant};

use weir_models::{DataType, Tensor};

/// What two requests must agree on to share a model call: the same inputs with the same
/// datatypes and non-batch dimensions, and the same requested outputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    inputs: Vec<(String, DataType, Vec<usize>)>,
    outputs: Vec<String>,
}

impl BatchKey {
    /// The key of a request whose inputs are sorted by name.
    pub fn of(inputs: &[Tensor], outputs: &[String]) -> BatchKey {
        BatchKey {
            inputs: inputs
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.datatype(),
                        t.shape.get(1..).unwrap_or_default().to_vec(),
                    )
                })
                .collect(),
            outputs: outputs.to_vec(),
        }
    }
}

/// Rows a request carries along the batch (first) dimension, or why it carries none.
pub fn rows(inputs: &[Tensor]) -> Result<usize, String> {
    let mut rows = None;
    for tensor in inputs {
        let Some(&first) = tensor.shape.first() else {
            return Err(format!(
                "input '{}' has no batch dimension (the model batches along the first dimension)",
                tensor.name
            ));
        };
        if let Some(seen) = rows.filter(|&seen| seen != first) {
            let name = &tensor.name;
            return Err(format!("inputs disagree on the batch size: '{name}' has {first} rows, another input {seen}"));
        }
        rows = Some(first);
    }
    Ok(rows.unwrap_or(1))
}

/// Picks the queued requests that join a batch opened by a request of size `first`: those with
/// the same key, in queue order, while the batch stays within `limits`. A request that does not
/// fit is skipped (a later, smaller one may still fit) and keeps its place.
pub fn cut<'a>(
    key: &BatchKey,
    first: Size,
    limits: &Limits,
    queued: impl Iterator<Item = (&'a BatchKey, Size)>,
) -> Vec<usize> {
    let mut total = first;
    let mut chosen = Vec::new();
    for (index, (candidate, size)) in queued.enumerate() {
        if total.rows >= limits.max_rows {
            break;
        }
        let joined = total.join(size);
        if candidate == key && limits.fits(joined) {
            total = joined;
            chosen.push(index);
        }
    }
    chosen
}

/// A request's (or batch's) size: its rows, and the longest sequence among them (1 for models
/// without sequences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub rows: usize,
    pub length: usize,
}

impl Size {
    /// The size of two batches stacked: sequences pad to the longer one.
    pub fn join(self, other: Size) -> Size {
        Size {
            rows: self.rows + other.rows,
            length: self.length.max(other.length),
        }
    }
}

/// What a batch may hold: rows, and for sequence models a budget of padded tokens (rows ×
/// longest sequence), as text-embeddings-inference's `max_batch_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_rows: usize,
    pub max_tokens: Option<usize>,
}

impl Limits {
    pub fn fits(&self, size: Size) -> bool {
        size.rows <= self.max_rows
            && self
                .max_tokens
                .is_none_or(|budget| size.rows * size.length <= budget)
    }
}

/// Whether a batch of `rows` should go now rather than wait out the queue delay.
pub fn ready_to_send(rows: usize, max_rows: usize, preferred: &[usize]) -> bool {
    rows >= max_rows || preferred.contains(&rows)
}

/// What a forming batch does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the batch now.
    Send,
    /// Wait for more requests for at most this long, then ask again.
    Wait(Duration),
}

/// Decides, at `now`, whether a forming batch of `rows` goes or waits for more: it goes when
/// full or at a preferred size ([`ready_to_send`]), once `now` reaches its `deadline` (its
/// first request's arrival plus `max_queue_delay`), or when its scheduler is closing (nobody
/// will join a closing queue). Otherwise it waits out what is left of the delay.
pub fn next_step(
    now: Instant,
    deadline: Instant,
    rows: usize,
    max_rows: usize,
    preferred: &[usize],
    closed: bool,
) -> Next {
    if ready_to_send(rows, max_rows, preferred) || closed {
        return Next::Send;
    }
    match deadline.checked_duration_since(now) {
        Some(left) if !left.is_zero() => Next::Wait(left),
        _ => Next::Send,
    }
}

/// Model calls shorter than this on average may run on the request's own thread when traffic
/// is light (see [`INLINE_GAP_NS`]) and an instance is idle with nothing queued: for a tiny
/// model the hand-off to a worker thread and back costs several times the call itself. Longer
/// calls always go to the workers, so a heavy model never holds up the threads that answer
/// HTTP.
pub const INLINE_BUDGET_NS: u64 = 50_000;
/// Inline calls only while requests arrive on average at least this far apart. Under load the
/// workers take the calls so that HTTP and model work overlap, which measured about 20% more
/// throughput at 32 connections than running inline; at one connection inline saves ~25 µs.
/// 45 µs rather than 60: one gRPC call at a time on iris arrives about 66 µs apart, close
/// enough to 60 that jitter sent some of its calls through the hand-off; at 45 µs one and two
/// streams run inline (6–7% more calls/s, measured) and four streams (about 31 µs apart)
/// still go to the workers (benches/README.md).
pub const INLINE_GAP_NS: u64 = 45_000;
/// The longest gap between arrivals the average counts: one idle minute must not stand for
/// light traffic long after the traffic has become heavy.
pub const ARRIVAL_GAP_CAP_NS: u64 = 1_000_000;

/// The moving average (weight 1/8) of the time between arrivals after one at `now_ns`, given
/// the previous average and the previous arrival (both in nanoseconds on the same clock). An
/// arrival "before" the previous one (two callers racing for the same slot) counts as a gap of
/// zero.
pub fn arrival_gap(average_ns: u64, last_arrival_ns: u64, now_ns: u64) -> u64 {
    let gap = now_ns
        .saturating_sub(last_arrival_ns)
        .min(ARRIVAL_GAP_CAP_NS);
    average_ns - average_ns / 8 + gap / 8
}

/// The moving average (weight 1/8) of a model call's time after one that `took` this long;
/// `u64::MAX` means nothing measured yet, and the first call stands alone.
pub fn call_average(average_ns: u64, took: Duration) -> u64 {
    let took = took.as_nanos().min(u128::from(u64::MAX - 1)) as u64;
    if average_ns == u64::MAX {
        took
    } else {
        average_ns - average_ns / 8 + took / 8
    }
}

/// Whether the traffic and the model allow a request to run on its caller's thread: requests
/// arrive far enough apart, the model's calls are short, and the model does not batch (a
/// request run inline could never join a batch). The caller also needs an idle instance and
/// an empty queue, which only the scheduler's state knows.
pub fn may_run_inline(arrival_gap_ns: u64, call_ns: u64, batching: bool) -> bool {
    !batching && arrival_gap_ns >= INLINE_GAP_NS && call_ns < INLINE_BUDGET_NS
}

/// Stacks requests (each with inputs sorted by name and the same key) along the first dimension.
/// Requests that do not stack (the batch key should have kept them apart) are an error naming
/// the input, never a panic.
pub fn assemble(requests: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
    let mut requests = requests.into_iter();
    let Some(mut stacked) = requests.next() else {
        return Ok(Vec::new());
    };
    for inputs in requests {
        if inputs.len() != stacked.len() {
            return Err(format!(
                "cannot stack a request of {} inputs onto one of {}",
                inputs.len(),
                stacked.len()
            ));
        }
        for (into, tensor) in stacked.iter_mut().zip(inputs) {
            let fits = into.name == tensor.name && into.shape.get(1..) == tensor.shape.get(1..);
            let (Some(rows), Some(more), true) =
                (into.shape.first_mut(), tensor.shape.first(), fits)
            else {
                return Err(format!(
                    "cannot stack input '{}' of shape {:?} onto '{}' of shape {:?}",
                    tensor.name, tensor.shape, into.name, into.shape
                ));
            };
            *rows += more;
            if !into.data.append(tensor.data) {
                return Err(format!(
                    "cannot stack input '{}': its datatype differs from the batch's",
                    into.name
                ));
            }
        }
    }
    Ok(stacked)
}

/// Splits a batch's outputs back into each request's rows, in request order. An output whose
/// rows or elements do not match the batch (a model's bug) is an error naming it, never a panic.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    let total: usize = rows.iter().sum();
    let mut answers: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        let Some((&first, inner)) = output.shape.split_first().filter(|(&f, _)| f == total) else {
            return Err(format!(
                "output '{}' has shape {:?}, which does not start with the batch's {total} rows",
                output.name, output.shape
            ));
        };
        let stride = inner.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let holds = stride.and_then(|stride| stride.checked_mul(first));
        let (Some(stride), true) = (stride, holds == Some(output.data.len())) else {
            return Err(format!(
                "output '{}' has shape {:?} but {} elements",
                output.name,
                output.shape,
                output.data.len()
            ));
        };
        let mut start = 0;
        for (answer, &count) in answers.iter_mut().zip(rows) {
            let mut shape = output.shape.clone();
            if let Some(rows) = shape.first_mut() {
                *rows = count;
            }
            let end = start + count * stride;
            answer.push(Tensor::new(
                output.name.clone(),
                shape,
                output.data.slice(start..end),
            ));
            start = end;
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests;
