//! Adapters for the ports.

pub mod apigw;
pub mod dynamodb;
pub mod gamelift;
pub mod memory;
