//! The request and response shapes of GameLift's FlexMatch operations, with GameLift's member
//! names. The types they carry (tickets, players, attributes, configurations) are the protocol
//! crate's; these are only the operations' envelopes around them.

use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration, MatchmakingTicket, epoch_seconds};
use serde::{Deserialize, Serialize};

use crate::gamelift::engine::{GameLiftError, LocalFlexMatch, StoredRuleSet};

/// AWS's error body in both protocols: the error's shape name and a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ErrorResponse {
    #[serde(rename = "__type")]
    pub error_type: String,
    pub message: String,
}

/// The output of operations that answer nothing (StopMatchmaking, AcceptMatch, Delete*).
#[derive(Debug, Serialize)]
pub(super) struct Empty {}

// --- matchmaking ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StartMatchmakingOutput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matchmaking_ticket: Option<&'a MatchmakingTicket>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeMatchmakingInput {
    pub ticket_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeMatchmakingOutput<'a> {
    pub ticket_list: &'a [MatchmakingTicket],
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StopMatchmakingInput {
    pub ticket_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AcceptMatchInput {
    pub ticket_id: String,
    pub player_ids: Vec<String>,
    /// `ACCEPT` or `REJECT`.
    pub acceptance_type: String,
}

// --- rule sets -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ValidateMatchmakingRuleSetInput {
    pub rule_set_body: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ValidateMatchmakingRuleSetOutput {
    pub valid: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateMatchmakingRuleSetInput {
    pub name: String,
    pub rule_set_body: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateMatchmakingRuleSetOutput<'a> {
    pub rule_set: MatchmakingRuleSet<'a>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeMatchmakingRuleSetsInput {
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeMatchmakingRuleSetsOutput<'a> {
    pub rule_sets: Vec<MatchmakingRuleSet<'a>>,
}

/// The input of the operations that name one thing (DeleteMatchmakingRuleSet,
/// DeleteMatchmakingConfiguration).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NameInput {
    pub name: String,
}

/// GameLift's `MatchmakingRuleSet`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct MatchmakingRuleSet<'a> {
    pub rule_set_name: &'a str,
    pub rule_set_arn: String,
    pub rule_set_body: &'a str,
    #[serde(with = "epoch_seconds")]
    pub creation_time: i64,
}

impl<'a> MatchmakingRuleSet<'a> {
    pub fn new(engine: &LocalFlexMatch, r: &'a StoredRuleSet) -> Self {
        Self {
            rule_set_name: &r.name,
            rule_set_arn: engine.rule_set_arn(&r.name),
            rule_set_body: &r.body,
            creation_time: r.creation_time_ms,
        }
    }
}

// --- configurations ------------------------------------------------------------------------

/// The configuration members Create and Update take; Update leaves absent ones as they are.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ConfigurationInput {
    pub name: String,
    pub description: Option<String>,
    pub game_session_queue_arns: Option<Vec<String>>,
    pub request_timeout_seconds: Option<u32>,
    pub acceptance_timeout_seconds: Option<u32>,
    pub acceptance_required: Option<bool>,
    pub rule_set_name: Option<String>,
    pub notification_target: Option<String>,
    pub additional_player_count: Option<u32>,
    pub custom_event_data: Option<String>,
    pub backfill_mode: Option<String>,
    /// Read as text so an unknown mode gets GameLift's InvalidRequestException.
    pub flex_match_mode: Option<String>,
}

impl ConfigurationInput {
    pub fn apply(&self, c: &mut MatchmakingConfiguration) -> Result<(), GameLiftError> {
        if let Some(v) = self.description.clone() {
            c.description = Some(v);
        }
        if let Some(v) = self.game_session_queue_arns.clone() {
            c.game_session_queue_arns = v;
        }
        if let Some(v) = self.request_timeout_seconds {
            c.request_timeout_seconds = v;
        }
        if let Some(v) = self.acceptance_timeout_seconds {
            c.acceptance_timeout_seconds = Some(v);
        }
        if let Some(v) = self.acceptance_required {
            c.acceptance_required = v;
        }
        if let Some(v) = self.rule_set_name.clone() {
            c.rule_set_name = v.rsplit('/').next().unwrap_or(&v).to_owned();
        }
        if let Some(v) = self.notification_target.clone() {
            c.notification_target = Some(v);
        }
        if let Some(v) = self.additional_player_count {
            c.additional_player_count = v;
        }
        if let Some(v) = self.custom_event_data.clone() {
            c.custom_event_data = Some(v);
        }
        if let Some(v) = self.backfill_mode.clone() {
            c.backfill_mode = Some(v);
        }
        if let Some(v) = self.flex_match_mode.clone() {
            c.flex_match_mode = FlexMatchMode::parse(&v)
                .ok_or_else(|| GameLiftError::InvalidRequest(format!("Invalid FlexMatchMode {v:?}")))?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeMatchmakingConfigurationsInput {
    #[serde(default)]
    pub names: Vec<String>,
    pub rule_set_name: Option<String>,
}

/// Create's and Update's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ConfigurationOutput {
    pub configuration: ConfigurationDescription,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeMatchmakingConfigurationsOutput {
    pub configurations: Vec<ConfigurationDescription>,
}

/// A configuration as GameLift describes it: its settings and the ARNs of it and its rule set.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ConfigurationDescription {
    #[serde(flatten)]
    pub configuration: MatchmakingConfiguration,
    pub configuration_arn: String,
    pub rule_set_arn: String,
}

impl ConfigurationDescription {
    pub fn new(engine: &LocalFlexMatch, c: &MatchmakingConfiguration) -> Self {
        Self {
            configuration: MatchmakingConfiguration {
                // The acceptance timeout is only reported where acceptance is required.
                acceptance_timeout_seconds: c.acceptance_required.then(|| c.acceptance_timeout()),
                ..c.clone()
            },
            configuration_arn: engine.configuration_arn(&c.name),
            rule_set_arn: engine.rule_set_arn(&c.rule_set_name),
        }
    }
}
