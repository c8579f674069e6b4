//! What can go wrong, for a game to act on.

use std::time::Duration;

use matchgate_protocol::ErrorCode;

/// Why a client call failed or the client stopped. Every variant says what to do next in its
/// message; none carries a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// `$connect` refused the player (401: no or an expired token; 403: a token that is not
    /// accepted). Reconnecting with the same token cannot help: get a fresh one and connect again.
    #[error("the server refused the connection with HTTP {status}; connect again with a fresh token")]
    Refused { status: u16 },
    /// The first connection failed (the client only retries once it has been connected).
    #[error("could not connect: {0}")]
    Connect(String),
    /// The connection dropped and every reconnect attempt of the backoff failed.
    #[error("gave up after {attempts} reconnect attempts; the last failed with: {last}")]
    GaveUp { attempts: u32, last: String },
    /// The server never answered a `status`: it is not speaking matchgate's protocol, or it is stuck.
    #[error("the server did not answer `status` within {0:?}")]
    StatusTimeout(Duration),
    /// `cancel` or `accept` without a ticket the client knows of.
    #[error("there is no ticket to {0}: matchmake first")]
    NoTicket(&'static str),
    /// The server refused the request (an `Error` push).
    #[error("the server answered {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The client was closed (or its connection task ended).
    #[error("the client is closed")]
    Closed,
}
