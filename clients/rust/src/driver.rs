//! The task that owns the connection: it reads frames, sends the client's actions, reconnects
//! with backoff and runs the resume routine after every (re)connect.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use matchgate_protocol::{ClientAction, ErrorCode, Push};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::event::classify;
use crate::session::{Session, Verdict};
use crate::transport::{ConnectError, Connection, Connector, Frame};
use crate::{Backoff, ClientError, Event};

/// How often the client checks whether its live ticket has gone quiet.
const QUIET_CHECK_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) enum Command {
    Send(ClientAction),
    /// `cancel` or `accept` of the current ticket (the driver knows which one it is).
    Cancel,
    Accept(bool),
    /// `status` of the current ticket, or of the latest one.
    Status,
    Close,
}

/// The timing knobs of a [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) backoff: Backoff,
    pub(crate) connect_timeout: Duration,
    pub(crate) status_timeout: Duration,
    pub(crate) quiet_status_after: Duration,
}

/// What the handle shares with the driver: the current ticket (for `cancel`/`accept` errors)
/// and why the driver stopped.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) live_ticket: Option<String>,
    pub(crate) stopped: Option<ClientError>,
}

pub(crate) struct Driver {
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) timing: Timing,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) session: Session,
    /// Actions that wait for the resume routine's `status` to be answered ("ask before acting").
    pub(crate) outbox: VecDeque<ClientAction>,
    pub(crate) rng: StdRng,
}

/// Why one connection ended.
enum Ended {
    Closed,
    Lost(String),
    Fatal(ClientError),
}

/// A `status` the client itself sent and waits on.
struct PendingStatus {
    deadline: Instant,
    /// Sent by the resume routine (or the quiet check), not asked for by the game: a `NotFound`
    /// answer is reported as [`Event::NoTicket`].
    own: bool,
}

impl Driver {
    pub(crate) fn new(
        connector: Arc<dyn Connector>,
        timing: Timing,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        Self {
            connector,
            timing,
            commands,
            events,
            shared,
            session: Session::default(),
            outbox: VecDeque::new(),
            rng: StdRng::from_os_rng(),
        }
    }

    /// Serves `first`, then every reconnection, until the game closes the client or the client
    /// gives up; records why.
    pub(crate) async fn run(mut self, first: Connection) {
        let mut connection = first;
        let mut attempt = 0;
        let stopped = loop {
            let up_since = Instant::now();
            match self.serve(connection).await {
                Ended::Closed => break ClientError::Closed,
                Ended::Fatal(e) => break e,
                Ended::Lost(reason) => {
                    tracing::info!(reason, "matchgate connection lost; reconnecting");
                    self.emit(Event::Disconnected { reason: reason.clone() });
                    if up_since.elapsed() >= self.timing.backoff.stable_after {
                        attempt = 0;
                    }
                    match self.reconnect(&mut attempt, reason).await {
                        Ok(next) => connection = next,
                        Err(Ended::Fatal(e)) => break e,
                        Err(_) => break ClientError::Closed,
                    }
                }
            }
        };
        if stopped != ClientError::Closed {
            tracing::warn!(error = %stopped, "matchgate client stopped");
        }
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).stopped = Some(stopped);
    }

    async fn reconnect(&mut self, attempt: &mut u32, mut last: String) -> Result<Connection, Ended> {
        loop {
            if *attempt >= self.timing.backoff.max_attempts {
                return Err(Ended::Fatal(ClientError::GaveUp { attempts: *attempt, last }));
            }
            let delay = self.timing.backoff.delay(*attempt, &mut self.rng);
            *attempt += 1;
            self.emit(Event::Reconnecting { attempt: *attempt, delay });
            let wake = Instant::now() + delay;
            self.queue_commands_until(sleep_until(wake)).await?;
            let connect = timeout(self.timing.connect_timeout, self.connector.connect());
            match self.queue_commands_until(connect).await? {
                Ok(Ok(connection)) => {
                    self.emit(Event::Reconnected);
                    return Ok(connection);
                }
                Ok(Err(ConnectError::Refused(status))) => return Err(Ended::Fatal(ClientError::Refused { status })),
                Ok(Err(ConnectError::Failed(e))) => last = e,
                Err(_) => last = format!("the handshake took over {:?}", self.timing.connect_timeout),
            }
        }
    }

    /// Awaits `future` while keeping the game's actions for the next connection.
    async fn queue_commands_until<F: Future>(&mut self, future: F) -> Result<F::Output, Ended> {
        tokio::pin!(future);
        loop {
            tokio::select! {
                output = &mut future => return Ok(output),
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return Err(Ended::Closed),
                    Some(command) => {
                        if let Some(action) = self.action_for(command) {
                            self.outbox.push_back(action);
                        }
                    }
                },
            }
        }
    }

    /// One connection, from the resume routine's `status` to its end.
    async fn serve(&mut self, connection: Connection) -> Ended {
        let Connection { mut frames, mut sink } = connection;
        // Ask before acting: the latest ticket's state, then whatever the game asked for meanwhile.
        let resume = ClientAction::Status { ticket_id: None };
        if let Err(e) = sink.send(frame_of(&resume)).await {
            return Ended::Lost(e);
        }
        let mut pending = Some(PendingStatus { deadline: Instant::now() + self.timing.status_timeout, own: true });
        let mut last_heard = Instant::now();
        let mut quiet_check = tokio::time::interval_at(Instant::now() + QUIET_CHECK_EVERY, QUIET_CHECK_EVERY);
        loop {
            let status_deadline = pending.as_ref().map(|p| p.deadline);
            let mut to_send: Vec<ClientAction> = Vec::new();
            tokio::select! {
                frame = frames.next() => {
                    let text = match frame {
                        Some(Ok(Frame::Text(text))) => text,
                        Some(Ok(Frame::Binary(len))) => {
                            self.emit(Event::Malformed { frame: String::new(), error: format!("a binary frame of {len} bytes") });
                            continue;
                        }
                        Some(Err(e)) => return Ended::Lost(e),
                        None => return Ended::Lost("the server closed the connection".into()),
                    };
                    let event = classify(&text);
                    let Event::Push(push) = event else {
                        self.emit(event);
                        continue;
                    };
                    last_heard = Instant::now();
                    let answered = pending.take();
                    if answered.is_some() {
                        to_send.extend(self.outbox.drain(..));
                    }
                    if let Some(follow_up) = self.on_push(push, answered.is_some_and(|p| p.own)) {
                        pending = Some(PendingStatus { deadline: Instant::now() + self.timing.status_timeout, own: true });
                        to_send.push(follow_up);
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { return Ended::Closed };
                    if let Command::Close = command {
                        let _ = sink.close().await;
                        return Ended::Closed;
                    }
                    let Some(action) = self.action_for(command) else { continue };
                    if pending.as_ref().is_some_and(|p| p.own) {
                        self.outbox.push_back(action);
                        continue;
                    }
                    if matches!(action, ClientAction::Status { .. }) {
                        pending = Some(PendingStatus { deadline: Instant::now() + self.timing.status_timeout, own: false });
                    }
                    to_send.push(action);
                }
                () = sleep_until_or_never(status_deadline) => {
                    return Ended::Fatal(ClientError::StatusTimeout(self.timing.status_timeout));
                }
                _ = quiet_check.tick() => {
                    if let Some(ticket_id) = self.session.live_ticket()
                        && pending.is_none()
                        && last_heard.elapsed() >= self.timing.quiet_status_after
                    {
                        to_send.push(ClientAction::Status { ticket_id: Some(ticket_id.to_owned()) });
                        pending = Some(PendingStatus { deadline: Instant::now() + self.timing.status_timeout, own: true });
                    }
                }
            }
            for action in to_send {
                if let Err(e) = sink.send(frame_of(&action)).await {
                    // Not sent: it goes out after the reconnect's status.
                    self.outbox.push_front(action);
                    return Ended::Lost(e);
                }
            }
        }
    }

    /// Reports a push unless it is a repeat; returns a `status` to send when a `Conflict` named
    /// the player's live ticket.
    fn on_push(&mut self, push: Push, answers_own_status: bool) -> Option<ClientAction> {
        let verdict = self.session.on_push(&push);
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).live_ticket =
            self.session.live_ticket().map(str::to_owned);
        match verdict {
            Verdict::Deliver => {
                if answers_own_status && matches!(push, Push::Error { code: ErrorCode::NotFound, .. }) {
                    self.emit(Event::NoTicket);
                } else {
                    self.emit(Event::Push(push));
                }
                None
            }
            Verdict::Repeat | Verdict::Stale => None,
            Verdict::Adopt(ticket_id) => {
                self.emit(Event::Push(push));
                Some(ClientAction::Status { ticket_id: Some(ticket_id) })
            }
        }
    }

    fn action_for(&mut self, command: Command) -> Option<ClientAction> {
        let ticket = self.session.current_ticket().map(str::to_owned);
        match command {
            Command::Send(action) => Some(action),
            Command::Status => Some(ClientAction::Status { ticket_id: ticket }),
            Command::Cancel => ticket.map(|ticket_id| ClientAction::Cancel { ticket_id }),
            Command::Accept(accept) => ticket.map(|ticket_id| ClientAction::Accept { ticket_id, accept }),
            Command::Close => None,
        }
    }

    fn emit(&self, event: Event) {
        // The game may have dropped its handle's stream; the driver then just carries on.
        let _ = self.events.send(event);
    }
}

fn frame_of(action: &ClientAction) -> String {
    serde_json::to_string(action).unwrap_or_default()
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
