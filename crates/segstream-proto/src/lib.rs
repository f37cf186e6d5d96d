//! The gRPC API (`proto/segstream/v1/segstream.proto`) compiled to Rust. The engine never
//! depends on this crate: the server translates between the two.

/// Package `segstream.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("segstream.v1");

    /// The package's encoded file descriptors, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("segstream_v1_descriptor");
}

pub mod display;
