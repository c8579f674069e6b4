//! Errors at the handler boundary.

use matchgate_protocol::ClientAction;

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

impl HandlerError {
    /// The `errorType` Lambda reports for this error: a stable name to alarm and search on,
    /// rather than the Rust type path the runtime would use by default.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthenticated",
            Self::BadEvent(_) => "BadEvent",
            Self::Store(_) => "StoreError",
            Self::Matchmaker(_) => "MatchmakerError",
            Self::Push(_) => "PushError",
        }
    }
}

/// How a failed invocation reaches the Lambda runtime (its `errorType` and `errorMessage`).
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        Self { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

/// A route's handler got another action than the one it serves: the API's routes and
/// functions do not match (API Gateway selects the route by the very `action` parsed here).
pub(crate) fn unexpected_action(route_key: &str, action: &ClientAction) -> HandlerError {
    HandlerError::BadEvent(format!("the {route_key:?} route got a {:?} action", action.route_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lambda_error_names_its_kind_and_says_what_failed() {
        let diagnostic = lambda_runtime::Diagnostic::from(HandlerError::Store(StoreError::Unavailable("down".into())));
        assert_eq!(diagnostic.error_type, "StoreError");
        assert!(diagnostic.error_message.contains("down"), "{}", diagnostic.error_message);
        let diagnostic = lambda_runtime::Diagnostic::from(HandlerError::Unauthenticated);
        assert_eq!(diagnostic.error_type, "Unauthenticated");
    }
}
