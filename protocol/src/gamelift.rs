//! GameLift's own types for FlexMatch, each defined once and shared by the FlexMatch engine, the
//! local GameLift API and the Lambda handlers.
//!
//! Serde gives them the member names of GameLift's API (awsJson1.1: `PascalCase`), so the local
//! GameLift API reads and writes them as they are; the Rust field names follow the engine's
//! words where the two differ (`attributes` is GameLift's `PlayerAttributes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ticket::TicketStatus;

/// A player's attributes by name, as the rule set declares them.
pub type PlayerAttributes = BTreeMap<String, AttributeValue>;

/// A player attribute as GameLift's API carries it: `{"S": ..}`, `{"N": ..}`, `{"SL": [..]}`
/// or `{"SDM": {..}}`.
///
/// GameLift models it as a structure of four optional members of which exactly one is set, so
/// reading it checks that and names the rule when it does not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AttributeValueMembers")]
pub enum AttributeValue {
    S(String),
    N(f64),
    SL(Vec<String>),
    SDM(BTreeMap<String, f64>),
}

/// GameLift's `AttributeValue` structure as it arrives, before the one-member rule is checked.
#[derive(Deserialize)]
struct AttributeValueMembers {
    #[serde(rename = "S")]
    s: Option<String>,
    #[serde(rename = "N")]
    n: Option<f64>,
    #[serde(rename = "SL")]
    sl: Option<Vec<String>>,
    #[serde(rename = "SDM")]
    sdm: Option<BTreeMap<String, f64>>,
}

/// An `AttributeValue` that sets none or several of its members.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an AttributeValue must set exactly one of S, N, SL, SDM")]
pub struct AttributeValueError;

impl TryFrom<AttributeValueMembers> for AttributeValue {
    type Error = AttributeValueError;

    fn try_from(m: AttributeValueMembers) -> Result<Self, Self::Error> {
        match (m.s, m.n, m.sl, m.sdm) {
            (Some(s), None, None, None) => Ok(Self::S(s)),
            (None, Some(n), None, None) => Ok(Self::N(n)),
            (None, None, Some(l), None) => Ok(Self::SL(l)),
            (None, None, None, Some(m)) => Ok(Self::SDM(m)),
            _ => Err(AttributeValueError),
        }
    }
}

impl AttributeValue {
    /// Types a plain JSON value the way GameLift types attributes: a number is `N`, a string
    /// `S`, a list of strings `SL`, a map of numbers `SDM`. Anything else is refused with the
    /// reason.
    pub fn from_plain_json(value: serde_json::Value) -> Result<Self, &'static str> {
        use serde_json::Value;
        Ok(match value {
            Value::Number(n) => Self::N(n.as_f64().ok_or("not a finite number")?),
            Value::String(s) => Self::S(s),
            Value::Array(items) => Self::SL(
                items
                    .into_iter()
                    .map(|i| i.as_str().map(str::to_owned).ok_or("lists hold strings only"))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Self::SDM(
                map.into_iter()
                    .map(|(k, v)| v.as_f64().map(|n| (k, n)).ok_or("maps hold numbers only"))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err("use a number, string, list of strings or map of numbers"),
        })
    }
}

/// One player of a matchmaking ticket (GameLift's `Player`): the attributes the rule set
/// declares and the latencies the client reported (only the reported regions are considered).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Player {
    pub player_id: String,
    #[serde(rename = "PlayerAttributes", default)]
    pub attributes: PlayerAttributes,
    #[serde(default)]
    pub latency_in_ms: BTreeMap<String, u32>,
}

/// StartMatchmaking's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartMatchmakingRequest {
    pub configuration_name: String,
    /// Empty when the caller leaves it to GameLift to make one up.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ticket_id: String,
    pub players: Vec<Player>,
}

/// How a configuration's matches are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlexMatchMode {
    /// FlexMatch forms matches and a game session queue places them (GameLift's default).
    #[default]
    WithQueue,
    /// FlexMatch only forms matches; the game places them itself.
    Standalone,
}

impl FlexMatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithQueue => "WITH_QUEUE",
            Self::Standalone => "STANDALONE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "WITH_QUEUE" => Some(Self::WithQueue),
            "STANDALONE" => Some(Self::Standalone),
            _ => None,
        }
    }
}

impl PartialEq<&str> for FlexMatchMode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A matchmaking configuration (GameLift's `MatchmakingConfiguration`, the
/// `AWS::GameLift::MatchmakingConfiguration` resource's properties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MatchmakingConfiguration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rule set's name (an ARN given for it is reduced to the name where it is stored).
    pub rule_set_name: String,
    pub request_timeout_seconds: u32,
    pub acceptance_required: bool,
    /// Only meaningful when acceptance is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub flex_match_mode: FlexMatchMode,
    #[serde(default)]
    pub game_session_queue_arns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_target: Option<String>,
    /// `MANUAL` or `AUTOMATIC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_mode: Option<String>,
    #[serde(default)]
    pub additional_player_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_event_data: Option<String>,
    /// Epoch milliseconds; GameLift's `CreationTime` is in seconds.
    #[serde(rename = "CreationTime", with = "epoch_seconds", default)]
    pub creation_time_ms: i64,
}

impl MatchmakingConfiguration {
    /// How long a proposed match waits for its players' answers, when acceptance is required.
    pub const DEFAULT_ACCEPTANCE_TIMEOUT_SECONDS: u32 = 30;

    /// The acceptance timeout in force: the configured one, else the default.
    pub fn acceptance_timeout(&self) -> u32 {
        self.acceptance_timeout_seconds.unwrap_or(Self::DEFAULT_ACCEPTANCE_TIMEOUT_SECONDS)
    }
}

impl Default for MatchmakingConfiguration {
    fn default() -> Self {
        Self {
            name: "matchgate-default".into(),
            description: None,
            rule_set_name: "matchgate-default".into(),
            request_timeout_seconds: 60,
            acceptance_required: false,
            acceptance_timeout_seconds: Some(Self::DEFAULT_ACCEPTANCE_TIMEOUT_SECONDS),
            flex_match_mode: FlexMatchMode::WithQueue,
            game_session_queue_arns: Vec::new(),
            notification_target: None,
            backfill_mode: None,
            additional_player_count: 0,
            custom_event_data: None,
            creation_time_ms: 0,
        }
    }
}

/// A matchmaking ticket as DescribeMatchmaking and StartMatchmaking describe it (GameLift's
/// `MatchmakingTicket`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MatchmakingTicket {
    pub ticket_id: String,
    pub configuration_name: String,
    pub configuration_arn: String,
    pub status: TicketStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Epoch milliseconds; GameLift's `StartTime` is in seconds.
    #[serde(rename = "StartTime", with = "epoch_seconds")]
    pub start_time_ms: i64,
    #[serde(rename = "EndTime", default, skip_serializing_if = "Option::is_none", with = "optional_epoch_seconds")]
    pub end_time_ms: Option<i64>,
    pub players: Vec<TicketPlayer>,
    /// Where the match was placed, once it is (WITH_QUEUE only). Its `MatchedPlayerSessions` are
    /// this ticket's own players' only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_session_connection_info: Option<GameSessionConnectionInfo>,
}

impl MatchmakingTicket {
    /// The team `player_id` was put on, once the ticket is in a match.
    pub fn team(&self, player_id: &str) -> Option<&str> {
        self.players.iter().find(|p| p.player.player_id == player_id).and_then(|p| p.team.as_deref())
    }

    /// `player_id`'s own player session, once the match is placed.
    pub fn player_session_id(&self, player_id: &str) -> Option<&str> {
        let sessions = self.game_session_connection_info.iter().flat_map(|g| &g.matched_player_sessions);
        sessions.filter(|s| s.player_id == player_id).map(|s| s.player_session_id.as_str()).next()
    }
}

/// A ticket's player, with the team FlexMatch put it on once the ticket is in a match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TicketPlayer {
    #[serde(flatten)]
    pub player: Player,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// Where a match was placed (GameLift's `GameSessionConnectionInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GameSessionConnectionInfo {
    pub game_session_arn: String,
    pub ip_address: String,
    pub dns_name: String,
    pub port: u16,
    #[serde(default)]
    pub matched_player_sessions: Vec<MatchedPlayerSession>,
}

/// One player's seat in a placed match: the credential the game server accepts from that player
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MatchedPlayerSession {
    pub player_id: String,
    pub player_session_id: String,
}

/// GameLift's timestamps are epoch seconds with a fraction; matchgate keeps epoch milliseconds.
pub mod epoch_seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(epoch_ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(*epoch_ms as f64 / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Ok((seconds * 1000.0).round() as i64)
    }
}

/// [`epoch_seconds`] for an optional timestamp.
pub mod optional_epoch_seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(epoch_ms: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
        match epoch_ms {
            Some(ms) => super::epoch_seconds::serialize(ms, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.map(|seconds| (seconds * 1000.0).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_read_and_write_gamelift_shapes() {
        for (json, value) in [
            (r#"{"S":"ranked"}"#, AttributeValue::S("ranked".into())),
            (r#"{"N":32.5}"#, AttributeValue::N(32.5)),
            (r#"{"SL":["a","b"]}"#, AttributeValue::SL(vec!["a".into(), "b".into()])),
            (r#"{"SDM":{"eu":40.0}}"#, AttributeValue::SDM(BTreeMap::from([("eu".into(), 40.0)]))),
        ] {
            assert_eq!(serde_json::from_str::<AttributeValue>(json).unwrap(), value);
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
        }
    }

    #[test]
    fn an_attribute_value_sets_exactly_one_member() {
        for json in [r#"{}"#, r#"{"S":"x","N":1}"#] {
            let error = serde_json::from_str::<AttributeValue>(json).unwrap_err().to_string();
            assert!(error.contains("exactly one of S, N, SL, SDM"), "{json}: {error}");
        }
    }

    #[test]
    fn plain_json_is_typed_like_gamelift() {
        let typed = |v: serde_json::Value| AttributeValue::from_plain_json(v);
        assert_eq!(typed(serde_json::json!(3)), Ok(AttributeValue::N(3.0)));
        assert_eq!(typed(serde_json::json!(["a"])), Ok(AttributeValue::SL(vec!["a".into()])));
        assert!(typed(serde_json::json!([1])).is_err());
        assert!(typed(serde_json::json!({"x": "y"})).is_err());
        assert!(typed(serde_json::Value::Null).is_err());
    }

    #[test]
    fn a_player_uses_gamelift_member_names() {
        let player: Player = serde_json::from_str(
            r#"{"PlayerId":"p","PlayerAttributes":{"skill":{"N":10}},"LatencyInMs":{"us-east-1":20}}"#,
        )
        .unwrap();
        assert_eq!(player.attributes["skill"], AttributeValue::N(10.0));
        assert_eq!(player.latency_in_ms["us-east-1"], 20);
    }

    #[test]
    fn a_configuration_round_trips_with_creation_time_in_seconds() {
        let configuration = MatchmakingConfiguration { creation_time_ms: 1_500, ..MatchmakingConfiguration::default() };
        let json = serde_json::to_value(&configuration).unwrap();
        assert_eq!(json["CreationTime"], 1.5);
        assert_eq!(json["FlexMatchMode"], "WITH_QUEUE");
        assert_eq!(serde_json::from_value::<MatchmakingConfiguration>(json).unwrap(), configuration);
    }

    #[test]
    fn a_ticket_reads_back_what_describe_matchmaking_writes() {
        let ticket = MatchmakingTicket {
            ticket_id: "t".into(),
            configuration_name: "c".into(),
            configuration_arn: "arn:c".into(),
            status: TicketStatus::Completed,
            status_reason: None,
            status_message: None,
            start_time_ms: 1_000,
            end_time_ms: Some(2_500),
            players: vec![TicketPlayer {
                player: Player { player_id: "p".into(), ..Player::default() },
                team: Some("red".into()),
            }],
            game_session_connection_info: Some(GameSessionConnectionInfo {
                game_session_arn: "arn:g".into(),
                ip_address: "127.0.0.1".into(),
                dns_name: "localhost".into(),
                port: 7000,
                matched_player_sessions: vec![MatchedPlayerSession {
                    player_id: "p".into(),
                    player_session_id: "psess-1".into(),
                }],
            }),
        };
        let json = serde_json::to_value(&ticket).unwrap();
        assert_eq!(json["Status"], "COMPLETED");
        assert_eq!(json["EndTime"], 2.5);
        assert_eq!(json["Players"][0]["PlayerId"], "p");
        assert_eq!(json["Players"][0]["Team"], "red");
        assert_eq!(serde_json::from_value::<MatchmakingTicket>(json).unwrap(), ticket);
        assert_eq!((ticket.team("p"), ticket.player_session_id("p")), (Some("red"), Some("psess-1")));
        assert_eq!(ticket.player_session_id("someone-else"), None);
    }
}
