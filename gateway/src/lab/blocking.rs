//! Which rule kept a ticket from matching: when a ticket times out, the pool it was searching
//! in is matched again by the same engine with one rule left out at a time. A rule without
//! which the ticket would have matched right then blocked it. Each check runs
//! `RuleSet::find_matches` once per rule, so only a sample of timeouts is examined — at most
//! [`PER_MINUTE`] per simulated minute and [`MAX_EXAMINED`] in all, spread over the run.

use std::collections::BTreeMap;

use matchgate_flexmatch::{RuleSet, Ticket};
use serde::Serialize;
use serde_json::Value;

use super::Arrival;
use super::simulator::SIM_EPOCH_MS;

/// Timeouts examined per simulated minute.
pub const PER_MINUTE: u64 = 5;
/// Timeouts examined in one run.
pub const MAX_EXAMINED: u64 = 500;

/// What the examined timeouts showed.
#[derive(Debug, Default)]
pub struct Blocking {
    /// The rule set as written, for ticket preparation and expansion steps.
    rule_set: Option<RuleSet>,
    /// Each rule that can be left out alone, and the rule set without it.
    variants: Vec<(String, RuleSet)>,
    /// `waitTimeSeconds` of every expansion step, in ms, sorted and distinct.
    step_waits: Vec<u64>,
    examined_in_minute: BTreeMap<u64, u64>,
    pub tally: BlockingTally,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockingTally {
    /// Timed-out tickets examined.
    pub examined: u64,
    /// Per rule: how many examined tickets it alone kept from a match, by the expansion step in
    /// force at their age (0 = the rule set as written).
    pub rules: BTreeMap<String, RuleBlock>,
    /// Examined tickets that no single rule blocked: too few compatible players were searching.
    pub no_single_rule: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleBlock {
    pub tickets: u64,
    /// Expansion step → tickets.
    pub by_expansion_step: BTreeMap<usize, u64>,
}

impl Blocking {
    pub fn new(body: &str) -> Self {
        let Ok(rule_set) = RuleSet::parse(body) else { return Self::default() };
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let variants = rule_variants(&rule_set, &json);
        let mut step_waits: Vec<u64> = json["expansions"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["steps"].as_array().into_iter().flatten())
            .filter_map(|s| s["waitTimeSeconds"].as_f64())
            .map(|w| (w * 1000.0) as u64)
            .collect();
        step_waits.sort_unstable();
        step_waits.dedup();
        Self { rule_set: Some(rule_set), variants, step_waits, ..Self::default() }
    }

    /// The expansion step in force for a ticket of this age.
    pub fn step_at(&self, age_ms: u64) -> usize {
        self.step_waits.partition_point(|w| *w <= age_ms)
    }

    /// Examines `ticket`, which timed out at `now_ms` while `pool` was searching.
    pub fn examine(&mut self, ticket: &Arrival, pool: &[&Arrival], now_ms: u64) {
        let Some(rule_set) = &self.rule_set else { return };
        let minute = now_ms / 60_000;
        let in_minute = self.examined_in_minute.entry(minute).or_default();
        if *in_minute >= PER_MINUTE || self.tally.examined >= MAX_EXAMINED {
            return;
        }
        *in_minute += 1;
        self.tally.examined += 1;
        let to_ticket = |a: &Arrival| Ticket {
            ticket_id: a.ticket_id.clone(),
            start_time_ms: (SIM_EPOCH_MS as u64) + a.at_ms,
            players: a
                .players
                .iter()
                .map(|p| {
                    let mut player = p.clone();
                    rule_set.apply_defaults(&mut player);
                    player
                })
                .collect(),
        };
        // The timed-out ticket first: the oldest ticket anchors the search.
        let tickets: Vec<Ticket> = std::iter::once(ticket)
            .chain(pool.iter().copied().filter(|a| a.ticket_id != ticket.ticket_id))
            .map(to_ticket)
            .collect();
        let at = (SIM_EPOCH_MS as u64) + now_ms;
        let step = self.step_at(now_ms.saturating_sub(ticket.at_ms));
        let mut blocked = false;
        for (name, variant) in &self.variants {
            let matched = variant.find_matches(&tickets, at).iter().any(|m| m.ticket_ids.contains(&ticket.ticket_id));
            if matched {
                blocked = true;
                let block = self.tally.rules.entry(name.clone()).or_default();
                block.tickets += 1;
                *block.by_expansion_step.entry(step).or_default() += 1;
            }
        }
        if !blocked {
            self.tally.no_single_rule += 1;
        }
    }
}

/// Each rule that can be left out alone, with the rule set without it.
pub fn rule_variants(rule_set: &RuleSet, json: &Value) -> Vec<(String, RuleSet)> {
    rule_set
        .rule_names()
        .filter_map(|name| Some((name.to_owned(), RuleSet::parse(&without_rule(json, name)?).ok()?)))
        .collect()
}

/// The rule set body without rule `name` and the expansions that target it; `None` when a
/// compound rule refers to it (leaving it out would not be a valid rule set).
fn without_rule(json: &Value, name: &str) -> Option<String> {
    let mut json = json.clone();
    let rules = json.get_mut("rules")?.as_array_mut()?;
    let referenced = rules
        .iter()
        .filter(|r| r["name"] != name)
        .filter_map(|r| r["statement"].as_str())
        .any(|s| s.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')).any(|token| token == name));
    if referenced {
        return None;
    }
    rules.retain(|r| r["name"] != name);
    if let Some(expansions) = json.get_mut("expansions").and_then(Value::as_array_mut) {
        let target = format!("rules[{name}]");
        expansions.retain(|e| !e["target"].as_str().is_some_and(|t| t.starts_with(&target)));
    }
    Some(json.to_string())
}
