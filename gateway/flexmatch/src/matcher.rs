//! Match formation: FlexMatch's two strategies over a pool of searching tickets.
//!
//! - `exhaustiveSearch` (matches of up to 40 players): the documentation says the matchmaker
//!   "starts with the oldest ticket in the pool and evaluates the other tickets against it to find
//!   the best possible matches", filling teams up to `maxPlayers` and settling for `minPlayers`
//!   only after a full pass finds no full match. Here that is a bounded depth-first search from
//!   each anchor (oldest first) over its candidates, ordered by the sort rules; rules whose
//!   failure can never be undone by more players prune the search at once.
//! - `balanced` (41–200 players): candidates are batched around the anchor (batchDistance,
//!   latency, batchingPreference), then assigned to teams the documented way — teams under
//!   `minPlayers` first, then the team with the most open slots — highest balancedAttribute
//!   first, ties going to the team with the lowest total, so team averages stay close.
//!
//! The pool is indexed so an anchor only looks at tickets that can share a match with it: by
//! the first numeric batchDistance attribute (a sorted array scanned outward from the anchor),
//! by a string batchDistance attribute (one lane per value), or in age order otherwise. Matched
//! tickets are unlinked from the lanes, so a cycle never rescans them.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};

use crate::expr::{self, MatchView, Value};
use crate::ruleset::{
    AttributeType, BatchingPreference, CmpOp, CollectionAggregation, CollectionOp, DistanceReference,
    ExpansionAgeSelection, MAX_PLAYERS_PER_TICKET, MapKey, Operand, Params, PartyAggregation, Rule, RuleKind, RuleSet,
    Statement, Strategy,
};
use crate::{AttributeValue, ProposedMatch, RuleEvaluationMetric, TeamAssignment, Ticket};

/// How many team placements the exhaustive search may try from one anchor before it settles
/// for the best match found so far (or none). Bounds a cycle's cost on pools where an anchor
/// has many candidates but no valid match.
pub const SEARCH_BUDGET_PER_ANCHOR: usize = 5_000;

/// Candidates considered per anchor, as a multiple of the match size (at least
/// [`MIN_CANDIDATES`]).
const CANDIDATES_PER_SLOT: usize = 4;
const MIN_CANDIDATES: usize = 48;

/// Floating-point slack for distance and equality checks.
const EPS: f64 = 1e-9;

/// A ticket readied for matching: attributes typed, defaults applied, party aggregates and
/// latencies precomputed.
pub(crate) struct Prepared<'a> {
    pub pool_index: usize,
    pub ticket: &'a Ticket,
    pub age_ms: u64,
    /// Per player, per declared attribute.
    pub values: Vec<Vec<Value>>,
    /// Per declared number attribute: [min, max, avg] over the party.
    pub num_agg: Vec<Option<[f64; 3]>>,
    /// Regions every player of the ticket reported: [min, max, avg] latency over the party.
    pub latency: BTreeMap<String, [f64; 3]>,
    /// The regions the ticket may be placed in, sorted: those every player who reported
    /// latency reported; `None` when no player reported any.
    pub regions: Option<Vec<String>>,
}

impl Prepared<'_> {
    fn party(&self) -> usize {
        self.values.len()
    }

    fn num(&self, attribute: usize, agg: PartyAggregation) -> Option<f64> {
        self.num_agg[attribute].map(|[min, max, avg]| match agg {
            PartyAggregation::Min => min,
            PartyAggregation::Max => max,
            PartyAggregation::Avg => avg,
        })
    }

    fn string(&self, attribute: usize) -> Option<&str> {
        match self.values.first()?.get(attribute)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn to_value(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::Str(s.clone()),
        AttributeValue::N(n) => Value::Num(*n),
        AttributeValue::SL(l) => Value::List(l.iter().cloned().map(Value::Str).collect()),
        AttributeValue::SDM(m) => Value::Map(m.clone()),
    }
}

fn agg3(values: impl Iterator<Item = f64>) -> Option<[f64; 3]> {
    let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for v in values {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    (n > 0).then(|| [min, max, sum / n as f64])
}

fn pick(a: [f64; 3], agg: PartyAggregation) -> f64 {
    match agg {
        PartyAggregation::Min => a[0],
        PartyAggregation::Max => a[1],
        PartyAggregation::Avg => a[2],
    }
}

impl RuleSet {
    /// Readies a ticket, or `None` when it can never match under this rule set.
    pub(crate) fn prepare<'a>(&self, pool_index: usize, ticket: &'a Ticket, now_ms: u64) -> Option<Prepared<'a>> {
        let party = ticket.players.len();
        if party == 0 || party > MAX_PLAYERS_PER_TICKET || party > self.largest_team() {
            return None;
        }
        let mut values = Vec::with_capacity(party);
        for p in &ticket.players {
            self.check_player(p).ok()?;
            let row = self
                .attributes
                .iter()
                .map(|a| p.attributes.get(&a.name).or(a.default.as_ref()).map(to_value).unwrap_or(Value::Null))
                .collect();
            values.push(row);
        }
        let num_agg = self
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                (a.kind == AttributeType::Number)
                    .then(|| agg3(values.iter().filter_map(|row: &Vec<Value>| row[i].as_num())))
                    .flatten()
            })
            .collect();
        let mut latency = BTreeMap::new();
        if let Some(first) = ticket.players.first() {
            for region in first.latency_in_ms.keys() {
                let all: Option<Vec<f64>> =
                    ticket.players.iter().map(|p| p.latency_in_ms.get(region).map(|&ms| f64::from(ms))).collect();
                if let Some(all) = all
                    && let Some(a) = agg3(all.into_iter())
                {
                    latency.insert(region.clone(), a);
                }
            }
        }
        // The GameLift API: "If a matchmaker has a rule that evaluates player latency, players
        // must report latency in order to be matched."
        if self.requires_latency() && (ticket.players.iter().any(|p| p.latency_in_ms.is_empty()) || latency.is_empty())
        {
            return None;
        }
        // API_Player.html, LatencyInMs: "If this property is present, FlexMatch considers placing
        // the match only in Regions for which latency is reported." A party whose reporting
        // players share no region can never be placed. A latency rule that decides the match
        // already demands a region every player reported, so then there is nothing to add.
        let regions = if self.latency_rule_decides() {
            None
        } else {
            let mut reporting = ticket.players.iter().map(|p| &p.latency_in_ms).filter(|l| !l.is_empty());
            reporting.next().map(|first| {
                let rest: Vec<_> = reporting.collect();
                first.keys().filter(|r| rest.iter().all(|l| l.contains_key(*r))).cloned().collect::<Vec<String>>()
            })
        };
        if regions.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        Some(Prepared {
            pool_index,
            ticket,
            age_ms: now_ms.saturating_sub(ticket.start_time_ms),
            values,
            num_agg,
            latency,
            regions,
        })
    }

    /// True when a latency rule outside any compound must pass for every match: it only passes
    /// in a region every player of the match reported.
    fn latency_rule_decides(&self) -> bool {
        self.rules.iter().any(|r| !r.in_compound && matches!(r.kind, RuleKind::Latency { .. }))
    }

    /// The most players any one team may ever hold (over all expansion stages).
    fn largest_team(&self) -> usize {
        (0..self.teams.len()).map(|t| self.team_capacity(t)).max().unwrap_or(0)
    }

    fn team_capacity(&self, team: usize) -> usize {
        self.stages.iter().map(|(_, p)| p.team_max[team]).max().unwrap_or(0)
    }

    /// The regions a match of these tickets may be placed in: regions every player reported
    /// and, when the rule set has latency rules, where those rules pass (with expansions at
    /// the tickets' age). Ordered best first (lowest worst-player latency). Empty when no
    /// player reported any latency and the rule set does not require it: then any region will
    /// do.
    pub fn acceptable_regions(&self, tickets: &[Ticket], now_ms: u64) -> Vec<String> {
        let mut worst: Option<BTreeMap<String, f64>> = None;
        for p in tickets.iter().flat_map(|t| &t.players) {
            if p.latency_in_ms.is_empty() {
                continue;
            }
            let next: BTreeMap<String, f64> = match worst.take() {
                None => p.latency_in_ms.iter().map(|(r, &ms)| (r.clone(), f64::from(ms))).collect(),
                Some(w) => w
                    .into_iter()
                    .filter_map(|(r, ms)| p.latency_in_ms.get(&r).map(|&m| (r, ms.max(f64::from(m)))))
                    .collect(),
            };
            worst = Some(next);
        }
        let Some(worst) = worst else { return Vec::new() };
        let prepared: Vec<Prepared<'_>> =
            tickets.iter().enumerate().filter_map(|(i, t)| self.prepare(i, t, now_ms)).collect();
        let mut regions: Vec<(String, f64)> = worst.into_iter().collect();
        if self.requires_latency() {
            if prepared.len() != tickets.len() {
                return Vec::new();
            }
            let members: Vec<usize> = (0..prepared.len()).collect();
            let params = self.params_for(&prepared, &members);
            let mut ok: Option<Vec<String>> = None;
            for (i, rule) in self.rules.iter().enumerate() {
                if let RuleKind::Latency { distance_reference } = rule.kind {
                    let passing = latency_regions(rule, &params.rules[i], distance_reference, &prepared, &members);
                    ok = Some(match ok {
                        None => passing,
                        Some(prev) => prev.into_iter().filter(|r| passing.contains(r)).collect(),
                    });
                }
            }
            let ok = ok.unwrap_or_default();
            regions.retain(|(r, _)| ok.contains(r));
        }
        regions.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        regions.into_iter().map(|(r, _)| r).collect()
    }

    /// The parameters in force for a potential match of `members`, by the age of its newest
    /// or oldest ticket as `expansionAgeSelection` says.
    fn params_for(&self, tickets: &[Prepared<'_>], members: &[usize]) -> &Params {
        let ages = members.iter().map(|&m| tickets[m].age_ms);
        let age = match self.algorithm.expansion_age_selection {
            ExpansionAgeSelection::Newest => ages.min(),
            ExpansionAgeSelection::Oldest => ages.max(),
        };
        self.params_at(age.unwrap_or(0))
    }

    /// Proposes disjoint matches from `pool`, the tickets currently searching. `now_ms` is on
    /// the same clock as `Ticket::start_time_ms`; it decides which expansion steps apply.
    pub fn find_matches(&self, pool: &[Ticket], now_ms: u64) -> Vec<ProposedMatch> {
        let prepared: Vec<Prepared<'_>> =
            pool.iter().enumerate().filter_map(|(i, t)| self.prepare(i, t, now_ms)).collect();
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        order.sort_by_key(|&i| (Reverse(prepared[i].age_ms), prepared[i].pool_index));
        let mut index = CandidateIndex::new(self, &prepared, &order);
        let limit = (self.max_players() * CANDIDATES_PER_SLOT).max(MIN_CANDIDATES);
        let mut used = vec![false; prepared.len()];
        let mut matches = Vec::new();
        for &anchor in &order {
            if used[anchor] {
                continue;
            }
            let mut candidates = index.candidates(anchor, limit, |t| self.pair_ok(&prepared, anchor, t));
            self.order_candidates(&prepared, anchor, &mut candidates);
            let built = match self.algorithm.strategy {
                Strategy::ExhaustiveSearch => Search::new(self, &prepared, anchor, candidates).run(),
                // A small match (the documentation's compound example balances 20 v 20) may
                // still need the search when its custom rules reject the balanced batch.
                Strategy::Balanced if !self.is_large_match() => self
                    .balanced(&prepared, anchor, candidates.clone())
                    .or_else(|| Search::new(self, &prepared, anchor, candidates).run()),
                Strategy::Balanced => self.balanced(&prepared, anchor, candidates),
            };
            if let Some(built) = built {
                for &(m, _) in &built.state.members {
                    used[m] = true;
                    index.remove(m);
                }
                matches.push(built.into_match(self, &prepared));
            } else {
                // The anchor found no match this cycle; it stays a candidate for younger anchors.
            }
        }
        matches
    }

    /// Cheap checks that `other` may share a match with `anchor`: batchDistance and latency
    /// rules on the pair, with the expansions the pair's age allows.
    fn pair_ok(&self, tickets: &[Prepared<'_>], anchor: usize, other: usize) -> bool {
        let members = [anchor, other];
        if !share_a_region(tickets, members.iter().copied()) {
            return false;
        }
        let params = self.params_for(tickets, &members);
        self.rules.iter().enumerate().all(|(i, rule)| match rule.kind {
            RuleKind::BatchDistance { .. } | RuleKind::Latency { .. } if !rule.in_compound => {
                eval_rule(self, i, params, tickets, &State::pair(anchor, other), &mut None)
            }
            _ => true,
        })
    }

    /// Orders an anchor's candidates: by the sort rules (in rule order), then, with
    /// batchingPreference "sorted", by closeness in sortByAttributes, then oldest first.
    fn order_candidates(&self, tickets: &[Prepared<'_>], anchor: usize, candidates: &mut [usize]) {
        let a = &tickets[anchor];
        // An expansion may change batchingPreference: the stage in effect is the anchor's.
        let sorted = self.params_for(tickets, &[anchor]).batching_preference == BatchingPreference::Sorted;
        // Rules the search can only judge on a complete match: candidates that already fail
        // one of them next to the anchor alone go last, so a greedy descent does not start
        // with a ticket that spoils every match it joins.
        let deciding: Vec<usize> = (0..self.rules.len())
            .filter(|&i| {
                let r = &self.rules[i];
                !r.prunable && !r.in_compound && !r.is_sort()
            })
            .collect();
        let mut keys: Vec<(Vec<f64>, usize)> = candidates
            .iter()
            .map(|&c| {
                let t = &tickets[c];
                let mut key = Vec::new();
                if !deciding.is_empty() {
                    key.push(f64::from(u8::from(!self.pair_compatible(tickets, anchor, c, &deciding))));
                }
                for rule in &self.rules {
                    let agg = rule.party_aggregation.unwrap_or(PartyAggregation::Avg);
                    match rule.kind {
                        RuleKind::AbsoluteSort { attribute, descending, map_key } => {
                            let v = sort_value(a, t, attribute, map_key, agg);
                            key.push(match (v, descending) {
                                (Some(v), false) => v,
                                (Some(v), true) => -v,
                                (None, _) => f64::INFINITY,
                            });
                        }
                        RuleKind::DistanceSort { attribute, descending, map_key } => {
                            let av = sort_value(a, a, attribute, map_key, agg);
                            let tv = sort_value(a, t, attribute, map_key, agg);
                            key.push(match (av, tv) {
                                (Some(x), Some(y)) if descending => -(x - y).abs(),
                                (Some(x), Some(y)) => (x - y).abs(),
                                _ => f64::INFINITY,
                            });
                        }
                        _ => {}
                    }
                }
                if sorted {
                    for &attr in &self.sort_by {
                        key.push(match (a.num(attr, PartyAggregation::Avg), t.num(attr, PartyAggregation::Avg)) {
                            (Some(x), Some(y)) => (x - y).abs(),
                            _ => f64::from(u8::from(a.string(attr) != t.string(attr))),
                        });
                    }
                }
                // Oldest first, then pool order, as the tie-breakers.
                key.push(-(t.age_ms as f64));
                (key, c)
            })
            .collect();
        keys.sort_by(|(ka, ca), (kb, cb)| {
            ka.iter()
                .zip(kb)
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
                .then_with(|| tickets[*ca].pool_index.cmp(&tickets[*cb].pool_index))
        });
        for (slot, (_, c)) in candidates.iter_mut().zip(keys) {
            *slot = c;
        }
    }

    /// True when the anchor and `other`, each on the team the search would try first, pass
    /// the `deciding` rules.
    fn pair_compatible(&self, tickets: &[Prepared<'_>], anchor: usize, other: usize, deciding: &[usize]) -> bool {
        let params = self.params_for(tickets, &[anchor, other]);
        let mut state = State::new(self.teams.len());
        for t in [anchor, other] {
            let party = tickets[t].party();
            let team = (0..self.teams.len())
                .filter(|&k| state.team_players[k].len() + party <= self.team_capacity(k))
                .min_by_key(|&k| {
                    let n = state.team_players[k].len();
                    (n >= params.team_min[k], Reverse(self.team_capacity(k) - n), k)
                });
            match team {
                Some(k) => state.place(tickets, t, k),
                None => return false,
            }
        }
        deciding.iter().all(|&i| eval_rule(self, i, params, tickets, &state, &mut None))
    }

    /// The large-match strategy: batch tickets around the anchor, then balance the teams.
    fn balanced(&self, tickets: &[Prepared<'_>], anchor: usize, mut candidates: Vec<usize>) -> Option<Built> {
        // An expansion may change batchingPreference: the stage in effect is the anchor's.
        if self.params_for(tickets, &[anchor]).batching_preference == BatchingPreference::FastestRegion {
            // Players whose fastest region is the anchor's come first; the documentation: "it may
            // group players based on their second- or third-fastest regions (or slower) in order
            // to create groups large enough to fill a match."
            let fastest =
                |t: &Prepared<'_>| t.latency.iter().min_by(|a, b| a.1[2].total_cmp(&b.1[2])).map(|(r, _)| r.clone());
            let home = fastest(&tickets[anchor]);
            candidates.sort_by_key(|&c| fastest(&tickets[c]) != home);
        }
        let max_total = self.max_players();
        let mut state = State::new(self.teams.len());
        state.members.push((anchor, usize::MAX));
        let mut total = tickets[anchor].party();
        for c in candidates {
            if total == max_total {
                break;
            }
            if total + tickets[c].party() > max_total {
                continue;
            }
            state.members.push((c, usize::MAX));
            let ids: Vec<usize> = state.members.iter().map(|m| m.0).collect();
            let params = self.params_for(tickets, &ids);
            let ok = share_a_region(tickets, ids.iter().copied())
                && self.rules.iter().enumerate().all(|(i, r)| {
                    !r.prunable || r.in_compound || eval_rule(self, i, params, tickets, &state, &mut None)
                });
            if ok {
                total += tickets[c].party();
            } else {
                state.members.pop();
            }
        }
        let ids: Vec<usize> = state.members.iter().map(|m| m.0).collect();
        let params = self.params_for(tickets, &ids).clone();
        let attr = self.balanced_attribute?;
        let mut by_value: Vec<usize> = ids.clone();
        by_value.sort_by(|&x, &y| {
            let vx = tickets[x].num(attr, PartyAggregation::Avg).unwrap_or(0.0);
            let vy = tickets[y].num(attr, PartyAggregation::Avg).unwrap_or(0.0);
            vy.total_cmp(&vx).then_with(|| tickets[x].age_ms.cmp(&tickets[y].age_ms).reverse())
        });
        let mut assigned = State::new(self.teams.len());
        let mut sums = vec![0.0_f64; self.teams.len()];
        for t in by_value {
            let party = tickets[t].party();
            let team = (0..self.teams.len())
                .filter(|&k| assigned.team_players[k].len() + party <= params.team_max[k])
                .min_by(|&x, &y| {
                    let under = |k: usize| assigned.team_players[k].len() >= params.team_min[k];
                    let open = |k: usize| params.team_max[k] - assigned.team_players[k].len();
                    under(x)
                        .cmp(&under(y))
                        .then_with(|| open(y).cmp(&open(x)))
                        .then_with(|| sums[x].total_cmp(&sums[y]))
                        .then_with(|| x.cmp(&y))
                });
            if let Some(k) = team {
                assigned.place(tickets, t, k);
                sums[k] += tickets[t].values.iter().filter_map(|row| row[attr].as_num()).sum::<f64>();
            }
        }
        // Members in arrival order, as the anchor-first candidate order had them.
        let order: HashMap<usize, usize> = ids.iter().enumerate().map(|(i, &m)| (m, i)).collect();
        assigned.members.sort_by_key(|(m, _)| order[m]);
        let mut metrics = vec![[0u64; 2]; self.rules.len()];
        let mut counter = Some(&mut metrics);
        let complete = (0..self.teams.len()).all(|k| assigned.team_players[k].len() >= params.team_min[k]);
        if !complete || !self.all_rules_pass(&params, tickets, &assigned, &mut counter) {
            return None;
        }
        Some(Built { state: assigned, metrics })
    }

    /// Every rule that decides a match (not sort rules, not rules only used in compounds).
    fn all_rules_pass(
        &self,
        params: &Params,
        tickets: &[Prepared<'_>],
        state: &State,
        counter: &mut Option<&mut Vec<[u64; 2]>>,
    ) -> bool {
        let mut ok = true;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.in_compound || rule.is_sort() {
                continue;
            }
            if !eval_rule(self, i, params, tickets, state, counter) {
                ok = false;
                if counter.is_none() {
                    return false;
                }
            }
        }
        ok
    }
}

/// True when the tickets that reported latency have at least one reported region in common
/// (API_Player.html, LatencyInMs: "FlexMatch considers placing the match only in Regions for
/// which latency is reported"). Tickets without latency data do not constrain the match.
fn share_a_region(tickets: &[Prepared<'_>], members: impl Iterator<Item = usize>) -> bool {
    let mut common: Option<Vec<&str>> = None;
    for m in members {
        let Some(regions) = &tickets[m].regions else { continue };
        let next: Vec<&str> = match common.take() {
            None => regions.iter().map(String::as_str).collect(),
            Some(c) => c.into_iter().filter(|r| regions.binary_search_by(|x| x.as_str().cmp(r)).is_ok()).collect(),
        };
        if next.is_empty() {
            return false;
        }
        common = Some(next);
    }
    true
}

/// A sort rule's value for ticket `t`, relative to the anchor `a` for map attributes (the
/// documentation: "We find the key in the anchor's mapPreference attribute that has the highest
/// value. That's the key that we use for all players when sorting.").
fn sort_value(
    a: &Prepared<'_>,
    t: &Prepared<'_>,
    attribute: usize,
    map_key: Option<MapKey>,
    agg: PartyAggregation,
) -> Option<f64> {
    let Some(map_key) = map_key else { return t.num(attribute, agg) };
    let Value::Map(anchor_map) = &a.values[0][attribute] else { return None };
    let key = match map_key {
        MapKey::MaxValue => anchor_map.iter().max_by(|x, y| x.1.total_cmp(y.1)),
        MapKey::MinValue => anchor_map.iter().min_by(|x, y| x.1.total_cmp(y.1)),
    }?
    .0;
    let vals = t.values.iter().filter_map(|row| match &row[attribute] {
        Value::Map(m) => m.get(key).copied(),
        _ => None,
    });
    agg3(vals).map(|x| pick(x, agg))
}

/// A potential match under construction: which tickets, on which team.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// (prepared ticket, team) in the order the tickets joined.
    pub members: Vec<(usize, usize)>,
    /// Per team: (prepared ticket, player index).
    pub team_players: Vec<Vec<(usize, usize)>>,
}

impl State {
    fn new(teams: usize) -> Self {
        Self { members: Vec::new(), team_players: vec![Vec::new(); teams] }
    }

    /// Two tickets with no teams, for the ticket-level rules (batchDistance, latency).
    fn pair(a: usize, b: usize) -> Self {
        Self { members: vec![(a, usize::MAX), (b, usize::MAX)], team_players: Vec::new() }
    }

    fn place(&mut self, tickets: &[Prepared<'_>], t: usize, team: usize) {
        self.members.push((t, team));
        self.team_players[team].extend((0..tickets[t].party()).map(|p| (t, p)));
    }

    fn unplace(&mut self, tickets: &[Prepared<'_>]) {
        if let Some((t, team)) = self.members.pop() {
            let keep = self.team_players[team].len() - tickets[t].party();
            self.team_players[team].truncate(keep);
        }
    }

    fn players(&self) -> usize {
        self.team_players.iter().map(Vec::len).sum()
    }
}

struct View<'a, 'p> {
    rs: &'a RuleSet,
    tickets: &'a [Prepared<'p>],
    state: &'a State,
    party: Option<PartyAggregation>,
    collection: Option<CollectionAggregation>,
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

fn within(count: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| count >= m - EPS) && max.is_none_or(|m| count <= m + EPS)
}

fn operand_value(op: &Operand, view: &View<'_, '_>) -> Value {
    match op {
        Operand::Num(n) => Value::Num(*n),
        Operand::Str(s) => Value::Str(s.clone()),
        Operand::List(l) => Value::List(l.iter().cloned().map(Value::Str).collect()),
        Operand::Expr(e) => expr::eval(e, view),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Num(x), Value::Num(y)) => (x - y).abs() <= EPS,
        _ => a == b,
    }
}

fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
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
fn latency_regions(
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
fn eval_rule(
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

fn eval_statement(
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

/// A match the search settled on.
pub(crate) struct Built {
    state: State,
    metrics: Vec<[u64; 2]>,
}

impl Built {
    fn into_match(self, rs: &RuleSet, tickets: &[Prepared<'_>]) -> ProposedMatch {
        ProposedMatch {
            ticket_ids: self.state.members.iter().map(|&(m, _)| tickets[m].ticket.ticket_id.clone()).collect(),
            teams: rs
                .teams
                .iter()
                .enumerate()
                .map(|(k, team)| TeamAssignment {
                    name: team.name.clone(),
                    player_ids: self.state.team_players[k]
                        .iter()
                        .map(|&(t, p)| tickets[t].ticket.players[p].player_id.clone())
                        .collect(),
                })
                .collect(),
            rule_evaluation_metrics: rs
                .rules
                .iter()
                .zip(&self.metrics)
                .filter(|(r, _)| !r.is_sort())
                .map(|(r, [pass, fail])| RuleEvaluationMetric {
                    rule_name: r.name.clone(),
                    passed_count: *pass,
                    failed_count: *fail,
                })
                .collect(),
        }
    }
}

/// The exhaustive search from one anchor.
struct Search<'r, 'p> {
    rs: &'r RuleSet,
    tickets: &'r [Prepared<'p>],
    candidates: Vec<usize>,
    state: State,
    best: Option<State>,
    budget: usize,
    metrics: Vec<[u64; 2]>,
    /// Every deciding rule is prunable: the first greedy descent is as good as any.
    all_prunable: bool,
    capacity: Vec<usize>,
}

impl<'r, 'p> Search<'r, 'p> {
    fn new(rs: &'r RuleSet, tickets: &'r [Prepared<'p>], anchor: usize, mut candidates: Vec<usize>) -> Self {
        candidates.insert(0, anchor);
        Self {
            rs,
            tickets,
            candidates,
            state: State::new(rs.teams.len()),
            best: None,
            budget: SEARCH_BUDGET_PER_ANCHOR,
            metrics: vec![[0; 2]; rs.rules.len()],
            all_prunable: rs.rules.iter().all(|r| r.prunable || r.in_compound || r.is_sort()),
            capacity: (0..rs.teams.len()).map(|t| rs.team_capacity(t)).collect(),
        }
    }

    fn run(mut self) -> Option<Built> {
        let available: usize = self.candidates.iter().map(|&c| self.tickets[c].party()).sum();
        let needed: usize = (0..self.rs.teams.len())
            .map(|t| self.rs.stages.iter().map(|(_, p)| p.team_min[t]).min().unwrap_or(0))
            .sum();
        if available >= needed.max(1) {
            self.dfs(0);
        }
        let state = self.best?;
        Some(Built { state, metrics: self.metrics })
    }

    fn params(&self) -> &'r Params {
        let ids: Vec<usize> = self.state.members.iter().map(|m| m.0).collect();
        self.rs.params_for(self.tickets, &ids)
    }

    /// Teams the ticket may join, most needy first: below minPlayers, then most open slots.
    fn team_order(&self, t: usize) -> Vec<usize> {
        let party = self.tickets[t].party();
        let params = &self.rs.stages[0].1;
        let mut teams: Vec<usize> = (0..self.rs.teams.len())
            .filter(|&k| self.state.team_players[k].len() + party <= self.capacity[k])
            .collect();
        teams.sort_by_key(|&k| {
            let n = self.state.team_players[k].len();
            (n >= params.team_min[k], Reverse(self.capacity[k] - n), k)
        });
        teams
    }

    fn prunable_ok(&mut self) -> bool {
        // Like a prunable rule: the shared regions only shrink as tickets join.
        if !share_a_region(self.tickets, self.state.members.iter().map(|m| m.0)) {
            return false;
        }
        let params = self.params();
        let mut counter = Some(&mut self.metrics);
        self.rs.rules.iter().enumerate().all(|(i, r)| {
            !r.prunable || r.in_compound || eval_rule(self.rs, i, params, self.tickets, &self.state, &mut counter)
        })
    }

    /// Records the state when it is a valid match; true when it is also full (stop looking).
    fn check_complete(&mut self) -> bool {
        let params = self.params();
        let teams = 0..self.rs.teams.len();
        let sizes_ok = teams.clone().all(|k| {
            let n = self.state.team_players[k].len();
            n >= params.team_min[k] && n <= params.team_max[k]
        });
        if !sizes_ok {
            return false;
        }
        let mut counter = Some(&mut self.metrics);
        let rules_ok = self.rs.rules.iter().enumerate().all(|(i, r)| {
            r.prunable
                || r.in_compound
                || r.is_sort()
                || eval_rule(self.rs, i, params, self.tickets, &self.state, &mut counter)
        });
        if !rules_ok {
            return false;
        }
        if self.best.as_ref().is_none_or(|b| b.players() < self.state.players()) {
            self.best = Some(self.state.clone());
        }
        teams.into_iter().all(|k| self.state.team_players[k].len() == params.team_max[k])
    }

    /// Tries to add each candidate from `from` on; true means stop (a full match was found or
    /// the budget is spent).
    fn dfs(&mut self, from: usize) -> bool {
        for i in from..self.candidates.len() {
            let t = self.candidates[i];
            for team in self.team_order(t) {
                if self.budget == 0 {
                    return true;
                }
                self.budget -= 1;
                self.state.place(self.tickets, t, team);
                if self.prunable_ok() {
                    if self.check_complete() || self.dfs(i + 1) {
                        return true;
                    }
                    if self.all_prunable {
                        // Every rule only gets harder as tickets join, so the greedy descent
                        // already kept every candidate that could fit: nothing larger exists.
                        return true;
                    }
                }
                self.state.unplace(self.tickets);
            }
            if i == 0 {
                // The anchor must be in its own match.
                return false;
            }
        }
        false
    }
}

/// Lanes of tickets an anchor scans for candidates, with matched tickets unlinked.
struct CandidateIndex {
    kind: IndexKind,
    /// Per prepared ticket: (lane, position in lane).
    slot: Vec<(usize, usize)>,
    lanes: Vec<Lane>,
}

enum IndexKind {
    /// One lane sorted by a numeric batchDistance attribute (party-aggregated), scanned
    /// outward from the anchor while within the loosest maxDistance.
    Numeric { values: Vec<f64>, reach: f64 },
    /// One lane per string value, in age order.
    ByString,
    /// One lane in age order.
    All,
}

struct Lane {
    members: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Lane {
    fn new(members: Vec<usize>) -> Self {
        let n = members.len();
        // Sentinels: next[i] == n means none; prev is shifted by one (0 means none).
        Self { members, next: (0..=n).collect(), prev: (0..=n).collect() }
    }

    fn find_next(&mut self, mut i: usize) -> usize {
        let mut root = i;
        while self.next[root] != root {
            root = self.next[root];
        }
        while self.next[i] != root {
            let up = self.next[i];
            self.next[i] = root;
            i = up;
        }
        root
    }

    /// The live position at or before `i`, if any.
    fn find_prev(&mut self, i: usize) -> Option<usize> {
        let mut j = i + 1;
        let mut root = j;
        while self.prev[root] != root {
            root = self.prev[root];
        }
        while self.prev[j] != root {
            let up = self.prev[j];
            self.prev[j] = root;
            j = up;
        }
        root.checked_sub(1)
    }

    fn remove(&mut self, pos: usize) {
        self.next[pos] = pos + 1;
        self.prev[pos + 1] = pos;
    }
}

impl CandidateIndex {
    fn new(rs: &RuleSet, tickets: &[Prepared<'_>], order: &[usize]) -> Self {
        let batch = rs
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| !r.in_compound && matches!(r.kind, RuleKind::BatchDistance { .. }));
        let mut slot = vec![(0, 0); tickets.len()];
        match batch.map(|(i, r)| (i, &r.kind)) {
            Some((rule, &RuleKind::BatchDistance { attribute, numeric: true })) => {
                let agg = rs.rules[rule].party_aggregation.unwrap_or(PartyAggregation::Avg);
                let value = |t: usize| tickets[t].num(attribute, agg).unwrap_or(0.0);
                let mut members: Vec<usize> = order.to_vec();
                members.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
                for (pos, &m) in members.iter().enumerate() {
                    slot[m] = (0, pos);
                }
                let values = members.iter().map(|&m| value(m)).collect();
                let reach = rs.stages.iter().filter_map(|(_, p)| p.rules[rule].max_distance).fold(0.0, f64::max);
                Self { kind: IndexKind::Numeric { values, reach }, slot, lanes: vec![Lane::new(members)] }
            }
            Some((_, &RuleKind::BatchDistance { attribute, numeric: false })) => {
                let mut lanes_by_key: HashMap<Option<&str>, usize> = HashMap::new();
                let mut lanes: Vec<Vec<usize>> = Vec::new();
                for &m in order {
                    let lane = *lanes_by_key.entry(tickets[m].string(attribute)).or_insert_with(|| {
                        lanes.push(Vec::new());
                        lanes.len() - 1
                    });
                    slot[m] = (lane, lanes[lane].len());
                    lanes[lane].push(m);
                }
                Self { kind: IndexKind::ByString, slot, lanes: lanes.into_iter().map(Lane::new).collect() }
            }
            _ => {
                for (pos, &m) in order.iter().enumerate() {
                    slot[m] = (0, pos);
                }
                Self { kind: IndexKind::All, slot, lanes: vec![Lane::new(order.to_vec())] }
            }
        }
    }

    fn remove(&mut self, ticket: usize) {
        let (lane, pos) = self.slot[ticket];
        self.lanes[lane].remove(pos);
    }

    /// Up to `limit` live tickets other than the anchor that pass `ok`, nearest first for a
    /// numeric lane, oldest first otherwise.
    fn candidates(&mut self, anchor: usize, limit: usize, ok: impl Fn(usize) -> bool) -> Vec<usize> {
        let (lane_index, pos) = self.slot[anchor];
        let lane = &mut self.lanes[lane_index];
        let mut out = Vec::new();
        match &self.kind {
            IndexKind::Numeric { values, reach, .. } => {
                let centre = values[pos];
                let mut right = lane.find_next(pos + 1);
                let mut left = if pos == 0 { None } else { lane.find_prev(pos - 1) };
                while out.len() < limit {
                    let r_gap =
                        (right < lane.members.len()).then(|| values[right] - centre).filter(|g| *g <= *reach + EPS);
                    let l_gap = left.map(|l| centre - values[l]).filter(|g| *g <= *reach + EPS);
                    let take_right = match (l_gap, r_gap) {
                        (None, None) => break,
                        (Some(_), None) => false,
                        (None, Some(_)) => true,
                        (Some(l), Some(r)) => r <= l,
                    };
                    if take_right {
                        let m = lane.members[right];
                        if ok(m) {
                            out.push(m);
                        }
                        right = lane.find_next(right + 1);
                    } else {
                        let l = left.unwrap_or_default();
                        let m = lane.members[l];
                        if ok(m) {
                            out.push(m);
                        }
                        left = if l == 0 { None } else { lane.find_prev(l - 1) };
                    }
                }
            }
            IndexKind::ByString | IndexKind::All => {
                let mut i = lane.find_next(0);
                while i < lane.members.len() && out.len() < limit {
                    let m = lane.members[i];
                    if m != anchor && ok(m) {
                        out.push(m);
                    }
                    i = lane.find_next(i + 1);
                }
            }
        }
        out
    }
}
