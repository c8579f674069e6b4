//! A synthetic player population: when tickets arrive and what their players are like.
//!
//! The spec is a small JSON document (documented in docs/rule-set-lab.md):
//!
//! ```json
//! {
//!   "durationSeconds": 3600,
//!   "arrivals": { "type": "constant", "ticketsPerSecond": 20 },
//!   "attributes": { "skill": { "type": "normal", "mean": 1500, "stddev": 300 } },
//!   "partySizes": { "1": 0.8, "2": 0.15, "3": 0.05 },
//!   "regions": { "us-east-1": { "share": 0.6, "latencyMs": { "type": "normal", "mean": 40, "stddev": 15 } } },
//!   "remoteLatencyMs": { "type": "normal", "mean": 160, "stddev": 40 }
//! }
//! ```
//!
//! Arrivals are a Poisson process whose rate follows `arrivals` (drawn by thinning), so the
//! same seed always gives the same tickets.

use std::collections::BTreeMap;

use matchgate_flexmatch::{AttributeType, RuleSet};
use matchgate_protocol::gamelift::{AttributeValue, Player};
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Exp, Normal};
use serde::Deserialize;

use super::{Arrival, LabError};

/// Most tickets one simulation may generate: about 1.5 KB each in memory, so a few GB at most.
pub const MAX_TICKETS: u64 = 2_000_000;
/// Longest simulated span: a week covers any daily curve.
pub const MAX_DURATION_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
/// Latency a player reports to a region other than their home one, when the spec gives none.
const DEFAULT_REMOTE_LATENCY: Distribution =
    Distribution::Normal { mean: 160.0, stddev: 40.0, min: None, max: None, decimals: 0 };

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PopulationSpec {
    /// Simulated seconds during which tickets arrive.
    pub duration_seconds: f64,
    pub arrivals: ArrivalRate,
    /// Per player attribute of the rule set; undeclared ones get the rule set's default.
    #[serde(default)]
    pub attributes: BTreeMap<String, Distribution>,
    /// Weight of each party size ("1" to "10"); solo tickets when absent.
    #[serde(default)]
    pub party_sizes: BTreeMap<String, f64>,
    /// Home regions: their share of tickets and the latency players there report to them.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionSpec>,
    /// Latency players report to every region other than their home one.
    #[serde(default)]
    pub remote_latency_ms: Option<Distribution>,
}

/// Tickets per second over simulated time.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum ArrivalRate {
    Constant {
        tickets_per_second: f64,
    },
    /// Linear from `fromPerSecond` at the start to `toPerSecond` at the end.
    Ramp {
        from_per_second: f64,
        to_per_second: f64,
    },
    /// A day's curve (cosine): `peakPerSecond` at `peakHour`, `troughPerSecond` twelve hours
    /// away. The simulation starts at `startHour` (midnight by default).
    Daily {
        peak_per_second: f64,
        trough_per_second: f64,
        peak_hour: f64,
        #[serde(default)]
        start_hour: f64,
    },
}

/// A distribution of numbers (normal, uniform, constant) or of strings (categorical).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Distribution {
    /// Clamped to [min, max] when given; rounded to `decimals` places (whole numbers by default).
    Normal {
        mean: f64,
        stddev: f64,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
        #[serde(default)]
        decimals: u32,
    },
    Uniform {
        min: f64,
        max: f64,
        #[serde(default)]
        decimals: u32,
    },
    Constant {
        value: f64,
    },
    /// Each string value with its weight.
    Categorical {
        values: BTreeMap<String, f64>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegionSpec {
    pub share: f64,
    pub latency_ms: Distribution,
}

fn field(path: &str, message: impl std::fmt::Display) -> LabError {
    LabError::Population(format!("{path}: {message}"))
}

impl PopulationSpec {
    /// Parses a spec, naming the field of any error (`attributes.skill: missing field `stddev``).
    pub fn parse(text: &str) -> Result<Self, LabError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            if path == "." { LabError::Population(message) } else { field(&path, message) }
        })
    }

    /// Checks the spec against the rule set it will be simulated with.
    pub fn validate(&self, rule_set: &RuleSet) -> Result<(), LabError> {
        if !(self.duration_seconds > 0.0 && self.duration_seconds <= MAX_DURATION_SECONDS) {
            return Err(field(
                "durationSeconds",
                format!("must be more than 0 and at most {MAX_DURATION_SECONDS} (a week)"),
            ));
        }
        self.check_rates()?;
        let declared: BTreeMap<&str, AttributeType> = rule_set.player_attributes().collect();
        for (name, distribution) in &self.attributes {
            let path = format!("attributes.{name}");
            let Some(kind) = declared.get(name.as_str()) else {
                let names: Vec<&str> = declared.keys().copied().collect();
                return Err(field(
                    &path,
                    format!("the rule set declares no player attribute {name:?} (it declares: {})", names.join(", ")),
                ));
            };
            match (kind, distribution) {
                (AttributeType::Number, d) if !matches!(d, Distribution::Categorical { .. }) => check_number(&path, d)?,
                (AttributeType::String, Distribution::Categorical { values }) => {
                    check_weights(&format!("{path}.values"), values.iter())?;
                }
                (kind, _) => {
                    return Err(field(
                        &path,
                        format!(
                            "the rule set declares it as {}: use normal, uniform or constant for numbers and categorical for strings",
                            kind.as_str()
                        ),
                    ));
                }
            }
        }
        for size in self.party_sizes.keys() {
            let ok =
                size.parse::<usize>().is_ok_and(|n| (1..=matchgate_flexmatch::MAX_PLAYERS_PER_TICKET).contains(&n));
            if !ok {
                return Err(field(&format!("partySizes.{size}"), "a party size is a whole number from 1 to 10"));
            }
        }
        if !self.party_sizes.is_empty() {
            check_weights("partySizes", self.party_sizes.iter())?;
        }
        if !self.regions.is_empty() {
            check_weights("regions", self.regions.iter().map(|(k, r)| (k, &r.share)))?;
        }
        for (name, region) in &self.regions {
            check_number(&format!("regions.{name}.latencyMs"), &region.latency_ms)?;
        }
        if let Some(remote) = &self.remote_latency_ms {
            check_number("remoteLatencyMs", remote)?;
        }
        if rule_set.requires_latency() && self.regions.is_empty() {
            return Err(field(
                "regions",
                "the rule set has a latency rule, so players must report latency: add regions",
            ));
        }
        let expected = self.expected_tickets();
        if expected > MAX_TICKETS as f64 {
            return Err(LabError::Bound(format!(
                "the population would bring about {expected:.0} tickets, over the simulator's bound of {MAX_TICKETS}: \
                 shorten durationSeconds or lower the arrival rate"
            )));
        }
        Ok(())
    }

    fn check_rates(&self) -> Result<(), LabError> {
        let rates: Vec<(&str, f64)> = match self.arrivals {
            ArrivalRate::Constant { tickets_per_second } => vec![("ticketsPerSecond", tickets_per_second)],
            ArrivalRate::Ramp { from_per_second, to_per_second } => {
                vec![("fromPerSecond", from_per_second), ("toPerSecond", to_per_second)]
            }
            ArrivalRate::Daily { peak_per_second, trough_per_second, .. } => {
                vec![("peakPerSecond", peak_per_second), ("troughPerSecond", trough_per_second)]
            }
        };
        for (name, rate) in &rates {
            if !(rate.is_finite() && *rate >= 0.0) {
                return Err(field(
                    &format!("arrivals.{name}"),
                    "a rate must be a number of tickets per second, not negative",
                ));
            }
        }
        if rates.iter().all(|(_, r)| *r == 0.0) {
            return Err(field("arrivals", "every rate is 0: no ticket would arrive"));
        }
        Ok(())
    }

    /// Tickets per second at `t` seconds into the simulation.
    fn rate_at(&self, t: f64) -> f64 {
        match self.arrivals {
            ArrivalRate::Constant { tickets_per_second } => tickets_per_second,
            ArrivalRate::Ramp { from_per_second, to_per_second } => {
                from_per_second + (to_per_second - from_per_second) * (t / self.duration_seconds).clamp(0.0, 1.0)
            }
            ArrivalRate::Daily { peak_per_second, trough_per_second, peak_hour, start_hour } => {
                let hour = start_hour + t / 3600.0;
                let phase = (hour - peak_hour) / 24.0 * std::f64::consts::TAU;
                trough_per_second + (peak_per_second - trough_per_second) * (1.0 + phase.cos()) / 2.0
            }
        }
    }

    fn max_rate(&self) -> f64 {
        match self.arrivals {
            ArrivalRate::Constant { tickets_per_second } => tickets_per_second,
            ArrivalRate::Ramp { from_per_second, to_per_second } => from_per_second.max(to_per_second),
            ArrivalRate::Daily { peak_per_second, trough_per_second, .. } => peak_per_second.max(trough_per_second),
        }
    }

    /// The expected number of tickets (the rate's integral over the duration).
    pub fn expected_tickets(&self) -> f64 {
        const STEPS: usize = 1000;
        let dt = self.duration_seconds / STEPS as f64;
        (0..STEPS).map(|i| self.rate_at((i as f64 + 0.5) * dt) * dt).sum()
    }

    /// Draws the arrivals. Call [`PopulationSpec::validate`] first.
    pub fn generate(&self, seed: u64) -> Result<Vec<Arrival>, LabError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let max_rate = self.max_rate();
        let gap = Exp::new(max_rate).map_err(|e| field("arrivals", e))?;
        let party: Vec<(usize, f64)> = if self.party_sizes.is_empty() {
            vec![(1, 1.0)]
        } else {
            self.party_sizes.iter().filter_map(|(k, w)| k.parse().ok().map(|n| (n, *w))).collect()
        };
        let party_index = WeightedIndex::new(party.iter().map(|(_, w)| *w)).map_err(|e| field("partySizes", e))?;
        let regions: Vec<(&String, &RegionSpec)> = self.regions.iter().collect();
        let region_index = if regions.is_empty() {
            None
        } else {
            Some(WeightedIndex::new(regions.iter().map(|(_, r)| r.share)).map_err(|e| field("regions", e))?)
        };
        let categorical: BTreeMap<&str, (Vec<&String>, WeightedIndex<f64>)> = self
            .attributes
            .iter()
            .filter_map(|(name, d)| match d {
                Distribution::Categorical { values } => Some((name, values)),
                _ => None,
            })
            .map(|(name, values)| {
                let index = WeightedIndex::new(values.values().copied())
                    .map_err(|e| field(&format!("attributes.{name}.values"), e))?;
                Ok((name.as_str(), (values.keys().collect(), index)))
            })
            .collect::<Result<_, LabError>>()?;
        let remote = self.remote_latency_ms.clone().unwrap_or(DEFAULT_REMOTE_LATENCY);

        let mut arrivals = Vec::new();
        let mut t = 0.0;
        loop {
            t += gap.sample(&mut rng);
            if t >= self.duration_seconds {
                break;
            }
            if rng.random::<f64>() * max_rate >= self.rate_at(t) {
                continue;
            }
            let ticket_id = format!("sim-{:07}", arrivals.len());
            let size = party[party_index.sample(&mut rng)].0;
            let home = region_index.as_ref().map(|i| i.sample(&mut rng));
            let players = (0..size)
                .map(|p| {
                    let attributes = self
                        .attributes
                        .iter()
                        .map(|(name, d)| {
                            let value = match d {
                                Distribution::Categorical { .. } => {
                                    let (values, index) = &categorical[name.as_str()];
                                    AttributeValue::S(values[index.sample(&mut rng)].clone())
                                }
                                n => AttributeValue::N(draw(n, &mut rng)),
                            };
                            (name.clone(), value)
                        })
                        .collect();
                    let latency_in_ms = regions
                        .iter()
                        .enumerate()
                        .map(|(i, (name, region))| {
                            let d = if Some(i) == home { &region.latency_ms } else { &remote };
                            ((*name).clone(), draw(d, &mut rng).round().clamp(1.0, f64::from(u32::MAX)) as u32)
                        })
                        .collect();
                    Player { player_id: format!("{ticket_id}-{p}"), attributes, latency_in_ms }
                })
                .collect();
            arrivals.push(Arrival { at_ms: (t * 1000.0) as u64, ticket_id, players });
        }
        Ok(arrivals)
    }
}

fn check_number(path: &str, d: &Distribution) -> Result<(), LabError> {
    match *d {
        Distribution::Normal { mean, stddev, min, max, .. } => {
            if !(mean.is_finite() && stddev.is_finite() && stddev >= 0.0) {
                return Err(field(path, "a normal distribution needs a finite mean and a stddev of 0 or more"));
            }
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(field(path, "min is above max"));
            }
        }
        Distribution::Uniform { min, max, .. } => {
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return Err(field(path, "a uniform distribution needs finite min <= max"));
            }
        }
        Distribution::Constant { value } => {
            if !value.is_finite() {
                return Err(field(path, "the value must be finite"));
            }
        }
        Distribution::Categorical { .. } => {
            return Err(field(path, "a number is needed here: use normal, uniform or constant"));
        }
    }
    Ok(())
}

fn check_weights<'a>(path: &str, weights: impl Iterator<Item = (&'a String, &'a f64)>) -> Result<(), LabError> {
    let mut total = 0.0;
    for (name, w) in weights {
        if !(w.is_finite() && *w >= 0.0) {
            return Err(field(&format!("{path}.{name}"), "a weight or share must be 0 or more"));
        }
        total += w;
    }
    if total <= 0.0 {
        return Err(field(path, "needs at least one entry with a weight above 0"));
    }
    Ok(())
}

fn draw(d: &Distribution, rng: &mut ChaCha8Rng) -> f64 {
    let round = |v: f64, decimals: u32| {
        let f = 10f64.powi(decimals.min(9) as i32);
        (v * f).round() / f
    };
    match *d {
        Distribution::Normal { mean, stddev, min, max, decimals } => {
            let v = Normal::new(mean, stddev).map_or(mean, |n| n.sample(rng));
            round(v.max(min.unwrap_or(f64::NEG_INFINITY)).min(max.unwrap_or(f64::INFINITY)), decimals)
        }
        Distribution::Uniform { min, max, decimals } => {
            round(if min < max { rng.random_range(min..=max) } else { min }, decimals)
        }
        Distribution::Constant { value } => value,
        Distribution::Categorical { .. } => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"{
        "ruleLanguageVersion": "1.0",
        "playerAttributes": [{ "name": "skill", "type": "number", "default": 10 },
                             { "name": "mode", "type": "string", "default": "casual" }],
        "teams": [{ "name": "a", "minPlayers": 1, "maxPlayers": 2 }, { "name": "b", "minPlayers": 1, "maxPlayers": 2 }],
        "rules": [{ "name": "FastConnection", "type": "latency", "maxLatency": 150 }]
    }"#;

    const SPEC: &str = r#"{
        "durationSeconds": 60,
        "arrivals": { "type": "constant", "ticketsPerSecond": 5 },
        "attributes": { "skill": { "type": "normal", "mean": 1500, "stddev": 300 },
                        "mode": { "type": "categorical", "values": { "ranked": 3, "casual": 1 } } },
        "partySizes": { "1": 8, "2": 2 },
        "regions": { "us-east-1": { "share": 1, "latencyMs": { "type": "uniform", "min": 20, "max": 60 } },
                     "eu-west-1": { "share": 1, "latencyMs": { "type": "constant", "value": 30 } } }
    }"#;

    fn rules() -> RuleSet {
        RuleSet::parse(RULES).unwrap()
    }

    fn error(spec: &str) -> String {
        match PopulationSpec::parse(spec).and_then(|s| s.validate(&rules())) {
            Ok(()) => panic!("accepted: {spec}"),
            Err(e) => e.to_string(),
        }
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(SPEC.contains(replace), "{replace}");
        SPEC.replace(replace, by)
    }

    #[test]
    fn a_spec_draws_the_same_population_for_the_same_seed() {
        let spec = PopulationSpec::parse(SPEC).unwrap();
        spec.validate(&rules()).unwrap();
        let a = spec.generate(7).unwrap();
        assert_eq!(a, spec.generate(7).unwrap());
        assert_ne!(a, spec.generate(8).unwrap());
        // About 5 a second for a minute; every player has both attributes and both latencies.
        assert!((200..400).contains(&a.len()), "{}", a.len());
        for p in a.iter().flat_map(|t| &t.players) {
            assert_eq!(p.attributes.len(), 2, "{p:?}");
            assert_eq!(p.latency_in_ms.len(), 2, "{p:?}");
        }
        assert!(a.iter().any(|t| t.players.len() == 2));
    }

    #[test]
    fn a_daily_curve_brings_more_tickets_at_its_peak() {
        let spec = with(
            r#"{ "type": "constant", "ticketsPerSecond": 5 }"#,
            r#"{ "type": "daily", "peakPerSecond": 1, "troughPerSecond": 0, "peakHour": 18 }"#,
        )
        .replace(r#""durationSeconds": 60"#, r#""durationSeconds": 86400"#);
        let spec = PopulationSpec::parse(&spec).unwrap();
        spec.validate(&rules()).unwrap();
        let arrivals = spec.generate(1).unwrap();
        let hour = |h: u64| arrivals.iter().filter(|a| a.at_ms / 3_600_000 == h).count();
        assert!(hour(18) > 5 * hour(6).max(1), "18h {} vs 6h {}", hour(18), hour(6));
    }

    #[test]
    fn an_unknown_attribute_is_named() {
        let e = error(&with(r#""skill": {"#, r#""rank": {"#));
        assert!(e.contains("attributes.rank") && e.contains("declares no player attribute"), "{e}");
    }

    #[test]
    fn a_negative_rate_is_named() {
        let e = error(&with(r#""ticketsPerSecond": 5"#, r#""ticketsPerSecond": -5"#));
        assert!(e.contains("arrivals.ticketsPerSecond") && e.contains("negative"), "{e}");
    }

    #[test]
    fn a_distribution_missing_a_parameter_is_named() {
        let e = error(&with(r#""type": "uniform", "min": 20, "max": 60"#, r#""type": "uniform", "min": 20"#));
        assert!(e.contains("regions.us-east-1.latencyMs") && e.contains("max"), "{e}");
        let e = error(&with(r#", "stddev": 300"#, ""));
        assert!(e.contains("attributes.skill"), "{e}");
    }

    #[test]
    fn a_distribution_of_the_wrong_kind_for_the_attribute_is_refused() {
        let e = error(&with(
            r#""mode": { "type": "categorical", "values": { "ranked": 3, "casual": 1 } }"#,
            r#""mode": { "type": "constant", "value": 3 }"#,
        ));
        assert!(e.contains("attributes.mode") && e.contains("string"), "{e}");
    }

    #[test]
    fn a_latency_rule_needs_regions() {
        let spec = r#"{ "durationSeconds": 60, "arrivals": { "type": "constant", "ticketsPerSecond": 5 } }"#;
        assert!(error(spec).contains("regions"), "{}", error(spec));
    }

    #[test]
    fn a_population_over_the_bound_says_so() {
        let e = error(
            &with(r#""ticketsPerSecond": 5"#, r#""ticketsPerSecond": 5000"#)
                .replace(r#""durationSeconds": 60"#, r#""durationSeconds": 86400"#),
        );
        assert!(e.contains("bound") && e.contains("2000000"), "{e}");
    }
}
