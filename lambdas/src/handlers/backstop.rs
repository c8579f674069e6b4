//! The backstop: FlexMatch publishes events best-effort, so a scheduled handler asks
//! DescribeMatchmaking about tickets that have been quiet too long and feeds what it learns
//! through the same state machine as the events. It also stops tickets whose players left and
//! did not come back within the disconnect grace.

use matchgate_protocol::TicketStatus;
use matchgate_protocol::flexmatch::{
    DETAIL_TYPE, EventPlayer, EventTicket, GameSessionInfo, MatchmakingEvent, MatchmakingEventDetail,
    MatchmakingEventType as E, SOURCE,
};

use super::events::{EventOrigin, apply_event};
use crate::ports::{StoreError, TicketDescription, TicketRecord};
use crate::{Deps, HandlerError};

/// Tickets per run: DescribeMatchmaking takes at most ten IDs per call, and one call per run
/// keeps the backstop well inside GameLift's request rate.
pub const MAX_TICKETS_PER_RUN: usize = 10;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackstopReport {
    /// Tickets asked about.
    pub polled: usize,
    /// Tickets whose state moved because of what the poll said.
    pub advanced: usize,
    /// Tickets stopped because their players left and the grace ran out.
    pub stopped: usize,
}

/// One backstop run.
pub async fn backstop(deps: &Deps) -> Result<BackstopReport, HandlerError> {
    let now = deps.clock.now_ms();
    let due = deps.tickets.due_for_backstop(now, MAX_TICKETS_PER_RUN).await?;
    let mut report = BackstopReport { polled: due.len(), ..BackstopReport::default() };
    if due.is_empty() {
        return Ok(report);
    }
    for ticket in &due {
        if abandoned(deps, ticket, now).await? {
            tracing::info!(ticket_id = ticket.ticket_id, "players gone past the disconnect grace; stopping the ticket");
            match deps.matchmaker.stop_matchmaking(&ticket.ticket_id).await {
                Ok(()) => report.stopped += 1,
                Err(e) => tracing::warn!(ticket_id = ticket.ticket_id, error = %e, "StopMatchmaking failed"),
            }
        }
    }
    let ids: Vec<String> = due.iter().map(|t| t.ticket_id.clone()).collect();
    let descriptions = deps.matchmaker.describe_matchmaking(&ids).await?;
    for description in &descriptions {
        if let Some(event) = event_from(description, now) {
            report.advanced += apply_event(&event, EventOrigin::Poll { polled_at: now }, deps).await?;
        }
    }
    // A live ticket FlexMatch does not know (its StartMatchmaking never arrived, or it is long
    // gone) will never hear anything again: it failed.
    for ticket in due.iter().filter(|t| !descriptions.iter().any(|d| d.ticket_id == t.ticket_id)) {
        let unknown = TicketDescription {
            ticket_id: ticket.ticket_id.clone(),
            status: TicketStatus::Failed,
            status_reason: Some("TicketNotFound".into()),
            status_message: Some("FlexMatch does not know this ticket.".into()),
            players: ticket
                .player_ids
                .iter()
                .map(|p| crate::ports::DescribedPlayer { player_id: p.clone(), team: None, player_session_id: None })
                .collect(),
            game_session: None,
        };
        if let Some(event) = event_from(&unknown, now) {
            report.advanced += apply_event(&event, EventOrigin::Poll { polled_at: now }, deps).await?;
        }
    }
    for ticket in &due {
        reschedule(deps, &ticket.ticket_id, now).await?;
    }
    Ok(report)
}

/// True when every player of a live ticket left at least the grace ago and none has a
/// connection now.
async fn abandoned(deps: &Deps, ticket: &TicketRecord, now: i64) -> Result<bool, HandlerError> {
    let Some(at) = ticket.disconnected_at else { return Ok(false) };
    if now - at < deps.settings.disconnect_grace.as_millis() as i64 || ticket.state.status.is_terminal() {
        return Ok(false);
    }
    for player_id in &ticket.player_ids {
        if deps.players.get(player_id).await?.is_some_and(|p| p.connection_id.is_some()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Not before `backstop_interval` again, while the ticket is live.
async fn reschedule(deps: &Deps, ticket_id: &str, now: i64) -> Result<(), HandlerError> {
    let Some(ticket) = deps.tickets.get(ticket_id, now).await? else { return Ok(()) };
    if ticket.state.status.is_terminal() {
        return Ok(());
    }
    let next = now + deps.settings.backstop_interval.as_millis() as i64;
    if ticket.backstop_due_at.is_some_and(|d| d >= next) {
        return Ok(());
    }
    let mut updated = ticket.clone();
    updated.backstop_due_at = Some(next);
    updated.version += 1;
    match deps.tickets.replace(&updated, ticket.version).await {
        // An event got there first and rescheduled the ticket itself.
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a DescribeMatchmaking answer says, as the FlexMatch event that would have said it; the
/// backstop applies it as [`EventOrigin::Poll`]. Its ID names the ticket, the status and the
/// time of the poll: a ticket can pass through the same
/// status twice (a rejected match returns it to searching, then a new match is proposed), so the
/// state machine, not the ID, is what makes polling the same answer twice change nothing.
pub fn event_from(description: &TicketDescription, now_ms: i64) -> Option<MatchmakingEvent> {
    let event_type = match description.status {
        TicketStatus::Queued => return None,
        TicketStatus::Searching => E::MatchmakingSearching,
        TicketStatus::RequiresAcceptance | TicketStatus::Placing => E::PotentialMatchCreated,
        TicketStatus::Completed => E::MatchmakingSucceeded,
        TicketStatus::Failed => E::MatchmakingFailed,
        TicketStatus::Cancelled => E::MatchmakingCancelled,
        TicketStatus::TimedOut => E::MatchmakingTimedOut,
    };
    let players: Vec<EventPlayer> = description
        .players
        .iter()
        .map(|p| EventPlayer {
            player_id: p.player_id.clone(),
            team: p.team.clone(),
            player_session_id: p.player_session_id.clone(),
            accepted: None,
        })
        .collect();
    let session = description.game_session.as_ref();
    Some(MatchmakingEvent {
        version: "0".into(),
        id: format!("backstop:{}:{}:{now_ms}", description.ticket_id, description.status.as_str()),
        detail_type: DETAIL_TYPE.into(),
        source: SOURCE.into(),
        account: String::new(),
        time: chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default().to_rfc3339(),
        region: String::new(),
        resources: Vec::new(),
        detail: MatchmakingEventDetail {
            tickets: vec![EventTicket {
                ticket_id: description.ticket_id.clone(),
                start_time: None,
                players: players.clone(),
            }],
            game_session_info: Some(GameSessionInfo {
                game_session_arn: session.map(|g| g.game_session_arn.clone()),
                ip_address: session.map(|g| g.ip_address.clone()),
                dns_name: session.map(|g| g.dns_name.clone()),
                port: session.map(|g| g.port),
                players,
            }),
            acceptance_required: Some(description.status == TicketStatus::RequiresAcceptance),
            reason: description.status_reason.clone(),
            message: description.status_message.clone(),
            ..MatchmakingEventDetail::new(event_type)
        },
    })
}
