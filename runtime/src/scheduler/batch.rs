//! Pure batch logic: which requests may share a model call, how many join, and how a batch is
//! stacked and split. No clocks or threads here, so every rule is tested directly.

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
mod tests {
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
}
