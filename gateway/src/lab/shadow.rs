//! `matchgate up --shadow-rule-set FILE`: a second rule set evaluated on the same live local
//! traffic without affecting any player.
//!
//! Every StartMatchmaking and StopMatchmaking the live engine receives is repeated on a shadow
//! [`LocalFlexMatch`] running the other rule set (no acceptance: no player is asked; standalone:
//! nothing is placed; its events go nowhere). Both engines' tickets are followed through
//! DescribeMatchmaking, and `GET /lab/shadow` shows both side by side; a summary is logged
//! every [`LOG_EVERY`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use matchgate_lambdas::ports::{Clock, SystemClock};
use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration, StartMatchmakingRequest};
use matchgate_protocol::ticket::TicketStatus;
use serde::Serialize;

use super::LabError;
use super::report::{Waits, waits};
use crate::gamelift::engine::TicketObserver;
use crate::gamelift::{Fleet, FleetConfig, LocalFlexMatch};

/// The shadow configuration's and rule set's name in the shadow engine.
const SHADOW: &str = "shadow";
/// Waits kept per side for the percentiles: the most recent ones.
pub const RECENT_WAITS: usize = 10_000;
/// A followed ticket the engine does not know this long after its StartMatchmaking was refused.
const UNKNOWN_AFTER_MS: i64 = 5_000;
/// How often the summary is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// One side's tickets so far.
#[derive(Debug, Default)]
struct Side {
    /// Ticket → start time, until it ends.
    pending: BTreeMap<String, i64>,
    recent_waits: VecDeque<u64>,
    stats: SideStats,
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SideStats {
    pub tickets: u64,
    pub matched: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub searching: u64,
    /// Seconds, over the most recent matched tickets.
    pub time_to_match: Waits,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SideBySide {
    pub live: SideStats,
    pub shadow: SideStats,
}

/// The shadow engine and what both engines did with the live traffic.
#[derive(Debug)]
pub struct Shadow {
    engine: Arc<LocalFlexMatch>,
    sides: Mutex<[Side; 2]>,
}

const LIVE: usize = 0;
const SHADOWED: usize = 1;

impl Shadow {
    /// Starts the shadow of `live` with `rule_set_body`, cycling every `interval`. Call from a
    /// Tokio runtime; the returned tasks run until aborted.
    pub fn start(
        live: &Arc<LocalFlexMatch>,
        live_configuration: &MatchmakingConfiguration,
        rule_set_body: &str,
        interval: Duration,
    ) -> Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>), LabError> {
        super::parse_rule_set("the shadow rule set", rule_set_body)?;
        // Nobody reads the shadow's events: dropping the receiver discards them.
        let (tx, _) = tokio::sync::mpsc::unbounded_channel();
        let engine =
            Arc::new(LocalFlexMatch::new(live.region(), Fleet::new(FleetConfig::default()), Arc::new(SystemClock), tx));
        let refused = |e: crate::gamelift::GameLiftError| LabError::Configuration(e.to_string());
        engine.create_rule_set(SHADOW, rule_set_body).map_err(refused)?;
        engine
            .create_configuration(MatchmakingConfiguration {
                name: SHADOW.into(),
                rule_set_name: SHADOW.into(),
                acceptance_required: false,
                flex_match_mode: FlexMatchMode::Standalone,
                game_session_queue_arns: Vec::new(),
                ..live_configuration.clone()
            })
            .map_err(refused)?;
        let shadow = Arc::new(Self { engine: Arc::clone(&engine), sides: Mutex::default() });
        live.observe(Arc::clone(&shadow) as Arc<dyn TicketObserver>);
        let cycle = engine.spawn_cycle(interval);
        let follow = tokio::spawn({
            let shadow = Arc::clone(&shadow);
            let live = Arc::clone(live);
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut since_log = Duration::ZERO;
                loop {
                    tick.tick().await;
                    shadow.follow(LIVE, &live);
                    shadow.follow(SHADOWED, &shadow.engine);
                    since_log += Duration::from_secs(1);
                    if since_log >= LOG_EVERY {
                        since_log = Duration::ZERO;
                        let s = shadow.side_by_side();
                        tracing::info!(
                            live_tickets = s.live.tickets,
                            live_matched = s.live.matched,
                            live_p95_s = s.live.time_to_match.p95,
                            shadow_matched = s.shadow.matched,
                            shadow_timed_out = s.shadow.timed_out,
                            shadow_p95_s = s.shadow.time_to_match.p95,
                            "shadow rule set"
                        );
                    }
                }
            }
        });
        Ok((shadow, vec![cycle, follow]))
    }

    fn sides(&self) -> std::sync::MutexGuard<'_, [Side; 2]> {
        self.sides.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns through DescribeMatchmaking how one side's pending tickets ended.
    fn follow(&self, side: usize, engine: &LocalFlexMatch) {
        let pending: Vec<String> = self.sides()[side].pending.keys().cloned().collect();
        for chunk in pending.chunks(crate::gamelift::engine::MAX_DESCRIBE_TICKETS) {
            let Ok(described) = engine.describe(chunk) else { continue };
            let mut sides = self.sides();
            let s = &mut sides[side];
            // A ticket the engine refused is never describable: dropped once it is clearly not
            // on its way in.
            let now = SystemClock.now_ms();
            for id in chunk.iter().filter(|id| !described.iter().any(|t| t.ticket_id == **id)) {
                if s.pending.get(id).is_some_and(|start| now - start > UNKNOWN_AFTER_MS) {
                    s.pending.remove(id);
                    s.stats.failed += 1;
                }
            }
            for t in described.into_iter().filter(|t| t.status.is_terminal()) {
                let Some(start) = s.pending.remove(&t.ticket_id) else { continue };
                match t.status {
                    TicketStatus::Completed => {
                        s.stats.matched += 1;
                        let wait = t.end_time_ms.unwrap_or(start).saturating_sub(start).max(0) as u64;
                        if s.recent_waits.len() == RECENT_WAITS {
                            s.recent_waits.pop_front();
                        }
                        s.recent_waits.push_back(wait);
                    }
                    TicketStatus::TimedOut => s.stats.timed_out += 1,
                    TicketStatus::Cancelled => s.stats.cancelled += 1,
                    _ => s.stats.failed += 1,
                }
            }
        }
    }

    /// Both sides, as `GET /lab/shadow` shows them.
    pub fn side_by_side(&self) -> SideBySide {
        let sides = self.sides();
        let stats = |s: &Side| SideStats {
            searching: s.pending.len() as u64,
            time_to_match: waits(s.recent_waits.iter().copied().collect()),
            ..s.stats.clone()
        };
        SideBySide { live: stats(&sides[LIVE]), shadow: stats(&sides[SHADOWED]) }
    }
}

impl TicketObserver for Shadow {
    fn started(&self, request: &StartMatchmakingRequest, now_ms: i64) {
        let shadow_request = StartMatchmakingRequest { configuration_name: SHADOW.into(), ..request.clone() };
        let accepted = self.engine.start(shadow_request);
        let mut sides = self.sides();
        // The live engine has not judged the request yet; a ticket it refuses is dropped from
        // pending when the follower cannot find it.
        sides[LIVE].stats.tickets += 1;
        sides[LIVE].pending.insert(request.ticket_id.clone(), now_ms);
        sides[SHADOWED].stats.tickets += 1;
        match accepted {
            Ok(()) => {
                sides[SHADOWED].pending.insert(request.ticket_id.clone(), SystemClock.now_ms());
            }
            Err(e) => {
                tracing::debug!(ticket_id = request.ticket_id, error = %e, "the shadow rule set refused a ticket");
                sides[SHADOWED].stats.failed += 1;
            }
        }
    }

    fn stopped(&self, ticket_id: &str, _now_ms: i64) {
        let _ = self.engine.stop(ticket_id);
    }
}

/// `GET /lab/shadow`: the live and the shadow rule set side by side, as JSON.
pub fn routes(shadow: Arc<Shadow>) -> axum::Router {
    axum::Router::new().route(
        "/lab/shadow",
        axum::routing::get(move || {
            let shadow = Arc::clone(&shadow);
            async move { axum::Json(shadow.side_by_side()) }
        }),
    )
}
