//! Compiles proto/ with protoc (scripts/setup.sh installs it) into the messages, the
//! service trait, the client, and a file descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from("../../proto");
    let file = proto_root.join("segstream/v1/segstream.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("segstream_v1_descriptor.bin"))
        .compile_protos(&[file], &[proto_root])?;
    Ok(())
}
