//! Adapters for the ports.

pub mod apigw;
pub mod dynamodb;
pub mod dynamodb_parties;
pub mod gamelift;
pub mod memory;
pub mod memory_parties;
