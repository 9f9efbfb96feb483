//! Compiles `proto/*.proto` (the Open Inference Protocol's gRPC service) into Rust at build
//! time. protox parses them in pure Rust, so a build needs no `protoc` binary — nothing to
//! install on a developer machine, in CI or in the image build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/grpc_service.proto", "proto/model_config.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // An input's typed contents (eight lists) made it 312 bytes, and prost grows the list of
        // inputs to four at once: 1,248 bytes, past glibc's per-thread cache (1,032), an
        // arena allocation per request. Boxed, the list is 512 bytes (benches/README.md).
        .boxed(".inference.ModelInferRequest.InferInputTensor.contents")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
