//! FlexMatch, locally: rule sets and match formation as pure functions.
//!
//! This crate knows nothing about sockets, SNS or clocks. The caller owns the pool of
//! searching tickets and the current time; [`RuleSet::find_matches`] proposes disjoint
//! matches from that pool. Placement, acceptance, timeouts and events live in the gateway.
//!
//! - [`RuleSet::parse`] / [`RuleSet::validate_all`]: every section of the rule set schema
//!   (attributes, teams with `quantity`, all eight rule types with their property
//!   expressions, expansions, algorithm), each error with its JSON path.
//! - [`RuleSet::find_matches`]: `exhaustiveSearch` (up to 40 players) and `balanced` (41–200),
//!   anchored on the oldest ticket, expansions applied by the newest or oldest ticket's age.
//! - [`RuleSet::acceptable_regions`]: where a formed match may be placed, for the queue.
//! - [`RuleSet::check_player`] / [`RuleSet::apply_defaults`]: attributes typed by the rule set.

#[doc(hidden)]
pub mod bench_support;
mod expr;
mod matcher;
mod ruleset;

// GameLift's types have their home in the protocol crate; the engine speaks them as they are.
pub use matcher::SEARCH_BUDGET_PER_ANCHOR;
pub use matchgate_protocol::flexmatch::RuleEvaluationMetric;
pub use matchgate_protocol::gamelift::{AttributeValue, Player};
pub use ruleset::{
    Algorithm, AttributeType, BackfillPriority, BatchingPreference, ExpansionAgeSelection, MAX_MATCH_PLAYERS,
    MAX_PLAYERS_PER_TICKET, MAX_SMALL_MATCH_PLAYERS, RuleSet, RuleSetError, Strategy, Team,
};

/// A matchmaking ticket in the pool: 1–10 players who stay together on one team.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub ticket_id: String,
    /// When the ticket entered matchmaking, in milliseconds on the caller's clock; rule
    /// expansions are applied by ticket age (`now_ms - start_time_ms`).
    pub start_time_ms: u64,
    pub players: Vec<Player>,
}

/// A match the rule set accepts: which tickets, and which player goes on which team.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedMatch {
    pub ticket_ids: Vec<String>,
    pub teams: Vec<TeamAssignment>,
    pub rule_evaluation_metrics: Vec<RuleEvaluationMetric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamAssignment {
    pub name: String,
    pub player_ids: Vec<String>,
}
