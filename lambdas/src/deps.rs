//! What every handler is given: the ports and the settings. Built once per process (once per
//! Lambda cold start) and shared.

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Clock, ConnectionPusher, ConnectionStore, Matchmaker, PartyStore, PlayerStore, TicketStore};

#[derive(Clone)]
pub struct Deps {
    pub connections: Arc<dyn ConnectionStore>,
    pub players: Arc<dyn PlayerStore>,
    pub tickets: Arc<dyn TicketStore>,
    pub parties: Arc<dyn PartyStore>,
    pub matchmaker: Arc<dyn Matchmaker>,
    pub pusher: Arc<dyn ConnectionPusher>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// How long a ticket outlives its player's socket by default: long enough for an ordinary
/// reconnect (a phone changing networks, a client's backoff of a few attempts), so a dropped
/// socket does not cost the player their place in the queue; short enough that a player who is
/// really gone stops holding a seat well before FlexMatch's request timeout.
pub const DEFAULT_DISCONNECT_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Settings {
    /// The FlexMatch matchmaking configuration tickets are started in.
    pub configuration_name: String,
    /// How long a connection row lives: past API Gateway's 2 h maximum connection duration, so
    /// the TTL only ever removes rows of connections whose `$disconnect` never came.
    pub connection_ttl: Duration,
    /// How long a ticket and its results are kept, so a client that reconnects can still ask.
    pub ticket_ttl: Duration,
    /// How long a player who disconnects while searching keeps the ticket before matchmaking is
    /// stopped ([`DEFAULT_DISCONNECT_GRACE`] unless configured). Zero stops it at once.
    pub disconnect_grace: Duration,
    /// The backstop asks FlexMatch about a live ticket that has had no event for this long.
    pub backstop_quiet: Duration,
    /// …and then no more often than this per ticket.
    pub backstop_interval: Duration,
    /// A connection this young that answers 410 is taken to be still in its handshake, not gone:
    /// `$connect` records it before API Gateway can deliver to it, and a push in between gets
    /// 410. Its records are kept (the push is lost, the result stays on the ticket). API
    /// Gateway's integration timeout, 29 s, bounds how long `$connect` can take.
    pub connect_settle: Duration,
    /// The most members a party may hold: the matchmaking rule set's largest team (FlexMatch
    /// keeps a ticket's players on one team), and never more than ten.
    pub max_party_members: usize,
    /// How long a party is kept after its last change.
    pub party_ttl: Duration,
    /// How long a party's invite code admits players after the party's last change.
    pub invite_ttl: Duration,
    /// How many `joinParty` lookups one connection may make per [`INVITE_LOOKUP_WINDOW`], so
    /// invite codes cannot be enumerated.
    pub invite_lookups_per_window: u32,
}

/// The window the invite-lookup rate limit counts in.
pub const INVITE_LOOKUP_WINDOW: Duration = Duration::from_secs(60);

impl Default for Settings {
    fn default() -> Self {
        Self {
            configuration_name: "matchgate-default".into(),
            connection_ttl: Duration::from_secs(3 * 3600),
            ticket_ttl: Duration::from_secs(24 * 3600),
            disconnect_grace: DEFAULT_DISCONNECT_GRACE,
            backstop_quiet: Duration::from_secs(30),
            backstop_interval: Duration::from_secs(10),
            connect_settle: Duration::from_secs(30),
            max_party_members: crate::ports::MAX_PARTY_MEMBERS,
            party_ttl: Duration::from_secs(24 * 3600),
            invite_ttl: Duration::from_secs(3600),
            invite_lookups_per_window: 10,
        }
    }
}
