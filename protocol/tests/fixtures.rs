//! Round trips over JSON fixtures of every FlexMatch event type, shaped as FlexMatch's event
//! reference documents them.

use matchgate_protocol::{MatchmakingEvent, MatchmakingEventType, Push};

const FIXTURES: &[(&str, MatchmakingEventType)] = &[
    ("MatchmakingSearching", MatchmakingEventType::MatchmakingSearching),
    ("PotentialMatchCreated", MatchmakingEventType::PotentialMatchCreated),
    ("AcceptMatch", MatchmakingEventType::AcceptMatch),
    ("AcceptMatchCompleted", MatchmakingEventType::AcceptMatchCompleted),
    ("MatchmakingSucceeded", MatchmakingEventType::MatchmakingSucceeded),
    ("MatchmakingTimedOut", MatchmakingEventType::MatchmakingTimedOut),
    ("MatchmakingCancelled", MatchmakingEventType::MatchmakingCancelled),
    ("MatchmakingFailed", MatchmakingEventType::MatchmakingFailed),
];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/flexmatch/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_event_type_parses_and_round_trips() {
    for (name, event_type) in FIXTURES {
        let text = fixture(name);
        let event = MatchmakingEvent::from_sns_message(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.detail.event_type, *event_type, "{name}");
        assert_eq!(event.configuration_name(), Some("SampleConfiguration"));
        assert!(!event.detail.tickets.is_empty(), "{name} has tickets");
        let again: MatchmakingEvent = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(again, event, "{name} survives parse → serialize → parse");
        // Nothing documented is dropped: every field of the fixture is still there.
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let reserialized = serde_json::to_value(&event).unwrap();
        assert_eq!(original, reserialized, "{name} serializes back to the documented shape");
    }
}

#[test]
fn succeeded_gives_each_player_its_own_session() {
    let event = MatchmakingEvent::from_sns_message(&fixture("MatchmakingSucceeded")).unwrap();
    let info = event.detail.game_session_info.as_ref().unwrap();
    assert_eq!(info.port, Some(10777));
    assert_eq!(info.ip_address.as_deref(), Some("192.168.1.1"));
    let p1 = event.detail.player("player-1").unwrap();
    let p2 = event.detail.player("player-2").unwrap();
    assert_eq!(p1.player_session_id.as_deref(), Some("psess-6e7c13cf-10d6-4756-a53f-db7de782ed67"));
    assert_eq!(p2.player_session_id.as_deref(), Some("psess-786b342f-9c94-44eb-bb9e-c1de46c472ce"));
    assert_eq!(p1.team.as_deref(), Some("red"));
}

#[test]
fn unknown_fields_and_types_are_tolerated() {
    let mut value: serde_json::Value = serde_json::from_str(&fixture("MatchmakingSearching")).unwrap();
    value["detail"]["someFutureField"] = serde_json::json!({"x": 1});
    value["newTopLevel"] = serde_json::json!(true);
    let event: MatchmakingEvent = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(event.detail.event_type, MatchmakingEventType::MatchmakingSearching);
    value["detail"]["type"] = serde_json::json!("MatchmakingTeleported");
    let event: MatchmakingEvent = serde_json::from_value(value).unwrap();
    assert_eq!(event.detail.event_type, MatchmakingEventType::Unknown);
}

#[test]
fn sns_wrapped_event_carries_the_envelope_as_a_string() {
    let sns: serde_json::Value = serde_json::from_str(&fixture("sns-wrapped")).unwrap();
    let message = sns["Records"][0]["Sns"]["Message"].as_str().unwrap();
    let event = MatchmakingEvent::from_sns_message(message).unwrap();
    assert_eq!(event.detail.event_type, MatchmakingEventType::MatchmakingSucceeded);
}

#[test]
fn pushes_round_trip_with_their_documented_names() {
    let push = Push::MatchmakingSucceeded {
        ticket_id: "t1".into(),
        match_id: "m1".into(),
        game_session_arn: Some("arn:aws:gamelift:local::gamesession/fleet-1/gs-1".into()),
        ip_address: Some("127.0.0.1".into()),
        dns_name: Some("localhost".into()),
        port: Some(7777),
        player_session_id: Some("psess-1".into()),
        team: Some("red".into()),
    };
    let frame = push.to_frame();
    let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(value["type"], "MatchmakingSucceeded");
    for key in ["ticketId", "matchId", "gameSessionArn", "ipAddress", "dnsName", "port", "playerSessionId", "team"] {
        assert!(value.get(key).is_some(), "{key} in {frame}");
    }
    assert_eq!(serde_json::from_str::<Push>(&frame).unwrap(), push);
    let pong: serde_json::Value =
        serde_json::from_str(&Push::Pong { connection_id: "c".into(), player_id: "p".into() }.to_frame()).unwrap();
    assert_eq!(pong, serde_json::json!({"type": "Pong", "connectionId": "c", "playerId": "p"}));
}
