//! matchgate's local cloud: the API Gateway WebSocket emulator with its `@connections` API,
//! FlexMatch with placement and SNS-shaped events, wired to the Lambda handlers.
//!
//! [`stack::Stack`] starts the whole thing on a bound listener, for the `matchgate` binary
//! and for tests alike.

pub mod apigw;
pub mod bench;
pub mod embedded;
pub mod gamelift;
pub mod issuer;
pub mod lab;
pub mod lambda;
pub mod matchmaker;
pub mod players;
pub mod stack;
pub mod template;

/// Epoch milliseconds, for the timestamps API Gateway and FlexMatch put in events.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
