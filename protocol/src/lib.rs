//! matchgate's wire types, with no I/O.
//!
//! - [`action`]: what a game client sends (JSON text frames routed on `action`);
//! - [`push`]: what the gateway pushes back (JSON text frames tagged by `type`);
//! - [`flexmatch`]: FlexMatch's matchmaking events as they arrive through SNS;
//! - [`gamelift`]: GameLift's FlexMatch types (attributes, players, configurations) in its API's shapes;
//! - [`ticket`]: the ticket state machine every event is applied through;
//! - [`schema`]: JSON Schema of the client actions and pushes, for client developers.
//! - [`party`]: parties of players who queue together, as their members see them.

pub mod action;
pub mod flexmatch;
pub mod gamelift;
pub mod party;
pub mod push;
pub mod schema;
pub mod ticket;

pub use action::{ActionError, ClientAction};

/// The WebSocket subprotocol a client offers together with its token
/// (`Sec-WebSocket-Protocol: matchgate.v1, TOKEN`); `$connect` selects it, never the token.
pub const SUBPROTOCOL: &str = "matchgate.v1";
pub use flexmatch::{
    EventPlayer, EventTicket, GameSessionInfo, MatchmakingEvent, MatchmakingEventDetail, MatchmakingEventType,
};
pub use push::{ErrorCode, PUSH_TYPES, Push};
pub use ticket::{TicketStatus, Transition};
