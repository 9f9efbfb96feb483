//! The scheduler against a backend whose calls wait for the test to let them finish, so queue
//! states are set up exactly rather than hoped for.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_models::{
    Backend, BackendError, DataType, Dim, Signature, Tensor, TensorData, TensorSpec,
};

use super::*;
use crate::metrics::Metrics;

/// Doubles INT32 input `x` into output `y`; each call first waits for a permit.
struct GatedDoubler {
    signature: Signature,
    permits: Mutex<mpsc::Receiver<()>>,
    calls: Mutex<Vec<usize>>,
}

impl Backend for GatedDoubler {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn infer(&self, inputs: Vec<Tensor>, _outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let x = &inputs[0];
        self.calls.lock().unwrap().push(x.shape[0]);
        self.permits
            .lock()
            .unwrap()
            .recv()
            .map_err(|_| BackendError::Inference("gate dropped".into()))?;
        let TensorData::Int32(values) = &x.data else {
            return Err(BackendError::InvalidInput("x must be INT32".into()));
        };
        if values.first() == Some(&-1) {
            panic!("asked to panic");
        }
        let mut doubled: Vec<i32> = values.iter().map(|v| v * 2).collect();
        // A model bug on request: an output one element short of its shape.
        if values.contains(&-2) {
            doubled.pop();
        }
        Ok(vec![Tensor::new(
            "y",
            x.shape.clone(),
            TensorData::Int32(doubled),
        )])
    }
}

struct Harness {
    scheduler: Arc<Scheduler>,
    backend: Arc<GatedDoubler>,
    permits: mpsc::Sender<()>,
    metrics: VersionMetrics,
}

fn harness(policy: Policy) -> Harness {
    let (permits, gate) = mpsc::channel();
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Int32,
        shape: vec![Dim::Variable, Dim::Fixed(2)],
    };
    let backend = Arc::new(GatedDoubler {
        signature: Signature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        },
        permits: Mutex::new(gate),
        calls: Mutex::new(Vec::new()),
    });
    let metrics = Metrics::new().for_version("m", "1");
    let scheduler = Arc::new(Scheduler::start(
        "m-1",
        backend.clone(),
        policy,
        metrics.clone(),
        Arc::default(),
    ));
    Harness {
        scheduler,
        backend,
        permits,
        metrics,
    }
}

fn policy(max_batch_size: usize, queue_max_size: usize) -> Policy {
    Policy {
        max_batch_size,
        batching: (max_batch_size > 0).then(|| Batching {
            max_queue_delay: Duration::ZERO,
            preferred_batch_sizes: Vec::new(),
            max_batch_tokens: None,
        }),
        queue_max_size,
        queue_timeout: None,
        instances: 1,
    }
}

fn rows(count: usize, first: i32) -> Vec<Tensor> {
    let values = (0..count as i32 * 2).map(|v| v + first).collect();
    vec![Tensor::new("x", vec![count, 2], TensorData::Int32(values))]
}

type Pending = tokio::task::JoinHandle<Result<Answer, ScheduleError>>;

fn submit(h: &Harness, inputs: Vec<Tensor>) -> Pending {
    let scheduler = h.scheduler.clone();
    tokio::spawn(async move { scheduler.infer(inputs, vec!["y".into()]).await })
}

/// Waits (bounded) until `condition` holds; the tests wait for states, never for time.
async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..2000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up waiting for: {what}");
}

fn calls(h: &Harness) -> Vec<usize> {
    h.backend.calls.lock().unwrap().clone()
}

#[tokio::test]
async fn queued_compatible_requests_run_as_one_batch_and_get_their_own_rows() {
    let h = harness(policy(8, 16));
    let first = submit(&h, rows(1, 0));
    until("the first request to be running", || calls(&h).len() == 1).await;
    let queued: Vec<Pending> = (1..=4)
        .map(|i| submit(&h, rows(i, i as i32 * 100)))
        .collect();
    until("four requests queued", || h.metrics.queue_depth.get() == 4).await;
    for _ in 0..3 {
        h.permits.send(()).unwrap();
    }
    assert_eq!(
        first.await.unwrap().unwrap().outputs[0].data,
        TensorData::Int32(vec![0, 2])
    );
    for (i, pending) in (1..=4).zip(queued) {
        let answer = pending.await.unwrap().unwrap();
        let expected: Vec<i32> = (0..i as i32 * 2)
            .map(|v| (v + i as i32 * 100) * 2)
            .collect();
        assert_eq!(answer.outputs[0].shape, [i, 2]);
        assert_eq!(answer.outputs[0].data, TensorData::Int32(expected));
        assert_eq!(answer.execution.rows, if i < 4 { 6 } else { 4 });
    }
    // Requests of 1, 2 and 3 rows fill 6 of 8; the 4-row one would overflow and waits its turn.
    assert_eq!(calls(&h), [1, 6, 4]);
}

#[tokio::test]
async fn without_batching_each_request_is_its_own_call() {
    let h = harness(policy(0, 16));
    for _ in 0..3 {
        h.permits.send(()).unwrap();
    }
    let answers: Vec<Pending> = (0..3).map(|i| submit(&h, rows(2, i * 10))).collect();
    for pending in answers {
        assert_eq!(pending.await.unwrap().unwrap().execution.rows, 2);
    }
    assert_eq!(calls(&h), [2, 2, 2]);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_counts_it() {
    let h = harness(policy(0, 2));
    let running = submit(&h, rows(1, 0));
    until("one running", || calls(&h).len() == 1).await;
    let waiting: Vec<Pending> = (0..2).map(|_| submit(&h, rows(1, 0))).collect();
    until("two queued", || h.metrics.queue_depth.get() == 2).await;
    let refused = h.scheduler.infer(rows(1, 0), vec!["y".into()]).await;
    assert_eq!(refused.unwrap_err(), ScheduleError::QueueFull { max: 2 });
    assert_eq!(h.metrics.rejected_queue_full.get(), 1);
    for _ in 0..3 {
        h.permits.send(()).unwrap();
    }
    assert!(running.await.unwrap().is_ok());
    for pending in waiting {
        assert!(pending.await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn a_caller_that_goes_away_costs_no_model_time() {
    let h = harness(policy(0, 8));
    let running = submit(&h, rows(1, 0));
    until("one running", || calls(&h).len() == 1).await;
    let abandoned = submit(&h, rows(1, 0));
    until("one queued", || h.metrics.queue_depth.get() == 1).await;
    abandoned.abort();
    let _ = abandoned.await;
    let kept = submit(&h, rows(1, 5));
    until("two queued", || h.metrics.queue_depth.get() == 2).await;
    h.permits.send(()).unwrap();
    h.permits.send(()).unwrap();
    assert!(running.await.unwrap().is_ok());
    assert_eq!(
        kept.await.unwrap().unwrap().outputs[0].data,
        TensorData::Int32(vec![10, 12])
    );
    assert_eq!(
        calls(&h),
        [1, 1],
        "the abandoned request never reached the model"
    );
    assert_eq!(h.metrics.rejected_cancelled.get(), 1);
}

#[tokio::test]
async fn a_request_that_waits_past_the_queue_timeout_is_answered_at_once() {
    let mut timed = policy(0, 8);
    timed.queue_timeout = Some(Duration::from_millis(30));
    let h = harness(timed);
    let running = submit(&h, rows(1, 0));
    until("one running", || calls(&h).len() == 1).await;
    // The worker is held, so this request cannot start before its timeout.
    let late = h.scheduler.infer(rows(1, 0), vec!["y".into()]).await;
    assert_eq!(
        late.unwrap_err(),
        ScheduleError::TimedOut { timeout_ms: 30 }
    );
    assert_eq!(h.metrics.rejected_queue_timeout.get(), 1);
    h.permits.send(()).unwrap();
    assert!(running.await.unwrap().is_ok());
    let after = submit(&h, rows(1, 1));
    h.permits.send(()).unwrap();
    assert!(after.await.unwrap().is_ok());
    assert_eq!(calls(&h), [1, 1], "the timed-out request was skipped");
}

#[tokio::test]
async fn a_panicking_model_fails_its_request_and_keeps_serving() {
    let h = harness(policy(0, 8));
    h.permits.send(()).unwrap();
    let panicked = h
        .scheduler
        .infer(
            vec![Tensor::new("x", vec![1, 2], TensorData::Int32(vec![-1, 0]))],
            vec!["y".into()],
        )
        .await;
    assert!(
        matches!(
            panicked,
            Err(ScheduleError::Backend(BackendError::Inference(_)))
        ),
        "{panicked:?}"
    );
    h.permits.send(()).unwrap();
    assert!(h
        .scheduler
        .infer(rows(1, 0), vec!["y".into()])
        .await
        .is_ok());
}

#[tokio::test]
async fn batch_limits_are_checked_before_queueing() {
    let h = harness(policy(4, 8));
    let too_many = h.scheduler.infer(rows(5, 0), vec!["y".into()]).await;
    assert_eq!(
        too_many.unwrap_err(),
        ScheduleError::TooManyRows { rows: 5, max: 4 }
    );
    let scalar = h
        .scheduler
        .infer(
            vec![Tensor::new("x", vec![], TensorData::Int32(vec![1]))],
            vec!["y".into()],
        )
        .await;
    assert!(matches!(scalar, Err(ScheduleError::BadBatch(_))));
    assert!(calls(&h).is_empty());
}

#[tokio::test]
async fn dropping_the_scheduler_still_answers_what_was_queued() {
    let h = harness(policy(0, 8));
    let running = submit(&h, rows(1, 0));
    until("one running", || calls(&h).len() == 1).await;
    let queued = submit(&h, rows(1, 1));
    until("one queued", || h.metrics.queue_depth.get() == 1).await;
    let Harness {
        scheduler, permits, ..
    } = h;
    drop(scheduler);
    permits.send(()).unwrap();
    permits.send(()).unwrap();
    assert!(running.await.unwrap().is_ok());
    assert!(queued.await.unwrap().is_ok());
}

#[tokio::test]
async fn light_traffic_to_a_fast_model_runs_inline_without_queueing() {
    let h = harness(policy(0, 8));
    for _ in 0..6 {
        h.permits.send(()).unwrap();
    }
    let mut queued = Vec::new();
    for i in 0..6 {
        // Requests a millisecond apart are light traffic; the first call is measured on a worker.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if i > 0 {
            // The test model is fast, but a busy machine can preempt a call past the inline
            // budget; what is tested here is the scheduler's choice, not the machine's speed.
            h.scheduler
                .shared
                .recent_call_ns
                .store(1_000, Ordering::Relaxed);
        }
        let answer = h
            .scheduler
            .infer(rows(1, i), vec!["y".into()])
            .await
            .unwrap();
        assert_eq!(
            answer.outputs[0].data,
            TensorData::Int32(vec![i * 2, (i + 1) * 2])
        );
        queued.push(answer.queued);
    }
    assert_eq!(calls(&h).len(), 6);
    assert!(
        queued[2..].iter().all(|q| q.is_zero()),
        "later calls should run inline: {queued:?}"
    );
}

#[tokio::test]
async fn batching_models_never_run_inline() {
    let h = harness(policy(4, 8));
    for i in 0..4 {
        h.permits.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let answer = h
            .scheduler
            .infer(rows(1, i), vec!["y".into()])
            .await
            .unwrap();
        assert!(!answer.queued.is_zero(), "a batching model went inline");
    }
}

#[tokio::test]
async fn a_batch_that_cannot_be_split_fails_its_requests_and_keeps_the_worker() {
    let h = harness(policy(8, 16));
    let first = submit(&h, rows(1, 0));
    until("the first request to be running", || calls(&h).len() == 1).await;
    // Two requests batch together; the model answers one element short for the batch.
    let broken = submit(
        &h,
        vec![Tensor::new("x", vec![1, 2], TensorData::Int32(vec![-2, 0]))],
    );
    let neighbour = submit(&h, rows(2, 10));
    until("two requests queued", || h.metrics.queue_depth.get() == 2).await;
    for _ in 0..2 {
        h.permits.send(()).unwrap();
    }
    assert!(first.await.unwrap().is_ok());
    for pending in [broken, neighbour] {
        let failed = pending.await.unwrap();
        let Err(ScheduleError::Backend(BackendError::Inference(message))) = &failed else {
            panic!("expected an internal error: {failed:?}");
        };
        assert!(
            message.contains("output 'y' has shape [3, 2] but 5 elements"),
            "{message}"
        );
    }
    assert_eq!(
        calls(&h),
        [1, 3],
        "the two queued requests ran as one batch"
    );
    // The worker lives on.
    h.permits.send(()).unwrap();
    assert!(h
        .scheduler
        .infer(rows(1, 0), vec!["y".into()])
        .await
        .is_ok());
}
