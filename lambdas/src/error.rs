//! Errors at the handler boundary.

use crate::ports::{MatchmakerError, PushError, StoreError};

/// Why a handler could not finish. A handler answers bad client input with an `Error` push and
/// returns `Ok`; these errors are for the infrastructure failing, and end the invocation as a
/// Lambda error would.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the request has no authorizer context with a playerId")]
    Unauthenticated,
    #[error("the event is not what this handler serves: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matchmaker(#[from] MatchmakerError),
    #[error(transparent)]
    Push(#[from] PushError),
}
