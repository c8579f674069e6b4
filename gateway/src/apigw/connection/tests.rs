//! The connection loop driven through channels on paused time: each timer is reached by
//! `tokio::time::advance`, never by sleeping.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::apigw::{ConnectAuthorizer, Integration, IntegrationError, Limits, builtin_route_keys};

/// Records every invocation; every route answers 200.
#[derive(Debug, Default)]
struct Recorder {
    invocations: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl Integration for Recorder {
    async fn invoke(&self, route_key: &str, event: Value) -> Result<Value, IntegrationError> {
        self.invocations.lock().unwrap().push((route_key.to_owned(), event));
        Ok(json!({ "statusCode": 200 }))
    }
}

impl Recorder {
    fn routes(&self) -> Vec<String> {
        self.invocations.lock().unwrap().iter().map(|(route, _)| route.clone()).collect()
    }

    /// `$disconnect`'s status code and reason.
    fn disconnect(&self) -> Option<(u64, String)> {
        let invocations = self.invocations.lock().unwrap();
        let (_, event) = invocations.iter().find(|(route, _)| route == "$disconnect")?;
        let context = &event["requestContext"];
        Some((context["disconnectStatusCode"].as_u64()?, context["disconnectReason"].as_str()?.to_owned()))
    }
}

fn gateway(limits: Limits) -> (Arc<ApiGateway>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let gateway = ApiGateway {
        stage: "local".into(),
        api_id: "local".into(),
        limits,
        auth: ConnectAuthorizer::None,
        registry: Arc::default(),
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
        integration: Arc::clone(&recorder) as Arc<dyn Integration>,
        route_keys: builtin_route_keys(),
        identity_sources: Vec::new(),
    };
    (Arc::new(gateway), recorder)
}

const CONNECTION_ID: &str = "TestConnection1=";

fn context() -> EventContext {
    EventContext {
        api_id: "local".into(),
        stage: "local".into(),
        domain_name: "localhost".into(),
        connection_id: CONNECTION_ID.into(),
        source_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        user_agent: None,
        connected_at: 0,
        authorizer: serde_json::Map::new(),
    }
}

/// The client's side of a connection: what it sends, what it receives, and the server's task.
struct Client {
    send: mpsc::UnboundedSender<Result<Message, tungstenite::Error>>,
    received: mpsc::UnboundedReceiver<Message>,
    task: JoinHandle<()>,
}

impl Client {
    /// Connects and lets the connection start (its timers run from now).
    async fn connect(gateway: &Arc<ApiGateway>) -> Self {
        let (send, incoming) = mpsc::unbounded_channel();
        let (outgoing, received) = mpsc::unbounded_channel();
        let stream = Box::pin(futures_util::stream::unfold(incoming, |mut incoming| async move {
            incoming.recv().await.map(|frame| (frame, incoming))
        }));
        let sink = Box::pin(futures_util::sink::unfold(outgoing, |outgoing, frame: Message| async move {
            outgoing.send(frame).map(|()| outgoing)
        }));
        let task = tokio::spawn(run(sink, stream, context(), Arc::clone(gateway)));
        settle().await;
        assert!(gateway.registry.get(CONNECTION_ID).is_some(), "the connection has started");
        Self { send, received, task }
    }

    fn send(&self, frame: Message) {
        self.send.send(Ok(frame)).expect("the connection reads");
    }

    /// The next frame the server sends; time runs on (auto-advancing) until it comes.
    async fn next(&mut self) -> Message {
        self.received.recv().await.expect("a frame")
    }

    /// Nothing has been sent to the client yet.
    fn nothing_received(&mut self) -> bool {
        matches!(self.received.try_recv(), Err(TryRecvError::Empty))
    }

    /// Reads until the server's close frame: its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            if let Message::Close(Some(frame)) = self.next().await {
                return frame.code.into();
            }
        }
    }

    /// Waits for the connection to end (`$disconnect` included).
    async fn ended(self) {
        drop(self.send);
        self.task.await.expect("the connection task");
    }
}

/// Lets the connection task handle what is ready, without moving the clock.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_1001_after_ten_minutes() {
    let (gateway, recorder) = gateway(Limits::default());
    let mut client = Client::connect(&gateway).await;
    tokio::time::advance(Duration::from_secs(10 * 60 - 1)).await;
    settle().await;
    assert!(client.nothing_received(), "closed before the idle timeout");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(client.close_code().await, 1001);
    client.ended().await;
    assert_eq!(recorder.disconnect(), Some((1001, "Idle timeout".into())));
}

#[tokio::test(start_paused = true)]
async fn a_frame_from_the_client_restarts_the_idle_timeout() {
    let (gateway, recorder) = gateway(Limits::default());
    let mut client = Client::connect(&gateway).await;
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    client.send(Message::Ping(Default::default()));
    settle().await;
    // Ten minutes after the start, but only one after the ping.
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    settle().await;
    assert!(client.nothing_received(), "the ping was activity");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(client.close_code().await, 1001);
    client.ended().await;
    assert_eq!(recorder.disconnect(), Some((1001, "Idle timeout".into())));
}

#[tokio::test(start_paused = true)]
async fn the_maximum_duration_closes_even_a_busy_connection() {
    let limits = Limits { max_duration_close_code: 4000, ..Limits::default() };
    let (gateway, recorder) = gateway(limits);
    let mut client = Client::connect(&gateway).await;
    // A message every five minutes for two hours: never idle.
    for _ in 0..(2 * 60 / 5 - 1) {
        tokio::time::advance(Duration::from_secs(5 * 60)).await;
        client.send(Message::text(r#"{"action":"ping"}"#));
        settle().await;
        assert!(client.nothing_received(), "closed before two hours");
    }
    tokio::time::advance(Duration::from_secs(5 * 60)).await;
    assert_eq!(client.close_code().await, 4000);
    client.ended().await;
    assert_eq!(recorder.disconnect(), Some((4000, "Maximum connection duration reached".into())));
    assert_eq!(recorder.routes().iter().filter(|r| *r == "ping").count(), 23, "every message was routed");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let limits = Limits { write_timeout: Duration::from_secs(10), ..Limits::default() };
    let (gateway, recorder) = gateway(limits);
    let (_send, incoming) = mpsc::unbounded_channel::<Result<Message, tungstenite::Error>>();
    let stream = Box::pin(futures_util::stream::unfold(incoming, |mut incoming| async move {
        incoming.recv().await.map(|frame| (frame, incoming))
    }));
    // A socket whose writes never complete: the client's window is shut.
    let stuck = Box::pin(futures_util::sink::unfold((), |(), _frame: Message| {
        futures_util::future::pending::<Result<(), std::convert::Infallible>>()
    }));
    let task = tokio::spawn(run(stuck, stream, context(), Arc::clone(&gateway)));
    settle().await;
    assert!(gateway.registry.get(CONNECTION_ID).is_some(), "the connection has started");
    gateway.registry.post(CONNECTION_ID, b"hello", 1024).expect("queued");
    tokio::time::advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert!(!task.is_finished(), "cut off before the write timeout");
    assert!(gateway.registry.get(CONNECTION_ID).is_some());
    tokio::time::advance(Duration::from_millis(1)).await;
    task.await.expect("the connection task");
    assert_eq!(recorder.disconnect(), Some((1006, "the client stopped reading".into())));
    assert!(gateway.registry.get(CONNECTION_ID).is_none(), "@connections answers 410 for it");
}

#[tokio::test(start_paused = true)]
async fn a_burst_over_the_rate_gets_one_error_and_a_sustained_flood_is_closed_with_1008() {
    let limits = Limits { message_rate: 10, message_burst: 20, abuse_limit: 100, ..Limits::default() };
    let (gateway, recorder) = gateway(limits);
    let mut client = Client::connect(&gateway).await;
    for _ in 0..25 {
        client.send(Message::text(r#"{"action":"ping"}"#));
    }
    settle().await;
    let Message::Text(text) = client.next().await else { panic!("a push") };
    assert!(text.contains("RateLimited"), "{text}");
    assert!(client.nothing_received(), "one error for the whole run of refusals");
    assert_eq!(recorder.routes().len(), 20, "the burst was routed, the rest refused");
    // A second later the bucket has refilled by the rate: ten more get through.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..10 {
        client.send(Message::text(r#"{"action":"ping"}"#));
    }
    settle().await;
    assert!(client.nothing_received());
    assert_eq!(recorder.routes().len(), 30);
    // A flood without pause fills the abuse meter.
    for _ in 0..200 {
        client.send(Message::Ping(Default::default()));
    }
    assert_eq!(client.close_code().await, 1008);
    client.ended().await;
    assert_eq!(recorder.disconnect(), Some((1008, "Message rate abuse".into())));
}

#[tokio::test(start_paused = true)]
async fn a_binary_frame_is_closed_with_1003_and_not_routed() {
    let (gateway, recorder) = gateway(Limits::default());
    let mut client = Client::connect(&gateway).await;
    client.send(Message::binary(vec![1u8, 2, 3]));
    assert_eq!(client.close_code().await, 1003);
    client.ended().await;
    assert_eq!(recorder.routes(), ["$disconnect"]);
    assert_eq!(recorder.disconnect().map(|(code, _)| code), Some(1003));
}

#[tokio::test(start_paused = true)]
async fn shutdown_delivers_queued_pushes_then_closes_with_1001() {
    let (gateway, recorder) = gateway(Limits::default());
    let mut client = Client::connect(&gateway).await;
    // Queued while the writer is busy elsewhere: posted and cancelled in one go.
    gateway.registry.post(CONNECTION_ID, br#"{"type":"Pong"}"#, 1024).expect("queued");
    gateway.registry.post(CONNECTION_ID, br#"{"type":"Pong","n":2}"#, 1024).expect("queued");
    gateway.shutdown.cancel();
    let mut texts = Vec::new();
    let code = loop {
        match client.next().await {
            Message::Text(text) => texts.push(text.to_string()),
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(texts, [r#"{"type":"Pong"}"#, r#"{"type":"Pong","n":2}"#]);
    assert_eq!(code, Some(1001));
    client.ended().await;
    assert_eq!(recorder.disconnect(), Some((1001, "Server shutting down".into())));
}

#[tokio::test(start_paused = true)]
async fn delete_closes_with_1000() {
    let (gateway, recorder) = gateway(Limits::default());
    let mut client = Client::connect(&gateway).await;
    gateway.registry.close(CONNECTION_ID).expect("open");
    assert_eq!(client.close_code().await, 1000);
    client.ended().await;
    assert_eq!(recorder.disconnect().map(|(code, _)| code), Some(1000));
}

#[test]
fn a_push_over_the_frame_limit_is_sent_in_frames_of_at_most_the_limit() {
    let text: String = (0..131_072).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let sent = frames(Outbound::Text(text.clone()), 32 * 1024);
    assert_eq!(sent.len(), 4);
    let mut reassembled = Vec::new();
    for (i, message) in sent.into_iter().enumerate() {
        let Message::Frame(frame) = message else { panic!("a raw frame: {message:?}") };
        let header = frame.header();
        let expected = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        assert_eq!(header.opcode, expected);
        assert_eq!(header.is_final, i == 3);
        assert_eq!(frame.payload().len(), 32 * 1024);
        reassembled.extend_from_slice(frame.payload());
    }
    assert_eq!(reassembled, text.as_bytes());
    // At the limit: one plain message.
    let at_limit = frames(Outbound::Text("x".repeat(32 * 1024)), 32 * 1024);
    assert!(matches!(at_limit.as_slice(), [Message::Text(t)] if t.len() == 32 * 1024));
}
