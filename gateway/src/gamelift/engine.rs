//! The matchmaker: rule sets, configurations, tickets, the matchmaking cycle, acceptance,
//! timeouts, placement and events.
//!
//! Match formation itself is `matchgate_flexmatch`'s pure `RuleSet::find_matches`; this module
//! owns the tickets' lives around it and says what happened as FlexMatch's events, in the order
//! FlexMatch publishes them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, TimeZone, Utc};
use matchgate_flexmatch::{MAX_PLAYERS_PER_TICKET, RuleSet, Ticket};
use matchgate_lambdas::ports::Clock;
use matchgate_protocol::flexmatch::{
    DETAIL_TYPE, EventPlayer, EventTicket, GameSessionInfo, MatchmakingEvent, MatchmakingEventDetail,
    MatchmakingEventType as E, RuleEvaluationMetric, SOURCE,
};
use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration, Player, StartMatchmakingRequest};
use matchgate_protocol::ticket::TicketStatus;
use tokio::sync::{Notify, mpsc};

use super::placement::{Fleet, GameSession};

/// Most tickets one DescribeMatchmaking call may name (GameLift's limit).
pub const MAX_DESCRIBE_TICKETS: usize = 10;
/// How long an ended ticket stays describable, as GameLift keeps them.
pub const ENDED_TICKET_RETENTION_MS: i64 = 60 * 60 * 1000;

/// A stored rule set: its body as given, and parsed.
#[derive(Debug, Clone)]
pub struct StoredRuleSet {
    pub name: String,
    pub body: String,
    pub parsed: Arc<RuleSet>,
    pub creation_time_ms: i64,
}

#[derive(Debug, Clone)]
struct EngineTicket {
    configuration_name: String,
    status: TicketStatus,
    status_reason: Option<String>,
    status_message: Option<String>,
    start_time_ms: i64,
    end_time_ms: Option<i64>,
    players: Vec<Player>,
    /// playerId → team, once in a match.
    teams: BTreeMap<String, String>,
    game_session: Option<GameSession>,
    /// Every rule of the rule set, with the passes and failures FlexMatch reported for the
    /// potential matches this ticket was part of (zero until it is in one), for the
    /// `ruleEvaluationMetrics` of MatchmakingTimedOut and MatchmakingCancelled.
    rule_metrics: Vec<RuleEvaluationMetric>,
}

/// A match waiting for its players to accept.
#[derive(Debug, Clone)]
struct PendingMatch {
    configuration_name: String,
    ticket_ids: Vec<String>,
    deadline_ms: i64,
    accepted: BTreeSet<String>,
    rejected: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct EngineState {
    rule_sets: BTreeMap<String, StoredRuleSet>,
    configurations: BTreeMap<String, MatchmakingConfiguration>,
    tickets: HashMap<String, EngineTicket>,
    pending: BTreeMap<String, PendingMatch>,
}

/// Why a GameLift request was refused, with GameLift's exception names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GameLiftError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl GameLiftError {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::NotFound(_) => "NotFoundException",
        }
    }
}

/// FlexMatch, locally. Safe to share; every operation is short and never awaits under its lock.
pub struct LocalFlexMatch {
    state: Mutex<EngineState>,
    fleet: Fleet,
    region: String,
    account: String,
    clock: Arc<dyn Clock>,
    events: mpsc::UnboundedSender<MatchmakingEvent>,
    wake: Notify,
}

impl std::fmt::Debug for LocalFlexMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFlexMatch").field("region", &self.region).finish_non_exhaustive()
    }
}

fn iso8601(epoch_ms: i64) -> String {
    Utc.timestamp_millis_opt(epoch_ms).single().unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl LocalFlexMatch {
    /// A matchmaker whose events go to `events`, in the order they happen.
    pub fn new(
        region: impl Into<String>,
        fleet: Fleet,
        clock: Arc<dyn Clock>,
        events: mpsc::UnboundedSender<MatchmakingEvent>,
    ) -> Self {
        Self {
            state: Mutex::default(),
            fleet,
            region: region.into(),
            account: "000000000000".into(),
            clock,
            events,
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EngineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn configuration_arn(&self, name: &str) -> String {
        format!("arn:aws:gamelift:{}:{}:matchmakingconfiguration/{name}", self.region, self.account)
    }

    pub fn rule_set_arn(&self, name: &str) -> String {
        format!("arn:aws:gamelift:{}:{}:matchmakingruleset/{name}", self.region, self.account)
    }

    // --- rule sets -------------------------------------------------------------------------

    /// CreateMatchmakingRuleSet. Rule sets are immutable, as in GameLift.
    pub fn create_rule_set(&self, name: &str, body: &str) -> Result<StoredRuleSet, GameLiftError> {
        valid_name(name)?;
        let parsed =
            RuleSet::parse(body).map_err(|e| GameLiftError::InvalidRequest(format!("Invalid rule set: {e}")))?;
        let mut state = self.lock();
        if state.rule_sets.contains_key(name) {
            return Err(GameLiftError::InvalidRequest(format!("Rule set {name} already exists")));
        }
        let stored = StoredRuleSet {
            name: name.to_owned(),
            body: body.to_owned(),
            parsed: Arc::new(parsed),
            creation_time_ms: self.clock.now_ms(),
        };
        state.rule_sets.insert(name.to_owned(), stored.clone());
        Ok(stored)
    }

    /// DescribeMatchmakingRuleSets: all, or the named ones (every name must exist).
    pub fn describe_rule_sets(&self, names: &[String]) -> Result<Vec<StoredRuleSet>, GameLiftError> {
        let state = self.lock();
        if names.is_empty() {
            return Ok(state.rule_sets.values().cloned().collect());
        }
        names
            .iter()
            .map(|n| {
                let name = n.rsplit('/').next().unwrap_or(n);
                state
                    .rule_sets
                    .get(name)
                    .cloned()
                    .ok_or_else(|| GameLiftError::NotFound(format!("Rule set {n} not found")))
            })
            .collect()
    }

    /// DeleteMatchmakingRuleSet: refused while a configuration uses it.
    pub fn delete_rule_set(&self, name: &str) -> Result<(), GameLiftError> {
        let mut state = self.lock();
        if !state.rule_sets.contains_key(name) {
            return Err(GameLiftError::NotFound(format!("Rule set {name} not found")));
        }
        if let Some(c) = state.configurations.values().find(|c| c.rule_set_name == name) {
            return Err(GameLiftError::InvalidRequest(format!("Rule set {name} is used by configuration {}", c.name)));
        }
        state.rule_sets.remove(name);
        Ok(())
    }

    // --- configurations ----------------------------------------------------------------------

    /// CreateMatchmakingConfiguration.
    pub fn create_configuration(
        &self,
        mut configuration: MatchmakingConfiguration,
    ) -> Result<MatchmakingConfiguration, GameLiftError> {
        valid_name(&configuration.name)?;
        configuration.rule_set_name =
            configuration.rule_set_name.rsplit('/').next().unwrap_or(&configuration.rule_set_name).to_owned();
        check_configuration(&configuration)?;
        let mut state = self.lock();
        if state.configurations.contains_key(&configuration.name) {
            return Err(GameLiftError::InvalidRequest(format!("Configuration {} already exists", configuration.name)));
        }
        if !state.rule_sets.contains_key(&configuration.rule_set_name) {
            return Err(GameLiftError::NotFound(format!("Rule set {} not found", configuration.rule_set_name)));
        }
        configuration.creation_time_ms = self.clock.now_ms();
        state.configurations.insert(configuration.name.clone(), configuration.clone());
        Ok(configuration)
    }

    /// DescribeMatchmakingConfigurations: all, the named ones, or those using a rule set.
    pub fn describe_configurations(
        &self,
        names: &[String],
        rule_set_name: Option<&str>,
    ) -> Vec<MatchmakingConfiguration> {
        let state = self.lock();
        state
            .configurations
            .values()
            .filter(|c| names.is_empty() || names.iter().any(|n| n.rsplit('/').next() == Some(c.name.as_str())))
            .filter(|c| rule_set_name.is_none_or(|r| c.rule_set_name == r))
            .cloned()
            .collect()
    }

    /// UpdateMatchmakingConfiguration: `update` edits a copy; the result is validated first.
    pub fn update_configuration(
        &self,
        name: &str,
        update: impl FnOnce(&mut MatchmakingConfiguration),
    ) -> Result<MatchmakingConfiguration, GameLiftError> {
        let mut state = self.lock();
        let mut configuration = state
            .configurations
            .get(name)
            .cloned()
            .ok_or_else(|| GameLiftError::NotFound(format!("Configuration {name} not found")))?;
        update(&mut configuration);
        configuration.name = name.to_owned();
        check_configuration(&configuration)?;
        if !state.rule_sets.contains_key(&configuration.rule_set_name) {
            return Err(GameLiftError::NotFound(format!("Rule set {} not found", configuration.rule_set_name)));
        }
        state.configurations.insert(name.to_owned(), configuration.clone());
        Ok(configuration)
    }

    /// DeleteMatchmakingConfiguration: refused while tickets of it are live, which would
    /// otherwise never match, time out or settle.
    pub fn delete_configuration(&self, name: &str) -> Result<(), GameLiftError> {
        let mut state = self.lock();
        if state.tickets.values().any(|t| t.configuration_name == name && !t.status.is_terminal()) {
            return Err(GameLiftError::InvalidRequest(format!("Configuration {name} has live tickets")));
        }
        state
            .configurations
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| GameLiftError::NotFound(format!("Configuration {name} not found")))
    }

    // --- tickets -----------------------------------------------------------------------------

    fn event(&self, configuration_name: &str, detail: MatchmakingEventDetail) -> MatchmakingEvent {
        MatchmakingEvent {
            version: "0".into(),
            id: uuid::Uuid::new_v4().to_string(),
            detail_type: DETAIL_TYPE.into(),
            source: SOURCE.into(),
            account: self.account.clone(),
            time: iso8601(self.clock.now_ms()),
            region: self.region.clone(),
            resources: vec![self.configuration_arn(configuration_name)],
            detail,
        }
    }

    fn publish(&self, configuration: &MatchmakingConfiguration, mut detail: MatchmakingEventDetail) {
        if detail.event_type == E::MatchmakingFailed || detail.event_type == E::MatchmakingSucceeded {
            detail.custom_event_data.clone_from(&configuration.custom_event_data);
        }
        // The receiver lives as long as the stack; after shutdown there is no one to tell.
        let _ = self.events.send(self.event(&configuration.name, detail));
    }

    /// StartMatchmaking.
    pub fn start(&self, request: StartMatchmakingRequest) -> Result<(), GameLiftError> {
        if request.players.is_empty() || request.players.len() > MAX_PLAYERS_PER_TICKET {
            return Err(GameLiftError::InvalidRequest(format!("A ticket holds 1 to {MAX_PLAYERS_PER_TICKET} players")));
        }
        let ids: BTreeSet<&str> = request.players.iter().map(|p| p.player_id.as_str()).collect();
        if ids.len() != request.players.len() {
            return Err(GameLiftError::InvalidRequest("Player IDs in a ticket must be unique".into()));
        }
        valid_ticket_id(&request.ticket_id)?;
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let configuration = state.configurations.get(&request.configuration_name).cloned().ok_or_else(|| {
            GameLiftError::NotFound(format!("Matchmaking configuration {} not found", request.configuration_name))
        })?;
        let rule_set =
            state.rule_sets.get(&configuration.rule_set_name).map(|r| Arc::clone(&r.parsed)).ok_or_else(|| {
                GameLiftError::NotFound(format!("Rule set {} not found", configuration.rule_set_name))
            })?;
        if state.tickets.contains_key(&request.ticket_id) {
            return Err(GameLiftError::InvalidRequest(format!("Ticket {} already exists", request.ticket_id)));
        }
        let mut players = Vec::with_capacity(request.players.len());
        for mut player in request.players {
            rule_set.apply_defaults(&mut player);
            rule_set
                .check_player(&player)
                .map_err(|reason| GameLiftError::InvalidRequest(format!("Player {}: {reason}", player.player_id)))?;
            players.push(player);
        }
        let ticket = EngineTicket {
            configuration_name: configuration.name.clone(),
            status: TicketStatus::Searching,
            status_reason: None,
            status_message: None,
            start_time_ms: now,
            end_time_ms: None,
            players,
            teams: BTreeMap::new(),
            game_session: None,
            rule_metrics: rule_set
                .rule_names()
                .map(|name| RuleEvaluationMetric { rule_name: name.to_owned(), passed_count: 0, failed_count: 0 })
                .collect(),
        };
        let detail = searching_detail(&request.ticket_id, &ticket);
        state.tickets.insert(request.ticket_id.clone(), ticket);
        self.publish(&configuration, detail);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// StopMatchmaking: a ticket that has not been placed yet is cancelled; stopping an ended
    /// ticket changes nothing.
    pub fn stop(&self, ticket_id: &str) -> Result<(), GameLiftError> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let ticket = state
            .tickets
            .get(ticket_id)
            .ok_or_else(|| GameLiftError::NotFound(format!("Ticket {ticket_id} not found")))?;
        if ticket.status.is_terminal() || ticket.status == TicketStatus::Placing {
            return Ok(());
        }
        if let Some(match_id) = pending_match_of(&state, ticket_id) {
            // A ticket leaving a proposed match drops it, as a rejection would.
            let players = state_players(&state.tickets, ticket_id);
            if let Some(p) = state.pending.get_mut(&match_id) {
                p.rejected.extend(players);
            }
            self.settle_pending(&mut state, &match_id, "Rejected", now);
        }
        self.end_ticket(&mut state, ticket_id, TicketStatus::Cancelled, "Cancelled", "Cancelled by request.", now);
        Ok(())
    }

    fn end_ticket(
        &self,
        state: &mut EngineState,
        ticket_id: &str,
        status: TicketStatus,
        reason: &str,
        message: &str,
        now: i64,
    ) {
        let Some(ticket) = state.tickets.get_mut(ticket_id) else { return };
        if ticket.status.is_terminal() {
            return;
        }
        ticket.status = status;
        ticket.status_reason = Some(reason.to_owned());
        ticket.status_message = Some(message.to_owned());
        ticket.end_time_ms = Some(now);
        let ticket = ticket.clone();
        let event_type = match status {
            TicketStatus::TimedOut => E::MatchmakingTimedOut,
            TicketStatus::Failed => E::MatchmakingFailed,
            _ => E::MatchmakingCancelled,
        };
        let mut detail = detail_for(event_type, &[(ticket_id, &ticket)]);
        detail.reason = Some(reason.to_owned());
        detail.message = Some(message.to_owned());
        // match-events-matchmakingtimedout.html and match-events-matchmakingcancelled.html list
        // ruleEvaluationMetrics in the detail (AWS's Cancelled example: zero counts for rules
        // never evaluated).
        if matches!(event_type, E::MatchmakingTimedOut | E::MatchmakingCancelled) {
            detail.rule_evaluation_metrics = Some(ticket.rule_metrics);
        }
        if let Some(configuration) = state.configurations.get(&ticket.configuration_name) {
            self.publish(configuration, detail);
        }
    }

    /// AcceptMatch for some players of a ticket.
    pub fn accept(&self, ticket_id: &str, player_ids: &[String], accept: bool) -> Result<(), GameLiftError> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let ticket = state
            .tickets
            .get(ticket_id)
            .ok_or_else(|| GameLiftError::NotFound(format!("Ticket {ticket_id} not found")))?;
        if ticket.status != TicketStatus::RequiresAcceptance {
            return Err(GameLiftError::InvalidRequest(format!(
                "Ticket {ticket_id} is {}, not REQUIRES_ACCEPTANCE",
                ticket.status.as_str()
            )));
        }
        if let Some(p) = player_ids.iter().find(|p| !ticket.players.iter().any(|q| q.player_id == **p)) {
            return Err(GameLiftError::InvalidRequest(format!("Player {p} is not in ticket {ticket_id}")));
        }
        let Some(match_id) = pending_match_of(&state, ticket_id) else {
            return Err(GameLiftError::InvalidRequest(format!("Ticket {ticket_id} has no proposed match")));
        };
        let pending = state.pending.get_mut(&match_id).expect("found above");
        for p in player_ids {
            if accept {
                pending.accepted.insert(p.clone());
            } else {
                pending.rejected.insert(p.clone());
            }
        }
        let pending = pending.clone();
        // AcceptMatch: each player's acceptance so far.
        let refs: Vec<(String, EngineTicket)> =
            pending.ticket_ids.iter().filter_map(|id| state.tickets.get(id).map(|t| (id.clone(), t.clone()))).collect();
        let mut detail = detail_for(E::AcceptMatch, &as_refs(&refs));
        detail.match_id = Some(match_id.clone());
        // match-events-acceptmatch.html: "Missing data means that AcceptMatch hasn't been called
        // for that player."
        let answer = |player_id: &str| {
            if pending.accepted.contains(player_id) {
                Some(true)
            } else if pending.rejected.contains(player_id) {
                Some(false)
            } else {
                None
            }
        };
        let info_players = detail.game_session_info.iter_mut().flat_map(|i| i.players.iter_mut());
        for player in detail.tickets.iter_mut().flat_map(|t| t.players.iter_mut()).chain(info_players) {
            player.accepted = answer(&player.player_id);
        }
        if let Some(configuration) = state.configurations.get(&pending.configuration_name).cloned() {
            self.publish(&configuration, detail);
        }
        let everyone: usize = refs.iter().map(|(_, t)| t.players.len()).sum();
        if !pending.rejected.is_empty() {
            self.settle_pending(&mut state, &match_id, "Rejected", now);
        } else if pending.accepted.len() == everyone {
            self.settle_pending(&mut state, &match_id, "Accepted", now);
        }
        Ok(())
    }

    /// Ends a proposed match: placed when accepted; otherwise tickets whose players all accepted
    /// search again and the others (a player rejected or did not answer) are cancelled, as
    /// API_AcceptMatch.html says.
    fn settle_pending(&self, state: &mut EngineState, match_id: &str, acceptance: &str, now: i64) {
        let Some(pending) = state.pending.remove(match_id) else { return };
        let Some(configuration) = state.configurations.get(&pending.configuration_name).cloned() else { return };
        let refs: Vec<(String, EngineTicket)> =
            pending.ticket_ids.iter().filter_map(|id| state.tickets.get(id).map(|t| (id.clone(), t.clone()))).collect();
        let mut completed = detail_for(E::AcceptMatchCompleted, &as_refs(&refs));
        completed.match_id = Some(match_id.to_owned());
        completed.acceptance = Some(acceptance.to_owned());
        self.publish(&configuration, completed);
        if acceptance == "Accepted" {
            self.place(state, &configuration, match_id, &pending.ticket_ids);
            return;
        }
        for (id, ticket) in &refs {
            // API_AcceptMatch.html: "If the ticket has one or more players who rejected the match
            // or failed to respond, the ticket status is set CANCELLED [...]. If all players in
            // the ticket accepted the match, the ticket status is returned to SEARCHING".
            let keeps_searching = ticket.players.iter().all(|p| pending.accepted.contains(&p.player_id));
            if keeps_searching {
                if let Some(t) = state.tickets.get_mut(id) {
                    t.status = TicketStatus::Searching;
                    t.teams.clear();
                    let t = t.clone();
                    self.publish(&configuration, searching_detail(id, &t));
                }
            } else {
                let message = if ticket.players.iter().any(|p| pending.rejected.contains(&p.player_id)) {
                    "A player rejected the match."
                } else if acceptance == "TimedOut" {
                    "A player did not accept the match in time."
                } else {
                    "The match was rejected before every player of the ticket accepted."
                };
                self.end_ticket(state, id, TicketStatus::Cancelled, "AcceptanceFailed", message, now);
            }
        }
    }

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
    fn place(
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

    /// A ticket's status, if the engine knows it.
    pub fn ticket_status(&self, ticket_id: &str) -> Option<TicketStatus> {
        self.lock().tickets.get(ticket_id).map(|t| t.status)
    }

    /// DescribeMatchmaking for up to ten tickets; unknown ones are left out, as GameLift does.
    pub fn describe(&self, ticket_ids: &[String]) -> Result<Vec<DescribedTicket>, GameLiftError> {
        if ticket_ids.len() > MAX_DESCRIBE_TICKETS {
            return Err(GameLiftError::InvalidRequest(format!("At most {MAX_DESCRIBE_TICKETS} ticket IDs")));
        }
        let state = self.lock();
        Ok(ticket_ids
            .iter()
            .filter_map(|id| {
                let t = state.tickets.get(id)?;
                Some(DescribedTicket {
                    ticket_id: id.clone(),
                    configuration_name: t.configuration_name.clone(),
                    configuration_arn: self.configuration_arn(&t.configuration_name),
                    status: t.status,
                    status_reason: t.status_reason.clone(),
                    status_message: t.status_message.clone(),
                    start_time_ms: t.start_time_ms,
                    end_time_ms: t.end_time_ms,
                    players: t.players.clone(),
                    teams: t.teams.clone(),
                    // GameLift lists the ticket's own players' sessions only: one ticket's
                    // holder never learns the seat credentials of another ticket's players.
                    game_session: t.game_session.as_ref().map(|g| GameSession {
                        player_sessions: g
                            .player_sessions
                            .iter()
                            .filter(|(player_id, _)| t.players.iter().any(|p| &p.player_id == *player_id))
                            .map(|(player_id, session)| (player_id.clone(), session.clone()))
                            .collect(),
                        ..g.clone()
                    }),
                })
            })
            .collect())
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

/// A ticket as DescribeMatchmaking reports it.
#[derive(Debug, Clone)]
pub struct DescribedTicket {
    pub ticket_id: String,
    pub configuration_name: String,
    pub configuration_arn: String,
    pub status: TicketStatus,
    pub status_reason: Option<String>,
    pub status_message: Option<String>,
    pub start_time_ms: i64,
    pub end_time_ms: Option<i64>,
    pub players: Vec<Player>,
    pub teams: BTreeMap<String, String>,
    pub game_session: Option<GameSession>,
}

/// The proposed match a ticket is waiting in, if any.
fn pending_match_of(state: &EngineState, ticket_id: &str) -> Option<String> {
    state.pending.iter().find(|(_, p)| p.ticket_ids.iter().any(|t| t == ticket_id)).map(|(m, _)| m.clone())
}

fn state_players(tickets: &HashMap<String, EngineTicket>, ticket_id: &str) -> Vec<String> {
    tickets.get(ticket_id).map(|t| t.players.iter().map(|p| p.player_id.clone()).collect()).unwrap_or_default()
}

fn as_refs(tickets: &[(String, EngineTicket)]) -> Vec<(&str, &EngineTicket)> {
    tickets.iter().map(|(id, t)| (id.as_str(), t)).collect()
}

/// GameLift names: letters, digits, `-` and `.`, up to 128.
fn valid_name(name: &str) -> Result<(), GameLiftError> {
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(GameLiftError::InvalidRequest(format!("Invalid name {name:?}")));
    }
    Ok(())
}

fn valid_ticket_id(id: &str) -> Result<(), GameLiftError> {
    valid_name(id).map_err(|_| GameLiftError::InvalidRequest(format!("Invalid ticket ID {id:?}")))
}

fn check_configuration(c: &MatchmakingConfiguration) -> Result<(), GameLiftError> {
    if !(1..=43_200).contains(&c.request_timeout_seconds) {
        return Err(GameLiftError::InvalidRequest("RequestTimeoutSeconds must be 1-43200".into()));
    }
    if c.acceptance_required && !(1..=600).contains(&c.acceptance_timeout()) {
        return Err(GameLiftError::InvalidRequest("AcceptanceTimeoutSeconds must be 1-600".into()));
    }
    if c.flex_match_mode == FlexMatchMode::WithQueue && c.game_session_queue_arns.is_empty() {
        // Locally the simulated fleet stands in for any queue; GameLift would require one.
        tracing::debug!(configuration = c.name, "WITH_QUEUE without a queue ARN: placing on the simulated fleet");
    }
    Ok(())
}

/// MatchmakingSearching for one ticket, whether it just started or returned to the pool.
fn searching_detail(ticket_id: &str, ticket: &EngineTicket) -> MatchmakingEventDetail {
    let mut detail = detail_for(E::MatchmakingSearching, &[(ticket_id, ticket)]);
    detail.estimated_wait_millis = Some(serde_json::Value::String("NOT_AVAILABLE".into()));
    detail
}

fn detail_for(event_type: E, tickets: &[(&str, &EngineTicket)]) -> MatchmakingEventDetail {
    let seat = |t: &EngineTicket, player_id: &str| EventPlayer {
        player_id: player_id.to_owned(),
        team: t.teams.get(player_id).cloned(),
        player_session_id: t.game_session.as_ref().and_then(|g| g.player_sessions.get(player_id)).cloned(),
        accepted: None,
    };
    MatchmakingEventDetail {
        tickets: tickets
            .iter()
            .map(|(id, t)| EventTicket {
                ticket_id: (*id).to_owned(),
                start_time: Some(iso8601(t.start_time_ms)),
                players: t.players.iter().map(|p| seat(t, &p.player_id)).collect(),
            })
            .collect(),
        game_session_info: Some(GameSessionInfo {
            players: tickets.iter().flat_map(|(_, t)| t.players.iter().map(|p| seat(t, &p.player_id))).collect(),
            ..GameSessionInfo::default()
        }),
        ..MatchmakingEventDetail::new(event_type)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use matchgate_lambdas::adapters::memory::ManualClock;

    use super::super::placement::FleetConfig;
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    /// Three single-player tickets make a match; skills within 10 of each other.
    const TRIO: &str = r#"{
        "ruleLanguageVersion": "1.0",
        "playerAttributes": [{ "name": "skill", "type": "number", "default": 10 }],
        "teams": [{ "name": "all", "minPlayers": 3, "maxPlayers": 3 }],
        "rules": [{ "name": "Close", "type": "distance", "maxDistance": 10,
                    "measurements": ["flatten(teams[*].players.attributes[skill])"] }]
    }"#;

    struct Setup {
        engine: LocalFlexMatch,
        clock: Arc<ManualClock>,
        events: mpsc::UnboundedReceiver<MatchmakingEvent>,
    }

    impl Setup {
        fn new(acceptance_required: bool) -> Self {
            let clock = Arc::new(ManualClock::new(T0));
            let (tx, events) = mpsc::unbounded_channel();
            let engine = LocalFlexMatch::new("us-east-1", Fleet::new(FleetConfig::default()), clock.clone(), tx);
            engine.create_rule_set("trio", TRIO).unwrap();
            engine
                .create_configuration(MatchmakingConfiguration {
                    name: "cfg".into(),
                    rule_set_name: "trio".into(),
                    request_timeout_seconds: 60,
                    acceptance_required,
                    acceptance_timeout_seconds: Some(20),
                    flex_match_mode: FlexMatchMode::Standalone,
                    ..MatchmakingConfiguration::default()
                })
                .unwrap();
            Self { engine, clock, events }
        }

        fn start(&self, ticket_id: &str) {
            let player =
                Player { player_id: ticket_id.to_owned(), attributes: BTreeMap::new(), latency_in_ms: BTreeMap::new() };
            let request = StartMatchmakingRequest {
                configuration_name: "cfg".into(),
                ticket_id: ticket_id.to_owned(),
                players: vec![player],
            };
            self.engine.start(request).unwrap();
        }

        fn drain(&mut self) -> Vec<MatchmakingEventDetail> {
            std::iter::from_fn(|| self.events.try_recv().ok()).map(|e| e.detail).collect()
        }

        fn status(&self, ticket_id: &str) -> &'static str {
            self.engine.ticket_status(ticket_id).map_or("UNKNOWN", TicketStatus::as_str)
        }
    }

    fn of_type(events: &[MatchmakingEventDetail], t: E) -> Vec<&MatchmakingEventDetail> {
        events.iter().filter(|e| e.event_type == t).collect()
    }

    fn for_ticket<'a>(events: &'a [MatchmakingEventDetail], t: E, ticket_id: &str) -> &'a MatchmakingEventDetail {
        events
            .iter()
            .find(|e| e.event_type == t && e.tickets.iter().any(|x| x.ticket_id == ticket_id))
            .unwrap_or_else(|| panic!("no {t:?} for {ticket_id} in {events:?}"))
    }

    fn metric(name: &str, passed: u64, failed: u64) -> RuleEvaluationMetric {
        RuleEvaluationMetric { rule_name: name.into(), passed_count: passed, failed_count: failed }
    }

    #[test]
    fn timed_out_and_cancelled_events_report_every_rule() {
        let mut s = Setup::new(false);
        s.start("stopped");
        s.start("waiting");
        s.engine.stop("stopped").unwrap();
        s.clock.advance(Duration::from_secs(60));
        s.engine.cycle(s.clock.now_ms());
        let events = s.drain();
        // Never in a potential match: every rule, with zero counts (AWS's Cancelled example).
        let cancelled = for_ticket(&events, E::MatchmakingCancelled, "stopped");
        assert_eq!(cancelled.rule_evaluation_metrics, Some(vec![metric("Close", 0, 0)]));
        let timed_out = for_ticket(&events, E::MatchmakingTimedOut, "waiting");
        assert_eq!(timed_out.rule_evaluation_metrics, Some(vec![metric("Close", 0, 0)]));
        let json = serde_json::to_value(timed_out).unwrap();
        assert_eq!(json["ruleEvaluationMetrics"][0]["ruleName"], "Close");
    }

    #[test]
    fn a_ticket_keeps_the_counts_of_the_matches_it_was_proposed_in() {
        let mut s = Setup::new(true);
        for t in ["a", "b", "c"] {
            s.start(t);
        }
        s.engine.cycle(s.clock.now_ms());
        let events = s.drain();
        let proposed = of_type(&events, E::PotentialMatchCreated)[0].rule_evaluation_metrics.clone().unwrap();
        assert!(proposed[0].passed_count > 0, "{proposed:?}");
        s.engine.accept("a", &["a".into()], true).unwrap();
        s.engine.accept("b", &["b".into()], false).unwrap();
        s.drain();
        s.clock.advance(Duration::from_secs(60));
        s.engine.cycle(s.clock.now_ms());
        let events = s.drain();
        let timed_out = for_ticket(&events, E::MatchmakingTimedOut, "a");
        assert_eq!(timed_out.rule_evaluation_metrics.as_ref(), Some(&proposed));
    }

    #[test]
    fn a_rejection_cancels_every_ticket_not_fully_accepted() {
        let mut s = Setup::new(true);
        for t in ["yes", "no", "silent"] {
            s.start(t);
        }
        s.engine.cycle(s.clock.now_ms());
        s.drain();
        s.engine.accept("yes", &["yes".into()], true).unwrap();
        s.engine.accept("no", &["no".into()], false).unwrap();
        assert_eq!(s.status("yes"), "SEARCHING");
        assert_eq!(s.status("no"), "CANCELLED");
        // API_AcceptMatch.html: a ticket with a player who "failed to respond" is cancelled too.
        assert_eq!(s.status("silent"), "CANCELLED");
        let events = s.drain();
        let searching = for_ticket(&events, E::MatchmakingSearching, "yes");
        assert_eq!(searching.estimated_wait_millis, Some(serde_json::Value::String("NOT_AVAILABLE".into())));
        assert!(of_type(&events, E::MatchmakingSearching).len() == 1, "{events:?}");
        let silent = for_ticket(&events, E::MatchmakingCancelled, "silent");
        assert_eq!(silent.reason.as_deref(), Some("AcceptanceFailed"));
    }

    #[test]
    fn an_acceptance_timeout_returns_only_fully_accepted_tickets_to_searching() {
        let mut s = Setup::new(true);
        for t in ["yes", "also", "silent"] {
            s.start(t);
        }
        s.engine.cycle(s.clock.now_ms());
        s.engine.accept("yes", &["yes".into()], true).unwrap();
        s.engine.accept("also", &["also".into()], true).unwrap();
        s.drain();
        s.clock.advance(Duration::from_secs(20));
        s.engine.cycle(s.clock.now_ms());
        assert_eq!(s.status("yes"), "SEARCHING");
        assert_eq!(s.status("also"), "SEARCHING");
        assert_eq!(s.status("silent"), "CANCELLED");
        let events = s.drain();
        for t in ["yes", "also"] {
            let searching = for_ticket(&events, E::MatchmakingSearching, t);
            assert_eq!(searching.estimated_wait_millis, Some(serde_json::Value::String("NOT_AVAILABLE".into())));
        }
    }

    #[test]
    fn accept_match_events_leave_out_players_who_have_not_answered() {
        let mut s = Setup::new(true);
        for t in ["yes", "no", "silent"] {
            s.start(t);
        }
        s.engine.cycle(s.clock.now_ms());
        s.drain();
        s.engine.accept("yes", &["yes".into()], true).unwrap();
        let events = s.drain();
        let first = of_type(&events, E::AcceptMatch)[0];
        let answers = |d: &MatchmakingEventDetail| {
            let in_tickets: BTreeMap<String, Option<bool>> =
                d.tickets.iter().flat_map(|t| &t.players).map(|p| (p.player_id.clone(), p.accepted)).collect();
            let in_session: BTreeMap<String, Option<bool>> = d
                .game_session_info
                .iter()
                .flat_map(|i| &i.players)
                .map(|p| (p.player_id.clone(), p.accepted))
                .collect();
            assert_eq!(in_tickets, in_session, "tickets and gameSessionInfo agree");
            in_tickets
        };
        let expected: BTreeMap<String, Option<bool>> =
            [("yes".into(), Some(true)), ("no".into(), None), ("silent".into(), None)].into();
        assert_eq!(answers(first), expected);
        // On the wire the field is absent for a player who has not answered.
        let json = serde_json::to_value(first).unwrap();
        let silent = json["tickets"].as_array().unwrap().iter().find(|t| t["ticketId"] == "silent").unwrap();
        assert!(silent["players"][0].get("accepted").is_none(), "{silent}");

        s.engine.accept("no", &["no".into()], false).unwrap();
        let events = s.drain();
        let second = of_type(&events, E::AcceptMatch)[0];
        let expected: BTreeMap<String, Option<bool>> =
            [("yes".into(), Some(true)), ("no".into(), Some(false)), ("silent".into(), None)].into();
        assert_eq!(answers(second), expected);
    }
}
