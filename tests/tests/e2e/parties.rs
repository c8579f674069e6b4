//! Parties over real sockets: friends form a party, the leader's `matchmake` queues them as one
//! ticket, and each member is pushed their own seat.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use matchgate_gateway::now_ms;
use matchgate_gateway::stack::StackConfig;
use matchgate_lambdas::Settings;
use matchgate_protocol::{ErrorCode, Push};
use matchgate_tests::{Client, quiet_config, start_stack, start_stack_with, teams_rule_set};
use serde_json::json;

fn is_party_updated(p: &Push) -> bool {
    matches!(p, Push::PartyUpdated { .. })
}

fn is_succeeded(p: &Push) -> bool {
    matches!(p, Push::MatchmakingSucceeded { .. })
}

/// The next push, which must be an `Error`; its code and message.
async fn error(client: &mut Client) -> anyhow::Result<(ErrorCode, String)> {
    match client.next_push().await? {
        Push::Error { code, message, .. } => Ok((code, message)),
        other => anyhow::bail!("{}: expected an Error, got {other:?}", client.player_id),
    }
}

/// `PartyUpdated`'s fields that tests look at: party, leader, members in order.
async fn party_update(client: &mut Client) -> anyhow::Result<(String, String, Vec<String>, String)> {
    match client.expect("PartyUpdated", is_party_updated).await? {
        Push::PartyUpdated { party_id, leader_id, members, invite_code, .. } => {
            Ok((party_id, leader_id, members.into_iter().map(|m| m.player_id).collect(), invite_code))
        }
        _ => unreachable!("expect returns a match"),
    }
}

/// A party led by `clients[0]` with every other client in it, all ready. Each member has read
/// every `PartyUpdated` the forming sent them. Returns the invite code.
async fn form_party(clients: &mut [Client]) -> anyhow::Result<String> {
    let (leader, rest) = clients.split_first_mut().expect("a leader");
    leader.send(json!({"action": "createParty"})).await?;
    let (_, leader_id, members, code) = party_update(leader).await?;
    assert_eq!((leader_id.as_str(), members), (leader.player_id.as_str(), vec![leader.player_id.clone()]));
    for i in 0..rest.len() {
        rest[i].send(json!({"action": "joinParty", "inviteCode": code})).await?;
        let (_, _, members, _) = party_update(&mut rest[i]).await?;
        assert_eq!(members.last(), Some(&rest[i].player_id), "joined last");
        // Everyone already in hears of the join.
        party_update(leader).await?;
        for earlier in &mut rest[..i] {
            party_update(earlier).await?;
        }
    }
    for i in 0..rest.len() {
        rest[i].send(json!({"action": "setReady", "ready": true, "latencyInMs": {"us-east-1": 20 + i}})).await?;
        party_update(leader).await?;
        for member in rest.iter_mut() {
            party_update(member).await?;
        }
    }
    Ok(code)
}

async fn connect_all(stack: &matchgate_gateway::stack::Stack, names: &[&str]) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::new();
    for name in names {
        clients.push(Client::connect(stack, name).await?);
    }
    Ok(clients)
}

/// Reads pushes up to the answer of a `ping`, so whatever was pushed before it has arrived.
async fn drain(client: &mut Client) -> anyhow::Result<Vec<Push>> {
    client.send(json!({"action": "ping"})).await?;
    let mut seen = Vec::new();
    loop {
        match client.next_push().await? {
            Push::Pong { .. } => return Ok(seen),
            other => seen.push(other),
        }
    }
}

#[tokio::test]
async fn a_party_of_three_and_a_party_of_two_are_matched_five_on_five_each_with_their_own_seat() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(5)).await?;
    let mut three = connect_all(&stack, &["a1", "a2", "a3"]).await?;
    let mut two = connect_all(&stack, &["b1", "b2"]).await?;
    let mut solos = connect_all(&stack, &["s1", "s2", "s3", "s4", "s5"]).await?;
    form_party(&mut three).await?;
    form_party(&mut two).await?;

    three[0].send(json!({"action": "matchmake", "latencyInMs": {"us-east-1": 15}})).await?;
    two[0].send(json!({"action": "matchmake"})).await?;
    let mut party_tickets = BTreeMap::new();
    for member in three.iter_mut().chain(two.iter_mut()) {
        let Push::MatchmakingQueued { ticket_id } =
            member.expect("queued", |p| matches!(p, Push::MatchmakingQueued { .. })).await?
        else {
            unreachable!()
        };
        party_tickets.insert(member.player_id.clone(), ticket_id);
    }
    assert_eq!(party_tickets["a1"], party_tickets["a3"], "one ticket for the whole party");
    assert_eq!(party_tickets["b1"], party_tickets["b2"]);
    assert_ne!(party_tickets["a1"], party_tickets["b1"]);
    for solo in &mut solos {
        solo.matchmake().await?;
    }
    stack.engine.cycle(now_ms());

    let mut seats = BTreeMap::new();
    for client in three.iter_mut().chain(two.iter_mut()).chain(solos.iter_mut()) {
        let Push::MatchmakingSucceeded { match_id, team, player_session_id, .. } =
            client.expect("succeeded", is_succeeded).await?
        else {
            unreachable!()
        };
        seats.insert(client.player_id.clone(), (match_id, team.expect("a team"), player_session_id.expect("a seat")));
    }
    let matches: BTreeSet<&String> = seats.values().map(|(m, _, _)| m).collect();
    assert_eq!(matches.len(), 1, "all ten in one match: {seats:?}");
    let sessions: BTreeSet<&String> = seats.values().map(|(_, _, s)| s).collect();
    assert_eq!(sessions.len(), 10, "each player has their own player session");
    let team_of = |p: &str| seats[p].1.clone();
    assert!(team_of("a2") == team_of("a1") && team_of("a3") == team_of("a1"), "the party of three plays together");
    assert_eq!(team_of("b2"), team_of("b1"), "the party of two plays together");
    let mut team_sizes = BTreeMap::new();
    for (_, team, _) in seats.values() {
        *team_sizes.entry(team.clone()).or_insert(0) += 1;
    }
    assert_eq!(team_sizes.values().copied().collect::<Vec<_>>(), [5, 5], "five on five: {team_sizes:?}");

    // Exactly once each, and nobody ever sees another player's seat.
    for client in three.iter_mut().chain(two.iter_mut()).chain(solos.iter_mut()) {
        let later = drain(client).await?;
        assert!(!later.iter().any(is_succeeded), "{} was pushed a second seat: {later:?}", client.player_id);
        let own = &seats[&client.player_id].2;
        for other in sessions.iter().filter(|s| *s != &own) {
            assert!(
                !later.iter().any(|p| p.to_frame().contains(other.as_str())),
                "{} saw another's seat",
                client.player_id
            );
        }
    }
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_member_leaving_mid_search_cancels_the_ticket_for_everyone() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(5)).await?;
    let mut party = connect_all(&stack, &["lead", "m1", "m2"]).await?;
    form_party(&mut party).await?;
    party[0].send(json!({"action": "matchmake"})).await?;
    for member in party.iter_mut() {
        member.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
    }
    // While it searches the party cannot change: no kick, no new member.
    party[0].send(json!({"action": "kickFromParty", "playerId": "m2"})).await?;
    assert_eq!(error(&mut party[0]).await?.0, ErrorCode::Conflict);

    party[1].send(json!({"action": "leaveParty"})).await?;
    match party[1].expect("PartyLeft", |p| matches!(p, Push::PartyLeft { .. })).await? {
        Push::PartyLeft { reason, .. } => assert!(reason.contains("left"), "{reason}"),
        _ => unreachable!(),
    }
    for i in [0, 2] {
        let Push::PartyUpdated { members, reason, .. } = party[i].expect("update", is_party_updated).await? else {
            unreachable!()
        };
        let members: Vec<String> = members.into_iter().map(|m| m.player_id).collect();
        assert_eq!(members, ["lead", "m2"]);
        let reason = reason.unwrap_or_default();
        assert!(reason.contains("m1 left") && reason.contains("cancelled"), "a clear reason: {reason}");
    }
    for member in party.iter_mut() {
        member.expect("cancelled", |p| matches!(p, Push::MatchmakingCancelled { .. })).await?;
    }
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_member_who_reconnects_within_the_grace_keeps_their_place() -> anyhow::Result<()> {
    let settings = Settings { disconnect_grace: Duration::from_secs(600), ..Settings::default() };
    let config = StackConfig { rule_set_body: teams_rule_set(3), settings, ..quiet_config() };
    let stack = start_stack_with(config).await?;
    let mut party = connect_all(&stack, &["lead", "friend"]).await?;
    form_party(&mut party).await?;
    let friend = party.pop().expect("friend");
    friend.close().await?;
    let Push::PartyUpdated { members, .. } = party[0].expect("away", is_party_updated).await? else { unreachable!() };
    assert_eq!(members.len(), 2, "the friend keeps their place while away");
    assert!(!members[1].connected, "and shows as away: {members:?}");

    let _back = Client::connect(&stack, "friend").await?;
    let Push::PartyUpdated { members, reason, .. } = party[0].expect("back", is_party_updated).await? else {
        unreachable!()
    };
    assert!(members.iter().all(|m| m.connected), "back: {members:?} ({reason:?})");
    assert_eq!(members.iter().map(|m| m.player_id.as_str()).collect::<Vec<_>>(), ["lead", "friend"]);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_party_requests_get_clear_errors_and_change_nothing() -> anyhow::Result<()> {
    // Teams of two: a party holds at most two.
    let stack = start_stack(&teams_rule_set(2)).await?;
    let mut c = connect_all(&stack, &["lead", "mate", "third", "other"]).await?;
    c[0].send(json!({"action": "createParty"})).await?;
    let (party_id, _, _, code) = party_update(&mut c[0]).await?;

    // Not in a party yet.
    c[1].send(json!({"action": "leaveParty"})).await?;
    assert_eq!(error(&mut c[1]).await?.0, ErrorCode::NotFound);
    c[1].send(json!({"action": "joinParty", "inviteCode": code})).await?;
    party_update(&mut c[1]).await?;
    party_update(&mut c[0]).await?;

    // Joining again, joining a full party, a second party, an unknown code.
    c[1].send(json!({"action": "joinParty", "inviteCode": code})).await?;
    let (code_again, _) = error(&mut c[1]).await?;
    assert_eq!(code_again, ErrorCode::Conflict, "already in it");
    c[2].send(json!({"action": "joinParty", "inviteCode": code})).await?;
    let (full, message) = error(&mut c[2]).await?;
    assert_eq!(full, ErrorCode::PartyFull);
    assert!(message.contains("at most 2"), "the error names the limit: {message}");
    c[1].send(json!({"action": "createParty"})).await?;
    assert_eq!(error(&mut c[1]).await?.0, ErrorCode::Conflict, "one party per player");
    c[3].send(json!({"action": "createParty"})).await?;
    let (other_party, _, _, other_code) = party_update(&mut c[3]).await?;
    c[1].send(json!({"action": "joinParty", "inviteCode": other_code})).await?;
    assert_eq!(error(&mut c[1]).await?.0, ErrorCode::Conflict, "a second party");
    c[2].send(json!({"action": "joinParty", "inviteCode": "NOSUCHCODE234"})).await?;
    let (unknown, unknown_message) = error(&mut c[2]).await?;
    assert_eq!(unknown, ErrorCode::NotFound);
    assert!(unknown_message.contains("expired"), "the same answer as for an expired code: {unknown_message}");

    // Only the leader kicks or matchmakes; only members can be kicked.
    c[1].send(json!({"action": "kickFromParty", "playerId": "lead"})).await?;
    assert_eq!(error(&mut c[1]).await?.0, ErrorCode::Forbidden);
    c[1].send(json!({"action": "matchmake"})).await?;
    assert_eq!(error(&mut c[1]).await?.0, ErrorCode::Forbidden);
    c[0].send(json!({"action": "kickFromParty", "playerId": "third"})).await?;
    assert_eq!(error(&mut c[0]).await?.0, ErrorCode::NotFound);
    // Another party's ID is answered as if it did not exist.
    c[0].send(json!({"action": "leaveParty", "partyId": other_party})).await?;
    assert_eq!(error(&mut c[0]).await?.0, ErrorCode::NotFound);
    // Not ready yet: the leader cannot start.
    c[0].send(json!({"action": "matchmake"})).await?;
    let (not_ready, message) = error(&mut c[0]).await?;
    assert_eq!(not_ready, ErrorCode::InvalidRequest);
    assert!(message.contains("mate"), "names who is not ready: {message}");

    // Nothing above changed the party.
    c[0].send(json!({"action": "setReady", "ready": true})).await?;
    let (id, leader, members, _) = party_update(&mut c[0]).await?;
    assert_eq!((id, leader, members), (party_id, "lead".to_owned(), vec!["lead".to_owned(), "mate".to_owned()]));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_leader_leaving_hands_the_party_to_the_longest_standing_member() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(5)).await?;
    let mut party = connect_all(&stack, &["first", "second", "third"]).await?;
    form_party(&mut party).await?;
    party[0].send(json!({"action": "leaveParty"})).await?;
    party[0].expect("left", |p| matches!(p, Push::PartyLeft { .. })).await?;
    for member in &mut party[1..] {
        let (_, leader, members, _) = party_update(member).await?;
        assert_eq!((leader.as_str(), members), ("second", vec!["second".to_owned(), "third".to_owned()]));
    }
    // The new leader can kick.
    party[1].send(json!({"action": "kickFromParty", "playerId": "third"})).await?;
    let Push::PartyLeft { reason, .. } = party[2].expect("kicked", |p| matches!(p, Push::PartyLeft { .. })).await?
    else {
        unreachable!()
    };
    assert!(reason.contains("leader removed you"), "{reason}");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn invite_codes_cannot_be_enumerated() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(5)).await?;
    let mut guesser = Client::connect(&stack, "guesser").await?;
    let mut answers = Vec::new();
    for i in 0..12 {
        guesser.send(json!({"action": "joinParty", "inviteCode": format!("GUESS{i}")})).await?;
        answers.push(error(&mut guesser).await?.0);
    }
    assert!(answers[..10].iter().all(|c| *c == ErrorCode::NotFound), "{answers:?}");
    assert_eq!(&answers[10..], [ErrorCode::RateLimited, ErrorCode::RateLimited], "then refused: {answers:?}");
    stack.shutdown().await;
    Ok(())
}
