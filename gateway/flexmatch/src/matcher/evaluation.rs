//! Evaluating the rule set's rules over a potential match: each rule type, compound
//! statements, and the match as the property expressions see it.

use super::*;

/// A potential match under construction: which tickets, on which team.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// (prepared ticket, team) in the order the tickets joined.
    pub members: Vec<(usize, usize)>,
    /// Per team: (prepared ticket, player index).
    pub team_players: Vec<Vec<(usize, usize)>>,
}

impl State {
    pub(super) fn new(teams: usize) -> Self {
        Self { members: Vec::new(), team_players: vec![Vec::new(); teams] }
    }

    /// Two tickets with no teams, for the ticket-level rules (batchDistance, latency).
    pub(super) fn pair(a: usize, b: usize) -> Self {
        Self { members: vec![(a, usize::MAX), (b, usize::MAX)], team_players: Vec::new() }
    }

    pub(super) fn place(&mut self, tickets: &[Prepared<'_>], t: usize, team: usize) {
        self.members.push((t, team));
        self.team_players[team].extend((0..tickets[t].party()).map(|p| (t, p)));
    }

    pub(super) fn unplace(&mut self, tickets: &[Prepared<'_>]) {
        if let Some((t, team)) = self.members.pop() {
            let keep = self.team_players[team].len() - tickets[t].party();
            self.team_players[team].truncate(keep);
        }
    }

    pub(super) fn players(&self) -> usize {
        self.team_players.iter().map(Vec::len).sum()
    }
}

pub(super) struct View<'a, 'p> {
    pub(super) rs: &'a RuleSet,
    pub(super) tickets: &'a [Prepared<'p>],
    pub(super) state: &'a State,
    pub(super) party: Option<PartyAggregation>,
    pub(super) collection: Option<CollectionAggregation>,
}

impl MatchView for View<'_, '_> {
    fn team_name(&self, team: usize) -> &str {
        &self.rs.teams[team].name
    }
    fn team_players(&self, team: usize) -> usize {
        self.state.team_players[team].len()
    }
    fn player_id(&self, team: usize, player: usize) -> &str {
        let (t, p) = self.state.team_players[team][player];
        &self.tickets[t].ticket.players[p].player_id
    }
    fn attribute(&self, team: usize, player: usize, attribute: usize) -> Value {
        let (t, p) = self.state.team_players[team][player];
        let ticket = &self.tickets[t];
        if let Some(agg) = self.party
            && let Some(v) = ticket.num(attribute, agg)
        {
            return Value::Num(v);
        }
        if let Some(agg) = self.collection
            && let Value::List(_) = &ticket.values[p][attribute]
        {
            let lists: Vec<Vec<&Value>> = ticket
                .values
                .iter()
                .map(|row| match &row[attribute] {
                    Value::List(items) => items.iter().collect(),
                    _ => Vec::new(),
                })
                .collect();
            let mut out: Vec<Value> = Vec::new();
            for (i, list) in lists.iter().enumerate() {
                for v in list {
                    let keep = match agg {
                        CollectionAggregation::Union => true,
                        CollectionAggregation::Intersection => lists.iter().all(|l| l.contains(v)),
                    };
                    if keep && !out.contains(v) && (agg == CollectionAggregation::Union || i == 0) {
                        out.push((*v).clone());
                    }
                }
            }
            return Value::List(out);
        }
        ticket.values[p][attribute].clone()
    }
}

pub(super) fn within(count: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| count >= m - EPS) && max.is_none_or(|m| count <= m + EPS)
}

pub(super) fn operand_value(op: &Operand, view: &View<'_, '_>) -> Value {
    match op {
        Operand::Num(n) => Value::Num(*n),
        Operand::Str(s) => Value::Str(s.clone()),
        Operand::List(l) => Value::List(l.iter().cloned().map(Value::Str).collect()),
        Operand::Expr(e) => expr::eval(e, view),
    }
}

pub(super) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Num(x), Value::Num(y)) => (x - y).abs() <= EPS,
        _ => a == b,
    }
}

pub(super) fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    match op {
        CmpOp::Eq => values_equal(a, b),
        CmpOp::Ne => !values_equal(a, b),
        _ => match (a.as_num(), b.as_num()) {
            (Some(x), Some(y)) => match op {
                CmpOp::Lt => x < y - EPS,
                CmpOp::Le => x <= y + EPS,
                CmpOp::Gt => x > y + EPS,
                CmpOp::Ge => x >= y - EPS,
                _ => unreachable!("equality handled above"),
            },
            _ => true,
        },
    }
}

/// The regions where a latency rule passes for these tickets.
pub(super) fn latency_regions(
    rule: &Rule,
    params: &crate::ruleset::RuleParams,
    reference: DistanceReference,
    tickets: &[Prepared<'_>],
    members: &[usize],
) -> Vec<String> {
    let agg = rule.party_aggregation.unwrap_or(PartyAggregation::Avg);
    let Some(&first) = members.first() else { return Vec::new() };
    let mut out = Vec::new();
    'regions: for region in tickets[first].latency.keys() {
        let mut vals = Vec::with_capacity(members.len());
        for &m in members {
            match tickets[m].latency.get(region) {
                Some(a) => vals.push(pick(*a, agg)),
                None => continue 'regions,
            }
        }
        if let Some(max) = params.max_latency
            && vals.iter().any(|v| *v > max + EPS)
        {
            continue;
        }
        if let Some(max_distance) = params.max_distance {
            let base = match reference {
                DistanceReference::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
                DistanceReference::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
            };
            if vals.iter().any(|v| v - base > max_distance + EPS) {
                continue;
            }
        }
        out.push(region.clone());
    }
    out
}

/// Evaluates rule `index` on a potential match; counts the outcome when `counter` is given.
pub(super) fn eval_rule(
    rs: &RuleSet,
    index: usize,
    params: &Params,
    tickets: &[Prepared<'_>],
    state: &State,
    counter: &mut Option<&mut Vec<[u64; 2]>>,
) -> bool {
    let rule = &rs.rules[index];
    let p = &params.rules[index];
    // FlexMatch rule types reference (match-rules-reference-ruletype.html): for comparison and
    // distance rules (as for batchDistance, latency and the sort rules) "The default is `avg`";
    // for collection rules "The default is `union`". A rule without partyAggregation therefore
    // sees each party member's value as the party's aggregate, not its own. (The rule set
    // examples page says all players of a multi-player ticket must meet the requirements; the
    // rule-type reference is the more specific statement and is what is implemented here.)
    let (party, collection) = match rule.kind {
        RuleKind::Collection { aggregation, .. } => (None, Some(aggregation.unwrap_or(CollectionAggregation::Union))),
        _ => (Some(rule.party_aggregation.unwrap_or(PartyAggregation::Avg)), None),
    };
    let view = View { rs, tickets, state, party, collection };
    let scalars = |ms: &[expr::Expr]| {
        let mut out = Vec::new();
        for m in ms {
            expr::eval(m, &view).scalars(&mut out);
        }
        out
    };
    let passed = match &rule.kind {
        RuleKind::BatchDistance { attribute, numeric } => {
            if *numeric {
                let agg = rule.party_aggregation.unwrap_or(PartyAggregation::Avg);
                let vals = state.members.iter().filter_map(|&(m, _)| tickets[m].num(*attribute, agg));
                match agg3(vals) {
                    Some([min, max, _]) => max - min <= p.max_distance.unwrap_or(0.0) + EPS,
                    None => true,
                }
            } else {
                let mut keys = state.members.iter().map(|&(m, _)| tickets[m].string(*attribute));
                let first = keys.next().flatten();
                keys.all(|k| k == first)
            }
        }
        RuleKind::Comparison { measurements, op } => {
            let vals = scalars(measurements);
            match &p.reference {
                Some(r) => {
                    let r = operand_value(r, &view);
                    matches!(r, Value::Null) || vals.iter().all(|v| compare(v, *op, &r))
                }
                None if *op == CmpOp::Eq => vals.windows(2).all(|w| values_equal(&w[0], &w[1])),
                None => vals.iter().enumerate().all(|(i, a)| vals[i + 1..].iter().all(|b| !values_equal(a, b))),
            }
        }
        RuleKind::Distance { measurements } => {
            let vals: Vec<f64> = scalars(measurements).iter().filter_map(Value::as_num).collect();
            let ok =
                |d: f64| p.min_distance.is_none_or(|m| d >= m - EPS) && p.max_distance.is_none_or(|m| d <= m + EPS);
            match p.reference.as_ref().map(|r| operand_value(r, &view)) {
                Some(Value::Num(r)) => vals.iter().all(|v| ok((v - r).abs())),
                Some(_) => true,
                None => match agg3(vals.into_iter()) {
                    Some([min, max, _]) => ok(max - min),
                    None => true,
                },
            }
        }
        RuleKind::Collection { measurements, op, .. } => {
            let lists = || -> Vec<Vec<Value>> {
                let mut out = Vec::new();
                for m in measurements {
                    if let Value::List(items) = expr::eval(m, &view) {
                        for item in items {
                            if let Value::List(inner) = item {
                                out.push(inner);
                            }
                        }
                    }
                }
                out
            };
            match op {
                CollectionOp::Intersection => {
                    let lists = lists();
                    let mut iter = lists.iter();
                    let count = match iter.next() {
                        None => 0,
                        Some(first) => {
                            let mut acc: Vec<&Value> = Vec::new();
                            for v in first {
                                if !acc.contains(&v) {
                                    acc.push(v);
                                }
                            }
                            for l in iter {
                                acc.retain(|v| l.contains(v));
                            }
                            acc.len()
                        }
                    };
                    // No lists yet (empty teams): nothing to judge.
                    lists.is_empty() || within(count as f64, p.min_count, p.max_count)
                }
                CollectionOp::Contains => {
                    let target = p.reference.as_ref().map(|r| operand_value(r, &view)).unwrap_or(Value::Null);
                    let count = scalars(measurements).iter().filter(|v| **v == target).count();
                    within(count as f64, p.min_count, p.max_count)
                }
                CollectionOp::ReferenceIntersectionCount => {
                    let reference = match p.reference.as_ref().map(|r| operand_value(r, &view)) {
                        Some(Value::List(items)) => items,
                        _ => Vec::new(),
                    };
                    lists().iter().all(|l| {
                        let mut seen: Vec<&Value> = Vec::new();
                        for v in l {
                            if reference.contains(v) && !seen.contains(&v) {
                                seen.push(v);
                            }
                        }
                        within(seen.len() as f64, p.min_count, p.max_count)
                    })
                }
            }
        }
        RuleKind::Latency { distance_reference } => {
            let members: Vec<usize> = state.members.iter().map(|m| m.0).collect();
            !latency_regions(rule, p, *distance_reference, tickets, &members).is_empty()
        }
        RuleKind::AbsoluteSort { .. } | RuleKind::DistanceSort { .. } => true,
        RuleKind::Compound { statement } => eval_statement(rs, statement, params, tickets, state, counter),
    };
    if let Some(c) = counter.as_deref_mut() {
        c[index][usize::from(!passed)] += 1;
    }
    passed
}

pub(super) fn eval_statement(
    rs: &RuleSet,
    st: &Statement,
    params: &Params,
    tickets: &[Prepared<'_>],
    state: &State,
    counter: &mut Option<&mut Vec<[u64; 2]>>,
) -> bool {
    match st {
        Statement::Rule(r) => eval_rule(rs, *r, params, tickets, state, counter),
        Statement::And(v) => v.iter().all(|s| eval_statement(rs, s, params, tickets, state, counter)),
        Statement::Or(v) => v.iter().any(|s| eval_statement(rs, s, params, tickets, state, counter)),
        Statement::Xor(v) => {
            v.iter().filter(|s| eval_statement(rs, s, params, tickets, state, counter)).count() % 2 == 1
        }
        Statement::Not(s) => !eval_statement(rs, s, params, tickets, state, counter),
    }
}
