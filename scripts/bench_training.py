"""Training benchmark: `weir train` (candle, AdamW) against scikit-learn's MLPClassifier (numpy,
Adam) on the same generated table, same network, epochs, batch size and learning rate, one
after the other on this machine; then `weir train` again recording a tracking run on a local
`weir registry`, to show what tracking costs.

Each side's wall time covers reading the CSV, standardising, holding out 20% stratified, and
training; the rate is training rows × epochs per second. Prints a table and writes JSON.
Everything talks to 127.0.0.1 only and stops by itself.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def weir_train(weir, csv, out, args, extra=()):
    command = [weir, "train", "--data", str(csv), "--target", "label", "--out", str(out), "--output", "json", *args, *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"weir train failed: {result.stderr}")
    return elapsed, json.loads(result.stdout)


def sklearn_train(csv, hidden, epochs, batch, lr, seed):
    started = time.perf_counter()
    frame = pd.read_csv(csv)
    x = frame.drop(columns=["label"]).to_numpy(dtype=np.float32)
    y = frame["label"].to_numpy()
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    model = MLPClassifier(
        hidden_layer_sizes=hidden, solver="adam", batch_size=batch, learning_rate_init=lr,
        max_iter=epochs, shuffle=True, random_state=seed, alpha=0.0,
        tol=0.0, n_iter_no_change=epochs + 1, early_stopping=False,
    )
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": the epoch count is the point
        model.fit(scaler.transform(x_train), y_train)
    accuracy = model.score(scaler.transform(x_val), y_val)
    return time.perf_counter() - started, accuracy, len(y_train)


def start_registry(weir, folder):
    process = subprocess.Popen(
        [weir, "registry", "--db", f"sqlite://{folder}/r.db", "--artifacts", f"{folder}/artifacts", "--http-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    match = re.search(r"listening on (http://[\d.]+:\d+)", process.stdout.readline())
    if not match:
        process.kill()
        sys.exit("weir registry did not start")
    return process, match.group(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weir", default="target/release/weir")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--hidden", default="64,64")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="target/bench-training.json")
    args = parser.parse_args()

    folder = pathlib.Path(tempfile.mkdtemp(prefix="weir-bench-training-"))
    x, y = make_classification(
        n_samples=args.rows, n_features=args.features, n_informative=args.features // 2,
        n_classes=args.classes, n_clusters_per_class=2, class_sep=1.0, random_state=args.seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(args.features)])
    frame["label"] = [f"class_{c}" for c in y]
    csv = folder / "data.csv"
    frame.to_csv(csv, index=False, float_format="%.6f")

    hidden = tuple(int(h) for h in args.hidden.split(","))
    common = [
        "--model", "mlp", "--hidden", args.hidden, "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
    ]
    weir_seconds, weir_summary = weir_train(args.weir, csv, folder / "model", common)
    sk_seconds, sk_accuracy, train_rows = sklearn_train(csv, hidden, args.epochs, args.batch_size, args.lr, args.seed)
    registry, url = start_registry(args.weir, folder)
    try:
        tracked_seconds, tracked_summary = weir_train(
            args.weir, csv, folder / "tracked", common,
            ["--tracking-uri", url, "--experiment", "bench", "--register", "bench"],
        )
    finally:
        registry.terminate()
        registry.wait(timeout=10)

    rate = lambda seconds: train_rows * args.epochs / seconds
    rows = [
        ("weir train (candle, AdamW)", weir_seconds, weir_summary["metrics"]["val_accuracy"]),
        ("scikit-learn MLPClassifier (Adam)", sk_seconds, sk_accuracy),
        ("weir train + tracking + register", tracked_seconds, tracked_summary["metrics"]["val_accuracy"]),
    ]
    print(f"{args.rows} rows x {args.features} features, {args.classes} classes; mlp {args.hidden}, "
          f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}; {train_rows} training rows")
    print(f"{'':36} {'wall s':>8} {'rows x epochs/s':>16} {'val accuracy':>13}")
    for name, seconds, accuracy in rows:
        print(f"{name:36} {seconds:8.2f} {rate(seconds):16,.0f} {accuracy:13.4f}")
    print(f"weir vs scikit-learn: {sk_seconds / weir_seconds:.2f}x the speed; "
          f"tracking and registration add {tracked_seconds - weir_seconds:+.2f} s")
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps({
        "config": vars(args), "train_rows": train_rows,
        "results": [{"name": n, "seconds": s, "rows_epochs_per_second": rate(s), "val_accuracy": a} for n, s, a in rows],
    }, indent=2))


if __name__ == "__main__":
    main()
