//! `rules`: the eight rule types with their measurements, reference values and properties.

use super::*;

/// Measurements are one expression or an array of them.
pub(super) fn parse_measurements(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    errs: &mut Errors,
) -> Option<Vec<(Expr, Ty)>> {
    let p = format!("{path}.measurements");
    let texts: Vec<(String, &Json)> = match obj.get("measurements") {
        None => {
            errs.push(&p, "is required");
            return None;
        }
        Some(v @ Json::String(_)) => vec![(p.clone(), v)],
        Some(Json::Array(items)) if !items.is_empty() => {
            items.iter().enumerate().map(|(i, v)| (format!("{p}[{i}]"), v)).collect()
        }
        Some(other) => {
            errs.push(&p, format!("must be a property expression or a non-empty array of them, found {other}"));
            return None;
        }
    };
    let mut out = Vec::new();
    for (path, v) in texts {
        let Some(text) = v.as_str() else {
            errs.push(&path, "must be a property expression string");
            return None;
        };
        match expr::parse(text, scope) {
            Ok(e) => out.push(e),
            Err(reason) => {
                errs.push(&path, reason);
                return None;
            }
        }
    }
    Some(out)
}

/// Parses a `referenceValue` (or an expansion step's new value for one).
pub(super) fn parse_operand(
    v: &Json,
    path: &str,
    scope: &ScopeView<'_>,
    errs: &mut Errors,
) -> Option<(Operand, Option<Ty>)> {
    match v {
        Json::Number(n) => n.as_f64().map(|f| (Operand::Num(f), Some(Ty { depth: 0, elem: Elem::Number }))),
        Json::String(s) if expr::looks_like_expression(s) => match expr::parse(s, scope) {
            Ok((e, ty)) => Some((Operand::Expr(e), Some(ty))),
            Err(reason) => {
                errs.push(path, reason);
                None
            }
        },
        Json::String(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Some((Operand::Num(f), Some(Ty { depth: 0, elem: Elem::Number }))),
            _ => Some((Operand::Str(s.clone()), Some(Ty { depth: 0, elem: Elem::String }))),
        },
        Json::Array(items) => match items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>() {
            Some(list) => Some((Operand::List(list), Some(Ty { depth: 1, elem: Elem::String }))),
            None => {
                errs.push(path, "a list reference value must hold only strings");
                None
            }
        },
        other => {
            errs.push(path, format!("must be a number, a string or a property expression, found {other}"));
            None
        }
    }
}

pub(super) fn numeric_prop(obj: &Map<String, Json>, key: &str, path: &str, errs: &mut Errors) -> Option<f64> {
    let v = obj.get(key)?;
    let n = as_number(v);
    if n.is_none() {
        errs.push(format!("{path}.{key}"), format!("must be a number, found {v}"));
    }
    n
}

pub(super) fn parse_rules(
    v: Option<&Json>,
    scope: &ScopeView<'_>,
    large: bool,
    errs: &mut Errors,
) -> (Vec<Rule>, Vec<RuleParams>) {
    let mut rules: Vec<Rule> = Vec::new();
    let mut params: Vec<RuleParams> = Vec::new();
    let Some(v) = v else { return (rules, params) };
    let Some(items) = v.as_array() else {
        errs.push("$.rules", "must be an array");
        return (rules, params);
    };
    // Names first, so compound statements may name rules that come after them.
    let names: Vec<Option<&str>> = items.iter().map(|r| r.get("name").and_then(Json::as_str)).collect();
    // Compound statements are resolved after every rule has its final index.
    let mut compounds: Vec<(usize, String, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.rules[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        let name = match names[i] {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                errs.push(format!("{path}.name"), "is required (a non-empty string)");
                continue;
            }
        };
        if names[..i].contains(&Some(name.as_str())) {
            errs.push(format!("{path}.name"), format!("duplicate rule name {name:?}"));
            continue;
        }
        let Some(kind) = obj.get("type").and_then(Json::as_str) else {
            errs.push(format!("{path}.type"), "is required");
            continue;
        };
        const COMMON: [&str; 3] = ["name", "description", "type"];
        let allowed: &[&str] = match kind {
            "batchDistance" => &["batchAttribute", "maxDistance", "partyAggregation"],
            "comparison" => &["measurements", "referenceValue", "operation", "partyAggregation"],
            "distance" => &["measurements", "referenceValue", "maxDistance", "minDistance", "partyAggregation"],
            "collection" => {
                &["measurements", "referenceValue", "operation", "maxCount", "minCount", "partyAggregation"]
            }
            "latency" => &["maxLatency", "maxDistance", "distanceReference", "partyAggregation"],
            "absoluteSort" | "distanceSort" => &["sortDirection", "sortAttribute", "mapKey", "partyAggregation"],
            "compound" => &["statement"],
            other => {
                errs.push(
                    format!("{path}.type"),
                    format!(
                        "unknown rule type {other:?}; FlexMatch rule types are batchDistance, comparison, distance, \
                         collection, latency, absoluteSort, distanceSort and compound"
                    ),
                );
                continue;
            }
        };
        if large && !matches!(kind, "batchDistance" | "latency") {
            errs.push(
                format!("{path}.type"),
                format!("{kind} rules are not available for large matches (more than 40 players): use batchDistance and latency rules"),
            );
            continue;
        }
        let all: Vec<&str> = COMMON.iter().chain(allowed).copied().collect();
        check_keys(obj, &all, &path, errs);
        let errors_before = errs.0.len();
        let mut p = RuleParams {
            max_distance: numeric_prop(obj, "maxDistance", &path, errs),
            min_distance: numeric_prop(obj, "minDistance", &path, errs),
            max_latency: numeric_prop(obj, "maxLatency", &path, errs),
            min_count: numeric_prop(obj, "minCount", &path, errs),
            max_count: numeric_prop(obj, "maxCount", &path, errs),
            reference: None,
        };
        let party_aggregation =
            if kind == "collection" { None } else { enum_value(obj, "partyAggregation", &path, PARTY, errs) };
        let rule_kind = match kind {
            "batchDistance" => parse_batch_distance(obj, &path, scope, &p, errs),
            "comparison" => parse_comparison(obj, &path, scope, &mut p, errs),
            "distance" => parse_distance(obj, &path, scope, &mut p, errs),
            "collection" => parse_collection(obj, &path, scope, &mut p, errs),
            "latency" => parse_latency(obj, &path, &p, errs),
            "absoluteSort" | "distanceSort" => parse_sort(kind, obj, &path, scope, errs),
            _ => match obj.get("statement").and_then(Json::as_str) {
                Some(s) => {
                    compounds.push((rules.len(), s.to_string(), format!("{path}.statement")));
                    Some(RuleKind::Compound { statement: Statement::And(Vec::new()) })
                }
                None => {
                    errs.push(format!("{path}.statement"), "is required: e.g. \"and(RuleA, or(RuleB, RuleC))\"");
                    None
                }
            },
        };
        let Some(rule_kind) = rule_kind else { continue };
        if errs.0.len() > errors_before {
            continue;
        }
        let prunable = is_prunable(&rule_kind, &p);
        rules.push(Rule { name, kind: rule_kind, party_aggregation, in_compound: false, prunable });
        params.push(p);
    }
    for (index, text, path) in compounds {
        match parse_statement(&text, &rules, index) {
            Ok(statement) => {
                let mut referenced = Vec::new();
                statement_rules(&statement, &mut referenced);
                for r in referenced {
                    rules[r].in_compound = true;
                }
                rules[index].kind = RuleKind::Compound { statement };
            }
            Err(reason) => errs.push(path, reason),
        }
    }
    (rules, params)
}

pub(super) fn parse_batch_distance(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let Some(name) = obj.get("batchAttribute").and_then(Json::as_str) else {
        errs.push(format!("{path}.batchAttribute"), "is required");
        return None;
    };
    let Some(index) = scope.attributes.iter().position(|a| a.name == name) else {
        errs.push(format!("{path}.batchAttribute"), format!("unknown player attribute {name:?}"));
        return None;
    };
    let numeric = match scope.attributes[index].kind {
        AttributeType::Number => true,
        AttributeType::String => false,
        other => {
            errs.push(
                format!("{path}.batchAttribute"),
                format!("{name:?} is a {} attribute; batchDistance needs a number or string attribute", other.as_str()),
            );
            return None;
        }
    };
    if numeric && !obj.contains_key("maxDistance") {
        errs.push(format!("{path}.maxDistance"), "is required when batchAttribute is a number attribute");
        return None;
    }
    if p.max_distance.is_some_and(|d| d < 0.0) {
        errs.push(format!("{path}.maxDistance"), "must not be negative");
    }
    Some(RuleKind::BatchDistance { attribute: index, numeric })
}

pub(super) fn parse_comparison(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &mut RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let measurements = parse_measurements(obj, path, scope, errs)?;
    let op = enum_value(
        obj,
        "operation",
        path,
        &[
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            ("=", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
        ],
        errs,
    );
    if !obj.contains_key("operation") {
        errs.push(format!("{path}.operation"), "is required: one of <, <=, =, !=, >, >=");
    }
    let op = op?;
    let elem = measurements[0].1.elem;
    for (i, (_, ty)) in measurements.iter().enumerate() {
        if !matches!(ty.elem, Elem::Number | Elem::String) || ty.elem != elem {
            errs.push(
                format!("{path}.measurements"),
                format!("measurement {i} is {ty}; comparison measures numbers or strings, all of one kind"),
            );
            return None;
        }
    }
    if elem == Elem::String && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        errs.push(format!("{path}.operation"), "strings can only be compared with = or !=");
        return None;
    }
    match obj.get("referenceValue") {
        None => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                errs.push(
                    format!("{path}.referenceValue"),
                    "is required unless operation is = or != (which then compare the players with each other)",
                );
                return None;
            }
        }
        Some(v) => {
            let rp = format!("{path}.referenceValue");
            let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
            let ty = ty.unwrap_or(Ty { depth: 0, elem });
            if ty.depth != 0 || ty.elem != elem {
                errs.push(
                    rp,
                    format!("must be a single {} to compare the measurements with, found {ty}", Ty { depth: 0, elem }),
                );
                return None;
            }
            p.reference = Some(operand);
        }
    }
    Some(RuleKind::Comparison { measurements: measurements.into_iter().map(|(e, _)| e).collect(), op })
}

pub(super) fn parse_distance(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &mut RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let measurements = parse_measurements(obj, path, scope, errs)?;
    for (i, (_, ty)) in measurements.iter().enumerate() {
        if ty.elem != Elem::Number {
            errs.push(
                format!("{path}.measurements"),
                format!("measurement {i} is {ty}; distance rules measure numbers"),
            );
            return None;
        }
    }
    if let Some(v) = obj.get("referenceValue") {
        let rp = format!("{path}.referenceValue");
        let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
        if ty != Some(Ty { depth: 0, elem: Elem::Number }) {
            errs.push(rp, "must be a number or an expression that yields one number");
            return None;
        }
        p.reference = Some(operand);
    }
    if p.max_distance.is_none() && p.min_distance.is_none() {
        errs.push(path, "a distance rule needs maxDistance or minDistance");
        return None;
    }
    if let (Some(min), Some(max)) = (p.min_distance, p.max_distance)
        && min > max
    {
        errs.push(format!("{path}.minDistance"), format!("{min} exceeds maxDistance {max}"));
        return None;
    }
    Some(RuleKind::Distance { measurements: measurements.into_iter().map(|(e, _)| e).collect() })
}

pub(super) fn parse_collection(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &mut RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let measurements = parse_measurements(obj, path, scope, errs)?;
    if !obj.contains_key("operation") {
        errs.push(format!("{path}.operation"), "is required: intersection, contains or reference_intersection_count");
        return None;
    }
    let op = enum_value(
        obj,
        "operation",
        path,
        &[
            ("intersection", CollectionOp::Intersection),
            ("contains", CollectionOp::Contains),
            ("reference_intersection_count", CollectionOp::ReferenceIntersectionCount),
        ],
        errs,
    )?;
    let aggregation = enum_value(
        obj,
        "partyAggregation",
        path,
        &[("union", CollectionAggregation::Union), ("intersection", CollectionAggregation::Intersection)],
        errs,
    );
    for (i, (_, ty)) in measurements.iter().enumerate() {
        let ok = match op {
            CollectionOp::Contains => ty.elem == Elem::String && ty.depth >= 1,
            _ => ty.elem == Elem::String && ty.depth == 2,
        };
        if !ok {
            let want = if op == CollectionOp::Contains {
                "a list of strings"
            } else {
                "a list of string lists, List<List<string>>"
            };
            errs.push(
                format!("{path}.measurements"),
                format!("measurement {i} is {ty}; this collection rule needs {want}"),
            );
            return None;
        }
    }
    let rp = format!("{path}.referenceValue");
    match (op, obj.get("referenceValue")) {
        (CollectionOp::Intersection, Some(_)) => {
            errs.push(rp, "the intersection operation takes no referenceValue");
            return None;
        }
        (CollectionOp::Intersection, None) => {}
        (_, None) => {
            errs.push(rp, "is required for contains and reference_intersection_count");
            return None;
        }
        (CollectionOp::Contains, Some(v)) => {
            let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
            if ty != Some(Ty { depth: 0, elem: Elem::String }) && !matches!(operand, Operand::Num(_)) {
                errs.push(rp, "must be the string to count");
                return None;
            }
            // A numeric-looking literal is still a string to look for.
            p.reference = Some(match (operand, v) {
                (Operand::Num(_), Json::String(s)) => Operand::Str(s.clone()),
                (Operand::Num(n), _) => Operand::Str(n.to_string()),
                (o, _) => o,
            });
        }
        (CollectionOp::ReferenceIntersectionCount, Some(v)) => {
            let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
            if ty != Some(Ty { depth: 1, elem: Elem::String }) {
                errs.push(rp, "must be a list of strings (or an expression that yields List<string>)");
                return None;
            }
            p.reference = Some(operand);
        }
    }
    if p.min_count.is_none() && p.max_count.is_none() {
        errs.push(path, "a collection rule needs minCount or maxCount");
        return None;
    }
    Some(RuleKind::Collection { measurements: measurements.into_iter().map(|(e, _)| e).collect(), op, aggregation })
}

pub(super) fn parse_latency(
    obj: &Map<String, Json>,
    path: &str,
    p: &RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    if p.max_latency.is_none() && p.max_distance.is_none() {
        errs.push(path, "a latency rule needs maxLatency or maxDistance");
        return None;
    }
    if p.max_latency.is_some_and(|l| l <= 0.0) {
        errs.push(format!("{path}.maxLatency"), "must be greater than 0");
        return None;
    }
    let distance_reference = enum_value(
        obj,
        "distanceReference",
        path,
        &[("min", DistanceReference::Min), ("avg", DistanceReference::Avg)],
        errs,
    )
    .unwrap_or(DistanceReference::Min);
    Some(RuleKind::Latency { distance_reference })
}

pub(super) fn parse_sort(
    kind: &str,
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let descending =
        enum_value(obj, "sortDirection", path, &[("ascending", false), ("descending", true)], errs).unwrap_or(false);
    let Some(name) = obj.get("sortAttribute").and_then(Json::as_str) else {
        errs.push(format!("{path}.sortAttribute"), "is required");
        return None;
    };
    let Some(attribute) = scope.attributes.iter().position(|a| a.name == name) else {
        errs.push(format!("{path}.sortAttribute"), format!("unknown player attribute {name:?}"));
        return None;
    };
    let map_key =
        enum_value(obj, "mapKey", path, &[("minValue", MapKey::MinValue), ("maxValue", MapKey::MaxValue)], errs);
    match (scope.attributes[attribute].kind, map_key) {
        (AttributeType::Number, None) | (AttributeType::StringNumberMap, Some(_)) => {}
        (AttributeType::Number, Some(_)) => {
            errs.push(format!("{path}.mapKey"), "only applies to string_number_map attributes");
            return None;
        }
        (AttributeType::StringNumberMap, None) => {
            errs.push(
                format!("{path}.mapKey"),
                "is required to sort by a string_number_map attribute: minValue or maxValue",
            );
            return None;
        }
        (other, _) => {
            errs.push(
                format!("{path}.sortAttribute"),
                format!(
                    "{name:?} is a {} attribute; sort rules need a number or string_number_map attribute",
                    other.as_str()
                ),
            );
            return None;
        }
    }
    Some(if kind == "absoluteSort" {
        RuleKind::AbsoluteSort { attribute, descending, map_key }
    } else {
        RuleKind::DistanceSort { attribute, descending, map_key }
    })
}

/// Whether a failing rule stays failing as tickets join the match.
pub(super) fn is_prunable(kind: &RuleKind, p: &RuleParams) -> bool {
    let plain = |ms: &[Expr]| ms.iter().all(|m| !m.has_aggregate());
    let constant_ref = !matches!(p.reference, Some(Operand::Expr(_)));
    match kind {
        // The spread of values and the set of shared regions only get worse.
        RuleKind::BatchDistance { .. } | RuleKind::Latency { .. } => true,
        // Each player's value is judged alone (or all values against each other).
        RuleKind::Comparison { measurements, .. } => plain(measurements) && constant_ref,
        RuleKind::Distance { measurements } => plain(measurements) && constant_ref,
        RuleKind::Collection { measurements, op, .. } => {
            plain(measurements)
                && match op {
                    CollectionOp::Intersection => p.max_count.is_none(),
                    CollectionOp::Contains => p.min_count.is_none(),
                    CollectionOp::ReferenceIntersectionCount => {
                        p.min_count.is_none() && !matches!(&p.reference, Some(Operand::Expr(e)) if e.has_aggregate())
                    }
                }
        }
        _ => false,
    }
}
