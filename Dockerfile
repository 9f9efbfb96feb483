# syntax=docker/dockerfile:1.7
# The image the Helm chart runs: the `weir` binary and the ONNX Runtime library it loads.
# Build (BuildKit): docker build -t weir:0.1.0 .
#
# Base images are pinned to exact releases; a release pipeline that can reach the registry should
# pin them further by digest (`image@sha256:…`). Only the sources are sent as build context
# (.dockerignore), and dependencies compile once into BuildKit cache mounts, so a source change
# rebuilds weir's own crates only.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.12-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bin weir \
 && cp target/release/weir /weir

# ONNX Runtime's shared library comes from its PyPI wheel, as on a developer machine; pip checks
# the wheel against the sha256 recorded here before anything is unpacked.
FROM ${PYTHON_IMAGE} AS onnxruntime
RUN printf 'onnxruntime==1.32.0 --hash=sha256:5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d\n' > /ort.txt \
 && pip download --require-hashes --no-deps --only-binary=:all: -d /wheel -r /ort.txt \
 && python -m zipfile -e /wheel/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl /ort \
 && cp /ort/onnxruntime/capi/libonnxruntime.so.1.32.0 /libonnxruntime.so

# What the binary and the library link against (checked by tests/python/test_dockerfile.py with
# ldd): glibc, libgcc_s and libm are in the base image; libstdc++ is ONNX Runtime's and is
# installed by name rather than trusted to arrive with apt; ca-certificates for HTTPS and TLS to
# PostgreSQL and S3.
FROM ${RUNTIME_IMAGE}
# Package versions are not pinned (DL3008): a Debian stable point release replaces them with
# security fixes and drops the old ones, so a pin breaks the build; the base image fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /weir /usr/local/bin/weir
COPY --from=onnxruntime /libonnxruntime.so /usr/local/lib/libonnxruntime.so
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so
# Non-root, matching the chart's securityContext; the root filesystem can be read-only.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--help"]
