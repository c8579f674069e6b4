//! The ports the handlers depend on. Each is small on purpose: an adapter implements exactly
//! the calls the handlers make, and one conformance suite checks every adapter of a port.

use std::collections::BTreeMap;

use async_trait::async_trait;
use matchgate_protocol::Push;
use matchgate_protocol::ticket::TicketState;
use serde::{Deserialize, Serialize};

// GameLift's types are defined once, in the protocol crate; the handlers use them as they are.
pub use matchgate_protocol::gamelift::{AttributeValue, Player, PlayerAttributes, StartMatchmakingRequest};

/// What a connection's authorizer established about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Player,
    Observer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "player" => Some(Self::Player),
            "observer" => Some(Self::Observer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Player => "player",
            Self::Observer => "observer",
        }
    }
}

/// A row of `Connections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecord {
    pub connection_id: String,
    pub player_id: String,
    pub role: Role,
    /// Epoch milliseconds.
    pub connected_at: i64,
    /// Epoch seconds (DynamoDB TTL).
    pub expires_at: i64,
}

/// A row of `Players`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerRecord {
    pub player_id: String,
    #[serde(default)]
    pub attributes: PlayerAttributes,
    /// The player's current connection: the newest one wins.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// When the newest connection recorded for the player connected (epoch ms). Kept when the
    /// connection is cleared, so a `$connect` of an older connection that arrives late can
    /// never take over from a newer one.
    #[serde(default)]
    pub connected_at: Option<i64>,
    /// The player's latest ticket; it is live while the ticket's status is not terminal.
    #[serde(default)]
    pub active_ticket_id: Option<String>,
}

/// A row of `Tickets`: the state machine's state plus what each player was last told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketRecord {
    pub ticket_id: String,
    pub player_ids: Vec<String>,
    pub configuration_name: String,
    pub state: TicketState,
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Epoch milliseconds of the last state change (the backstop polls quiet tickets).
    pub last_event_at: i64,
    /// The latest push for each player, so `status` can repeat it after a reconnect.
    pub results: BTreeMap<String, Push>,
    /// IDs of the events already applied, newest last, so a redelivery is a no-op.
    #[serde(default)]
    pub applied_event_ids: Vec<String>,
    /// For each applied event ID (the ones in `applied_event_ids`), a token of the
    /// events-handler invocation that applied it. Two invocations can carry the same event at
    /// once (SNS delivers at least once, often in parallel); when one loses the conditional write
    /// and finds the event applied, this tells it whether the winning write was its own earlier
    /// attempt (its pushes are still to send) or the other's (they are sent already, and sending
    /// them again would be a second push).
    #[serde(default)]
    pub applied_by: BTreeMap<String, String>,
    /// While the ticket is live: when the backstop should next ask FlexMatch about it (epoch
    /// milliseconds). `None` once the ticket has ended.
    #[serde(default)]
    pub backstop_due_at: Option<i64>,
    /// When the ticket's players all went away while it was live (epoch milliseconds); after the
    /// disconnect grace the backstop stops it. Cleared by nothing: the backstop checks whether
    /// a player has come back before it stops anything.
    #[serde(default)]
    pub disconnected_at: Option<i64>,
    /// Epoch seconds (DynamoDB TTL).
    pub expires_at: i64,
}

/// How many applied event IDs a ticket remembers. A ticket sees at most a few events per match
/// attempt, so this covers every redelivery FlexMatch and SNS make in a ticket's life.
pub const MAX_APPLIED_EVENT_IDS: usize = 32;

/// Whether a row whose TTL attribute is `expires_at_s` (epoch seconds) is still live at `now_ms`.
/// DynamoDB deletes expired items up to two days late, so every read filters them with this.
pub fn is_live(expires_at_s: i64, now_ms: i64) -> bool {
    expires_at_s.saturating_mul(1000) > now_ms
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race, or its precondition does not hold.
    #[error("condition failed")]
    ConditionFailed,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    async fn put(&self, connection: &ConnectionRecord) -> Result<(), StoreError>;
    /// The connection, unless it is missing or past its TTL.
    async fn get(&self, connection_id: &str, now_ms: i64) -> Result<Option<ConnectionRecord>, StoreError>;
    async fn delete(&self, connection_id: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait PlayerStore: Send + Sync {
    async fn get(&self, player_id: &str) -> Result<Option<PlayerRecord>, StoreError>;
    /// Sets the player's attributes (seeding), creating the row if needed.
    async fn put_attributes(&self, player_id: &str, attributes: &PlayerAttributes) -> Result<(), StoreError>;
    /// Makes `connection_id`, which connected at `connected_at` (epoch ms), the player's current
    /// connection, creating the row if needed, unless a connection that connected later has been
    /// recorded: two reconnects racing leave the newer one current whatever order their writes
    /// land in. True if it was set.
    async fn set_connection(&self, player_id: &str, connection_id: &str, connected_at: i64)
    -> Result<bool, StoreError>;
    /// Clears the player's connection only if it is still `connection_id`; true if it was.
    async fn clear_connection(&self, player_id: &str, connection_id: &str) -> Result<bool, StoreError>;
    /// Sets `activeTicketId` to `new` only if it is still `expected`; else `ConditionFailed`.
    async fn claim_ticket(&self, player_id: &str, expected: Option<&str>, new: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Creates a ticket; `ConditionFailed` if the ID exists.
    async fn create(&self, ticket: &TicketRecord) -> Result<(), StoreError>;
    /// The ticket, unless it is missing or past its TTL.
    async fn get(&self, ticket_id: &str, now_ms: i64) -> Result<Option<TicketRecord>, StoreError>;
    /// Replaces the ticket only if its stored version is still `expected_version`.
    async fn replace(&self, ticket: &TicketRecord, expected_version: u64) -> Result<(), StoreError>;
    /// Live tickets whose `backstop_due_at` is at or before `now_ms`, most overdue first, at
    /// most `limit`, skipping expired ones.
    async fn due_for_backstop(&self, now_ms: i64, limit: usize) -> Result<Vec<TicketRecord>, StoreError>;
}

/// A ticket as DescribeMatchmaking reports it: what the backstop learns when events are lost.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketDescription {
    pub ticket_id: String,
    pub status: matchgate_protocol::TicketStatus,
    pub status_reason: Option<String>,
    pub status_message: Option<String>,
    pub players: Vec<DescribedPlayer>,
    pub game_session: Option<DescribedGameSession>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribedPlayer {
    pub player_id: String,
    pub team: Option<String>,
    pub player_session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribedGameSession {
    pub game_session_arn: String,
    pub ip_address: String,
    pub dns_name: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum MatchmakerError {
    /// GameLift refused the request (InvalidRequestException, NotFoundException, ...).
    #[error("matchmaking refused the request: {0}")]
    Rejected(String),
    #[error("matchmaking unavailable: {0}")]
    Unavailable(String),
}

/// FlexMatch, as the handlers use it.
#[async_trait]
pub trait Matchmaker: Send + Sync {
    async fn start_matchmaking(&self, request: StartMatchmakingRequest) -> Result<(), MatchmakerError>;
    async fn stop_matchmaking(&self, ticket_id: &str) -> Result<(), MatchmakerError>;
    async fn accept_match(&self, ticket_id: &str, player_ids: &[String], accept: bool) -> Result<(), MatchmakerError>;
    /// DescribeMatchmaking for at most ten tickets; unknown tickets are left out.
    async fn describe_matchmaking(&self, ticket_ids: &[String]) -> Result<Vec<TicketDescription>, MatchmakerError>;
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// 410: the connection is gone; its records should be deleted.
    #[error("the connection is gone")]
    Gone,
    /// 413: over 128 KB.
    #[error("the message is too large")]
    PayloadTooLarge,
    /// 429: the connection's outbound buffer is full, or the account is throttled.
    #[error("throttled")]
    Throttled,
    #[error("push failed: {0}")]
    Other(String),
}

/// PostToConnection, as the handlers use it.
#[async_trait]
pub trait ConnectionPusher: Send + Sync {
    async fn post_to_connection(&self, connection_id: &str, data: &[u8]) -> Result<(), PushError>;
}

/// Wall-clock time, so tests can control it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// Most members a party can have: FlexMatch takes at most ten players in one matchmaking request.
pub const MAX_PARTY_MEMBERS: usize = 10;

/// One member of a party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartyMember {
    pub player_id: String,
    /// When the member joined (epoch ms). Members are kept in joining order, so the first one
    /// after the leader is the longest-standing.
    pub joined_at: i64,
    /// Set with `setReady`; the leader can only start matchmaking when every other member is ready.
    pub ready: bool,
    /// What the member reported with `setReady`: their own latencies go into the ticket.
    #[serde(default)]
    pub latency_in_ms: BTreeMap<String, u32>,
    /// When the member's last connection went away (epoch ms). They keep their place for the
    /// disconnect grace; a reconnect clears it.
    #[serde(default)]
    pub disconnected_at: Option<i64>,
}

/// A row of `Parties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartyRecord {
    pub party_id: String,
    pub leader_id: String,
    /// In joining order; never empty (the last member leaving deletes the party).
    pub members: Vec<PartyMember>,
    /// The code other players join with: unguessable, and admits nobody after `invite_expires_at`.
    pub invite_code: String,
    /// Epoch seconds.
    pub invite_expires_at: i64,
    /// The most members this party may hold, fixed when it was created.
    pub max_members: usize,
    /// The party's latest ticket; it is live while the ticket's status is not terminal.
    #[serde(default)]
    pub active_ticket_id: Option<String>,
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// When the party was last written (epoch ms). A party whose `active_ticket_id` names no
    /// ticket yet is starting matchmaking, for a bounded time after this.
    #[serde(default)]
    pub updated_at: i64,
    /// Epoch seconds (DynamoDB TTL).
    pub expires_at: i64,
}

impl PartyRecord {
    pub fn member(&self, player_id: &str) -> Option<&PartyMember> {
        self.members.iter().find(|m| m.player_id == player_id)
    }

    pub fn is_member(&self, player_id: &str) -> bool {
        self.member(player_id).is_some()
    }
}

/// How a [`PartyChange`] writes the party row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyWrite {
    /// A new party: fails if the ID exists.
    Create,
    /// Only if the stored version is still this.
    Replace { expected_version: u64 },
    /// The last member left: only if the stored version is still this.
    Delete { expected_version: u64 },
}

/// One membership change, written all or nothing: the party row and each moving player's
/// party pointer. Conditions make racing changes safe: two joins of a full-but-one party both
/// read version N, and only one write of version N+1 lands.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyChange {
    /// The party as it is after the change (for `Delete`, as it was).
    pub party: PartyRecord,
    pub write: PartyWrite,
    /// Players entering the party, each with the party pointer they had when it was read
    /// (`None`, or a party that has since ended): it must still be that.
    pub joining: Vec<(String, Option<String>)>,
    /// Players leaving the party: their pointer must still be this party, and is cleared.
    pub leaving: Vec<String>,
}

#[async_trait]
pub trait PartyStore: Send + Sync {
    /// The party, unless it is missing or past its TTL.
    async fn get(&self, party_id: &str, now_ms: i64) -> Result<Option<PartyRecord>, StoreError>;
    /// The live party whose invite code is `invite_code`, unless the code has expired.
    async fn find_by_invite(&self, invite_code: &str, now_ms: i64) -> Result<Option<PartyRecord>, StoreError>;
    /// The party the player's pointer names. It may have ended since (TTL) or, after a crash,
    /// not list the player: callers check with `get`.
    async fn party_of(&self, player_id: &str) -> Result<Option<String>, StoreError>;
    /// Writes one membership change atomically; `ConditionFailed` if any condition fails, and
    /// then nothing is written.
    async fn apply(&self, change: &PartyChange) -> Result<(), StoreError>;
    /// Counts one invite-code lookup by `connection_id` in the window that started at
    /// `window_start_ms` (a later window starts the count over) and returns how many that window
    /// holds now, so lookups can be limited per connection and codes cannot be enumerated. The
    /// count lives with the connection's row and goes when it does.
    async fn count_invite_lookup(&self, connection_id: &str, window_start_ms: i64) -> Result<u32, StoreError>;
}
