//! A sentence-embedding model (MiniLM, candle) behind the runtime: validation, token-budget
//! batching, and each client getting its own embedding.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::path::PathBuf;

use axum::http::StatusCode;
use common::{get, post, start, TempRepo};
use serde_json::json;
use weir_models::{Tensor, TensorData};

const TEXTS: [&str; 12] = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "canary rollouts at ten percent",
    "autoscaling on prometheus metrics",
    "a registry of approved models",
    "embeddings for search",
    "serving on two cores",
    "batching by padded tokens",
    "open inference protocol",
    "kserve and triton clients",
    "rust all the way down",
    "the last sentence here",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_texts_batch_within_the_token_budget_and_get_their_own_embeddings() {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/text-models/minilm/1");
    assert!(
        source.is_dir(),
        "{} is missing: run `make setup`",
        source.display()
    );
    let repo = TempRepo::new("text");
    std::fs::create_dir_all(repo.path("minilm")).unwrap();
    std::os::unix::fs::symlink(&source, repo.path("minilm/1")).unwrap();
    repo.write_config(
        "minilm",
        "max_batch_size = 32\n[dynamic_batching]\nmax_queue_delay = \"300ms\"\nmax_batch_tokens = 40\n",
    );
    let server = start(common::config(&repo.dir)).await;
    let app = server.app.clone();
    let loaded = app.store.resolve("minilm", None).unwrap();
    let tokens: Vec<usize> = TEXTS
        .iter()
        .map(|t| {
            loaded
                .backend
                .sequence_length(&[Tensor::new(
                    "text",
                    vec![1],
                    TensorData::Bytes(vec![t.as_bytes().to_vec()]),
                )])
                .unwrap()
        })
        .collect();

    let clients: Vec<_> = TEXTS
        .iter()
        .map(|text| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]});
                let answer = post(&app, "/v2/models/minilm/infer", body).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
                let data = answer.json()["outputs"][0]["data"].clone();
                data.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<f32>>()
            })
        })
        .collect();
    for (text, client) in TEXTS.iter().zip(clients) {
        let served = client.await.unwrap();
        let alone = loaded
            .backend
            .infer(
                vec![Tensor::new(
                    "text",
                    vec![1],
                    TensorData::Bytes(vec![text.as_bytes().to_vec()]),
                )],
                &[],
            )
            .unwrap();
        let TensorData::Fp32(expected) = &alone[0].data else {
            panic!()
        };
        let dot: f32 = served.iter().zip(expected).map(|(a, b)| a * b).sum();
        assert!(
            dot > 0.99999,
            "{text:?}: batched embedding differs from alone (cos {dot})"
        );
    }
    let stats = get(&app, "/v2/models/minilm/stats").await.json()["model_stats"][0].clone();
    let executions = stats["execution_count"].as_u64().unwrap();
    assert!(
        executions < 12,
        "12 texts ran as {executions} executions: no batching"
    );
    // With at least `shortest` tokens a row, a batch within 40 padded tokens has at most
    // 40 / shortest rows.
    let shortest = *tokens.iter().min().unwrap();
    for batch in stats["batch_stats"].as_array().unwrap() {
        let rows = batch["batch_size"].as_u64().unwrap() as usize;
        assert!(
            rows * shortest <= 40,
            "a batch of {rows} rows of ≥ {shortest} tokens exceeds the 40-token budget"
        );
    }
    let bad = post(
        &app,
        "/v2/models/minilm/infer",
        json!({"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.error()
            .contains("input 'text' has shape [1, 1], but the model expects [-1]"),
        "{}",
        bad.error()
    );
}
