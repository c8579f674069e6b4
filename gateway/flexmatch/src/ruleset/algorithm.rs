//! `algorithm`: strategy, batching preference, balanced attribute, backfill priority and
//! expansion age selection.

use super::*;

pub(super) fn parse_algorithm(
    v: Option<&Json>,
    attributes: &[AttributeDef],
    large: bool,
    errs: &mut Errors,
) -> (Algorithm, Option<usize>, Vec<usize>) {
    let path = "$.algorithm";
    let empty = Map::new();
    let obj = match v {
        None => &empty,
        Some(Json::Object(o)) => o,
        Some(_) => {
            errs.push(path, "must be an object");
            &empty
        }
    };
    check_keys(
        obj,
        &[
            "strategy",
            "balancedAttribute",
            "batchingPreference",
            "sortByAttributes",
            "expansionAgeSelection",
            "backfillPriority",
        ],
        path,
        errs,
    );
    let strategy = enum_value(
        obj,
        "strategy",
        path,
        &[("exhaustiveSearch", Strategy::ExhaustiveSearch), ("balanced", Strategy::Balanced)],
        errs,
    )
    .unwrap_or(Strategy::ExhaustiveSearch);
    if large && strategy != Strategy::Balanced {
        let at = if obj.contains_key("strategy") { format!("{path}.strategy") } else { path.to_string() };
        errs.push(at, "matches of more than 40 players (the sum of the teams' maxPlayers) need strategy \"balanced\"");
    }
    let mut balanced_attribute = None;
    let balanced_name = obj.get("balancedAttribute").map(|b| match b.as_str() {
        Some(name) => {
            match attributes.iter().position(|a| a.name == name) {
                Some(i) if attributes[i].kind == AttributeType::Number => balanced_attribute = Some(i),
                Some(_) => {
                    errs.push(format!("{path}.balancedAttribute"), format!("{name:?} must be a number attribute"))
                }
                None => errs.push(format!("{path}.balancedAttribute"), format!("unknown player attribute {name:?}")),
            }
            name.to_string()
        }
        None => {
            errs.push(format!("{path}.balancedAttribute"), "must be a string");
            String::new()
        }
    });
    if strategy == Strategy::Balanced && balanced_name.is_none() {
        errs.push(format!("{path}.balancedAttribute"), "is required with strategy \"balanced\"");
    }
    let batching = obj.get("batchingPreference").and_then(|b| {
        let parsed = b.as_str().and_then(BatchingPreference::parse);
        let allowed: &[BatchingPreference] = match strategy {
            Strategy::ExhaustiveSearch => &[BatchingPreference::Random, BatchingPreference::Sorted],
            Strategy::Balanced => &[BatchingPreference::LargestPopulation, BatchingPreference::FastestRegion],
        };
        match parsed {
            Some(p) if allowed.contains(&p) => Some(p),
            _ => {
                let names = match strategy {
                    Strategy::ExhaustiveSearch => "random or sorted with strategy exhaustiveSearch",
                    Strategy::Balanced => "largestPopulation or fastestRegion with strategy balanced",
                };
                errs.push(format!("{path}.batchingPreference"), format!("must be {names}, found {b}"));
                None
            }
        }
    });
    let batching_preference = batching.unwrap_or(match strategy {
        Strategy::ExhaustiveSearch => BatchingPreference::Random,
        Strategy::Balanced => BatchingPreference::LargestPopulation,
    });
    let mut sort_by = Vec::new();
    let mut sort_names = Vec::new();
    if let Some(s) = obj.get("sortByAttributes") {
        match s.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}.sortByAttributes[{i}]");
                    match item.as_str().map(|n| (n, attributes.iter().position(|a| a.name == n))) {
                        Some((n, Some(idx))) => {
                            if matches!(attributes[idx].kind, AttributeType::Number | AttributeType::String) {
                                sort_by.push(idx);
                                sort_names.push(n.to_string());
                            } else {
                                errs.push(p, format!("{n:?} must be a number or string attribute to sort by"));
                            }
                        }
                        Some((n, None)) => errs.push(p, format!("unknown player attribute {n:?}")),
                        None => errs.push(p, "must be an attribute name"),
                    }
                }
            }
            None => errs.push(format!("{path}.sortByAttributes"), "must be an array of attribute names"),
        }
    }
    if batching_preference == BatchingPreference::Sorted && obj.get("sortByAttributes").is_none() {
        errs.push(format!("{path}.sortByAttributes"), "is required with batchingPreference \"sorted\"");
    }
    let expansion_age_selection = enum_value(
        obj,
        "expansionAgeSelection",
        path,
        &[("newest", ExpansionAgeSelection::Newest), ("oldest", ExpansionAgeSelection::Oldest)],
        errs,
    )
    .unwrap_or(ExpansionAgeSelection::Newest);
    let backfill_priority = enum_value(
        obj,
        "backfillPriority",
        path,
        &[("normal", BackfillPriority::Normal), ("low", BackfillPriority::Low), ("high", BackfillPriority::High)],
        errs,
    )
    .unwrap_or(BackfillPriority::Normal);
    (
        Algorithm {
            strategy,
            balanced_attribute: balanced_name,
            batching_preference,
            sort_by_attributes: sort_names,
            expansion_age_selection,
            backfill_priority,
        },
        balanced_attribute,
        sort_by,
    )
}
