//! matchgate's end-to-end tests, over real sockets, DynamoDB Local and the real Lambda binaries.
//!
//! One test binary rather than one per file: each binary links the whole gateway and the AWS SDKs,
//! so eleven of them cost gigabytes of disk and link time for nothing, and one process shares one
//! DynamoDB Local across every module. Run one module with `cargo test -p matchgate-tests -- auth::`.

mod auth;
mod aws_faithful;
mod conformance;
mod connections_api;
mod delivery;
mod gamelift_api;
mod invoke_api;
mod limits;
mod local_stack;
mod parties;
mod party_conformance;
mod rule_set_lab;
mod template;
mod template_routes;
mod template_stack;
