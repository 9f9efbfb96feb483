use half::f16;
use weir_models::{DataType, Dim, Signature, TensorSpec};

use super::*;
use crate::grpc::proto::model_infer_request::InferRequestedOutputTensor;

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.to_owned(),
        datatype,
        shape: shape.iter().map(|&d| Dim::from_i64(d)).collect(),
    }
}

fn simple() -> Signature {
    Signature {
        inputs: vec![
            spec("a", DataType::Int8, &[-1, 2]),
            spec("s", DataType::Bytes, &[-1]),
        ],
        outputs: vec![
            spec("sum", DataType::Int32, &[-1, 2]),
            spec("text", DataType::Bytes, &[-1]),
        ],
    }
}

fn input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: InferTensorContents,
) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents: Some(Box::new(contents)),
    }
}

fn typed_request() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "simple".to_owned(),
        id: "req-1".to_owned(),
        inputs: vec![
            input(
                "a",
                "INT8",
                &[2, 2],
                InferTensorContents {
                    int_contents: vec![1, -2, 127, -128],
                    ..Default::default()
                },
            ),
            input(
                "s",
                "BYTES",
                &[1],
                InferTensorContents {
                    bytes_contents: vec![b"hi".to_vec()],
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    }
}

fn refusal(request: ModelInferRequest) -> String {
    let error = decode_request(request, &simple()).unwrap_err();
    assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
    error.message
}

#[test]
fn typed_contents_decode_into_the_signatures_tensors() {
    let (request, form) = decode_request(typed_request(), &simple()).unwrap();
    assert_eq!(
        form,
        OutputForm::Raw,
        "raw unless asked otherwise, as Triton answers"
    );
    assert_eq!(request.id.as_deref(), Some("req-1"));
    assert_eq!(
        request.inputs[0].data,
        TensorData::Int8(vec![1, -2, 127, -128])
    );
    assert_eq!(request.inputs[0].shape, vec![2, 2]);
    assert_eq!(
        request.inputs[1].data,
        TensorData::Bytes(vec![b"hi".to_vec()])
    );
    let names: Vec<_> = request.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sum", "text"], "no outputs named: all of them");
}

#[test]
fn raw_contents_decode_with_the_binary_extensions_reader() {
    let mut request = typed_request();
    for input in &mut request.inputs {
        input.contents = None;
    }
    request.raw_input_contents = vec![vec![1, 0xfe, 0x7f, 0x80], b"\x02\x00\x00\x00hi".to_vec()];
    let (decoded, _) = decode_request(request, &simple()).unwrap();
    assert_eq!(
        decoded.inputs[0].data,
        TensorData::Int8(vec![1, -2, 127, -128])
    );
    assert_eq!(
        decoded.inputs[1].data,
        TensorData::Bytes(vec![b"hi".to_vec()])
    );
}

#[test]
fn bad_requests_are_refused_with_messages_naming_the_input() {
    let mut wrong_shape = typed_request();
    wrong_shape.inputs[0].shape = vec![2, 3];
    assert!(refusal(wrong_shape).contains("'a'"));

    let mut wrong_type = typed_request();
    wrong_type.inputs[0].datatype = "FP32".to_owned();
    assert!(refusal(wrong_type).contains("datatype FP32"));

    let mut negative = typed_request();
    negative.inputs[1].shape = vec![-1];
    assert!(refusal(negative).contains("cannot be negative"));

    let mut too_few = typed_request();
    too_few.inputs[0]
        .contents
        .as_mut()
        .unwrap()
        .int_contents
        .pop();
    assert!(refusal(too_few).contains("has 3 elements in int_contents, but its shape holds 4"));

    let mut wrong_list = typed_request();
    wrong_list.inputs[0].contents = Some(Box::new(InferTensorContents {
        fp32_contents: vec![1.0; 4],
        ..Default::default()
    }));
    assert!(refusal(wrong_list).contains("travels in int_contents"));

    let mut overflow = typed_request();
    overflow.inputs[0].contents.as_mut().unwrap().int_contents[2] = 300;
    assert!(refusal(overflow).contains("element 2 is 300, which does not fit INT8"));

    let mut raw_count = typed_request();
    raw_count.raw_input_contents = vec![vec![0; 4]];
    assert!(refusal(raw_count).contains("raw_input_contents has 1 entries for 2 inputs"));

    let mut both = typed_request();
    both.raw_input_contents = vec![vec![0; 4], b"\x00\x00\x00\x00".to_vec()];
    assert!(refusal(both).contains("give one form"));

    let mut short_raw = typed_request();
    for input in &mut short_raw.inputs {
        input.contents = None;
    }
    short_raw.raw_input_contents = vec![vec![0; 3], b"\x00\x00\x00\x00".to_vec()];
    assert!(refusal(short_raw).contains("input 'a'"));

    let mut missing = typed_request();
    missing.inputs.pop();
    assert!(refusal(missing).contains("'s'"));

    let mut unknown_output = typed_request();
    unknown_output.outputs = vec![InferRequestedOutputTensor {
        name: "nope".to_owned(),
        parameters: Default::default(),
    }];
    assert!(refusal(unknown_output).contains("nope"));
}

#[test]
fn fp16_has_no_typed_list() {
    let signature = Signature {
        inputs: vec![spec("h", DataType::Fp16, &[1])],
        outputs: vec![],
    };
    let request = ModelInferRequest {
        inputs: vec![input("h", "FP16", &[1], InferTensorContents::default())],
        ..Default::default()
    };
    let error = decode_request(request, &signature).unwrap_err();
    assert!(
        error.message.contains("send it in raw_input_contents"),
        "{}",
        error.message
    );
}

fn named_output(name: &str, binary: bool) -> InferRequestedOutputTensor {
    let mut parameters = std::collections::HashMap::new();
    parameters.insert(
        "binary_data".to_owned(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(binary)),
        },
    );
    InferRequestedOutputTensor {
        name: name.to_owned(),
        parameters,
    }
}

#[test]
fn outputs_are_typed_only_when_every_named_output_asks() {
    let mut request = typed_request();
    request.outputs = vec![named_output("text", false)];
    let (decoded, form) = decode_request(request, &simple()).unwrap();
    assert_eq!(form, OutputForm::Typed);
    assert_eq!(decoded.outputs, vec![("text".to_owned(), false)]);
    let mut mixed = typed_request();
    mixed.outputs = vec![named_output("text", false), named_output("sum", true)];
    assert_eq!(decode_request(mixed, &simple()).unwrap().1, OutputForm::Raw);
}

#[test]
fn responses_carry_raw_or_typed_outputs_in_order() {
    let outputs = vec![
        Tensor::new("sum", vec![1, 2], TensorData::Int32(vec![3, -4])),
        Tensor::new("text", vec![1], TensorData::Bytes(vec![b"ok".to_vec()])),
    ];
    let raw = encode_response("m", "2", Some("id".to_owned()), &outputs, OutputForm::Raw);
    assert_eq!(
        (
            raw.model_name.as_str(),
            raw.model_version.as_str(),
            raw.id.as_str()
        ),
        ("m", "2", "id")
    );
    assert_eq!(
        raw.raw_output_contents[0],
        [3, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff]
    );
    assert_eq!(raw.raw_output_contents[1], b"\x02\x00\x00\x00ok");
    assert_eq!(raw.outputs[0].shape, vec![1, 2]);
    assert_eq!(raw.outputs[1].datatype, "BYTES");
    assert!(raw.outputs[0].contents.is_none());

    let typed = encode_response("m", "2", None, &outputs, OutputForm::Typed);
    assert!(typed.raw_output_contents.is_empty());
    assert_eq!(
        typed.outputs[0].contents.as_ref().unwrap().int_contents,
        vec![3, -4]
    );
    assert_eq!(
        typed.outputs[1].contents.as_ref().unwrap().bytes_contents,
        vec![b"ok".to_vec()]
    );

    let half = vec![Tensor::new(
        "h",
        vec![1],
        TensorData::Fp16(vec![f16::from_f32(0.5)]),
    )];
    let forced = encode_response("m", "1", None, &half, OutputForm::Typed);
    assert_eq!(
        forced.raw_output_contents,
        vec![vec![0x00, 0x38]],
        "FP16 always goes raw"
    );
}

#[test]
fn typed_inputs_may_sit_beside_raw_ones_in_place_of_an_empty_entry() {
    let mut request = typed_request();
    request.inputs[1].contents = None;
    request.raw_input_contents = vec![Vec::new(), b"\x02\x00\x00\x00hi".to_vec()];
    let (decoded, _) = decode_request(request, &simple()).unwrap();
    assert_eq!(
        decoded.inputs[0].data,
        TensorData::Int8(vec![1, -2, 127, -128])
    );
    assert_eq!(
        decoded.inputs[1].data,
        TensorData::Bytes(vec![b"hi".to_vec()])
    );
}
