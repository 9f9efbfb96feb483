//! The batch rules, tested directly: keys, cuts, stacking, and the deadline and inline
//! decisions on a simulated clock (instants and durations made up by the test, no sleeps).

use super::*;
use proptest::prelude::*;
use weir_models::TensorData;

fn request(rows: usize, width: usize, offset: i32) -> Vec<Tensor> {
    let data = (0..(rows * width) as i32).map(|v| v + offset).collect();
    vec![Tensor::new("x", vec![rows, width], TensorData::Int32(data))]
}

#[test]
fn keys_differ_by_non_batch_shape_datatype_and_outputs() {
    let outputs = vec!["y".to_owned()];
    let a = BatchKey::of(&request(1, 4, 0), &outputs);
    assert_eq!(
        a,
        BatchKey::of(&request(7, 4, 9), &outputs),
        "the batch dimension does not matter"
    );
    assert_ne!(a, BatchKey::of(&request(1, 5, 0), &outputs));
    assert_ne!(a, BatchKey::of(&request(1, 4, 0), &["z".to_owned()]));
    let floats = vec![Tensor::new("x", vec![1, 4], TensorData::Fp32(vec![0.0; 4]))];
    assert_ne!(a, BatchKey::of(&floats, &outputs));
}

#[test]
fn rows_come_from_the_first_dimension_and_must_agree() {
    assert_eq!(rows(&request(3, 2, 0)), Ok(3));
    let mut two = request(3, 2, 0);
    two.push(Tensor::new("z", vec![2], TensorData::Int8(vec![0; 2])));
    assert!(rows(&two).unwrap_err().contains("disagree"));
    let scalar = vec![Tensor::new("s", vec![], TensorData::Int8(vec![1]))];
    assert!(rows(&scalar).unwrap_err().contains("no batch dimension"));
}

#[test]
fn a_cut_takes_matching_requests_in_order_up_to_the_limit() {
    let key = BatchKey::of(&request(1, 4, 0), &[]);
    let other = BatchKey::of(&request(1, 5, 0), &[]);
    let queued = [(&key, 2), (&other, 1), (&key, 4), (&key, 1), (&key, 3)];
    let sized = || {
        queued.iter().map(|(k, rows)| {
            (
                *k,
                Size {
                    rows: *rows,
                    length: 1,
                },
            )
        })
    };
    let limit = |max_rows| Limits {
        max_rows,
        max_tokens: None,
    };
    let one = Size { rows: 1, length: 1 };
    // 1 (first) + 2 + 1 fits 4; the 4-row one is skipped, not blocking the 1-row one.
    assert_eq!(cut(&key, one, &limit(4), sized()), [0, 3]);
    assert_eq!(cut(&key, one, &limit(100), sized()), [0, 2, 3, 4]);
    let full = Size { rows: 4, length: 1 };
    assert_eq!(cut(&key, full, &limit(4), sized()), Vec::<usize>::new());
}

#[test]
fn a_token_budget_counts_padding_to_the_longest_sequence() {
    let key = BatchKey::of(&[], &[]);
    let limits = Limits {
        max_rows: 100,
        max_tokens: Some(64),
    };
    let texts = |length| Size { rows: 1, length };
    // First text: 10 tokens. A 30-token text pads both: 2 × 30 = 60 fits. Another 10-token
    // text would make 3 × 30 = 90: too many, skipped; a 2-row request of 5 likewise (4 × 30).
    let queued = [texts(30), texts(10), Size { rows: 2, length: 5 }];
    assert_eq!(
        cut(&key, texts(10), &limits, queued.iter().map(|s| (&key, *s))),
        [0]
    );
    // Short texts pack densely: 6 × 10 = 60.
    let short = [texts(10); 8];
    assert_eq!(
        cut(&key, texts(10), &limits, short.iter().map(|s| (&key, *s))).len(),
        5
    );
    assert!(
        !limits.fits(Size {
            rows: 1,
            length: 65
        }),
        "alone over budget: it runs alone"
    );
}

#[test]
fn full_or_preferred_batches_go_at_once() {
    assert!(ready_to_send(8, 8, &[]));
    assert!(!ready_to_send(5, 8, &[]));
    assert!(ready_to_send(4, 8, &[4, 8]));
}

#[test]
fn assemble_then_split_gives_each_request_its_own_rows() {
    let requests = vec![request(1, 3, 0), request(2, 3, 100), request(3, 3, 200)];
    let stacked = assemble(requests.clone()).unwrap();
    assert_eq!(stacked[0].shape, [6, 3]);
    let answers = split(stacked, &[1, 2, 3]).unwrap();
    assert_eq!(answers, requests);
}

#[test]
fn split_refuses_outputs_without_the_batch_rows() {
    let output = vec![Tensor::new("y", vec![2], TensorData::Fp32(vec![0.0; 2]))];
    assert!(split(output, &[1, 2]).unwrap_err().contains("output 'y'"));
}

#[test]
fn split_refuses_outputs_whose_data_does_not_fill_their_shape() {
    // Shape says 3 rows of 2, data holds 4: slicing the last row used to panic.
    let short = vec![Tensor::new("y", vec![3, 2], TensorData::Fp32(vec![0.0; 4]))];
    let err = split(short, &[1, 2]).unwrap_err();
    assert!(
        err.contains("output 'y' has shape [3, 2] but 4 elements"),
        "{err}"
    );
    let huge = vec![Tensor::new(
        "y",
        vec![2, usize::MAX, 2],
        TensorData::Fp32(vec![]),
    )];
    assert!(split(huge, &[1, 1]).is_err());
    let scalar = vec![Tensor::new("y", vec![], TensorData::Fp32(vec![1.0]))];
    assert!(split(scalar, &[1]).is_err());
}

#[test]
fn assemble_refuses_requests_that_do_not_stack() {
    let ints = request(1, 3, 0);
    let floats = vec![Tensor::new("x", vec![1, 3], TensorData::Fp32(vec![0.0; 3]))];
    assert!(assemble(vec![ints.clone(), floats])
        .unwrap_err()
        .contains("datatype"));
    let scalar = vec![Tensor::new("x", vec![], TensorData::Int32(vec![1]))];
    assert!(assemble(vec![scalar.clone(), ints.clone()]).is_err());
    assert!(assemble(vec![ints.clone(), scalar]).is_err());
    assert!(assemble(vec![ints.clone(), request(1, 4, 0)]).is_err());
    assert!(assemble(vec![ints.clone(), vec![]]).is_err());
    assert_eq!(assemble(vec![]).unwrap(), Vec::<Tensor>::new());
}

proptest! {
    #[test]
    fn any_batch_splits_back_exactly(sizes in proptest::collection::vec(0usize..5, 1..8), width in 1usize..4) {
        let requests: Vec<_> = sizes.iter().enumerate().map(|(i, &rows)| request(rows, width, i as i32 * 1000)).collect();
        let answers = split(assemble(requests.clone()).unwrap(), &sizes).unwrap();
        prop_assert_eq!(answers, requests);
    }

    #[test]
    fn a_cut_never_exceeds_the_limits(
        first in (1usize..8, 1usize..20), max in 1usize..16, budget in proptest::option::of(1usize..200),
        queued in proptest::collection::vec((0usize..2, 1usize..6, 1usize..20), 0..12),
    ) {
        let keys = [BatchKey::of(&request(1, 1, 0), &[]), BatchKey::of(&request(1, 2, 0), &[])];
        let limits = Limits { max_rows: max, max_tokens: budget };
        let first = Size { rows: first.0, length: first.1 };
        let sizes = queued.iter().map(|&(k, rows, length)| (&keys[k], Size { rows, length }));
        let chosen = cut(&keys[0], first, &limits, sizes);
        let total = chosen.iter().fold(first, |t, &i| t.join(Size { rows: queued[i].1, length: queued[i].2 }));
        prop_assert!(chosen.is_empty() || limits.fits(total));
        prop_assert!(chosen.iter().all(|&i| queued[i].0 == 0));
    }
}

/// A simulated clock: instants `ms` milliseconds after a fixed start.
fn at(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

#[test]
fn a_forming_batch_waits_out_its_delay_then_goes() {
    let start = Instant::now();
    // Opened at 0 with a 5 ms delay, 2 of 8 rows, no preferred sizes.
    let deadline = at(start, 5);
    let step = |now| next_step(now, deadline, 2, 8, &[], false);
    assert_eq!(step(at(start, 0)), Next::Wait(Duration::from_millis(5)));
    assert_eq!(step(at(start, 4)), Next::Wait(Duration::from_millis(1)));
    assert_eq!(step(at(start, 5)), Next::Send);
    assert_eq!(
        step(at(start, 60_000)),
        Next::Send,
        "long past the deadline"
    );
}

#[test]
fn a_full_preferred_or_closing_batch_goes_before_its_deadline() {
    let start = Instant::now();
    let deadline = at(start, 5);
    assert_eq!(next_step(start, deadline, 8, 8, &[], false), Next::Send);
    assert_eq!(next_step(start, deadline, 4, 8, &[4], false), Next::Send);
    assert_eq!(
        next_step(start, deadline, 3, 8, &[4], false),
        Next::Wait(Duration::from_millis(5))
    );
    assert_eq!(next_step(start, deadline, 1, 8, &[], true), Next::Send);
}

#[test]
fn a_zero_delay_batches_only_what_is_already_queued() {
    let start = Instant::now();
    assert_eq!(next_step(start, start, 1, 8, &[], false), Next::Send);
}

/// Feeds arrivals at the given gaps (nanoseconds) through the rule, as the scheduler does;
/// returns the inline decision after each, for a fast, non-batching model.
fn inline_decisions(gaps: impl IntoIterator<Item = u64>) -> Vec<bool> {
    let (mut now, mut last, mut average) = (0u64, 0u64, 0u64);
    gaps.into_iter()
        .map(|gap| {
            now += gap;
            average = arrival_gap(average, last, now);
            last = now;
            may_run_inline(average, 1_000, false)
        })
        .collect()
}

#[test]
fn light_traffic_runs_inline_and_heavy_traffic_does_not() {
    // A request a millisecond: inline from the first arrival on (1 ms / 8 ≥ 45 µs).
    assert!(inline_decisions([1_000_000; 20])
        .iter()
        .all(|&inline| inline));
    // A request every 10 µs: never inline.
    assert!(inline_decisions([10_000; 200])
        .iter()
        .all(|&inline| !inline));
    // Light, then a burst: the average falls below the threshold within a few arrivals and
    // stays there while the burst lasts.
    let decisions =
        inline_decisions(std::iter::repeat_n(1_000_000, 20).chain(std::iter::repeat_n(1_000, 100)));
    assert!(decisions[..20].iter().all(|&inline| inline));
    let first_queued = decisions.iter().position(|&inline| !inline).unwrap();
    assert!(first_queued < 20 + 32, "{first_queued}");
    assert!(decisions[first_queued..].iter().all(|&inline| !inline));
}

#[test]
fn one_long_idle_counts_as_a_millisecond() {
    // A minute of silence, then a burst: the cap keeps the silence from standing for light
    // traffic past a handful of burst arrivals.
    let decisions =
        inline_decisions(std::iter::once(60_000_000_000).chain(std::iter::repeat_n(1_000, 40)));
    assert!(decisions[0]);
    assert!(!decisions[30]);
}

#[test]
fn slow_or_batching_models_never_run_inline() {
    assert!(may_run_inline(INLINE_GAP_NS, INLINE_BUDGET_NS - 1, false));
    assert!(!may_run_inline(INLINE_GAP_NS - 1, 0, false));
    assert!(!may_run_inline(u64::MAX, INLINE_BUDGET_NS, false));
    assert!(!may_run_inline(u64::MAX, 0, true));
    assert!(
        !may_run_inline(u64::MAX, u64::MAX, false),
        "nothing measured yet"
    );
}

#[test]
fn the_first_call_stands_alone_and_later_ones_are_averaged() {
    assert_eq!(call_average(u64::MAX, Duration::from_micros(30)), 30_000);
    assert_eq!(call_average(80_000, Duration::ZERO), 70_000);
    assert_eq!(call_average(u64::MAX, Duration::MAX), u64::MAX - 1);
}

proptest! {
    #[test]
    fn a_batch_never_waits_past_its_deadline(
        now_ms in 0u64..100, delay_ms in 0u64..50, rows in 1usize..16, max in 1usize..16,
        preferred in proptest::collection::vec(1usize..16, 0..3), closed: bool,
    ) {
        let start = Instant::now();
        let (now, deadline) = (at(start, now_ms), at(start, delay_ms));
        match next_step(now, deadline, rows, max, &preferred, closed) {
            Next::Wait(left) => {
                prop_assert!(now < deadline && now + left == deadline);
                prop_assert!(!closed && !ready_to_send(rows, max, &preferred));
            }
            Next::Send => prop_assert!(now >= deadline || closed || ready_to_send(rows, max, &preferred)),
        }
    }

    #[test]
    fn the_arrival_average_stays_within_the_gaps_it_saw(
        gaps in proptest::collection::vec(0u64..5_000_000, 1..64), start in 0u64..=ARRIVAL_GAP_CAP_NS,
    ) {
        let (mut now, mut last, mut average) = (0u64, 0u64, start);
        let (mut low, mut high) = (start, start);
        for gap in gaps {
            now += gap;
            average = arrival_gap(average, last, now);
            last = now;
            let counted = gap.min(ARRIVAL_GAP_CAP_NS);
            low = low.min(counted);
            high = high.max(counted);
            // Integer division loses at most a nanosecond or two per step.
            prop_assert!(average <= high && average + 16 >= low, "{average} not in {low}..={high}");
        }
    }

    #[test]
    fn an_arrival_out_of_order_counts_as_no_gap(average in 0u64..=ARRIVAL_GAP_CAP_NS, last in 1u64..u64::MAX) {
        prop_assert_eq!(arrival_gap(average, last, last - 1), average - average / 8);
    }

    #[test]
    fn the_call_average_moves_toward_each_call(average in 0u64..1_000_000_000, took in 0u64..1_000_000_000) {
        let next = call_average(average, Duration::from_nanos(took));
        prop_assert!(next <= average.max(took) && next + 2 >= average.min(took));
    }
}
