//! Integration tests of the receiver over real sockets, real TLS and real SQLite files.

mod auth;
mod challenge;
#[path = "../common/mod.rs"]
mod common;
mod core;
mod limits;
mod payloads;
mod support;
