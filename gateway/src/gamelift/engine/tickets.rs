//! Tickets: StartMatchmaking, StopMatchmaking and DescribeMatchmaking, and how a ticket ends.

use super::events::{detail_for, searching_detail};
use matchgate_protocol::gamelift::{GameSessionConnectionInfo, MatchedPlayerSession, MatchmakingTicket, TicketPlayer};

use super::*;

impl LocalFlexMatch {
    /// StartMatchmaking.
    pub fn start(&self, request: StartMatchmakingRequest) -> Result<(), GameLiftError> {
        for observer in self.observers() {
            observer.started(&request, self.clock.now_ms());
        }
        if request.players.is_empty() || request.players.len() > MAX_PLAYERS_PER_TICKET {
            return Err(GameLiftError::InvalidRequest(format!("A ticket holds 1 to {MAX_PLAYERS_PER_TICKET} players")));
        }
        let ids: BTreeSet<&str> = request.players.iter().map(|p| p.player_id.as_str()).collect();
        if ids.len() != request.players.len() {
            return Err(GameLiftError::InvalidRequest("Player IDs in a ticket must be unique".into()));
        }
        valid_ticket_id(&request.ticket_id)?;
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let configuration = state.configurations.get(&request.configuration_name).cloned().ok_or_else(|| {
            GameLiftError::NotFound(format!("Matchmaking configuration {} not found", request.configuration_name))
        })?;
        let rule_set =
            state.rule_sets.get(&configuration.rule_set_name).map(|r| Arc::clone(&r.parsed)).ok_or_else(|| {
                GameLiftError::NotFound(format!("Rule set {} not found", configuration.rule_set_name))
            })?;
        if state.tickets.contains_key(&request.ticket_id) {
            return Err(GameLiftError::InvalidRequest(format!("Ticket {} already exists", request.ticket_id)));
        }
        let mut players = Vec::with_capacity(request.players.len());
        for mut player in request.players {
            rule_set.apply_defaults(&mut player);
            rule_set
                .check_player(&player)
                .map_err(|reason| GameLiftError::InvalidRequest(format!("Player {}: {reason}", player.player_id)))?;
            players.push(player);
        }
        let ticket = EngineTicket {
            configuration_name: configuration.name.clone(),
            status: TicketStatus::Searching,
            status_reason: None,
            status_message: None,
            start_time_ms: now,
            end_time_ms: None,
            players,
            teams: BTreeMap::new(),
            game_session: None,
            rule_metrics: rule_set
                .rule_names()
                .map(|name| RuleEvaluationMetric { rule_name: name.to_owned(), passed_count: 0, failed_count: 0 })
                .collect(),
        };
        let detail = searching_detail(&request.ticket_id, &ticket);
        state.tickets.insert(request.ticket_id.clone(), ticket);
        self.publish(&configuration, detail);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// StopMatchmaking: a ticket that has not been placed yet is cancelled; stopping an ended
    /// ticket changes nothing.
    pub fn stop(&self, ticket_id: &str) -> Result<(), GameLiftError> {
        let now = self.clock.now_ms();
        for observer in self.observers() {
            observer.stopped(ticket_id, now);
        }
        let mut state = self.lock();
        let ticket = state
            .tickets
            .get(ticket_id)
            .ok_or_else(|| GameLiftError::NotFound(format!("Ticket {ticket_id} not found")))?;
        if ticket.status.is_terminal() || ticket.status == TicketStatus::Placing {
            return Ok(());
        }
        if let Some(match_id) = pending_match_of(&state, ticket_id) {
            // A ticket leaving a proposed match drops it, as a rejection would.
            let players = state_players(&state.tickets, ticket_id);
            if let Some(p) = state.pending.get_mut(&match_id) {
                p.rejected.extend(players);
            }
            self.settle_pending(&mut state, &match_id, "Rejected", now);
        }
        self.end_ticket(&mut state, ticket_id, TicketStatus::Cancelled, "Cancelled", "Cancelled by request.", now);
        Ok(())
    }

    pub(super) fn end_ticket(
        &self,
        state: &mut EngineState,
        ticket_id: &str,
        status: TicketStatus,
        reason: &str,
        message: &str,
        now: i64,
    ) {
        let Some(ticket) = state.tickets.get_mut(ticket_id) else { return };
        if ticket.status.is_terminal() {
            return;
        }
        ticket.status = status;
        ticket.status_reason = Some(reason.to_owned());
        ticket.status_message = Some(message.to_owned());
        ticket.end_time_ms = Some(now);
        let ticket = ticket.clone();
        let event_type = match status {
            TicketStatus::TimedOut => E::MatchmakingTimedOut,
            TicketStatus::Failed => E::MatchmakingFailed,
            _ => E::MatchmakingCancelled,
        };
        let mut detail = detail_for(event_type, &[(ticket_id, &ticket)]);
        detail.reason = Some(reason.to_owned());
        detail.message = Some(message.to_owned());
        // match-events-matchmakingtimedout.html and match-events-matchmakingcancelled.html list
        // ruleEvaluationMetrics in the detail (AWS's Cancelled example: zero counts for rules
        // never evaluated).
        if matches!(event_type, E::MatchmakingTimedOut | E::MatchmakingCancelled) {
            detail.rule_evaluation_metrics = Some(ticket.rule_metrics);
        }
        if let Some(configuration) = state.configurations.get(&ticket.configuration_name) {
            self.publish(configuration, detail);
        }
    }

    /// A ticket's status, if the engine knows it.
    pub fn ticket_status(&self, ticket_id: &str) -> Option<TicketStatus> {
        self.lock().tickets.get(ticket_id).map(|t| t.status)
    }

    /// DescribeMatchmaking for up to ten tickets; unknown ones are left out, as GameLift does.
    pub fn describe(&self, ticket_ids: &[String]) -> Result<Vec<MatchmakingTicket>, GameLiftError> {
        if ticket_ids.len() > MAX_DESCRIBE_TICKETS {
            return Err(GameLiftError::InvalidRequest(format!("At most {MAX_DESCRIBE_TICKETS} ticket IDs")));
        }
        let state = self.lock();
        Ok(ticket_ids
            .iter()
            .filter_map(|id| {
                let t = state.tickets.get(id)?;
                Some(MatchmakingTicket {
                    ticket_id: id.clone(),
                    configuration_name: t.configuration_name.clone(),
                    configuration_arn: self.configuration_arn(&t.configuration_name),
                    status: t.status,
                    status_reason: t.status_reason.clone(),
                    status_message: t.status_message.clone(),
                    start_time_ms: t.start_time_ms,
                    end_time_ms: t.end_time_ms,
                    players: t
                        .players
                        .iter()
                        .map(|p| TicketPlayer { player: p.clone(), team: t.teams.get(&p.player_id).cloned() })
                        .collect(),
                    // GameLift lists the ticket's own players' sessions only: one ticket's
                    // holder never learns the seat credentials of another ticket's players.
                    game_session_connection_info: t.game_session.as_ref().map(|g| GameSessionConnectionInfo {
                        game_session_arn: g.game_session_arn.clone(),
                        ip_address: g.ip_address.clone(),
                        dns_name: g.dns_name.clone(),
                        port: g.port,
                        matched_player_sessions: t
                            .players
                            .iter()
                            .filter_map(|p| {
                                let session = g.player_sessions.get(&p.player_id)?;
                                Some(MatchedPlayerSession {
                                    player_id: p.player_id.clone(),
                                    player_session_id: session.clone(),
                                })
                            })
                            .collect(),
                    }),
                })
            })
            .collect())
    }
}
