//! Tally's wire format, `tally.v1` (see `tally/v1/tally.proto`): the
//! messages agents stream to the collector and the collector's query answers,
//! as prost types, with tonic clients and servers for the `Ingest` and
//! `Query` services.
//!
//! The code is generated at build time by `build.rs` (protox, no `protoc`
//! needed).

/// `package tally.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("tally.v1");
}

pub use v1::*;

pub mod raw;
pub mod received;
