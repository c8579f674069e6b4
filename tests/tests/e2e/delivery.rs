//! Issue 4's delivery guarantees, proven on the handlers themselves: nothing is lost across
//! duplicated, reordered and dropped FlexMatch events, vanished connections, a crash between the
//! state write and the push, and disconnects while searching.
//!
//! Every test runs twice, over the in-memory adapters and over the DynamoDB adapters on
//! DynamoDB Local (tables of its own per test). The matchmaker is the real local FlexMatch
//! engine; its events are collected from its channel and handed to the events handler as SNS
//! deliveries in whatever order and multiplicity the test wants. Pushes go to a recording
//! `ConnectionPusher`. Time is a `ManualClock` shared by the handlers and the engine: nothing
//! sleeps, and a backstop run is a plain call to `handlers::backstop` at a chosen instant.
//!
//! The clock starts at the real time because DynamoDB Local deletes items past their TTL on its
//! own clock; the tests only ever move it forward.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use matchgate_gateway::gamelift::sns::sns_event;
use matchgate_gateway::gamelift::{Fleet, FleetConfig, LocalFlexMatch, MatchmakingConfiguration};
use matchgate_lambdas::adapters::dynamodb::{
    DynamoConnections, DynamoPlayers, DynamoTickets, TableNames, client_for_endpoint, create_tables,
};
use matchgate_lambdas::adapters::memory::{ManualClock, MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::adapters::memory_parties::MemoryParties;
use matchgate_lambdas::handlers::{self, MAX_TICKETS_PER_RUN};
use matchgate_lambdas::ports::{
    Clock, ConnectionPusher, Matchmaker, MatchmakerError, PushError, StartMatchmakingRequest, StoreError,
    TicketDescription, TicketRecord, TicketStore,
};
use matchgate_lambdas::routes;
use matchgate_lambdas::{Deps, Settings};
use matchgate_protocol::flexmatch::MatchmakingEventType as E;
use matchgate_protocol::gamelift::MatchmakingTicket;
use matchgate_protocol::{ErrorCode, MatchmakingEvent, Push, TicketStatus};
use matchgate_tests::dynamodb_local::DynamoDbLocal;
use matchgate_tests::teams_rule_set;
use serde_json::{Value, json};
use tokio::sync::mpsc;

// ------------------------------------------------------------------------------------------------
// Matchmaking setup every harness has
// ------------------------------------------------------------------------------------------------

/// Two teams of one: a 2-player match.
const DUEL: &str = "duel";
/// Two teams of two: a 4-player match (fewer than four players never match).
const SQUAD: &str = "squad";
/// Two teams of five with a short request timeout: tickets here wait, then time out.
const CROWD: &str = "crowd";
/// A duel whose players must accept the match.
const DUEL_ACCEPT: &str = "duel-accept";
/// Long enough that no ticket times out unless a test wants it to.
const LONG_TIMEOUT_S: u32 = 3600;
const CROWD_TIMEOUT_S: u32 = 60;
const ACCEPTANCE_TIMEOUT_S: u32 = 30;

const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:000000000000:matchgate-events";
const REGION: &str = "us-east-1";

/// Seeds of the shuffles: each gives a different delivery order.
const SEEDS: [u64; 3] = [1, 0x5eed, 0xdead_beef];

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn real_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_millis() as i64
}

fn configurations() -> Vec<MatchmakingConfiguration> {
    let base = |name: &str, rule_set: &str, timeout: u32| MatchmakingConfiguration {
        name: name.into(),
        rule_set_name: rule_set.into(),
        request_timeout_seconds: timeout,
        ..MatchmakingConfiguration::default()
    };
    vec![
        base(DUEL, DUEL, LONG_TIMEOUT_S),
        base(SQUAD, SQUAD, LONG_TIMEOUT_S),
        base(CROWD, CROWD, CROWD_TIMEOUT_S),
        MatchmakingConfiguration {
            acceptance_required: true,
            acceptance_timeout_seconds: Some(ACCEPTANCE_TIMEOUT_S),
            ..base(DUEL_ACCEPT, DUEL, LONG_TIMEOUT_S)
        },
    ]
}

// ------------------------------------------------------------------------------------------------
// Test doubles: a recording pusher, a counting matchmaker, a ticket store that loses a race
// ------------------------------------------------------------------------------------------------

/// One push that reached a connection.
#[derive(Debug, Clone)]
struct Delivered {
    connection_id: String,
    push: Push,
    frame: String,
}

/// PostToConnection that records what it delivered, in order. A connection it is told is gone
/// answers 410 (`Gone`); while `failing`, every post fails (`Other`), as a crash would lose it.
#[derive(Debug, Default)]
struct RecordingPusher {
    delivered: Mutex<Vec<Delivered>>,
    /// Every post tried, delivered or not: connection IDs in order.
    attempts: Mutex<Vec<String>>,
    gone: Mutex<HashSet<String>>,
    failing: AtomicBool,
}

impl RecordingPusher {
    fn mark(&self) -> usize {
        self.delivered.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<Delivered> {
        self.delivered.lock().unwrap()[mark..].to_vec()
    }

    fn set_gone(&self, connection_id: &str) {
        self.gone.lock().unwrap().insert(connection_id.to_owned());
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn attempts_to(&self, connection_id: &str) -> usize {
        self.attempts.lock().unwrap().iter().filter(|c| *c == connection_id).count()
    }
}

impl ConnectionPusher for RecordingPusher {
    fn post_to_connection<'s, 'c, 'd, 'f>(
        &'s self,
        connection_id: &'c str,
        data: &'d [u8],
    ) -> BoxFuture<'f, Result<(), PushError>>
    where
        's: 'f,
        'c: 'f,
        'd: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            self.attempts.lock().unwrap().push(connection_id.to_owned());
            if self.gone.lock().unwrap().contains(connection_id) {
                return Err(PushError::Gone);
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(PushError::Other("the function crashed before the push".into()));
            }
            let frame = String::from_utf8(data.to_vec()).expect("a push is UTF-8 text");
            let push: Push = serde_json::from_str(&frame).expect("a push parses as a Push");
            self.delivered.lock().unwrap().push(Delivered { connection_id: connection_id.to_owned(), push, frame });
            Ok(())
        })
    }
}

/// The engine as the handlers' matchmaker, counting what DescribeMatchmaking is asked.
#[derive(Debug)]
struct CountingMatchmaker {
    inner: Arc<LocalFlexMatch>,
    clock: Arc<ManualClock>,
    /// (when, the ticket IDs of one DescribeMatchmaking call).
    describes: Mutex<Vec<(i64, Vec<String>)>>,
    stops: Mutex<Vec<String>>,
}

impl Matchmaker for CountingMatchmaker {
    fn start_matchmaking<'s, 'f>(
        &'s self,
        request: StartMatchmakingRequest,
    ) -> BoxFuture<'f, Result<(), MatchmakerError>>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async move { Matchmaker::start_matchmaking(&*self.inner, request).await })
    }

    fn stop_matchmaking<'s, 't, 'f>(&'s self, ticket_id: &'t str) -> BoxFuture<'f, Result<(), MatchmakerError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            self.stops.lock().unwrap().push(ticket_id.to_owned());
            Matchmaker::stop_matchmaking(&*self.inner, ticket_id).await
        })
    }

    fn accept_match<'s, 't, 'p, 'f>(
        &'s self,
        ticket_id: &'t str,
        player_ids: &'p [String],
        accept: bool,
    ) -> BoxFuture<'f, Result<(), MatchmakerError>>
    where
        's: 'f,
        't: 'f,
        'p: 'f,
        Self: 'f,
    {
        Box::pin(async move { Matchmaker::accept_match(&*self.inner, ticket_id, player_ids, accept).await })
    }

    fn describe_matchmaking<'s, 't, 'f>(
        &'s self,
        ticket_ids: &'t [String],
    ) -> BoxFuture<'f, Result<Vec<TicketDescription>, MatchmakerError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            self.describes.lock().unwrap().push((self.clock.now_ms(), ticket_ids.to_vec()));
            Matchmaker::describe_matchmaking(&*self.inner, ticket_ids).await
        })
    }
}

/// A ticket store that stages the races concurrent writers run into. Each hook is armed by a test
/// and fires once:
/// - `armed` (a ticket): its next `replace` loses a race: another writer (an event, a backstop
///   reschedule) updates the ticket between the caller's read and its conditional write;
/// - `ambiguous` (a ticket): its next `replace` lands, then another invocation applies an event of
///   its own, and the caller is told its write failed, as when a request's first attempt landed
///   unseen and its retry found the condition false;
/// - `lockstep` (a count, see [`Self::arm_lockstep`]): the next two reads wait for each other, so
///   two concurrent invocations both read the same version of a ticket before either writes, as
///   two copies of one SNS message handled at once do.
struct RacingTickets {
    inner: Arc<dyn TicketStore>,
    clock: Arc<ManualClock>,
    armed: Mutex<Option<String>>,
    ambiguous: Mutex<Option<String>>,
    /// Reads still to hold at `barrier`.
    lockstep: std::sync::atomic::AtomicUsize,
    barrier: tokio::sync::Barrier,
}

impl RacingTickets {
    fn new(inner: Arc<dyn TicketStore>, clock: Arc<ManualClock>) -> Self {
        Self {
            inner,
            clock,
            armed: Mutex::default(),
            ambiguous: Mutex::default(),
            lockstep: std::sync::atomic::AtomicUsize::new(0),
            barrier: tokio::sync::Barrier::new(2),
        }
    }

    fn arm_lockstep(&self) {
        self.lockstep.store(2, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for RacingTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RacingTickets").field("armed", &self.armed).finish_non_exhaustive()
    }
}

impl TicketStore for RacingTickets {
    fn create<'s, 't, 'f>(&'s self, ticket: &'t TicketRecord) -> BoxFuture<'f, Result<(), StoreError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        self.inner.create(ticket)
    }

    fn get<'s, 't, 'f>(
        &'s self,
        ticket_id: &'t str,
        now_ms: i64,
    ) -> BoxFuture<'f, Result<Option<TicketRecord>, StoreError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let hold = self.lockstep.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            let read = self.inner.get(ticket_id, now_ms).await;
            if hold {
                self.barrier.wait().await;
            }
            read
        })
    }

    fn replace<'s, 't, 'f>(
        &'s self,
        ticket: &'t TicketRecord,
        expected_version: u64,
    ) -> BoxFuture<'f, Result<(), StoreError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let unseen = {
                let mut armed = self.ambiguous.lock().unwrap();
                if armed.as_deref() == Some(ticket.ticket_id.as_str()) { armed.take() } else { None }
            };
            if let Some(ticket_id) = unseen {
                self.inner.replace(ticket, expected_version).await?;
                let now = self.clock.now_ms();
                let current = self.inner.get(&ticket_id, now).await?.expect("the raced ticket exists");
                let mut other = current.clone();
                other.version += 1;
                other.applied_event_ids.push("another-event".to_owned());
                other.applied_by.insert("another-event".to_owned(), "another-invocation".to_owned());
                self.inner.replace(&other, current.version).await?;
                return Err(StoreError::ConditionFailed);
            }
            let race = {
                let mut armed = self.armed.lock().unwrap();
                if armed.as_deref() == Some(ticket.ticket_id.as_str()) { armed.take() } else { None }
            };
            if let Some(ticket_id) = race {
                // The other writer: reads the ticket and writes it back one version on, as the
                // events handler or the backstop's reschedule does.
                let now = self.clock.now_ms();
                let current = self.inner.get(&ticket_id, now).await?.expect("the raced ticket exists");
                let mut other = current.clone();
                other.version += 1;
                other.last_event_at = now;
                self.inner.replace(&other, current.version).await?;
            }
            self.inner.replace(ticket, expected_version).await
        })
    }

    fn due_for_backstop<'s, 'f>(
        &'s self,
        now_ms: i64,
        limit: usize,
    ) -> BoxFuture<'f, Result<Vec<TicketRecord>, StoreError>>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.due_for_backstop(now_ms, limit)
    }
}

// ------------------------------------------------------------------------------------------------
// The harness
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    DynamoDb,
}

/// A small deterministic PRNG (SplitMix64) for seeded shuffles.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Every event twice, in a seeded random order.
fn twice_shuffled(events: &[MatchmakingEvent], rng: &mut Rng) -> Vec<MatchmakingEvent> {
    let mut deliveries: Vec<MatchmakingEvent> = events.iter().chain(events).cloned().collect();
    rng.shuffle(&mut deliveries);
    deliveries
}

#[derive(Debug)]
struct Harness {
    backend: Backend,
    deps: Deps,
    clock: Arc<ManualClock>,
    engine: Arc<LocalFlexMatch>,
    matchmaker: Arc<CountingMatchmaker>,
    pusher: Arc<RecordingPusher>,
    events: mpsc::UnboundedReceiver<MatchmakingEvent>,
    /// connectionId → (playerId, connectedAt).
    connections: HashMap<String, (String, i64)>,
    requests: u64,
}

impl Harness {
    /// Fresh stores of `backend` (DynamoDB tables named after `test`), the engine with every
    /// configuration, and `settings`.
    async fn new(backend: Backend, test: &str, settings: Settings) -> Self {
        let clock = Arc::new(ManualClock::new(real_now_ms()));
        let (events_tx, events) = mpsc::unbounded_channel();
        let engine = Arc::new(LocalFlexMatch::new(
            REGION,
            Fleet::new(FleetConfig::default()),
            Arc::clone(&clock) as Arc<dyn Clock>,
            events_tx,
        ));
        engine.create_rule_set(DUEL, &teams_rule_set(1)).expect("the duel rule set");
        engine.create_rule_set(SQUAD, &teams_rule_set(2)).expect("the squad rule set");
        engine.create_rule_set(CROWD, &teams_rule_set(5)).expect("the crowd rule set");
        for configuration in configurations() {
            engine.create_configuration(configuration).expect("a configuration");
        }
        let matchmaker = Arc::new(CountingMatchmaker {
            inner: Arc::clone(&engine),
            clock: Arc::clone(&clock),
            describes: Mutex::default(),
            stops: Mutex::default(),
        });
        let pusher = Arc::new(RecordingPusher::default());
        let (connections, players, tickets): (
            Arc<dyn matchgate_lambdas::ports::ConnectionStore>,
            Arc<dyn matchgate_lambdas::ports::PlayerStore>,
            Arc<dyn TicketStore>,
        ) = match backend {
            Backend::Memory => (
                Arc::new(MemoryConnections::default()),
                Arc::new(MemoryPlayers::default()),
                Arc::new(MemoryTickets::default()),
            ),
            Backend::DynamoDb => {
                let local = DynamoDbLocal::shared().await.expect("start DynamoDB Local");
                let client = client_for_endpoint(&local.endpoint);
                let names = TableNames::with_prefix(&format!("delivery-{test}-"));
                create_tables(&client, &names).await.expect("create the tables");
                (
                    Arc::new(DynamoConnections::new(client.clone(), names.connections)),
                    Arc::new(DynamoPlayers::new(client.clone(), names.players)),
                    Arc::new(DynamoTickets::new(client, names.tickets)),
                )
            }
        };
        let deps = Deps {
            connections,
            players,
            tickets,
            // No test here forms a party; the in-memory store answers the handlers' party lookups.
            parties: Arc::new(MemoryParties::default()),
            matchmaker: Arc::clone(&matchmaker) as Arc<dyn Matchmaker>,
            pusher: Arc::clone(&pusher) as Arc<dyn ConnectionPusher>,
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            settings,
        };
        Self { backend, deps, clock, engine, matchmaker, pusher, events, connections: HashMap::new(), requests: 0 }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// One matchmaking cycle of the engine, now.
    fn cycle(&self) {
        self.engine.cycle(self.now());
    }

    /// Every event the engine has published since the last drain, in the order it published them.
    fn drain(&mut self) -> Vec<MatchmakingEvent> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// One SNS delivery of `event` to the events handler.
    async fn deliver(&self, event: &MatchmakingEvent) {
        let sns = serde_json::from_value(sns_event(TOPIC_ARN, event)).expect("an SNS event");
        handlers::events(sns, &self.deps).await.expect("the events handler");
    }

    async fn deliver_all(&self, events: &[MatchmakingEvent]) {
        for event in events {
            self.deliver(event).await;
        }
    }

    /// The event API Gateway sends for `route_key` on `connection_id`, with the authorizer's
    /// context flat in `requestContext.authorizer`.
    fn request(&mut self, connection_id: &str, route_key: &str, body: Option<&Value>) -> Value {
        self.requests += 1;
        let (player_id, connected_at) = self.connections[connection_id].clone();
        let now = self.now();
        let event_type = match route_key {
            "$connect" => "CONNECT",
            "$disconnect" => "DISCONNECT",
            _ => "MESSAGE",
        };
        let mut context = json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": format!("ext-{}", self.requests),
            "requestTime": "09/Feb/2024:18:11:43 +0000",
            "messageDirection": "IN",
            "stage": "local",
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "delivery-test"},
            "requestId": format!("req-{}", self.requests),
            "domainName": "127.0.0.1:8080",
            "connectionId": connection_id,
            "apiId": "local",
            "authorizer": {"principalId": player_id, "playerId": player_id, "role": "player"},
        });
        if event_type == "MESSAGE" {
            context["messageId"] = json!(format!("msg-{}", self.requests));
        }
        if event_type == "DISCONNECT" {
            context["disconnectStatusCode"] = json!(1006);
            context["disconnectReason"] = json!("Connection closed abnormally");
        }
        let mut request = json!({"requestContext": context, "isBase64Encoded": false});
        if let Some(body) = body {
            request["body"] = json!(body.to_string());
        }
        request
    }

    /// `$connect` of a new connection of `player_id`; returns its connection ID.
    async fn connect(&mut self, player_id: &str) -> String {
        let connection_id = format!("{player_id}-conn{}", self.connections.len() + 1);
        self.connections.insert(connection_id.clone(), (player_id.to_owned(), self.now()));
        let request = self.request(&connection_id, "$connect", None);
        let response =
            handlers::connect(serde_json::from_value(request).expect("a $connect event"), &self.deps).await.unwrap();
        assert_eq!(response.status_code, 200);
        connection_id
    }

    async fn disconnect(&mut self, connection_id: &str) {
        let request = self.request(connection_id, "$disconnect", None);
        handlers::disconnect(serde_json::from_value(request).expect("a $disconnect event"), &self.deps).await.unwrap();
    }

    /// Sends a client action on `connection_id` to its route's handler; returns the pushes the
    /// connection received meanwhile.
    async fn send(&mut self, connection_id: &str, body: Value) -> Vec<Push> {
        let action = body["action"].as_str().expect("an action").to_owned();
        let request = self.request(connection_id, &action, Some(&body));
        let request = serde_json::from_value(request).expect("a message event");
        let mark = self.pusher.mark();
        let response = routes::dispatch(request, &self.deps).await.expect("the route's handler");
        assert_eq!(response.status_code, 200);
        self.pusher.since(mark).into_iter().filter(|d| d.connection_id == connection_id).map(|d| d.push).collect()
    }

    /// `matchmake` in `configuration`; returns the new ticket's ID.
    async fn matchmake(&mut self, connection_id: &str, configuration: &str) -> String {
        let saved = std::mem::replace(&mut self.deps.settings.configuration_name, configuration.to_owned());
        let pushes = self.send(connection_id, json!({"action": "matchmake"})).await;
        self.deps.settings.configuration_name = saved;
        match pushes.as_slice() {
            [Push::MatchmakingQueued { ticket_id }] => ticket_id.clone(),
            other => panic!("{:?}: matchmake answered {other:?}", self.backend),
        }
    }

    /// `status` on `connection_id`: the one push it answers with.
    async fn status(&mut self, connection_id: &str, ticket_id: Option<&str>) -> Push {
        let mut body = json!({"action": "status"});
        if let Some(id) = ticket_id {
            body["ticketId"] = json!(id);
        }
        let mut pushes = self.send(connection_id, body).await;
        assert_eq!(pushes.len(), 1, "{:?}: status answers with exactly one push: {pushes:?}", self.backend);
        pushes.remove(0)
    }

    async fn accept(&mut self, connection_id: &str, ticket_id: &str, accept: bool) {
        let pushes =
            self.send(connection_id, json!({"action": "accept", "ticketId": ticket_id, "accept": accept})).await;
        assert!(pushes.is_empty(), "{:?}: accept is answered by events only, got {pushes:?}", self.backend);
    }

    async fn backstop(&self) -> handlers::BackstopReport {
        handlers::backstop(&self.deps).await.expect("the backstop")
    }

    async fn ticket(&self, ticket_id: &str) -> TicketRecord {
        self.deps.tickets.get(ticket_id, self.now()).await.unwrap().expect("the ticket exists")
    }

    /// What FlexMatch itself says about a ticket.
    fn truth(&self, ticket_id: &str) -> MatchmakingTicket {
        self.engine.describe(&[ticket_id.to_owned()]).unwrap().pop().expect("the engine knows the ticket")
    }

    fn player_of(&self, connection_id: &str) -> &str {
        &self.connections[connection_id].0
    }

    /// The pushes delivered to any connection of `player_id` since `mark`.
    fn delivered_to(&self, player_id: &str, mark: usize) -> Vec<Delivered> {
        self.pusher.since(mark).into_iter().filter(|d| self.player_of(&d.connection_id) == player_id).collect()
    }

    fn pushes_to(&self, player_id: &str, mark: usize) -> Vec<Push> {
        self.delivered_to(player_id, mark).into_iter().map(|d| d.push).collect()
    }

    /// The MatchmakingSucceeded pushes `player_id` got since `mark`.
    fn successes_to(&self, player_id: &str, mark: usize) -> Vec<Push> {
        self.pushes_to(player_id, mark).into_iter().filter(|p| matches!(p, Push::MatchmakingSucceeded { .. })).collect()
    }
}

/// The match each ticket succeeded in, from the engine's MatchmakingSucceeded events.
fn succeeded_matches(events: &[MatchmakingEvent]) -> HashMap<String, String> {
    events
        .iter()
        .filter(|e| e.detail.event_type == E::MatchmakingSucceeded)
        .flat_map(|e| {
            let match_id = e.detail.match_id.clone().expect("a MatchmakingSucceeded names its match");
            e.detail.tickets.iter().map(move |t| (t.ticket_id.clone(), match_id.clone()))
        })
        .collect()
}

/// Asserts that `push` is `player_id`'s own MatchmakingSucceeded for `ticket_id`, exactly as
/// FlexMatch placed it: game session, address, port, team and the player's own player session.
/// `match_id` is checked when known (a result learned by polling has none: DescribeMatchmaking
/// does not report one).
fn assert_own_success(push: &Push, truth: &MatchmakingTicket, player_id: &str, match_id: Option<&str>, context: &str) {
    let session = truth
        .game_session_connection_info
        .as_ref()
        .unwrap_or_else(|| panic!("{context}: the engine placed no session"));
    let Push::MatchmakingSucceeded {
        ticket_id,
        match_id: pushed_match,
        game_session_arn,
        ip_address,
        dns_name,
        port,
        player_session_id,
        team,
    } = push
    else {
        panic!("{context}: {player_id} expected MatchmakingSucceeded, got {push:?}");
    };
    assert_eq!(ticket_id, &truth.ticket_id, "{context}: {player_id}'s own ticket");
    if let Some(m) = match_id {
        assert_eq!(pushed_match, m, "{context}: {player_id}'s match");
    }
    assert_eq!(game_session_arn.as_deref(), Some(session.game_session_arn.as_str()), "{context}: {player_id} arn");
    assert_eq!(ip_address.as_deref(), Some(session.ip_address.as_str()), "{context}: {player_id} ip");
    assert_eq!(dns_name.as_deref(), Some(session.dns_name.as_str()), "{context}: {player_id} dns");
    assert_eq!(*port, Some(session.port), "{context}: {player_id} port");
    assert_eq!(
        player_session_id.as_deref(),
        Some(truth.player_session_id(player_id).expect("the engine seated the player")),
        "{context}: {player_id} must get its own player session"
    );
    assert_eq!(
        team.as_deref(),
        Some(truth.team(player_id).expect("the player has a team")),
        "{context}: {player_id}'s team"
    );
}

/// Runs `$body(backend)` as one test per store backend.
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$body(super::Backend::Memory).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                super::$body(super::Backend::DynamoDb).await;
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// 1. Every event delivered twice, shuffled
// ------------------------------------------------------------------------------------------------

on_both_backends!(every_event_twice_and_shuffled, every_event_twice_and_shuffled_body);

/// Three 2-player matches, a 4-player match, a cancelled ticket and a timed-out one; every
/// event the engine published is delivered twice, in a seeded random order. Each player gets
/// exactly one terminal push, with its own data, as the last push of its ticket; no push is
/// repeated; a ticket that has ended never changes again.
async fn every_event_twice_and_shuffled_body(backend: Backend) {
    for seed in SEEDS {
        shuffled_run(backend, seed).await;
    }
}

async fn shuffled_run(backend: Backend, seed: u64) {
    let ctx = format!("{backend:?} seed {seed:#x}");
    let mut h = Harness::new(backend, &format!("shuffled-{seed:x}"), Settings::default()).await;
    let duelists = ["d1", "d2", "d3", "d4", "d5", "d6"];
    let squad = ["s1", "s2", "s3", "s4"];
    let mut conn = BTreeMap::new();
    for p in duelists.iter().chain(&squad).chain(&["canceller", "waiter"]) {
        conn.insert(*p, h.connect(p).await);
    }
    let mut ticket = BTreeMap::new();
    for pair in duelists.chunks(2) {
        for p in pair {
            ticket.insert(*p, h.matchmake(&conn[p], DUEL).await);
        }
        h.cycle();
        h.advance(Duration::from_secs(1));
    }
    for p in squad {
        ticket.insert(p, h.matchmake(&conn[p], SQUAD).await);
    }
    h.cycle();
    for p in ["canceller", "waiter"] {
        ticket.insert(p, h.matchmake(&conn[p], CROWD).await);
    }
    // One live ticket per player: a second matchmake is a conflict naming the live ticket.
    let again = h.send(&conn["waiter"], json!({"action": "matchmake"})).await;
    assert!(
        matches!(again.as_slice(), [Push::Error { code: ErrorCode::Conflict, ticket_id: Some(t), .. }] if *t == ticket["waiter"]),
        "{ctx}: a second matchmake must be a conflict: {again:?}"
    );
    let cancelled = h.send(&conn["canceller"], json!({"action": "cancel", "ticketId": ticket["canceller"]})).await;
    assert!(cancelled.is_empty(), "{ctx}: cancel is answered by the event: {cancelled:?}");
    h.advance(Duration::from_secs(u64::from(CROWD_TIMEOUT_S)));
    h.cycle();

    let events = h.drain();
    let kinds: BTreeSet<String> = events.iter().map(|e| format!("{:?}", e.detail.event_type)).collect();
    for kind in [
        "MatchmakingSearching",
        "PotentialMatchCreated",
        "MatchmakingSucceeded",
        "MatchmakingCancelled",
        "MatchmakingTimedOut",
    ] {
        assert!(kinds.contains(kind), "{ctx}: the run must produce {kind}: {kinds:?}");
    }
    let matches = succeeded_matches(&events);

    let mark = h.pusher.mark();
    let mut ended: HashMap<String, TicketRecord> = HashMap::new();
    for event in twice_shuffled(&events, &mut Rng(seed)) {
        h.deliver(&event).await;
        // A terminal state is never overwritten, nor the results that came with it.
        for t in &event.detail.tickets {
            let now = h.ticket(&t.ticket_id).await;
            match ended.get(&t.ticket_id) {
                Some(first) => {
                    assert_eq!(now.state, first.state, "{ctx}: {} left its terminal state", t.ticket_id);
                    assert_eq!(now.results, first.results, "{ctx}: {} results changed after it ended", t.ticket_id);
                }
                None if now.state.status.is_terminal() => {
                    ended.insert(t.ticket_id.clone(), now);
                }
                None => {}
            }
        }
    }

    let mut sessions = BTreeMap::new();
    for (player, ticket_id) in &ticket {
        let pushes = h.pushes_to(player, mark);
        let terminal: Vec<&Push> = pushes.iter().filter(|p| p.is_terminal()).collect();
        assert_eq!(terminal.len(), 1, "{ctx}: {player} must get exactly one terminal push: {pushes:?}");
        assert!(pushes.last().is_some_and(Push::is_terminal), "{ctx}: nothing after {player}'s end: {pushes:?}");
        for (i, p) in pushes.iter().enumerate() {
            assert!(!pushes[..i].contains(p), "{ctx}: {player} got the same push twice: {p:?}");
        }
        let stored = h.ticket(ticket_id).await;
        assert_eq!(stored.results.get(*player), pushes.last(), "{ctx}: {player}'s result is on the ticket");
        let truth = h.truth(ticket_id);
        assert_eq!(stored.state.status, truth.status, "{ctx}: {player}'s ticket ends as FlexMatch says");
        match *player {
            "canceller" => assert!(
                matches!(terminal[0], Push::MatchmakingCancelled { ticket_id: t, .. } if t == ticket_id),
                "{ctx}: {terminal:?}"
            ),
            "waiter" => assert!(
                matches!(terminal[0], Push::MatchmakingTimedOut { ticket_id: t, .. } if t == ticket_id),
                "{ctx}: {terminal:?}"
            ),
            _ => {
                assert_own_success(terminal[0], &truth, player, Some(&matches[ticket_id]), &ctx);
                if let Push::MatchmakingSucceeded { player_session_id: Some(s), .. } = terminal[0] {
                    sessions.insert(*player, s.clone());
                }
            }
        }
    }
    // Ten matched players, ten distinct sessions, and no frame to anyone carries another's.
    assert_eq!(sessions.values().collect::<BTreeSet<_>>().len(), 10, "{ctx}: {sessions:?}");
    for player in ticket.keys() {
        for d in h.delivered_to(player, 0) {
            for (other, session) in &sessions {
                assert!(
                    other == player || !d.frame.contains(session.as_str()),
                    "{ctx}: {player} received {other}'s player session: {}",
                    d.frame
                );
            }
        }
    }
    // The four-player match: one game session, two per team.
    let squad_match: BTreeSet<&String> = squad.iter().map(|p| &matches[&ticket[p]]).collect();
    assert_eq!(squad_match.len(), 1, "{ctx}: the squad is one match");
    let teams: Vec<String> =
        squad.iter().map(|p| h.truth(&ticket[p]).team(p).expect("the player has a team").to_owned()).collect();
    assert_eq!(teams.iter().filter(|t| *t == "red").count(), 2, "{ctx}: {teams:?}");
}

// ------------------------------------------------------------------------------------------------
// 2. Events dropped: the backstop completes the tickets
// ------------------------------------------------------------------------------------------------

on_both_backends!(dropped_events_are_recovered_by_the_backstop, dropped_events_body);

/// Six 2-player matches form, but none of their events after MatchmakingSearching is delivered.
/// The backstop, run every second of the manual clock, completes every ticket after the quiet
/// period: each player gets its own MatchmakingSucceeded. It asks DescribeMatchmaking about at
/// most ten tickets per run, about none before it has been quiet for `backstop_quiet`, about
/// none more often than every `backstop_interval`, and never again about an ended one.
async fn dropped_events_body(backend: Backend) {
    let settings = Settings::default();
    let quiet = settings.backstop_quiet.as_millis() as i64;
    let interval = settings.backstop_interval.as_millis() as i64;
    assert_eq!(MAX_TICKETS_PER_RUN, 10, "the documented limit");
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "dropped", settings).await;
    let duelists: Vec<String> = (1..=12).map(|i| format!("d{i}")).collect();
    // Three squad players never make a match of four: their tickets stay live throughout.
    let waiting: Vec<String> = (1..=3).map(|i| format!("w{i}")).collect();
    let mut conn = BTreeMap::new();
    let mut ticket = BTreeMap::new();
    for p in &duelists {
        conn.insert(p.clone(), h.connect(p).await);
        ticket.insert(p.clone(), h.matchmake(&conn[p], DUEL).await);
    }
    for p in &waiting {
        conn.insert(p.clone(), h.connect(p).await);
        ticket.insert(p.clone(), h.matchmake(&conn[p], SQUAD).await);
    }
    let searching = h.drain();
    assert!(searching.iter().all(|e| e.detail.event_type == E::MatchmakingSearching));
    h.deliver_all(&searching).await;
    let quiet_since = h.now();

    h.cycle();
    // FlexMatch's delivery is best-effort: none of these arrive (until much later, below).
    let lost = h.drain();
    assert_eq!(succeeded_matches(&lost).len(), 12, "{ctx}: six duels formed");

    let mark = h.pusher.mark();
    let mut reports = Vec::new();
    for _ in 0..60 {
        h.advance(Duration::from_secs(1));
        let report = h.backstop().await;
        assert!(report.polled <= MAX_TICKETS_PER_RUN, "{ctx}: {report:?}");
        reports.push(report);
    }

    let describes = h.matchmaker.describes.lock().unwrap().clone();
    let mut polls: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (at, ids) in &describes {
        assert!(ids.len() <= MAX_TICKETS_PER_RUN, "{ctx}: one DescribeMatchmaking asked about {} tickets", ids.len());
        assert!(*at >= quiet_since + quiet, "{ctx}: polled {} ms after the last event", at - quiet_since);
        for id in ids {
            polls.entry(id.clone()).or_default().push(*at);
        }
    }
    assert_eq!(describes.first().map(|(_, ids)| ids.len()), Some(MAX_TICKETS_PER_RUN), "{ctx}: 15 were due at once");
    for (id, times) in &polls {
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= interval, "{ctx}: {id} polled again after {} ms", pair[1] - pair[0]);
        }
    }
    for p in &duelists {
        let times = polls.get(&ticket[p]).map(Vec::len).unwrap_or(0);
        assert_eq!(times, 1, "{ctx}: {p}'s ticket ends on its first poll and is never polled again");
        let pushes = h.pushes_to(p, mark);
        assert_eq!(pushes.len(), 1, "{ctx}: {p} gets its result once: {pushes:?}");
        let truth = h.truth(&ticket[p]);
        assert_own_success(&pushes[0], &truth, p, None, &ctx);
        let stored = h.ticket(&ticket[p]).await;
        assert_eq!(stored.state.status, TicketStatus::Completed, "{ctx}: {p}");
        assert_eq!(stored.backstop_due_at, None, "{ctx}: an ended ticket leaves the backstop's index");
    }
    for p in &waiting {
        // Live for the 30 s after the first poll at 30 or 31 s: polled at least three times.
        let times = polls.get(&ticket[p]).cloned().unwrap_or_default();
        assert!(times.len() >= 3, "{ctx}: a live ticket is polled every interval: {times:?}");
        assert!(h.pushes_to(p, mark).is_empty(), "{ctx}: polling a searching ticket pushes nothing new");
    }
    let polled: usize = reports.iter().map(|r| r.polled).sum();
    assert_eq!(polled, describes.iter().map(|(_, ids)| ids.len()).sum::<usize>(), "{ctx}: one call per run");

    // The lost events were only late: they arrive now, twice and shuffled, after the backstop
    // has already told every player. They change nothing and push nothing.
    let mut recovered = BTreeMap::new();
    for p in &duelists {
        recovered.insert(p.clone(), h.ticket(&ticket[p]).await);
    }
    let mark = h.pusher.mark();
    for e in twice_shuffled(&lost, &mut Rng(7)) {
        h.deliver(&e).await;
    }
    assert!(h.pusher.since(mark).is_empty(), "{ctx}: late events pushed {:?}", h.pusher.since(mark));
    for p in &duelists {
        let now = h.ticket(&ticket[p]).await;
        assert_eq!(now.state, recovered[p].state, "{ctx}: {p}'s ended ticket changed");
        assert_eq!(now.results, recovered[p].results, "{ctx}: {p}'s result changed");
    }
}

on_both_backends!(a_second_proposal_learned_only_by_polling_is_pushed, second_polled_proposal_body);

/// Every proposal event is lost. Ann's first match is learned by the backstop; she accepts, Ben
/// rejects, and the rejection arrives, so Ann is searching again. Her second match's events are lost too:
/// the backstop must learn that proposal as well, although it polled the very same status for
/// her before, and Ann must be asked to accept again.
async fn second_polled_proposal_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let settings = Settings::default();
    let mut h = Harness::new(backend, "second-proposal", settings.clone()).await;
    let ann = h.connect("ann").await;
    let ben = h.connect("ben").await;
    let ann_ticket = h.matchmake(&ann, DUEL_ACCEPT).await;
    let ben_ticket = h.matchmake(&ben, DUEL_ACCEPT).await;
    let searching = h.drain();
    h.deliver_all(&searching).await;
    h.cycle();
    let lost = h.drain();
    assert!(lost.iter().any(|e| e.detail.event_type == E::PotentialMatchCreated), "{ctx}: a first proposal");

    let proposals = |h: &Harness, mark: usize| {
        h.pushes_to("ann", mark).into_iter().filter(|p| matches!(p, Push::PotentialMatchCreated { .. })).count()
    };
    let mark = h.pusher.mark();
    h.advance(settings.backstop_quiet + Duration::from_secs(1));
    h.backstop().await;
    assert_eq!(proposals(&h, mark), 1, "{ctx}: the backstop learned the first proposal");
    assert_eq!(h.ticket(&ann_ticket).await.state.status, TicketStatus::RequiresAcceptance, "{ctx}");

    h.accept(&ann, &ann_ticket, true).await;
    h.accept(&ben, &ben_ticket, false).await;
    let rejected = h.drain();
    assert!(rejected.iter().any(|e| e.detail.event_type == E::AcceptMatchCompleted), "{ctx}: {rejected:?}");
    h.deliver_all(&rejected).await;
    assert_eq!(h.ticket(&ann_ticket).await.state.status, TicketStatus::Searching, "{ctx}: ann searches again");

    let cid = h.connect("cid").await;
    h.matchmake(&cid, DUEL_ACCEPT).await;
    h.cycle();
    let lost_again = h.drain();
    assert!(lost_again.iter().any(|e| e.detail.event_type == E::PotentialMatchCreated), "{ctx}: a second proposal");
    assert_eq!(h.truth(&ann_ticket).status, TicketStatus::RequiresAcceptance, "{ctx}: FlexMatch proposed again");

    let mark = h.pusher.mark();
    h.advance(settings.backstop_quiet + Duration::from_secs(1));
    h.backstop().await;
    assert_eq!(
        proposals(&h, mark),
        1,
        "{ctx}: ann must be asked about her second match: {:?}",
        h.pushes_to("ann", mark)
    );
    assert_eq!(h.ticket(&ann_ticket).await.state.status, TicketStatus::RequiresAcceptance, "{ctx}");
}

on_both_backends!(a_lost_rejection_is_learned_by_polling, lost_rejection_body);

/// Ann accepts her match, Ben rejects it, and the rejection's events are all lost: Ann's ticket
/// still waits for acceptance while FlexMatch has put it back to searching. The backstop must
/// learn that (she is told she is searching again), and then learn her next proposal too.
async fn lost_rejection_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let settings = Settings::default();
    let mut h = Harness::new(backend, "lost-rejection", settings.clone()).await;
    let ann = h.connect("ann").await;
    let ben = h.connect("ben").await;
    let ann_ticket = h.matchmake(&ann, DUEL_ACCEPT).await;
    let ben_ticket = h.matchmake(&ben, DUEL_ACCEPT).await;
    h.cycle();
    let proposed = h.drain();
    h.deliver_all(&proposed).await;
    assert_eq!(h.ticket(&ann_ticket).await.state.status, TicketStatus::RequiresAcceptance, "{ctx}");

    h.accept(&ann, &ann_ticket, true).await;
    h.accept(&ben, &ben_ticket, false).await;
    let lost = h.drain();
    assert!(lost.iter().any(|e| e.detail.event_type == E::AcceptMatchCompleted), "{ctx}: {lost:?}");
    assert_eq!(h.truth(&ann_ticket).status, TicketStatus::Searching, "{ctx}: FlexMatch requeued ann");

    // A poll taken before the ticket's last event (the backstop asked, then the proposal was
    // applied, then the answer arrived) speaks for an older state: it changes nothing.
    let last_event_at = h.ticket(&ann_ticket).await.last_event_at;
    let described = h.deps.matchmaker.describe_matchmaking(std::slice::from_ref(&ann_ticket)).await.unwrap();
    let stale = handlers::event_from(&described[0], last_event_at - 1).expect("an event for SEARCHING");
    let mark = h.pusher.mark();
    h.deliver(&stale).await;
    assert_eq!(h.ticket(&ann_ticket).await.state.status, TicketStatus::RequiresAcceptance, "{ctx}: a stale poll");
    assert!(h.pushes_to("ann", mark).is_empty(), "{ctx}: {:?}", h.pushes_to("ann", mark));

    h.advance(settings.backstop_quiet + Duration::from_secs(1));
    h.backstop().await;
    assert_eq!(h.ticket(&ann_ticket).await.state.status, TicketStatus::Searching, "{ctx}: the poll settles it");
    assert!(
        matches!(h.pushes_to("ann", mark).as_slice(), [Push::MatchmakingSearching { .. }]),
        "{ctx}: ann is told she is searching again: {:?}",
        h.pushes_to("ann", mark)
    );
    // Polling the same answer again changes nothing.
    h.advance(settings.backstop_quiet + Duration::from_secs(1));
    h.backstop().await;
    assert_eq!(h.pushes_to("ann", mark).len(), 1, "{ctx}: {:?}", h.pushes_to("ann", mark));

    let cid = h.connect("cid").await;
    h.matchmake(&cid, DUEL_ACCEPT).await;
    h.cycle();
    let lost_again = h.drain();
    assert!(lost_again.iter().any(|e| e.detail.event_type == E::PotentialMatchCreated), "{ctx}: a new proposal");
    let mark = h.pusher.mark();
    h.advance(settings.backstop_quiet + Duration::from_secs(1));
    h.backstop().await;
    assert!(
        h.pushes_to("ann", mark).iter().any(|p| matches!(p, Push::PotentialMatchCreated { .. })),
        "{ctx}: ann is asked about her new match: {:?}",
        h.pushes_to("ann", mark)
    );
}

// ------------------------------------------------------------------------------------------------
// 3. The client vanished between the match and the push
// ------------------------------------------------------------------------------------------------

on_both_backends!(a_vanished_client_gets_its_result_after_reconnecting, vanished_client_body);

/// Alice's connection is gone (410) by the time her match is pushed: her connection is
/// forgotten, her result stays on the ticket, and after reconnecting `status` without a ticket
/// ID returns her own MatchmakingSucceeded, until the ticket's TTL and not after.
async fn vanished_client_body(backend: Backend) {
    let settings = Settings::default();
    let ticket_ttl = settings.ticket_ttl;
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "vanished", settings).await;
    let alice = h.connect("alice").await;
    let bob = h.connect("bob").await;
    let alice_ticket = h.matchmake(&alice, DUEL).await;
    let bob_ticket = h.matchmake(&bob, DUEL).await;
    let created = h.now();
    let searching = h.drain();
    h.deliver_all(&searching).await;
    h.cycle();
    let events = h.drain();
    let matches = succeeded_matches(&events);

    // Gone without a $disconnect (which is best-effort), a while after connecting: a 410 from a
    // connection younger than the connect settle time is taken for one still in its handshake.
    h.advance(Settings::default().connect_settle);
    h.pusher.set_gone(&alice);
    let mark = h.pusher.mark();
    h.deliver_all(&events).await;
    assert!(h.pusher.attempts_to(&alice) >= 1, "{ctx}: a push to alice was tried");
    assert!(h.pushes_to("alice", mark).is_empty(), "{ctx}: alice's connection is gone");
    assert_eq!(h.deps.connections.get(&alice, h.now()).await.unwrap(), None, "{ctx}: the gone connection is deleted");
    let player = h.deps.players.get("alice").await.unwrap().expect("alice's row");
    assert_eq!(player.connection_id, None, "{ctx}: alice has no connection now");
    let stored = h.ticket(&alice_ticket).await;
    assert_eq!(stored.state.status, TicketStatus::Completed, "{ctx}");
    let alice_truth = h.truth(&alice_ticket);
    assert_own_success(&stored.results["alice"], &alice_truth, "alice", Some(&matches[&alice_ticket]), &ctx);
    let bob_pushes = h.pushes_to("bob", mark);
    assert_own_success(bob_pushes.last().unwrap(), &h.truth(&bob_ticket), "bob", Some(&matches[&bob_ticket]), &ctx);

    // Alice comes back on a new connection and asks.
    h.advance(Duration::from_secs(5));
    let alice2 = h.connect("alice").await;
    let status = h.status(&alice2, None).await;
    assert_own_success(&status, &alice_truth, "alice", Some(&matches[&alice_ticket]), &ctx);
    assert_eq!(status, stored.results["alice"], "{ctx}: status is the very push she missed");
    // Bob's ticket is not hers: NotFound, exactly as for a ticket that does not exist.
    let foreign = h.status(&alice2, Some(&bob_ticket)).await;
    let unknown = h.status(&alice2, Some("ticket-does-not-exist")).await;
    assert!(matches!(foreign, Push::Error { code: ErrorCode::NotFound, .. }), "{ctx}: {foreign:?}");
    assert_eq!(foreign, unknown, "{ctx}: another player's ticket reveals nothing");

    // The result stays until the ticket's TTL (connections end after 2 h, so she reconnects).
    h.clock.advance(ticket_ttl - Duration::from_millis((h.now() - created) as u64) - Duration::from_secs(60));
    let alice3 = h.connect("alice").await;
    let status = h.status(&alice3, None).await;
    assert_own_success(&status, &alice_truth, "alice", Some(&matches[&alice_ticket]), &ctx);
    h.advance(Duration::from_secs(120));
    let alice4 = h.connect("alice").await;
    let status = h.status(&alice4, None).await;
    assert!(matches!(status, Push::Error { code: ErrorCode::NotFound, .. }), "{ctx}: past the TTL: {status:?}");
}

on_both_backends!(a_410_during_a_reconnect_handshake_keeps_the_new_connection, handshake_410_body);

/// Alice reconnects, and her match's push reaches the new connection before API Gateway has
/// finished its handshake, so it answers 410. That must not erase the new connection: the next
/// push reaches her there. (Erasing it would drop every later push, and with a disconnect grace
/// the backstop would stop the ticket of a player who is connected.)
async fn handshake_410_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "handshake-410", Settings::default()).await;
    let alice_old = h.connect("alice").await;
    let bob = h.connect("bob").await;
    let alice_ticket = h.matchmake(&alice_old, DUEL_ACCEPT).await;
    h.matchmake(&bob, DUEL_ACCEPT).await;
    let searching = h.drain();
    h.deliver_all(&searching).await;
    h.advance(Duration::from_secs(60));

    // The old socket dropped; the new one is recorded by $connect but not yet deliverable.
    h.pusher.set_gone(&alice_old);
    let alice_new = h.connect("alice").await;
    h.pusher.set_gone(&alice_new);
    h.cycle();
    let proposed = h.drain();
    assert!(proposed.iter().any(|e| e.detail.event_type == E::PotentialMatchCreated), "{ctx}: a proposal");
    h.deliver_all(&proposed).await;
    assert!(h.pusher.attempts_to(&alice_new) >= 1, "{ctx}: the proposal was pushed to the new connection");
    assert!(
        h.deps.connections.get(&alice_new, h.now()).await.unwrap().is_some(),
        "{ctx}: a 410 during the handshake must not delete the new connection"
    );
    let player = h.deps.players.get("alice").await.unwrap().expect("alice's row");
    assert_eq!(player.connection_id.as_deref(), Some(alice_new.as_str()), "{ctx}: still alice's connection");

    // The handshake completes; the next push of her ticket reaches her.
    h.pusher.gone.lock().unwrap().remove(&alice_new);
    let mark = h.pusher.mark();
    h.accept(&alice_new, &alice_ticket, true).await;
    let accepted = h.drain();
    h.deliver_all(&accepted).await;
    assert!(
        h.pushes_to("alice", mark).iter().any(|p| matches!(p, Push::AcceptMatch { .. })),
        "{ctx}: her acceptance reaches the new connection: {:?}",
        h.pushes_to("alice", mark)
    );
}

// ------------------------------------------------------------------------------------------------
// 4. A crash between the state write and the push
// ------------------------------------------------------------------------------------------------

on_both_backends!(a_crash_between_write_and_push_loses_nothing, crash_body);

/// The events are applied while every push fails, as if the function died right after its
/// conditional write: the state is written, `status` returns each player's result, and a
/// redelivery of the same events (SNS retries) neither changes the ticket nor pushes.
async fn crash_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "crash", Settings::default()).await;
    let players = ["alice", "bob"];
    let mut conn = BTreeMap::new();
    let mut ticket = BTreeMap::new();
    for p in players {
        conn.insert(p, h.connect(p).await);
        ticket.insert(p, h.matchmake(&conn[p], DUEL).await);
    }
    h.cycle();
    let events = h.drain();
    let matches = succeeded_matches(&events);

    h.pusher.set_failing(true);
    let mark = h.pusher.mark();
    h.deliver_all(&events).await;
    assert!(h.pusher.since(mark).is_empty(), "{ctx}: no push got out");
    h.pusher.set_failing(false);

    let mut versions = BTreeMap::new();
    for p in players {
        let stored = h.ticket(&ticket[p]).await;
        assert_eq!(stored.state.status, TicketStatus::Completed, "{ctx}: {p}'s state was written");
        versions.insert(p, stored.version);
        let status = h.status(&conn[p], None).await;
        assert_own_success(&status, &h.truth(&ticket[p]), p, Some(&matches[&ticket[p]]), &ctx);
        assert_eq!(Some(&status), stored.results.get(p), "{ctx}: status repeats the stored result");
    }

    let mark = h.pusher.mark();
    for event in events.iter().chain(&events) {
        h.deliver(event).await;
    }
    assert!(h.pusher.since(mark).is_empty(), "{ctx}: a redelivery pushes nothing: {:?}", h.pusher.since(mark));
    for p in players {
        assert_eq!(h.ticket(&ticket[p]).await.version, versions[p], "{ctx}: a redelivery writes nothing");
    }
    // Nor does the backstop look at an ended ticket again.
    h.advance(Duration::from_secs(60));
    assert_eq!(h.backstop().await.polled, 0, "{ctx}");
    assert!(h.pusher.since(mark).is_empty(), "{ctx}");
}

/// Alice and Bob matched in a duel, with the ticket store wrapped in a [`RacingTickets`]: every
/// event up to the match is delivered; the MatchmakingSucceeded events are returned, not yet.
async fn racing_duel(
    backend: Backend,
    test: &str,
) -> (Harness, Arc<RacingTickets>, BTreeMap<&'static str, String>, Vec<MatchmakingEvent>) {
    let mut h = Harness::new(backend, test, Settings::default()).await;
    let racing = Arc::new(RacingTickets::new(Arc::clone(&h.deps.tickets), Arc::clone(&h.clock)));
    h.deps.tickets = Arc::clone(&racing) as Arc<dyn TicketStore>;
    let mut ticket = BTreeMap::new();
    for p in ["alice", "bob"] {
        let connection = h.connect(p).await;
        ticket.insert(p, h.matchmake(&connection, DUEL).await);
    }
    h.cycle();
    let (succeeded, earlier): (Vec<_>, Vec<_>) =
        h.drain().into_iter().partition(|e| e.detail.event_type == E::MatchmakingSucceeded);
    h.deliver_all(&earlier).await;
    (h, racing, ticket, succeeded)
}

on_both_backends!(a_write_reported_failed_that_landed_still_pushes, ambiguous_write_body);

/// The events handler's write lands but is reported as failed (a retried request whose first
/// attempt landed unseen), and another invocation applies an event of its own before the handler
/// reads the ticket again. The event is applied by this invocation, so its pushes are still to
/// send: each player gets their MatchmakingSucceeded once.
async fn ambiguous_write_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let (h, racing, ticket, succeeded) = racing_duel(backend, "ambiguous").await;

    let mark = h.pusher.mark();
    *racing.ambiguous.lock().unwrap() = Some(ticket["alice"].clone());
    h.deliver_all(&succeeded).await;
    assert!(racing.ambiguous.lock().unwrap().is_none(), "{ctx}: the unseen write happened");
    for p in ["alice", "bob"] {
        let terminal = h.successes_to(p, mark);
        assert_eq!(terminal.len(), 1, "{ctx}: {p} must get exactly one MatchmakingSucceeded: {terminal:?}");
    }
}

on_both_backends!(two_copies_of_an_event_at_once_push_once, concurrent_copies_body);

/// SNS hands two copies of the same MatchmakingSucceeded to two invocations at once: both read
/// the ticket before either writes. One write wins; the other finds the event applied by
/// another invocation and must not push it a second time.
async fn concurrent_copies_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let (h, lockstep, ticket, succeeded) = racing_duel(backend, "concurrent").await;
    let [succeeded] = succeeded.as_slice() else { panic!("{ctx}: one MatchmakingSucceeded: {succeeded:?}") };
    assert_eq!(succeeded.detail.tickets.len(), 2, "{ctx}: one event names both tickets");

    let mut before = BTreeMap::new();
    for p in ["alice", "bob"] {
        before.insert(p, h.ticket(&ticket[p]).await.version);
    }
    let mark = h.pusher.mark();
    lockstep.arm_lockstep();
    tokio::join!(h.deliver(succeeded), h.deliver(succeeded));
    assert_eq!(lockstep.lockstep.load(Ordering::SeqCst), 0, "{ctx}: both invocations read before writing");
    for p in ["alice", "bob"] {
        assert_eq!(h.ticket(&ticket[p]).await.version, before[p] + 1, "{ctx}: {p}'s ticket is written once");
        let terminal = h.successes_to(p, mark);
        assert_eq!(terminal.len(), 1, "{ctx}: {p} must get exactly one MatchmakingSucceeded: {terminal:?}");
        assert_own_success(&terminal[0], &h.truth(&ticket[p]), p, succeeded.detail.match_id.as_deref(), &ctx);
    }
}

// ------------------------------------------------------------------------------------------------
// 5. Disconnect grace
// ------------------------------------------------------------------------------------------------

const GRACE: Duration = Duration::from_secs(60);

fn grace_settings() -> Settings {
    Settings { disconnect_grace: GRACE, ..Settings::default() }
}

on_both_backends!(disconnect_grace_keeps_the_ticket_until_it_runs_out, disconnect_grace_body);

/// With a 60 s grace, two searching players disconnect. Neither ticket is stopped at once nor
/// 30 s later; Pat reconnects and keeps searching long after; Quinn, who does not come back,
/// is stopped once the grace has run out (at most one backstop interval late), and the
/// cancellation is recorded on the ticket for `status`.
async fn disconnect_grace_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "grace", grace_settings()).await;
    let interval = h.deps.settings.backstop_interval;
    let pat = h.connect("pat").await;
    let quinn = h.connect("quinn").await;
    let pat_ticket = h.matchmake(&pat, SQUAD).await;
    let quinn_ticket = h.matchmake(&quinn, SQUAD).await;
    let searching = h.drain();
    h.deliver_all(&searching).await;

    let left = h.now();
    h.disconnect(&pat).await;
    h.disconnect(&quinn).await;
    assert!(h.drain().is_empty(), "{ctx}: nothing is stopped at the disconnect");
    assert!(h.matchmaker.stops.lock().unwrap().is_empty(), "{ctx}");

    let live = |h: &Harness, ticket_id: &str| h.truth(ticket_id).status == TicketStatus::Searching;
    // 30 s of backstop runs, every 5 s: both still searching.
    for _ in 0..6 {
        h.advance(Duration::from_secs(5));
        h.backstop().await;
        let events = h.drain();
        h.deliver_all(&events).await;
        assert!(live(&h, &pat_ticket) && live(&h, &quinn_ticket), "{ctx}: stopped before the grace ran out");
    }
    h.connect("pat").await;
    let mut stopped_at = None;
    while h.now() - left < 3 * GRACE.as_millis() as i64 {
        h.advance(Duration::from_secs(5));
        h.backstop().await;
        let events = h.drain();
        h.deliver_all(&events).await;
        assert!(live(&h, &pat_ticket), "{ctx}: pat came back, his ticket must carry on");
        if stopped_at.is_none() && !live(&h, &quinn_ticket) {
            stopped_at = Some(h.now() - left);
        }
    }
    let stopped_at = stopped_at.unwrap_or_else(|| panic!("{ctx}: quinn's ticket was never stopped"));
    assert!(stopped_at >= GRACE.as_millis() as i64, "{ctx}: stopped {stopped_at} ms after leaving");
    assert!(
        stopped_at <= (GRACE + interval + Duration::from_secs(5)).as_millis() as i64,
        "{ctx}: stopped only {stopped_at} ms after leaving"
    );
    assert_eq!(*h.matchmaker.stops.lock().unwrap(), vec![quinn_ticket.clone()], "{ctx}: only quinn is stopped");
    let stored = h.ticket(&quinn_ticket).await;
    assert_eq!(stored.state.status, TicketStatus::Cancelled, "{ctx}");
    assert!(
        matches!(&stored.results["quinn"], Push::MatchmakingCancelled { ticket_id, .. } if *ticket_id == quinn_ticket),
        "{ctx}: {:?}",
        stored.results
    );
    assert!(!h.ticket(&pat_ticket).await.state.status.is_terminal(), "{ctx}");
    // Quinn, back much later, learns how it ended.
    let quinn2 = h.connect("quinn").await;
    let status = h.status(&quinn2, None).await;
    assert_eq!(status, stored.results["quinn"], "{ctx}");
}

on_both_backends!(by_default_a_reconnect_keeps_the_ticket_and_gets_the_result, default_grace_body);

/// With the default settings, Sam's socket drops while his ticket is searching (`$disconnect`
/// runs) and he reconnects 20 s later: his ticket is not stopped, Tia is matched with him, and
/// the result reaches his new connection, once; `status` there answers with the same result.
async fn default_grace_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "default-grace", Settings::default()).await;
    assert!(!h.deps.settings.disconnect_grace.is_zero(), "{ctx}: the default keeps tickets across a reconnect");
    let sam = h.connect("sam").await;
    let sam_ticket = h.matchmake(&sam, DUEL).await;
    let searching = h.drain();
    h.deliver_all(&searching).await;

    h.disconnect(&sam).await;
    h.advance(Duration::from_secs(20));
    h.backstop().await;
    let events = h.drain();
    h.deliver_all(&events).await;
    assert!(h.matchmaker.stops.lock().unwrap().is_empty(), "{ctx}: the ticket was stopped at the disconnect");
    let sam2 = h.connect("sam").await;
    assert_eq!(h.truth(&sam_ticket).status, TicketStatus::Searching, "{ctx}: still searching after the reconnect");

    let mark = h.pusher.mark();
    let tia = h.connect("tia").await;
    h.matchmake(&tia, DUEL).await;
    h.cycle();
    let events = h.drain();
    h.deliver_all(&events).await;
    let successes = h.successes_to("sam", mark);
    assert_eq!(successes.len(), 1, "{ctx}: exactly one result for sam: {successes:?}");
    assert!(
        h.delivered_to("sam", mark).iter().all(|d| d.connection_id == sam2),
        "{ctx}: pushes after the reconnect go to the new connection"
    );
    let matched = succeeded_matches(&events);
    assert_own_success(&successes[0], &h.truth(&sam_ticket), "sam", matched.get(&sam_ticket).map(String::as_str), &ctx);
    assert_eq!(h.status(&sam2, None).await, successes[0], "{ctx}: status repeats the result");
}

on_both_backends!(a_disconnect_that_races_a_ticket_write_is_not_forgotten, disconnect_race_body);

/// Like the grace test, but `$disconnect`'s write to the ticket loses a race to another writer
/// (an event, or the backstop rescheduling the ticket). The player never comes back, so the
/// ticket must still be stopped once the grace has run out.
async fn disconnect_race_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "grace-race", grace_settings()).await;
    let racing = Arc::new(RacingTickets::new(Arc::clone(&h.deps.tickets), Arc::clone(&h.clock)));
    h.deps.tickets = Arc::clone(&racing) as Arc<dyn TicketStore>;
    let rae = h.connect("rae").await;
    let ticket = h.matchmake(&rae, SQUAD).await;
    let searching = h.drain();
    h.deliver_all(&searching).await;

    let left = h.now();
    *racing.armed.lock().unwrap() = Some(ticket.clone());
    h.disconnect(&rae).await;
    assert!(racing.armed.lock().unwrap().is_none(), "{ctx}: the race happened");
    while h.now() - left < 3 * GRACE.as_millis() as i64 && h.truth(&ticket).status == TicketStatus::Searching {
        h.advance(Duration::from_secs(5));
        h.backstop().await;
        let events = h.drain();
        h.deliver_all(&events).await;
    }
    assert_eq!(
        h.truth(&ticket).status,
        TicketStatus::Cancelled,
        "{ctx}: rae left and never came back, but 3 × the grace later her ticket is still searching: \
         $disconnect's mark on the ticket was lost to a concurrent write"
    );
}

// ------------------------------------------------------------------------------------------------
// 6. Acceptance
// ------------------------------------------------------------------------------------------------

on_both_backends!(a_rejected_match_cancels_the_rejecter_and_requeues_the_others, acceptance_body);

/// Ann and Ben are matched in a configuration that needs acceptance; Ann accepts, Ben rejects.
/// Ben's ticket ends CANCELLED; Ann's returns to SEARCHING, is matched with Cal, both accept and
/// both succeed. Each phase's events are delivered twice and shuffled, and at the end the
/// dropped match's events arrive again, late, among the last phase's.
async fn acceptance_body(backend: Backend) {
    for seed in SEEDS {
        acceptance_run(backend, seed).await;
    }
}

async fn acceptance_run(backend: Backend, seed: u64) {
    let ctx = format!("{backend:?} seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut h = Harness::new(backend, &format!("accept-{seed:x}"), Settings::default()).await;
    let mut conn = BTreeMap::new();
    for p in ["ann", "ben", "cal"] {
        conn.insert(p, h.connect(p).await);
    }
    let mut ticket = BTreeMap::new();
    let mark = h.pusher.mark();

    // Phase 1: the first match is proposed.
    for p in ["ann", "ben"] {
        ticket.insert(p, h.matchmake(&conn[p], DUEL_ACCEPT).await);
    }
    h.cycle();
    let proposed = h.drain();
    let first_match = proposed
        .iter()
        .find(|e| e.detail.event_type == E::PotentialMatchCreated)
        .and_then(|e| e.detail.match_id.clone())
        .expect("a match is proposed");
    for e in twice_shuffled(&proposed, &mut rng) {
        h.deliver(&e).await;
    }
    for p in ["ann", "ben"] {
        assert_eq!(h.ticket(&ticket[p]).await.state.status, TicketStatus::RequiresAcceptance, "{ctx}: {p}");
        assert!(
            h.pushes_to(p, mark).iter().any(|push| matches!(push,
                Push::PotentialMatchCreated { match_id, acceptance_required: true, .. } if *match_id == first_match)),
            "{ctx}: {p} is asked to accept"
        );
    }

    // Phase 2: Ann accepts, Ben rejects.
    h.accept(&conn["ann"], &ticket["ann"], true).await;
    h.accept(&conn["ben"], &ticket["ben"], false).await;
    let rejected = h.drain();
    // SNS redelivers Ann's acceptance at once: each player hears of it once.
    let first_accept = rejected.iter().find(|e| e.detail.event_type == E::AcceptMatch).expect("an AcceptMatch");
    let before = h.pusher.mark();
    h.deliver(first_accept).await;
    h.deliver(first_accept).await;
    for p in ["ann", "ben"] {
        let got = h.pushes_to(p, before);
        assert!(
            matches!(got.as_slice(), [Push::AcceptMatch { accepted_count: 1, player_count: 2, .. }]),
            "{ctx}: {p} must hear of ann's acceptance exactly once: {got:?}"
        );
    }
    for e in twice_shuffled(&rejected, &mut rng) {
        h.deliver(&e).await;
    }
    assert_eq!(h.ticket(&ticket["ben"]).await.state.status, TicketStatus::Cancelled, "{ctx}: the rejecter");
    assert_eq!(h.ticket(&ticket["ann"]).await.state.status, TicketStatus::Searching, "{ctx}: the accepter");
    assert!(
        !h.pushes_to("ann", mark).iter().any(Push::is_terminal),
        "{ctx}: ann's ticket did not end: {:?}",
        h.pushes_to("ann", mark)
    );
    // The dropped match's proposal arrives again, late: it cannot pull Ann back into it.
    let searching_again = h.ticket(&ticket["ann"]).await.state;
    let before = h.pusher.mark();
    for e in twice_shuffled(&proposed, &mut rng) {
        h.deliver(&e).await;
    }
    assert!(h.pusher.since(before).is_empty(), "{ctx}: a late proposal pushed {:?}", h.pusher.since(before));
    assert_eq!(h.ticket(&ticket["ann"]).await.state, searching_again, "{ctx}: ann is still searching");

    // Phase 3: Cal arrives; Ann and Cal are proposed a match.
    ticket.insert("cal", h.matchmake(&conn["cal"], DUEL_ACCEPT).await);
    h.cycle();
    let reproposed = h.drain();
    let second_match = reproposed
        .iter()
        .find(|e| e.detail.event_type == E::PotentialMatchCreated)
        .and_then(|e| e.detail.match_id.clone())
        .expect("a second match is proposed");
    for e in twice_shuffled(&reproposed, &mut rng) {
        h.deliver(&e).await;
    }
    for p in ["ann", "cal"] {
        let stored = h.ticket(&ticket[p]).await;
        assert_eq!(stored.state.status, TicketStatus::RequiresAcceptance, "{ctx}: {p}");
        assert_eq!(stored.state.match_id.as_deref(), Some(second_match.as_str()), "{ctx}: {p}");
    }

    // Phase 4: both accept; the match is placed. Late copies of the first match's events come too.
    h.accept(&conn["ann"], &ticket["ann"], true).await;
    h.accept(&conn["cal"], &ticket["cal"], true).await;
    h.cycle();
    let placed = h.drain();
    let matches = succeeded_matches(&placed);
    let mut last: Vec<MatchmakingEvent> = twice_shuffled(&placed, &mut rng);
    last.extend(proposed.iter().chain(&rejected).cloned());
    rng.shuffle(&mut last);
    for e in &last {
        h.deliver(e).await;
    }

    let all: Vec<&MatchmakingEvent> = proposed.iter().chain(&rejected).chain(&reproposed).chain(&placed).collect();
    for p in ["ann", "ben", "cal"] {
        let pushes = h.pushes_to(p, mark);
        // Each AcceptMatch reports one acceptance and is pushed at most once, however often
        // it is delivered (the state machine alone cannot tell a redelivery from a new one).
        let sent = all
            .iter()
            .filter(|e| e.detail.event_type == E::AcceptMatch)
            .filter(|e| e.detail.tickets.iter().any(|t| t.ticket_id == ticket[p]))
            .count();
        let got = pushes.iter().filter(|x| matches!(x, Push::AcceptMatch { .. })).count();
        assert!(got <= sent, "{ctx}: {p} got {got} AcceptMatch pushes for {sent} AcceptMatch events: {pushes:?}");
        let terminal: Vec<&Push> = pushes.iter().filter(|x| x.is_terminal()).collect();
        assert_eq!(terminal.len(), 1, "{ctx}: {p} must get exactly one terminal push: {pushes:?}");
        assert!(pushes.last().is_some_and(Push::is_terminal), "{ctx}: nothing after {p}'s end: {pushes:?}");
        let stored = h.ticket(&ticket[p]).await;
        assert_eq!(stored.results.get(p), pushes.last(), "{ctx}: {p}'s result is on the ticket");
        if p == "ben" {
            assert!(matches!(terminal[0], Push::MatchmakingCancelled { .. }), "{ctx}: {terminal:?}");
            assert_eq!(stored.state.status, TicketStatus::Cancelled, "{ctx}");
        } else {
            assert_eq!(stored.state.status, TicketStatus::Completed, "{ctx}: {p}");
            assert_eq!(matches[&ticket[p]], second_match, "{ctx}");
            assert_own_success(terminal[0], &h.truth(&ticket[p]), p, Some(&second_match), &ctx);
        }
    }
}

on_both_backends!(a_new_proposal_that_overtakes_the_rejection_is_not_lost, overtaking_proposal_body);

/// SNS delivers out of order: the proposal of Ann's second match arrives before the events
/// that end her first one (Ben's rejection). Ann must still be asked to accept the second match,
/// be able to accept it, and play it.
async fn overtaking_proposal_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "overtake", Settings::default()).await;
    let mut conn = BTreeMap::new();
    for p in ["ann", "ben", "cal"] {
        conn.insert(p, h.connect(p).await);
    }
    let mut ticket = BTreeMap::new();
    for p in ["ann", "ben"] {
        ticket.insert(p, h.matchmake(&conn[p], DUEL_ACCEPT).await);
    }
    h.cycle();
    let proposed = h.drain();
    h.deliver_all(&proposed).await;
    h.accept(&conn["ann"], &ticket["ann"], true).await;
    h.accept(&conn["ben"], &ticket["ben"], false).await;
    let rejected = h.drain(); // held back: delivered after the next match's proposal

    ticket.insert("cal", h.matchmake(&conn["cal"], DUEL_ACCEPT).await);
    h.cycle();
    let reproposed = h.drain();
    let second_match = reproposed
        .iter()
        .find(|e| e.detail.event_type == E::PotentialMatchCreated)
        .and_then(|e| e.detail.match_id.clone())
        .expect("a second match is proposed");
    let mark = h.pusher.mark();
    h.deliver_all(&reproposed).await;
    h.deliver_all(&rejected).await;

    let ann = h.pushes_to("ann", mark);
    assert!(
        ann.iter().any(|p| matches!(p, Push::PotentialMatchCreated { match_id, .. } if *match_id == second_match)),
        "{ctx}: ann was never asked to accept her second match ({second_match}); she got {ann:?}, and her ticket \
         is {:?} while FlexMatch has it {:?}",
        h.ticket(&ticket["ann"]).await.state,
        h.truth(&ticket["ann"]).status
    );
    h.accept(&conn["ann"], &ticket["ann"], true).await;
    h.accept(&conn["cal"], &ticket["cal"], true).await;
    let placed = h.drain();
    h.deliver_all(&placed).await;
    for p in ["ann", "cal"] {
        let stored = h.ticket(&ticket[p]).await;
        assert_own_success(&stored.results[p], &h.truth(&ticket[p]), p, Some(&second_match), &ctx);
    }
}

on_both_backends!(a_dropped_match_stays_dropped_when_its_proposal_arrives_late, late_proposal_body);

/// The proposal of Ann and Ben's match is lost for a while: the backstop learns it by polling
/// (without a match ID: DescribeMatchmaking has none) and both are asked to accept. Ben rejects.
/// When the original PotentialMatchCreated finally arrives, for the first time and twice, the
/// dropped match is remembered: Ann stays searching and nobody is asked again.
async fn late_proposal_body(backend: Backend) {
    let ctx = format!("{backend:?}");
    let mut h = Harness::new(backend, "late-proposal", Settings::default()).await;
    let mut conn = BTreeMap::new();
    let mut ticket = BTreeMap::new();
    for p in ["ann", "ben"] {
        conn.insert(p, h.connect(p).await);
        ticket.insert(p, h.matchmake(&conn[p], DUEL_ACCEPT).await);
    }
    let searching = h.drain();
    h.deliver_all(&searching).await;
    h.cycle();
    let proposed = h.drain(); // delayed
    assert!(proposed.iter().any(|e| e.detail.event_type == E::PotentialMatchCreated), "{ctx}");

    let mark = h.pusher.mark();
    h.advance(h.deps.settings.backstop_quiet);
    h.backstop().await;
    for p in ["ann", "ben"] {
        assert_eq!(h.ticket(&ticket[p]).await.state.status, TicketStatus::RequiresAcceptance, "{ctx}: {p}");
        let got = h.pushes_to(p, mark);
        assert!(
            matches!(got.as_slice(), [Push::PotentialMatchCreated { acceptance_required: true, .. }]),
            "{ctx}: the backstop asks {p} to accept: {got:?}"
        );
    }
    h.accept(&conn["ann"], &ticket["ann"], true).await;
    h.accept(&conn["ben"], &ticket["ben"], false).await;
    let rejected = h.drain();
    for e in twice_shuffled(&rejected, &mut Rng(3)) {
        h.deliver(&e).await;
    }
    let ann = h.ticket(&ticket["ann"]).await;
    assert_eq!(ann.state.status, TicketStatus::Searching, "{ctx}: ann searches again");
    assert_eq!(h.ticket(&ticket["ben"]).await.state.status, TicketStatus::Cancelled, "{ctx}: ben rejected");

    let mark = h.pusher.mark();
    h.deliver_all(&proposed).await;
    h.deliver_all(&proposed).await;
    assert!(h.pusher.since(mark).is_empty(), "{ctx}: the late proposal pushed {:?}", h.pusher.since(mark));
    assert_eq!(h.ticket(&ticket["ann"]).await.state, ann.state, "{ctx}: ann is not pulled back into the dropped match");
}
