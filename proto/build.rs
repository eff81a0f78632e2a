//! Compiles `tally/v1/tally.proto` with protox, a protobuf compiler written
//! in Rust, so that building needs no `protoc` on the machine; tonic-prost-build
//! turns the descriptors into prost messages and tonic clients and servers.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto = root.join("tally/v1/tally.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds.clone())?;
    // The messages alone, for crates that link no gRPC (feature `grpc` off:
    // tally-core converts to and from them without tonic or tokio).
    let messages = PathBuf::from(std::env::var("OUT_DIR")?).join("messages");
    std::fs::create_dir_all(&messages)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&messages)
        .compile_fds(fds)?;

    // The collector's Ingest server, same route and wire format, but taking
    // each report as received bytes plus a partial view decoded from them
    // (see src/received.rs).
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("received");
    std::fs::create_dir_all(&out)?;
    let ingest = tonic_prost_build::manual::Service::builder()
        .name("Ingest")
        .package("tally.v1")
        .method(
            tonic_prost_build::manual::Method::builder()
                .name("stream")
                .route_name("Stream")
                .input_type("crate::received::ReceivedReport")
                .output_type("crate::v1::IngestAck")
                .codec_path("crate::received_codec::ReceivedCodec")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    tonic_prost_build::manual::Builder::new()
        .build_client(false)
        .out_dir(&out)
        .compile(&[ingest]);
    Ok(())
}
