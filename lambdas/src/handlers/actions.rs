//! The client actions' handlers (`matchmake`, `cancel`, `accept`, `status`, `ping`) and `$default`.
//!
//! Each action handler gets its caller and the action already parsed from the frame (see
//! [`crate::routes`]). Bad client input never fails the invocation: it gets an `Error` push and
//! the connection carries on. Only infrastructure failures return `Err`.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use matchgate_protocol::ticket::{TicketState, TicketStatus};
use matchgate_protocol::{ActionError, ClientAction, ErrorCode, Push};

use super::{Caller, ok, push_to, push_to_player};
use crate::error::unexpected_action;
use crate::ports::{MatchmakerError, Player, StartMatchmakingRequest, StoreError, TicketRecord};
use crate::{Deps, HandlerError};

pub(crate) fn error_code(e: &ActionError) -> ErrorCode {
    match e {
        ActionError::MalformedJson => ErrorCode::MalformedJson,
        ActionError::MissingAction | ActionError::UnknownAction(_) => ErrorCode::UnknownAction,
        ActionError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
    }
}

pub(crate) async fn push_error(
    deps: &Deps,
    caller: &Caller,
    code: ErrorCode,
    message: String,
) -> Result<(), HandlerError> {
    push_to(deps, &caller.connection_id, &caller.player_id, &Push::error(code, message)).await
}

/// The same answer for a ticket that does not exist and for another player's: nothing leaks.
async fn push_not_found(deps: &Deps, caller: &Caller) -> Result<(), HandlerError> {
    push_error(deps, caller, ErrorCode::NotFound, "no such ticket".into()).await
}

/// The caller's ticket, or `None` when it is missing, expired, or someone else's.
async fn owned_ticket(deps: &Deps, caller: &Caller, ticket_id: &str) -> Result<Option<TicketRecord>, HandlerError> {
    let ticket = deps.tickets.get(ticket_id, deps.clock.now_ms()).await?;
    Ok(ticket.filter(|t| t.player_ids.contains(&caller.player_id)))
}

/// `$default`: frames that are not JSON or name no route.
pub async fn default_route(
    req: ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let caller = Caller::from_request(&req)?;
    if req.is_base64_encoded {
        let message = "binary frames are not supported: send actions as JSON text frames".to_owned();
        push_error(deps, &caller, ErrorCode::InvalidRequest, message).await?;
        return Ok(ok());
    }
    // Parsing here gives the precise reason (not JSON, no action, unknown action).
    let (code, message) = match ClientAction::parse(req.body.as_deref().unwrap_or_default()) {
        Err(e) => (error_code(&e), e.to_string()),
        Ok(action) => (ErrorCode::UnknownAction, format!("no route for {:?}", action.route_key())),
    };
    push_error(deps, &caller, code, message).await?;
    Ok(ok())
}

/// Answers `Pong` with who the gateway thinks the caller is.
pub async fn ping(caller: Caller, action: ClientAction, deps: &Deps) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::Ping {} = action else { return Err(unexpected_action("ping", &action)) };
    let pong = Push::Pong { connection_id: caller.connection_id.clone(), player_id: caller.player_id.clone() };
    push_to(deps, &caller.connection_id, &caller.player_id, &pong).await?;
    Ok(ok())
}

/// Starts matchmaking for the caller: one live ticket per player. A party member's `matchmake`
/// is the party's (only its leader may start it): one ticket for every member.
pub async fn matchmake(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::Matchmake { latency_in_ms } = action else { return Err(unexpected_action("matchmake", &action)) };
    if let Some(party) = super::parties::current_party(deps, &caller.player_id).await? {
        super::parties::matchmake_party(deps, &caller, &party.party_id, latency_in_ms).await?;
        return Ok(ok());
    }
    let now = deps.clock.now_ms();
    let player = deps.players.get(&caller.player_id).await?.unwrap_or_default();
    if let Some(live) = live_ticket(deps, player.active_ticket_id.as_deref(), now).await? {
        return conflict(deps, &caller, live).await;
    }
    let ticket_id = format!("ticket-{}", uuid::Uuid::new_v4());
    match deps.players.claim_ticket(&caller.player_id, player.active_ticket_id.as_deref(), &ticket_id).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            let player = deps.players.get(&caller.player_id).await?.unwrap_or_default();
            // A retried write whose first attempt went through finds its own claim: carry on.
            if player.active_ticket_id.as_deref() != Some(ticket_id.as_str()) {
                // Another matchmake of the same player won the race; report its ticket.
                return conflict(deps, &caller, player.active_ticket_id.unwrap_or_default()).await;
            }
        }
        Err(e) => return Err(e.into()),
    }
    let players = vec![Player {
        player_id: caller.player_id.clone(),
        attributes: player.attributes,
        latency_in_ms: latency_in_ms.unwrap_or_default(),
    }];
    start_ticket(deps, &ticket_id, players, now).await?;
    Ok(ok())
}

/// Creates the ticket of `players` (already claimed for each), pushes `MatchmakingQueued` to each
/// and calls StartMatchmaking.
pub(super) async fn start_ticket(
    deps: &Deps,
    ticket_id: &str,
    players: Vec<Player>,
    now: i64,
) -> Result<(), HandlerError> {
    let ticket_id = ticket_id.to_owned();
    let queued = Push::MatchmakingQueued { ticket_id: ticket_id.clone() };
    let player_ids: Vec<String> = players.iter().map(|p| p.player_id.clone()).collect();
    let ticket = TicketRecord {
        ticket_id: ticket_id.clone(),
        player_ids: player_ids.clone(),
        configuration_name: deps.settings.configuration_name.clone(),
        state: TicketState::new(),
        version: 0,
        created_at: now,
        last_event_at: now,
        results: player_ids.iter().map(|p| (p.clone(), queued.clone())).collect(),
        applied_event_ids: Vec::new(),
        applied_by: BTreeMap::new(),
        backstop_due_at: Some(now + deps.settings.backstop_quiet.as_millis() as i64),
        disconnected_at: None,
        expires_at: (now + deps.settings.ticket_ttl.as_millis() as i64) / 1000,
    };
    // The ticket exists before FlexMatch knows it, so no event can arrive for an unknown ticket.
    deps.tickets.create(&ticket).await?;
    let request = StartMatchmakingRequest {
        configuration_name: deps.settings.configuration_name.clone(),
        ticket_id: ticket_id.clone(),
        players,
    };
    // Queued goes out first: every later push of this ticket comes from the events handler.
    for player_id in &player_ids {
        push_to_player(deps, player_id, &queued).await?;
    }
    match deps.matchmaker.start_matchmaking(request).await {
        Ok(()) => {}
        // A retried StartMatchmaking whose first attempt went through: the ticket is live.
        Err(MatchmakerError::Rejected(m)) if m.contains("already exists") => {}
        Err(MatchmakerError::Unavailable(m)) => {
            // Whether FlexMatch took the ticket is unknown: it stays live, and its events or the
            // backstop (which fails tickets FlexMatch does not know) settle it. Failing it here
            // could leave a ghost ticket searching in FlexMatch.
            tracing::warn!(ticket_id, error = m, "StartMatchmaking failed; the backstop will settle the ticket");
        }
        Err(MatchmakerError::Rejected(message)) => {
            tracing::warn!(ticket_id, error = message, "StartMatchmaking refused");
            let failed =
                Push::MatchmakingFailed { ticket_id: ticket_id.clone(), reason: "InvalidRequest".into(), message };
            let mut ended = ticket.clone();
            ended.state = TicketState { status: TicketStatus::Failed, ..TicketState::new() };
            ended.version = 1;
            ended.backstop_due_at = None;
            for player_id in &player_ids {
                ended.results.insert(player_id.clone(), failed.clone());
            }
            // If an event raced us to the ticket, its state wins and says what happened.
            if deps.tickets.replace(&ended, 0).await.is_ok() {
                for player_id in &player_ids {
                    push_to_player(deps, player_id, &failed).await?;
                }
            }
        }
    }
    Ok(())
}

async fn live_ticket(deps: &Deps, ticket_id: Option<&str>, now: i64) -> Result<Option<String>, HandlerError> {
    let Some(ticket_id) = ticket_id else { return Ok(None) };
    let ticket = deps.tickets.get(ticket_id, now).await?;
    Ok(ticket.filter(|t| !t.state.status.is_terminal()).map(|t| t.ticket_id))
}

async fn conflict(deps: &Deps, caller: &Caller, live: String) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let push = Push::Error {
        code: ErrorCode::Conflict,
        message: "this player already has a live ticket".into(),
        ticket_id: Some(live),
    };
    push_to(deps, &caller.connection_id, &caller.player_id, &push).await?;
    Ok(ok())
}

/// Stops one of the caller's tickets; the MatchmakingCancelled event follows.
pub async fn cancel(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::Cancel { ticket_id } = action else { return Err(unexpected_action("cancel", &action)) };
    let Some(ticket) = owned_ticket(deps, &caller, &ticket_id).await? else {
        push_not_found(deps, &caller).await?;
        return Ok(ok());
    };
    if ticket.state.status.is_terminal() {
        // Nothing to stop: repeat how it ended.
        if let Some(result) = ticket.results.get(&caller.player_id) {
            push_to(deps, &caller.connection_id, &caller.player_id, result).await?;
        }
        return Ok(ok());
    }
    if let Err(e) = deps.matchmaker.stop_matchmaking(&ticket_id).await {
        push_error(deps, &caller, ErrorCode::MatchmakingRejected, e.to_string()).await?;
    }
    Ok(ok())
}

/// Accepts or rejects a proposed match for the caller (only the caller's own player).
pub async fn accept(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::Accept { ticket_id, accept } = action else { return Err(unexpected_action("accept", &action)) };
    let Some(ticket) = owned_ticket(deps, &caller, &ticket_id).await? else {
        push_not_found(deps, &caller).await?;
        return Ok(ok());
    };
    if ticket.state.status != TicketStatus::RequiresAcceptance {
        let message = format!("the ticket is {}, not waiting for acceptance", ticket.state.status.as_str());
        push_error(deps, &caller, ErrorCode::InvalidRequest, message).await?;
        return Ok(ok());
    }
    if let Err(e) = deps.matchmaker.accept_match(&ticket_id, std::slice::from_ref(&caller.player_id), accept).await {
        push_error(deps, &caller, ErrorCode::MatchmakingRejected, e.to_string()).await?;
    }
    Ok(ok())
}

/// Repeats the latest push of one of the caller's tickets (by default the latest one).
pub async fn status(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::Status { ticket_id } = action else { return Err(unexpected_action("status", &action)) };
    let ticket_id = match ticket_id {
        Some(id) => Some(id),
        None => deps.players.get(&caller.player_id).await?.and_then(|p| p.active_ticket_id),
    };
    let ticket = match ticket_id {
        Some(id) => owned_ticket(deps, &caller, &id).await?,
        None => None,
    };
    match ticket.as_ref().and_then(|t| t.results.get(&caller.player_id)) {
        Some(latest) => push_to(deps, &caller.connection_id, &caller.player_id, latest).await?,
        None => push_not_found(deps, &caller).await?,
    }
    Ok(ok())
}
