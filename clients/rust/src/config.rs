//! How a client connects, and how patiently it reconnects.

use std::time::Duration;

use rand::Rng;

/// How the client proves who its player is at `$connect`.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// A JWT offered as a subprotocol (`Sec-WebSocket-Protocol: matchgate.v1, TOKEN`). Preferred:
    /// unlike a query string, the header does not end up in access logs.
    Subprotocol(String),
    /// A JWT in the query string (`?token=`), for stacks deployed with
    /// `TokenIdentitySource=querystring`.
    QueryToken(String),
    /// `?playerId=NAME`: only the local stack started with `--auth none` accepts it.
    PlayerId(String),
}

impl std::fmt::Debug for Auth {
    // Tokens are credentials: never in logs or panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subprotocol(_) => f.write_str("Subprotocol(<token>)"),
            Self::QueryToken(_) => f.write_str("QueryToken(<token>)"),
            Self::PlayerId(id) => f.debug_tuple("PlayerId").field(id).finish(),
        }
    }
}

/// Exponential backoff with full jitter: before reconnect attempt `n` (from 0) the client waits a
/// random time in `[0, min(cap, base × 2^n)]`, so a fleet of clients dropped at once does not
/// come back in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Failed attempts in a row after which the client gives up with
    /// [`ClientError::GaveUp`](crate::ClientError::GaveUp).
    pub max_attempts: u32,
    /// A connection that stayed up this long starts the count again from 0.
    pub stable_after: Duration,
}

impl Default for Backoff {
    /// The routine docs/protocol.md describes: 0.5 s doubling up to 30 s, reset after a minute
    /// up; 10 failed attempts (about 3 minutes of trying on average) before giving up.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_attempts: 10,
            stable_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The longest wait before attempt `attempt`: `min(cap, base × 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }

    /// A random wait before attempt `attempt`, uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.random_range(0..=millis))
    }
}

/// Everything [`Client::connect_with`](crate::Client::connect_with) needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The WebSocket API, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod` or
    /// `ws://127.0.0.1:8080/local`.
    pub url: String,
    pub auth: Auth,
    pub backoff: Backoff,
    /// How long one handshake may take.
    pub connect_timeout: Duration,
    /// How long the client waits for the answer to a `status` before giving up with
    /// [`ClientError::StatusTimeout`](crate::ClientError::StatusTimeout).
    pub status_timeout: Duration,
    /// While a ticket is live, a `status` is sent when nothing was heard of it for this long: a
    /// push can be lost on a socket that stays open, and nothing re-sends it. It also keeps the
    /// connection inside API Gateway's 10-minute idle timeout.
    pub quiet_status_after: Duration,
}

impl Config {
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        Self {
            url: url.into(),
            auth,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            status_timeout: Duration::from_secs(10),
            quiet_status_after: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_is_jittered_below_it() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(500));
        assert_eq!(backoff.ceiling(3), Duration::from_secs(4));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(30));
        assert_eq!(backoff.ceiling(200), Duration::from_secs(30), "no overflow for large attempts");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(4, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        // Full jitter: the waits spread over the whole range instead of clustering at the top.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(2)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(6)));
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let shown = format!("{:?}", Auth::Subprotocol("eyJsecret".into()));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
