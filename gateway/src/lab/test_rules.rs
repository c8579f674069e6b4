//! `matchgate test-rules RULESET SAMPLES`: sample tickets and what should become of them,
//! run through the engine; each expectation passes or fails with the rule that decided it.
//!
//! ```json
//! {
//!   "tickets": [
//!     { "ticketId": "ana", "waitSeconds": 0,
//!       "players": [{ "PlayerId": "ana", "PlayerAttributes": { "skill": { "N": 10 } } }] }
//!   ],
//!   "expectations": [
//!     { "name": "close skills play together", "together": ["ana", "ben"] },
//!     { "name": "a pro never meets a newcomer", "apart": ["ana", "pro"] }
//!   ]
//! }
//! ```
//!
//! Tickets arrive so that each has searched `waitSeconds` when the last one arrives; the
//! simulated matchmaker then runs until every ticket has matched or timed out. The deciding
//! rule is found with the same engine: the rules without which the expectation's own tickets,
//! searching at their `waitSeconds`, would have met (or, for `together`, would have matched).

use std::collections::{BTreeMap, BTreeSet};

use matchgate_flexmatch::{RuleSet, Ticket};
use matchgate_protocol::gamelift::Player;
use serde::Deserialize;

use super::blocking::rule_variants;
use super::simulator::{self, AcceptanceModel, Outcome, SIM_EPOCH_MS, SimulationSetup};
use super::{Arrival, LabError};
use crate::gamelift::MatchmakingConfiguration;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Samples {
    pub tickets: Vec<SampleTicket>,
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleTicket {
    pub ticket_id: String,
    /// How long this ticket has been searching when the last sample ticket arrives.
    #[serde(default)]
    pub wait_seconds: f64,
    /// GameLift's `Player` shape.
    pub players: Vec<Player>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expectation {
    pub name: String,
    /// These tickets end up in one match.
    #[serde(default)]
    pub together: Vec<String>,
    /// No two of these tickets end up in one match.
    #[serde(default)]
    pub apart: Vec<String>,
}

/// One expectation's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub name: String,
    pub passed: bool,
    /// What happened, and the rule that decided it.
    pub explanation: String,
}

impl Samples {
    pub fn parse(file: &str, text: &str) -> Result<Self, LabError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let samples: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            LabError::Usage(format!("{file}: {path}: {}", e.into_inner()))
        })?;
        let mut ids = BTreeSet::new();
        for (i, t) in samples.tickets.iter().enumerate() {
            if !ids.insert(t.ticket_id.as_str()) {
                return Err(LabError::Usage(format!("{file}: tickets[{i}].ticketId: {:?} appears twice", t.ticket_id)));
            }
            if !(t.wait_seconds.is_finite() && t.wait_seconds >= 0.0) {
                return Err(LabError::Usage(format!("{file}: tickets[{i}].waitSeconds: must be 0 or more")));
            }
        }
        for (i, e) in samples.expectations.iter().enumerate() {
            let (field, list) = match (e.together.is_empty(), e.apart.is_empty()) {
                (false, true) => ("together", &e.together),
                (true, false) => ("apart", &e.apart),
                _ => {
                    return Err(LabError::Usage(format!(
                        "{file}: expectations[{i}]: give exactly one of together or apart"
                    )));
                }
            };
            if list.len() < 2 {
                return Err(LabError::Usage(format!("{file}: expectations[{i}].{field}: name at least two tickets")));
            }
            if let Some(unknown) = list.iter().find(|t| !ids.contains(t.as_str())) {
                return Err(LabError::Usage(format!(
                    "{file}: expectations[{i}].{field}: no sample ticket {unknown:?}"
                )));
            }
        }
        Ok(samples)
    }
}

/// Runs the samples through the engine and judges every expectation.
pub fn run(
    rule_set_body: &str,
    rule_set: &RuleSet,
    configuration: MatchmakingConfiguration,
    samples: &Samples,
) -> Result<Vec<Verdict>, LabError> {
    let latest = samples.tickets.iter().map(|t| t.wait_seconds).fold(0.0, f64::max);
    let mut arrivals: Vec<Arrival> = samples
        .tickets
        .iter()
        .map(|t| Arrival {
            at_ms: ((latest - t.wait_seconds) * 1000.0).round() as u64,
            ticket_id: t.ticket_id.clone(),
            players: t.players.clone(),
        })
        .collect();
    arrivals.sort_by_key(|a| a.at_ms);
    let setup = SimulationSetup {
        rule_set_body: rule_set_body.to_owned(),
        // Samples test the rules, not the players' answers.
        configuration: MatchmakingConfiguration { acceptance_required: false, ..configuration },
        batching_interval_ms: 1000,
        acceptance: AcceptanceModel::default(),
        seed: 1,
    };
    let sim = simulator::run(&setup, arrivals)?;
    // Ticket → the match it joined.
    let mut joined: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused: BTreeMap<&str, String> = BTreeMap::new();
    for (a, r) in sim.arrivals.iter().zip(&sim.results) {
        match r {
            Some(r) if r.outcome == Outcome::Matched => {
                if let Some(m) = r.match_index {
                    joined.insert(&a.ticket_id, m);
                }
            }
            Some(r) if r.outcome == Outcome::Failed => {
                refused.insert(&a.ticket_id, r.reason.clone().unwrap_or_default());
            }
            _ => {}
        }
    }
    // Every sample ticket searching at its age, for the counterfactuals.
    let at = SIM_EPOCH_MS as u64 + (latest * 1000.0).round() as u64;
    let pool: Vec<Ticket> = sim
        .arrivals
        .iter()
        .filter(|a| !refused.contains_key(a.ticket_id.as_str()))
        .map(|a| Ticket {
            ticket_id: a.ticket_id.clone(),
            start_time_ms: SIM_EPOCH_MS as u64 + a.at_ms,
            players: a
                .players
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    rule_set.apply_defaults(&mut p);
                    p
                })
                .collect(),
        })
        .collect();
    let json: serde_json::Value = serde_json::from_str(rule_set_body).unwrap_or(serde_json::Value::Null);
    let variants = rule_variants(rule_set, &json);
    // Only the expectation's own tickets, so the question is whether the rules let them meet.
    let only =
        |ids: &[String]| -> Vec<Ticket> { pool.iter().filter(|t| ids.contains(&t.ticket_id)).cloned().collect() };
    let together_in = |rs: &RuleSet, ids: &[String]| {
        rs.find_matches(&only(ids), at).iter().any(|m| ids.iter().all(|id| m.ticket_ids.contains(id)))
    };
    let any_pair_in = |rs: &RuleSet, ids: &[String]| {
        rs.find_matches(&only(ids), at).iter().any(|m| ids.iter().filter(|id| m.ticket_ids.contains(id)).count() >= 2)
    };
    let names = |rules: Vec<&String>| rules.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");

    Ok(samples
        .expectations
        .iter()
        .map(|e| {
            if let Some((t, why)) = e.together.iter().chain(&e.apart).find_map(|t| refused.get_key_value(t.as_str())) {
                return Verdict {
                    name: e.name.clone(),
                    passed: false,
                    explanation: format!("StartMatchmaking refused ticket {t}: {why}"),
                };
            }
            if !e.together.is_empty() {
                let matches: BTreeSet<Option<&usize>> = e.together.iter().map(|t| joined.get(t.as_str())).collect();
                let passed = matches.len() == 1 && matches.iter().all(Option::is_some);
                let explanation = if passed {
                    "matched together".to_owned()
                } else {
                    let deciding: Vec<&String> =
                        variants.iter().filter(|(_, v)| together_in(v, &e.together)).map(|(n, _)| n).collect();
                    if deciding.is_empty() {
                        "not matched together; no single rule kept them apart (team sizes, or other tickets took the places)".to_owned()
                    } else {
                        format!("not matched together; decided by rule {} (without it they would be)", names(deciding))
                    }
                };
                return Verdict { name: e.name.clone(), passed, explanation };
            }
            let mut seen = BTreeMap::new();
            let clash = e.apart.iter().find_map(|t| {
                let m = joined.get(t.as_str())?;
                seen.insert(*m, t).map(|other| (other.clone(), t.clone()))
            });
            match clash {
                Some((a, b)) => Verdict {
                    name: e.name.clone(),
                    passed: false,
                    explanation: format!("{a} and {b} matched together; every rule passed that match"),
                },
                None => {
                    let deciding: Vec<&String> =
                        variants.iter().filter(|(_, v)| any_pair_in(v, &e.apart)).map(|(n, _)| n).collect();
                    let explanation = if deciding.is_empty() {
                        "kept apart (no single rule decided it: team sizes or other tickets did)".to_owned()
                    } else {
                        format!("kept apart by rule {}", names(deciding))
                    };
                    Verdict { name: e.name.clone(), passed: true, explanation }
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"{
        "name": "duel", "ruleLanguageVersion": "1.0",
        "playerAttributes": [{ "name": "skill", "type": "number", "default": 10 }],
        "teams": [{ "name": "red", "minPlayers": 1, "maxPlayers": 1 }, { "name": "blue", "minPlayers": 1, "maxPlayers": 1 }],
        "rules": [{ "name": "FairSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 10 },
                  { "name": "FastConnection", "type": "latency", "maxLatency": 100 }]
    }"#;

    fn ticket(id: &str, skill: u32, ms: u32) -> String {
        format!(
            r#"{{ "ticketId": "{id}", "players": [{{ "PlayerId": "{id}", "PlayerAttributes": {{ "skill": {{ "N": {skill} }} }}, "LatencyInMs": {{ "us-east-1": {ms} }} }}] }}"#
        )
    }

    fn verdicts(expectations: &str) -> Vec<Verdict> {
        let text = format!(
            r#"{{ "tickets": [{}, {}, {}, {}], "expectations": {expectations} }}"#,
            ticket("ana", 10, 30),
            ticket("ben", 15, 40),
            ticket("pro", 90, 30),
            ticket("far", 92, 300)
        );
        let samples = Samples::parse("samples.json", &text).unwrap();
        let rule_set = RuleSet::parse(RULES).unwrap();
        let configuration = MatchmakingConfiguration {
            name: "duel".into(),
            rule_set_name: "duel".into(),
            request_timeout_seconds: 30,
            ..MatchmakingConfiguration::default()
        };
        run(RULES, &rule_set, configuration, &samples).unwrap()
    }

    #[test]
    fn each_expectation_passes_or_fails_with_the_rule_that_decided_it() {
        let v = verdicts(
            r#"[{ "name": "close skills", "together": ["ana", "ben"] },
                { "name": "pro and newcomer", "apart": ["ana", "pro"] },
                { "name": "far pro plays pro", "together": ["pro", "far"] },
                { "name": "wrong: newcomers apart", "apart": ["ana", "ben"] }]"#,
        );
        assert!(v[0].passed, "{v:?}");
        assert!(v[1].passed && v[1].explanation.contains("FairSkill"), "{v:?}");
        assert!(!v[2].passed && v[2].explanation.contains("FastConnection"), "{v:?}");
        assert!(!v[3].passed && v[3].explanation.contains("matched together"), "{v:?}");
    }

    #[test]
    fn a_sample_file_naming_an_unknown_ticket_is_refused() {
        let text = format!(
            r#"{{ "tickets": [{}], "expectations": [{{ "name": "x", "together": ["ana", "nobody"] }}] }}"#,
            ticket("ana", 10, 30)
        );
        let e = Samples::parse("s.json", &text).unwrap_err().to_string();
        assert!(e.contains("expectations[0].together") && e.contains("nobody"), "{e}");
    }
}
