//! The discrete-event simulation: a priority queue of timed events (arrivals, matchmaking
//! cycles on the batching interval, players' acceptance answers) drives the local stack's own
//! [`LocalFlexMatch`] on a virtual clock, and what happened is read from the FlexMatch events it
//! publishes. No wall clock and no sleeps: an hour of traffic runs in seconds, and the same
//! seed gives the same result.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use matchgate_lambdas::adapters::memory::ManualClock;
use matchgate_lambdas::ports::Clock;
use matchgate_protocol::flexmatch::{MatchmakingEvent, MatchmakingEventType as E, RuleEvaluationMetric};
use matchgate_protocol::gamelift::StartMatchmakingRequest;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use super::blocking::Blocking;
use super::{Arrival, LabError};
use crate::gamelift::{Fleet, FleetConfig, LocalFlexMatch, MatchmakingConfiguration};

/// The virtual clock's zero: 2026-01-01T00:00:00Z. Event timestamps are this plus simulated time.
pub const SIM_EPOCH_MS: i64 = 1_767_225_600_000;
/// Events one simulation may process before it gives up (a runaway acceptance loop, say).
pub const MAX_EVENTS: u64 = 100_000_000;

/// How simulated players answer a proposed match when the configuration requires acceptance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcceptanceModel {
    /// The chance that a player accepts; the others never answer (they walked away), so the
    /// match waits for the acceptance timeout.
    pub probability: f64,
    /// Players answer uniformly within this many milliseconds of the proposal.
    pub response_ms: (u64, u64),
}

impl Default for AcceptanceModel {
    fn default() -> Self {
        Self { probability: 0.95, response_ms: (1_000, 8_000) }
    }
}

/// Everything a run needs besides its arrivals.
#[derive(Debug, Clone)]
pub struct SimulationSetup {
    pub rule_set_body: String,
    pub configuration: MatchmakingConfiguration,
    /// Matchmaking cycles run every this many simulated milliseconds while tickets are live.
    pub batching_interval_ms: u64,
    pub acceptance: AcceptanceModel,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Matched,
    TimedOut,
    Cancelled,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::TimedOut => "timedOut",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// How one ticket ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketResult {
    /// Simulated milliseconds since the start.
    pub end_ms: u64,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Index into [`Simulation::matches`].
    pub match_index: Option<usize>,
    /// The rule metrics of MatchmakingTimedOut / MatchmakingCancelled.
    pub rule_metrics: Vec<RuleEvaluationMetric>,
}

/// A match FlexMatch reported as MatchmakingSucceeded.
#[derive(Debug, Clone, PartialEq)]
pub struct FormedMatch {
    pub at_ms: u64,
    pub ticket_ids: Vec<String>,
    /// Team name → player IDs.
    pub teams: BTreeMap<String, Vec<String>>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Simulation {
    pub arrivals: Vec<Arrival>,
    /// Per arrival, in order; `None` for a ticket still live when the run ended (never, as
    /// every ticket times out eventually).
    pub results: Vec<Option<TicketResult>>,
    pub matches: Vec<FormedMatch>,
    pub potential_matches: u64,
    pub blocking: Blocking,
    pub end_ms: u64,
    pub cycles: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    // At one instant answers and arrivals come first, so the cycle at that instant sees them.
    Answer { ticket_id: String, player_id: String },
    Arrival(usize),
    Cycle,
}

/// Runs `arrivals` (sorted by time) through the engine.
pub fn run(setup: &SimulationSetup, arrivals: Vec<Arrival>) -> Result<Simulation, LabError> {
    let clock = Arc::new(ManualClock::new(SIM_EPOCH_MS));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = LocalFlexMatch::new("us-east-1", Fleet::new(FleetConfig::default()), clock.clone(), tx);
    let configuration = &setup.configuration;
    engine
        .create_rule_set(&configuration.rule_set_name, &setup.rule_set_body)
        .map_err(|e| LabError::Configuration(e.to_string()))?;
    engine.create_configuration(configuration.clone()).map_err(|e| LabError::Configuration(e.to_string()))?;
    let interval = setup.batching_interval_ms.max(1);
    // Arrivals and acceptance answers draw from separate streams, so two rule sets compared on
    // one seed see identical arrivals whatever they match.
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
    rng.set_stream(1);
    let mut blocking = Blocking::new(&setup.rule_set_body);

    let mut sim = Simulation {
        results: vec![None; arrivals.len()],
        arrivals,
        matches: Vec::new(),
        potential_matches: 0,
        blocking: Blocking::default(),
        end_ms: 0,
        cycles: 0,
    };
    let index: HashMap<&str, usize> = sim.arrivals.iter().enumerate().map(|(i, a)| (a.ticket_id.as_str(), i)).collect();
    let mut queue: BinaryHeap<Reverse<(u64, Happening)>> =
        (0..sim.arrivals.len()).map(|i| Reverse((sim.arrivals[i].at_ms, Happening::Arrival(i)))).collect();
    let mut searching: BTreeSet<usize> = BTreeSet::new();
    let mut live = 0usize;
    let mut next_cycle: Option<u64> = None;
    let mut now = 0u64;
    let mut processed = 0u64;
    let mut results = std::mem::take(&mut sim.results);

    while let Some(Reverse((at, happening))) = queue.pop() {
        processed += 1;
        if processed > MAX_EVENTS {
            return Err(LabError::Bound(format!("the simulation passed {MAX_EVENTS} events and stopped")));
        }
        if at > now {
            clock.advance(Duration::from_millis(at - now));
            now = at;
        }
        let mut cycled = false;
        match happening {
            Happening::Arrival(i) => {
                let arrival = &sim.arrivals[i];
                let request = StartMatchmakingRequest {
                    configuration_name: configuration.name.clone(),
                    ticket_id: arrival.ticket_id.clone(),
                    players: arrival.players.clone(),
                };
                match engine.start(request) {
                    Ok(()) => live += 1,
                    Err(e) => {
                        // StartMatchmaking refused it (bad attributes in a recording, say).
                        results[i] = Some(TicketResult {
                            end_ms: now,
                            outcome: Outcome::Failed,
                            reason: Some(e.to_string()),
                            match_index: None,
                            rule_metrics: Vec::new(),
                        });
                    }
                }
                if next_cycle.is_none() {
                    let at = now.div_ceil(interval) * interval;
                    next_cycle = Some(at);
                    queue.push(Reverse((at, Happening::Cycle)));
                }
            }
            Happening::Answer { ticket_id, player_id } => {
                // Refused when the match already fell apart: the player's answer came too late.
                let _ = engine.accept(&ticket_id, &[player_id], true);
            }
            Happening::Cycle => {
                engine.cycle(clock.now_ms());
                sim.cycles += 1;
                next_cycle = None;
                cycled = true;
            }
        }
        let mut timed_out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            let ended = on_event(
                event,
                now,
                &index,
                setup,
                &mut rng,
                &mut queue,
                &mut searching,
                &mut results,
                &mut sim.matches,
                &mut sim.potential_matches,
            );
            live -= ended.len();
            timed_out.extend(
                ended.into_iter().filter(|&i| results[i].as_ref().is_some_and(|r| r.outcome == Outcome::TimedOut)),
            );
        }
        if !timed_out.is_empty() {
            // The engine ends a cycle's timeouts in no particular order; the sample must not care.
            timed_out.sort_unstable();
            let pool: Vec<&Arrival> = searching.iter().map(|&i| &sim.arrivals[i]).collect();
            for i in timed_out {
                blocking.examine(&sim.arrivals[i], &pool, now);
            }
        }
        if cycled && live > 0 {
            next_cycle = Some(now + interval);
            queue.push(Reverse((now + interval, Happening::Cycle)));
        }
    }
    sim.results = results;
    sim.blocking = blocking;
    sim.end_ms = now;
    Ok(sim)
}

/// Reads one FlexMatch event; returns the arrivals it ended.
#[allow(clippy::too_many_arguments)]
fn on_event(
    event: MatchmakingEvent,
    now: u64,
    index: &HashMap<&str, usize>,
    setup: &SimulationSetup,
    rng: &mut ChaCha8Rng,
    queue: &mut BinaryHeap<Reverse<(u64, Happening)>>,
    searching: &mut BTreeSet<usize>,
    results: &mut [Option<TicketResult>],
    matches: &mut Vec<FormedMatch>,
    potential_matches: &mut u64,
) -> Vec<usize> {
    let detail = event.detail;
    let tickets: Vec<usize> = detail.tickets.iter().filter_map(|t| index.get(t.ticket_id.as_str()).copied()).collect();
    let mut ended = Vec::new();
    let mut end = |i: usize, result: TicketResult| {
        if results[i].is_none() {
            results[i] = Some(result);
            ended.push(i);
        }
    };
    match detail.event_type {
        E::MatchmakingSearching => searching.extend(&tickets),
        E::PotentialMatchCreated => {
            *potential_matches += 1;
            for i in &tickets {
                searching.remove(i);
            }
            if detail.acceptance_required == Some(true) {
                let (lo, hi) = setup.acceptance.response_ms;
                for t in &detail.tickets {
                    for p in &t.players {
                        if rng.random_bool(setup.acceptance.probability.clamp(0.0, 1.0)) {
                            let delay = if lo < hi { rng.random_range(lo..=hi) } else { lo };
                            let answer =
                                Happening::Answer { ticket_id: t.ticket_id.clone(), player_id: p.player_id.clone() };
                            queue.push(Reverse((now + delay, answer)));
                        }
                    }
                }
            }
        }
        E::MatchmakingSucceeded => {
            let mut teams: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for p in detail.tickets.iter().flat_map(|t| &t.players) {
                teams.entry(p.team.clone().unwrap_or_default()).or_default().push(p.player_id.clone());
            }
            let match_index = matches.len();
            matches.push(FormedMatch {
                at_ms: now,
                ticket_ids: detail.tickets.iter().map(|t| t.ticket_id.clone()).collect(),
                teams,
            });
            for &i in &tickets {
                searching.remove(&i);
                end(
                    i,
                    TicketResult {
                        end_ms: now,
                        outcome: Outcome::Matched,
                        reason: None,
                        match_index: Some(match_index),
                        rule_metrics: Vec::new(),
                    },
                );
            }
        }
        E::MatchmakingTimedOut | E::MatchmakingCancelled | E::MatchmakingFailed => {
            let outcome = match detail.event_type {
                E::MatchmakingTimedOut => Outcome::TimedOut,
                E::MatchmakingCancelled => Outcome::Cancelled,
                _ => Outcome::Failed,
            };
            for &i in &tickets {
                searching.remove(&i);
                end(
                    i,
                    TicketResult {
                        end_ms: now,
                        outcome,
                        reason: detail.reason.clone(),
                        match_index: None,
                        rule_metrics: detail.rule_evaluation_metrics.clone().unwrap_or_default(),
                    },
                );
            }
        }
        _ => {}
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamelift::FlexMatchMode;
    use crate::lab::population::PopulationSpec;
    use crate::lab::report::Report;

    /// 2v2 on skill: `max_distance` apart at most.
    fn rule_set(max_distance: u32) -> String {
        format!(
            r#"{{
            "name": "lab-{max_distance}", "ruleLanguageVersion": "1.0",
            "playerAttributes": [{{ "name": "skill", "type": "number", "default": 50 }}],
            "teams": [{{ "name": "red", "minPlayers": 2, "maxPlayers": 2 }}, {{ "name": "blue", "minPlayers": 2, "maxPlayers": 2 }}],
            "rules": [{{ "name": "FairSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": {max_distance} }}]
        }}"#
        )
    }

    const POPULATION: &str = r#"{
        "durationSeconds": 300,
        "arrivals": { "type": "constant", "ticketsPerSecond": 0.5 },
        "attributes": { "skill": { "type": "uniform", "min": 0, "max": 100 } }
    }"#;

    fn setup(body: String, acceptance_required: bool, probability: f64) -> SimulationSetup {
        SimulationSetup {
            rule_set_body: body,
            configuration: MatchmakingConfiguration {
                name: "lab".into(),
                rule_set_name: "lab".into(),
                request_timeout_seconds: 60,
                acceptance_required,
                acceptance_timeout_seconds: Some(15),
                flex_match_mode: FlexMatchMode::Standalone,
                ..MatchmakingConfiguration::default()
            },
            batching_interval_ms: 1000,
            acceptance: AcceptanceModel { probability, ..AcceptanceModel::default() },
            seed: 3,
        }
    }

    fn report(setup: &SimulationSetup, seed: u64) -> Report {
        let rules = matchgate_flexmatch::RuleSet::parse(&setup.rule_set_body).unwrap();
        let spec = PopulationSpec::parse(POPULATION).unwrap();
        spec.validate(&rules).unwrap();
        let setup = SimulationSetup { seed, ..setup.clone() };
        let sim = run(&setup, spec.generate(seed).unwrap()).unwrap();
        Report::new("lab", &setup, &sim)
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let s = setup(rule_set(10), true, 0.9);
        let a = serde_json::to_string(&report(&s, 5)).unwrap();
        assert_eq!(a, serde_json::to_string(&report(&s, 5)).unwrap());
        assert_ne!(a, serde_json::to_string(&report(&s, 6)).unwrap());
    }

    #[test]
    fn a_loose_rule_set_matches_faster_than_a_strict_one() {
        let strict = report(&setup(rule_set(5), false, 1.0), 1);
        let loose = report(&setup(rule_set(40), false, 1.0), 1);
        assert_eq!(strict.tickets, loose.tickets, "one population");
        assert!(loose.time_to_match.p50 < strict.time_to_match.p50, "{loose:?}\n{strict:?}");
        assert!(loose.outcomes.timeout_rate < strict.outcomes.timeout_rate, "{loose:?}\n{strict:?}");
        // The price: wider skill spread within a match.
        assert!(loose.match_quality.attribute_spread["skill"].p95 > strict.match_quality.attribute_spread["skill"].p95);
        assert!(strict.match_quality.attribute_spread["skill"].max <= 5.0);
    }

    #[test]
    fn players_who_never_accept_cancel_every_ticket_they_were_proposed_in() {
        let r = report(&setup(rule_set(100), true, 0.0), 1);
        assert_eq!(r.outcomes.matched, 0, "{r:?}");
        assert!(r.outcomes.cancelled > 0, "{r:?}");
        let r = report(&setup(rule_set(100), true, 1.0), 1);
        assert_eq!(r.outcomes.cancelled, 0, "{r:?}");
        // A match completes only once its last player answered.
        assert!(r.time_to_match.p50 >= AcceptanceModel::default().response_ms.0 as f64 / 1000.0, "{r:?}");
    }

    #[test]
    fn the_rule_that_blocked_timed_out_tickets_is_named() {
        // Skill 0 to 100 with at most 1 apart and one ticket every 2 s: most never find three others.
        let r = report(&setup(rule_set(1), false, 1.0), 1);
        assert!(r.outcomes.timed_out > 0, "{r:?}");
        let b = &r.blocking_rules;
        assert!(b.examined > 0);
        assert!(b.rules["FairSkill"].tickets > 0, "{b:?}");
    }

    #[test]
    fn every_ticket_ends_and_the_counts_add_up() {
        let r = report(&setup(rule_set(10), true, 0.8), 2);
        let o = &r.outcomes;
        assert_eq!(o.matched + o.timed_out + o.cancelled + o.failed, r.tickets);
        assert_eq!(r.over_time.arrivals.iter().sum::<u64>(), r.tickets);
        assert_eq!(r.over_time.matches.iter().sum::<u64>(), r.match_quality.matches);
    }
}
