//! Properties that hold for any pool: no ticket in two matches, team sizes within bounds, a
//! party never split across teams, and an expanded rule never applied before its wait time.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use matchgate_flexmatch::{Player, RuleSet, Ticket};
use proptest::prelude::*;

const NOW: u64 = 100_000_000;

/// (rule set, the smallest minPlayers any team can reach through expansions)
fn rule_sets() -> Vec<(RuleSet, usize)> {
    let small = r#"{
      "ruleLanguageVersion": "1.0",
      "playerAttributes": [{ "name": "skill", "type": "number", "default": 100 }, { "name": "mode", "type": "string", "default": "a" }],
      "teams": [{ "name": "red", "minPlayers": 2, "maxPlayers": 4 }, { "name": "blue", "minPlayers": 2, "maxPlayers": 4 }],
      "rules": [
        { "name": "Skill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 20 },
        { "name": "Lat", "type": "latency", "maxLatency": 100 }
      ],
      "expansions": [
        { "target": "rules[Skill].maxDistance", "steps": [{ "waitTimeSeconds": 10, "value": 60 }] },
        { "target": "teams[red].minPlayers", "steps": [{ "waitTimeSeconds": 20, "value": 1 }] }
      ]
    }"#;
    let asymmetric = r#"{
      "ruleLanguageVersion": "1.0",
      "playerAttributes": [{ "name": "skill", "type": "number", "default": 100 }, { "name": "mode", "type": "string", "default": "a" }],
      "teams": [{ "name": "big", "minPlayers": 3, "maxPlayers": 6 }, { "name": "small", "minPlayers": 1, "maxPlayers": 2 }],
      "rules": [
        { "name": "SameMode", "type": "comparison", "operation": "=", "measurements": ["flatten(teams[*].players.attributes[mode])"] },
        { "name": "Fair", "type": "distance", "measurements": ["avg(teams[*].players.attributes[skill])"],
          "referenceValue": "avg(flatten(teams[*].players.attributes[skill]))", "maxDistance": 40 }
      ]
    }"#;
    let trios = r#"{
      "ruleLanguageVersion": "1.0",
      "playerAttributes": [{ "name": "skill", "type": "number", "default": 100 }, { "name": "mode", "type": "string", "default": "a" }],
      "teams": [{ "name": "trio", "minPlayers": 2, "maxPlayers": 3, "quantity": 3 }],
      "rules": [
        { "name": "Close", "type": "distance", "measurements": ["max(count(teams[*].players))"],
          "referenceValue": "min(count(teams[*].players))", "maxDistance": 1 },
        { "name": "Mode", "type": "batchDistance", "batchAttribute": "mode" }
      ]
    }"#;
    let large = r#"{
      "ruleLanguageVersion": "1.0",
      "playerAttributes": [{ "name": "skill", "type": "number", "default": 100 }, { "name": "mode", "type": "string", "default": "a" }],
      "algorithm": { "strategy": "balanced", "balancedAttribute": "skill", "batchingPreference": "fastestRegion" },
      "teams": [{ "name": "red", "minPlayers": 12, "maxPlayers": 25 }, { "name": "blue", "minPlayers": 12, "maxPlayers": 25 }],
      "rules": [
        { "name": "Skill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 150 },
        { "name": "Lat", "type": "latency", "maxLatency": 150 }
      ]
    }"#;
    vec![
        (RuleSet::parse(small).unwrap(), 1),
        (RuleSet::parse(asymmetric).unwrap(), 1),
        (RuleSet::parse(trios).unwrap(), 2),
        (RuleSet::parse(large).unwrap(), 12),
    ]
}

fn arb_player(ticket: usize, index: usize) -> impl Strategy<Value = Player> {
    (
        0u32..200,
        prop::bool::ANY,
        prop::collection::btree_map(prop::sample::select(vec!["r1", "r2", "r3"]), 10u32..200, 0..3),
    )
        .prop_map(move |(skill, mode, latency)| {
            player(
                &format!("t{ticket}p{index}"),
                &[("skill", n(f64::from(skill))), ("mode", s(if mode { "a" } else { "b" }))],
                &latency.into_iter().collect::<Vec<_>>(),
            )
        })
}

fn arb_pool(max_tickets: usize) -> impl Strategy<Value = Vec<Ticket>> {
    prop::collection::vec((1usize..=4, 0u64..60_000), 0..max_tickets).prop_flat_map(|shapes| {
        shapes
            .into_iter()
            .enumerate()
            .map(|(t, (party, age))| {
                prop::collection::vec(Just(()), party)
                    .prop_flat_map(move |slots| {
                        slots.into_iter().enumerate().map(|(i, ())| arb_player(t, i)).collect::<Vec<_>>()
                    })
                    .prop_map(move |players| ticket(&format!("t{t}"), NOW - age, players))
            })
            .collect::<Vec<_>>()
    })
}

fn check_invariants(rs: &RuleSet, lowest_min: usize, pool: &[Ticket]) -> Result<(), TestCaseError> {
    let matches = rs.find_matches(pool, NOW);
    let by_id: HashMap<&str, &Ticket> = pool.iter().map(|t| (t.ticket_id.as_str(), t)).collect();
    let mut seen_tickets = HashSet::new();
    for m in &matches {
        let mut team_of: HashMap<&str, &str> = HashMap::new();
        for team in &m.teams {
            let def = rs.teams().iter().find(|t| t.name == team.name).expect("team names come from the rule set");
            prop_assert!(team.player_ids.len() <= def.max_players, "{} over max in {m:?}", team.name);
            prop_assert!(team.player_ids.len() >= lowest_min.min(def.min_players), "{} under min in {m:?}", team.name);
            for p in &team.player_ids {
                prop_assert!(team_of.insert(p, &team.name).is_none(), "player {p} twice");
            }
        }
        let mut players = 0;
        for id in &m.ticket_ids {
            prop_assert!(seen_tickets.insert(id.clone()), "ticket {id} in two matches");
            let ticket = by_id.get(id.as_str()).expect("matched tickets come from the pool");
            let teams: HashSet<_> = ticket.players.iter().map(|p| team_of.get(p.player_id.as_str()).copied()).collect();
            prop_assert_eq!(teams.len(), 1, "party of {} split or missing: {:?}", id, teams);
            prop_assert!(!teams.contains(&None));
            players += ticket.players.len();
        }
        prop_assert_eq!(players, team_of.len(), "a player without a ticket in {:?}", m);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn matches_are_disjoint_sized_and_keep_parties_together(pool in arb_pool(40), which in 0usize..3) {
        let sets = rule_sets();
        let (rs, lowest_min) = &sets[which];
        check_invariants(rs, *lowest_min, &pool)?;
    }

    #[test]
    fn large_matches_are_disjoint_sized_and_keep_parties_together(pool in arb_pool(90)) {
        let sets = rule_sets();
        let (rs, lowest_min) = &sets[3];
        check_invariants(rs, *lowest_min, &pool)?;
    }

    /// Two players 50 skill apart only match under the expanded maxDistance; the expansion
    /// applies by the newest ticket's age (the default) or the oldest's.
    #[test]
    fn an_expansion_never_applies_before_its_wait_time(
        wait_s in 1u64..120,
        age_a in 0u64..150_000,
        age_b in 0u64..150_000,
        oldest in prop::bool::ANY,
    ) {
        let body = format!(r#"{{
          "ruleLanguageVersion": "1.0",
          "playerAttributes": [{{ "name": "skill", "type": "number" }}],
          "algorithm": {{ "expansionAgeSelection": "{}" }},
          "teams": [{{ "name": "a", "minPlayers": 1, "maxPlayers": 1 }}, {{ "name": "b", "minPlayers": 1, "maxPlayers": 1 }}],
          "rules": [{{ "name": "Skill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 10 }}],
          "expansions": [{{ "target": "rules[Skill].maxDistance", "steps": [{{ "waitTimeSeconds": {wait_s}, "value": 100 }}] }}]
        }}"#, if oldest { "oldest" } else { "newest" });
        let rs = RuleSet::parse(&body).unwrap();
        let pool = vec![
            solo("x", NOW - age_a, &[("skill", n(0.0))], &[]),
            solo("y", NOW - age_b, &[("skill", n(50.0))], &[]),
        ];
        let age = if oldest { age_a.max(age_b) } else { age_a.min(age_b) };
        let matched = !rs.find_matches(&pool, NOW).is_empty();
        prop_assert_eq!(matched, age >= wait_s * 1000, "age {} ms, wait {} s", age, wait_s);
    }

    /// A team minimum relaxed by an expansion is not relaxed early either.
    #[test]
    fn a_team_minimum_is_not_relaxed_early(age in 0u64..60_000, players in 1usize..4) {
        let body = r#"{
          "ruleLanguageVersion": "1.0",
          "teams": [{ "name": "squad", "minPlayers": 4, "maxPlayers": 4 }],
          "expansions": [{ "target": "teams[squad].minPlayers", "steps": [{ "waitTimeSeconds": 30, "value": 1 }] }]
        }"#;
        let rs = RuleSet::parse(body).unwrap();
        let pool: Vec<_> = (0..players).map(|i| solo(&format!("p{i}"), NOW - age, &[], &[])).collect();
        let matched = !rs.find_matches(&pool, NOW).is_empty();
        prop_assert_eq!(matched, age >= 30_000);
    }
}

/// The invariants on large synthetic pools, where many matches form (so they are not vacuous).
#[test]
fn invariants_hold_on_synthetic_pools() {
    use matchgate_flexmatch::bench_support::synthetic_pool;
    for (i, (rs, lowest_min)) in rule_sets().iter().enumerate() {
        let pool = synthetic_pool(i as u64 + 1, 600, NOW, 60_000);
        assert!(!rs.find_matches(&pool, NOW).is_empty(), "rule set {i} formed no match");
        check_invariants(rs, *lowest_min, &pool).unwrap();
    }
}
