//! The `PartyStore` port's conformance suite, run against the in-memory adapter (which defines the
//! semantics) and the DynamoDB one against DynamoDB Local, as conformance.rs does for the other
//! ports: membership changes are all-or-nothing conditional writes, so racing joins never take a
//! party past its limit and a player is never in two parties.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use matchgate_lambdas::adapters::dynamodb::{DynamoConnections, TableNames, client_for_endpoint, create_tables};
use matchgate_lambdas::adapters::dynamodb_parties::DynamoParties;
use matchgate_lambdas::adapters::memory::MemoryConnections;
use matchgate_lambdas::adapters::memory_parties::MemoryParties;
use matchgate_lambdas::ports::{
    ConnectionRecord, ConnectionStore, PartyChange, PartyMember, PartyRecord, PartyStore, PartyWrite, Role, StoreError,
};
use matchgate_tests::dynamodb_local::DynamoDbLocal;

struct Adapter {
    name: &'static str,
    parties: Arc<dyn PartyStore>,
    connections: Arc<dyn ConnectionStore>,
}

/// Fresh, empty stores of every adapter, for the test `test`.
async fn adapters(test: &str) -> Vec<Adapter> {
    let memory = Adapter {
        name: "memory",
        parties: Arc::new(MemoryParties::default()),
        connections: Arc::new(MemoryConnections::default()),
    };
    let local = DynamoDbLocal::shared().await.expect("start DynamoDB Local");
    let client = client_for_endpoint(&local.endpoint);
    let names = TableNames::with_prefix(&format!("{test}-"));
    create_tables(&client, &names).await.expect("create the tables");
    let dynamodb = Adapter {
        name: "dynamodb",
        parties: Arc::new(DynamoParties::new(client.clone(), &names)),
        connections: Arc::new(DynamoConnections::new(client, names.connections.clone())),
    };
    vec![memory, dynamodb]
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_millis() as i64
}

fn member(player_id: &str, joined_at: i64) -> PartyMember {
    PartyMember {
        player_id: player_id.to_owned(),
        joined_at,
        ready: false,
        latency_in_ms: BTreeMap::new(),
        disconnected_at: None,
    }
}

/// A new party led by `leader`, holding at most `max_members`.
fn party(id: &str, leader: &str, max_members: usize, now_ms: i64) -> PartyRecord {
    PartyRecord {
        party_id: id.to_owned(),
        leader_id: leader.to_owned(),
        members: vec![member(leader, now_ms)],
        invite_code: format!("code-{id}"),
        invite_expires_at: now_ms / 1000 + 3600,
        max_members,
        active_ticket_id: None,
        version: 1,
        created_at: now_ms,
        updated_at: now_ms,
        expires_at: now_ms / 1000 + 6 * 3600,
    }
}

fn create(party: &PartyRecord) -> PartyChange {
    PartyChange {
        party: party.clone(),
        write: PartyWrite::Create,
        joining: vec![(party.leader_id.clone(), None)],
        leaving: Vec::new(),
    }
}

/// Joins `player` to the party with the invite code, as a handler does: read, check the limit,
/// write conditionally, and on a lost race read again. `Ok(false)` when the party is full or
/// the player is in another live party.
async fn join(store: &dyn PartyStore, invite_code: &str, player: &str) -> Result<bool, StoreError> {
    loop {
        let now = now_ms();
        let Some(party) = store.find_by_invite(invite_code, now).await? else { return Ok(false) };
        if party.members.len() >= party.max_members || party.is_member(player) {
            return Ok(false);
        }
        let pointer = store.party_of(player).await?;
        if let Some(current) = &pointer
            && store.get(current, now).await?.is_some_and(|p| p.is_member(player))
        {
            return Ok(false);
        }
        let mut joined = party.clone();
        joined.members.push(member(player, now));
        joined.version += 1;
        let change = PartyChange {
            party: joined,
            write: PartyWrite::Replace { expected_version: party.version },
            joining: vec![(player.to_owned(), pointer)],
            leaving: Vec::new(),
        };
        match store.apply(&change).await {
            Ok(()) => return Ok(true),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn is_condition_failed(result: &Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::ConditionFailed))
}

#[tokio::test]
async fn parties_create_read_and_find_by_invite() {
    for a in adapters("parties_create_read_and_find_by_invite").await {
        let store = &*a.parties;
        let now = now_ms();
        let p = party("party-1", "alice", 4, now);
        assert_eq!(store.get("party-1", now).await.unwrap(), None, "{}: missing", a.name);
        assert_eq!(store.party_of("alice").await.unwrap(), None, "{}: no party yet", a.name);
        store.apply(&create(&p)).await.expect("create");
        assert_eq!(store.get("party-1", now).await.unwrap(), Some(p.clone()), "{}: read back whole", a.name);
        assert_eq!(store.party_of("alice").await.unwrap().as_deref(), Some("party-1"), "{}: pointer", a.name);
        assert_eq!(store.find_by_invite("code-party-1", now).await.unwrap(), Some(p.clone()), "{}: by code", a.name);
        assert_eq!(store.find_by_invite("code-party-2", now).await.unwrap(), None, "{}: unknown code", a.name);

        // The same ID again is refused and changes nothing.
        let again = party("party-1", "bob", 4, now);
        assert!(is_condition_failed(&store.apply(&create(&again)).await), "{}: the ID exists", a.name);
        assert_eq!(store.party_of("bob").await.unwrap(), None, "{}: bob's pointer untouched", a.name);
        assert_eq!(store.get("party-1", now).await.unwrap(), Some(p.clone()), "{}: unchanged", a.name);

        // The code stops admitting at its expiry; the party lives on until its own TTL.
        let code_expiry = p.invite_expires_at * 1000;
        assert_eq!(store.find_by_invite("code-party-1", code_expiry).await.unwrap(), None, "{}: code expired", a.name);
        assert!(store.get("party-1", code_expiry).await.unwrap().is_some(), "{}: party still live", a.name);
        assert_eq!(store.get("party-1", p.expires_at * 1000).await.unwrap(), None, "{}: past its TTL", a.name);
    }
}

#[tokio::test]
async fn parties_changes_are_all_or_nothing() {
    for a in adapters("parties_changes_are_all_or_nothing").await {
        let store = &*a.parties;
        let now = now_ms();
        let p1 = party("party-1", "alice", 4, now);
        let p2 = party("party-2", "carol", 4, now);
        store.apply(&create(&p1)).await.unwrap();
        store.apply(&create(&p2)).await.unwrap();
        assert!(join(store, "code-party-1", "bob").await.unwrap(), "{}: bob joins", a.name);

        // bob is in party-1: a write that expects him in no party fails whole.
        let mut with_bob = p2.clone();
        with_bob.members.push(member("bob", now));
        with_bob.version = 2;
        let steal = PartyChange {
            party: with_bob,
            write: PartyWrite::Replace { expected_version: 1 },
            joining: vec![("bob".into(), None)],
            leaving: Vec::new(),
        };
        assert!(is_condition_failed(&store.apply(&steal).await), "{}: a second party", a.name);
        assert_eq!(store.get("party-2", now).await.unwrap(), Some(p2.clone()), "{}: party-2 unchanged", a.name);
        assert_eq!(store.party_of("bob").await.unwrap().as_deref(), Some("party-1"), "{}: bob stays", a.name);
        assert!(!join(store, "code-party-2", "bob").await.unwrap(), "{}: the join refuses a member of another", a.name);

        // A stale version fails whole too, even though the pointer condition holds.
        let stale = PartyChange {
            party: PartyRecord { version: 9, ..p2.clone() },
            write: PartyWrite::Replace { expected_version: 7 },
            joining: vec![("dave".into(), None)],
            leaving: Vec::new(),
        };
        assert!(is_condition_failed(&store.apply(&stale).await), "{}: stale version", a.name);
        assert_eq!(store.party_of("dave").await.unwrap(), None, "{}: dave's pointer untouched", a.name);

        // bob leaves party-1 and then joins party-2.
        let p1_now = store.get("party-1", now).await.unwrap().unwrap();
        let mut without_bob = p1_now.clone();
        without_bob.members.retain(|m| m.player_id != "bob");
        without_bob.version += 1;
        let leave = PartyChange {
            party: without_bob.clone(),
            write: PartyWrite::Replace { expected_version: p1_now.version },
            joining: Vec::new(),
            leaving: vec!["bob".into()],
        };
        store.apply(&leave).await.expect("leave");
        assert_eq!(store.party_of("bob").await.unwrap(), None, "{}: pointer cleared", a.name);
        assert!(is_condition_failed(&store.apply(&leave).await), "{}: leaving twice", a.name);
        assert!(join(store, "code-party-2", "bob").await.unwrap(), "{}: bob joins party-2", a.name);

        // The last member leaving deletes the party; its code finds nothing after.
        let delete = PartyChange {
            party: without_bob.clone(),
            write: PartyWrite::Delete { expected_version: without_bob.version },
            joining: Vec::new(),
            leaving: vec!["alice".into()],
        };
        store.apply(&delete).await.expect("delete");
        assert_eq!(store.get("party-1", now).await.unwrap(), None, "{}: deleted", a.name);
        assert_eq!(store.find_by_invite("code-party-1", now).await.unwrap(), None, "{}: code gone", a.name);
        assert_eq!(store.party_of("alice").await.unwrap(), None, "{}: alice free", a.name);
    }
}

#[tokio::test]
async fn parties_racing_joins_never_exceed_the_limit() {
    for a in adapters("parties_racing_joins_never_exceed_the_limit").await {
        let store = Arc::clone(&a.parties);
        let now = now_ms();
        store.apply(&create(&party("party-1", "leader", 3, now))).await.unwrap();
        store.apply(&create(&party("party-2", "other", 3, now))).await.unwrap();
        // Eight players race for the party's two free places; two of them also race for the
        // other party at the same time.
        let mut racers = Vec::new();
        for i in 0..8 {
            let store = Arc::clone(&store);
            racers.push(tokio::spawn(async move { join(&*store, "code-party-1", &format!("p{i}")).await }));
        }
        for i in 0..2 {
            let store = Arc::clone(&store);
            racers.push(tokio::spawn(async move { join(&*store, "code-party-2", &format!("p{i}")).await }));
        }
        let mut joined = 0;
        for racer in racers {
            if racer.await.expect("no panic").expect("no store failure") {
                joined += 1;
            }
        }
        let p1 = store.get("party-1", now).await.unwrap().unwrap();
        let p2 = store.get("party-2", now).await.unwrap().unwrap();
        assert_eq!(p1.members.len(), 3, "{}: party-1 filled exactly: {:?}", a.name, p1.members);
        assert!(p2.members.len() <= 3, "{}: party-2 within its limit", a.name);
        assert_eq!(joined, p1.members.len() - 1 + p2.members.len() - 1, "{}: every success is a place", a.name);
        for i in 0..8 {
            let player = format!("p{i}");
            let memberships = [&p1, &p2].iter().filter(|p| p.is_member(&player)).count();
            assert!(memberships <= 1, "{}: {player} in {memberships} parties", a.name);
            let pointer = store.party_of(&player).await.unwrap();
            let holder = [&p1, &p2].iter().find(|p| p.is_member(&player)).map(|p| p.party_id.clone());
            assert_eq!(pointer, holder, "{}: {player}'s pointer names the party that lists them", a.name);
        }
    }
}

#[tokio::test]
async fn invite_lookups_are_counted_per_connection_and_window() {
    for a in adapters("invite_lookups_are_counted_per_connection_and_window").await {
        let store = &*a.parties;
        let now = now_ms();
        for id in ["c1", "c2"] {
            let row = ConnectionRecord {
                connection_id: id.into(),
                player_id: format!("player-{id}"),
                role: Role::Player,
                connected_at: now,
                expires_at: now / 1000 + 3600,
            };
            a.connections.put(&row).await.unwrap();
        }
        let window = now - now % 60_000;
        for expected in 1..=3 {
            assert_eq!(store.count_invite_lookup("c1", window).await.unwrap(), expected, "{}", a.name);
        }
        assert_eq!(store.count_invite_lookup("c2", window).await.unwrap(), 1, "{}: per connection", a.name);
        assert_eq!(store.count_invite_lookup("c1", window + 60_000).await.unwrap(), 1, "{}: a new window", a.name);
        assert_eq!(store.count_invite_lookup("c1", window + 60_000).await.unwrap(), 2, "{}", a.name);
        let row = a.connections.get("c1", now).await.unwrap();
        assert!(row.is_some(), "{}: counting keeps the connection readable", a.name);
    }
}
