//! A matchgate game client that gets reconnection right.
//!
//! ```no_run
//! # async fn run(token: String) -> Result<(), matchgate_client::ClientError> {
//! use matchgate_client::{Auth, Client};
//! use matchgate_protocol::Push;
//!
//! let mut client = Client::connect("wss://example.execute-api.eu-west-1.amazonaws.com/prod", Auth::Subprotocol(token)).await?;
//! client.matchmake([("eu-west-1".to_owned(), 40)].into())?;
//! match client.wait_for_match().await? {
//!     Push::MatchmakingSucceeded { ip_address, port, player_session_id, .. } => {
//!         // connect to the game server with the player's own player session ID
//!     }
//!     other => println!("no match: {other:?}"), // MatchmakingTimedOut, ...Cancelled, ...Failed
//! }
//! # Ok(()) }
//! ```
//!
//! The client keeps one WebSocket. When it drops, the client reconnects by itself with
//! exponential backoff and full jitter ([`Backoff`]), asks `status` before sending anything else
//! (docs/protocol.md, "Reconnect routine"), and reports every push once: a result that arrives
//! again (a `status` answer, a push that crossed the reconnect) is not reported twice. It gives
//! up with [`ClientError::GaveUp`] after [`Backoff::max_attempts`] failed attempts in a row.
//!
//! Every method is cancellation-safe: dropping a call's future loses nothing but that call (an
//! action is either queued whole or not at all; an event is either returned or stays queued).
//! No server input makes it panic: unknown pushes and malformed frames are reported as
//! [`Event::Unknown`] and [`Event::Malformed`], and the connection is kept.

mod config;
mod driver;
mod error;
mod event;
mod session;
mod transport;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::Stream;
use matchgate_protocol::{ClientAction, ErrorCode, Push};
use tokio::sync::mpsc;

pub use config::{Auth, Backoff, Config};
use driver::{Command, Driver, Shared, Timing};
pub use error::ClientError;
pub use event::Event;
use transport::{ConnectError, Connector, WebSocketConnector};

/// One player's connection to matchgate. Dropping it closes the connection.
///
/// It is a [`Stream`] of [`Event`]s; [`Client::wait_for_match`] reads that stream up to the
/// current ticket's outcome.
#[derive(Debug)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    shared: Arc<Mutex<Shared>>,
}

impl Client {
    /// Connects to `url` as the player `auth` names, with the default [`Config`]. Fails if this
    /// first connection fails; from then on the client reconnects by itself.
    pub async fn connect(url: &str, auth: Auth) -> Result<Self, ClientError> {
        Self::connect_with(Config::new(url, auth)).await
    }

    pub async fn connect_with(config: Config) -> Result<Self, ClientError> {
        let connector = WebSocketConnector::new(&config.url, &config.auth)?;
        let timing = Timing {
            backoff: config.backoff,
            connect_timeout: config.connect_timeout,
            status_timeout: config.status_timeout,
            quiet_status_after: config.quiet_status_after,
        };
        Self::start(Arc::new(connector), timing).await
    }

    async fn start(connector: Arc<dyn Connector>, timing: Timing) -> Result<Self, ClientError> {
        let first = match tokio::time::timeout(timing.connect_timeout, connector.connect()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(ConnectError::Refused(status))) => return Err(ClientError::Refused { status }),
            Ok(Err(ConnectError::Failed(e))) => return Err(ClientError::Connect(e)),
            Err(_) => {
                return Err(ClientError::Connect(format!("the handshake took over {:?}", timing.connect_timeout)));
            }
        };
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let driver = Driver::new(connector, timing, commands_rx, events_tx, Arc::clone(&shared));
        tokio::spawn(driver.run(first));
        Ok(Self { commands, events, shared })
    }

    /// Asks for a match, with the latencies the client measured to each AWS region (ms). While
    /// the client is reconnecting the request waits for the resume routine's `status`; if that
    /// shows a live ticket, the server answers `Conflict` and the client adopts that ticket.
    pub fn matchmake(&self, latency_in_ms: BTreeMap<String, u32>) -> Result<(), ClientError> {
        let latency_in_ms = (!latency_in_ms.is_empty()).then_some(latency_in_ms);
        self.command(Command::Send(ClientAction::Matchmake { latency_in_ms }))
    }

    /// Stops matchmaking for the current ticket; `MatchmakingCancelled` follows.
    pub fn cancel(&self) -> Result<(), ClientError> {
        self.require_ticket("cancel")?;
        self.command(Command::Cancel)
    }

    /// Answers a proposed match (`PotentialMatchCreated` with `acceptanceRequired`).
    pub fn accept(&self, accept: bool) -> Result<(), ClientError> {
        self.require_ticket("accept")?;
        self.command(Command::Accept(accept))
    }

    /// Asks for the current ticket's latest push (of the player's latest ticket when the client
    /// knows none). A repeat of a push already reported is not reported again.
    pub fn status(&self) -> Result<(), ClientError> {
        self.command(Command::Status)
    }

    /// Sends `ping`; the server answers `Pong {connectionId, playerId}`.
    pub fn ping(&self) -> Result<(), ClientError> {
        self.command(Command::Send(ClientAction::Ping {}))
    }

    /// The current ticket while it is live.
    pub fn live_ticket(&self) -> Option<String> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).live_ticket.clone()
    }

    /// The next event; `None` once the client has stopped ([`Client::stopped`] says why).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Why the client stopped, once it has.
    pub fn stopped(&self) -> Option<ClientError> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).stopped.clone()
    }

    /// Reads events until the current ticket ends, and returns how: the player's own
    /// `MatchmakingSucceeded`, or `MatchmakingTimedOut`, `MatchmakingCancelled` or
    /// `MatchmakingFailed`. Other events are read and dropped (use the stream to see them).
    /// Errors: the server refused the matchmaking request ([`ClientError::Server`]), or the
    /// client stopped (gave up reconnecting, `status` unanswered, ...).
    pub async fn wait_for_match(&mut self) -> Result<Push, ClientError> {
        loop {
            match self.events.recv().await {
                Some(Event::Push(push)) if push.is_terminal() => return Ok(push),
                Some(Event::Push(Push::Error { code, message, .. })) if ends_the_wait(code) => {
                    return Err(ClientError::Server { code, message });
                }
                Some(_) => {}
                None => return Err(self.stopped().unwrap_or(ClientError::Closed)),
            }
        }
    }

    /// Closes the connection; no reconnect follows.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands.send(command).map_err(|_| self.stopped().unwrap_or(ClientError::Closed))
    }

    fn require_ticket(&self, what: &'static str) -> Result<(), ClientError> {
        if let Some(stopped) = self.stopped() {
            return Err(stopped);
        }
        match self.live_ticket() {
            Some(_) => Ok(()),
            None => Err(ClientError::NoTicket(what)),
        }
    }
}

/// The `Error` codes that answer a matchmaking request with "no": nothing is coming to wait for.
fn ends_the_wait(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::InvalidRequest | ErrorCode::MatchmakingRejected | ErrorCode::Forbidden)
}

impl Stream for Client {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests;
