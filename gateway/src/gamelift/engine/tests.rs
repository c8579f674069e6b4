//! The engine's behaviour as FlexMatch documents it: events, metrics and acceptance.

use std::time::Duration;

use matchgate_lambdas::adapters::memory::ManualClock;

use super::*;
use crate::gamelift::placement::FleetConfig;

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
        let in_session: BTreeMap<String, Option<bool>> =
            d.game_session_info.iter().flat_map(|i| &i.players).map(|p| (p.player_id.clone(), p.accepted)).collect();
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
