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
//!
//! [`evaluation`] holds the rules' evaluation, [`search`] the exhaustive search and
//! [`candidates`] the pool's index.

mod candidates;
mod evaluation;
mod search;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};

use crate::expr::{self, MatchView, Value};
use crate::ruleset::{
    AttributeType, BatchingPreference, CmpOp, CollectionAggregation, CollectionOp, DistanceReference,
    ExpansionAgeSelection, MAX_PLAYERS_PER_TICKET, MapKey, Operand, Params, PartyAggregation, Rule, RuleKind, RuleSet,
    Statement, Strategy,
};
use crate::{AttributeValue, ProposedMatch, RuleEvaluationMetric, TeamAssignment, Ticket};

use self::candidates::*;
use self::evaluation::*;
use self::search::*;

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
