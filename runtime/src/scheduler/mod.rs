//! Per-version request scheduling: a bounded queue, admission control, dynamic batching, and
//! `instance_count` worker threads that run the model off the async runtime.
//!
//! The async side ([`Scheduler::infer`]) admits a request or refuses it at once (queue full),
//! then waits for its answer, giving up when the queue timeout passes before a worker took it.
//! Workers (`worker`) take the oldest live request, let compatible ones join it for up to the
//! configured delay, run the model, and split the answer. Requests whose caller went away are
//! skipped and counted, so abandoned work costs no model time. [`batch`] holds every rule as a
//! pure function (the deadline and inline decisions take `now`); `worker` reads the clock,
//! holds the lock and calls them.

pub mod batch;
mod worker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use weir_models::repository::ModelConfig;
use weir_models::{Backend, BackendError, Tensor};

use crate::metrics::VersionMetrics;
use crate::stats::{Execution, VersionStats};
use batch::BatchKey;

/// How a version's requests are queued and batched, from its `config.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// 0: no batching; requests run as they come, one per model call.
    pub max_batch_size: usize,
    pub batching: Option<Batching>,
    pub queue_max_size: usize,
    pub queue_timeout: Option<Duration>,
    pub instances: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    pub max_queue_delay: Duration,
    pub preferred_batch_sizes: Vec<usize>,
    /// Budget of padded tokens per batch for sequence models (rows × longest sequence).
    pub max_batch_tokens: Option<usize>,
}

impl From<&ModelConfig> for Policy {
    fn from(config: &ModelConfig) -> Self {
        Policy {
            max_batch_size: config.max_batch_size as usize,
            batching: config.dynamic_batching.as_ref().map(|b| Batching {
                max_queue_delay: b.max_queue_delay,
                preferred_batch_sizes: b.preferred_batch_sizes.clone(),
                max_batch_tokens: b.max_batch_tokens,
            }),
            queue_max_size: config.queue.max_size,
            queue_timeout: (!config.queue.timeout.is_zero()).then_some(config.queue.timeout),
            instances: config.instance_count.max(1),
        }
    }
}

/// Why a request got no answer from the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the model's queue is full ({max} requests waiting); retry shortly")]
    QueueFull { max: usize },
    #[error("the request waited over {timeout_ms} ms in the model's queue without starting; retry shortly")]
    TimedOut { timeout_ms: u64 },
    #[error("a request of {rows} rows exceeds the model's max_batch_size of {max}")]
    TooManyRows { rows: usize, max: usize },
    #[error("{0}")]
    BadBatch(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the model version is shutting down")]
    Stopped,
}

/// A request's answer and what it cost.
#[derive(Debug)]
pub struct Answer {
    pub outputs: Vec<Tensor>,
    pub queued: Duration,
    pub execution: Execution,
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

/// A queued request.
struct Job {
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    /// Present when the model batches.
    key: Option<BatchKey>,
    size: batch::Size,
    enqueued: Instant,
    /// QUEUED until a worker takes it (STARTED) or its caller stops waiting (ABANDONED);
    /// whichever side moves it first wins.
    progress: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<Answer, ScheduleError>>,
}

impl Job {
    /// Claims the job for a worker; false when its caller has given up or gone away.
    fn claim(&self) -> bool {
        !self.reply.is_closed()
            && self
                .progress
                .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

struct State {
    jobs: VecDeque<Job>,
    /// Model calls running now, on workers or inline; never more than `policy.instances`.
    /// Only `worker` changes it: it claims an instance and its `Instance` guard gives it back.
    running: usize,
    closed: bool,
    /// A worker is gathering a batch; others wait rather than take its requests away.
    forming: bool,
    /// Workers blocked on `Shared::wake`. Rust's condvar makes a futex call on every notify,
    /// waiter or not; under load the worker is busy and every request would pay for one.
    waiting: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    policy: Policy,
    backend: Arc<dyn Backend>,
    metrics: VersionMetrics,
    stats: Arc<VersionStats>,
    /// Recent model-call time in nanoseconds (`batch::call_average`); `u64::MAX` until measured.
    recent_call_ns: AtomicU64,
    /// When the latest request arrived, in nanoseconds since `epoch`.
    last_arrival_ns: AtomicU64,
    /// Moving average of the time between arrivals, in nanoseconds (`batch::arrival_gap`).
    arrival_gap_ns: AtomicU64,
    /// The scheduler's start: the clock the inline rule's nanoseconds count from.
    epoch: Instant,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle requests go through; dropping it lets the workers finish the queue and stop.
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    /// Starts `policy.instances` worker threads for one model version.
    pub fn start(
        label: &str,
        backend: Arc<dyn Backend>,
        policy: Policy,
        metrics: VersionMetrics,
        stats: Arc<VersionStats>,
    ) -> Scheduler {
        let instances = policy.instances;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                running: 0,
                closed: false,
                forming: false,
                waiting: 0,
            }),
            wake: Condvar::new(),
            policy,
            backend,
            metrics,
            stats,
            recent_call_ns: AtomicU64::new(u64::MAX),
            last_arrival_ns: AtomicU64::new(0),
            arrival_gap_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        for instance in 0..instances {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("weir-{label}-{instance}"))
                .spawn(move || worker::run(&shared));
            if let Err(err) = spawned {
                tracing::error!(model = label, instance, error = %err, "cannot start a model worker thread");
            }
        }
        Scheduler { shared }
    }

    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// Queues a request and waits for its answer. Inputs must already match the signature.
    pub async fn infer(
        &self,
        mut inputs: Vec<Tensor>,
        outputs: Vec<String>,
    ) -> Result<Answer, ScheduleError> {
        let policy = &self.shared.policy;
        let batching = policy.max_batch_size > 0;
        let rows = match batch::rows(&inputs) {
            Ok(rows) => rows,
            Err(message) if batching => return Err(ScheduleError::BadBatch(message)),
            Err(_) => 1,
        };
        if batching && rows > policy.max_batch_size {
            return Err(ScheduleError::TooManyRows {
                rows,
                max: policy.max_batch_size,
            });
        }
        let key = (batching && policy.batching.is_some()).then(|| {
            inputs.sort_by(|a, b| a.name.cmp(&b.name));
            BatchKey::of(&inputs, &outputs)
        });
        // Sequence lengths matter only under a token budget; finding them costs a tokenisation.
        let length = match policy.batching.as_ref().and_then(|b| b.max_batch_tokens) {
            Some(_) => self.shared.backend.sequence_length(&inputs).unwrap_or(1),
            None => 1,
        };
        if let Some(instance) = worker::claim_inline(&self.shared) {
            return worker::run_inline(instance, inputs, outputs, rows);
        }
        let (reply, answer) = oneshot::channel();
        let progress = Arc::new(AtomicU8::new(QUEUED));
        let wake_worker = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(ScheduleError::Stopped);
            }
            if state.jobs.len() >= policy.queue_max_size {
                self.shared.metrics.rejected_queue_full.inc();
                return Err(ScheduleError::QueueFull {
                    max: policy.queue_max_size,
                });
            }
            state.jobs.push_back(Job {
                inputs,
                outputs,
                key,
                size: batch::Size { rows, length },
                enqueued: Instant::now(),
                progress: progress.clone(),
                reply,
            });
            self.shared.metrics.queue_depth.inc();
            state.waiting > 0
        };
        if wake_worker {
            self.shared.wake.notify_all();
        }
        let Some(timeout) = policy.queue_timeout else {
            return answer.await.unwrap_or(Err(ScheduleError::Stopped));
        };
        let mut answer = answer;
        tokio::select! {
            result = &mut answer => result.unwrap_or(Err(ScheduleError::Stopped)),
            _ = tokio::time::sleep(timeout) => {
                if progress.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    self.shared.metrics.rejected_queue_timeout.inc();
                    return Err(ScheduleError::TimedOut { timeout_ms: timeout.as_millis() as u64 });
                }
                // A worker took it just in time: its answer is coming.
                answer.await.unwrap_or(Err(ScheduleError::Stopped))
            }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests;
