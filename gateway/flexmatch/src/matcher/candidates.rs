//! Which tickets an anchor looks at: lanes of the pool indexed by the first batchDistance
//! attribute (numeric or string) or by age, with matched tickets unlinked.

use super::*;

/// Lanes of tickets an anchor scans for candidates, with matched tickets unlinked.
pub(super) struct CandidateIndex {
    pub(super) kind: IndexKind,
    /// Per prepared ticket: (lane, position in lane).
    pub(super) slot: Vec<(usize, usize)>,
    pub(super) lanes: Vec<Lane>,
}

pub(super) enum IndexKind {
    /// One lane sorted by a numeric batchDistance attribute (party-aggregated), scanned
    /// outward from the anchor while within the loosest maxDistance.
    Numeric { values: Vec<f64>, reach: f64 },
    /// One lane per string value, in age order.
    ByString,
    /// One lane in age order.
    All,
}

pub(super) struct Lane {
    pub(super) members: Vec<usize>,
    pub(super) next: Vec<usize>,
    pub(super) prev: Vec<usize>,
}

impl Lane {
    pub(super) fn new(members: Vec<usize>) -> Self {
        let n = members.len();
        // Sentinels: next[i] == n means none; prev is shifted by one (0 means none).
        Self { members, next: (0..=n).collect(), prev: (0..=n).collect() }
    }

    pub(super) fn find_next(&mut self, mut i: usize) -> usize {
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
    pub(super) fn find_prev(&mut self, i: usize) -> Option<usize> {
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

    pub(super) fn remove(&mut self, pos: usize) {
        self.next[pos] = pos + 1;
        self.prev[pos + 1] = pos;
    }
}

impl CandidateIndex {
    pub(super) fn new(rs: &RuleSet, tickets: &[Prepared<'_>], order: &[usize]) -> Self {
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

    pub(super) fn remove(&mut self, ticket: usize) {
        let (lane, pos) = self.slot[ticket];
        self.lanes[lane].remove(pos);
    }

    /// Up to `limit` live tickets other than the anchor that pass `ok`, nearest first for a
    /// numeric lane, oldest first otherwise.
    pub(super) fn candidates(&mut self, anchor: usize, limit: usize, ok: impl Fn(usize) -> bool) -> Vec<usize> {
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
