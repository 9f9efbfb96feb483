use super::*;
use proptest::prelude::*;

fn ok(json: &str, datatype: DataType) -> Decoded {
    decode(json, datatype, None).unwrap()
}

#[test]
fn flat_and_nested_arrays_decode_with_their_shape() {
    assert_eq!(
        ok("[1, 2, 3]", DataType::Int32),
        Decoded {
            data: TensorData::Int32(vec![1, 2, 3]),
            shape: vec![3]
        }
    );
    assert_eq!(
        ok("[[1.5, 2], [3, 4e2]]", DataType::Fp32),
        Decoded {
            data: TensorData::Fp32(vec![1.5, 2.0, 3.0, 400.0]),
            shape: vec![2, 2]
        }
    );
    assert_eq!(ok("[]", DataType::Fp32).shape, [0]);
    assert_eq!(ok("[[], []]", DataType::Int8).shape, [2, 0]);
    assert_eq!(
        ok("7", DataType::Int64),
        Decoded {
            data: TensorData::Int64(vec![7]),
            shape: vec![]
        }
    );
}

#[test]
fn every_datatype_decodes_its_json_form() {
    let cases: Vec<(&str, DataType, TensorData)> = vec![
        (
            "[true, false]",
            DataType::Bool,
            TensorData::Bool(vec![true, false]),
        ),
        ("[0, 255]", DataType::Uint8, TensorData::Uint8(vec![0, 255])),
        ("[65535]", DataType::Uint16, TensorData::Uint16(vec![65535])),
        (
            "[4294967295]",
            DataType::Uint32,
            TensorData::Uint32(vec![u32::MAX]),
        ),
        (
            "[18446744073709551615]",
            DataType::Uint64,
            TensorData::Uint64(vec![u64::MAX]),
        ),
        (
            "[-128, 127]",
            DataType::Int8,
            TensorData::Int8(vec![-128, 127]),
        ),
        (
            "[-32768]",
            DataType::Int16,
            TensorData::Int16(vec![i16::MIN]),
        ),
        (
            "[-2147483648]",
            DataType::Int32,
            TensorData::Int32(vec![i32::MIN]),
        ),
        (
            "[-9223372036854775808]",
            DataType::Int64,
            TensorData::Int64(vec![i64::MIN]),
        ),
        (
            "[0.5, 2]",
            DataType::Fp16,
            TensorData::Fp16(vec![f16::from_f32(0.5), f16::from_f32(2.0)]),
        ),
        ("[0.1]", DataType::Fp32, TensorData::Fp32(vec![0.1])),
        (
            "[0.1, -3]",
            DataType::Fp64,
            TensorData::Fp64(vec![0.1, -3.0]),
        ),
        (
            r#"["a", "é\n"]"#,
            DataType::Bytes,
            TensorData::Bytes(vec![b"a".to_vec(), "é\n".as_bytes().to_vec()]),
        ),
    ];
    for (json, datatype, expected) in cases {
        assert_eq!(ok(json, datatype).data, expected, "{datatype}");
    }
}

#[test]
fn non_finite_floats_are_accepted_in_their_usual_spellings() {
    let TensorData::Fp64(values) = ok(r#"["NaN", "Infinity", "-inf"]"#, DataType::Fp64).data else {
        panic!()
    };
    assert!(values[0].is_nan());
    assert_eq!(values[1..], [f64::INFINITY, f64::NEG_INFINITY]);
}

#[test]
fn elements_of_the_wrong_type_are_named() {
    let cases = [
        (
            "[1, 2.5]",
            DataType::Int32,
            "element 1 is 2.5, which is not a valid INT32 value",
        ),
        (
            "[256]",
            DataType::Uint8,
            "element 0 is 256, which is not a valid UINT8 value",
        ),
        (
            "[-1]",
            DataType::Uint64,
            "element 0 is -1, which is not a valid UINT64 value",
        ),
        (
            "[1]",
            DataType::Bool,
            "element 0 is 1, which is not a valid BOOL value",
        ),
        (
            "[\"1\"]",
            DataType::Fp32,
            "element 0 is the string \"1\", which is not a valid FP32 value",
        ),
        (
            "[3]",
            DataType::Bytes,
            "element 0 is 3, which is not a valid BYTES value",
        ),
        (
            "[null]",
            DataType::Fp32,
            "element 0 is null, which is not a valid FP32 value",
        ),
        (
            "[{\"a\": 1}]",
            DataType::Fp32,
            "found an object where FP32 values were expected",
        ),
    ];
    for (json, datatype, message) in cases {
        let err = decode(json, datatype, None).unwrap_err();
        assert!(err.starts_with(message), "{json}: {err}");
    }
}

#[test]
fn ragged_arrays_are_refused() {
    for json in ["[[1, 2], [3]]", "[1, [2]]", "[[1], 2]", "[[], [1]]"] {
        let err = decode(json, DataType::Int32, None).unwrap_err();
        assert!(err.starts_with("ragged nested array"), "{json}: {err}");
    }
}

#[test]
fn more_elements_than_declared_stop_the_decoder() {
    let err = decode("[1, 2, 3]", DataType::Int32, Some(2)).unwrap_err();
    assert!(
        err.starts_with("more elements than the 2 the shape declares"),
        "{err}"
    );
    assert!(decode("[1, 2]", DataType::Int32, Some(usize::MAX)).is_ok());
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    for json in ["", "[", "[1,", "[1 2]", "[1]]", "nul", "[1e999999]"] {
        assert!(decode(json, DataType::Fp32, None).is_err(), "{json}");
    }
}

#[test]
fn encoding_is_flat_and_nesting_follows_the_shape() {
    let data = TensorData::Fp16(vec![f16::from_f32(0.5), f16::from_f32(-1.0)]);
    assert_eq!(
        serde_json::to_string(&FlatData(&data)).unwrap(),
        "[0.5,-1.0]"
    );
    let bytes = TensorData::Bytes(vec![b"ok".to_vec(), vec![0xff]]);
    assert_eq!(
        serde_json::to_string(&FlatData(&bytes)).unwrap(),
        "[\"ok\",\"\u{fffd}\"]"
    );
    let ints = TensorData::Int64((0..6).collect());
    assert_eq!(
        nested_json(&ints, &[2, 3], 0).to_string(),
        "[[0,1,2],[3,4,5]]"
    );
    assert_eq!(nested_json(&ints, &[3], 3).to_string(), "[3,4,5]");
    assert_eq!(nested_json(&ints, &[], 4).to_string(), "4");
    let floats = TensorData::Fp32(vec![0.875_965_5, f32::NAN]);
    assert_eq!(
        nested_json(&floats, &[2], 0).to_string(),
        "[0.8759655,null]"
    );
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_decoder(json in ".{0,64}", which in 0usize..13, limit in proptest::option::of(0usize..8)) {
        let _ = decode(&json, DataType::ALL[which], limit);
    }

    #[test]
    fn arbitrary_json_shaped_text_never_panics_the_decoder(json in r#"[\[\]0-9,.\-e" truefalsnul{}:]{0,48}"#, which in 0usize..13) {
        let _ = decode(&json, DataType::ALL[which], None);
    }

    #[test]
    fn integers_round_trip_through_json(values in proptest::collection::vec(any::<i64>(), 0..32)) {
        let json = serde_json::to_string(&values).unwrap();
        prop_assert_eq!(decode(&json, DataType::Int64, None).unwrap().data, TensorData::Int64(values));
    }

    #[test]
    fn floats_round_trip_through_json(values in proptest::collection::vec(-1e30f32..1e30, 0..32)) {
        let data = TensorData::Fp32(values);
        let json = serde_json::to_string(&FlatData(&data)).unwrap();
        prop_assert_eq!(decode(&json, DataType::Fp32, None).unwrap().data, data);
    }
}

#[test]
fn reservations_never_exceed_the_body() {
    // A BYTES input declaring a billion elements in a 10-byte body reserves for at most
    // 10 / 24 elements (a `Vec<u8>` header is 24 bytes), not a billion.
    assert_eq!(reservation::<Vec<u8>>(Some(1_000_000_000), 10), 0);
    assert_eq!(reservation::<Vec<u8>>(Some(1_000_000_000), 240), 10);
    assert_eq!(reservation::<f64>(Some(1_000_000_000), 80), 10);
    // Small elements: bounded by two bytes of JSON each, and by the declared count.
    assert_eq!(reservation::<u8>(Some(1_000_000_000), 10), 5);
    assert_eq!(reservation::<u8>(Some(3), 1_000), 3);
    assert_eq!(reservation::<f32>(None, 1_000), 0);
    for (limit, body) in [(usize::MAX, 0), (usize::MAX, 1 << 20), (7, 100)] {
        let bytes = reservation::<Vec<u8>>(Some(limit), body) * std::mem::size_of::<Vec<u8>>();
        assert!(bytes <= body, "{bytes} reserved for a {body}-byte body");
    }
    // Decoding still reads every element present beyond the reservation.
    let packed = format!("[{}]", vec!["1"; 100].join(","));
    let decoded = decode(&packed, DataType::Fp64, Some(100)).unwrap();
    assert_eq!(decoded.data.len(), 100);
    let strings = decode(r#"["a","b","c"]"#, DataType::Bytes, Some(usize::MAX)).unwrap();
    assert_eq!(strings.shape, [3]);
}

#[test]
fn elements_past_the_end_are_null_not_a_panic() {
    let data = TensorData::Int32(vec![1, 2]);
    assert_eq!(element_json(&data, 1), serde_json::json!(2));
    assert_eq!(element_json(&data, 2), serde_json::Value::Null);
    assert_eq!(
        nested_json(&data, &[2, 2], 0).to_string(),
        "[[1,2],[null,null]]"
    );
    let strings = TensorData::Bytes(vec![b"a".to_vec()]);
    assert_eq!(element_json(&strings, 5), serde_json::Value::Null);
}
