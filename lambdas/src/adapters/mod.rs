//! Adapters for the ports.

pub mod memory;
