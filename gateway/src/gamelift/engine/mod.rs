//! The matchmaker: rule sets, configurations, tickets, the matchmaking cycle, acceptance,
//! timeouts, placement and events.
//!
//! Match formation itself is `matchgate_flexmatch`'s pure `RuleSet::find_matches`; this module
//! owns the tickets' lives around it and says what happened as FlexMatch's events, in the order
//! FlexMatch publishes them.
//!
//! - [`rule_sets`] and [`configurations`]: what tickets are matched by;
//! - [`tickets`]: StartMatchmaking, StopMatchmaking and DescribeMatchmaking;
//! - [`acceptance`]: AcceptMatch and what a proposed match becomes when its players answer;
//! - [`cycle`]: the matchmaking cycle: timeouts, match formation and placement;
//! - [`events`]: what happened, as FlexMatch's events.

mod acceptance;
mod configurations;
mod cycle;
mod events;
mod rule_sets;
#[cfg(test)]
mod tests;
mod tickets;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use matchgate_flexmatch::{MAX_PLAYERS_PER_TICKET, RuleSet, Ticket};
use matchgate_lambdas::ports::Clock;
use matchgate_protocol::flexmatch::{
    DETAIL_TYPE, EventPlayer, EventTicket, GameSessionInfo, MatchmakingEvent, MatchmakingEventDetail,
    MatchmakingEventType as E, RuleEvaluationMetric, SOURCE,
};
use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration, Player, StartMatchmakingRequest};
use matchgate_protocol::ticket::TicketStatus;
use tokio::sync::{Notify, mpsc};

use super::placement::{Fleet, GameSession};

/// Most tickets one DescribeMatchmaking call may name (GameLift's limit).
pub const MAX_DESCRIBE_TICKETS: usize = 10;
/// How long an ended ticket stays describable, as GameLift keeps them.
pub const ENDED_TICKET_RETENTION_MS: i64 = 60 * 60 * 1000;

/// A stored rule set: its body as given, and parsed.
#[derive(Debug, Clone)]
pub struct StoredRuleSet {
    pub name: String,
    pub body: String,
    pub parsed: Arc<RuleSet>,
    pub creation_time_ms: i64,
}

#[derive(Debug, Clone)]
struct EngineTicket {
    configuration_name: String,
    status: TicketStatus,
    status_reason: Option<String>,
    status_message: Option<String>,
    start_time_ms: i64,
    end_time_ms: Option<i64>,
    players: Vec<Player>,
    /// playerId → team, once in a match.
    teams: BTreeMap<String, String>,
    game_session: Option<GameSession>,
    /// Every rule of the rule set, with the passes and failures FlexMatch reported for the
    /// potential matches this ticket was part of (zero until it is in one), for the
    /// `ruleEvaluationMetrics` of MatchmakingTimedOut and MatchmakingCancelled.
    rule_metrics: Vec<RuleEvaluationMetric>,
}

/// A match waiting for its players to accept.
#[derive(Debug, Clone)]
struct PendingMatch {
    configuration_name: String,
    ticket_ids: Vec<String>,
    deadline_ms: i64,
    accepted: BTreeSet<String>,
    rejected: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct EngineState {
    rule_sets: BTreeMap<String, StoredRuleSet>,
    configurations: BTreeMap<String, MatchmakingConfiguration>,
    tickets: HashMap<String, EngineTicket>,
    pending: BTreeMap<String, PendingMatch>,
}

/// Why a GameLift request was refused, with GameLift's exception names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GameLiftError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl GameLiftError {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::NotFound(_) => "NotFoundException",
        }
    }
}

/// Told of every StartMatchmaking and StopMatchmaking the engine receives, before it acts on
/// them: the rule-set lab's recorder and shadow rule set watch live traffic this way.
pub trait TicketObserver: Send + Sync + std::fmt::Debug {
    fn started(&self, request: &StartMatchmakingRequest, now_ms: i64);
    fn stopped(&self, _ticket_id: &str, _now_ms: i64) {}
}

/// FlexMatch, locally. Safe to share; every operation is short and never awaits under its lock.
pub struct LocalFlexMatch {
    state: Mutex<EngineState>,
    fleet: Fleet,
    region: String,
    account: String,
    clock: Arc<dyn Clock>,
    events: mpsc::UnboundedSender<MatchmakingEvent>,
    wake: Notify,
    observers: std::sync::RwLock<Vec<Arc<dyn TicketObserver>>>,
}

impl std::fmt::Debug for LocalFlexMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFlexMatch").field("region", &self.region).finish_non_exhaustive()
    }
}

impl LocalFlexMatch {
    /// A matchmaker whose events go to `events`, in the order they happen.
    pub fn new(
        region: impl Into<String>,
        fleet: Fleet,
        clock: Arc<dyn Clock>,
        events: mpsc::UnboundedSender<MatchmakingEvent>,
    ) -> Self {
        Self {
            state: Mutex::default(),
            fleet,
            region: region.into(),
            account: "000000000000".into(),
            clock,
            events,
            wake: Notify::new(),
            observers: std::sync::RwLock::default(),
        }
    }

    /// Adds an observer of every StartMatchmaking and StopMatchmaking from now on.
    pub fn observe(&self, observer: Arc<dyn TicketObserver>) {
        self.observers.write().unwrap_or_else(|p| p.into_inner()).push(observer);
    }

    fn observers(&self) -> Vec<Arc<dyn TicketObserver>> {
        self.observers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EngineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn configuration_arn(&self, name: &str) -> String {
        format!("arn:aws:gamelift:{}:{}:matchmakingconfiguration/{name}", self.region, self.account)
    }

    pub fn rule_set_arn(&self, name: &str) -> String {
        format!("arn:aws:gamelift:{}:{}:matchmakingruleset/{name}", self.region, self.account)
    }
}

/// The proposed match a ticket is waiting in, if any.
fn pending_match_of(state: &EngineState, ticket_id: &str) -> Option<String> {
    state.pending.iter().find(|(_, p)| p.ticket_ids.iter().any(|t| t == ticket_id)).map(|(m, _)| m.clone())
}

fn state_players(tickets: &HashMap<String, EngineTicket>, ticket_id: &str) -> Vec<String> {
    tickets.get(ticket_id).map(|t| t.players.iter().map(|p| p.player_id.clone()).collect()).unwrap_or_default()
}

fn as_refs(tickets: &[(String, EngineTicket)]) -> Vec<(&str, &EngineTicket)> {
    tickets.iter().map(|(id, t)| (id.as_str(), t)).collect()
}

/// GameLift names: letters, digits, `-` and `.`, up to 128.
fn valid_name(name: &str) -> Result<(), GameLiftError> {
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(GameLiftError::InvalidRequest(format!("Invalid name {name:?}")));
    }
    Ok(())
}

fn valid_ticket_id(id: &str) -> Result<(), GameLiftError> {
    valid_name(id).map_err(|_| GameLiftError::InvalidRequest(format!("Invalid ticket ID {id:?}")))
}
