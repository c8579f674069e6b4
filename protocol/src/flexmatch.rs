//! FlexMatch matchmaking events, as GameLift publishes them to SNS (an EventBridge-style
//! envelope with `detail-type: "GameLift Matchmaking Event"`).
//!
//! These are matchmaking's own serde types rather than a generic JSON map, so every handler
//! reads fields by name. Unknown fields are ignored, so a field AWS adds later does not break
//! parsing.

use serde::{Deserialize, Serialize};

/// The `detail-type` of every FlexMatch event.
pub const DETAIL_TYPE: &str = "GameLift Matchmaking Event";
/// The `source` of every FlexMatch event.
pub const SOURCE: &str = "aws.gamelift";

/// The envelope SNS carries in `Sns.Message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchmakingEvent {
    pub version: String,
    /// Unique per event; a redelivery carries the same ID.
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub account: String,
    /// ISO 8601, e.g. `2017-08-09T19:59:09.159Z`.
    pub time: String,
    pub region: String,
    /// The matchmaking configuration's ARN.
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: MatchmakingEventDetail,
}

/// The eight FlexMatch event types, and a catch-all so a new type does not break parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchmakingEventType {
    MatchmakingSearching,
    PotentialMatchCreated,
    AcceptMatch,
    AcceptMatchCompleted,
    MatchmakingSucceeded,
    MatchmakingTimedOut,
    MatchmakingCancelled,
    MatchmakingFailed,
    #[serde(other)]
    Unknown,
}

/// `detail`: which fields are present depends on `type` (see FlexMatch's event reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchmakingEventDetail {
    #[serde(rename = "type")]
    pub event_type: MatchmakingEventType,
    #[serde(default)]
    pub tickets: Vec<EventTicket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_session_info: Option<GameSessionInfo>,
    /// A number of milliseconds, or the string `NOT_AVAILABLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_millis: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance_required: Option<bool>,
    /// `Accepted`, `Rejected` or `TimedOut` (AcceptMatchCompleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_evaluation_metrics: Option<Vec<RuleEvaluationMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_event_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTicket {
    pub ticket_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default)]
    pub players: Vec<EventPlayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPlayer {
    pub player_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player_session_id: Option<String>,
    /// AcceptMatch: whether this player has accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameSessionInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_session_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub players: Vec<EventPlayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEvaluationMetric {
    pub rule_name: String,
    pub passed_count: u64,
    pub failed_count: u64,
}

impl MatchmakingEvent {
    /// Parses `Sns.Message`.
    pub fn from_sns_message(message: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(message)
    }

    /// The configuration name from the first resource ARN (`...:matchmakingconfiguration/NAME`).
    pub fn configuration_name(&self) -> Option<&str> {
        self.resources.first().and_then(|arn| arn.rsplit_once('/')).map(|(_, name)| name)
    }
}

impl MatchmakingEventDetail {
    /// A detail of `event_type` with no tickets and no optional fields, to fill in.
    pub fn new(event_type: MatchmakingEventType) -> Self {
        Self {
            event_type,
            tickets: Vec::new(),
            match_id: None,
            game_session_info: None,
            estimated_wait_millis: None,
            acceptance_timeout: None,
            acceptance_required: None,
            acceptance: None,
            rule_evaluation_metrics: None,
            reason: None,
            message: None,
            custom_event_data: None,
        }
    }

    /// This player's own seat in the event: its team and player session ID, looked up first in
    /// `gameSessionInfo.players`, then in the tickets.
    pub fn player(&self, player_id: &str) -> Option<&EventPlayer> {
        let from_session = self.game_session_info.iter().flat_map(|g| g.players.iter());
        let from_tickets = self.tickets.iter().flat_map(|t| t.players.iter());
        from_session
            .chain(from_tickets)
            .find(|p| p.player_id == player_id && (p.player_session_id.is_some() || p.team.is_some()))
            .or_else(|| self.tickets.iter().flat_map(|t| t.players.iter()).find(|p| p.player_id == player_id))
    }

    /// `estimatedWaitMillis` when it is a number.
    pub fn estimated_wait_millis(&self) -> Option<u64> {
        self.estimated_wait_millis.as_ref().and_then(|v| v.as_u64())
    }
}
