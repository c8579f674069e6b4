//! A connection's message rate limit and abuse meter.
//!
//! Written here rather than taken from a rate-limiting crate on purpose: what API Gateway's
//! emulation needs is not a plain token bucket but a bucket plus an abuse meter that refused
//! frames fill and time drains, with one `RateLimited` error per run of refusals; the crates
//! (governor and the like) answer allow/deny only, and this is forty lines on a paused-time
//! clock (`tokio::time::Instant`), so the connection loop's tests control it.

/// A connection's message rate: a token bucket of `rate` frames a second on average with bursts
/// of `burst`, and an abuse meter. Every refused frame adds one to the meter, which drains
/// `abuse_limit` per `abuse_window`; a full meter is sustained abuse. An allowed frame does not
/// empty the meter, so a client that floods between the frames that get through fills it all
/// the same, while one briefly over the rate drains it again.
#[derive(Debug)]
pub(super) struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    abuse: f64,
    abuse_limit: f64,
    /// Meter units drained per second.
    abuse_drain: f64,
    last: tokio::time::Instant,
    /// Whether the current run of refusals has had its `RateLimited` error: one per run, so
    /// a flood gets at most one error per frame that got through, never one per refused frame.
    warned: bool,
}

/// What the rate limit makes of one more frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow,
    /// Refused; `warn`: the first refusal since a frame got through, which earns the error.
    Refuse {
        warn: bool,
    },
    /// Refused, and the meter is full: the connection is closed.
    Abuse,
}

impl RateLimit {
    pub(super) fn new(limits: &super::Limits, now: tokio::time::Instant) -> Self {
        let window = limits.abuse_window.as_secs_f64();
        Self {
            tokens: f64::from(limits.message_burst),
            rate: f64::from(limits.message_rate),
            burst: f64::from(limits.message_burst),
            abuse: 0.0,
            abuse_limit: f64::from(limits.abuse_limit),
            abuse_drain: if window > 0.0 { f64::from(limits.abuse_limit) / window } else { f64::INFINITY },
            last: now,
            warned: false,
        }
    }

    /// Charges one frame that arrived at `now`.
    pub(super) fn check(&mut self, now: tokio::time::Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        // `max` also turns 0 × ∞ (no time passed, no window) into an empty meter.
        self.abuse = (self.abuse - elapsed * self.abuse_drain).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.warned = false;
            return Verdict::Allow;
        }
        self.abuse += 1.0;
        if self.abuse >= self.abuse_limit {
            return Verdict::Abuse;
        }
        let warn = !self.warned;
        self.warned = true;
        Verdict::Refuse { warn }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(rate: u32, burst: u32, abuse_limit: u32, window: Duration) -> super::super::Limits {
        super::super::Limits {
            message_rate: rate,
            message_burst: burst,
            abuse_limit,
            abuse_window: window,
            ..super::super::Limits::default()
        }
    }

    #[test]
    fn flooding_between_allowed_messages_is_still_abuse() {
        let mut now = tokio::time::Instant::now();
        let mut rate = RateLimit::new(&limits(10, 1, 20, Duration::from_secs(10)), now);
        let mut rounds = 0;
        let verdict = loop {
            rounds += 1;
            assert!(rounds < 100, "never closed");
            // Long enough for one message to get through…
            now += Duration::from_millis(150);
            assert_eq!(rate.check(now), Verdict::Allow);
            // …then a flood of five, with one RateLimited error for all of them.
            let verdicts: Vec<Verdict> = (0..5).map(|_| rate.check(now)).collect();
            if let Some(abuse) = verdicts.iter().find(|v| **v == Verdict::Abuse) {
                break *abuse;
            }
            assert_eq!(verdicts[0], Verdict::Refuse { warn: true });
            assert!(verdicts[1..].iter().all(|v| *v == Verdict::Refuse { warn: false }), "{verdicts:?}");
        };
        assert_eq!(verdict, Verdict::Abuse);
        assert!(rounds > 1, "a single burst of five is not abuse");
    }

    #[test]
    fn a_client_briefly_over_the_rate_is_not_closed() {
        let mut now = tokio::time::Instant::now();
        let mut rate = RateLimit::new(&limits(10, 20, 30, Duration::from_secs(10)), now);
        for _ in 0..10 {
            // Forty at once, then quiet: twenty refused, and the meter drains in the pause.
            let refused: Vec<Verdict> = (0..40).map(|_| rate.check(now)).filter(|v| *v != Verdict::Allow).collect();
            assert_eq!(refused.len(), 20);
            assert!(!refused.contains(&Verdict::Abuse));
            now += Duration::from_secs(10);
        }
    }
}
