//! Client actions: the JSON text frames a game client sends over its WebSocket.
//!
//! API Gateway picks the route from `$request.body.action`; a body that is not JSON, or whose
//! `action` names no route, goes to `$default`. The Lambda side parses the frame once, with
//! [`ClientAction::parse`], and hands the route's handler the typed action. Which route key is
//! served by which handler and function is declared once, in `matchgate_lambdas::routes`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most regions a client may report latencies for in one `matchmake` (GameLift's own limit
/// on `LatencyInMs` entries per player).
pub const MAX_LATENCY_REGIONS: usize = 20;

/// A client action, tagged by `action`.
///
/// A body with a field its action does not define is refused (`InvalidRequest`), as
/// docs/protocol.md promises. serde ignores unknown fields of unit variants even with
/// `deny_unknown_fields`, so an action without fields is written as an empty struct variant
/// (`Ping {}`), never as a unit variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum ClientAction {
    /// Ask for a match. Latencies are per AWS region, in milliseconds, as the client measured them.
    Matchmake {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_in_ms: Option<BTreeMap<String, u32>>,
    },
    /// Stop matchmaking for one of the caller's tickets.
    Cancel { ticket_id: String },
    /// Accept or reject a proposed match (when the configuration requires acceptance).
    Accept { ticket_id: String, accept: bool },
    /// The latest push of a ticket; without `ticketId`, of the caller's latest ticket.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_id: Option<String>,
    },
    /// Answered with `Pong {connectionId, playerId}`.
    Ping {},
    /// Start a party led by the caller; answered with `PartyUpdated` (with its `inviteCode`).
    CreateParty {},
    /// Join the party whose invite code this is.
    JoinParty { invite_code: String },
    /// Leave the caller's party. `partyId`, if given, must be the caller's party.
    LeaveParty {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        party_id: Option<String>,
    },
    /// The leader removes a member.
    KickFromParty {
        player_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        party_id: Option<String>,
    },
    /// A member says whether they are ready to queue, with their own latencies for the ticket.
    SetReady {
        ready: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_in_ms: Option<BTreeMap<String, u32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        party_id: Option<String>,
    },
}

/// Why a client frame could not be read as an action.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("the message is not a JSON object")]
    MalformedJson,
    #[error("the message has no string field \"action\"")]
    MissingAction,
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("invalid {action:?} request: {reason}")]
    InvalidRequest { action: String, reason: String },
}

impl ClientAction {
    /// Parses one client frame, telling apart malformed JSON, an unknown action and an action
    /// with missing, mistyped or unknown fields. A well-formed frame is parsed exactly once.
    pub fn parse(body: &str) -> Result<Self, ActionError> {
        let parsed: Self = serde_json::from_str(body).map_err(|e| Self::explain(body, &e))?;
        parsed
            .validate()
            .map_err(|reason| ActionError::InvalidRequest { action: parsed.route_key().into(), reason })?;
        Ok(parsed)
    }

    /// Why a frame that did not parse as an action was refused; only refused frames are read twice.
    fn explain(body: &str, error: &serde_json::Error) -> ActionError {
        let Ok(object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body) else {
            return ActionError::MalformedJson;
        };
        let Some(action) = object.get("action").and_then(|a| a.as_str()) else {
            return ActionError::MissingAction;
        };
        if !Self::names().contains(&action) {
            return ActionError::UnknownAction(action.chars().take(64).collect());
        }
        ActionError::InvalidRequest { action: action.to_owned(), reason: bounded(error.to_string()) }
    }

    /// Every action's name (its `action` tag, which is also its route key), read from this
    /// type's own serde definition, so a new variant needs no list updated anywhere.
    pub fn names() -> &'static [&'static str] {
        /// A deserializer error that keeps the variant names serde reports for an unknown tag.
        #[derive(Debug)]
        struct Variants(&'static [&'static str]);
        impl std::fmt::Display for Variants {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "variants {:?}", self.0)
            }
        }
        impl std::error::Error for Variants {}
        impl serde::de::Error for Variants {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Self(&[])
            }
            fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
                Self(expected)
            }
        }
        // A tag that is no action: serde answers with the list of those that are.
        let probe = serde::de::value::MapDeserializer::<_, Variants>::new(std::iter::once(("action", "")));
        match Self::deserialize(probe) {
            Err(Variants(names)) => names,
            Ok(_) => &[],
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Matchmake { latency_in_ms: Some(latencies) } => valid_latencies(latencies),
            Self::Cancel { ticket_id }
            | Self::Accept { ticket_id, .. }
            | Self::Status { ticket_id: Some(ticket_id) } => valid_ticket_id(ticket_id),
            Self::JoinParty { invite_code } => crate::party::valid_invite_code(invite_code),
            Self::KickFromParty { player_id, party_id } => {
                crate::party::valid_player_id(player_id)?;
                party_id.as_deref().map_or(Ok(()), crate::party::valid_party_id)
            }
            Self::SetReady { latency_in_ms, party_id, .. } => {
                latency_in_ms.as_ref().map_or(Ok(()), valid_latencies)?;
                party_id.as_deref().map_or(Ok(()), crate::party::valid_party_id)
            }
            Self::LeaveParty { party_id: Some(party_id) } => crate::party::valid_party_id(party_id),
            _ => Ok(()),
        }
    }

    /// The route key this action is served by.
    pub fn route_key(&self) -> &'static str {
        match self {
            Self::Matchmake { .. } => "matchmake",
            Self::Cancel { .. } => "cancel",
            Self::Accept { .. } => "accept",
            Self::Status { .. } => "status",
            Self::Ping {} => "ping",
            Self::CreateParty {} => "createParty",
            Self::JoinParty { .. } => "joinParty",
            Self::LeaveParty { .. } => "leaveParty",
            Self::KickFromParty { .. } => "kickFromParty",
            Self::SetReady { .. } => "setReady",
        }
    }
}

/// Most characters of a parse error echoed back: serde quotes unknown field names whole, and a
/// client must not be able to make the server echo its own 128 KB back.
const MAX_REASON_CHARS: usize = 200;

fn bounded(mut reason: String) -> String {
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// A client's latencies per region: at most GameLift's number of regions, each named and at
/// least 1 ms.
fn valid_latencies(latencies: &BTreeMap<String, u32>) -> Result<(), String> {
    if latencies.len() > MAX_LATENCY_REGIONS {
        return Err(format!("latencyInMs has more than {MAX_LATENCY_REGIONS} regions"));
    }
    if let Some(region) = latencies.keys().find(|r| r.is_empty() || r.len() > 64) {
        return Err(format!("latencyInMs has an invalid region name {region:?}"));
    }
    if latencies.values().any(|ms| *ms == 0) {
        return Err("latencyInMs values must be at least 1".into());
    }
    Ok(())
}

/// GameLift ticket IDs: up to 128 characters of `[a-zA-Z0-9-\.]`.
fn valid_ticket_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err("ticketId must be 1-128 characters of letters, digits, '-' and '.'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        assert_eq!(
            ClientAction::parse(r#"{"action":"matchmake","latencyInMs":{"us-east-1":40}}"#).unwrap(),
            ClientAction::Matchmake { latency_in_ms: Some(BTreeMap::from([("us-east-1".into(), 40)])) }
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"matchmake"}"#).unwrap(),
            ClientAction::Matchmake { latency_in_ms: None }
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"cancel","ticketId":"t-1"}"#).unwrap(),
            ClientAction::Cancel { ticket_id: "t-1".into() }
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"accept","ticketId":"t-1","accept":false}"#).unwrap(),
            ClientAction::Accept { ticket_id: "t-1".into(), accept: false }
        );
        assert_eq!(ClientAction::parse(r#"{"action":"status"}"#).unwrap(), ClientAction::Status { ticket_id: None });
        assert_eq!(ClientAction::parse(r#"{"action":"ping"}"#).unwrap(), ClientAction::Ping {});
    }

    #[test]
    fn tells_bad_input_apart() {
        assert_eq!(ClientAction::parse("hello"), Err(ActionError::MalformedJson));
        assert_eq!(ClientAction::parse("[1,2]"), Err(ActionError::MalformedJson));
        assert_eq!(ClientAction::parse(r#"{"ticketId":"x"}"#), Err(ActionError::MissingAction));
        assert_eq!(ClientAction::parse(r#"{"action":"fly"}"#), Err(ActionError::UnknownAction("fly".into())));
        assert!(matches!(ClientAction::parse(r#"{"action":"cancel"}"#), Err(ActionError::InvalidRequest { .. })));
        assert!(matches!(
            ClientAction::parse(r#"{"action":"accept","ticketId":"t"}"#),
            Err(ActionError::InvalidRequest { .. })
        ));
        assert!(matches!(
            ClientAction::parse(r#"{"action":"matchmake","latencyInMs":{"us-east-1":0}}"#),
            Err(ActionError::InvalidRequest { .. })
        ));
        assert!(matches!(
            ClientAction::parse(r#"{"action":"status","ticketId":"../etc"}"#),
            Err(ActionError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn a_huge_unknown_field_is_not_echoed_back() {
        let body = format!(r#"{{"action":"ping","{}":1}}"#, "k".repeat(30_000));
        match ClientAction::parse(&body) {
            Err(ActionError::InvalidRequest { reason, .. }) => assert!(reason.chars().count() <= MAX_REASON_CHARS + 1),
            other => panic!("{other:?}"),
        }
        let body = format!(r#"{{"action":"cancel","ticketId":"t","{}":1}}"#, "k".repeat(30_000));
        let Err(ActionError::InvalidRequest { reason, .. }) = ClientAction::parse(&body) else { panic!("refused") };
        assert!(reason.chars().count() <= MAX_REASON_CHARS + 1, "{} chars", reason.len());
    }

    /// One frame of each action, with its fields.
    const SAMPLES: &[&str] = &[
        r#"{"action":"matchmake","latencyInMs":{"us-east-1":40}}"#,
        r#"{"action":"cancel","ticketId":"t-1"}"#,
        r#"{"action":"accept","ticketId":"t-1","accept":true}"#,
        r#"{"action":"status","ticketId":"t-1"}"#,
        r#"{"action":"ping"}"#,
        r#"{"action":"createParty"}"#,
        r#"{"action":"joinParty","inviteCode":"ABC123"}"#,
        r#"{"action":"leaveParty","partyId":"party-1"}"#,
        r#"{"action":"kickFromParty","playerId":"bob","partyId":"party-1"}"#,
        r#"{"action":"setReady","ready":true,"latencyInMs":{"us-east-1":40}}"#,
    ];

    #[test]
    fn every_action_is_named_by_its_tag_and_route_key() {
        let mut sampled = Vec::new();
        for body in SAMPLES {
            let action = ClientAction::parse(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            let tag = serde_json::to_value(&action).unwrap()["action"].as_str().unwrap().to_owned();
            assert_eq!(action.route_key(), tag);
            sampled.push(tag);
        }
        sampled.sort();
        let mut names = ClientAction::names().to_vec();
        names.sort();
        assert_eq!(sampled, names, "SAMPLES holds one frame of every action");
    }

    #[test]
    fn every_action_refuses_a_field_it_does_not_define() {
        for body in SAMPLES {
            // An identity in the body is never taken; `kickFromParty` names its target with
            // `playerId`, so it gets another undefined field.
            let field = if body.contains(r#""playerId""#) { "connectionId" } else { "playerId" };
            let extra = body.replacen('{', &format!(r#"{{"{field}":"someone-else","#), 1);
            match ClientAction::parse(&extra) {
                Err(ActionError::InvalidRequest { reason, .. }) => {
                    assert!(reason.contains(&format!("unknown field `{field}`")), "{extra}: {reason}")
                }
                other => panic!("{extra} was not refused: {other:?}"),
            }
        }
    }
}
