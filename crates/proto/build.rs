//! Generates the `shopcall.v1` messages, the tonic server and client, and a file descriptor
//! set for server reflection, from `proto/shopcall/v1/shopcall.proto` at the workspace root.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system protoc.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let proto_file = proto_root.join("shopcall/v1/shopcall.proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let protoc_include = protoc_bin_vendored::include_path()?;

    println!("cargo:rerun-if-changed={}", proto_file.display());

    // The vendored protoc goes in through the prost config: no PROTOC variable, no system one.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("shopcall_v1_descriptor.bin"))
        .compile_with_config(config, &[proto_file], &[proto_root, protoc_include])?;
    Ok(())
}
