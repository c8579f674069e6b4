//! The exhaustive search from one anchor ticket: a bounded depth-first placement of its
//! candidates on teams, pruned by the rules that more players can never repair.

use super::*;

/// A match the search settled on.
pub(crate) struct Built {
    pub(super) state: State,
    pub(super) metrics: Vec<[u64; 2]>,
}

impl Built {
    pub(super) fn into_match(self, rs: &RuleSet, tickets: &[Prepared<'_>]) -> ProposedMatch {
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
pub(super) struct Search<'r, 'p> {
    pub(super) rs: &'r RuleSet,
    pub(super) tickets: &'r [Prepared<'p>],
    pub(super) candidates: Vec<usize>,
    pub(super) state: State,
    pub(super) best: Option<State>,
    pub(super) budget: usize,
    pub(super) metrics: Vec<[u64; 2]>,
    /// Every deciding rule is prunable: the first greedy descent is as good as any.
    pub(super) all_prunable: bool,
    pub(super) capacity: Vec<usize>,
}

impl<'r, 'p> Search<'r, 'p> {
    pub(super) fn new(rs: &'r RuleSet, tickets: &'r [Prepared<'p>], anchor: usize, mut candidates: Vec<usize>) -> Self {
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

    pub(super) fn run(mut self) -> Option<Built> {
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

    pub(super) fn params(&self) -> &'r Params {
        let ids: Vec<usize> = self.state.members.iter().map(|m| m.0).collect();
        self.rs.params_for(self.tickets, &ids)
    }

    /// Teams the ticket may join, most needy first: below minPlayers, then most open slots.
    pub(super) fn team_order(&self, t: usize) -> Vec<usize> {
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

    pub(super) fn prunable_ok(&mut self) -> bool {
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
    pub(super) fn check_complete(&mut self) -> bool {
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
    pub(super) fn dfs(&mut self, from: usize) -> bool {
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
