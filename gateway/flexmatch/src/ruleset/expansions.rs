//! `expansions`: how rule properties and team sizes relax with a ticket's age, as stages.

use super::*;

pub(super) fn parse_expansions(
    v: Option<&Json>,
    scope: &ScopeView<'_>,
    team_defs: &TeamDefs,
    teams: &[Team],
    rules: &[Rule],
    errs: &mut Errors,
) -> Vec<Expansion> {
    let mut out = Vec::new();
    let Some(v) = v else { return out };
    let Some(items) = v.as_array() else {
        errs.push("$.expansions", "must be an array");
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.expansions[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        check_keys(obj, &["target", "steps"], &path, errs);
        let Some(target_text) = obj.get("target").and_then(Json::as_str) else {
            errs.push(
                format!("{path}.target"),
                "is required, e.g. \"rules[FairSkill].maxDistance\" or \"teams[red].minPlayers\"",
            );
            continue;
        };
        let target = match parse_target(target_text, team_defs, rules) {
            Ok(t) => t,
            Err(reason) => {
                errs.push(format!("{path}.target"), reason);
                continue;
            }
        };
        let Some(steps) = obj.get("steps").and_then(Json::as_array).filter(|s| !s.is_empty()) else {
            errs.push(format!("{path}.steps"), "is required: a non-empty array of {waitTimeSeconds, value}");
            continue;
        };
        let mut parsed = Vec::new();
        let mut last_wait: Option<f64> = None;
        for (j, step) in steps.iter().enumerate() {
            let sp = format!("{path}.steps[{j}]");
            let Some(so) = step.as_object() else {
                errs.push(&sp, "must be an object");
                continue;
            };
            check_keys(so, &["waitTimeSeconds", "value"], &sp, errs);
            let wait = match so.get("waitTimeSeconds").map(|w| (w, as_number(w))) {
                Some((_, Some(w))) if w >= 0.0 => w,
                Some((w, _)) => {
                    errs.push(
                        format!("{sp}.waitTimeSeconds"),
                        format!("must be a number of seconds, at least 0, found {w}"),
                    );
                    continue;
                }
                None => {
                    errs.push(format!("{sp}.waitTimeSeconds"), "is required");
                    continue;
                }
            };
            if let Some(prev) = last_wait
                && wait <= prev
            {
                errs.push(
                    format!("{sp}.waitTimeSeconds"),
                    format!("steps must have strictly increasing waitTimeSeconds ({wait} follows {prev})"),
                );
                continue;
            }
            last_wait = Some(wait);
            let Some(value) = so.get("value") else {
                errs.push(format!("{sp}.value"), "is required");
                continue;
            };
            let vp = format!("{sp}.value");
            let Some(value) = step_value(&target, value, &vp, scope, teams, errs) else { continue };
            parsed.push(((wait * 1000.0).round() as u64, value));
        }
        out.push(Expansion { target, steps: parsed });
    }
    out
}

pub(super) fn parse_target(text: &str, team_defs: &TeamDefs, rules: &[Rule]) -> Result<ExpansionTarget, String> {
    if let Some(prop) = text.strip_prefix("algorithm.") {
        return match prop {
            "batchingPreference" => Ok(ExpansionTarget::BatchingPreference),
            other => Err(format!("algorithm.{other} cannot be expanded; algorithm.batchingPreference can")),
        };
    }
    let (component, rest) = text.split_once('[').ok_or_else(|| {
        format!("{text:?} is not a target; write rules[<rule name>].<property> or teams[<team name>].<property>")
    })?;
    let (name, prop) = rest
        .split_once("].")
        .ok_or_else(|| format!("{text:?} is not a target; write {component}[<name>].<property>"))?;
    match component {
        "rules" => {
            let rule = rules.iter().position(|r| r.name == name).ok_or_else(|| format!("unknown rule {name:?}"))?;
            let property = match prop {
                "maxDistance" => RuleProperty::MaxDistance,
                "minDistance" => RuleProperty::MinDistance,
                "maxLatency" => RuleProperty::MaxLatency,
                "minCount" => RuleProperty::MinCount,
                "maxCount" => RuleProperty::MaxCount,
                "referenceValue" => RuleProperty::ReferenceValue,
                other => return Err(format!("rule property {other:?} cannot be expanded")),
            };
            let applies = matches!(
                (&rules[rule].kind, property),
                (RuleKind::BatchDistance { .. }, RuleProperty::MaxDistance)
                    | (
                        RuleKind::Distance { .. },
                        RuleProperty::MaxDistance | RuleProperty::MinDistance | RuleProperty::ReferenceValue
                    )
                    | (RuleKind::Comparison { .. }, RuleProperty::ReferenceValue)
                    | (
                        RuleKind::Collection { .. },
                        RuleProperty::MinCount | RuleProperty::MaxCount | RuleProperty::ReferenceValue
                    )
                    | (RuleKind::Latency { .. }, RuleProperty::MaxLatency | RuleProperty::MaxDistance)
            );
            if !applies {
                return Err(format!("rule {name:?} has no expandable property {prop:?}"));
            }
            Ok(ExpansionTarget::Rule { rule, property })
        }
        "teams" => {
            let indices = if name == "*" {
                team_defs.iter().flat_map(|(_, i)| i.iter().copied()).collect()
            } else {
                team_defs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, i)| i.clone())
                    .ok_or_else(|| format!("unknown team {name:?}"))?
            };
            match prop {
                "minPlayers" => Ok(ExpansionTarget::Team { teams: indices, max: false }),
                "maxPlayers" => Ok(ExpansionTarget::Team { teams: indices, max: true }),
                other => Err(format!("team property {other:?} cannot be expanded: minPlayers or maxPlayers")),
            }
        }
        other => Err(format!("unknown target component {other:?}: rules, teams or algorithm")),
    }
}

pub(super) fn step_value(
    target: &ExpansionTarget,
    value: &Json,
    path: &str,
    scope: &ScopeView<'_>,
    teams: &[Team],
    errs: &mut Errors,
) -> Option<StepValue> {
    match target {
        ExpansionTarget::BatchingPreference => match value.as_str().and_then(BatchingPreference::parse) {
            Some(b) => Some(StepValue::Batching(b)),
            None => {
                errs.push(path, format!("must be a batching preference, found {value}"));
                None
            }
        },
        ExpansionTarget::Team { teams: which, max } => {
            let Some(n) = as_count(value) else {
                errs.push(path, format!("must be a whole number of players, found {value}"));
                return None;
            };
            for &t in which {
                if *max && n < teams[t].min_players {
                    errs.push(path, format!("maxPlayers {n} would be below minPlayers {}", teams[t].min_players));
                    return None;
                }
                if !*max && n > teams[t].max_players {
                    errs.push(path, format!("minPlayers {n} would exceed maxPlayers {}", teams[t].max_players));
                    return None;
                }
            }
            Some(StepValue::Num(n as f64))
        }
        ExpansionTarget::Rule { property: RuleProperty::ReferenceValue, .. } => {
            let (operand, _) = parse_operand(value, path, scope, errs)?;
            Some(StepValue::Operand(operand))
        }
        ExpansionTarget::Rule { .. } => match as_number(value) {
            Some(n) => Some(StepValue::Num(n)),
            None => {
                errs.push(path, format!("must be a number, found {value}"));
                None
            }
        },
    }
}

pub(super) fn build_stages(base: Params, expansions: &[Expansion]) -> Vec<(u64, Params)> {
    let mut waits: BTreeSet<u64> = expansions.iter().flat_map(|e| e.steps.iter().map(|(w, _)| *w)).collect();
    waits.insert(0);
    waits
        .into_iter()
        .map(|at| {
            let mut p = base.clone();
            for e in expansions {
                let Some((_, value)) = e.steps.iter().rev().find(|(w, _)| *w <= at) else { continue };
                match (&e.target, value) {
                    (ExpansionTarget::BatchingPreference, StepValue::Batching(b)) => p.batching_preference = *b,
                    (ExpansionTarget::Team { teams, max }, StepValue::Num(n)) => {
                        for &t in teams {
                            if *max {
                                p.team_max[t] = *n as usize;
                            } else {
                                p.team_min[t] = *n as usize;
                            }
                        }
                    }
                    (ExpansionTarget::Rule { rule, property }, value) => {
                        let rp = &mut p.rules[*rule];
                        match (property, value) {
                            (RuleProperty::MaxDistance, StepValue::Num(n)) => rp.max_distance = Some(*n),
                            (RuleProperty::MinDistance, StepValue::Num(n)) => rp.min_distance = Some(*n),
                            (RuleProperty::MaxLatency, StepValue::Num(n)) => rp.max_latency = Some(*n),
                            (RuleProperty::MinCount, StepValue::Num(n)) => rp.min_count = Some(*n),
                            (RuleProperty::MaxCount, StepValue::Num(n)) => rp.max_count = Some(*n),
                            (RuleProperty::ReferenceValue, StepValue::Operand(o)) => rp.reference = Some(o.clone()),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            (at, p)
        })
        .collect()
}
