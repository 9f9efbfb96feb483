use proptest::prelude::*;
use weir_models::{DataType, Dim, Signature, TensorData, TensorSpec};

use super::*;

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.iter().map(|&d| Dim::from_i64(d)).collect(),
    }
}

fn simple() -> Signature {
    Signature {
        inputs: vec![
            spec("a", DataType::Int32, &[-1, 2]),
            spec("s", DataType::Bytes, &[-1]),
        ],
        outputs: vec![
            spec("sum", DataType::Int32, &[-1, 2]),
            spec("text", DataType::Bytes, &[-1]),
        ],
    }
}

fn decode(json: &str) -> Result<InferRequest, ApiError> {
    decode_request(json.as_bytes(), &[], &simple())
}

fn error(json: &str) -> String {
    decode(json).unwrap_err().message
}

#[test]
fn a_json_request_decodes_into_tensors_and_all_outputs() {
    let request = decode(
        r#"{"id": "42", "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}"#,
    )
    .unwrap();
    assert_eq!(request.id.as_deref(), Some("42"));
    assert_eq!(request.inputs[0].shape, [2, 2]);
    assert_eq!(request.inputs[0].data, TensorData::Int32(vec![1, 2, 3, 4]));
    assert_eq!(
        request.inputs[1].data,
        TensorData::Bytes(vec![b"hi".to_vec()])
    );
    assert_eq!(
        request.outputs,
        [("sum".to_owned(), false), ("text".to_owned(), false)]
    );
}

#[test]
fn outputs_can_be_chosen_and_sent_back_binary() {
    let request = decode(
        r#"{"inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]},
            {"name": "s", "shape": [0], "datatype": "BYTES", "data": []}],
            "parameters": {"binary_data_output": true, "unrelated": 3},
            "outputs": [{"name": "text", "parameters": {"binary_data": false}}, {"name": "sum"}]}"#,
    )
    .unwrap();
    assert_eq!(
        request.outputs,
        [("text".to_owned(), false), ("sum".to_owned(), true)]
    );
}

#[test]
fn binary_inputs_are_read_in_order_after_the_header() {
    let json = r#"{"inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}]}"#;
    let mut body = json.as_bytes().to_vec();
    TensorData::Int32(vec![7, -7]).write_raw(&mut body);
    TensorData::Bytes(vec![b"ab".to_vec(), b"".to_vec()]).write_raw(&mut body);
    let length = json.len().to_string();
    let (header, binary) = split_body(&body, Some(&length)).unwrap();
    let request = decode_request(header, binary, &simple()).unwrap();
    assert_eq!(request.inputs[0].data, TensorData::Int32(vec![7, -7]));
    assert_eq!(
        request.inputs[1].data,
        TensorData::Bytes(vec![b"ab".to_vec(), vec![]])
    );
}

#[test]
fn binary_errors_name_the_input() {
    let json = r#"{"inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}"#;
    let err = decode_request(json.as_bytes(), &[0; 4], &simple()).unwrap_err();
    assert_eq!(
        err.message,
        "input 'a' declares binary_data_size 8 but only 4 binary bytes remain in the body"
    );
    let err = decode_request(json.as_bytes(), &[0; 12], &simple()).unwrap_err();
    assert!(
        err.message
            .starts_with("4 bytes after the JSON header belong to no input"),
        "{}",
        err.message
    );
    let short = json.replace("\"binary_data_size\": 8", "\"binary_data_size\": 4");
    let err = decode_request(short.as_bytes(), &[0; 4], &simple()).unwrap_err();
    assert_eq!(
        err.message,
        "input 'a': expected 8 bytes for 2 INT32 elements, found 4"
    );
}

#[test]
fn the_header_length_must_fit_the_body() {
    assert_eq!(
        split_body(b"{}xyz", Some("2")).unwrap(),
        (&b"{}"[..], &b"xyz"[..])
    );
    assert!(split_body(b"{}", Some("3"))
        .unwrap_err()
        .message
        .contains("only 2 bytes"));
    assert!(split_body(b"{}", Some("-1"))
        .unwrap_err()
        .message
        .contains("byte count"));
    assert_eq!(split_body(b"{}", None).unwrap().1, b"");
}

#[test]
fn every_malformed_request_gets_a_message_naming_the_problem() {
    let a = r#"{"name": "a", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]}"#;
    let s = r#"{"name": "s", "shape": [1], "datatype": "BYTES", "data": ["x"]}"#;
    let cases = [
        ("not json".to_owned(), "invalid inference request: expected ident"),
        ("{}".to_owned(), "invalid inference request: missing field `inputs`"),
        (format!(r#"{{"inputs": [{a}, {s}], "extra": 1}}"#), "invalid inference request: unknown field `extra`"),
        (format!(r#"{{"inputs": [{a}]}}"#), "missing input 's' (BYTES [-1])"),
        (format!(r#"{{"inputs": [{a}, {a}, {s}]}}"#), "input 'a' is given more than once"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("\"a\"", "\"b\"")), "unknown input 'b'; the model's inputs are: a, s"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("INT32", "FP32")), "input 'a' has datatype FP32, but the model expects INT32"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("[1, 2]", "[2]")), "input 'a' has shape [2], but the model expects [-1, 2] (rank 2)"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("\"shape\": [1, 2]", "\"shape\": [1, 3]")), "input 'a' has shape [1, 3], but dimension 1 must be 2"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("\"shape\": [1, 2]", "\"shape\": [-1, 2]")), "invalid inference request: invalid value: integer `-1`"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("\"shape\": [1, 2]", "\"shape\": [2, 2]")), "input 'a' has 2 elements in \"data\", but its shape holds 4"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("[1, 2]}", "[1, 2, 3]}")), "input 'a' data: more elements than the 2 the shape declares"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("[1, 2]}", "[1, 2.5]}")), "input 'a' data: element 1 is 2.5, which is not a valid INT32 value"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace(", \"data\": [1, 2]", "")), "input 'a' has no \"data\""),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("\"data\"", "\"parameters\": {\"binary_data_size\": 8}, \"data\"")), "input 'a' has both \"data\" and a binary_data_size parameter"),
        (format!(r#"{{"inputs": [{s}, {}]}}"#, a.replace("\"shape\": [1, 2]", "\"shape\": [9223372036854775808, 2]")), "input 'a' has shape [9223372036854775808, 2], whose element count does not fit in memory"),
        (format!(r#"{{"inputs": [{a}, {s}], "outputs": [{{"name": "nope"}}]}}"#), "unknown output 'nope' requested; the model's outputs are: sum, text"),
        (format!(r#"{{"id": 5, "inputs": [{a}, {s}]}}"#), "invalid inference request: invalid type: integer `5`, expected a string"),
    ];
    for (json, message) in cases {
        let err = error(&json);
        assert!(
            err.starts_with(message),
            "\n request: {json}\n  got: {err}\n want: {message}"
        );
    }
}

#[test]
fn responses_echo_the_id_and_put_binary_outputs_after_the_header() {
    let outputs = [
        Tensor::new("sum", vec![1, 2], TensorData::Int32(vec![3, 4])),
        Tensor::new("text", vec![1], TensorData::Bytes(vec![b"ok".to_vec()])),
    ];
    let json = encode_response("simple", "1", Some("7"), &outputs, &[false, false]);
    assert_eq!(json.header_length, None);
    assert_eq!(
        String::from_utf8(json.body).unwrap(),
        r#"{"model_name":"simple","model_version":"1","id":"7","outputs":[{"name":"sum","datatype":"INT32","shape":[1,2],"data":[3,4]},{"name":"text","datatype":"BYTES","shape":[1],"data":["ok"]}]}"#
    );
    let mixed = encode_response("simple", "1", None, &outputs, &[true, false]);
    let length = mixed.header_length.unwrap();
    let header: serde_json::Value = serde_json::from_slice(&mixed.body[..length]).unwrap();
    assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert!(header["outputs"][0].get("data").is_none());
    assert!(header.get("id").is_none());
    assert_eq!(&mixed.body[length..], [3, 0, 0, 0, 4, 0, 0, 0]);
}

proptest! {
    #[test]
    fn arbitrary_bodies_and_headers_never_panic_the_decoder(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        header in proptest::option::of("[0-9a-z -]{0,6}"),
    ) {
        if let Ok((json, binary)) = split_body(&body, header.as_deref()) {
            let _ = decode_request(json, binary, &simple());
        }
    }

    #[test]
    fn arbitrary_request_shaped_json_never_panics_the_decoder(
        name in "[as]", datatype in "(INT32|BYTES|FP32)", shape in proptest::collection::vec(0u64..5, 0..3),
        data in r#"[\[\]0-9,."a-z]{0,24}"#, size in proptest::option::of(0u64..64),
        binary in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let parameters = size.map(|s| format!(r#", "parameters": {{"binary_data_size": {s}}}"#)).unwrap_or_default();
        let json = format!(r#"{{"inputs": [{{"name": "{name}", "shape": {shape:?}, "datatype": "{datatype}", "data": {data}{parameters}}}]}}"#);
        let _ = decode_request(json.as_bytes(), &binary, &simple());
    }
}
