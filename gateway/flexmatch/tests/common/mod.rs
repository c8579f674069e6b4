//! Builders shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use matchgate_flexmatch::{AttributeValue, Player, ProposedMatch, RuleSet, Ticket};

pub fn fixture_text(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture(name: &str) -> RuleSet {
    RuleSet::parse(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn n(x: f64) -> AttributeValue {
    AttributeValue::N(x)
}

pub fn s(x: &str) -> AttributeValue {
    AttributeValue::S(x.to_string())
}

pub fn sl(items: &[&str]) -> AttributeValue {
    AttributeValue::SL(items.iter().map(|i| i.to_string()).collect())
}

pub fn sdm(items: &[(&str, f64)]) -> AttributeValue {
    AttributeValue::SDM(items.iter().map(|(k, v)| (k.to_string(), *v)).collect())
}

pub fn player(id: &str, attributes: &[(&str, AttributeValue)], latency: &[(&str, u32)]) -> Player {
    Player {
        player_id: id.to_string(),
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        latency_in_ms: latency.iter().map(|(r, ms)| (r.to_string(), *ms)).collect::<BTreeMap<_, _>>(),
    }
}

pub fn ticket(id: &str, start_time_ms: u64, players: Vec<Player>) -> Ticket {
    Ticket { ticket_id: id.to_string(), start_time_ms, players }
}

/// A one-player ticket whose ticket ID is the player ID with a `t-` prefix.
pub fn solo(id: &str, start_time_ms: u64, attributes: &[(&str, AttributeValue)], latency: &[(&str, u32)]) -> Ticket {
    ticket(&format!("t-{id}"), start_time_ms, vec![player(id, attributes, latency)])
}

pub fn team<'a>(m: &'a ProposedMatch, name: &str) -> &'a [String] {
    &m.teams.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no team {name} in {m:?}")).player_ids
}

pub fn all_players(m: &ProposedMatch) -> Vec<String> {
    let mut all: Vec<String> = m.teams.iter().flat_map(|t| t.player_ids.clone()).collect();
    all.sort();
    all
}

pub const SECOND: u64 = 1_000;
