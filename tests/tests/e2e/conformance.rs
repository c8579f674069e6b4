//! The storage ports' conformance suite: every check runs against every adapter, the in-memory one
//! (which defines the semantics) and the DynamoDB one against DynamoDB Local.
//!
//! One DynamoDB Local serves the whole binary (it takes a second or two to start); each test makes
//! its own tables with `create_tables`, named after the test, so tests running in parallel never
//! see each other's rows.
//!
//! Times are real (now), because DynamoDB Local may delete items past their TTL on its own clock.
//! A read "later" passes a `now_ms` past an item's `expiresAt` while the item is still live for
//! DynamoDB, so what is tested is the adapter's own filtering.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use matchgate_lambdas::adapters::dynamodb::{
    DynamoConnections, DynamoPlayers, DynamoTickets, TableNames, client_for_endpoint, create_tables,
};
use matchgate_lambdas::adapters::memory::{MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::ports::{
    AttributeValue, ConnectionRecord, ConnectionStore, PlayerAttributes, PlayerStore, Role, StoreError, TicketRecord,
    TicketStore,
};
use matchgate_protocol::ticket::TicketState;
use matchgate_protocol::{ErrorCode, Push, TicketStatus};
use matchgate_tests::dynamodb_local::DynamoDbLocal;

/// One adapter of each storage port, and its name for assertion messages.
struct Adapter {
    name: &'static str,
    connections: Arc<dyn ConnectionStore>,
    players: Arc<dyn PlayerStore>,
    tickets: Arc<dyn TicketStore>,
}

/// Fresh, empty stores of every adapter, for the test `test`.
async fn adapters(test: &str) -> Vec<Adapter> {
    let memory = Adapter {
        name: "memory",
        connections: Arc::new(MemoryConnections::default()),
        players: Arc::new(MemoryPlayers::default()),
        tickets: Arc::new(MemoryTickets::default()),
    };
    let local = DynamoDbLocal::shared().await.expect("start DynamoDB Local");
    let client = client_for_endpoint(&local.endpoint);
    let names = TableNames::with_prefix(&format!("{test}-"));
    create_tables(&client, &names).await.expect("create the tables");
    // Twice: creating tables is idempotent (the local stack does it on every start).
    create_tables(&client, &names).await.expect("create the tables again");
    let dynamodb = Adapter {
        name: "dynamodb",
        connections: Arc::new(DynamoConnections::new(client.clone(), names.connections)),
        players: Arc::new(DynamoPlayers::new(client.clone(), names.players)),
        tickets: Arc::new(DynamoTickets::new(client, names.tickets)),
    };
    vec![memory, dynamodb]
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_millis() as i64
}

const HOUR_MS: i64 = 3_600_000;

fn connection(id: &str, player: &str, role: Role, now_ms: i64) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: id.to_owned(),
        player_id: player.to_owned(),
        role,
        connected_at: now_ms,
        expires_at: now_ms / 1000 + 3 * 3600,
    }
}

/// A live ticket in its first state, due for the backstop at `due`.
fn ticket(id: &str, now_ms: i64, due: Option<i64>) -> TicketRecord {
    TicketRecord {
        ticket_id: id.to_owned(),
        player_ids: vec!["p1".to_owned()],
        configuration_name: "matchgate-test".to_owned(),
        state: TicketState::new(),
        version: 1,
        created_at: now_ms,
        last_event_at: now_ms,
        results: BTreeMap::from([("p1".to_owned(), Push::MatchmakingQueued { ticket_id: id.to_owned() })]),
        applied_event_ids: Vec::new(),
        applied_by: BTreeMap::new(),
        backstop_due_at: due,
        disconnected_at: None,
        expires_at: now_ms / 1000 + 12 * 3600,
    }
}

fn is_condition_failed<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::ConditionFailed))
}

// ------------------------------------------------------------------------------------------------
// Connections
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn connections_put_get_delete() {
    for a in adapters("connections_put_get_delete").await {
        connections_put_get_delete_body(&a).await;
    }
}

async fn connections_put_get_delete_body(a: &Adapter) {
    let store = &*a.connections;
    let now = now_ms();
    assert_eq!(store.get("c1", now).await.unwrap(), None, "{}: a missing connection", a.name);

    let player = connection("c1", "alice", Role::Player, now);
    let observer = connection("c2", "designer", Role::Observer, now + 1);
    store.put(&player).await.unwrap();
    store.put(&observer).await.unwrap();
    assert_eq!(store.get("c1", now).await.unwrap(), Some(player), "{}: read back", a.name);
    assert_eq!(store.get("c2", now).await.unwrap(), Some(observer.clone()), "{}: an observer", a.name);

    // A put replaces the whole row.
    let replaced = connection("c1", "bob", Role::Observer, now + 5);
    store.put(&replaced).await.unwrap();
    assert_eq!(store.get("c1", now).await.unwrap(), Some(replaced), "{}: replaced", a.name);

    store.delete("c1").await.unwrap();
    assert_eq!(store.get("c1", now).await.unwrap(), None, "{}: deleted", a.name);
    store.delete("c1").await.expect("deleting a missing connection is fine");
    assert_eq!(store.get("c2", now).await.unwrap(), Some(observer), "{}: the other connection stays", a.name);
}

#[tokio::test]
async fn connections_past_their_ttl_are_invisible() {
    for a in adapters("connections_past_their_ttl_are_invisible").await {
        connections_past_their_ttl_body(&a).await;
    }
}

async fn connections_past_their_ttl_body(a: &Adapter) {
    let store = &*a.connections;
    let now = now_ms();
    let c = connection("c1", "alice", Role::Player, now);
    store.put(&c).await.unwrap();
    let expiry_ms = c.expires_at * 1000;
    assert_eq!(store.get("c1", expiry_ms - 1).await.unwrap(), Some(c.clone()), "{}: live until expiresAt", a.name);
    assert_eq!(store.get("c1", expiry_ms).await.unwrap(), None, "{}: gone at expiresAt", a.name);
    assert_eq!(store.get("c1", expiry_ms + HOUR_MS).await.unwrap(), None, "{}: gone after expiresAt", a.name);

    // Already expired when written: invisible now, however long TTL deletion takes.
    let stale = ConnectionRecord { expires_at: now / 1000 - 60, ..connection("c2", "bob", Role::Player, now) };
    store.put(&stale).await.unwrap();
    assert_eq!(store.get("c2", now).await.unwrap(), None, "{}: expired in the past", a.name);
}

// ------------------------------------------------------------------------------------------------
// Players
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn players_newest_connection_wins() {
    for a in adapters("players_newest_connection_wins").await {
        players_newest_connection_wins_body(&a).await;
    }
}

async fn players_newest_connection_wins_body(a: &Adapter) {
    let store = &*a.players;
    assert_eq!(store.get("alice").await.unwrap(), None, "{}: a missing player", a.name);
    store.set_connection("alice", "c1", 1_000).await.unwrap();
    let row = store.get("alice").await.unwrap().expect("set_connection creates the row");
    assert_eq!(row.player_id, "alice", "{}", a.name);
    assert_eq!(row.connection_id.as_deref(), Some("c1"), "{}", a.name);
    assert!(row.attributes.is_empty() && row.active_ticket_id.is_none(), "{}: a new row: {row:?}", a.name);

    assert!(store.set_connection("alice", "c2", 2_000).await.unwrap(), "{}: a newer connection is set", a.name);
    assert_eq!(store.get("alice").await.unwrap().unwrap().connection_id.as_deref(), Some("c2"), "{}", a.name);

    // Two reconnects raced and the older one's write landed last: the newer stays current.
    assert!(!store.set_connection("alice", "c1", 1_000).await.unwrap(), "{}: an older connection is not set", a.name);
    assert_eq!(store.get("alice").await.unwrap().unwrap().connection_id.as_deref(), Some("c2"), "{}", a.name);
    // Still so after the newer one is cleared (a 410): clearing keeps when it connected.
    assert!(store.clear_connection("alice", "c2").await.unwrap(), "{}", a.name);
    assert!(!store.set_connection("alice", "c1", 1_000).await.unwrap(), "{}: still older", a.name);
    assert_eq!(store.get("alice").await.unwrap().unwrap().connection_id, None, "{}", a.name);
    assert!(store.set_connection("alice", "c3", 3_000).await.unwrap(), "{}: a newer one again", a.name);
    assert_eq!(store.get("alice").await.unwrap().unwrap().connection_id.as_deref(), Some("c3"), "{}", a.name);
}

#[tokio::test]
async fn players_clear_connection_only_if_current() {
    for a in adapters("players_clear_connection_only_if_current").await {
        players_clear_connection_body(&a).await;
    }
}

async fn players_clear_connection_body(a: &Adapter) {
    let store = &*a.players;
    store.set_connection("alice", "c1", 1_000).await.unwrap();
    store.set_connection("alice", "c2", 2_000).await.unwrap();
    store.claim_ticket("alice", None, "t1").await.unwrap();

    // The old connection's $disconnect arrives after the new $connect: it must not clear c2.
    assert!(!store.clear_connection("alice", "c1").await.unwrap(), "{}: c1 is no longer current", a.name);
    assert_eq!(store.get("alice").await.unwrap().unwrap().connection_id.as_deref(), Some("c2"), "{}", a.name);

    assert!(store.clear_connection("alice", "c2").await.unwrap(), "{}: c2 is current", a.name);
    let row = store.get("alice").await.unwrap().unwrap();
    assert_eq!(row.connection_id, None, "{}: cleared", a.name);
    assert_eq!(row.active_ticket_id.as_deref(), Some("t1"), "{}: the ticket stays", a.name);
    assert!(!store.clear_connection("alice", "c2").await.unwrap(), "{}: already cleared", a.name);

    assert!(!store.clear_connection("nobody", "c9").await.unwrap(), "{}: a missing player", a.name);
    assert_eq!(store.get("nobody").await.unwrap(), None, "{}: clear_connection creates no row", a.name);
}

#[tokio::test]
async fn players_claim_ticket_is_compare_and_set() {
    for a in adapters("players_claim_ticket_is_compare_and_set").await {
        players_claim_ticket_body(&a).await;
    }
}

async fn players_claim_ticket_body(a: &Adapter) {
    let store = &*a.players;
    store.claim_ticket("alice", None, "t1").await.expect("the first claim of a new player");
    let active = |row: Option<_>| row.and_then(|r: matchgate_lambdas::ports::PlayerRecord| r.active_ticket_id);
    assert_eq!(active(store.get("alice").await.unwrap()).as_deref(), Some("t1"), "{}", a.name);

    assert!(
        is_condition_failed(&store.claim_ticket("alice", None, "t2").await),
        "{}: a second claim from none",
        a.name
    );
    assert!(
        is_condition_failed(&store.claim_ticket("alice", Some("t0"), "t2").await),
        "{}: a claim expecting the wrong ticket",
        a.name
    );
    assert_eq!(active(store.get("alice").await.unwrap()).as_deref(), Some("t1"), "{}: unchanged", a.name);

    store.claim_ticket("alice", Some("t1"), "t2").await.expect("a claim expecting the current ticket");
    assert_eq!(active(store.get("alice").await.unwrap()).as_deref(), Some("t2"), "{}", a.name);

    // A player who has a row (a connection) but no ticket yet.
    store.set_connection("bob", "c1", 1_000).await.unwrap();
    assert!(
        is_condition_failed(&store.claim_ticket("bob", Some("t1"), "t2").await),
        "{}: expecting a ticket bob does not have",
        a.name
    );
    store.claim_ticket("bob", None, "t3").await.unwrap();
    let bob = store.get("bob").await.unwrap().unwrap();
    assert_eq!(
        (bob.connection_id.as_deref(), bob.active_ticket_id.as_deref()),
        (Some("c1"), Some("t3")),
        "{}: the claim keeps the connection",
        a.name
    );
}

#[tokio::test]
async fn players_concurrent_claims_one_wins() {
    for a in adapters("players_concurrent_claims_one_wins").await {
        players_concurrent_claims_body(&a).await;
    }
}

/// Eight `matchmake` requests of one player race: one live ticket per player.
async fn players_concurrent_claims_body(a: &Adapter) {
    a.players.set_connection("alice", "c1", 1_000).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&a.players);
            tokio::spawn(async move { (i, store.claim_ticket("alice", None, &format!("t{i}")).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(()) => winners.push(i),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => panic!("{}: claim {i}: {e}", a.name),
        }
    }
    assert_eq!(winners.len(), 1, "{}: exactly one claim wins: {winners:?}", a.name);
    let active = a.players.get("alice").await.unwrap().unwrap().active_ticket_id;
    assert_eq!(active, Some(format!("t{}", winners[0])), "{}: the winner's ticket is stored", a.name);
}

fn all_kinds_of_attributes() -> PlayerAttributes {
    PlayerAttributes::from([
        ("skill".to_owned(), AttributeValue::N(23.0)),
        ("rating".to_owned(), AttributeValue::N(-0.125)),
        ("precise".to_owned(), AttributeValue::N(0.1)),
        ("mode".to_owned(), AttributeValue::S("ranked".to_owned())),
        ("roles".to_owned(), AttributeValue::SL(vec!["tank".to_owned(), "healer".to_owned()])),
        ("none".to_owned(), AttributeValue::SL(Vec::new())),
        (
            "ping".to_owned(),
            AttributeValue::SDM(BTreeMap::from([("eu-west-1".to_owned(), 40.0), ("us-east-1".to_owned(), 95.5)])),
        ),
    ])
}

#[tokio::test]
async fn players_put_attributes_keeps_connection_and_ticket() {
    for a in adapters("players_put_attributes_keeps_connection_and_ticket").await {
        players_put_attributes_body(&a).await;
    }
}

async fn players_put_attributes_body(a: &Adapter) {
    let store = &*a.players;
    let attributes = all_kinds_of_attributes();

    // Seeding a player who has never connected creates the row.
    store.put_attributes("carol", &attributes).await.unwrap();
    let carol = store.get("carol").await.unwrap().expect("put_attributes creates the row");
    assert_eq!(carol.attributes, attributes, "{}: every kind of attribute round-trips", a.name);
    assert_eq!((carol.connection_id, carol.active_ticket_id), (None, None), "{}", a.name);

    store.set_connection("alice", "c1", 1_000).await.unwrap();
    store.claim_ticket("alice", None, "t1").await.unwrap();
    store.put_attributes("alice", &attributes).await.unwrap();
    let alice = store.get("alice").await.unwrap().unwrap();
    assert_eq!(alice.attributes, attributes, "{}", a.name);
    assert_eq!(alice.connection_id.as_deref(), Some("c1"), "{}: the connection stays", a.name);
    assert_eq!(alice.active_ticket_id.as_deref(), Some("t1"), "{}: the ticket stays", a.name);

    // A second put replaces the attributes as a whole.
    let fewer = PlayerAttributes::from([("skill".to_owned(), AttributeValue::N(30.0))]);
    store.put_attributes("alice", &fewer).await.unwrap();
    let alice = store.get("alice").await.unwrap().unwrap();
    assert_eq!(alice.attributes, fewer, "{}: replaced, not merged", a.name);
    assert_eq!(alice.connection_id.as_deref(), Some("c1"), "{}", a.name);
    assert_eq!(alice.active_ticket_id.as_deref(), Some("t1"), "{}", a.name);

    // And the other writes keep the attributes.
    store.set_connection("alice", "c2", 2_000).await.unwrap();
    store.claim_ticket("alice", Some("t1"), "t2").await.unwrap();
    assert!(store.clear_connection("alice", "c2").await.unwrap());
    assert_eq!(store.get("alice").await.unwrap().unwrap().attributes, fewer, "{}", a.name);
}

// ------------------------------------------------------------------------------------------------
// Tickets
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn tickets_create_is_conditional() {
    for a in adapters("tickets_create_is_conditional").await {
        tickets_create_body(&a).await;
    }
}

async fn tickets_create_body(a: &Adapter) {
    let store = &*a.tickets;
    let now = now_ms();
    assert_eq!(store.get("t1", now).await.unwrap(), None, "{}: a missing ticket", a.name);
    let first = ticket("t1", now, Some(now + 30_000));
    store.create(&first).await.unwrap();
    assert_eq!(store.get("t1", now).await.unwrap(), Some(first.clone()), "{}: read back", a.name);

    let second = TicketRecord { player_ids: vec!["intruder".to_owned()], version: 7, ..first.clone() };
    assert!(is_condition_failed(&store.create(&second).await), "{}: the ID exists", a.name);
    assert_eq!(store.get("t1", now).await.unwrap(), Some(first), "{}: the first ticket stays", a.name);
}

#[tokio::test]
async fn tickets_replace_checks_the_version() {
    for a in adapters("tickets_replace_checks_the_version").await {
        tickets_replace_body(&a).await;
    }
}

async fn tickets_replace_body(a: &Adapter) {
    let store = &*a.tickets;
    let now = now_ms();
    let v1 = ticket("t1", now, Some(now + 30_000));
    store.create(&v1).await.unwrap();

    let v2 = TicketRecord {
        version: 2,
        state: TicketState { status: TicketStatus::Searching, ..TicketState::new() },
        last_event_at: now + 1000,
        applied_event_ids: vec!["e1".to_owned()],
        ..v1.clone()
    };
    store.replace(&v2, 1).await.expect("replace from the stored version");
    assert_eq!(store.get("t1", now).await.unwrap(), Some(v2.clone()), "{}", a.name);

    let stale = TicketRecord { version: 2, applied_event_ids: vec!["e-late".to_owned()], ..v1.clone() };
    assert!(is_condition_failed(&store.replace(&stale, 1).await), "{}: a stale version", a.name);
    assert!(is_condition_failed(&store.replace(&stale, 3).await), "{}: a version from the future", a.name);
    assert_eq!(store.get("t1", now).await.unwrap(), Some(v2), "{}: unchanged", a.name);

    let missing = ticket("t-missing", now, None);
    assert!(is_condition_failed(&store.replace(&missing, 1).await), "{}: replace never creates", a.name);
    assert_eq!(store.get("t-missing", now).await.unwrap(), None, "{}", a.name);
}

#[tokio::test]
async fn tickets_concurrent_replaces_one_wins() {
    for a in adapters("tickets_concurrent_replaces_one_wins").await {
        tickets_concurrent_replaces_body(&a).await;
    }
}

/// Eight writers (duplicate SNS deliveries, the backstop) race from the same version.
async fn tickets_concurrent_replaces_body(a: &Adapter) {
    let now = now_ms();
    let v1 = ticket("t1", now, Some(now + 30_000));
    a.tickets.create(&v1).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&a.tickets);
            let next = TicketRecord { version: 2, applied_event_ids: vec![format!("e{i}")], ..v1.clone() };
            tokio::spawn(async move {
                let result = store.replace(&next, 1).await;
                (next, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (next, result) = task.await.unwrap();
        match result {
            Ok(()) => winners.push(next),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => panic!("{}: replace: {e}", a.name),
        }
    }
    assert_eq!(winners.len(), 1, "{}: exactly one replace wins", a.name);
    assert_eq!(a.tickets.get("t1", now).await.unwrap().as_ref(), winners.first(), "{}: the winner is stored", a.name);
}

/// A ticket that has seen a dropped match and holds a different push for each of its players.
fn rich_ticket(now: i64) -> TicketRecord {
    let id = "t-rich".to_owned();
    TicketRecord {
        ticket_id: id.clone(),
        // Not sorted: the order is the request's and must survive.
        player_ids: vec!["p3".to_owned(), "p1".to_owned(), "p2".to_owned(), "p4".to_owned(), "p5".to_owned()],
        configuration_name: "matchgate-4v4".to_owned(),
        state: TicketState {
            status: TicketStatus::Placing,
            match_id: Some("match-2".to_owned()),
            closed_match_ids: vec!["match-0".to_owned(), "match-1".to_owned()],
        },
        version: 9,
        created_at: now - 60_000,
        last_event_at: now - 1_000,
        results: BTreeMap::from([
            (
                "p1".to_owned(),
                Push::MatchmakingSucceeded {
                    ticket_id: id.clone(),
                    match_id: "match-2".to_owned(),
                    game_session_arn: Some("arn:aws:gamelift:us-east-1::gamesession/fleet-123/gsess-abc".to_owned()),
                    ip_address: Some("10.0.0.7".to_owned()),
                    dns_name: Some("ec2-10-0-0-7.compute.amazonaws.com".to_owned()),
                    port: Some(7777),
                    player_session_id: Some("psess-1".to_owned()),
                    team: Some("red".to_owned()),
                },
            ),
            (
                "p2".to_owned(),
                Push::MatchmakingSucceeded {
                    ticket_id: id.clone(),
                    match_id: "match-2".to_owned(),
                    game_session_arn: None,
                    ip_address: None,
                    dns_name: None,
                    port: None,
                    player_session_id: None,
                    team: None,
                },
            ),
            (
                "p3".to_owned(),
                Push::AcceptMatch {
                    ticket_id: id.clone(),
                    match_id: "match-2".to_owned(),
                    accepted_count: 2,
                    player_count: 4,
                },
            ),
            (
                "p4".to_owned(),
                Push::MatchmakingSearching {
                    ticket_id: id.clone(),
                    estimated_wait_millis: Some(u64::from(u32::MAX) + 1),
                },
            ),
            (
                "p5".to_owned(),
                Push::Error {
                    code: ErrorCode::Conflict,
                    message: "you already have a live ticket: \"t-rich\" {…}".to_owned(),
                    ticket_id: Some(id.clone()),
                },
            ),
        ]),
        applied_event_ids: (0..5).map(|i| format!("event-{i}")).collect(),
        applied_by: BTreeMap::from([("event-4".to_owned(), "invocation-7".to_owned())]),
        backstop_due_at: Some(now + 30_000),
        disconnected_at: Some(now - 1_000),
        expires_at: now / 1000 + 12 * 3600,
    }
}

#[tokio::test]
async fn tickets_round_trip_exactly() {
    for a in adapters("tickets_round_trip_exactly").await {
        tickets_round_trip_body(&a).await;
    }
}

async fn tickets_round_trip_body(a: &Adapter) {
    let store = &*a.tickets;
    let now = now_ms();
    let rich = rich_ticket(now);
    store.create(&rich).await.unwrap();
    assert_eq!(store.get(&rich.ticket_id, now).await.unwrap(), Some(rich.clone()), "{}: created", a.name);

    // Ended: terminal state, no backstop, a terminal push for everyone.
    let ended = TicketRecord {
        version: rich.version + 1,
        state: TicketState { status: TicketStatus::Completed, ..rich.state.clone() },
        results: rich
            .player_ids
            .iter()
            .map(|p| {
                let push = Push::MatchmakingTimedOut {
                    ticket_id: rich.ticket_id.clone(),
                    reason: Some("TimedOut".to_owned()),
                    message: None,
                };
                (p.clone(), push)
            })
            .collect(),
        backstop_due_at: None,
        ..rich.clone()
    };
    store.replace(&ended, rich.version).await.unwrap();
    assert_eq!(store.get(&rich.ticket_id, now).await.unwrap(), Some(ended), "{}: replaced", a.name);

    // The smallest ticket: no results, no events, no match.
    let bare = TicketRecord { results: BTreeMap::new(), ..ticket("t-bare", now, None) };
    store.create(&bare).await.unwrap();
    assert_eq!(store.get("t-bare", now).await.unwrap(), Some(bare), "{}: bare", a.name);
}

#[tokio::test]
async fn tickets_past_their_ttl_are_invisible() {
    for a in adapters("tickets_past_their_ttl_are_invisible").await {
        tickets_past_their_ttl_body(&a).await;
    }
}

async fn tickets_past_their_ttl_body(a: &Adapter) {
    let store = &*a.tickets;
    let now = now_ms();
    let t = ticket("t1", now, None);
    store.create(&t).await.unwrap();
    let expiry_ms = t.expires_at * 1000;
    assert_eq!(store.get("t1", expiry_ms - 1).await.unwrap(), Some(t), "{}: live until expiresAt", a.name);
    assert_eq!(store.get("t1", expiry_ms).await.unwrap(), None, "{}: gone at expiresAt", a.name);

    let stale = TicketRecord { expires_at: now / 1000 - 60, ..ticket("t2", now, None) };
    store.create(&stale).await.unwrap();
    assert_eq!(store.get("t2", now).await.unwrap(), None, "{}: expired in the past", a.name);
}

#[tokio::test]
async fn tickets_due_for_backstop() {
    for a in adapters("tickets_due_for_backstop").await {
        tickets_due_for_backstop_body(&a).await;
    }
}

async fn tickets_due_for_backstop_body(a: &Adapter) {
    let store = &*a.tickets;
    // The backstop runs a bit in the future, so "expired" below is the adapter's filtering and not
    // DynamoDB Local deleting the item.
    let now = now_ms() + 10 * 60_000;
    let ids = |tickets: Vec<TicketRecord>| tickets.into_iter().map(|t| t.ticket_id).collect::<Vec<_>>();

    // Created in an order unlike the due order.
    let rows = [
        ticket("due-20s-ago", now, Some(now - 20_000)),
        ticket("due-now", now, Some(now)),
        ticket("due-90s-ago", now, Some(now - 90_000)),
        ticket("due-in-1ms", now, Some(now + 1)),
        ticket("due-45s-ago", now, Some(now - 45_000)),
        // Ended: no longer in the backstop's index.
        TicketRecord {
            state: TicketState { status: TicketStatus::Completed, ..TicketState::new() },
            ..ticket("ended", now, None)
        },
        // Most overdue, but its TTL passed before `now` (while DynamoDB still holds it).
        TicketRecord { expires_at: (now - 1000) / 1000, ..ticket("expired", now, Some(now - 600_000)) },
    ];
    for row in &rows {
        store.create(row).await.unwrap();
    }

    let all = ["due-90s-ago", "due-45s-ago", "due-20s-ago", "due-now"];
    assert_eq!(ids(store.due_for_backstop(now, 10).await.unwrap()), all, "{}: due, most overdue first", a.name);
    assert_eq!(ids(store.due_for_backstop(now, 2).await.unwrap()), all[..2], "{}: at most the limit", a.name);
    assert_eq!(ids(store.due_for_backstop(now, 1).await.unwrap()), all[..1], "{}: the most overdue", a.name);
    assert!(store.due_for_backstop(now, 0).await.unwrap().is_empty(), "{}: limit 0", a.name);
    // Half a minute earlier, fewer were due and the expired one was still live.
    assert_eq!(
        ids(store.due_for_backstop(now - 30_000, 10).await.unwrap()),
        ["expired", "due-90s-ago", "due-45s-ago"],
        "{}: earlier",
        a.name
    );
    let first = store.due_for_backstop(now, 10).await.unwrap().remove(0);
    assert_eq!(&first, &rows[2], "{}: whole tickets come back", a.name);

    // The backstop looked at the most overdue one and rescheduled it; another one ended.
    let rescheduled = TicketRecord { version: 2, backstop_due_at: Some(now + 30_000), ..rows[2].clone() };
    store.replace(&rescheduled, 1).await.unwrap();
    let ended = TicketRecord {
        version: 2,
        state: TicketState { status: TicketStatus::Cancelled, ..TicketState::new() },
        backstop_due_at: None,
        ..rows[0].clone()
    };
    store.replace(&ended, 1).await.unwrap();
    assert_eq!(ids(store.due_for_backstop(now, 10).await.unwrap()), ["due-45s-ago", "due-now"], "{}: after", a.name);
    assert_eq!(
        ids(store.due_for_backstop(now + 30_000, 10).await.unwrap()),
        ["due-45s-ago", "due-now", "due-in-1ms", "due-90s-ago"],
        "{}: later on",
        a.name
    );
}
