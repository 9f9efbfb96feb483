"""Starts the real `weir serve` and `weir registry` binaries on free loopback ports for the
interop tests, with the registry on SQLite or on a fresh database of the PostgreSQL server that
`make test` starts (`WEIR_TEST_POSTGRES_URL`)."""
import itertools
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "target" / "test-models"
TEXT_MODELS = ROOT / "target" / "text-models"


def weir_binary():
    binary = pathlib.Path(os.environ.get("WEIR_BIN", ROOT / "target" / "debug" / "weir"))
    assert binary.is_file(), f"{binary} is missing: run `cargo build --bin weir` (make test does)"
    return binary


def wait_until_ok(url, process, seconds):
    """Polls `url` until it answers 200; fails when `process` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"{url}: the server exited with {process.returncode}")
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 within {seconds} s")


class Server:
    # The test repository holds a deliberately broken model, so the interop servers run as
    # Triton does with --strict-readiness false: ready once the repository has been read.
    def __init__(self, *extra_args, repository=MODELS):
        assert repository.is_dir(), f"{repository} is missing: run `make setup`"
        self.process = subprocess.Popen(
            [str(weir_binary()), "serve", "--model-repository", str(repository), "--http-port", "0",
             "--strict-readiness", "false", *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline()
        match = re.search(r"listening on http://([\d.]+:\d+)", line)
        assert match, f"unexpected first line from weir serve: {line!r}"
        self.address = match.group(1)
        self.url = f"http://{self.address}"
        wait_until_ok(f"{self.url}/v2/health/ready", self.process, 30)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def server():
    running = Server("--max-body-bytes", str(1 << 20))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def text_server():
    running = Server(repository=TEXT_MODELS)
    yield running
    running.stop()


# The storage engines every registry test runs against.
DATABASES = ["sqlite", "postgres"]
_created_databases = []
_serial = itertools.count()


def database_url(kind, folder):
    """A fresh, empty database of the given kind for one registry."""
    if kind == "sqlite":
        return f"sqlite://{folder}/registry.db"
    admin = os.environ.get("WEIR_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("WEIR_REQUIRE_POSTGRES") == "1":
            pytest.fail("WEIR_REQUIRE_POSTGRES=1 but WEIR_TEST_POSTGRES_URL is not set")
        pytest.skip("WEIR_TEST_POSTGRES_URL is not set (scripts/postgres.sh prints it)")
    name = f"weir_py_{os.getpid()}_{next(_serial)}"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    _created_databases.append((admin, name))
    # Over verified TLS, as a production registry reaches a managed PostgreSQL: the test
    # server's certificate comes from the CA scripts/postgres.sh keeps beside it.
    certificate = subprocess.run(
        ["psql", admin, "-Atqc", "show ssl_cert_file"], check=True, capture_output=True, text=True
    ).stdout.strip()
    ca = pathlib.Path(certificate).with_name("ca.pem")
    return f"{admin.rsplit('/', 1)[0]}/{name}?sslmode=verify-full&sslrootcert={ca}"


@pytest.fixture(scope="session", autouse=True)
def drop_test_databases():
    yield
    for admin, name in _created_databases:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


# Where a registry keeps artifacts: a local folder, or a fresh prefix of the bucket on the
# S3-compatible server (Garage) that `make test` starts (`eval "$(scripts/s3.sh)"`).
ARTIFACT_STORES = ["folder", "s3"]
# The combinations the registry, tracking and training suites run against.
STORES = ["sqlite", "postgres", "postgres+s3"]


def s3_bucket():
    """The test bucket, or a skip (a failure under WEIR_REQUIRE_S3=1) when no S3 server is set up."""
    bucket = os.environ.get("WEIR_TEST_S3_BUCKET")
    if not bucket or not os.environ.get("AWS_ENDPOINT_URL"):
        if os.environ.get("WEIR_REQUIRE_S3") == "1":
            pytest.fail("WEIR_REQUIRE_S3=1 but WEIR_TEST_S3_BUCKET / AWS_ENDPOINT_URL are not set")
        pytest.skip("no S3 server: run `eval \"$(scripts/s3.sh)\"` first")
    return bucket


def artifacts_location(kind, folder):
    """A fresh, empty artifact store of the given kind for one registry."""
    if kind == "folder":
        return f"{folder}/artifacts"
    return f"s3://{s3_bucket()}/py-{os.getpid()}-{next(_serial)}-{time.time_ns()}"


def store_locations(kind, folder):
    """(database URL, artifact location) for one of STORES."""
    database, _, artifacts = kind.partition("+")
    return database_url(database, folder), artifacts_location(artifacts or "folder", folder)


class Registry:
    """A `weir registry` process; `url` is where it listens. `artifacts` is a folder or an
    s3:// location (default: `<folder>/artifacts`)."""

    def __init__(self, db_url, folder, *extra_args, artifacts=None):
        self.artifacts = artifacts or f"{folder}/artifacts"
        self.process = subprocess.Popen(
            [str(weir_binary()), "registry", "--db", db_url, "--artifacts", self.artifacts, "--http-port", "0", *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline()
        match = re.search(r"listening on (http://[\d.]+:\d+)", line)
        assert match, f"unexpected first line from weir registry: {line!r}"
        self.url = match.group(1)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class MlflowServer:
    """MLflow's own tracking server and registry (`mlflow server` from PyPI, which set-up puts in
    target/mlflow-venv), on SQLite, serving artifacts from a folder."""

    def __init__(self, folder):
        binary = ROOT / "target" / "mlflow-venv" / "bin" / "mlflow"
        assert binary.is_file(), f"{binary} is missing: run `make setup`"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(binary), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--artifacts-destination", f"{folder}/artifacts"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            wait_until_ok(f"{self.url}/health", self.process, 90)
        except AssertionError:
            self.stop()
            raise

    def stop(self):
        # The server runs worker processes; the whole group goes.
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium (/usr/bin/chromium), headless, driven by Playwright for the dashboard's
    browser tests; never a downloaded browser build (`playwright install` is never run)."""
    from playwright.sync_api import sync_playwright

    from dashboard_browser import launch

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()
