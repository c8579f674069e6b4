//! `$connect` and `$disconnect`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{Caller, ok};
use crate::authorizer;
use crate::ports::{ConnectionRecord, StoreError};

/// How often marking a ticket abandoned is retried after losing a write race.
const MAX_MARK_ATTEMPTS: usize = 8;
use crate::{Deps, HandlerError};

/// Records connection → player and player → connection. Never posts to the new connection:
/// API Gateway answers 410 for a connection whose `$connect` has not returned yet.
pub async fn connect(
    req: ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let caller = Caller::from_request(&req)?;
    let now = deps.clock.now_ms();
    let connected_at = if req.request_context.connected_at > 0 { req.request_context.connected_at } else { now };
    deps.connections
        .put(&ConnectionRecord {
            connection_id: caller.connection_id.clone(),
            player_id: caller.player_id.clone(),
            role: caller.role,
            connected_at,
            expires_at: (now + deps.settings.connection_ttl.as_millis() as i64) / 1000,
        })
        .await?;
    if deps.players.set_connection(&caller.player_id, &caller.connection_id, connected_at).await? {
        tracing::info!(connection_id = caller.connection_id, player_id = caller.player_id, "connected");
        // A party member back within the disconnect grace keeps their place. The connection is
        // accepted whatever happens here: the party only misses the news that they are back.
        if let Err(e) = super::parties::presence_changed(deps, &caller.player_id, false).await {
            tracing::warn!(player_id = caller.player_id, error = %e, "party not told the member is back");
        }
    } else {
        // Two reconnects raced and this is the older one: the newer stays the player's current.
        tracing::info!(
            connection_id = caller.connection_id,
            player_id = caller.player_id,
            "connected (a newer connection of the player is current)"
        );
    }
    let mut response = ok();
    // A browser that offered subprotocols (the token travels in one) drops the connection
    // unless the server selects one of them; API Gateway selects what `$connect` answers.
    let offered = authorizer::offered_subprotocols(&req.headers, &req.multi_value_headers);
    if let Some(selected) = authorizer::select_subprotocol(offered.as_deref())
        && let Ok(value) = http::HeaderValue::from_str(&selected)
    {
        response.headers.insert("Sec-WebSocket-Protocol", value);
    }
    Ok(response)
}

/// Forgets the connection. `$disconnect` is best-effort in AWS, so nothing else depends on it:
/// a push to a connection that vanished without one gets 410 and cleans up the same way.
pub async fn disconnect(
    req: ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let caller = Caller::from_request(&req)?;
    deps.connections.delete(&caller.connection_id).await?;
    let was_current = deps.players.clear_connection(&caller.player_id, &caller.connection_id).await?;
    tracing::info!(
        connection_id = caller.connection_id,
        player_id = caller.player_id,
        status = req.request_context.disconnect_status_code,
        "disconnected"
    );
    // A player who reconnected already has a newer connection: their ticket carries on.
    if was_current {
        player_left(deps, &caller.player_id).await?;
        super::parties::presence_changed(deps, &caller.player_id, true).await?;
    }
    Ok(ok())
}

/// The player's last connection is gone while a ticket may be live: stop it now, or (with a
/// disconnect grace) mark it so the backstop stops it once the grace has passed and the player
/// has not come back.
async fn player_left(deps: &Deps, player_id: &str) -> Result<(), HandlerError> {
    let Some(player) = deps.players.get(player_id).await? else { return Ok(()) };
    let Some(ticket_id) = player.active_ticket_id else { return Ok(()) };
    // Read, mark, write conditionally; a lost race (an event or the backstop wrote the ticket
    // meanwhile) is retried, because the backstop only stops tickets marked here.
    for _ in 0..MAX_MARK_ATTEMPTS {
        let now = deps.clock.now_ms();
        let Some(ticket) = deps.tickets.get(&ticket_id, now).await? else { return Ok(()) };
        if ticket.state.status.is_terminal() {
            return Ok(());
        }
        if deps.settings.disconnect_grace.is_zero() {
            tracing::info!(player_id, ticket_id, "player left while matchmaking; stopping the ticket");
            if let Err(e) = deps.matchmaker.stop_matchmaking(&ticket_id).await {
                tracing::warn!(ticket_id, error = %e, "StopMatchmaking failed");
            }
            return Ok(());
        }
        let mut marked = ticket.clone();
        marked.disconnected_at = Some(now);
        marked.version += 1;
        marked.backstop_due_at = Some(super::events::next_backstop(deps, &marked, now));
        match deps.tickets.replace(&marked, ticket.version).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::ConditionFailed.into())
}
