//! The handlers: plain async functions over [`Deps`]; [`crate::routes`] says which serves which route.

mod actions;
mod backstop;
mod connection;
mod events;
mod parties;

pub use actions::{accept, cancel, default_route, matchmake, ping, status};
pub(crate) use actions::{error_code, push_error};
pub use backstop::{BackstopReport, MAX_TICKETS_PER_RUN, backstop, event_from};
pub use connection::{connect, disconnect};
pub use events::{EventOrigin, apply_event, events};
pub use parties::{create_party, join_party, kick_from_party, leave_party, set_ready};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use matchgate_protocol::Push;

use crate::ports::{PushError, Role};
use crate::{Deps, HandlerError};

/// Who sent a request: only ever taken from the authorizer's context, never from a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub connection_id: String,
    pub player_id: String,
    pub role: Role,
}

impl Caller {
    /// Reads the caller from the request context. API Gateway puts a Lambda authorizer's
    /// `context` map flat into `requestContext.authorizer` on every route of the connection.
    pub fn from_request(req: &ApiGatewayWebsocketProxyRequest) -> Result<Self, HandlerError> {
        let ctx = &req.request_context;
        let connection_id = ctx.connection_id.clone().ok_or(HandlerError::BadEvent("no connectionId".into()))?;
        let auth = &ctx.authorizer;
        let field = |name: &str| auth.fields.get(name).and_then(|v| v.as_str());
        let player_id = field("playerId").filter(|p| !p.is_empty()).ok_or(HandlerError::Unauthenticated)?.to_owned();
        let role = field("role").and_then(Role::parse).unwrap_or(Role::Player);
        Ok(Self { connection_id, player_id, role })
    }
}

/// The `{statusCode: 200}` every route answers with; pushes go through @connections.
pub fn ok() -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = 200;
    response
}

/// Sends one push to one connection. A gone connection's records are deleted, unless it connected
/// so recently that it may still be in its handshake (see `Settings::connect_settle`); the push is
/// not retried here because every result also stays on its ticket for `status`.
pub(crate) async fn push_to(
    deps: &Deps,
    connection_id: &str,
    player_id: &str,
    push: &Push,
) -> Result<(), HandlerError> {
    match deps.pusher.post_to_connection(connection_id, push.to_frame().as_bytes()).await {
        Ok(()) => Ok(()),
        Err(PushError::Gone) => {
            let now = deps.clock.now_ms();
            if let Some(connection) = deps.connections.get(connection_id, now).await?
                && now - connection.connected_at < deps.settings.connect_settle.as_millis() as i64
            {
                tracing::debug!(connection_id, player_id, "410 from a connection still in its handshake; kept");
                return Ok(());
            }
            tracing::debug!(connection_id, player_id, "connection gone; removing it");
            deps.connections.delete(connection_id).await?;
            deps.players.clear_connection(player_id, connection_id).await?;
            Ok(())
        }
        Err(e) => {
            tracing::warn!(connection_id, player_id, error = %e, "push not delivered; the result stays on the ticket");
            Ok(())
        }
    }
}

/// Sends one push to a player's current connection, if the player has one.
pub(crate) async fn push_to_player(deps: &Deps, player_id: &str, push: &Push) -> Result<(), HandlerError> {
    let Some(player) = deps.players.get(player_id).await? else { return Ok(()) };
    let Some(connection_id) = player.connection_id else { return Ok(()) };
    push_to(deps, &connection_id, player_id, push).await
}
