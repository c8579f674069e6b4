//! The matchmaking cycle: ticket and acceptance timeouts, match formation with the rule set,
//! and placement.

use super::events::detail_for;
use super::*;

impl LocalFlexMatch {
    /// One matchmaking cycle at `now_ms`: time out old tickets and unanswered matches, then form
    /// and place matches.
    pub fn cycle(&self, now_ms: i64) {
        let mut state = self.lock();
        let overdue: Vec<String> =
            state.pending.iter().filter(|(_, p)| p.deadline_ms <= now_ms).map(|(m, _)| m.clone()).collect();
        for match_id in overdue {
            self.settle_pending(&mut state, &match_id, "TimedOut", now_ms);
        }
        let timed_out: Vec<String> = state
            .tickets
            .iter()
            .filter(|(_, t)| matches!(t.status, TicketStatus::Queued | TicketStatus::Searching))
            .filter(|(_, t)| {
                let timeout_ms = state
                    .configurations
                    .get(&t.configuration_name)
                    .map(|c| i64::from(c.request_timeout_seconds) * 1000)
                    .unwrap_or(i64::MAX);
                now_ms - t.start_time_ms >= timeout_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in timed_out {
            self.end_ticket(
                &mut state,
                &id,
                TicketStatus::TimedOut,
                "TimedOut",
                "Removed from matchmaking due to timing out.",
                now_ms,
            );
        }
        // Forget ended tickets GameLift would no longer describe.
        state.tickets.retain(|_, t| t.end_time_ms.is_none_or(|end| now_ms - end < ENDED_TICKET_RETENTION_MS));

        // Snapshot each configuration's pool, then match without the lock: a large pool takes
        // a while, and StartMatchmaking, AcceptMatch and DescribeMatchmaking must not wait for
        // it. `form_match` re-checks every ticket under the lock, so one that was stopped or
        // matched meanwhile is never placed twice.
        let mut pools = Vec::new();
        for configuration in state.configurations.values() {
            let Some(rule_set) = state.rule_sets.get(&configuration.rule_set_name).map(|r| Arc::clone(&r.parsed))
            else {
                continue;
            };
            let mut pool: Vec<Ticket> = state
                .tickets
                .iter()
                .filter(|(_, t)| t.configuration_name == configuration.name && t.status == TicketStatus::Searching)
                .map(|(id, t)| Ticket {
                    ticket_id: id.clone(),
                    start_time_ms: t.start_time_ms.max(0) as u64,
                    players: t.players.clone(),
                })
                .collect();
            if !pool.is_empty() {
                // Arrival order; ties broken by ID so a cycle is deterministic.
                pool.sort_by(|a, b| a.start_time_ms.cmp(&b.start_time_ms).then_with(|| a.ticket_id.cmp(&b.ticket_id)));
                pools.push((configuration.clone(), rule_set, pool));
            }
        }
        drop(state);
        for (configuration, rule_set, pool) in pools {
            let proposals = rule_set.find_matches(&pool, now_ms.max(0) as u64);
            let mut state = self.lock();
            for proposed in proposals {
                self.form_match(&mut state, &configuration, proposed, now_ms);
            }
        }
    }

    fn form_match(
        &self,
        state: &mut EngineState,
        configuration: &MatchmakingConfiguration,
        proposed: matchgate_flexmatch::ProposedMatch,
        now_ms: i64,
    ) {
        for id in &proposed.ticket_ids {
            // The engine proposes disjoint matches over searching tickets only; anything else
            // would put a ticket in two matches, so it is refused here as well.
            if state.tickets.get(id).is_none_or(|t| t.status != TicketStatus::Searching) {
                tracing::error!(ticket_id = id, "rule engine proposed a ticket that is not searching; match dropped");
                return;
            }
        }
        let match_id = uuid::Uuid::new_v4().to_string();
        let next =
            if configuration.acceptance_required { TicketStatus::RequiresAcceptance } else { TicketStatus::Placing };
        for team in &proposed.teams {
            for player_id in &team.player_ids {
                for id in &proposed.ticket_ids {
                    if let Some(t) = state.tickets.get_mut(id)
                        && t.players.iter().any(|p| p.player_id == *player_id)
                    {
                        t.teams.insert(player_id.clone(), team.name.clone());
                    }
                }
            }
        }
        for id in &proposed.ticket_ids {
            if let Some(t) = state.tickets.get_mut(id) {
                t.status = next;
            }
        }
        let refs: Vec<(String, EngineTicket)> = proposed
            .ticket_ids
            .iter()
            .filter_map(|id| state.tickets.get(id).map(|t| (id.clone(), t.clone())))
            .collect();
        for id in &proposed.ticket_ids {
            if let Some(t) = state.tickets.get_mut(id) {
                for m in &proposed.rule_evaluation_metrics {
                    if let Some(total) = t.rule_metrics.iter_mut().find(|r| r.rule_name == m.rule_name) {
                        total.passed_count += m.passed_count;
                        total.failed_count += m.failed_count;
                    }
                }
            }
        }
        let mut created = detail_for(E::PotentialMatchCreated, &as_refs(&refs));
        created.match_id = Some(match_id.clone());
        created.acceptance_required = Some(configuration.acceptance_required);
        if configuration.acceptance_required {
            created.acceptance_timeout = Some(u64::from(configuration.acceptance_timeout()));
        }
        created.rule_evaluation_metrics = Some(
            proposed
                .rule_evaluation_metrics
                .iter()
                .map(|m| RuleEvaluationMetric {
                    rule_name: m.rule_name.clone(),
                    passed_count: m.passed_count,
                    failed_count: m.failed_count,
                })
                .collect(),
        );
        self.publish(configuration, created);
        if configuration.acceptance_required {
            state.pending.insert(
                match_id,
                PendingMatch {
                    configuration_name: configuration.name.clone(),
                    ticket_ids: proposed.ticket_ids,
                    deadline_ms: now_ms + i64::from(configuration.acceptance_timeout()) * 1000,
                    accepted: BTreeSet::new(),
                    rejected: BTreeSet::new(),
                },
            );
            return;
        }
        self.place(state, configuration, &match_id, &proposed.ticket_ids);
    }

    /// Places a match (WITH_QUEUE) or just reports it (STANDALONE), and completes its tickets.
    pub(super) fn place(
        &self,
        state: &mut EngineState,
        configuration: &MatchmakingConfiguration,
        match_id: &str,
        ticket_ids: &[String],
    ) {
        let session = match configuration.flex_match_mode {
            FlexMatchMode::WithQueue => {
                let tickets: Vec<Ticket> = ticket_ids
                    .iter()
                    .filter_map(|id| {
                        state.tickets.get(id).map(|t| Ticket {
                            ticket_id: id.clone(),
                            start_time_ms: t.start_time_ms.max(0) as u64,
                            players: t.players.clone(),
                        })
                    })
                    .collect();
                let regions = state
                    .rule_sets
                    .get(&configuration.rule_set_name)
                    .map(|r| r.parsed.acceptable_regions(&tickets, self.clock.now_ms().max(0) as u64))
                    .unwrap_or_default();
                let players: Vec<&Player> = tickets.iter().flat_map(|t| t.players.iter()).collect();
                Some(self.fleet.place(&self.region, &regions, players.iter().copied()))
            }
            FlexMatchMode::Standalone => None,
        };
        let now = self.clock.now_ms();
        for id in ticket_ids {
            if let Some(t) = state.tickets.get_mut(id) {
                t.status = TicketStatus::Completed;
                t.end_time_ms = Some(now);
                t.game_session.clone_from(&session);
            }
        }
        let refs: Vec<(String, EngineTicket)> =
            ticket_ids.iter().filter_map(|id| state.tickets.get(id).map(|t| (id.clone(), t.clone()))).collect();
        let mut succeeded = detail_for(E::MatchmakingSucceeded, &as_refs(&refs));
        succeeded.match_id = Some(match_id.to_owned());
        if let (Some(session), Some(info)) = (&session, succeeded.game_session_info.as_mut()) {
            info.game_session_arn = Some(session.game_session_arn.clone());
            info.ip_address = Some(session.ip_address.clone());
            info.dns_name = Some(session.dns_name.clone());
            info.port = Some(session.port);
        }
        self.publish(configuration, succeeded);
    }

    /// Runs the matchmaking cycle every `interval`, and soon after a ticket arrives, until the
    /// returned task is aborted.
    pub fn spawn_cycle(self: &Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = engine.wake.notified() => {
                        // Let tickets that arrive together be matched together.
                        tokio::time::sleep(interval / 4).await;
                    }
                }
                // Matching is CPU work: off the async workers, so sockets keep being served.
                let cycle = Arc::clone(&engine);
                let now = engine.clock.now_ms();
                if let Err(e) = tokio::task::spawn_blocking(move || cycle.cycle(now)).await {
                    tracing::error!(error = %e, "matchmaking cycle failed");
                }
            }
        })
    }
}
