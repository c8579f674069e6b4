//! Rule set parsing and validation, and the first match-formation strategy.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::{AttributeValue, Player, ProposedMatch, TeamAssignment, Ticket};

/// Why a rule set was refused: the JSON path of the offending value and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RuleSetError {
    pub path: String,
    pub reason: String,
}

impl RuleSetError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}

/// A team of the rule set, after `quantity` has been expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub name: String,
    pub min_players: usize,
    pub max_players: usize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRuleSet {
    name: Option<String>,
    rule_language_version: Option<String>,
    #[serde(default)]
    player_attributes: Vec<RawAttribute>,
    #[serde(default)]
    teams: Vec<RawTeam>,
}

#[derive(Debug, Deserialize)]
struct RawAttribute {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    default: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTeam {
    name: String,
    min_players: usize,
    max_players: usize,
    quantity: Option<usize>,
}

/// A validated FlexMatch rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    name: String,
    teams: Vec<Team>,
    defaults: BTreeMap<String, AttributeValue>,
}

impl RuleSet {
    /// Parses and validates a rule set body (the JSON that `CreateMatchmakingRuleSet` takes).
    pub fn parse(body: &str) -> Result<Self, RuleSetError> {
        let raw: RawRuleSet = serde_json::from_str(body)
            .map_err(|e| RuleSetError::new("$", format!("not a valid rule set document: {e}")))?;
        match raw.rule_language_version.as_deref() {
            Some("1.0") => {}
            Some(other) => {
                return Err(RuleSetError::new(
                    "$.ruleLanguageVersion",
                    format!("unsupported version {other:?}, expected \"1.0\""),
                ));
            }
            None => return Err(RuleSetError::new("$.ruleLanguageVersion", "is required")),
        }
        if raw.teams.is_empty() {
            return Err(RuleSetError::new("$.teams", "at least one team is required"));
        }
        let mut teams = Vec::new();
        for (i, t) in raw.teams.iter().enumerate() {
            if t.min_players > t.max_players {
                return Err(RuleSetError::new(
                    format!("$.teams[{i}].minPlayers"),
                    "must not exceed maxPlayers",
                ));
            }
            let quantity = t.quantity.unwrap_or(1);
            if quantity == 1 {
                teams.push(Team { name: t.name.clone(), min_players: t.min_players, max_players: t.max_players });
            } else {
                for n in 1..=quantity {
                    teams.push(Team {
                        name: format!("{}_{n}", t.name),
                        min_players: t.min_players,
                        max_players: t.max_players,
                    });
                }
            }
        }
        let mut defaults = BTreeMap::new();
        for (i, a) in raw.player_attributes.iter().enumerate() {
            if let Some(d) = &a.default {
                let value = match (a.kind.as_str(), d) {
                    ("number", serde_json::Value::Number(n)) => AttributeValue::N(n.as_f64().unwrap_or_default()),
                    ("string", serde_json::Value::String(s)) => AttributeValue::S(s.clone()),
                    _ => {
                        return Err(RuleSetError::new(
                            format!("$.playerAttributes[{i}].default"),
                            format!("does not match type {:?}", a.kind),
                        ));
                    }
                };
                defaults.insert(a.name.clone(), value);
            }
        }
        Ok(Self { name: raw.name.unwrap_or_default(), teams, defaults })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn teams(&self) -> &[Team] {
        &self.teams
    }

    /// The largest match this rule set can form.
    pub fn max_players(&self) -> usize {
        self.teams.iter().map(|t| t.max_players).sum()
    }

    /// Fills in the rule set's default for every declared attribute the player lacks.
    pub fn apply_defaults(&self, player: &mut Player) {
        for (name, value) in &self.defaults {
            player.attributes.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }

    /// Proposes disjoint matches from `pool`, taking tickets in arrival order and filling
    /// each team up to its maximum. `now_ms` is on the same clock as `Ticket::start_time_ms`.
    pub fn find_matches(&self, pool: &[Ticket], _now_ms: u64) -> Vec<ProposedMatch> {
        let mut order: Vec<&Ticket> = pool.iter().collect();
        order.sort_by_key(|t| t.start_time_ms);
        let mut used: HashSet<&str> = HashSet::new();
        let mut matches = Vec::new();
        loop {
            let mut teams: Vec<Vec<&Player>> = vec![Vec::new(); self.teams.len()];
            let mut ticket_ids = Vec::new();
            for ticket in order.iter().filter(|t| !used.contains(t.ticket_id.as_str())) {
                let party = ticket.players.len();
                // The emptiest team that still has room for the whole party.
                let slot = (0..self.teams.len())
                    .filter(|&i| teams[i].len() + party <= self.teams[i].max_players)
                    .min_by_key(|&i| teams[i].len());
                if let Some(i) = slot {
                    teams[i].extend(ticket.players.iter());
                    ticket_ids.push(ticket.ticket_id.as_str());
                }
            }
            let complete = teams.iter().zip(&self.teams).all(|(members, team)| members.len() >= team.min_players);
            if ticket_ids.is_empty() || !complete {
                return matches;
            }
            used.extend(ticket_ids.iter().copied());
            matches.push(ProposedMatch {
                ticket_ids: ticket_ids.iter().map(|s| s.to_string()).collect(),
                teams: teams
                    .iter()
                    .zip(&self.teams)
                    .map(|(members, team)| TeamAssignment {
                        name: team.name.clone(),
                        player_ids: members.iter().map(|p| p.player_id.clone()).collect(),
                    })
                    .collect(),
                rule_evaluation_metrics: Vec::new(),
            });
        }
    }
}
