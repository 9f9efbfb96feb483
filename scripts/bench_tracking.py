"""Tracking benchmark: the same official-mlflow-client workload against `weir registry` and
against `mlflow server`, both on SQLite, one after the other on this machine; with `--postgres
ADMIN_URL`, both on fresh databases of that PostgreSQL server instead, weir twice: with a pool of
one connection and with its default pool (`--db-pool-size`).

1. Ingestion: RUNS runs x METRICS metrics x STEPS steps as `runs/log-batch` calls of 1,000
   points (the client's own batch limit), from THREADS threads, twice: through the official
   `MlflowClient.log_batch`, and as the same JSON bodies sent over keep-alive HTTP connections
   (what the server itself sustains, without the client's per-metric Python work).
2. Search: SEARCH_RUNS runs (two metrics, a param and a tag each) in one experiment, then
   `runs/search` with a metric filter and a metric order, 1,000 results per page, median of
   REPEAT, again both through the official client and as raw requests.

Everything talks to 127.0.0.1 only and stops by itself. Prints a table and writes JSON.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import pathlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from mlflow import MlflowClient
from mlflow.entities import Metric


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy in {seconds} s")


def fresh_database(admin, name):
    """A new, empty database on the PostgreSQL server at `admin`; its URL."""
    subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True, capture_output=True)
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def start_weir(binary, folder, database=None, pool_size=None):
    extra = ["--db-pool-size", str(pool_size)] if pool_size else []
    process = subprocess.Popen(
        [binary, "registry", "--db", database or f"sqlite://{folder}/weir.db", "--artifacts", f"{folder}/artifacts",
         "--http-port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = re.search(r"listening on (http://[\d.]+:\d+)", process.stdout.readline()).group(1)
    wait_ready(url, process)
    return process, url


def start_mlflow(mlflow_bin, folder, database=None):
    port = free_port()
    # SQLAlchemy names the driver in the scheme.
    backend = database.replace("postgres://", "postgresql+psycopg2://", 1) if database else f"sqlite:///{folder}/mlflow.db"
    process = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", backend,
         "--artifacts-destination", f"{folder}/artifacts", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, seconds=300)
    return process, url


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


class Raw:
    """MLflow REST calls with pre-built JSON bodies on a keep-alive connection."""

    def __init__(self, url):
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=300)

    def post(self, path, body):
        self.connection.request("POST", f"/api/2.0/mlflow/{path}", body=body, headers={"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path}: {answer.status} {data[:200]!r}")
        return data


def points(args):
    return [
        {"key": f"metric_{m}", "value": (m * 31 + s) % 97 / 97.0, "timestamp": 1_700_000_000_000 + s, "step": s}
        for m in range(args.metrics)
        for s in range(args.steps)
    ]


def ingest_raw(url, args):
    setup = Raw(url)
    experiment_id = json.loads(setup.post("experiments/create", json.dumps({"name": f"raw-{time.time_ns()}"})))["experiment_id"]
    bodies = []
    for run_index in range(args.runs):
        created = setup.post("runs/create", json.dumps({"experiment_id": experiment_id, "run_name": f"run-{run_index}"}))
        run_id = json.loads(created)["run"]["info"]["run_id"]
        all_points = points(args)
        bodies.extend(json.dumps({"run_id": run_id, "metrics": all_points[i:i + 1000]}) for i in range(0, len(all_points), 1000))

    def send(share):
        raw = Raw(url)
        for body in share:
            raw.post("runs/log-batch", body)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(send, [bodies[i::args.threads] for i in range(args.threads)]))
    elapsed = time.perf_counter() - started
    total = args.runs * args.metrics * args.steps
    return {"points": total, "seconds": elapsed, "points_per_second": total / elapsed}


def ingest(client, args):
    experiment_id = client.create_experiment(f"ingest-{time.time_ns()}")
    batches = []
    for run_index in range(args.runs):
        run_id = client.create_run(experiment_id, run_name=f"run-{run_index}").info.run_id
        points = [
            Metric(f"metric_{m}", (m * 31 + s) % 97 / 97.0, 1_700_000_000_000 + s, s)
            for m in range(args.metrics)
            for s in range(args.steps)
        ]
        batches.extend((run_id, points[i:i + 1000]) for i in range(0, len(points), 1000))
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(lambda batch: client.log_batch(batch[0], metrics=batch[1]), batches))
    elapsed = time.perf_counter() - started
    total = args.runs * args.metrics * args.steps
    return {"points": total, "seconds": elapsed, "points_per_second": total / elapsed}


def populate(url, args):
    """SEARCH_RUNS runs, each created and logged to with two raw calls (as the client would)."""
    experiment_id = json.loads(Raw(url).post("experiments/create", json.dumps({"name": f"search-{time.time_ns()}"})))["experiment_id"]

    def share(indices):
        raw = Raw(url)
        for index in indices:
            created = raw.post("runs/create", json.dumps({"experiment_id": experiment_id, "run_name": f"r{index}"}))
            raw.post("runs/log-batch", json.dumps({
                "run_id": json.loads(created)["run"]["info"]["run_id"],
                "metrics": [
                    {"key": "accuracy", "value": (index * 7919 % 10_000) / 10_000, "timestamp": 0, "step": 0},
                    {"key": "loss", "value": 1 / (index + 1), "timestamp": 0, "step": 0},
                ],
                "params": [{"key": "depth", "value": str(index % 10)}],
                "tags": [{"key": "team", "value": "a" if index % 2 else "b"}],
            }))

    started = time.perf_counter()
    indices = list(range(args.search_runs))
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(share, [indices[i::args.threads] for i in range(args.threads)]))
    return experiment_id, time.perf_counter() - started


ORDER = ["metrics.accuracy DESC"]


def search(url, client, experiment_id, args, filter_string):
    raw = Raw(url)
    body = json.dumps({"experiment_ids": [experiment_id], "filter": filter_string, "run_view_type": "ACTIVE_ONLY", "max_results": 1000, "order_by": ORDER})
    raw_timings, client_timings, found = [], [], 0
    for _ in range(args.repeat):
        started = time.perf_counter()
        answer = raw.post("runs/search", body)
        raw_timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=ORDER, max_results=1000)
        client_timings.append(time.perf_counter() - started)
        found = len(page)
        assert len(json.loads(answer).get("runs", [])) == found
    return {
        "filter": filter_string,
        "results": found,
        "raw_median_seconds": statistics.median(raw_timings),
        "client_median_seconds": statistics.median(client_timings),
        "first_ids": [r.info.run_name for r in page[:20]],
    }


def measure(name, url, args):
    client = MlflowClient(tracking_uri=url)
    result = {"server": name}
    print(f"[{name}] ingesting {args.runs * args.metrics * args.steps:,} points, raw then through the client", file=sys.stderr)
    result["ingest_raw"] = ingest_raw(url, args)
    result["ingest_client"] = ingest(client, args)
    print(f"[{name}] creating {args.search_runs:,} runs for search", file=sys.stderr)
    experiment_id, populate_seconds = populate(url, args)
    result["populate_seconds"] = populate_seconds
    result["search_metric"] = search(url, client, experiment_id, args, "metrics.accuracy > 0.5")
    result["search_param"] = search(url, client, experiment_id, args, "params.depth = '3' and tags.team = 'a'")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", required=True, help="the weir binary (release build)")
    parser.add_argument("--mlflow", required=True, help="the `mlflow` command of a venv with mlflow installed")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--metrics", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--search-runs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (scripts/postgres.sh prints one): run on it instead of SQLite")
    parser.add_argument("--json", default="target/bench-tracking.json")
    args = parser.parse_args()

    servers = [("weir", lambda f, db: start_weir(args.weir, f, db))]
    if args.postgres:
        servers = [("weir pool=1", lambda f, db: start_weir(args.weir, f, db, pool_size=1)),
                   ("weir pool=8", lambda f, db: start_weir(args.weir, f, db, pool_size=8))]
    servers.append(("mlflow server", lambda f, db: start_mlflow(args.mlflow, f, db)))
    results = []
    for index, (name, start) in enumerate(servers):
        folder = tempfile.mkdtemp(prefix="bench-tracking-")
        database = fresh_database(args.postgres, f"bench_tracking_{index}") if args.postgres else None
        process, url = start(folder, database)
        try:
            results.append(measure(name, url, args))
        finally:
            stop(process)

    mlflow = results[-1]
    print(f"\nworkload on {'PostgreSQL' if args.postgres else 'SQLite'}: {args.runs} runs x {args.metrics} metrics x {args.steps} steps "
          f"via log_batch, {args.threads} client threads; search over {args.search_runs:,} runs, median of {args.repeat}")
    print(f"{'':38}" + "".join(f"{r['server']:>16}" for r in results) + "".join(f"{'ratio ' + r['server'].removeprefix('weir '):>14}" for r in results[:-1]))
    rows = [
        ("ingest, raw (points/s)", lambda r: r["ingest_raw"]["points_per_second"], True),
        ("ingest, client (points/s)", lambda r: r["ingest_client"]["points_per_second"], True),
        ("create+log a run, raw (runs/s)", lambda r: args.search_runs / r["populate_seconds"], True),
    ]
    for key, label in [("search_metric", "metric filter"), ("search_param", "param+tag filter")]:
        for mode in ["raw", "client"]:
            rows.append((f"search {label}, {mode} (ms)", lambda r, k=key, m=mode: r[k][f"{m}_median_seconds"] * 1000, False))
    for label, value, higher_is_better in rows:
        values = [value(r) for r in results]
        ratios = [(v / values[-1]) if higher_is_better else (values[-1] / v) for v in values[:-1]]
        print(f"{label:38}" + "".join(f"{v:>16,.1f}" for v in values) + "".join(f"{x:>13.1f}x" for x in ratios))
    for result in results[:-1]:
        for key in ["search_metric", "search_param"]:
            assert result[key]["results"] == mlflow[key]["results"], f"{key}: {result['server']} found different runs"
            assert result[key]["first_ids"] == mlflow[key]["first_ids"], f"{key}: {result['server']} ordered differently"
    pathlib.Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
