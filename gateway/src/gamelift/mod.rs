//! The local GameLift side: FlexMatch matchmaking over real rule sets, placement on a
//! simulated fleet, and FlexMatch's events delivered SNS-shaped to the events function.

pub mod api;
pub mod engine;
pub mod placement;
pub mod sns;

pub use engine::{GameLiftError, LocalFlexMatch};
pub use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration};
pub use placement::{Fleet, FleetConfig};
