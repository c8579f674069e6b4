//! The client's logic over channels instead of sockets, on paused time: backoff, giving up,
//! timeouts, bad frames, resuming. (tests/ holds the tests against the real stack.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use matchgate_protocol::Push;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::transport::{Connection, Frame};

/// The server's end of one fake connection.
struct ServerEnd {
    to_client: mpsc::UnboundedSender<Result<Frame, String>>,
    from_client: mpsc::UnboundedReceiver<String>,
}

impl ServerEnd {
    fn push(&self, frame: &str) {
        let _ = self.to_client.send(Ok(Frame::Text(frame.to_owned())));
    }

    /// The next action the client sent, as JSON.
    async fn received(&mut self) -> Value {
        let text = self.from_client.recv().await.expect("the client sent something");
        serde_json::from_str(&text).expect("the client sends JSON")
    }
}

fn pair() -> (Connection, ServerEnd) {
    let (to_client, frames_rx) = mpsc::unbounded_channel();
    let (sent_tx, from_client) = mpsc::unbounded_channel::<String>();
    let frames = futures_util::stream::unfold(frames_rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let sink = futures_util::sink::unfold(sent_tx, |tx, text: String| async move {
        tx.send(text).map_err(|_| "the server end is gone".to_owned())?;
        Ok::<_, String>(tx)
    });
    (Connection { frames: Box::pin(frames), sink: Box::pin(sink) }, ServerEnd { to_client, from_client })
}

/// Hands out the queued connection results in order, then fails every attempt.
#[derive(Default)]
struct FakeConnector {
    results: Mutex<VecDeque<Result<Connection, ConnectError>>>,
    attempts: Mutex<Vec<Instant>>,
}

impl FakeConnector {
    fn with(results: Vec<Result<Connection, ConnectError>>) -> Arc<Self> {
        Arc::new(Self { results: Mutex::new(results.into()), attempts: Mutex::default() })
    }
}

impl Connector for FakeConnector {
    fn connect(&self) -> BoxFuture<'static, Result<Connection, ConnectError>> {
        self.attempts.lock().unwrap().push(Instant::now());
        let next = self.results.lock().unwrap().pop_front();
        Box::pin(async move { next.unwrap_or_else(|| Err(ConnectError::Failed("connection refused".into()))) })
    }
}

fn timing() -> Timing {
    Timing {
        backoff: Backoff::default(),
        connect_timeout: Duration::from_secs(10),
        status_timeout: Duration::from_secs(10),
        quiet_status_after: Duration::from_secs(30),
    }
}

const QUEUED: &str = r#"{"type":"MatchmakingQueued","ticketId":"t1"}"#;
const SEARCHING: &str = r#"{"type":"MatchmakingSearching","ticketId":"t1"}"#;
const SUCCEEDED: &str = r#"{"type":"MatchmakingSucceeded","ticketId":"t1","matchId":"m1","ipAddress":"10.0.0.1","port":7777,"playerSessionId":"psess-own","team":"red"}"#;
const NOT_FOUND: &str = r#"{"type":"Error","code":"NotFound","message":"no ticket"}"#;

/// Connects over `server`'s first connection and answers the resume routine's `status`.
async fn connected(connector: Arc<FakeConnector>, server: &mut ServerEnd, answer: &str) -> Client {
    let client = Client::start(connector, timing()).await.expect("connects");
    assert_eq!(server.received().await, json!({"action": "status"}), "status first, without ticketId");
    server.push(answer);
    client
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_is_retried_with_jittered_backoff_until_the_bound_then_given_up() {
    let (first, mut server) = pair();
    let connector = FakeConnector::with(vec![Ok(first)]);
    let mut client = connected(Arc::clone(&connector), &mut server, NOT_FOUND).await;
    assert_eq!(client.next_event().await, Some(Event::NoTicket));
    let dropped_at = Instant::now();
    drop(server);

    let mut delays = Vec::new();
    let error = loop {
        match client.next_event().await {
            Some(Event::Reconnecting { attempt, delay }) => {
                assert_eq!(attempt as usize, delays.len() + 1);
                assert!(delay <= Backoff::default().ceiling(attempt - 1), "attempt {attempt} waited {delay:?}");
                delays.push(delay);
            }
            Some(Event::Disconnected { .. }) => {}
            Some(other) => panic!("unexpected {other:?}"),
            None => break client.stopped(),
        }
    };
    let max = Backoff::default().max_attempts;
    assert_eq!(delays.len(), max as usize);
    assert!(
        matches!(&error, Some(ClientError::GaveUp { attempts, last }) if *attempts == max && last.contains("refused")),
        "{error:?}"
    );
    // Each attempt came after its wait (the first connection is not counted).
    let attempts = connector.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 1 + max as usize);
    let mut at = dropped_at;
    for (attempt, delay) in attempts[1..].iter().zip(&delays) {
        assert!(*attempt >= at + *delay);
        at = *attempt;
    }
    assert_eq!(client.matchmake(BTreeMap::new()), Err(error.unwrap()), "calls after giving up say why");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_status_is_an_error_naming_it() {
    let (first, mut server) = pair();
    let mut client = Client::start(FakeConnector::with(vec![Ok(first)]), timing()).await.unwrap();
    assert_eq!(server.received().await, json!({"action": "status"}));
    let started = Instant::now();
    assert_eq!(client.next_event().await, None);
    let error = client.stopped().expect("stopped");
    assert_eq!(error, ClientError::StatusTimeout(Duration::from_secs(10)));
    assert!(error.to_string().contains("`status`"), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn bad_frames_and_unknown_pushes_are_reported_and_the_connection_kept() {
    let (first, mut server) = pair();
    let mut client = connected(FakeConnector::with(vec![Ok(first)]), &mut server, NOT_FOUND).await;
    assert_eq!(client.next_event().await, Some(Event::NoTicket));
    client.matchmake(BTreeMap::from([("us-east-1".to_owned(), 40)])).unwrap();
    assert_eq!(server.received().await, json!({"action": "matchmake", "latencyInMs": {"us-east-1": 40}}));
    server.push(QUEUED);
    server.push("{not json");
    server.push(r#"{"type":"MatchmakingBackfilled","ticketId":"t1","newField":[1]}"#);
    server.push(r#"{"type":"MatchmakingSucceeded","ticketId":"t1"}"#);
    let _ = server.to_client.send(Ok(Frame::Binary(3)));
    server.push(SEARCHING);
    assert_eq!(client.next_event().await, Some(Event::Push(Push::MatchmakingQueued { ticket_id: "t1".into() })));
    assert!(matches!(client.next_event().await, Some(Event::Malformed { frame, .. }) if frame == "{not json"));
    assert!(
        matches!(client.next_event().await, Some(Event::Unknown { type_name, .. }) if type_name == "MatchmakingBackfilled")
    );
    assert!(matches!(client.next_event().await, Some(Event::Malformed { .. })), "a known type with missing fields");
    assert!(matches!(client.next_event().await, Some(Event::Malformed { error, .. }) if error.contains("binary")));
    assert!(matches!(client.next_event().await, Some(Event::Push(Push::MatchmakingSearching { .. }))));
    // Still the same connection: the outcome arrives on it.
    server.push(SUCCEEDED);
    assert!(matches!(client.wait_for_match().await, Ok(Push::MatchmakingSucceeded { .. })));
}

#[tokio::test(start_paused = true)]
async fn after_a_reconnect_status_comes_first_and_a_repeated_outcome_is_reported_once() {
    let (first, mut server) = pair();
    let (second, mut server2) = pair();
    let connector = FakeConnector::with(vec![Ok(first), Ok(second)]);
    let mut client = connected(connector, &mut server, NOT_FOUND).await;
    client.matchmake(BTreeMap::new()).unwrap();
    assert_eq!(server.received().await, json!({"action": "matchmake"}));
    server.push(QUEUED);
    server.push(SUCCEEDED);
    // The socket drops right after the outcome was sent, and the game asks status meanwhile.
    drop(server);
    assert!(
        matches!(client.wait_for_match().await, Ok(Push::MatchmakingSucceeded { player_session_id: Some(p), .. }) if p == "psess-own")
    );
    loop {
        if client.next_event().await == Some(Event::Reconnected) {
            break;
        }
    }
    client.status().unwrap();
    assert_eq!(server2.received().await, json!({"action": "status"}), "the resume routine's status goes first");
    server2.push(SUCCEEDED);
    assert_eq!(server2.received().await, json!({"action": "status", "ticketId": "t1"}), "then the game's, held back");
    server2.push(SUCCEEDED);
    server2.push(r#"{"type":"Pong","connectionId":"c2","playerId":"p"}"#);
    // Both status answers repeat the outcome: neither is reported; the Pong after them is.
    assert!(matches!(client.next_event().await, Some(Event::Push(Push::Pong { .. }))));
}

#[tokio::test(start_paused = true)]
async fn a_refused_reconnect_stops_the_client_asking_for_a_fresh_token() {
    let (first, mut server) = pair();
    let connector = FakeConnector::with(vec![Ok(first), Err(ConnectError::Refused(401))]);
    let mut client = connected(connector, &mut server, NOT_FOUND).await;
    drop(server);
    while client.next_event().await.is_some() {}
    let error = client.stopped().unwrap();
    assert_eq!(error, ClientError::Refused { status: 401 });
    assert!(error.to_string().contains("fresh token"));
}

#[tokio::test(start_paused = true)]
async fn a_live_ticket_that_goes_quiet_is_asked_about() {
    let (first, mut server) = pair();
    let mut client = connected(FakeConnector::with(vec![Ok(first)]), &mut server, SEARCHING).await;
    assert!(matches!(client.next_event().await, Some(Event::Push(Push::MatchmakingSearching { .. }))));
    assert_eq!(client.live_ticket().as_deref(), Some("t1"), "adopted from the status answer");
    let heard = Instant::now();
    assert_eq!(server.received().await, json!({"action": "status", "ticketId": "t1"}));
    assert!(heard.elapsed() >= Duration::from_secs(30));
    server.push(SEARCHING);
    server.push(SUCCEEDED);
    assert!(matches!(client.wait_for_match().await, Ok(Push::MatchmakingSucceeded { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_wait_loses_nothing() {
    let (first, mut server) = pair();
    let mut client = connected(FakeConnector::with(vec![Ok(first)]), &mut server, SEARCHING).await;
    // The game gives up waiting after a second (a cancelled future), then waits again.
    assert!(tokio::time::timeout(Duration::from_secs(1), client.wait_for_match()).await.is_err());
    server.push(SUCCEEDED);
    assert!(matches!(client.wait_for_match().await, Ok(Push::MatchmakingSucceeded { .. })));
    assert_eq!(client.cancel(), Err(ClientError::NoTicket("cancel")), "the ticket has ended");
}
