//! Pool sizes the benchmark uses. Correctness only here (speed is measured by
//! `matchgate bench flexmatch`, never asserted in tests); the 100k pool lives only in the
//! benchmark because a debug build is slow.

use std::collections::HashSet;
use std::time::Instant;

use matchgate_flexmatch::RuleSet;
use matchgate_flexmatch::bench_support::{balanced_rule_set, skill_latency_rule_set, synthetic_pool};

const NOW: u64 = 10_000_000;

fn cycle(rs: &RuleSet, tickets: usize) {
    let pool = synthetic_pool(7, tickets, NOW, 30_000);
    let started = Instant::now();
    let matches = rs.find_matches(&pool, NOW);
    let elapsed = started.elapsed();
    let mut seen = HashSet::new();
    for m in &matches {
        for t in &m.ticket_ids {
            assert!(seen.insert(t.clone()), "ticket {t} in two matches");
        }
    }
    assert!(!matches.is_empty(), "a pool of {tickets} forms matches");
    let players: usize = matches.iter().flat_map(|m| &m.teams).map(|t| t.player_ids.len()).sum();
    println!("{tickets} tickets: {} matches, {players} players matched, {elapsed:?}", matches.len());
}

#[test]
fn skill_and_latency_pool_of_10k() {
    cycle(&RuleSet::parse(&skill_latency_rule_set(5)).unwrap(), 10_000);
}

#[test]
fn balanced_200_player_matches() {
    cycle(&RuleSet::parse(&balanced_rule_set()).unwrap(), 2_000);
}
