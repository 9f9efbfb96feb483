//! Request decoding: JSON and binary V2 bodies, and V1 rows, into validated tensors.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir_models::{DataType, Dim, Signature, TensorData, TensorSpec};
use weir_runtime::protocol::{v1, v2};

fn signature(width: u64) -> Signature {
    Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Variable, Dim::Fixed(width)],
        }],
        outputs: vec![TensorSpec {
            name: "y".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Variable],
        }],
    }
}

fn values(count: usize) -> Vec<f32> {
    (0..count).map(|i| (i % 97) as f32 * 0.137 - 3.0).collect()
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (rows, width) in [(1usize, 4usize), (64, 256)] {
        let sig = signature(width as u64);
        let data = values(rows * width);
        group.throughput(Throughput::Elements((rows * width) as u64));
        let json = serde_json::json!({"inputs": [{"name": "x", "shape": [rows, width], "datatype": "FP32", "data": data}]}).to_string();
        group.bench_with_input(
            BenchmarkId::new("v2_json", format!("{rows}x{width}")),
            &json,
            |b, json| {
                b.iter(|| v2::decode_request(json.as_bytes(), &[], &sig).map(|r| r.inputs.len()))
            },
        );
        let header =
            serde_json::json!({"inputs": [{"name": "x", "shape": [rows, width], "datatype": "FP32",
            "parameters": {"binary_data_size": rows * width * 4}}]})
            .to_string();
        let mut raw = Vec::new();
        TensorData::Fp32(data.clone()).write_raw(&mut raw);
        group.bench_with_input(
            BenchmarkId::new("v2_binary", format!("{rows}x{width}")),
            &raw,
            |b, raw| {
                b.iter(|| v2::decode_request(header.as_bytes(), raw, &sig).map(|r| r.inputs.len()))
            },
        );
        let rows_json: Vec<&[f32]> = data.chunks(width).collect();
        let v1_body = serde_json::json!({ "instances": rows_json }).to_string();
        group.bench_with_input(
            BenchmarkId::new("v1_instances", format!("{rows}x{width}")),
            &v1_body,
            |b, body| b.iter(|| v1::decode_predict(body.as_bytes(), &sig).map(|t| t.len())),
        );
    }
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);
