//! The local stack end to end, over real sockets: connect, matchmake, place, push.

use std::collections::BTreeSet;
use std::time::Duration;

use matchgate_gateway::now_ms;
use matchgate_gateway::stack::StackConfig;
use matchgate_protocol::{ErrorCode, Push};
use matchgate_tests::{
    Client, management_client, quiet_config, start_stack, start_stack_with, status_until, teams_rule_set,
};
use serde_json::json;

fn is_searching(p: &Push) -> bool {
    matches!(p, Push::MatchmakingSearching { .. })
}

fn is_succeeded(p: &Push) -> bool {
    matches!(p, Push::MatchmakingSucceeded { .. })
}

#[tokio::test]
async fn two_players_are_matched_and_each_gets_only_its_own_session() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let mut bob = Client::connect(&stack, "bob").await?;
    let alice_ticket = alice.matchmake().await?;
    let bob_ticket = bob.matchmake().await?;
    alice.expect("searching", is_searching).await?;
    bob.expect("searching", is_searching).await?;

    stack.engine.cycle(now_ms());

    let mut frames = Vec::new();
    let mut results = Vec::new();
    for (client, ticket) in [(&mut alice, &alice_ticket), (&mut bob, &bob_ticket)] {
        loop {
            let text = client.next_text().await?;
            let push: Push = serde_json::from_str(&text)?;
            frames.push((client.player_id.clone(), text));
            if let Push::MatchmakingSucceeded {
                ticket_id, ip_address, port, player_session_id, team, match_id, ..
            } = push
            {
                assert_eq!(&ticket_id, ticket);
                assert_eq!(ip_address.as_deref(), Some("127.0.0.1"));
                assert!(port.is_some_and(|p| p > 0));
                assert!(team.is_some());
                results.push((client.player_id.clone(), player_session_id.expect("a player session"), match_id));
                break;
            }
        }
    }
    let (alice_session, bob_session) = (&results[0].1, &results[1].1);
    assert_ne!(alice_session, bob_session, "each player has its own player session");
    assert_eq!(results[0].2, results[1].2, "both are in the same match");
    for (player, text) in &frames {
        let others = if player == "alice" { bob_session } else { alice_session };
        assert!(!text.contains(others.as_str()), "{player} must never see another player's session: {text}");
    }
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_team_rule_that_needs_four_waits_for_the_fourth() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(2)).await?;
    let mut clients = Vec::new();
    let mut tickets = Vec::new();
    for name in ["p1", "p2", "p3"] {
        let mut c = Client::connect(&stack, name).await?;
        tickets.push(c.matchmake().await?);
        c.expect("searching", is_searching).await?;
        clients.push(c);
    }
    // Three players cannot fill two teams of two.
    stack.engine.cycle(now_ms());
    for (c, t) in clients.iter_mut().zip(&tickets) {
        assert!(is_searching(&c.status(Some(t)).await?), "{} still searching", c.player_id);
    }
    let mut fourth = Client::connect(&stack, "p4").await?;
    fourth.matchmake().await?;
    fourth.expect("searching", is_searching).await?;
    clients.push(fourth);
    stack.engine.cycle(now_ms());

    let mut matches = BTreeSet::new();
    let mut teams = Vec::new();
    let mut sessions = BTreeSet::new();
    for c in &mut clients {
        if let Push::MatchmakingSucceeded { match_id, team, player_session_id, .. } =
            c.expect("succeeded", is_succeeded).await?
        {
            matches.insert(match_id);
            teams.push(team.unwrap());
            sessions.insert(player_session_id.unwrap());
        }
    }
    assert_eq!(matches.len(), 1, "all four in one match");
    assert_eq!(sessions.len(), 4, "four distinct player sessions");
    assert_eq!(teams.iter().filter(|t| *t == "red").count(), 2);
    assert_eq!(teams.iter().filter(|t| *t == "blue").count(), 2);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn cancel_stops_matchmaking_and_frees_the_player() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let ticket = alice.matchmake().await?;
    alice.expect("searching", is_searching).await?;
    alice.send(json!({"action": "cancel", "ticketId": ticket})).await?;
    let cancelled = alice.expect("cancelled", |p| matches!(p, Push::MatchmakingCancelled { .. })).await?;
    assert!(matches!(cancelled, Push::MatchmakingCancelled { ticket_id, .. } if ticket_id == ticket));
    assert!(matches!(alice.status(Some(&ticket)).await?, Push::MatchmakingCancelled { .. }));

    // A cancelled ticket is never matched.
    let mut bob = Client::connect(&stack, "bob").await?;
    let bob_ticket = bob.matchmake().await?;
    bob.expect("searching", is_searching).await?;
    stack.engine.cycle(now_ms());
    assert!(is_searching(&bob.status(Some(&bob_ticket)).await?));

    // The player may ask again: the old ticket is no longer live.
    let again = alice.matchmake().await?;
    assert_ne!(again, ticket);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_ticket_times_out_after_the_configurations_request_timeout() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let ticket = alice.matchmake().await?;
    alice.expect("searching", is_searching).await?;
    let timeout_ms = i64::from(stack.configuration.request_timeout_seconds) * 1000;
    // Just before the timeout nothing happens; at it, the ticket times out.
    stack.engine.cycle(now_ms() + timeout_ms - 5_000);
    assert!(is_searching(&alice.status(Some(&ticket)).await?));
    stack.engine.cycle(now_ms() + timeout_ms);
    let push = alice.expect("timed out", |p| matches!(p, Push::MatchmakingTimedOut { .. })).await?;
    assert!(
        matches!(push, Push::MatchmakingTimedOut { ticket_id, reason: Some(r), .. } if ticket_id == ticket && r == "TimedOut")
    );
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn without_a_disconnect_grace_a_player_who_disconnects_while_searching_is_not_matched() -> anyhow::Result<()> {
    let mut config = StackConfig { rule_set_body: teams_rule_set(1), ..quiet_config() };
    config.settings.disconnect_grace = Duration::ZERO;
    let stack = start_stack_with(config).await?;
    let mut ghost = Client::connect(&stack, "ghost").await?;
    let ticket = ghost.matchmake().await?;
    ghost.expect("searching", is_searching).await?;
    ghost.close().await?;

    // Back again: the ticket was stopped, and `status` says so.
    let mut ghost = Client::connect(&stack, "ghost").await?;
    status_until(&mut ghost, &ticket, |p| matches!(p, Push::MatchmakingCancelled { .. })).await?;
    let mut bob = Client::connect(&stack, "bob").await?;
    let bob_ticket = bob.matchmake().await?;
    bob.expect("searching", is_searching).await?;
    stack.engine.cycle(now_ms());
    assert!(is_searching(&bob.status(Some(&bob_ticket)).await?), "bob must not be matched with a gone player");
    stack.shutdown().await;
    Ok(())
}

/// The default disconnect grace covers an ordinary reconnect: a socket dropped while searching
/// (here by the Management API, as a network drop would end it) does not cost the ticket, and
/// the result is pushed to the player's new connection.
#[tokio::test]
async fn by_default_a_player_who_reconnects_keeps_the_ticket_and_gets_the_result() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut ghost = Client::connect(&stack, "ghost").await?;
    let ticket = ghost.matchmake().await?;
    ghost.expect("searching", is_searching).await?;
    let connection_id = ghost.connection_id().await?;
    management_client(&stack).delete_connection().connection_id(&connection_id).send().await?;
    ghost.closed().await?;

    let mut ghost = Client::connect(&stack, "ghost").await?;
    assert!(is_searching(&ghost.status(None).await?), "the ticket survived the drop");
    let mut bob = Client::connect(&stack, "bob").await?;
    bob.matchmake().await?;
    bob.expect("searching", is_searching).await?;
    stack.engine.cycle(now_ms());
    let result = ghost.expect("succeeded", is_succeeded).await?;
    assert!(
        matches!(&result, Push::MatchmakingSucceeded { ticket_id, player_session_id: Some(_), .. } if *ticket_id == ticket)
    );
    assert_eq!(ghost.status(None).await?, result, "status repeats the result");
    stack.shutdown().await;
    Ok(())
}

fn error_code(push: &Push) -> Option<ErrorCode> {
    match push {
        Push::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn bad_input_gets_an_error_push_and_the_connection_stays_open() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let cases: &[(&str, ErrorCode)] = &[
        ("this is not json", ErrorCode::MalformedJson),
        ("[1, 2, 3]", ErrorCode::MalformedJson),
        (r#"{"action": "teleport"}"#, ErrorCode::UnknownAction),
        (r#"{"hello": "world"}"#, ErrorCode::UnknownAction),
        (r#"{"action": "cancel"}"#, ErrorCode::InvalidRequest),
        (r#"{"action": "accept", "ticketId": "t-1"}"#, ErrorCode::InvalidRequest),
        (r#"{"action": "matchmake", "latencyInMs": {"us-east-1": "fast"}}"#, ErrorCode::InvalidRequest),
        (r#"{"action": "status", "ticketId": 42}"#, ErrorCode::InvalidRequest),
    ];
    for (frame, expected) in cases {
        alice.send_text(frame).await?;
        let push = alice.next_push().await?;
        assert_eq!(error_code(&push), Some(*expected), "{frame} → {push:?}");
    }
    // Still open, still the same player.
    alice.send(json!({"action": "ping"})).await?;
    assert!(matches!(alice.next_push().await?, Push::Pong { player_id, .. } if player_id == "alice"));
    // And nothing was started by the bad frames.
    assert_eq!(error_code(&alice.status(None).await?), Some(ErrorCode::NotFound));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn one_live_ticket_per_player_and_other_players_tickets_reveal_nothing() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let mut mallory = Client::connect(&stack, "mallory").await?;
    let ticket = alice.matchmake().await?;
    alice.expect("searching", is_searching).await?;

    alice.send(json!({"action": "matchmake"})).await?;
    match alice.next_push().await? {
        Push::Error { code: ErrorCode::Conflict, ticket_id, .. } => {
            assert_eq!(ticket_id.as_deref(), Some(ticket.as_str()))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Mallory knows Alice's ticket ID: status, cancel and accept all answer as for no ticket.
    let unknown = mallory.status(Some("ticket-does-not-exist")).await?;
    for request in [
        json!({"action": "status", "ticketId": ticket}),
        json!({"action": "cancel", "ticketId": ticket}),
        json!({"action": "accept", "ticketId": ticket, "accept": false}),
    ] {
        mallory.send(request.clone()).await?;
        let push = mallory.next_push().await?;
        assert_eq!(push, unknown, "{request} must look like an unknown ticket");
    }
    // Alice's ticket is untouched.
    assert!(is_searching(&alice.status(Some(&ticket)).await?));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connect_without_a_player_is_refused_before_the_upgrade() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let err = tokio_tungstenite::connect_async(stack.websocket_url()).await.expect_err("must be refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    let wrong_stage = format!("ws://{}/prod?playerId=alice", stack.addr);
    match tokio_tungstenite::connect_async(wrong_stage).await.expect_err("unknown stage") {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 403),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    stack.shutdown().await;
    Ok(())
}
