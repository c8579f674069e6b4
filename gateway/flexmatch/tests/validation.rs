//! Invalid rule sets: each refused with the JSON path of the problem and a reason.

mod common;

use matchgate_flexmatch::{BackfillPriority, BatchingPreference, ExpansionAgeSelection, RuleSet, Strategy};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "name": "base",
        "ruleLanguageVersion": "1.0",
        "playerAttributes": [
            { "name": "skill", "type": "number", "default": 10 },
            { "name": "mode", "type": "string" },
            { "name": "roles", "type": "string_list", "default": [] }
        ],
        "teams": [
            { "name": "red", "minPlayers": 2, "maxPlayers": 4 },
            { "name": "blue", "minPlayers": 2, "maxPlayers": 4 }
        ],
        "rules": [
            { "name": "FairSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 10 }
        ]
    })
}

/// The first error's path after `edit` is applied to the base rule set.
fn first_error(edit: impl FnOnce(&mut Value)) -> (String, String) {
    let mut doc = base();
    edit(&mut doc);
    let err = RuleSet::parse(&doc.to_string()).expect_err("rule set should be refused");
    (err.path, err.reason)
}

fn path_of(edit: impl FnOnce(&mut Value)) -> String {
    first_error(edit).0
}

fn push_rule(doc: &mut Value, rule: Value) {
    doc["rules"].as_array_mut().unwrap().push(rule);
}

#[test]
fn the_base_rule_set_is_valid_with_documented_defaults() {
    let rs = RuleSet::parse(&base().to_string()).unwrap();
    assert_eq!(rs.name(), "base");
    let a = rs.algorithm();
    assert_eq!(a.strategy, Strategy::ExhaustiveSearch);
    assert_eq!(a.batching_preference, BatchingPreference::Random);
    assert_eq!(a.expansion_age_selection, ExpansionAgeSelection::Newest);
    assert_eq!(a.backfill_priority, BackfillPriority::Normal);
    assert_eq!(rs.max_players(), 8);
    assert!(!rs.requires_latency());
}

#[test]
fn not_json_or_not_an_object() {
    assert_eq!(RuleSet::parse("{").unwrap_err().path, "$");
    assert_eq!(RuleSet::parse("[]").unwrap_err().path, "$");
}

#[test]
fn rule_language_version_is_required_and_must_be_1_0() {
    assert_eq!(path_of(|d| drop(d.as_object_mut().unwrap().remove("ruleLanguageVersion"))), "$.ruleLanguageVersion");
    assert_eq!(path_of(|d| d["ruleLanguageVersion"] = json!("2.0")), "$.ruleLanguageVersion");
}

#[test]
fn unknown_top_level_property() {
    assert_eq!(path_of(|d| d["rulez"] = json!([])), "$.rulez");
}

#[test]
fn player_attribute_errors() {
    assert_eq!(path_of(|d| d["playerAttributes"][0]["type"] = json!("integer")), "$.playerAttributes[0].type");
    assert_eq!(path_of(|d| d["playerAttributes"][0]["default"] = json!("ten")), "$.playerAttributes[0].default");
    assert_eq!(path_of(|d| d["playerAttributes"][2]["default"] = json!("tank")), "$.playerAttributes[2].default");
    assert_eq!(
        path_of(|d| d["playerAttributes"].as_array_mut().unwrap().push(json!({ "name": "skill", "type": "number" }))),
        "$.playerAttributes[3].name"
    );
    assert_eq!(
        path_of(|d| d["playerAttributes"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "name": "maps", "type": "string_number_map", "default": { "a": "x" } }))),
        "$.playerAttributes[3].default"
    );
}

#[test]
fn team_errors() {
    assert_eq!(path_of(|d| d["teams"] = json!([])), "$.teams");
    assert_eq!(path_of(|d| d["teams"][1]["minPlayers"] = json!(5)), "$.teams[1].minPlayers");
    assert_eq!(path_of(|d| d["teams"][0]["maxPlayers"] = json!(2.5)), "$.teams[0].maxPlayers");
    assert_eq!(path_of(|d| d["teams"][1]["name"] = json!("red")), "$.teams[1].name");
    assert_eq!(path_of(|d| d["teams"][0]["quantity"] = json!(0)), "$.teams[0].quantity");
    assert_eq!(path_of(|d| d["teams"][0]["size"] = json!(3)), "$.teams[0].size");
}

#[test]
fn large_matches_need_the_balanced_strategy_and_only_batch_and_latency_rules() {
    let (path, reason) = first_error(|d| d["teams"][0]["maxPlayers"] = json!(40));
    assert_eq!(path, "$.algorithm");
    assert!(reason.contains("balanced"), "{reason}");
    assert_eq!(path_of(|d| d["teams"][0]["maxPlayers"] = json!(300)), "$.teams");
    assert_eq!(
        path_of(|d| {
            d["teams"][0]["maxPlayers"] = json!(40);
            d["algorithm"] = json!({ "strategy": "balanced", "balancedAttribute": "skill" });
            push_rule(
                d,
                json!({ "name": "Same", "type": "comparison", "operation": "=", "measurements": "flatten(teams[*].players.attributes[mode])" }),
            );
        }),
        "$.rules[1].type"
    );
}

#[test]
fn algorithm_errors() {
    assert_eq!(path_of(|d| d["algorithm"] = json!({ "strategy": "fastest" })), "$.algorithm.strategy");
    assert_eq!(path_of(|d| d["algorithm"] = json!({ "strategy": "balanced" })), "$.algorithm.balancedAttribute");
    assert_eq!(
        path_of(|d| d["algorithm"] = json!({ "strategy": "balanced", "balancedAttribute": "mode" })),
        "$.algorithm.balancedAttribute"
    );
    assert_eq!(
        path_of(|d| d["algorithm"] = json!({ "batchingPreference": "fastestRegion" })),
        "$.algorithm.batchingPreference"
    );
    assert_eq!(path_of(|d| d["algorithm"] = json!({ "batchingPreference": "sorted" })), "$.algorithm.sortByAttributes");
    assert_eq!(
        path_of(|d| d["algorithm"] = json!({ "batchingPreference": "sorted", "sortByAttributes": ["skill", "rank"] })),
        "$.algorithm.sortByAttributes[1]"
    );
    assert_eq!(
        path_of(|d| d["algorithm"] = json!({ "expansionAgeSelection": "middle" })),
        "$.algorithm.expansionAgeSelection"
    );
    assert_eq!(path_of(|d| d["algorithm"] = json!({ "backfillPriority": "urgent" })), "$.algorithm.backfillPriority");
}

#[test]
fn rule_errors_name_the_property() {
    assert_eq!(path_of(|d| d["rules"][0]["type"] = json!("similarity")), "$.rules[0].type");
    assert_eq!(path_of(|d| d["rules"][0]["maxDistance"] = json!("far")), "$.rules[0].maxDistance");
    assert_eq!(path_of(|d| d["rules"][0]["batchAttribute"] = json!("rank")), "$.rules[0].batchAttribute");
    assert_eq!(path_of(|d| d["rules"][0]["batchAttribute"] = json!("roles")), "$.rules[0].batchAttribute");
    assert_eq!(path_of(|d| d["rules"][0]["partyAggregation"] = json!("median")), "$.rules[0].partyAggregation");
    assert_eq!(path_of(|d| d["rules"][0]["maxDistanse"] = json!(3)), "$.rules[0].maxDistanse");
    assert_eq!(
        path_of(|d| push_rule(d, json!({ "name": "FairSkill", "type": "latency", "maxLatency": 100 }))),
        "$.rules[1].name"
    );
    assert_eq!(path_of(|d| push_rule(d, json!({ "name": "Lat", "type": "latency" }))), "$.rules[1]");
    assert_eq!(
        path_of(|d| push_rule(
            d,
            json!({ "name": "Lat", "type": "latency", "maxLatency": 100, "distanceReference": "max", "maxDistance": 5 })
        )),
        "$.rules[1].distanceReference"
    );
}

#[test]
fn expressions_are_checked_for_references_and_types() {
    let distance = |measurements: Value| {
        path_of(|d| {
            push_rule(
                d,
                json!({ "name": "D", "type": "distance", "measurements": measurements, "referenceValue": 10, "maxDistance": 5 }),
            )
        })
    };
    assert_eq!(distance(json!(["avg(teams[*].players.attributes[rank])"])), "$.rules[1].measurements[0]");
    assert_eq!(distance(json!(["avg(teams[green].players.attributes[skill])"])), "$.rules[1].measurements[0]");
    assert_eq!(distance(json!(["avg(teams[red].players.attributes[mode])"])), "$.rules[1].measurements[0]");
    assert_eq!(
        distance(json!(["teams[red].players.attributes[skill]", "mean(teams[red].players.attributes[skill])"])),
        "$.rules[1].measurements[1]"
    );
    assert_eq!(distance(json!("teams[red].players.attributes[mode]")), "$.rules[1].measurements");
    let (path, reason) = first_error(|d| {
        push_rule(
            d,
            json!({ "name": "D", "type": "distance", "measurements": ["avg(teams[red].players[playerId])"], "maxDistance": 5 }),
        )
    });
    assert_eq!(path, "$.rules[1].measurements[0]");
    assert!(reason.contains("List<number>"), "{reason}");
    assert_eq!(
        path_of(|d| push_rule(
            d,
            json!({ "name": "D", "type": "distance", "measurements": ["avg(teams[red].players.attributes[skill])"],
            "referenceValue": "teams[blue].players.attributes[skill]", "maxDistance": 5 })
        )),
        "$.rules[1].referenceValue"
    );
}

#[test]
fn comparison_and_collection_rules() {
    let rule = |r: Value| path_of(|d| push_rule(d, r));
    assert_eq!(
        rule(
            json!({ "name": "C", "type": "comparison", "measurements": ["teams[red].players.attributes[skill]"], "operation": ">" })
        ),
        "$.rules[1].referenceValue"
    );
    assert_eq!(
        rule(
            json!({ "name": "C", "type": "comparison", "measurements": ["teams[red].players.attributes[mode]"], "operation": "<", "referenceValue": "x" })
        ),
        "$.rules[1].operation"
    );
    assert_eq!(
        rule(
            json!({ "name": "C", "type": "comparison", "measurements": ["teams[red].players.attributes[skill]"], "operation": "~", "referenceValue": 1 })
        ),
        "$.rules[1].operation"
    );
    assert_eq!(
        rule(
            json!({ "name": "K", "type": "collection", "operation": "intersection", "measurements": ["flatten(teams[*].players.attributes[mode])"], "minCount": 1 })
        ),
        "$.rules[1].measurements"
    );
    assert_eq!(
        rule(
            json!({ "name": "K", "type": "collection", "operation": "contains", "measurements": ["flatten(teams[*].players.attributes[roles])"] , "minCount": 1 })
        ),
        "$.rules[1].referenceValue"
    );
    assert_eq!(
        rule(
            json!({ "name": "K", "type": "collection", "operation": "contains", "measurements": ["flatten(teams[*].players.attributes[roles])"], "referenceValue": "tank" })
        ),
        "$.rules[1]"
    );
    assert_eq!(
        rule(
            json!({ "name": "K", "type": "collection", "operation": "union", "measurements": ["flatten(teams[*].players.attributes[roles])"], "minCount": 1 })
        ),
        "$.rules[1].operation"
    );
}

#[test]
fn sort_and_compound_rules() {
    let rule = |r: Value| path_of(|d| push_rule(d, r));
    assert_eq!(
        rule(json!({ "name": "S", "type": "absoluteSort", "sortAttribute": "mode" })),
        "$.rules[1].sortAttribute"
    );
    assert_eq!(
        rule(json!({ "name": "S", "type": "distanceSort", "sortAttribute": "skill", "sortDirection": "up" })),
        "$.rules[1].sortDirection"
    );
    assert_eq!(
        rule(json!({ "name": "S", "type": "distanceSort", "sortAttribute": "skill", "mapKey": "maxValue" })),
        "$.rules[1].mapKey"
    );
    assert_eq!(
        rule(json!({ "name": "X", "type": "compound", "statement": "and(FairSkill, Missing)" })),
        "$.rules[1].statement"
    );
    assert_eq!(
        rule(json!({ "name": "X", "type": "compound", "statement": "nand(FairSkill)" })),
        "$.rules[1].statement"
    );
    assert_eq!(
        rule(json!({ "name": "X", "type": "compound", "statement": "not(FairSkill, FairSkill)" })),
        "$.rules[1].statement"
    );
    assert_eq!(
        rule(json!({ "name": "X", "type": "compound", "statement": "or(X, FairSkill)" })),
        "$.rules[1].statement"
    );
    assert_eq!(rule(json!({ "name": "X", "type": "compound" })), "$.rules[1].statement");
}

#[test]
fn expansion_errors() {
    let expansion = |e: Value| path_of(|d| d["expansions"] = json!([e]));
    assert_eq!(
        expansion(json!({ "target": "rules[Missing].maxDistance", "steps": [{ "waitTimeSeconds": 5, "value": 20 }] })),
        "$.expansions[0].target"
    );
    assert_eq!(
        expansion(json!({ "target": "rules[FairSkill].minCount", "steps": [{ "waitTimeSeconds": 5, "value": 20 }] })),
        "$.expansions[0].target"
    );
    assert_eq!(
        expansion(json!({ "target": "teams[green].minPlayers", "steps": [{ "waitTimeSeconds": 5, "value": 1 }] })),
        "$.expansions[0].target"
    );
    assert_eq!(
        expansion(json!({ "target": "teams[red].quantity", "steps": [{ "waitTimeSeconds": 5, "value": 1 }] })),
        "$.expansions[0].target"
    );
    assert_eq!(
        expansion(json!({ "target": "FairSkill", "steps": [{ "waitTimeSeconds": 5, "value": 1 }] })),
        "$.expansions[0].target"
    );
    assert_eq!(expansion(json!({ "target": "rules[FairSkill].maxDistance", "steps": [] })), "$.expansions[0].steps");
    assert_eq!(
        expansion(
            json!({ "target": "rules[FairSkill].maxDistance", "steps": [{ "waitTimeSeconds": 10, "value": 20 }, { "waitTimeSeconds": 10, "value": 30 }] })
        ),
        "$.expansions[0].steps[1].waitTimeSeconds"
    );
    assert_eq!(
        expansion(
            json!({ "target": "rules[FairSkill].maxDistance", "steps": [{ "waitTimeSeconds": 10, "value": "wide" }] })
        ),
        "$.expansions[0].steps[0].value"
    );
    assert_eq!(
        expansion(json!({ "target": "teams[red].minPlayers", "steps": [{ "waitTimeSeconds": 10, "value": 9 }] })),
        "$.expansions[0].steps[0].value"
    );
    assert_eq!(
        expansion(json!({ "target": "algorithm.strategy", "steps": [{ "waitTimeSeconds": 10, "value": "balanced" }] })),
        "$.expansions[0].target"
    );
}

#[test]
fn validate_all_reports_every_problem_in_order() {
    let mut doc = base();
    doc["ruleLanguageVersion"] = json!("0.9");
    doc["teams"][1]["minPlayers"] = json!(9);
    doc["rules"][0]["maxDistance"] = json!("far");
    let paths: Vec<String> = RuleSet::validate_all(&doc.to_string()).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["$.ruleLanguageVersion", "$.teams[1].minPlayers", "$.rules[0].maxDistance"]);
}

#[test]
fn numbers_written_as_strings_are_accepted_as_in_the_documentation() {
    // The rule type reference writes "maxDistance":"500".
    let mut doc = base();
    doc["rules"][0]["maxDistance"] = json!("500");
    assert!(RuleSet::parse(&doc.to_string()).is_ok());
}

#[test]
fn errors_display_path_and_reason() {
    let err = RuleSet::parse(r#"{"teams":[{"name":"a","minPlayers":1,"maxPlayers":1}]}"#).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: {}", err.path, err.reason));
}
