#!/usr/bin/env python3
"""Computes reference sentence embeddings for all-MiniLM-L6-v2 with a plain numpy forward pass
(Hugging Face `tokenizers` + `safetensors`, no torch, nothing of weir), and writes them as the
fixture `models/tests/fixtures/minilm_reference.json` that weir's candle encoder is tested against.

    python scripts/reference_embeddings.py MODEL_DIR OUT.json
"""
import json
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf
from tokenizers import Tokenizer

SENTENCES = [
    "The cat sits outside",
    "The cat plays in the garden",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "weir serves models with canary rollouts.",
    "Привет, мир! 你好世界 — ünïcödé",
    "",
    " ".join(["a very long sentence that goes on"] * 60),  # > 256 tokens: truncated
]


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def encode(weights, config, ids):
    w = lambda name: weights[name].astype(np.float64)  # noqa: E731
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    length = len(ids)
    x = w("embeddings.word_embeddings.weight")[ids] + w("embeddings.position_embeddings.weight")[:length] + w("embeddings.token_type_embeddings.weight")[[0] * length]
    x = layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
    size = x.shape[1] // heads
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        dense = lambda t, name: t @ w(p + name + ".weight").T + w(p + name + ".bias")  # noqa: E731
        split = lambda t: t.reshape(length, heads, size).transpose(1, 0, 2)  # noqa: E731
        q, k, v = (split(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(1, 0, 2).reshape(length, heads * size)
        x = layer_norm(dense(context, "attention.output.dense") + x, w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias"), eps)
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
        x = layer_norm(dense(hidden, "output.dense") + x, w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"), eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    model = pathlib.Path(sys.argv[1])
    config = json.loads((model / "config.json").read_text())
    max_length = json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"]
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    weights = load_file(str(model / "model.safetensors"))
    rows = []
    for sentence in SENTENCES:
        ids = tokenizer.encode(sentence).ids
        rows.append({"text": sentence, "tokens": len(ids), "embedding": [round(float(v), 8) for v in encode(weights, config, ids)]})
    out = pathlib.Path(sys.argv[2])
    out.write_text(json.dumps({"model": "sentence-transformers/all-MiniLM-L6-v2", "made_by": "scripts/reference_embeddings.py", "sentences": rows}, indent=1) + "\n")
    e = {r["text"]: np.array(r["embedding"]) for r in rows}
    print("cos(cat sits, cat plays) =", round(float(e[SENTENCES[0]] @ e[SENTENCES[1]]), 4), "(published 0.6788)")
    print("cos(man food, man bread) =", round(float(e[SENTENCES[2]] @ e[SENTENCES[3]]), 4), "(published 0.7553)")


if __name__ == "__main__":
    main()
