//! The API Gateway WebSocket API emulator: the WebSocket endpoint with `$connect`,
//! `$disconnect`, `$default` and custom routes, and the `@connections` Management API.
//!
//! Every route invocation receives the event API Gateway would send, as JSON, through an
//! [`Integration`], so an in-process handler and a Lambda binary see byte-identical input.

mod authorizer;
mod connect;
mod connection;
mod connections;
mod event;
mod listener;
mod rate_limit;
mod registry;
mod routing;
mod upgrade;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use authorizer::AUTHORIZER_TARGET;
pub use connections::management_routes;
pub use event::EventContext;
pub use listener::{GuardedListener, Peer};
pub use registry::{ConnectionHandle, Outbound, PostError, Registry};
pub use upgrade::websocket_route;

/// API Gateway's limit on the length, in characters, of a WebSocket API's URL (scheme, host,
/// path and query string); longer gets 414 before `$connect`. Not configurable in AWS either.
pub const MAX_URL_LENGTH: usize = 4096;

/// API Gateway's limits, as defaults that can be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// API Gateway's frame limit: 32 KB.
    pub max_frame_bytes: usize,
    /// API Gateway's message limit: 128 KB (frames of a fragmented message together).
    pub max_message_bytes: usize,
    /// Pushes queued for one connection before @connections answers 429.
    pub outbound_queue: usize,
    /// How long one frame may take to write; a client that stops reading is disconnected.
    pub write_timeout: Duration,
    /// Closed after this long without a frame from the client (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Closed after this long regardless (API Gateway: 2 hours)…
    pub max_connection_duration: Duration,
    /// …with this close code (API Gateway sends 1001 "Going away").
    pub max_duration_close_code: u16,
    /// Bytes tungstenite reads into at a time. Small, so an idle connection stays cheap; larger
    /// messages grow the buffer as needed.
    pub read_buffer_bytes: usize,
    /// Open connections (HTTP and WebSocket) past which new sockets get a 503. Below the
    /// process's open-file limit (20,000 here), so descriptors are left for everything else.
    pub max_connections: usize,
    /// A connection must complete its upgrade request within this.
    pub handshake_timeout: Duration,
    /// Messages per second one connection may send, on average…
    pub message_rate: u32,
    /// …with bursts of this many. Past it, messages get `Error {code: RateLimited}`.
    pub message_burst: u32,
    /// Sustained abuse: refused messages (and control frames) fill a meter that drains
    /// `abuse_limit` per `abuse_window`; when it holds `abuse_limit`, the connection is closed
    /// (1008). Allowed messages do not empty it, so flooding between the messages that get
    /// through is abuse all the same, while a client briefly over the rate drains it.
    pub abuse_limit: u32,
    /// The window of `abuse_limit`.
    pub abuse_window: Duration,
    /// `Origin`s allowed to connect (browsers send one); empty allows any.
    pub allowed_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            outbound_queue: 64,
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection_duration: Duration::from_secs(2 * 3600),
            max_duration_close_code: 1001,
            read_buffer_bytes: 2 * 1024,
            max_connections: 15_000,
            // Longer than a function's 10 s invocation deadline, so a slow `$connect` usually
            // gets its 500 rather than a dropped socket (the authorizer function gets a third of
            // it); a handshake still unanswered past it is dropped.
            handshake_timeout: Duration::from_secs(30),
            message_rate: 10,
            message_burst: 20,
            abuse_limit: 100,
            abuse_window: Duration::from_secs(10),
            allowed_origins: Vec::new(),
        }
    }
}

/// What the API's routes are integrated with: Lambda handlers, in-process or over a Lambda API.
/// `event` is the API Gateway event JSON; the answer is the Lambda's response JSON.
#[async_trait]
pub trait Integration: Send + Sync {
    async fn invoke(&self, route_key: &str, event: serde_json::Value) -> Result<serde_json::Value, IntegrationError>;
}

#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// The function ran and failed (a Lambda error).
    #[error("the function failed: {0}")]
    FunctionError(String),
    /// The function could not be reached or did not answer in time.
    #[error("the function is unavailable: {0}")]
    Unavailable(String),
    /// The function is at its concurrency limit: Lambda's `429 TooManyRequestsException`, which
    /// API Gateway answers like any integration failure (`Internal server error`).
    #[error("the function is throttled: {0}")]
    Throttled(String),
}

/// How `$connect` requests are authorized.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Local only: `?playerId=NAME` is the identity, unverified.
    None,
    /// A JWT in `?token=` or `Sec-WebSocket-Protocol`, verified by the authorizer's own code
    /// (`matchgate_lambdas::authorizer`) against a JWKS: in this process when the handlers run
    /// here, else by the template's authorizer function (see [`ConnectAuthorizer`]), which the
    /// stack points at this verifier's issuer, audience and token use.
    Jwt(Arc<matchgate_lambdas::authorizer::Verifier>),
}

/// What authorizes a `$connect`: what the stack makes of [`AuthMode`] and of who runs the
/// functions.
#[derive(Debug, Clone)]
pub enum ConnectAuthorizer {
    /// `AuthMode::None`: `?playerId=NAME`, unverified.
    None,
    /// The authorizer's own code (`matchgate_lambdas::authorizer::authorize`), in this process
    /// (embedded mode).
    InProcess(Arc<matchgate_lambdas::authorizer::Verifier>),
    /// The template's `REQUEST` authorizer function, invoked through the integration at
    /// [`AUTHORIZER_TARGET`] with the event API Gateway sends it; its answer decides as API
    /// Gateway's does (`--lambdas`, `--lambda-endpoint`).
    Function,
}

/// Everything the WebSocket API shares across connections.
pub struct ApiGateway {
    pub stage: String,
    pub api_id: String,
    pub limits: Limits,
    pub auth: ConnectAuthorizer,
    pub registry: Arc<Registry>,
    /// Cancelled when the stack shuts down: every connection closes with 1001.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every connection's task, so shutdown can wait for their close frames and `$disconnect`s.
    pub connections: tokio_util::task::TaskTracker,
    pub integration: Arc<dyn Integration>,
    /// The route keys of the API (`$connect`, `$disconnect`, `$default`, custom ones): a message
    /// goes to the route its `action` names, else to `$default`, else it gets API Gateway's
    /// `Forbidden` error frame.
    pub route_keys: BTreeSet<String>,
    /// The `$connect` authorizer's identity sources (`route.request.header.NAME`,
    /// `route.request.querystring.NAME`): a handshake missing one is refused with 401 before
    /// the authorizer runs. Empty: the authorizer runs for every handshake.
    pub identity_sources: Vec<String>,
}

/// The route keys of the built-in configuration: those of `matchgate_lambdas::routes::ROUTES`.
pub fn builtin_route_keys() -> BTreeSet<String> {
    matchgate_lambdas::routes::route_keys().map(str::to_owned).collect()
}

/// Checks that the emulator can evaluate every identity source, as it must to refuse a
/// handshake that lacks one.
pub fn check_identity_sources(sources: &[String]) -> Result<(), String> {
    for source in sources {
        let name = source
            .strip_prefix("route.request.header.")
            .or_else(|| source.strip_prefix("route.request.querystring."))
            .ok_or_else(|| {
                format!(
                    "identity source {source:?}: the local stack evaluates route.request.header.NAME and \
                     route.request.querystring.NAME only"
                )
            })?;
        if name.is_empty() {
            return Err(format!("identity source {source:?} names no header or query parameter"));
        }
    }
    Ok(())
}

impl std::fmt::Debug for ApiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiGateway")
            .field("stage", &self.stage)
            .field("limits", &self.limits)
            .field("route_keys", &self.route_keys)
            .field("identity_sources", &self.identity_sources)
            .finish_non_exhaustive()
    }
}
