//! The matchmaker: tickets, the matchmaking cycle, timeouts and events.
//!
//! Match formation itself is `matchgate_flexmatch`'s pure `RuleSet::find_matches`; this module
//! owns the tickets' lives around it and says what happened as FlexMatch's events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{SecondsFormat, TimeZone, Utc};
use matchgate_flexmatch::{AttributeValue, Player, RuleSet, Ticket};
use matchgate_lambdas::ports::{self, Clock, MatchmakerError, StartMatchmakingRequest};
use matchgate_protocol::flexmatch::{
    DETAIL_TYPE, EventPlayer, EventTicket, GameSessionInfo, MatchmakingEvent, MatchmakingEventDetail,
    MatchmakingEventType as E, RuleEvaluationMetric, SOURCE,
};
use matchgate_protocol::ticket::TicketStatus;
use tokio::sync::{Notify, mpsc};

use super::placement::{Fleet, GameSession};

/// Most players in one ticket (GameLift's limit).
pub const MAX_PLAYERS_PER_TICKET: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlexMatchMode {
    /// FlexMatch forms matches and a game session queue places them.
    WithQueue,
    /// FlexMatch only forms matches; the game places them itself.
    Standalone,
}

/// A matchmaking configuration, with GameLift's settings.
#[derive(Debug, Clone)]
pub struct MatchmakingConfiguration {
    pub name: String,
    pub rule_set_name: String,
    pub request_timeout_seconds: u32,
    pub acceptance_required: bool,
    pub acceptance_timeout_seconds: u32,
    pub flex_match_mode: FlexMatchMode,
}

impl Default for MatchmakingConfiguration {
    fn default() -> Self {
        Self {
            name: "matchgate-default".into(),
            rule_set_name: "matchgate-default".into(),
            request_timeout_seconds: 60,
            acceptance_required: false,
            acceptance_timeout_seconds: 30,
            flex_match_mode: FlexMatchMode::WithQueue,
        }
    }
}

#[derive(Debug, Clone)]
struct EngineTicket {
    configuration_name: String,
    status: TicketStatus,
    start_time_ms: i64,
    players: Vec<Player>,
}

#[derive(Debug, Default)]
struct EngineState {
    configurations: HashMap<String, (MatchmakingConfiguration, Arc<RuleSet>)>,
    tickets: HashMap<String, EngineTicket>,
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

    /// Adds or replaces a matchmaking configuration with its rule set.
    pub fn put_configuration(&self, configuration: MatchmakingConfiguration, rule_set: RuleSet) {
        self.lock().configurations.insert(configuration.name.clone(), (configuration, Arc::new(rule_set)));
    }

    pub fn configuration_arn(&self, name: &str) -> String {
        format!("arn:aws:gamelift:{}:{}:matchmakingconfiguration/{name}", self.region, self.account)
    }

    /// Resolves when a ticket arrives, so the cycle can run without waiting for its tick.
    pub async fn ticket_arrived(&self) {
        self.wake.notified().await;
    }

    /// The status of a ticket, as DescribeMatchmaking reports it.
    pub fn ticket_status(&self, ticket_id: &str) -> Option<TicketStatus> {
        self.lock().tickets.get(ticket_id).map(|t| t.status)
    }

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

    fn publish(&self, configuration_name: &str, detail: MatchmakingEventDetail) {
        // The receiver lives as long as the stack; after shutdown there is no one to tell.
        let _ = self.events.send(self.event(configuration_name, detail));
    }

    /// StartMatchmaking.
    pub fn start(&self, request: StartMatchmakingRequest) -> Result<(), MatchmakerError> {
        if request.players.is_empty() || request.players.len() > MAX_PLAYERS_PER_TICKET {
            return Err(MatchmakerError::Rejected(format!("a ticket holds 1 to {MAX_PLAYERS_PER_TICKET} players")));
        }
        let now = self.clock.now_ms();
        let detail = {
            let mut state = self.lock();
            let Some((_, rule_set)) = state.configurations.get(&request.configuration_name) else {
                return Err(MatchmakerError::Rejected(format!(
                    "matchmaking configuration {:?} not found",
                    request.configuration_name
                )));
            };
            if state.tickets.contains_key(&request.ticket_id) {
                return Err(MatchmakerError::Rejected(format!("ticket {} already exists", request.ticket_id)));
            }
            let players: Vec<Player> = request
                .players
                .into_iter()
                .map(|p| {
                    let mut player = Player {
                        player_id: p.player_id,
                        attributes: p.attributes.into_iter().map(|(k, v)| (k, attribute(v))).collect(),
                        latency_in_ms: p.latency_in_ms,
                    };
                    rule_set.apply_defaults(&mut player);
                    player
                })
                .collect();
            let ticket = EngineTicket {
                configuration_name: request.configuration_name.clone(),
                status: TicketStatus::Searching,
                start_time_ms: now,
                players,
            };
            let detail = detail_for(E::MatchmakingSearching, &[(&request.ticket_id, &ticket)], None);
            state.tickets.insert(request.ticket_id.clone(), ticket);
            detail
        };
        let mut detail = detail;
        detail.estimated_wait_millis = Some(serde_json::Value::String("NOT_AVAILABLE".into()));
        self.publish(&request.configuration_name, detail);
        self.wake.notify_one();
        Ok(())
    }

    /// StopMatchmaking: a ticket that has not been placed yet is cancelled.
    pub fn stop(&self, ticket_id: &str) -> Result<(), MatchmakerError> {
        let mut state = self.lock();
        let Some(ticket) = state.tickets.get_mut(ticket_id) else {
            return Err(MatchmakerError::Rejected(format!("ticket {ticket_id} not found")));
        };
        if ticket.status.is_terminal() || ticket.status == TicketStatus::Placing {
            return Ok(());
        }
        ticket.status = TicketStatus::Cancelled;
        let ticket = ticket.clone();
        let mut detail = detail_for(E::MatchmakingCancelled, &[(ticket_id, &ticket)], None);
        detail.reason = Some("Cancelled".into());
        detail.message = Some("Cancelled by request.".into());
        self.publish(&ticket.configuration_name, detail);
        Ok(())
    }

    /// One matchmaking cycle at `now_ms`: time out old tickets, then form and place matches.
    pub fn cycle(&self, now_ms: i64) {
        let mut state = self.lock();
        let mut timed_out = Vec::new();
        let EngineState { configurations, tickets } = &mut *state;
        for (id, ticket) in tickets.iter_mut() {
            let searching = matches!(ticket.status, TicketStatus::Queued | TicketStatus::Searching);
            let timeout_ms = state_timeout(configurations, &ticket.configuration_name);
            if searching && now_ms - ticket.start_time_ms >= timeout_ms {
                ticket.status = TicketStatus::TimedOut;
                timed_out.push((id.clone(), ticket.clone()));
            }
        }
        for (id, ticket) in &timed_out {
            let mut detail = detail_for(E::MatchmakingTimedOut, &[(id, ticket)], None);
            detail.reason = Some("TimedOut".into());
            detail.message = Some("Removed from matchmaking due to timing out.".into());
            self.publish(&ticket.configuration_name, detail);
        }

        let configurations: Vec<(MatchmakingConfiguration, Arc<RuleSet>)> =
            state.configurations.values().cloned().collect();
        for (configuration, rule_set) in configurations {
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
            if pool.is_empty() {
                continue;
            }
            // Arrival order; ties broken by ID so a cycle is deterministic.
            pool.sort_by(|a, b| a.start_time_ms.cmp(&b.start_time_ms).then_with(|| a.ticket_id.cmp(&b.ticket_id)));
            for proposed in rule_set.find_matches(&pool, now_ms.max(0) as u64) {
                self.form_match(&mut state, &configuration, proposed);
            }
        }
    }

    fn form_match(
        &self,
        state: &mut EngineState,
        configuration: &MatchmakingConfiguration,
        proposed: matchgate_flexmatch::ProposedMatch,
    ) {
        let team_of: BTreeMap<&str, &str> = proposed
            .teams
            .iter()
            .flat_map(|t| t.player_ids.iter().map(move |p| (p.as_str(), t.name.as_str())))
            .collect();
        let mut tickets: Vec<(String, EngineTicket)> = Vec::new();
        for id in &proposed.ticket_ids {
            // The engine proposes disjoint matches over searching tickets only; anything else
            // would put a ticket in two matches, so it is refused here as well.
            match state.tickets.get(id) {
                Some(t) if t.status == TicketStatus::Searching => tickets.push((id.clone(), t.clone())),
                _ => {
                    tracing::error!(
                        ticket_id = id,
                        "rule engine proposed a ticket that is not searching; match dropped"
                    );
                    return;
                }
            }
        }
        let match_id = uuid::Uuid::new_v4().to_string();
        let metrics: Vec<RuleEvaluationMetric> = proposed
            .rule_evaluation_metrics
            .iter()
            .map(|m| RuleEvaluationMetric {
                rule_name: m.rule_name.clone(),
                passed_count: m.passed_count,
                failed_count: m.failed_count,
            })
            .collect();
        let refs: Vec<(&str, &EngineTicket)> = tickets.iter().map(|(id, t)| (id.as_str(), t)).collect();
        let seats = Seats { teams: &team_of, sessions: None };
        let mut created = detail_for(E::PotentialMatchCreated, &refs, Some(&seats));
        created.match_id = Some(match_id.clone());
        created.acceptance_required = Some(false);
        created.rule_evaluation_metrics = Some(metrics);
        self.publish(&configuration.name, created);

        let players = tickets.iter().flat_map(|(_, t)| t.players.iter());
        let (session, status) = match configuration.flex_match_mode {
            FlexMatchMode::WithQueue => (Some(self.fleet.place(&self.region, players)), TicketStatus::Completed),
            FlexMatchMode::Standalone => (None, TicketStatus::Completed),
        };
        for (id, _) in &tickets {
            if let Some(t) = state.tickets.get_mut(id) {
                t.status = status;
            }
        }
        let seats = Seats { teams: &team_of, sessions: session.as_ref() };
        let mut succeeded = detail_for(E::MatchmakingSucceeded, &refs, Some(&seats));
        succeeded.match_id = Some(match_id);
        if let (Some(session), Some(info)) = (&session, succeeded.game_session_info.as_mut()) {
            info.game_session_arn = Some(session.game_session_arn.clone());
            info.ip_address = Some(session.ip_address.clone());
            info.dns_name = Some(session.dns_name.clone());
            info.port = Some(session.port);
        }
        self.publish(&configuration.name, succeeded);
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
                    () = engine.ticket_arrived() => {
                        // Let tickets that arrive together be matched together.
                        tokio::time::sleep(interval / 4).await;
                    }
                }
                engine.cycle(engine.clock.now_ms());
            }
        })
    }
}

fn state_timeout(configurations: &HashMap<String, (MatchmakingConfiguration, Arc<RuleSet>)>, name: &str) -> i64 {
    configurations.get(name).map(|(c, _)| i64::from(c.request_timeout_seconds) * 1000).unwrap_or(i64::MAX)
}

/// Who sits where in a match, for the events that say so.
struct Seats<'a> {
    teams: &'a BTreeMap<&'a str, &'a str>,
    sessions: Option<&'a GameSession>,
}

fn detail_for(event_type: E, tickets: &[(&str, &EngineTicket)], seats: Option<&Seats<'_>>) -> MatchmakingEventDetail {
    let seat = |player_id: &str| EventPlayer {
        player_id: player_id.to_owned(),
        team: seats.and_then(|s| s.teams.get(player_id)).map(|t| (*t).to_owned()),
        player_session_id: seats.and_then(|s| s.sessions).and_then(|g| g.player_sessions.get(player_id)).cloned(),
        accepted: None,
    };
    MatchmakingEventDetail {
        event_type,
        tickets: tickets
            .iter()
            .map(|(id, t)| EventTicket {
                ticket_id: (*id).to_owned(),
                start_time: Some(iso8601(t.start_time_ms)),
                players: t.players.iter().map(|p| seat(&p.player_id)).collect(),
            })
            .collect(),
        match_id: None,
        game_session_info: Some(GameSessionInfo {
            players: tickets.iter().flat_map(|(_, t)| t.players.iter().map(|p| seat(&p.player_id))).collect(),
            ..GameSessionInfo::default()
        }),
        estimated_wait_millis: None,
        acceptance_timeout: None,
        acceptance_required: None,
        acceptance: None,
        rule_evaluation_metrics: None,
        reason: None,
        message: None,
        custom_event_data: None,
    }
}

fn attribute(value: ports::AttributeValue) -> AttributeValue {
    match value {
        ports::AttributeValue::S(s) => AttributeValue::S(s),
        ports::AttributeValue::N(n) => AttributeValue::N(n),
        ports::AttributeValue::SL(l) => AttributeValue::SL(l),
        ports::AttributeValue::SDM(m) => AttributeValue::SDM(m),
    }
}

/// The handlers' view of FlexMatch, in-process.
#[async_trait]
impl ports::Matchmaker for LocalFlexMatch {
    async fn start_matchmaking(&self, request: StartMatchmakingRequest) -> Result<(), MatchmakerError> {
        self.start(request)
    }

    async fn stop_matchmaking(&self, ticket_id: &str) -> Result<(), MatchmakerError> {
        self.stop(ticket_id)
    }

    async fn accept_match(
        &self,
        ticket_id: &str,
        _player_ids: &[String],
        _accept: bool,
    ) -> Result<(), MatchmakerError> {
        Err(MatchmakerError::Rejected(format!("ticket {ticket_id} is not waiting for acceptance")))
    }
}
