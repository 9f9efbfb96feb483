"""Starts the real `weir serve` binary on a free loopback port for the interop tests."""
import os
import pathlib
import re
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


class Server:
    def __init__(self, *extra_args, repository=MODELS):
        assert repository.is_dir(), f"{repository} is missing: run `make setup`"
        self.process = subprocess.Popen(
            [str(weir_binary()), "serve", "--model-repository", str(repository), "--http-port", "0", *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline()
        match = re.search(r"listening on http://([\d.]+:\d+)", line)
        assert match, f"unexpected first line from weir serve: {line!r}"
        self.address = match.group(1)
        self.url = f"http://{self.address}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("weir serve did not become ready within 30 s")

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
