//! The events handler: FlexMatch's events, delivered by SNS, applied to tickets and pushed to
//! every player of every ticket in the event.

use aws_lambda_events::sns::SnsEvent;
use matchgate_protocol::flexmatch::{MatchmakingEvent, MatchmakingEventDetail, MatchmakingEventType as E};
use matchgate_protocol::{Push, Transition};

use super::push_to_player;
use crate::ports::{MAX_APPLIED_EVENT_IDS, StoreError};
use crate::{Deps, HandlerError};

/// How often a conditional ticket write is retried after losing a race to a concurrent event.
const MAX_WRITE_ATTEMPTS: usize = 8;

/// Handles one SNS delivery. A message that is not a FlexMatch event is logged and skipped:
/// retrying it could never succeed.
pub async fn events(event: SnsEvent, deps: &Deps) -> Result<(), HandlerError> {
    for record in &event.records {
        match MatchmakingEvent::from_sns_message(&record.sns.message) {
            Ok(event) => {
                apply_event(&event, EventOrigin::FlexMatch, deps).await?;
            }
            Err(e) => tracing::warn!(message_id = record.sns.message_id, error = %e, "not a FlexMatch event; skipped"),
        }
    }
    Ok(())
}

/// Where an event applied to tickets comes from: it decides how much the event may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrigin {
    /// Published by FlexMatch (delivered by SNS): applied with [`TicketState::apply`].
    ///
    /// [`TicketState::apply`]: matchgate_protocol::ticket::TicketState::apply
    FlexMatch,
    /// Made by the backstop from a DescribeMatchmaking answer asked for at `polled_at` (epoch
    /// ms). It speaks for the ticket's status at that time: only if no event has been applied
    /// since may it settle what an event could not (see `TicketState::apply_polled`).
    Poll { polled_at: i64 },
}

/// Applies one FlexMatch event to each of its tickets, then pushes what changed. Returns how
/// many tickets moved.
pub async fn apply_event(event: &MatchmakingEvent, origin: EventOrigin, deps: &Deps) -> Result<usize, HandlerError> {
    let mut moved = 0;
    for ticket in &event.detail.tickets {
        if apply_to_ticket(deps, event, origin, &ticket.ticket_id).await? {
            moved += 1;
        }
    }
    Ok(moved)
}

async fn apply_to_ticket(
    deps: &Deps,
    event: &MatchmakingEvent,
    origin: EventOrigin,
    ticket_id: &str,
) -> Result<bool, HandlerError> {
    // What this invocation last tried to write, and the token it signed the write with. A write
    // can report a conflict although it went through (a retried request whose first attempt
    // landed); the ticket then shows this event applied by this token, and the pushes are still
    // ours to send. The same event applied by another invocation (a concurrent redelivery) was
    // pushed by that one: sending again would be a second push.
    let token = uuid::Uuid::new_v4().to_string();
    let mut attempted: Option<Vec<(String, Push)>> = None;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let now = deps.clock.now_ms();
        let Some(ticket) = deps.tickets.get(ticket_id, now).await? else {
            tracing::debug!(ticket_id, "event for a ticket this gateway does not know; skipped");
            return Ok(false);
        };
        if ticket.applied_event_ids.contains(&event.id) {
            if let Some(pushes) = attempted
                && ticket.applied_by.get(&event.id) == Some(&token)
            {
                deliver(deps, &pushes).await;
                return Ok(true);
            }
            tracing::debug!(ticket_id, event_id = event.id, "duplicate event; skipped");
            return Ok(false);
        }
        let transition = match origin {
            EventOrigin::Poll { polled_at } if ticket.last_event_at < polled_at => {
                ticket.state.apply_polled(&event.detail)
            }
            _ => ticket.state.apply(&event.detail),
        };
        let next = match transition {
            Transition::Advance(next) => next,
            Transition::Ignore(why) => {
                tracing::debug!(ticket_id, event_type = ?event.detail.event_type, why, "event changes nothing");
                return Ok(false);
            }
        };
        let pushes: Vec<(String, Push)> = ticket
            .player_ids
            .iter()
            .filter_map(|p| {
                push_for(&event.detail, ticket_id, p, next.match_id.as_deref()).map(|push| (p.clone(), push))
            })
            .collect();
        let mut updated = ticket.clone();
        updated.backstop_due_at = (!next.status.is_terminal()).then(|| next_backstop(deps, &ticket, now));
        updated.state = next;
        updated.version += 1;
        updated.last_event_at = now;
        updated.applied_event_ids.push(event.id.clone());
        updated.applied_by.insert(event.id.clone(), token.clone());
        if updated.applied_event_ids.len() > MAX_APPLIED_EVENT_IDS {
            updated.applied_event_ids.remove(0);
        }
        let remembered = &updated.applied_event_ids;
        updated.applied_by.retain(|id, _| remembered.contains(id));
        for (player_id, push) in &pushes {
            updated.results.insert(player_id.clone(), push.clone());
        }
        match deps.tickets.replace(&updated, ticket.version).await {
            Ok(()) => {
                // The result is stored before it is pushed: a crash here loses no outcome, and
                // the client's `status` returns it.
                deliver(deps, &pushes).await;
                return Ok(true);
            }
            Err(StoreError::ConditionFailed) => attempted = Some(pushes),
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::ConditionFailed.into())
}

/// Pushes to each player; one player's failure (a store read, a throttled post) does not keep
/// the others from theirs, and every result is on the ticket already.
async fn deliver(deps: &Deps, pushes: &[(String, Push)]) {
    for (player_id, push) in pushes {
        if let Err(e) = push_to_player(deps, player_id, push).await {
            tracing::warn!(player_id, error = %e, "push not delivered; the result stays on the ticket");
        }
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// When the backstop should next look at a live ticket: after the quiet period, or sooner if
/// its players' disconnect grace ends first.
pub(crate) fn next_backstop(deps: &Deps, ticket: &crate::ports::TicketRecord, now: i64) -> i64 {
    let quiet = now + deps.settings.backstop_quiet.as_millis() as i64;
    match ticket.disconnected_at {
        Some(at) => quiet.min(at + deps.settings.disconnect_grace.as_millis() as i64),
        None => quiet,
    }
}

/// The push one player of one ticket receives for an event: their own seat only. `known_match_id`
/// stands in when the event names no match (a result learned by polling DescribeMatchmaking).
pub fn push_for(
    detail: &MatchmakingEventDetail,
    ticket_id: &str,
    player_id: &str,
    known_match_id: Option<&str>,
) -> Option<Push> {
    let ticket_id = ticket_id.to_owned();
    let match_id = || detail.match_id.as_deref().or(known_match_id).unwrap_or_default().to_owned();
    let seat = detail.player(player_id);
    let team = seat.and_then(|p| p.team.clone());
    Some(match detail.event_type {
        E::MatchmakingSearching => {
            Push::MatchmakingSearching { ticket_id, estimated_wait_millis: detail.estimated_wait_millis() }
        }
        E::PotentialMatchCreated => Push::PotentialMatchCreated {
            ticket_id,
            match_id: match_id(),
            acceptance_required: detail.acceptance_required.unwrap_or(false),
            acceptance_timeout: detail.acceptance_timeout,
            team,
        },
        E::AcceptMatch => Push::AcceptMatch {
            ticket_id,
            match_id: match_id(),
            accepted_count: count(detail.tickets.iter().flat_map(|t| &t.players).filter(|p| p.accepted == Some(true))),
            player_count: count(detail.tickets.iter().flat_map(|t| &t.players)),
        },
        E::AcceptMatchCompleted => Push::AcceptMatchCompleted {
            ticket_id,
            match_id: match_id(),
            acceptance: detail.acceptance.clone().unwrap_or_default(),
        },
        E::MatchmakingSucceeded => {
            let session = detail.game_session_info.clone().unwrap_or_default();
            Push::MatchmakingSucceeded {
                ticket_id,
                match_id: match_id(),
                game_session_arn: session.game_session_arn,
                ip_address: session.ip_address,
                dns_name: session.dns_name,
                port: session.port,
                player_session_id: seat.and_then(|p| p.player_session_id.clone()),
                team,
            }
        }
        E::MatchmakingTimedOut => {
            Push::MatchmakingTimedOut { ticket_id, reason: detail.reason.clone(), message: detail.message.clone() }
        }
        E::MatchmakingCancelled => {
            Push::MatchmakingCancelled { ticket_id, reason: detail.reason.clone(), message: detail.message.clone() }
        }
        E::MatchmakingFailed => Push::MatchmakingFailed {
            ticket_id,
            reason: detail.reason.clone().unwrap_or_else(|| "UNEXPECTED_ERROR".into()),
            message: detail.message.clone().unwrap_or_default(),
        },
        E::Unknown => return None,
    })
}
