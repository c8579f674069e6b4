//! The client against the local stack over real sockets: matching, outcomes, and reconnects
//! forced by the Management API's DELETE (what a network drop looks like to the server).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use matchgate_client::{Auth, Client, Config, Event};
use matchgate_gateway::now_ms;
use matchgate_gateway::stack::{Stack, StackConfig};
use matchgate_protocol::Push;
use matchgate_tests::{HANG_GUARD, management_client, quiet_config, start_stack, start_stack_with, teams_rule_set};

fn latencies() -> BTreeMap<String, u32> {
    BTreeMap::from([("us-east-1".to_owned(), 30)])
}

async fn player(stack: &Stack, name: &str) -> anyhow::Result<Client> {
    Ok(Client::connect(&stack.websocket_url(), Auth::PlayerId(name.to_owned())).await?)
}

/// Reads events until one matches (a guard against a hang, not a performance bound).
async fn until(client: &mut Client, what: &str, wanted: impl Fn(&Event) -> bool) -> anyhow::Result<Event> {
    let read = async {
        loop {
            match client.next_event().await {
                Some(event) if wanted(&event) => return Ok(event),
                Some(_) => {}
                None => anyhow::bail!("the client stopped before {what}: {:?}", client.stopped()),
            }
        }
    };
    tokio::time::timeout(HANG_GUARD, read).await.map_err(|_| anyhow::anyhow!("no {what}"))?
}

async fn queued(client: &mut Client) -> anyhow::Result<String> {
    match until(client, "MatchmakingQueued", |e| matches!(e, Event::Push(Push::MatchmakingQueued { .. }))).await? {
        Event::Push(Push::MatchmakingQueued { ticket_id }) => Ok(ticket_id),
        _ => unreachable!(),
    }
}

async fn wait_for_match(client: &mut Client) -> anyhow::Result<Push> {
    Ok(tokio::time::timeout(HANG_GUARD, client.wait_for_match()).await??)
}

/// Drops the client's socket from the server side, as a network drop would.
async fn drop_socket(stack: &Stack, client: &mut Client) -> anyhow::Result<()> {
    client.ping()?;
    let Event::Push(Push::Pong { connection_id, .. }) =
        until(client, "Pong", |e| matches!(e, Event::Push(Push::Pong { .. }))).await?
    else {
        unreachable!()
    };
    management_client(stack).delete_connection().connection_id(connection_id).send().await?;
    until(client, "the reconnect", |e| matches!(e, Event::Reconnected)).await?;
    Ok(())
}

#[tokio::test]
async fn four_players_are_matched_and_each_gets_its_own_seat() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(2)).await?;
    let mut clients = Vec::new();
    let mut tickets = Vec::new();
    for name in ["p1", "p2", "p3", "p4"] {
        let mut client = player(&stack, name).await?;
        client.matchmake(latencies())?;
        tickets.push(queued(&mut client).await?);
        clients.push(client);
    }
    stack.engine.cycle(now_ms());
    let mut sessions = BTreeSet::new();
    let mut matches = BTreeSet::new();
    for (client, ticket) in clients.iter_mut().zip(&tickets) {
        let Push::MatchmakingSucceeded { ticket_id, match_id, player_session_id, port, .. } =
            wait_for_match(client).await?
        else {
            anyhow::bail!("not matched")
        };
        assert_eq!(&ticket_id, ticket, "each player's own ticket");
        assert!(port.is_some());
        sessions.insert(player_session_id.expect("a player session"));
        matches.insert(match_id);
    }
    assert_eq!(sessions.len(), 4, "four distinct player sessions");
    assert_eq!(matches.len(), 1, "one match");
    stack.shutdown().await;
    Ok(())
}

/// Alice's socket is dropped after `MatchmakingQueued` and again after `PotentialMatchCreated`;
/// she still accepts, gets her own result, and gets it once.
#[tokio::test]
async fn a_client_dropped_twice_mid_matchmaking_gets_its_own_result_exactly_once() -> anyhow::Result<()> {
    let mut config = StackConfig { rule_set_body: teams_rule_set(1), ..quiet_config() };
    config.configuration.acceptance_required = true;
    config.configuration.acceptance_timeout_seconds = Some(600);
    let stack = start_stack_with(config).await?;
    let mut alice = player(&stack, "alice").await?;
    let mut bob = player(&stack, "bob").await?;
    alice.matchmake(latencies())?;
    let ticket = queued(&mut alice).await?;
    drop_socket(&stack, &mut alice).await?;
    assert_eq!(alice.live_ticket().as_deref(), Some(ticket.as_str()), "the ticket survived the drop");

    bob.matchmake(latencies())?;
    queued(&mut bob).await?;
    stack.engine.cycle(now_ms());
    until(&mut alice, "PotentialMatchCreated", |e| matches!(e, Event::Push(Push::PotentialMatchCreated { .. })))
        .await?;
    until(&mut bob, "PotentialMatchCreated", |e| matches!(e, Event::Push(Push::PotentialMatchCreated { .. }))).await?;
    drop_socket(&stack, &mut alice).await?;

    alice.accept(true)?;
    bob.accept(true)?;
    let result = wait_for_match(&mut alice).await?;
    assert!(
        matches!(&result, Push::MatchmakingSucceeded { ticket_id, player_session_id: Some(_), .. } if *ticket_id == ticket),
        "{result:?}"
    );
    let Push::MatchmakingSucceeded { player_session_id: bobs, .. } = wait_for_match(&mut bob).await? else {
        anyhow::bail!("bob was not matched")
    };
    assert!(matches!(&result, Push::MatchmakingSucceeded { player_session_id, .. } if *player_session_id != bobs));

    // Once more after the outcome: the server repeats it to `status` and after a third drop;
    // the client reports neither.
    drop_socket(&stack, &mut alice).await?;
    alice.status()?;
    alice.ping()?;
    let mut after = Vec::new();
    loop {
        let event = until(&mut alice, "Pong", |_| true).await?;
        if matches!(event, Event::Push(Push::Pong { .. })) {
            break;
        }
        after.push(event);
    }
    assert!(!after.iter().any(|e| matches!(e, Event::Push(Push::MatchmakingSucceeded { .. }))), "{after:?}");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn wait_for_match_returns_a_timeout_and_a_cancellation_as_outcomes() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let mut alice = player(&stack, "alice").await?;
    alice.matchmake(latencies())?;
    let ticket = queued(&mut alice).await?;
    let timeout_ms = i64::from(stack.configuration.request_timeout_seconds) * 1000;
    stack.engine.cycle(now_ms() + timeout_ms);
    let outcome = wait_for_match(&mut alice).await?;
    assert!(matches!(&outcome, Push::MatchmakingTimedOut { ticket_id, .. } if *ticket_id == ticket), "{outcome:?}");

    alice.matchmake(latencies())?;
    let second = queued(&mut alice).await?;
    alice.cancel()?;
    let outcome = wait_for_match(&mut alice).await?;
    assert!(matches!(&outcome, Push::MatchmakingCancelled { ticket_id, .. } if *ticket_id == second), "{outcome:?}");
    assert!(alice.cancel().is_err(), "nothing left to cancel");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_refused_player_gets_the_status_and_a_dead_server_is_given_up_on() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    // `--auth none` without a valid playerId: 403 before the upgrade.
    let refused = Client::connect(&stack.websocket_url(), Auth::PlayerId("no spaces".into())).await;
    assert_eq!(refused.err(), Some(matchgate_client::ClientError::Refused { status: 403 }));

    let mut config = Config::new(stack.websocket_url(), Auth::PlayerId("alice".into()));
    config.backoff.base = Duration::from_millis(1);
    config.backoff.cap = Duration::from_millis(5);
    config.backoff.max_attempts = 3;
    let mut alice = Client::connect_with(config).await?;
    alice.ping()?;
    until(&mut alice, "Pong", |e| matches!(e, Event::Push(Push::Pong { .. }))).await?;
    stack.shutdown().await;
    let stopped = tokio::time::timeout(HANG_GUARD, async {
        while alice.next_event().await.is_some() {}
        alice.stopped()
    })
    .await?;
    assert!(matches!(stopped, Some(matchgate_client::ClientError::GaveUp { attempts: 3, .. })), "{stopped:?}");
    Ok(())
}
