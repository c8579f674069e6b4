//! Behaviours of single rule properties: latency distance, party aggregation, collection party
//! aggregation, sorted batching, placement regions, defaults and player checks.

mod common;

use common::*;
use matchgate_flexmatch::RuleSet;
use serde_json::json;

const T0: u64 = 5_000_000;

fn one_v_one(rules: serde_json::Value, attributes: serde_json::Value) -> RuleSet {
    let body = json!({
        "ruleLanguageVersion": "1.0",
        "playerAttributes": attributes,
        "teams": [{ "name": "a", "minPlayers": 1, "maxPlayers": 1 }, { "name": "b", "minPlayers": 1, "maxPlayers": 1 }],
        "rules": rules
    });
    RuleSet::parse(&body.to_string()).unwrap()
}

#[test]
fn latency_max_distance_is_measured_from_the_lowest_latency() {
    let rs = one_v_one(
        json!([{ "name": "Close", "type": "latency", "maxLatency": 200, "maxDistance": 20, "distanceReference": "min" }]),
        json!([]),
    );
    let near = vec![solo("x", T0, &[], &[("r1", 30)]), solo("y", T0, &[], &[("r1", 45)])];
    assert_eq!(rs.find_matches(&near, T0).len(), 1);
    let far = vec![solo("x", T0, &[], &[("r1", 30)]), solo("y", T0, &[], &[("r1", 70)])];
    assert!(rs.find_matches(&far, T0).is_empty());
    // Only regions both players reported count.
    let apart = vec![solo("x", T0, &[], &[("r1", 30)]), solo("y", T0, &[], &[("r2", 30)])];
    assert!(rs.find_matches(&apart, T0).is_empty());
}

#[test]
fn acceptable_regions_are_shared_within_limits_and_best_first() {
    let rs = one_v_one(json!([{ "name": "Lat", "type": "latency", "maxLatency": 100 }]), json!([]));
    let tickets = vec![
        solo("x", T0, &[], &[("us-east-1", 40), ("us-west-2", 20), ("eu-west-1", 150), ("ap-south-1", 10)]),
        solo("y", T0, &[], &[("us-east-1", 30), ("us-west-2", 90), ("eu-west-1", 60)]),
    ];
    assert_eq!(rs.acceptable_regions(&tickets, T0), ["us-east-1", "us-west-2"]);
    // Without a latency rule: every commonly reported region, best first.
    let free = one_v_one(json!([]), json!([]));
    assert_eq!(free.acceptable_regions(&tickets, T0), ["us-east-1", "us-west-2", "eu-west-1"]);
    assert!(free.acceptable_regions(&[solo("z", T0, &[], &[])], T0).is_empty());
}

#[test]
fn batch_distance_party_aggregation_picks_the_parties_value() {
    let rule = |agg: &str| {
        RuleSet::parse(
            &json!({
                "ruleLanguageVersion": "1.0",
                "playerAttributes": [{ "name": "skill", "type": "number" }],
                "teams": [{ "name": "a", "minPlayers": 2, "maxPlayers": 2 }, { "name": "b", "minPlayers": 1, "maxPlayers": 1 }],
                "rules": [{ "name": "S", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 5, "partyAggregation": agg }]
            })
            .to_string(),
        )
        .unwrap()
    };
    let pool = vec![
        ticket("party", T0, vec![player("p1", &[("skill", n(10.0))], &[]), player("p2", &[("skill", n(30.0))], &[])]),
        solo("solo", T0, &[("skill", n(28.0))], &[]),
    ];
    assert!(rule("min").find_matches(&pool, T0).is_empty());
    assert_eq!(rule("max").find_matches(&pool, T0).len(), 1);
    assert!(rule("avg").find_matches(&pool, T0).is_empty());
    let m = &rule("max").find_matches(&pool, T0)[0];
    assert_eq!(team(m, "a"), ["p1", "p2"], "the party stays together");
}

#[test]
fn collection_party_aggregation_union_or_intersection() {
    let rule = |agg: &str| {
        RuleSet::parse(
            &json!({
                "ruleLanguageVersion": "1.0",
                "playerAttributes": [{ "name": "maps", "type": "string_list" }],
                "teams": [{ "name": "a", "minPlayers": 3, "maxPlayers": 3 }],
                "rules": [{ "name": "Shared", "type": "collection", "operation": "intersection",
                    "measurements": ["flatten(teams[*].players.attributes[maps])"], "minCount": 1, "partyAggregation": agg }]
            })
            .to_string(),
        )
        .unwrap()
    };
    let pool = vec![
        ticket(
            "party",
            T0,
            vec![
                player("p1", &[("maps", sl(&["forest"]))], &[]),
                player("p2", &[("maps", sl(&["desert", "forest"]))], &[]),
            ],
        ),
        solo("solo", T0, &[("maps", sl(&["desert"]))], &[]),
    ];
    // With union, the party plays forest or desert, and so does everyone: desert is shared.
    assert_eq!(rule("union").find_matches(&pool, T0).len(), 1);
    // With intersection, the party only shares forest, which the solo player lacks.
    assert!(rule("intersection").find_matches(&pool, T0).is_empty());
}

#[test]
fn sorted_batching_groups_players_by_the_sort_attributes() {
    let rs = RuleSet::parse(
        &json!({
            "ruleLanguageVersion": "1.0",
            "playerAttributes": [{ "name": "skill", "type": "number" }],
            "algorithm": { "batchingPreference": "sorted", "sortByAttributes": ["skill"] },
            "teams": [{ "name": "a", "minPlayers": 2, "maxPlayers": 2 }]
        })
        .to_string(),
    )
    .unwrap();
    let pool = vec![
        solo("anchor", T0, &[("skill", n(50.0))], &[]),
        solo("old-far", T0 + 1, &[("skill", n(900.0))], &[]),
        solo("young-near", T0 + 2, &[("skill", n(52.0))], &[]),
    ];
    let matches = rs.find_matches(&pool, T0 + 10);
    assert_eq!(all_players(&matches[0]), ["anchor", "young-near"]);
}

#[test]
fn without_sorting_the_oldest_candidates_come_first() {
    let rs = one_v_one(json!([]), json!([]));
    let pool = vec![solo("young", T0 + 5, &[], &[]), solo("anchor", T0, &[], &[]), solo("older", T0 + 1, &[], &[])];
    let matches = rs.find_matches(&pool, T0 + 10);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].ticket_ids, ["t-anchor", "t-older"]);
}

#[test]
fn defaults_are_typed_and_players_are_checked() {
    let rs = RuleSet::parse(&fixture_text("example4_multi_map_game.json")).unwrap();
    let mut p = player("p", &[], &[]);
    rs.apply_defaults(&mut p);
    assert_eq!(p.attributes["experience"], n(50.0));
    assert_eq!(p.attributes["map_preference"], sdm(&[("defaultMap", 100.0)]));
    assert_eq!(p.attributes["acceptable_maps"], sl(&["defaultMap"]));
    assert!(rs.check_player(&p).is_ok());
    let wrong = player("w", &[("experience", s("lots"))], &[]);
    assert!(rs.check_player(&wrong).unwrap_err().contains("experience"));
    // A player with a mistyped attribute never matches.
    let ex5 = fixture("example5_preferred_characters.json");
    assert!(ex5.check_player(&player("q", &[], &[])).unwrap_err().contains("no default"));
}

#[test]
fn parties_larger_than_any_team_or_ten_players_never_match() {
    let rs = one_v_one(json!([]), json!([]));
    let pair = ticket("pair", T0, vec![player("p1", &[], &[]), player("p2", &[], &[])]);
    let pool = vec![pair, solo("x", T0, &[], &[])];
    assert!(rs.find_matches(&pool, T0).is_empty());
}

#[test]
fn metrics_count_passes_and_failures_of_each_rule() {
    let rs = fixture("example11_block_list.json");
    let mut pool = vec![solo("grumpy", T0, &[("BlockList", sl(&["p3"]))], &[])];
    pool.extend((0..10).map(|i| solo(&format!("p{i}"), T0 + 1 + i, &[], &[])));
    let m = &rs.find_matches(&pool, T0 + 100)[0];
    let metric = &m.rule_evaluation_metrics[0];
    assert_eq!(metric.rule_name, "PlayerIdNotInBlockList");
    assert!(metric.failed_count >= 1, "p3 was refused: {metric:?}");
    assert!(metric.passed_count >= 9);
}

/// The behaviour AWS described for a minPlayers expansion (re:Post, "How does FlexMatch rule set
/// with minPlayers expansions work?"): expansions follow the newest ticket in the potential
/// match, so at 45 s player1 (45 s old) matches alone, while a match with player2 (35 s old)
/// still needs 3 players; player2 matches alone at 55 s.
#[test]
fn expansions_follow_the_newest_ticket_in_the_potential_match() {
    let body = json!({
        "name": "FlexMatchRuleSet",
        "ruleLanguageVersion": "1.0",
        "playerAttributes": [{ "name": "gameMode", "type": "string" }],
        "teams": [{ "name": "player", "minPlayers": 4, "maxPlayers": 4, "quantity": 1 }],
        "rules": [{ "name": "SameGameMode", "type": "comparison", "operation": "=",
                    "measurements": ["flatten(teams[*].players.attributes[gameMode])"] }],
        "expansions": [{ "target": "teams[player].minPlayers", "steps": [
            { "waitTimeSeconds": 30, "value": 3 }, { "waitTimeSeconds": 40, "value": 2 }, { "waitTimeSeconds": 45, "value": 1 }
        ] }]
    });
    let rs = RuleSet::parse(&body.to_string()).unwrap();
    // quantity 1 keeps the plain team name.
    assert_eq!(rs.teams()[0].name, "player");
    let p1 = solo("player1", T0, &[("gameMode", s("ctf"))], &[]);
    let p2 = solo("player2", T0 + 10_000, &[("gameMode", s("ctf"))], &[]);
    let pool = vec![p1, p2.clone()];
    assert!(rs.find_matches(&pool, T0 + 44_000).is_empty());
    let at_45 = rs.find_matches(&pool, T0 + 45_000);
    assert_eq!(at_45.len(), 1);
    assert_eq!(at_45[0].ticket_ids, ["t-player1"]);
    assert!(rs.find_matches(std::slice::from_ref(&p2), T0 + 54_000).is_empty());
    assert_eq!(rs.find_matches(&[p2], T0 + 55_000)[0].ticket_ids, ["t-player2"]);
}

/// The rule-type reference: comparison and distance rules default to `partyAggregation: avg`,
/// collection rules to `union`. A party is judged by its aggregate, not player by player.
#[test]
fn party_aggregation_defaults_to_avg_and_union() {
    let two_plus_one = |rule: serde_json::Value, attributes: serde_json::Value| {
        RuleSet::parse(
            &json!({
                "ruleLanguageVersion": "1.0",
                "playerAttributes": attributes,
                "teams": [{ "name": "a", "minPlayers": 2, "maxPlayers": 2 }, { "name": "b", "minPlayers": 1, "maxPlayers": 1 }],
                "rules": [rule]
            })
            .to_string(),
        )
        .unwrap()
    };
    let skill = json!([{ "name": "skill", "type": "number" }]);
    let with_agg = |mut rule: serde_json::Value, agg: Option<&str>| {
        if let Some(agg) = agg {
            rule["partyAggregation"] = json!(agg);
        }
        rule
    };

    // Comparison: the party averages 12.5, although one of its players is below 10.
    let at_least_10 = json!({ "name": "Min", "type": "comparison", "operation": ">=", "referenceValue": 10,
        "measurements": ["flatten(teams[*].players.attributes[skill])"] });
    let pool = vec![
        ticket("party", T0, vec![player("p1", &[("skill", n(5.0))], &[]), player("p2", &[("skill", n(20.0))], &[])]),
        solo("solo", T0, &[("skill", n(15.0))], &[]),
    ];
    assert_eq!(two_plus_one(with_agg(at_least_10.clone(), None), skill.clone()).find_matches(&pool, T0).len(), 1);
    assert_eq!(
        two_plus_one(with_agg(at_least_10.clone(), Some("avg")), skill.clone()).find_matches(&pool, T0).len(),
        1
    );
    assert!(two_plus_one(with_agg(at_least_10, Some("min")), skill.clone()).find_matches(&pool, T0).is_empty());

    // Distance: the party's average (15) is within 5 of the solo player (17); its members are not.
    let close = json!({ "name": "Close", "type": "distance", "maxDistance": 5,
        "measurements": ["flatten(teams[*].players.attributes[skill])"] });
    let pool = vec![
        ticket("party", T0, vec![player("p1", &[("skill", n(10.0))], &[]), player("p2", &[("skill", n(20.0))], &[])]),
        solo("solo", T0, &[("skill", n(17.0))], &[]),
    ];
    assert_eq!(two_plus_one(with_agg(close.clone(), None), skill.clone()).find_matches(&pool, T0).len(), 1);
    assert!(two_plus_one(with_agg(close, Some("min")), skill).find_matches(&pool, T0).is_empty());

    // Collection: by default the party's lists are united, so desert is shared with the solo player.
    let shared = json!({ "name": "Shared", "type": "collection", "operation": "intersection", "minCount": 1,
        "measurements": ["flatten(teams[*].players.attributes[maps])"] });
    let maps = json!([{ "name": "maps", "type": "string_list" }]);
    let pool = vec![
        ticket(
            "party",
            T0,
            vec![
                player("p1", &[("maps", sl(&["forest"]))], &[]),
                player("p2", &[("maps", sl(&["desert", "forest"]))], &[]),
            ],
        ),
        solo("solo", T0, &[("maps", sl(&["desert"]))], &[]),
    ];
    assert_eq!(two_plus_one(with_agg(shared.clone(), None), maps.clone()).find_matches(&pool, T0).len(), 1);
    assert!(two_plus_one(with_agg(shared, Some("intersection")), maps).find_matches(&pool, T0).is_empty());
}

/// An expansion of `algorithm.batchingPreference` takes effect once the anchor is old enough.
#[test]
fn batching_preference_expansions_apply_by_the_anchors_age() {
    let rs = RuleSet::parse(
        &json!({
            "ruleLanguageVersion": "1.0",
            "playerAttributes": [{ "name": "skill", "type": "number" }],
            "algorithm": { "batchingPreference": "random", "sortByAttributes": ["skill"] },
            "teams": [{ "name": "a", "minPlayers": 2, "maxPlayers": 2 }],
            "expansions": [{ "target": "algorithm.batchingPreference", "steps": [{ "waitTimeSeconds": 10, "value": "sorted" }] }]
        })
        .to_string(),
    )
    .unwrap();
    let pool = vec![
        solo("anchor", T0, &[("skill", n(50.0))], &[]),
        solo("old-far", T0 + 1, &[("skill", n(900.0))], &[]),
        solo("young-near", T0 + 2, &[("skill", n(52.0))], &[]),
    ];
    // Before the expansion: random batching, the oldest candidate first.
    assert_eq!(all_players(&rs.find_matches(&pool, T0 + 5 * SECOND)[0]), ["anchor", "old-far"]);
    // After it: sorted by skill, the nearest candidate first.
    assert_eq!(all_players(&rs.find_matches(&pool, T0 + 20 * SECOND)[0]), ["anchor", "young-near"]);
}

/// Without a latency rule, tickets that report latency still need a reported region in common:
/// FlexMatch "considers placing the match only in Regions for which latency is reported".
#[test]
fn reported_latencies_must_share_a_region_even_without_a_latency_rule() {
    let rs = RuleSet::parse(
        &json!({
            "ruleLanguageVersion": "1.0",
            "teams": [{ "name": "a", "minPlayers": 3, "maxPlayers": 3 }]
        })
        .to_string(),
    )
    .unwrap();
    let apart = vec![solo("x", T0, &[], &[("r1", 30)]), solo("y", T0, &[], &[("r2", 30)]), solo("z", T0, &[], &[])];
    assert!(rs.find_matches(&apart, T0).is_empty());
    // Pairwise overlaps are not enough: x∩y = r2, y∩z = r3, x∩z = r1, but no region is common.
    let pairwise = vec![
        solo("x", T0, &[], &[("r1", 30), ("r2", 30)]),
        solo("y", T0, &[], &[("r2", 30), ("r3", 30)]),
        solo("z", T0, &[], &[("r1", 30), ("r3", 30)]),
    ];
    assert!(rs.find_matches(&pairwise, T0).is_empty());
    // A ticket without latency data does not constrain the match.
    let shared =
        vec![solo("x", T0, &[], &[("r1", 30), ("r2", 40)]), solo("y", T0, &[], &[("r2", 30)]), solo("z", T0, &[], &[])];
    let m = &rs.find_matches(&shared, T0)[0];
    assert_eq!(all_players(m), ["x", "y", "z"]);
    assert_eq!(rs.acceptable_regions(&shared, T0), ["r2"]);
    // A party whose players reported no region in common never matches.
    let party = ticket("party", T0, vec![player("p1", &[], &[("r1", 30)]), player("p2", &[], &[("r2", 30)])]);
    assert!(rs.find_matches(&[party, solo("z", T0, &[], &[])], T0).is_empty());
}
