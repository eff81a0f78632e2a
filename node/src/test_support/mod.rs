//! What the node's unit tests share: a JVM to test against ([`jvm`]) and
//! an ELF writer ([`elf`]). Compiled for tests only.
pub mod elf;
pub mod jvm;
