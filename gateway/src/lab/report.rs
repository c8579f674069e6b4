//! What a simulation means to a designer: time to match overall and per segment, outcome
//! rates, match quality, the rules that blocked tickets, matches over time. Serialized as the
//! `--json` output (byte-identical for the same inputs and seed) and printed as a summary.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use matchgate_protocol::gamelift::{AttributeValue, Player};
use serde::Serialize;

use super::blocking::BlockingTally;
use super::simulator::{Outcome, Simulation, SimulationSetup};

/// Buckets of the matches-over-time series, at most.
const TIME_BUCKETS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub rule_set: String,
    pub seed: u64,
    pub configuration: ConfigurationSummary,
    pub simulated_seconds: f64,
    pub tickets: u64,
    pub players: u64,
    pub outcomes: Outcomes,
    /// Seconds from StartMatchmaking to MatchmakingSucceeded, of matched tickets.
    pub time_to_match: Waits,
    pub segments: Vec<Segment>,
    pub match_quality: MatchQuality,
    pub blocking_rules: BlockingTally,
    /// Per rule, FlexMatch's `ruleEvaluationMetrics` summed over timed-out and cancelled tickets.
    pub rule_evaluation_metrics: BTreeMap<String, PassFail>,
    pub over_time: OverTime,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSummary {
    pub request_timeout_seconds: u32,
    pub acceptance_required: bool,
    pub acceptance_timeout_seconds: u32,
    pub acceptance_probability: f64,
    pub batching_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    pub matched: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub match_rate: f64,
    pub timeout_rate: f64,
    pub cancellation_rate: f64,
    pub failure_rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waits {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// `partySize`, `region` (the players' home region: their lowest latency) or an attribute.
    pub dimension: String,
    pub name: String,
    pub tickets: u64,
    pub timeout_rate: f64,
    pub time_to_match: Waits,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchQuality {
    pub matches: u64,
    pub players_per_match: Spread,
    /// Per numeric attribute: highest minus lowest value among a match's players.
    pub attribute_spread: BTreeMap<String, Spread>,
    /// Per numeric attribute: highest minus lowest team average in a match.
    pub team_balance: BTreeMap<String, Spread>,
    /// The match's worst player latency in its best region (the one every player reported
    /// with the lowest worst latency), in ms.
    pub worst_latency_ms: Option<Spread>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassFail {
    pub passed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverTime {
    pub bucket_seconds: u64,
    /// Per bucket from the start: tickets that arrived, matches formed, tickets timed out.
    pub arrivals: Vec<u64>,
    pub matches: Vec<u64>,
    pub timeouts: Vec<u64>,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn rate(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { round(n as f64 / of as f64, 6) }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn waits(mut ms: Vec<u64>) -> Waits {
    ms.sort_unstable();
    let s: Vec<f64> = ms.iter().map(|&m| m as f64 / 1000.0).collect();
    Waits {
        count: s.len() as u64,
        p50: percentile(&s, 50.0),
        p95: percentile(&s, 95.0),
        p99: percentile(&s, 99.0),
        max: s.last().copied().unwrap_or(0.0),
    }
}

fn spread(mut values: Vec<f64>) -> Spread {
    values.sort_by(f64::total_cmp);
    Spread {
        p50: round(percentile(&values, 50.0), 3),
        p95: round(percentile(&values, 95.0), 3),
        max: round(values.last().copied().unwrap_or(0.0), 3),
    }
}

fn number(p: &Player, attribute: &str) -> Option<f64> {
    match p.attributes.get(attribute) {
        Some(AttributeValue::N(n)) => Some(*n),
        _ => None,
    }
}

/// A player's home region: the one with their lowest latency (ties by name).
fn home_region(p: &Player) -> Option<&str> {
    p.latency_in_ms.iter().min_by_key(|(r, ms)| (**ms, r.as_str())).map(|(r, _)| r.as_str())
}

impl Report {
    pub fn new(rule_set: &str, setup: &SimulationSetup, sim: &Simulation) -> Self {
        let c = &setup.configuration;
        let tickets = sim.arrivals.len() as u64;
        let count = |o: Outcome| sim.results.iter().flatten().filter(|r| r.outcome == o).count() as u64;
        let (matched, timed_out, cancelled, failed) =
            (count(Outcome::Matched), count(Outcome::TimedOut), count(Outcome::Cancelled), count(Outcome::Failed));
        let wait_of = |i: usize| {
            sim.results[i]
                .as_ref()
                .filter(|r| r.outcome == Outcome::Matched)
                .map(|r| r.end_ms.saturating_sub(sim.arrivals[i].at_ms))
        };
        let mut rule_evaluation_metrics: BTreeMap<String, PassFail> = BTreeMap::new();
        for m in sim.results.iter().flatten().flat_map(|r| &r.rule_metrics) {
            let e = rule_evaluation_metrics.entry(m.rule_name.clone()).or_default();
            e.passed += m.passed_count;
            e.failed += m.failed_count;
        }
        Self {
            rule_set: rule_set.to_owned(),
            seed: setup.seed,
            configuration: ConfigurationSummary {
                request_timeout_seconds: c.request_timeout_seconds,
                acceptance_required: c.acceptance_required,
                acceptance_timeout_seconds: c.acceptance_timeout(),
                acceptance_probability: setup.acceptance.probability,
                batching_interval_ms: setup.batching_interval_ms,
            },
            simulated_seconds: sim.end_ms as f64 / 1000.0,
            tickets,
            players: sim.arrivals.iter().map(|a| a.players.len() as u64).sum(),
            outcomes: Outcomes {
                matched,
                timed_out,
                cancelled,
                failed,
                match_rate: rate(matched, tickets),
                timeout_rate: rate(timed_out, tickets),
                cancellation_rate: rate(cancelled, tickets),
                failure_rate: rate(failed, tickets),
            },
            time_to_match: waits((0..sim.arrivals.len()).filter_map(wait_of).collect()),
            segments: segments(sim, &wait_of),
            match_quality: quality(sim),
            blocking_rules: sim.blocking.tally.clone(),
            rule_evaluation_metrics,
            over_time: over_time(sim),
        }
    }

    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let o = &self.outcomes;
        let w = &self.time_to_match;
        let pct = |r: f64| format!("{:.2}%", r * 100.0);
        let _ = writeln!(
            out,
            "rule set {}: {} tickets ({} players) over {:.0} simulated s, seed {}",
            self.rule_set, self.tickets, self.players, self.simulated_seconds, self.seed
        );
        let _ = writeln!(
            out,
            "  matched {} ({}), timed out {} ({}), cancelled {} ({}), failed {} ({})",
            o.matched,
            pct(o.match_rate),
            o.timed_out,
            pct(o.timeout_rate),
            o.cancelled,
            pct(o.cancellation_rate),
            o.failed,
            pct(o.failure_rate)
        );
        let _ = writeln!(
            out,
            "  time to match: p50 {:.1}s  p95 {:.1}s  p99 {:.1}s  max {:.1}s",
            w.p50, w.p95, w.p99, w.max
        );
        let _ = writeln!(out, "  by segment:");
        for s in &self.segments {
            let _ = writeln!(
                out,
                "    {:<10} {:<24} {:>7} tickets  p50 {:>6.1}s  p95 {:>6.1}s  p99 {:>6.1}s  timeouts {}",
                s.dimension,
                s.name,
                s.tickets,
                s.time_to_match.p50,
                s.time_to_match.p95,
                s.time_to_match.p99,
                pct(s.timeout_rate)
            );
        }
        let q = &self.match_quality;
        let _ = writeln!(out, "  match quality over {} matches (p50 / p95 / max):", q.matches);
        for (a, s) in &q.attribute_spread {
            let _ = writeln!(out, "    {a} spread within a match     {} / {} / {}", s.p50, s.p95, s.max);
        }
        for (a, s) in &q.team_balance {
            let _ = writeln!(out, "    {a} gap between team averages {} / {} / {}", s.p50, s.p95, s.max);
        }
        if let Some(s) = &q.worst_latency_ms {
            let _ = writeln!(out, "    worst player latency (ms)      {} / {} / {}", s.p50, s.p95, s.max);
        }
        let b = &self.blocking_rules;
        if b.examined > 0 {
            let _ = writeln!(out, "  blocking rules ({} timed-out tickets examined):", b.examined);
            let mut rules: Vec<_> = b.rules.iter().collect();
            rules.sort_by(|x, y| y.1.tickets.cmp(&x.1.tickets).then_with(|| x.0.cmp(y.0)));
            for (name, block) in rules {
                let steps: Vec<String> =
                    block.by_expansion_step.iter().map(|(s, n)| format!("step {s}: {n}")).collect();
                let _ = writeln!(out, "    {name:<24} blocked {} ({})", block.tickets, steps.join(", "));
            }
            let _ = writeln!(out, "    {:<24} {}", "no single rule (too few players)", b.no_single_rule);
        }
        out
    }
}

fn segments(sim: &Simulation, wait_of: &dyn Fn(usize) -> Option<u64>) -> Vec<Segment> {
    // (dimension, name) → arrival indices.
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let numeric: Vec<String> = numeric_attributes(sim);
    let mut brackets: HashMap<&str, Vec<f64>> = HashMap::new();
    for a in &numeric {
        let mut values: Vec<f64> = sim.arrivals.iter().filter_map(|t| party_mean(&t.players, a)).collect();
        values.sort_by(f64::total_cmp);
        let mut bounds: Vec<f64> = [25.0, 50.0, 75.0].iter().map(|p| percentile(&values, *p)).collect();
        bounds.dedup();
        brackets.insert(a, bounds);
    }
    for (i, t) in sim.arrivals.iter().enumerate() {
        groups.entry(("partySize".into(), t.players.len().to_string())).or_default().push(i);
        if let Some(region) = t.players.first().and_then(home_region) {
            groups.entry(("region".into(), region.to_owned())).or_default().push(i);
        }
        for a in &numeric {
            if let Some(v) = party_mean(&t.players, a) {
                let bounds = &brackets[a.as_str()];
                let k = bounds.partition_point(|b| *b <= v);
                let name = match (k.checked_sub(1).map(|j| bounds[j]), bounds.get(k)) {
                    (None, Some(hi)) => format!("< {hi}"),
                    (Some(lo), Some(hi)) => format!("{lo} to < {hi}"),
                    (Some(lo), None) => format!(">= {lo}"),
                    (None, None) => "all".into(),
                };
                // Sorted by the bracket's index, named by its bounds.
                groups.entry((a.clone(), format!("{k}:{name}"))).or_default().push(i);
            }
        }
        if let Some(p) = t.players.first() {
            for (name, value) in &p.attributes {
                if let AttributeValue::S(s) = value {
                    groups.entry((name.clone(), s.clone())).or_default().push(i);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|((dimension, name), members)| {
            let timeouts = members
                .iter()
                .filter(|&&i| sim.results[i].as_ref().is_some_and(|r| r.outcome == Outcome::TimedOut))
                .count() as u64;
            let name = match name.split_once(':') {
                Some((k, n)) if k.parse::<usize>().is_ok() && numeric.contains(&dimension) => n.to_owned(),
                _ => name,
            };
            Segment {
                dimension,
                name,
                tickets: members.len() as u64,
                timeout_rate: rate(timeouts, members.len() as u64),
                time_to_match: waits(members.iter().filter_map(|&i| wait_of(i)).collect()),
            }
        })
        .collect()
}

fn numeric_attributes(sim: &Simulation) -> Vec<String> {
    let mut names: Vec<String> = sim
        .arrivals
        .iter()
        .flat_map(|t| &t.players)
        .flat_map(|p| p.attributes.iter())
        .filter(|(_, v)| matches!(v, AttributeValue::N(_)))
        .map(|(k, _)| k.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn party_mean(players: &[Player], attribute: &str) -> Option<f64> {
    let values: Vec<f64> = players.iter().filter_map(|p| number(p, attribute)).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn quality(sim: &Simulation) -> MatchQuality {
    let index: HashMap<&str, usize> = sim.arrivals.iter().enumerate().map(|(i, a)| (a.ticket_id.as_str(), i)).collect();
    let numeric = numeric_attributes(sim);
    let mut sizes = Vec::new();
    let mut spreads: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut balances: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut latencies = Vec::new();
    for m in &sim.matches {
        let players: Vec<&Player> =
            m.ticket_ids.iter().filter_map(|t| index.get(t.as_str())).flat_map(|&i| &sim.arrivals[i].players).collect();
        sizes.push(players.len() as f64);
        let by_id: HashMap<&str, &Player> = players.iter().map(|p| (p.player_id.as_str(), *p)).collect();
        for a in &numeric {
            let values: Vec<f64> = players.iter().filter_map(|p| number(p, a)).collect();
            if let (Some(lo), Some(hi)) =
                (values.iter().copied().reduce(f64::min), values.iter().copied().reduce(f64::max))
            {
                spreads.entry(a.clone()).or_default().push(hi - lo);
            }
            let averages: Vec<f64> = m
                .teams
                .values()
                .filter_map(|ids| {
                    let v: Vec<f64> =
                        ids.iter().filter_map(|id| by_id.get(id.as_str())).filter_map(|p| number(p, a)).collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                })
                .collect();
            if averages.len() >= 2 {
                let lo = averages.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = averages.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                balances.entry(a.clone()).or_default().push(hi - lo);
            }
        }
        // The best region every player reported, judged by its worst latency.
        if let Some(first) = players.first() {
            let best = first
                .latency_in_ms
                .keys()
                .filter_map(|r| {
                    players
                        .iter()
                        .map(|p| p.latency_in_ms.get(r).copied())
                        .try_fold(0u32, |acc, l| l.map(|l| acc.max(l)))
                })
                .min();
            if let Some(worst) = best {
                latencies.push(f64::from(worst));
            }
        }
    }
    MatchQuality {
        matches: sim.matches.len() as u64,
        players_per_match: spread(sizes),
        attribute_spread: spreads.into_iter().map(|(k, v)| (k, spread(v))).collect(),
        team_balance: balances.into_iter().map(|(k, v)| (k, spread(v))).collect(),
        worst_latency_ms: (!latencies.is_empty()).then(|| spread(latencies)),
    }
}

fn over_time(sim: &Simulation) -> OverTime {
    let end_s = sim.end_ms.div_ceil(1000).max(1);
    let bucket_seconds = end_s.div_ceil(TIME_BUCKETS).max(1);
    let n = end_s.div_ceil(bucket_seconds) as usize + 1;
    let bucket = |ms: u64| ((ms / 1000 / bucket_seconds) as usize).min(n - 1);
    let mut arrivals = vec![0; n];
    let mut matches = vec![0; n];
    let mut timeouts = vec![0; n];
    for a in &sim.arrivals {
        arrivals[bucket(a.at_ms)] += 1;
    }
    for m in &sim.matches {
        matches[bucket(m.at_ms)] += 1;
    }
    for r in sim.results.iter().flatten().filter(|r| r.outcome == Outcome::TimedOut) {
        timeouts[bucket(r.end_ms)] += 1;
    }
    OverTime { bucket_seconds, arrivals, matches, timeouts }
}
