# The image the Helm chart runs: the `weir` binary and the ONNX Runtime library it loads.
# Build: docker build -t weir:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin weir

# ONNX Runtime's shared library comes from its PyPI wheel, as on a developer machine.
FROM python:3.11-slim-bookworm AS onnxruntime
RUN pip download --no-deps --only-binary=:all: -d /wheel onnxruntime==1.32.0 \
 && python -m zipfile -e /wheel/onnxruntime-*.whl /ort \
 && cp /ort/onnxruntime/capi/libonnxruntime.so.* /libonnxruntime.so

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
COPY --from=onnxruntime /libonnxruntime.so /usr/local/lib/libonnxruntime.so
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so
# Non-root, matching the chart's securityContext; the root filesystem can be read-only.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--help"]
