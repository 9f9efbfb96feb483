//! Batch assembly and splitting: 64 one-row requests stacked into one call and split back.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weir_models::{Tensor, TensorData};
use weir_runtime::scheduler::batch;

fn batching(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    let requests: Vec<Vec<Tensor>> = (0..64)
        .map(|i| {
            vec![Tensor::new(
                "x",
                vec![1, 256],
                TensorData::Fp32(vec![i as f32; 256]),
            )]
        })
        .collect();
    let rows = vec![1usize; 64];
    group.throughput(Throughput::Elements(64));
    group.bench_function("assemble_64x256", |b| {
        b.iter_batched(|| requests.clone(), batch::assemble, BatchSize::SmallInput)
    });
    let outputs = vec![Tensor::new(
        "y",
        vec![64, 16],
        TensorData::Fp32(vec![0.5; 64 * 16]),
    )];
    group.bench_function("split_64x16", |b| {
        b.iter_batched(
            || outputs.clone(),
            |o| batch::split(o, &rows).map(|a| a.len()),
            BatchSize::SmallInput,
        )
    });
    let keys: Vec<_> = requests
        .iter()
        .map(|r| batch::BatchKey::of(r, &["y".to_owned()]))
        .collect();
    group.bench_function("cut_64_queued", |b| {
        let one = batch::Size { rows: 1, length: 1 };
        let limits = batch::Limits {
            max_rows: 64,
            max_tokens: None,
        };
        b.iter(|| batch::cut(&keys[0], one, &limits, keys.iter().map(|k| (k, one))).len())
    });
    group.finish();
}

criterion_group!(benches, batching);
criterion_main!(benches);
