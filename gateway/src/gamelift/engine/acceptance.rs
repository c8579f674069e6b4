//! AcceptMatch, and what a proposed match becomes when its players answer or the acceptance
//! timeout passes.

use super::events::{detail_for, searching_detail};
use super::*;

impl LocalFlexMatch {
    /// AcceptMatch for some players of a ticket.
    pub fn accept(&self, ticket_id: &str, player_ids: &[String], accept: bool) -> Result<(), GameLiftError> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let ticket = state
            .tickets
            .get(ticket_id)
            .ok_or_else(|| GameLiftError::NotFound(format!("Ticket {ticket_id} not found")))?;
        if ticket.status != TicketStatus::RequiresAcceptance {
            return Err(GameLiftError::InvalidRequest(format!(
                "Ticket {ticket_id} is {}, not REQUIRES_ACCEPTANCE",
                ticket.status.as_str()
            )));
        }
        if let Some(p) = player_ids.iter().find(|p| !ticket.players.iter().any(|q| q.player_id == **p)) {
            return Err(GameLiftError::InvalidRequest(format!("Player {p} is not in ticket {ticket_id}")));
        }
        let Some(match_id) = pending_match_of(&state, ticket_id) else {
            return Err(GameLiftError::InvalidRequest(format!("Ticket {ticket_id} has no proposed match")));
        };
        let pending = state.pending.get_mut(&match_id).expect("found above");
        for p in player_ids {
            if accept {
                pending.accepted.insert(p.clone());
            } else {
                pending.rejected.insert(p.clone());
            }
        }
        let pending = pending.clone();
        // AcceptMatch: each player's acceptance so far.
        let refs: Vec<(String, EngineTicket)> =
            pending.ticket_ids.iter().filter_map(|id| state.tickets.get(id).map(|t| (id.clone(), t.clone()))).collect();
        let mut detail = detail_for(E::AcceptMatch, &as_refs(&refs));
        detail.match_id = Some(match_id.clone());
        // match-events-acceptmatch.html: "Missing data means that AcceptMatch hasn't been called
        // for that player."
        let answer = |player_id: &str| {
            if pending.accepted.contains(player_id) {
                Some(true)
            } else if pending.rejected.contains(player_id) {
                Some(false)
            } else {
                None
            }
        };
        let info_players = detail.game_session_info.iter_mut().flat_map(|i| i.players.iter_mut());
        for player in detail.tickets.iter_mut().flat_map(|t| t.players.iter_mut()).chain(info_players) {
            player.accepted = answer(&player.player_id);
        }
        if let Some(configuration) = state.configurations.get(&pending.configuration_name).cloned() {
            self.publish(&configuration, detail);
        }
        let everyone: usize = refs.iter().map(|(_, t)| t.players.len()).sum();
        if !pending.rejected.is_empty() {
            self.settle_pending(&mut state, &match_id, "Rejected", now);
        } else if pending.accepted.len() == everyone {
            self.settle_pending(&mut state, &match_id, "Accepted", now);
        }
        Ok(())
    }

    /// Ends a proposed match: placed when accepted; otherwise tickets whose players all accepted
    /// search again and the others (a player rejected or did not answer) are cancelled, as
    /// API_AcceptMatch.html says.
    pub(super) fn settle_pending(&self, state: &mut EngineState, match_id: &str, acceptance: &str, now: i64) {
        let Some(pending) = state.pending.remove(match_id) else { return };
        let Some(configuration) = state.configurations.get(&pending.configuration_name).cloned() else { return };
        let refs: Vec<(String, EngineTicket)> =
            pending.ticket_ids.iter().filter_map(|id| state.tickets.get(id).map(|t| (id.clone(), t.clone()))).collect();
        let mut completed = detail_for(E::AcceptMatchCompleted, &as_refs(&refs));
        completed.match_id = Some(match_id.to_owned());
        completed.acceptance = Some(acceptance.to_owned());
        self.publish(&configuration, completed);
        if acceptance == "Accepted" {
            self.place(state, &configuration, match_id, &pending.ticket_ids);
            return;
        }
        for (id, ticket) in &refs {
            // API_AcceptMatch.html: "If the ticket has one or more players who rejected the match
            // or failed to respond, the ticket status is set CANCELLED [...]. If all players in
            // the ticket accepted the match, the ticket status is returned to SEARCHING".
            let keeps_searching = ticket.players.iter().all(|p| pending.accepted.contains(&p.player_id));
            if keeps_searching {
                if let Some(t) = state.tickets.get_mut(id) {
                    t.status = TicketStatus::Searching;
                    t.teams.clear();
                    let t = t.clone();
                    self.publish(&configuration, searching_detail(id, &t));
                }
            } else {
                let message = if ticket.players.iter().any(|p| pending.rejected.contains(&p.player_id)) {
                    "A player rejected the match."
                } else if acceptance == "TimedOut" {
                    "A player did not accept the match in time."
                } else {
                    "The match was rejected before every player of the ticket accepted."
                };
                self.end_ticket(state, id, TicketStatus::Cancelled, "AcceptanceFailed", message, now);
            }
        }
    }
}
