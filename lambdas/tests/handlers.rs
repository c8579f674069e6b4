//! Handlers driven directly over the in-memory adapters: the routes' dispatch of client frames,
//! a party ticket's seats, and the backstop settling a ticket FlexMatch never heard of.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::sns::SnsEvent;
use matchgate_lambdas::adapters::memory::{ManualClock, MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::adapters::memory_parties::MemoryParties;
use matchgate_lambdas::handlers;
use matchgate_lambdas::ports::Clock;
use matchgate_lambdas::ports::{
    ConnectionPusher, Matchmaker, MatchmakerError, PushError, StartMatchmakingRequest, TicketDescription, TicketRecord,
};
use matchgate_lambdas::routes;
use matchgate_lambdas::{Deps, Settings};
use matchgate_protocol::Push;
use matchgate_protocol::ticket::TicketState;
use serde_json::json;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String)>>);

#[async_trait]
impl ConnectionPusher for Recorder {
    async fn post_to_connection(&self, connection_id: &str, data: &[u8]) -> Result<(), PushError> {
        self.0.lock().unwrap().push((connection_id.to_owned(), String::from_utf8_lossy(data).into_owned()));
        Ok(())
    }
}

/// The events handler never calls the matchmaker; this one says so if it ever does. Its
/// DescribeMatchmaking knows no ticket, as FlexMatch after a StartMatchmaking that never arrived.
struct NoMatchmaker;

#[async_trait]
impl Matchmaker for NoMatchmaker {
    async fn start_matchmaking(&self, _: StartMatchmakingRequest) -> Result<(), MatchmakerError> {
        Err(MatchmakerError::Unavailable("not in this test".into()))
    }
    async fn stop_matchmaking(&self, _: &str) -> Result<(), MatchmakerError> {
        Err(MatchmakerError::Unavailable("not in this test".into()))
    }
    async fn accept_match(&self, _: &str, _: &[String], _: bool) -> Result<(), MatchmakerError> {
        Err(MatchmakerError::Unavailable("not in this test".into()))
    }
    async fn describe_matchmaking(&self, _: &[String]) -> Result<Vec<TicketDescription>, MatchmakerError> {
        Ok(Vec::new())
    }
}

/// The in-memory adapters, recording pushes, on a clock the test moves.
fn memory_deps(pusher: &Arc<Recorder>, clock: Arc<ManualClock>) -> Deps {
    Deps {
        connections: Arc::new(MemoryConnections::default()),
        players: Arc::new(MemoryPlayers::default()),
        tickets: Arc::new(MemoryTickets::default()),
        parties: Arc::new(MemoryParties::default()),
        matchmaker: Arc::new(NoMatchmaker),
        pusher: pusher.clone(),
        clock,
        settings: Settings::default(),
    }
}

fn ticket(id: &str, players: &[&str], now: i64) -> TicketRecord {
    TicketRecord {
        ticket_id: id.into(),
        player_ids: players.iter().map(|p| (*p).to_owned()).collect(),
        configuration_name: "c".into(),
        state: TicketState::new(),
        version: 0,
        created_at: now,
        last_event_at: now,
        results: BTreeMap::new(),
        applied_event_ids: Vec::new(),
        applied_by: BTreeMap::new(),
        backstop_due_at: Some(now + 30_000),
        disconnected_at: None,
        expires_at: now / 1000 + 3600,
    }
}

#[tokio::test]
async fn every_player_of_a_party_ticket_gets_its_own_seat() {
    let now = 1_800_000_000_000;
    let pusher = Arc::new(Recorder::default());
    let deps = memory_deps(&pusher, Arc::new(ManualClock::new(now)));
    let party: Vec<String> = (1..=10).map(|n| format!("p{n}")).collect();
    let party_refs: Vec<&str> = party.iter().map(String::as_str).collect();
    deps.tickets.create(&ticket("t-party", &party_refs, now)).await.unwrap();
    deps.tickets.create(&ticket("t-solo", &["solo"], now)).await.unwrap();
    for p in party.iter().chain(std::iter::once(&"solo".to_owned())) {
        deps.players.set_connection(p, &format!("conn-{p}"), 1).await.unwrap();
    }
    let seat = |p: &str, team: &str| json!({"playerId": p, "playerSessionId": format!("psess-{p}"), "team": team});
    let party_seats: Vec<_> = party.iter().map(|p| seat(p, "red")).collect();
    let event = json!({
        "version": "0", "id": "evt-1", "detail-type": "GameLift Matchmaking Event", "source": "aws.gamelift",
        "account": "1", "time": "2027-01-15T08:00:00.000Z", "region": "us-east-1",
        "resources": ["arn:aws:gamelift:us-east-1:1:matchmakingconfiguration/c"],
        "detail": {
            "type": "MatchmakingSucceeded", "matchId": "m-1",
            "tickets": [
                {"ticketId": "t-party", "players": party_seats},
                {"ticketId": "t-solo", "players": [seat("solo", "blue")]}
            ],
            "gameSessionInfo": {
                "gameSessionArn": "arn:aws:gamelift:us-east-1::gamesession/fleet-1/gsess-1",
                "ipAddress": "10.0.0.1", "dnsName": "host", "port": 7777,
                "players": party.iter().map(|p| seat(p, "red")).chain(std::iter::once(seat("solo", "blue"))).collect::<Vec<_>>()
            }
        }
    });
    let sns: SnsEvent = serde_json::from_value(json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:x",
        "Sns": {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:t", "Subject": null,
                "Message": event.to_string(), "Timestamp": "2027-01-15T08:00:00.000Z",
                "SignatureVersion": "1", "Signature": "", "SigningCertUrl": "", "UnsubscribeUrl": "",
                "MessageAttributes": {}}
    }]}))
    .unwrap();
    handlers::events(sns.clone(), &deps).await.unwrap();
    // Redelivered: nothing more is pushed.
    handlers::events(sns, &deps).await.unwrap();

    let pushes = pusher.0.lock().unwrap().clone();
    assert_eq!(pushes.len(), 11, "one push per player, once");
    for p in party.iter().chain(std::iter::once(&"solo".to_owned())) {
        let mine: Vec<&String> = pushes.iter().filter(|(c, _)| *c == format!("conn-{p}")).map(|(_, f)| f).collect();
        assert_eq!(mine.len(), 1, "{p}");
        let push: Push = serde_json::from_str(mine[0]).unwrap();
        let expected_team = if p == "solo" { "blue" } else { "red" };
        match push {
            Push::MatchmakingSucceeded { player_session_id, team, port, .. } => {
                assert_eq!(player_session_id, Some(format!("psess-{p}")));
                assert_eq!(team.as_deref(), Some(expected_team));
                assert_eq!(port, Some(7777));
            }
            other => panic!("{p}: {other:?}"),
        }
        // Nobody's frame carries another player's session.
        for q in party.iter().filter(|q| *q != p) {
            assert!(!mine[0].contains(&format!("psess-{q}\"")), "{p} saw {q}'s session");
        }
    }
    let stored = deps.tickets.get("t-party", now).await.unwrap().unwrap();
    assert_eq!(stored.results.len(), 10, "every party member's result stays on the ticket");
}

#[tokio::test]
async fn the_backstop_fails_a_ticket_flexmatch_does_not_know() {
    let now = 1_800_000_000_000;
    let pusher = Arc::new(Recorder::default());
    let clock = Arc::new(ManualClock::new(now));
    let deps = memory_deps(&pusher, clock.clone());
    // StartMatchmaking timed out: the ticket is live here, unknown to FlexMatch.
    deps.tickets.create(&ticket("t-lost", &["ann"], now)).await.unwrap();
    deps.players.set_connection("ann", "conn-ann", 1).await.unwrap();
    // Before the quiet period nothing is asked.
    assert_eq!(handlers::backstop(&deps).await.unwrap().polled, 0);
    clock.advance(std::time::Duration::from_secs(31));
    let report = handlers::backstop(&deps).await.unwrap();
    assert_eq!((report.polled, report.advanced), (1, 1));
    let stored = deps.tickets.get("t-lost", clock.now_ms()).await.unwrap().unwrap();
    assert_eq!(stored.state.status, matchgate_protocol::TicketStatus::Failed);
    let pushes = pusher.0.lock().unwrap().clone();
    let push: Push = serde_json::from_str(&pushes.last().unwrap().1).unwrap();
    assert!(matches!(push, Push::MatchmakingFailed { reason, .. } if reason == "TicketNotFound"), "{pushes:?}");
    // An ended ticket is not polled again.
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(handlers::backstop(&deps).await.unwrap().polled, 0);
}

/// A message event on `route_key` from `player`'s connection `conn-{player}`, as API Gateway
/// sends it to the route's function.
fn message(route_key: &str, player: &str, body: &str) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "requestContext": {
            "routeKey": route_key, "eventType": "MESSAGE", "messageId": "m-1", "stage": "local",
            "connectedAt": 1, "requestTimeEpoch": 2, "requestId": "r-1", "apiId": "local",
            "connectionId": format!("conn-{player}"),
            "authorizer": {"principalId": player, "playerId": player, "role": "player"}
        },
        "body": body,
        "isBase64Encoded": false
    }))
    .unwrap()
}

/// What the recorder holds, as pushes, and empties it.
fn drain(pusher: &Recorder) -> Vec<(String, Push)> {
    std::mem::take(&mut *pusher.0.lock().unwrap())
        .into_iter()
        .map(|(connection, frame)| (connection, serde_json::from_str(&frame).unwrap()))
        .collect()
}

fn error_code(push: &Push) -> String {
    match push {
        Push::Error { code, .. } => serde_json::to_value(code).unwrap().as_str().unwrap().to_owned(),
        other => panic!("expected an Error push, got {other:?}"),
    }
}

#[tokio::test]
async fn a_ping_with_a_field_it_does_not_define_is_refused_not_answered() {
    let pusher = Arc::new(Recorder::default());
    let deps = memory_deps(&pusher, Arc::new(ManualClock::new(1_800_000_000_000)));
    let response =
        routes::dispatch(message("ping", "alice", r#"{"action":"ping","playerId":"x"}"#), &deps).await.unwrap();
    assert_eq!(response.status_code, 200);
    let pushes = drain(&pusher);
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].0, "conn-alice");
    assert_eq!(error_code(&pushes[0].1), "InvalidRequest");

    routes::dispatch(message("ping", "alice", r#"{"action":"ping"}"#), &deps).await.unwrap();
    let pushes = drain(&pusher);
    assert_eq!(
        pushes,
        [("conn-alice".to_owned(), Push::Pong { connection_id: "conn-alice".into(), player_id: "alice".into() })]
    );
}

#[tokio::test]
async fn every_action_route_refuses_a_field_it_does_not_define_and_does_nothing_else() {
    let pusher = Arc::new(Recorder::default());
    let deps = memory_deps(&pusher, Arc::new(ManualClock::new(1_800_000_000_000)));
    let bodies = [
        r#"{"action":"matchmake","skill":99}"#,
        r#"{"action":"cancel","ticketId":"t-1","playerId":"bob"}"#,
        r#"{"action":"accept","ticketId":"t-1","accept":true,"playerId":"bob"}"#,
        r#"{"action":"status","playerId":"bob"}"#,
        r#"{"action":"ping","playerId":"bob"}"#,
        r#"{"action":"createParty","maxMembers":10}"#,
        r#"{"action":"joinParty","inviteCode":"ABC","playerId":"bob"}"#,
        r#"{"action":"leaveParty","playerId":"bob"}"#,
        r#"{"action":"kickFromParty","playerId":"bob","leaderId":"alice"}"#,
        r#"{"action":"setReady","ready":true,"playerId":"bob"}"#,
    ];
    let mut covered: Vec<&str> = Vec::new();
    for body in bodies {
        let key = serde_json::from_str::<serde_json::Value>(body).unwrap()["action"].as_str().unwrap().to_owned();
        let route = routes::route(&key).unwrap_or_else(|| panic!("no route {key}"));
        covered.push(route.key);
        routes::dispatch(message(&key, "alice", body), &deps).await.unwrap();
        let pushes = drain(&pusher);
        assert_eq!(pushes.len(), 1, "{body}: {pushes:?}");
        assert_eq!(error_code(&pushes[0].1), "InvalidRequest", "{body}");
    }
    covered.sort();
    let mut actions: Vec<&str> = routes::action_route_keys().collect();
    actions.sort();
    assert_eq!(covered, actions, "one body per action route");
    // Nothing was started for the refused matchmake.
    assert_eq!(deps.players.get("alice").await.unwrap().and_then(|p| p.active_ticket_id), None);
}

#[tokio::test]
async fn a_route_key_the_table_lacks_is_answered_as_default() {
    let pusher = Arc::new(Recorder::default());
    let deps = memory_deps(&pusher, Arc::new(ManualClock::new(1_800_000_000_000)));
    routes::dispatch(message("watch", "alice", r#"{"action":"watch"}"#), &deps).await.unwrap();
    let pushes = drain(&pusher);
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(error_code(&pushes[0].1), "UnknownAction");
}

/// One SNS delivery of `event`.
fn sns_of(event: &serde_json::Value) -> SnsEvent {
    serde_json::from_value(json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:x",
        "Sns": {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:t", "Subject": null,
                "Message": event.to_string(), "Timestamp": "2027-01-15T08:00:00.000Z",
                "SignatureVersion": "1", "Signature": "", "SigningCertUrl": "", "UnsubscribeUrl": "",
                "MessageAttributes": {}}
    }]}))
    .unwrap()
}

#[tokio::test]
async fn an_sns_event_is_applied_as_flexmatchs_whatever_its_id_looks_like() {
    use matchgate_protocol::TicketStatus;
    use matchgate_protocol::flexmatch::{MatchmakingEventDetail, MatchmakingEventType as E};
    use matchgate_protocol::ticket::Transition;

    let now = 1_800_000_000_000;
    let pusher = Arc::new(Recorder::default());
    let deps = memory_deps(&pusher, Arc::new(ManualClock::new(now)));
    // A ticket waiting for its players to accept a proposed match.
    let mut waiting = ticket("t-1", &["alice"], now - 5_000);
    for detail in [
        MatchmakingEventDetail::new(E::MatchmakingSearching),
        MatchmakingEventDetail {
            acceptance_required: Some(true),
            match_id: Some("m-1".into()),
            ..MatchmakingEventDetail::new(E::PotentialMatchCreated)
        },
    ] {
        let Transition::Advance(next) = waiting.state.apply(&detail) else { panic!("{detail:?} advances") };
        waiting.state = next;
    }
    assert_eq!(waiting.state.status, TicketStatus::RequiresAcceptance);
    deps.tickets.create(&waiting).await.unwrap();
    // A late MatchmakingSearching from SNS whose ID reads like a backstop poll's, taken later
    // than the ticket's last event. Only a poll may return a waiting ticket to searching; an
    // event from SNS is FlexMatch's, and a late Searching changes nothing.
    let event = json!({
        "version": "0", "id": format!("backstop:t-1:SEARCHING:{}", now + 60_000),
        "detail-type": "GameLift Matchmaking Event", "source": "aws.gamelift", "account": "1",
        "time": "2027-01-15T08:00:00.000Z", "region": "us-east-1", "resources": [],
        "detail": {"type": "MatchmakingSearching", "tickets": [{"ticketId": "t-1", "players": [{"playerId": "alice"}]}]}
    });
    handlers::events(sns_of(&event), &deps).await.unwrap();
    let stored = deps.tickets.get("t-1", now).await.unwrap().expect("the ticket");
    assert_eq!(stored.state.status, TicketStatus::RequiresAcceptance, "the proposal stands");
    assert!(pusher.0.lock().unwrap().is_empty(), "nothing to push");
}
