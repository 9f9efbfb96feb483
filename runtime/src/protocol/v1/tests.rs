use weir_models::{DataType, Dim, Signature, TensorData, TensorSpec};

use super::*;

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.iter().map(|&d| Dim::from_i64(d)).collect(),
    }
}

fn iris() -> Signature {
    Signature {
        inputs: vec![spec("features", DataType::Fp32, &[-1, 4])],
        outputs: vec![spec("label", DataType::Int64, &[-1])],
    }
}

fn two_inputs() -> Signature {
    Signature {
        inputs: vec![
            spec("a", DataType::Int32, &[-1, 2]),
            spec("b", DataType::Bool, &[-1]),
        ],
        outputs: vec![
            spec("sum", DataType::Int32, &[-1, 2]),
            spec("flag", DataType::Bool, &[-1]),
        ],
    }
}

#[test]
fn rows_of_a_single_input_model_become_one_batch() {
    let tensors =
        decode_predict(br#"{"instances": [[1, 2, 3, 4], [5, 6, 7, 8.5]]}"#, &iris()).unwrap();
    assert_eq!(tensors.len(), 1);
    assert_eq!(tensors[0].name, "features");
    assert_eq!(tensors[0].shape, [2, 4]);
    assert_eq!(
        tensors[0].data,
        TensorData::Fp32(vec![1., 2., 3., 4., 5., 6., 7., 8.5])
    );
    let columnar = decode_predict(br#"{"inputs": [[1, 2, 3, 4]]}"#, &iris()).unwrap();
    assert_eq!(columnar[0].shape, [1, 4]);
}

#[test]
fn named_rows_and_named_columns_feed_several_inputs() {
    let rows = decode_predict(
        br#"{"instances": [{"a": [1, 2], "b": true}, {"b": false, "a": [3, 4]}]}"#,
        &two_inputs(),
    )
    .unwrap();
    assert_eq!(rows[0].shape, [2, 2]);
    assert_eq!(rows[0].data, TensorData::Int32(vec![1, 2, 3, 4]));
    assert_eq!(rows[1].shape, [2]);
    assert_eq!(rows[1].data, TensorData::Bool(vec![true, false]));
    let columns = decode_predict(
        br#"{"inputs": {"b": [true], "a": [[1, 2]]}}"#,
        &two_inputs(),
    )
    .unwrap();
    assert_eq!(columns[0].data, TensorData::Int32(vec![1, 2]));
    assert_eq!(columns[1].data, TensorData::Bool(vec![true]));
}

#[test]
fn bad_predict_requests_are_named() {
    let cases: [(&[u8], &Signature, &str); 10] = [
        (b"\"rows\"", &iris(), "invalid predict request"),
        (
            br#"{}"#,
            &iris(),
            "a predict request needs exactly one of \"instances\" or \"inputs\"",
        ),
        (
            br#"{"instances": [], "inputs": []}"#,
            &iris(),
            "a predict request needs exactly one",
        ),
        (
            br#"{"instances": [[1, 2, 3]]}"#,
            &iris(),
            "input 'features' has shape [1, 3], but dimension 1 must be 4",
        ),
        (
            br#"{"instances": [[1, 2, 3, 4], [1]]}"#,
            &iris(),
            "input 'features': ragged nested array",
        ),
        (
            br#"{"instances": [["a", 2, 3, 4]]}"#,
            &iris(),
            "input 'features': element 0 is the string \"a\"",
        ),
        (
            br#"{"instances": [[1, 2]]}"#,
            &two_inputs(),
            "the model has 2 inputs (a, b); give each row as an object",
        ),
        (
            br#"{"instances": [{"a": [1, 2]}]}"#,
            &two_inputs(),
            "missing input 'b'",
        ),
        (
            br#"{"instances": [{"a": [1, 2], "b": true}, {"a": [1, 2, 3], "b": true}]}"#,
            &two_inputs(),
            "instance 1 input 'a' has shape [3], unlike earlier rows' [2]",
        ),
        (
            br#"{"instances": [{"a": [1, 2], "b": true}, {"a": [1, 2]}]}"#,
            &two_inputs(),
            "input 'b' is missing from some instances",
        ),
    ];
    for (body, signature, message) in cases {
        let err = decode_predict(body, signature).unwrap_err();
        assert!(
            err.message.starts_with(message),
            "{}: {}",
            String::from_utf8_lossy(body),
            err.message
        );
    }
    let unknown = decode_predict(br#"{"instances": [{"c": 1}]}"#, &two_inputs()).unwrap_err();
    assert!(
        unknown
            .message
            .starts_with("instance 0 names unknown input 'c'"),
        "{}",
        unknown.message
    );
}

fn iris_features() -> Vec<String> {
    ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        .map(String::from)
        .to_vec()
}

#[test]
fn instances_keyed_by_feature_name_are_placed_in_the_declared_order() {
    let features = iris_features();
    let tensors = decode_predict_with_features(
        br#"{"instances": [
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            {"petal_width": 8, "petal_length": 7, "sepal_width": 6, "sepal_length": 5}
        ]}"#,
        &iris(),
        &features,
    )
    .unwrap();
    assert_eq!(tensors.len(), 1);
    assert_eq!(tensors[0].name, "features");
    assert_eq!(tensors[0].shape, [2, 4]);
    assert_eq!(
        tensors[0].data,
        TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2, 5., 6., 7., 8.])
    );
    // Plain rows and the input's own name still work for such a model.
    let plain =
        decode_predict_with_features(br#"{"instances": [[1, 2, 3, 4]]}"#, &iris(), &features)
            .unwrap();
    assert_eq!(plain[0].data, TensorData::Fp32(vec![1., 2., 3., 4.]));
    let named = decode_predict_with_features(
        br#"{"instances": [{"features": [1, 2, 3, 4]}]}"#,
        &iris(),
        &features,
    )
    .unwrap();
    assert_eq!(named[0].shape, [1, 4]);
}

#[test]
fn feature_rows_missing_unknown_or_mixed_are_refused_naming_the_key() {
    let features = iris_features();
    let cases: [(&[u8], &str); 5] = [
        (
            br#"{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}]}"#,
            "instance 0 lacks feature 'petal_width'; the model's features are: sepal_length, sepal_width, petal_length, petal_width",
        ),
        (
            br#"{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "colour": 1}]}"#,
            "instance 0 names unknown feature 'colour'",
        ),
        (
            br#"{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}, [1, 2, 3, 4]]}"#,
            "\"instances\" mixes two forms: instance 0 is an object keyed by name but instance 1 is a plain row",
        ),
        (
            br#"{"instances": [[1, 2, 3, 4], {"sepal_length": 5.1}]}"#,
            "\"instances\" mixes two forms: instance 0 is a plain row but instance 1 is an object",
        ),
        (
            br#"{"instances": [{"sepal_length": [5.1], "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}"#,
            "instance 0 feature 'sepal_length' must be a single value",
        ),
    ];
    for (body, message) in cases {
        let err = decode_predict_with_features(body, &iris(), &features).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            err.message.starts_with(message),
            "{}: {}",
            String::from_utf8_lossy(body),
            err.message
        );
    }
    // A model without feature names refuses feature-keyed rows as unknown inputs, as before.
    let err = decode_predict(br#"{"instances": [{"sepal_length": 5.1}]}"#, &iris()).unwrap_err();
    assert!(
        err.message
            .starts_with("instance 0 names unknown input 'sepal_length'"),
        "{}",
        err.message
    );
    // A value of the wrong type is refused by the datatype check.
    let err = decode_predict_with_features(
        br#"{"instances": [{"sepal_length": "x", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}"#,
        &iris(),
        &features,
    )
    .unwrap_err();
    assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
}

#[test]
fn predictions_are_rows_of_the_output_or_objects_of_outputs() {
    let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2]));
    assert_eq!(
        encode_predictions(std::slice::from_ref(&label))
            .unwrap()
            .to_string(),
        r#"{"predictions":[0,2]}"#
    );
    let probabilities = Tensor::new(
        "p",
        vec![2, 2],
        TensorData::Fp32(vec![0.25, 0.75, 1.0, 0.0]),
    );
    assert_eq!(
        encode_predictions(&[label, probabilities])
            .unwrap()
            .to_string(),
        r#"{"predictions":[{"label":0,"p":[0.25,0.75]},{"label":2,"p":[1.0,0.0]}]}"#
    );
}

#[test]
fn outputs_that_disagree_on_rows_are_an_internal_error_not_a_panic() {
    // The first output has 3 rows, the second 1: indexing row 2 of the second used to panic.
    let label = Tensor::new("label", vec![3], TensorData::Int64(vec![0, 1, 2]));
    let score = Tensor::new("score", vec![1, 2], TensorData::Fp32(vec![0.5, 0.5]));
    let err = encode_predictions(&[label.clone(), score]).unwrap_err();
    assert_eq!(err.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        err.message.contains("differ in their first dimension")
            && err.message.contains("'score' has 1"),
        "{}",
        err.message
    );
    // Fewer rows first, more later: refused too, whichever order the model gives them in.
    let short = Tensor::new("short", vec![1], TensorData::Int64(vec![7]));
    assert!(encode_predictions(&[short, label]).is_err());
}

#[test]
fn an_output_whose_data_does_not_fill_its_shape_is_refused() {
    let lying = Tensor::new("y", vec![2, 3], TensorData::Fp32(vec![1.0; 4]));
    let err = encode_predictions(&[lying]).unwrap_err();
    assert!(
        err.message
            .contains("output 'y' has shape [2, 3] but 4 elements"),
        "{}",
        err.message
    );
    let overflowing = Tensor::new("z", vec![usize::MAX, 2], TensorData::Fp32(vec![]));
    assert!(encode_predictions(&[overflowing]).is_err());
    assert_eq!(
        encode_predictions(&[]).unwrap().to_string(),
        r#"{"predictions":[]}"#
    );
}
