//! Server pushes: the JSON text frames the gateway sends to a client, tagged by `type` and named
//! after FlexMatch's events.

use serde::{Deserialize, Serialize};

/// One push to one player. A `MatchmakingSucceeded` carries that player's own
/// `playerSessionId` and is never sent to anyone else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Push {
    /// The answer to `matchmake`: the ticket exists. Comes before any other push of the ticket.
    MatchmakingQueued { ticket_id: String },
    /// FlexMatch is looking for a match (again, after a rejected or timed-out acceptance).
    MatchmakingSearching {
        ticket_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_millis: Option<u64>,
    },
    /// A match was proposed; with `acceptanceRequired`, answer it with `accept`.
    PotentialMatchCreated {
        ticket_id: String,
        match_id: String,
        acceptance_required: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acceptance_timeout: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<String>,
    },
    /// Progress of the match's acceptance.
    AcceptMatch {
        ticket_id: String,
        match_id: String,
        /// How many of the match's players have accepted so far. A count, not the players: their
        /// IDs are other people's identities, and the client only needs the progress. Defaults
        /// to 0 so results stored before the field existed still read.
        #[serde(default)]
        accepted_count: u32,
        /// How many players the match has.
        #[serde(default)]
        player_count: u32,
    },
    /// The acceptance ended: `Accepted`, `Rejected` or `TimedOut`.
    AcceptMatchCompleted {
        ticket_id: String,
        match_id: String,
        /// `Accepted`, `Rejected` or `TimedOut`, as FlexMatch reports it.
        acceptance: String,
    },
    /// Terminal: the match was placed. Carries the receiving player's own `playerSessionId`.
    MatchmakingSucceeded {
        ticket_id: String,
        match_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        game_session_arn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_address: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dns_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        player_session_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<String>,
    },
    /// Terminal: no match within the configuration's request timeout.
    MatchmakingTimedOut {
        ticket_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Terminal: the ticket was cancelled (by `cancel`, a rejected match, or a player who left).
    MatchmakingCancelled {
        ticket_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Terminal: matchmaking or placement failed.
    MatchmakingFailed { ticket_id: String, reason: String, message: String },
    /// A request was refused; `code` says why.
    Error {
        code: ErrorCode,
        message: String,
        /// The caller's live ticket, with `Conflict`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_id: Option<String>,
    },
    /// The answer to `ping`.
    Pong { connection_id: String, player_id: String },
    /// The caller's party as it is now: sent to every member after every change.
    PartyUpdated {
        party_id: String,
        leader_id: String,
        /// In joining order: after the leader, the first is the longest-standing member.
        members: Vec<crate::party::PartyMemberView>,
        /// Other players join with this code while it is valid.
        invite_code: String,
        /// The most members the party can hold.
        max_members: u32,
        /// The party's live ticket, while it is matchmaking.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_id: Option<String>,
        /// What changed, for people (e.g. a member left and matchmaking was cancelled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The caller is no longer in the party: they left, were removed by the leader, or were away
    /// longer than the disconnect grace.
    PartyLeft { party_id: String, reason: String },
}

/// Every push's `type`. A client tells a push from a newer server (a `type` not listed here)
/// apart from a malformed frame with it.
pub const PUSH_TYPES: &[&str] = &[
    "MatchmakingQueued",
    "MatchmakingSearching",
    "PotentialMatchCreated",
    "AcceptMatch",
    "AcceptMatchCompleted",
    "MatchmakingSucceeded",
    "MatchmakingTimedOut",
    "MatchmakingCancelled",
    "MatchmakingFailed",
    "Error",
    "Pong",
    "PartyUpdated",
    "PartyLeft",
];

impl Push {
    /// An `Error` push.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error { code, message: message.into(), ticket_id: None }
    }

    /// The push as the text frame the client receives.
    pub fn to_frame(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The ticket this push is about (`Pong` and most `Error`s are about none).
    pub fn ticket_id(&self) -> Option<&str> {
        match self {
            Self::MatchmakingQueued { ticket_id }
            | Self::MatchmakingSearching { ticket_id, .. }
            | Self::PotentialMatchCreated { ticket_id, .. }
            | Self::AcceptMatch { ticket_id, .. }
            | Self::AcceptMatchCompleted { ticket_id, .. }
            | Self::MatchmakingSucceeded { ticket_id, .. }
            | Self::MatchmakingTimedOut { ticket_id, .. }
            | Self::MatchmakingCancelled { ticket_id, .. }
            | Self::MatchmakingFailed { ticket_id, .. } => Some(ticket_id),
            Self::Error { ticket_id, .. } => ticket_id.as_deref(),
            Self::Pong { .. } | Self::PartyUpdated { .. } | Self::PartyLeft { .. } => None,
        }
    }

    /// The push's `type`, as on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::MatchmakingQueued { .. } => "MatchmakingQueued",
            Self::MatchmakingSearching { .. } => "MatchmakingSearching",
            Self::PotentialMatchCreated { .. } => "PotentialMatchCreated",
            Self::AcceptMatch { .. } => "AcceptMatch",
            Self::AcceptMatchCompleted { .. } => "AcceptMatchCompleted",
            Self::MatchmakingSucceeded { .. } => "MatchmakingSucceeded",
            Self::MatchmakingTimedOut { .. } => "MatchmakingTimedOut",
            Self::MatchmakingCancelled { .. } => "MatchmakingCancelled",
            Self::MatchmakingFailed { .. } => "MatchmakingFailed",
            Self::Error { .. } => "Error",
            Self::Pong { .. } => "Pong",
            Self::PartyUpdated { .. } => "PartyUpdated",
            Self::PartyLeft { .. } => "PartyLeft",
        }
    }

    /// True for the pushes that end a ticket.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::MatchmakingSucceeded { .. }
                | Self::MatchmakingTimedOut { .. }
                | Self::MatchmakingCancelled { .. }
                | Self::MatchmakingFailed { .. }
        )
    }
}

/// What went wrong, for a client to act on. Messages are for people; codes are for code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    MalformedJson,
    /// The frame has no `action`, or one no route serves.
    UnknownAction,
    /// The action's fields are missing or invalid.
    InvalidRequest,
    /// The player already has a live ticket (its ID is in `ticketId`).
    Conflict,
    /// No such ticket for this player (the same answer whether it does not exist or is another's).
    NotFound,
    /// The action needs a role this connection does not have.
    Forbidden,
    /// Too many messages: slow down.
    RateLimited,
    /// Matchmaking refused the request (e.g. an unknown configuration).
    MatchmakingRejected,
    /// The party has as many members as it may hold (the message names the limit).
    PartyFull,
    /// Something failed on the server; retry later.
    InternalError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_push_type_is_listed_and_named_as_on_the_wire() {
        let pushes = [
            Push::MatchmakingQueued { ticket_id: "t".into() },
            Push::MatchmakingSearching { ticket_id: "t".into(), estimated_wait_millis: None },
            Push::PotentialMatchCreated {
                ticket_id: "t".into(),
                match_id: "m".into(),
                acceptance_required: false,
                acceptance_timeout: None,
                team: None,
            },
            Push::AcceptMatch { ticket_id: "t".into(), match_id: "m".into(), accepted_count: 1, player_count: 2 },
            Push::AcceptMatchCompleted { ticket_id: "t".into(), match_id: "m".into(), acceptance: "Accepted".into() },
            Push::MatchmakingSucceeded {
                ticket_id: "t".into(),
                match_id: "m".into(),
                game_session_arn: None,
                ip_address: None,
                dns_name: None,
                port: None,
                player_session_id: None,
                team: None,
            },
            Push::MatchmakingTimedOut { ticket_id: "t".into(), reason: None, message: None },
            Push::MatchmakingCancelled { ticket_id: "t".into(), reason: None, message: None },
            Push::MatchmakingFailed { ticket_id: "t".into(), reason: "r".into(), message: "m".into() },
            Push::error(ErrorCode::NotFound, "no"),
            Push::Pong { connection_id: "c".into(), player_id: "p".into() },
            Push::PartyUpdated {
                party_id: "party-1".into(),
                leader_id: "p".into(),
                members: Vec::new(),
                invite_code: "ABC123".into(),
                max_members: 2,
                ticket_id: None,
                reason: None,
            },
            Push::PartyLeft { party_id: "party-1".into(), reason: "left".into() },
        ];
        assert_eq!(pushes.len(), PUSH_TYPES.len());
        for (push, listed) in pushes.iter().zip(PUSH_TYPES) {
            let wire: serde_json::Value = serde_json::from_str(&push.to_frame()).unwrap();
            assert_eq!(wire["type"], *listed);
            assert_eq!(push.type_name(), *listed);
        }
    }

    #[test]
    fn an_accept_match_stored_before_the_counts_existed_still_reads() {
        // Tickets keep their players' latest push for 24 h: one written by an older version
        // (with the players' IDs, no counts) must not make the ticket unreadable.
        let stored = r#"{"type":"AcceptMatch","ticketId":"t1","matchId":"m1","acceptedPlayerIds":["a","b"]}"#;
        let push: Push = serde_json::from_str(stored).expect("an old AcceptMatch reads");
        assert_eq!(
            push,
            Push::AcceptMatch { ticket_id: "t1".into(), match_id: "m1".into(), accepted_count: 0, player_count: 0 }
        );
    }
}
