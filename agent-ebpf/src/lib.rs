//! Empty on purpose: the programs are the `agent-ebpf` binary (see `main.rs`).
//! This library target lets `agent` take a build-dependency on this crate so
//! cargo rebuilds the programs when they change (aya-build's workaround for
//! rust-lang/cargo#12375).
#![no_std]
