//! The handlers' `Matchmaker` port over the local FlexMatch, in-process: how the embedded stack
//! wires the engine to the handlers. The engine itself knows nothing of the handlers' ports.

use async_trait::async_trait;
use matchgate_lambdas::ports::{
    DescribedGameSession, DescribedPlayer, Matchmaker, MatchmakerError, StartMatchmakingRequest, TicketDescription,
};

use crate::gamelift::{DescribedTicket, GameLiftError, LocalFlexMatch};

impl From<GameLiftError> for MatchmakerError {
    fn from(e: GameLiftError) -> Self {
        MatchmakerError::Rejected(e.to_string())
    }
}

#[async_trait]
impl Matchmaker for LocalFlexMatch {
    async fn start_matchmaking(&self, request: StartMatchmakingRequest) -> Result<(), MatchmakerError> {
        Ok(self.start(request)?)
    }

    async fn stop_matchmaking(&self, ticket_id: &str) -> Result<(), MatchmakerError> {
        Ok(self.stop(ticket_id)?)
    }

    async fn accept_match(&self, ticket_id: &str, player_ids: &[String], accept: bool) -> Result<(), MatchmakerError> {
        Ok(self.accept(ticket_id, player_ids, accept)?)
    }

    async fn describe_matchmaking(&self, ticket_ids: &[String]) -> Result<Vec<TicketDescription>, MatchmakerError> {
        Ok(self.describe(ticket_ids)?.into_iter().map(description).collect())
    }
}

/// The handlers' view of a described ticket.
fn description(ticket: DescribedTicket) -> TicketDescription {
    TicketDescription {
        players: ticket
            .players
            .iter()
            .map(|p| DescribedPlayer {
                player_id: p.player_id.clone(),
                team: ticket.teams.get(&p.player_id).cloned(),
                player_session_id: ticket
                    .game_session
                    .as_ref()
                    .and_then(|g| g.player_sessions.get(&p.player_id))
                    .cloned(),
            })
            .collect(),
        game_session: ticket.game_session.map(|g| DescribedGameSession {
            game_session_arn: g.game_session_arn,
            ip_address: g.ip_address,
            dns_name: g.dns_name,
            port: g.port,
        }),
        ticket_id: ticket.ticket_id,
        status: ticket.status,
        status_reason: ticket.status_reason,
        status_message: ticket.status_message,
    }
}
