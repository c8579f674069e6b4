//! The Matchmaker port over `aws-sdk-gamelift`: StartMatchmaking with PlayerAttributes and
//! LatencyInMs, StopMatchmaking, AcceptMatch, DescribeMatchmaking.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_gamelift::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_gamelift::types::{AcceptanceType, AttributeValue as GlAttribute, MatchmakingTicket, Player};
use matchgate_protocol::TicketStatus;

use crate::ports::{
    AttributeValue, DescribedGameSession, DescribedPlayer, Matchmaker, MatchmakerError, StartMatchmakingRequest,
    TicketDescription,
};

/// GameLift's error codes that mean "this request is wrong", as opposed to "try again".
const REJECTED_CODES: &[&str] =
    &["InvalidRequestException", "NotFoundException", "UnsupportedRegionException", "SerializationException"];

#[derive(Debug, Clone)]
pub struct GameLiftMatchmaker {
    client: aws_sdk_gamelift::Client,
}

impl GameLiftMatchmaker {
    pub fn new(client: aws_sdk_gamelift::Client) -> Self {
        Self { client }
    }
}

/// A GameLift client from the Lambda environment. `GAMELIFT_ENDPOINT` points it at the local
/// stack. Timeouts are explicit: a matchmaking call that hangs must not eat the Lambda's whole
/// budget, and the standard retry mode backs off on GameLift's throttling.
pub fn client(sdk_config: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_gamelift::Client {
    let mut builder = aws_sdk_gamelift::config::Builder::from(sdk_config)
        .timeout_config(
            aws_sdk_gamelift::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .retry_config(aws_sdk_gamelift::config::retry::RetryConfig::standard().with_max_attempts(3));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_gamelift::Client::from_conf(builder.build())
}

fn map_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(e: SdkError<E, R>) -> MatchmakerError {
    let code = e.code().map(str::to_owned);
    let message = e.message().map(str::to_owned).unwrap_or_else(|| format!("{e}"));
    match code.as_deref() {
        Some(code) if REJECTED_CODES.contains(&code) => MatchmakerError::Rejected(format!("{code}: {message}")),
        Some(code) => MatchmakerError::Unavailable(format!("{code}: {message}")),
        None => MatchmakerError::Unavailable(message),
    }
}

fn gamelift_attribute(value: &AttributeValue) -> GlAttribute {
    match value {
        AttributeValue::S(s) => GlAttribute::builder().s(s).build(),
        AttributeValue::N(n) => GlAttribute::builder().n(*n).build(),
        AttributeValue::SL(l) => GlAttribute::builder().set_sl(Some(l.clone())).build(),
        AttributeValue::SDM(m) => {
            GlAttribute::builder().set_sdm(Some(m.iter().map(|(k, v)| (k.clone(), *v)).collect())).build()
        }
    }
}

fn description(ticket: &MatchmakingTicket) -> Option<TicketDescription> {
    let status = TicketStatus::parse(ticket.status()?.as_str())?;
    let info = ticket.game_session_connection_info();
    let sessions: HashMap<&str, &str> = info
        .map(|i| {
            i.matched_player_sessions().iter().filter_map(|s| Some((s.player_id()?, s.player_session_id()?))).collect()
        })
        .unwrap_or_default();
    Some(TicketDescription {
        ticket_id: ticket.ticket_id()?.to_owned(),
        status,
        status_reason: ticket.status_reason().map(str::to_owned),
        status_message: ticket.status_message().map(str::to_owned),
        players: ticket
            .players()
            .iter()
            .filter_map(|p| {
                let player_id = p.player_id()?;
                Some(DescribedPlayer {
                    player_id: player_id.to_owned(),
                    team: p.team().map(str::to_owned),
                    player_session_id: sessions.get(player_id).map(|s| (*s).to_owned()),
                })
            })
            .collect(),
        game_session: info.and_then(|i| {
            Some(DescribedGameSession {
                game_session_arn: i.game_session_arn()?.to_owned(),
                ip_address: i.ip_address().unwrap_or_default().to_owned(),
                dns_name: i.dns_name().unwrap_or_default().to_owned(),
                port: u16::try_from(i.port()?).ok()?,
            })
        }),
    })
}

#[async_trait]
impl Matchmaker for GameLiftMatchmaker {
    async fn start_matchmaking(&self, request: StartMatchmakingRequest) -> Result<(), MatchmakerError> {
        let players = request.players.iter().map(|p| {
            Player::builder()
                .player_id(&p.player_id)
                .set_player_attributes(Some(
                    p.attributes.iter().map(|(k, v)| (k.clone(), gamelift_attribute(v))).collect(),
                ))
                .set_latency_in_ms(Some(
                    p.latency_in_ms.iter().map(|(r, ms)| (r.clone(), i32::try_from(*ms).unwrap_or(i32::MAX))).collect(),
                ))
                .build()
        });
        self.client
            .start_matchmaking()
            .configuration_name(&request.configuration_name)
            .ticket_id(&request.ticket_id)
            .set_players(Some(players.collect()))
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn stop_matchmaking(&self, ticket_id: &str) -> Result<(), MatchmakerError> {
        self.client.stop_matchmaking().ticket_id(ticket_id).send().await.map_err(map_error)?;
        Ok(())
    }

    async fn accept_match(&self, ticket_id: &str, player_ids: &[String], accept: bool) -> Result<(), MatchmakerError> {
        let acceptance = if accept { AcceptanceType::Accept } else { AcceptanceType::Reject };
        self.client
            .accept_match()
            .ticket_id(ticket_id)
            .set_player_ids(Some(player_ids.to_vec()))
            .acceptance_type(acceptance)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn describe_matchmaking(&self, ticket_ids: &[String]) -> Result<Vec<TicketDescription>, MatchmakerError> {
        let output = self
            .client
            .describe_matchmaking()
            .set_ticket_ids(Some(ticket_ids.to_vec()))
            .send()
            .await
            .map_err(map_error)?;
        Ok(output.ticket_list().iter().filter_map(description).collect())
    }
}
