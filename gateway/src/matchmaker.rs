//! The handlers' `Matchmaker` port over the local FlexMatch, in-process: how the embedded stack
//! wires the engine to the handlers. The engine itself knows nothing of the handlers' ports.

use async_trait::async_trait;
use matchgate_lambdas::ports::{
    DescribedGameSession, DescribedPlayer, Matchmaker, MatchmakerError, StartMatchmakingRequest, TicketDescription,
};

use matchgate_protocol::gamelift::MatchmakingTicket;

use crate::gamelift::{GameLiftError, LocalFlexMatch};

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
fn description(ticket: MatchmakingTicket) -> TicketDescription {
    TicketDescription {
        players: ticket
            .players
            .iter()
            .map(|p| DescribedPlayer {
                player_id: p.player.player_id.clone(),
                team: p.team.clone(),
                player_session_id: ticket.player_session_id(&p.player.player_id).map(str::to_owned),
            })
            .collect(),
        game_session: ticket.game_session_connection_info.map(|g| DescribedGameSession {
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
