//! Tally's wire format, `tally.v1` (see `tally/v1/tally.proto`): the
//! messages agents stream to the collector and the collector's query answers,
//! as prost types, with tonic clients and servers for the `Ingest` and
//! `Query` services.
//!
//! The code is generated at build time by `build.rs` (protox, no `protoc`
//! needed). Without the default feature `grpc` it is the messages alone:
//! prost, no tonic.

/// `package tally.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    #[cfg(feature = "grpc")]
    include!(concat!(env!("OUT_DIR"), "/tally.v1.rs"));
    #[cfg(not(feature = "grpc"))]
    include!(concat!(env!("OUT_DIR"), "/messages/tally.v1.rs"));
}

pub use v1::*;

#[cfg(feature = "grpc")]
pub mod raw;
pub mod received;
#[cfg(feature = "grpc")]
pub mod received_codec;
