//! Deterministic synthetic pools for benchmarks (`matchgate bench`) and tests: no `rand`
//! crate, a seeded xorshift, so the same seed always builds the same pool.

use std::collections::BTreeMap;

use crate::{AttributeValue, Player, Ticket};

/// xorshift64*: small, fast, good enough to spread synthetic players.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The regions synthetic players report latencies to.
pub const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"];

/// A skill batchDistance plus latency rule set: two teams of `team_size`.
pub fn skill_latency_rule_set(team_size: usize) -> String {
    format!(
        r#"{{
  "name": "bench_skill_latency",
  "ruleLanguageVersion": "1.0",
  "playerAttributes": [{{ "name": "skill", "type": "number", "default": 1000 }}],
  "teams": [
    {{ "name": "red", "minPlayers": {team_size}, "maxPlayers": {team_size} }},
    {{ "name": "blue", "minPlayers": {team_size}, "maxPlayers": {team_size} }}
  ],
  "rules": [
    {{ "name": "SimilarSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 100 }},
    {{ "name": "FastConnection", "type": "latency", "maxLatency": 150 }}
  ],
  "expansions": [
    {{ "target": "rules[SimilarSkill].maxDistance", "steps": [{{ "waitTimeSeconds": 10, "value": 200 }}] }}
  ]
}}"#
    )
}

/// A large-match rule set: two teams of 100, balanced on skill, with a latency rule.
pub fn balanced_rule_set() -> String {
    r#"{
  "name": "bench_balanced_200",
  "ruleLanguageVersion": "1.0",
  "playerAttributes": [{ "name": "skill", "type": "number", "default": 1000 }],
  "algorithm": { "strategy": "balanced", "balancedAttribute": "skill", "batchingPreference": "largestPopulation" },
  "teams": [
    { "name": "red", "minPlayers": 90, "maxPlayers": 100 },
    { "name": "blue", "minPlayers": 90, "maxPlayers": 100 }
  ],
  "rules": [{ "name": "FastConnection", "type": "latency", "maxLatency": 150 }]
}"#
    .to_string()
}

/// `tickets` tickets, mostly solo with some parties of 2–4, skill roughly normal around 1500,
/// latencies low to one or two home regions and high elsewhere; start times spread over the
/// last `spread_ms` before `now_ms`.
pub fn synthetic_pool(seed: u64, tickets: usize, now_ms: u64, spread_ms: u64) -> Vec<Ticket> {
    let mut rng = XorShift::new(seed);
    let mut pool = Vec::with_capacity(tickets);
    for t in 0..tickets {
        let party = match rng.below(10) {
            0 => 2 + rng.below(3) as usize,
            _ => 1,
        };
        let home = rng.below(REGIONS.len() as u64) as usize;
        let base_skill = 1500.0 + (0..4).map(|_| rng.unit() - 0.5).sum::<f64>() * 600.0;
        let players = (0..party)
            .map(|p| {
                let mut latency_in_ms = BTreeMap::new();
                for (r, region) in REGIONS.iter().enumerate() {
                    let ms = if r == home { 20 + rng.below(60) } else { 90 + rng.below(200) };
                    latency_in_ms.insert((*region).to_string(), ms as u32);
                }
                let skill = base_skill + (rng.unit() - 0.5) * 40.0;
                Player {
                    player_id: format!("p{t}-{p}"),
                    attributes: BTreeMap::from([("skill".to_string(), AttributeValue::N(skill.round()))]),
                    latency_in_ms,
                }
            })
            .collect();
        pool.push(Ticket {
            ticket_id: format!("t{t}"),
            start_time_ms: now_ms.saturating_sub(rng.below(spread_ms.max(1))),
            players,
        });
    }
    pool
}
