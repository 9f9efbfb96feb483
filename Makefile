# The two commands: `make demo` and `make test`. Both set up what is missing first.
SHELL := /bin/bash
PORT ?= 8080

.PHONY: setup demo test lint unit-test python-test bench clean fuzz

setup:
	@scripts/setup.sh

## make demo: build weir, write an example model repository, serve it and show a prediction.
demo: setup
	cargo build --release --bin weir
	@scripts/demo.sh $(PORT)

## make test: formatting, lints, Rust tests, and end-to-end tests with the official clients.
test: setup lint unit-test python-test

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Tests run every store against SQLite and a private PostgreSQL (scripts/postgres.sh starts it);
# WEIR_REQUIRE_POSTGRES makes a missing server a failure rather than a skip.
PG = export WEIR_TEST_POSTGRES_URL=$$(scripts/postgres.sh) WEIR_REQUIRE_POSTGRES=1 &&
# Likewise every artifact test runs against a local folder and a private S3-compatible server
# (Garage, scripts/s3.sh), with the standard AWS_* variables pointing at it.
S3 = eval "$$(scripts/s3.sh)" && export WEIR_REQUIRE_S3=1 &&

# Set-up installs the W3C HTML checker the dashboard's page tests run; its absence is a failure.
unit-test:
	$(PG) $(S3) WEIR_REQUIRE_VNU=1 cargo test --workspace --exclude weir-benches

# The binary is built the way `cargo test` builds it (same features), so nothing is compiled twice.
python-test:
	cargo test --workspace --exclude weir-benches --no-run --quiet
	$(PG) $(S3) .venv/bin/python -m pytest -q tests/python

## make bench: load benchmarks on loopback (see benches/README.md).
bench: setup
	@scripts/bench.sh

clean:
	cargo clean
	rm -rf .venv

## make fuzz: each cargo-fuzz target for FUZZ_SECONDS (default 60), not part of `make test`
## (see fuzz/README.md).
fuzz:
	@scripts/fuzz.sh
