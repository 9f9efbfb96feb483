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

/// Picks the queued requests that join a batch opened by a request of `first_rows` rows:
/// those with the same key, in queue order, while the batch stays within `max_rows`. A request
/// that does not fit is skipped (a later, smaller one may still fit) and keeps its place.
pub fn cut<'a>(
    key: &BatchKey,
    first_rows: usize,
    max_rows: usize,
    queued: impl Iterator<Item = (&'a BatchKey, usize)>,
) -> Vec<usize> {
    let mut total = first_rows;
    let mut chosen = Vec::new();
    for (index, (candidate, rows)) in queued.enumerate() {
        if total >= max_rows {
            break;
        }
        if candidate == key && total + rows <= max_rows {
            total += rows;
            chosen.push(index);
        }
    }
    chosen
}

/// Whether a batch of `rows` should go now rather than wait out the queue delay.
pub fn ready_to_send(rows: usize, max_rows: usize, preferred: &[usize]) -> bool {
    rows >= max_rows || preferred.contains(&rows)
}

/// Stacks requests (each with inputs sorted by name and the same key) along the first dimension.
pub fn assemble(requests: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    let mut requests = requests.into_iter();
    let Some(mut stacked) = requests.next() else {
        return Vec::new();
    };
    for inputs in requests {
        for (into, tensor) in stacked.iter_mut().zip(inputs) {
            into.shape[0] += tensor.shape[0];
            into.data.append(tensor.data);
        }
    }
    stacked
}

/// Splits a batch's outputs back into each request's rows, in request order.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    let total: usize = rows.iter().sum();
    let mut answers: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        if output.shape.first() != Some(&total) {
            return Err(format!(
                "output '{}' has shape {:?}, which does not start with the batch's {total} rows",
                output.name, output.shape
            ));
        }
        let stride: usize = output.shape[1..].iter().product();
        let mut start = 0;
        for (answer, &count) in answers.iter_mut().zip(rows) {
            let mut shape = output.shape.clone();
            shape[0] = count;
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
        // 1 (first) + 2 + 1 fits 4; the 4-row request is skipped, not blocking the 1-row one.
        assert_eq!(
            cut(&key, 1, 4, queued.iter().map(|(k, r)| (*k, *r))),
            [0, 3]
        );
        assert_eq!(
            cut(&key, 1, 100, queued.iter().map(|(k, r)| (*k, *r))),
            [0, 2, 3, 4]
        );
        assert_eq!(
            cut(&key, 4, 4, queued.iter().map(|(k, r)| (*k, *r))),
            Vec::<usize>::new()
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
        let stacked = assemble(requests.clone());
        assert_eq!(stacked[0].shape, [6, 3]);
        let answers = split(stacked, &[1, 2, 3]).unwrap();
        assert_eq!(answers, requests);
    }

    #[test]
    fn split_refuses_outputs_without_the_batch_rows() {
        let output = vec![Tensor::new("y", vec![2], TensorData::Fp32(vec![0.0; 2]))];
        assert!(split(output, &[1, 2]).unwrap_err().contains("output 'y'"));
    }

    proptest! {
        #[test]
        fn any_batch_splits_back_exactly(sizes in proptest::collection::vec(0usize..5, 1..8), width in 1usize..4) {
            let requests: Vec<_> = sizes.iter().enumerate().map(|(i, &rows)| request(rows, width, i as i32 * 1000)).collect();
            let answers = split(assemble(requests.clone()), &sizes).unwrap();
            prop_assert_eq!(answers, requests);
        }

        #[test]
        fn a_cut_never_exceeds_the_limit(first in 1usize..8, max in 1usize..16, queued in proptest::collection::vec((0usize..2, 1usize..6), 0..12)) {
            let keys = [BatchKey::of(&request(1, 1, 0), &[]), BatchKey::of(&request(1, 2, 0), &[])];
            let chosen = cut(&keys[0], first, max, queued.iter().map(|&(k, r)| (&keys[k], r)));
            let total: usize = first + chosen.iter().map(|&i| queued[i].1).sum::<usize>();
            prop_assert!(chosen.is_empty() || total <= max);
            prop_assert!(chosen.iter().all(|&i| queued[i].0 == 0));
        }
    }
}
