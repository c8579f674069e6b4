//! matchgate's product logic as it runs in AWS Lambda.
//!
//! Handlers are plain async functions over narrow [`ports`]; adapters implement the ports for
//! the in-memory local stack and (later) for DynamoDB, GameLift and the API Gateway Management
//! API. The gateway and the Lambda binaries wire them together in exactly one place each.

pub mod adapters;
pub mod authorizer;
pub mod deps;
pub mod error;
pub mod handlers;
pub mod ports;
pub mod routes;
pub mod runtime;

pub use deps::{Deps, Settings};
pub use error::HandlerError;
