#!/usr/bin/env python3
"""Reference stack for the MiniLM benchmark: Hugging Face `tokenizers` + a batched numpy/OpenBLAS
forward pass (float32, padded batches with an attention mask) — the same maths as
scripts/reference_embeddings.py, batched. Prints sentences/s at batch 32, bounded in time.

    python scripts/bench_embeddings.py MODEL_DIR [SECONDS]
"""
import json
import pathlib
import sys
import time

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf
from tokenizers import Tokenizer

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_sentences import SENTENCES  # noqa: E402
from reference_embeddings import layer_norm  # noqa: E402


def encode_batch(w, config, ids, mask):
    rows, length = ids.shape
    heads = config["num_attention_heads"]
    eps = config["layer_norm_eps"]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length] + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    size = x.shape[-1] // heads
    bias = ((1.0 - mask[:, None, None, :]) * -1e9).astype(np.float32)
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        dense = lambda t, name: t @ w[p + name + ".weight"].T + w[p + name + ".bias"]  # noqa: E731
        split = lambda t: t.reshape(rows, length, heads, size).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(rows, length, heads * size)
        x = layer_norm(dense(context, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + erf(hidden / np.float32(np.sqrt(2.0))))
        x = layer_norm(dense(hidden, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main():
    model = pathlib.Path(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    config = json.loads((model / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()  # pad to the longest in the batch
    weights = {k: v.astype(np.float32) for k, v in load_file(str(model / "model.safetensors")).items()}
    batch = SENTENCES[:32]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        encodings = tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        encode_batch(weights, config, ids, mask)
        done += len(batch)
    elapsed = time.perf_counter() - started
    print(f"reference (tokenizers + numpy/OpenBLAS, batch 32): {done / elapsed:.0f} sentences/s over {elapsed:.1f} s")


if __name__ == "__main__":
    main()
