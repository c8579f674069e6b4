//! The ticket state machine.
//!
//! FlexMatch publishes events best-effort, SNS delivers them at least once and in any order,
//! and a backstop may learn the same outcome by polling. Every one of those inputs goes through
//! [`TicketState::apply`], which only moves a ticket forward:
//!
//! ```text
//! QUEUED → SEARCHING → REQUIRES_ACCEPTANCE → PLACING → COMPLETED
//!                 ↑            │
//!                 └────────────┘  (the match was rejected or timed out: back to searching)
//! any non-terminal → FAILED | CANCELLED | TIMED_OUT | COMPLETED
//! ```
//!
//! A match that was dropped is remembered, so a late or repeated event about it cannot pull
//! the ticket back into it. A terminal state is never left.

use serde::{Deserialize, Serialize};

use crate::flexmatch::{MatchmakingEventDetail, MatchmakingEventType};

/// How many dropped matches a ticket remembers; FlexMatch drops a ticket's proposed matches
/// only on rejection or acceptance timeout, so a handful covers any realistic history.
pub const MAX_CLOSED_MATCHES: usize = 16;

/// A ticket's status, with DescribeMatchmaking's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    Queued,
    Searching,
    RequiresAcceptance,
    Placing,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl TicketStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut)
    }

    /// DescribeMatchmaking's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Searching => "SEARCHING",
            Self::RequiresAcceptance => "REQUIRES_ACCEPTANCE",
            Self::Placing => "PLACING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Searching,
            Self::RequiresAcceptance,
            Self::Placing,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
            Self::TimedOut,
        ]
        .into_iter()
        .find(|s2| s2.as_str() == s)
    }
}

/// What the state machine knows of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketState {
    pub status: TicketStatus,
    /// The match the ticket is in, from PotentialMatchCreated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_id: Option<String>,
    /// Matches that were proposed and then dropped (rejected or not accepted in time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_match_ids: Vec<String>,
}

/// The outcome of applying one event to one ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The ticket moved (or, for AcceptMatch, learned something new): store `next` and push.
    Advance(TicketState),
    /// Nothing changes and nothing is pushed: a duplicate, a late event, or a terminal ticket.
    Ignore(&'static str),
}

impl TicketState {
    pub fn new() -> Self {
        Self { status: TicketStatus::Queued, match_id: None, closed_match_ids: Vec::new() }
    }

    fn with(&self, status: TicketStatus, match_id: Option<&str>) -> Self {
        Self { status, match_id: match_id.map(str::to_owned), closed_match_ids: self.closed_match_ids.clone() }
    }

    /// Remembers a dropped match, forgetting the oldest past [`MAX_CLOSED_MATCHES`].
    fn close(&mut self, match_id: Option<&str>) {
        if let Some(m) = match_id {
            self.closed_match_ids.push(m.to_owned());
            if self.closed_match_ids.len() > MAX_CLOSED_MATCHES {
                self.closed_match_ids.remove(0);
            }
        }
    }

    fn is_closed(&self, match_id: Option<&str>) -> bool {
        match_id.is_some_and(|m| self.closed_match_ids.iter().any(|c| c == m))
    }

    /// Applies one FlexMatch event to this ticket.
    pub fn apply(&self, event: &MatchmakingEventDetail) -> Transition {
        use MatchmakingEventType as E;
        use TicketStatus as S;
        if self.status.is_terminal() {
            return Transition::Ignore("the ticket has already ended");
        }
        let match_id = event.match_id.as_deref();
        match event.event_type {
            E::MatchmakingSearching => match self.status {
                S::Queued => Transition::Advance(self.with(S::Searching, None)),
                _ => Transition::Ignore("already searching or further"),
            },
            E::PotentialMatchCreated => {
                if self.is_closed(match_id) {
                    return Transition::Ignore("the match was dropped");
                }
                let next = if event.acceptance_required == Some(true) { S::RequiresAcceptance } else { S::Placing };
                match self.status {
                    S::Queued | S::Searching => Transition::Advance(self.with(next, match_id)),
                    // FlexMatch proposes a ticket for a new match only after its last one was
                    // dropped: a new proposal that overtook that rejection closes the old match.
                    S::RequiresAcceptance if match_id.is_some() && self.match_id.as_deref() != match_id => {
                        let mut advanced = self.with(next, match_id);
                        advanced.close(self.match_id.as_deref());
                        Transition::Advance(advanced)
                    }
                    _ => Transition::Ignore("already in a match"),
                }
            }
            E::AcceptMatch => match self.status {
                // Each AcceptMatch reports a new acceptance; the caller dedupes redeliveries of
                // the same event by its ID.
                // A match learned by polling has no ID yet; the first event naming one settles it.
                S::RequiresAcceptance if self.match_id.is_none() || self.match_id.as_deref() == match_id => {
                    Transition::Advance(Self { match_id: match_id.map(str::to_owned), ..self.clone() })
                }
                _ => Transition::Ignore("not waiting for acceptance of this match"),
            },
            E::AcceptMatchCompleted => {
                if self.is_closed(match_id) {
                    return Transition::Ignore("the match was dropped");
                }
                match (self.status, event.acceptance.as_deref()) {
                    (S::Queued | S::Searching | S::RequiresAcceptance, Some("Accepted")) => {
                        Transition::Advance(self.with(S::Placing, match_id))
                    }
                    // A rejection or timeout drops a match still waiting for answers; a match
                    // already being placed was accepted, whatever a late event claims.
                    (S::Queued | S::Searching | S::RequiresAcceptance, Some(_)) => {
                        // The match is dropped; tickets that accepted return to searching. FlexMatch
                        // cancels the ones that did not with a MatchmakingCancelled of their own.
                        let mut next = self.with(S::Searching, None);
                        next.close(match_id);
                        Transition::Advance(next)
                    }
                    _ => Transition::Ignore("acceptance already settled"),
                }
            }
            E::MatchmakingSucceeded => {
                Transition::Advance(self.with(S::Completed, match_id.or(self.match_id.as_deref())))
            }
            E::MatchmakingTimedOut => Transition::Advance(self.with(S::TimedOut, self.match_id.as_deref())),
            E::MatchmakingCancelled => Transition::Advance(self.with(S::Cancelled, self.match_id.as_deref())),
            E::MatchmakingFailed => Transition::Advance(self.with(S::Failed, match_id.or(self.match_id.as_deref()))),
            E::Unknown => Transition::Ignore("unknown event type"),
        }
    }

    /// Applies what polling DescribeMatchmaking reported now, as an event of its type. A poll
    /// is the ticket's current status, not a message that may have been overtaken, so one case
    /// that an event could not settle is settled here: a ticket waiting for acceptance that
    /// FlexMatch reports SEARCHING had its match dropped (the rejection or timeout was never
    /// delivered) and searches again. Everything else is as [`Self::apply`].
    pub fn apply_polled(&self, event: &MatchmakingEventDetail) -> Transition {
        if event.event_type == MatchmakingEventType::MatchmakingSearching
            && self.status == TicketStatus::RequiresAcceptance
        {
            let mut next = self.with(TicketStatus::Searching, None);
            next.close(self.match_id.as_deref());
            return Transition::Advance(next);
        }
        self.apply(event)
    }
}

impl Default for TicketState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flexmatch::MatchmakingEventType as E;

    fn event(event_type: E, match_id: Option<&str>) -> MatchmakingEventDetail {
        MatchmakingEventDetail { match_id: match_id.map(Into::into), ..MatchmakingEventDetail::new(event_type) }
    }

    fn advance(state: &TicketState, e: &MatchmakingEventDetail) -> TicketState {
        match state.apply(e) {
            Transition::Advance(next) => next,
            Transition::Ignore(why) => panic!("expected a transition, got Ignore({why})"),
        }
    }

    #[test]
    fn only_a_poll_returns_a_ticket_waiting_for_acceptance_to_searching() {
        let searching = advance(&TicketState::new(), &event(E::MatchmakingSearching, None));
        let proposal =
            MatchmakingEventDetail { acceptance_required: Some(true), ..event(E::PotentialMatchCreated, Some("m1")) };
        let waiting = advance(&searching, &proposal);
        assert_eq!(waiting.status, TicketStatus::RequiresAcceptance);
        // A MatchmakingSearching event may be the ticket's first, overtaken by the proposal.
        assert!(matches!(waiting.apply(&event(E::MatchmakingSearching, None)), Transition::Ignore(_)));
        // A poll is the ticket's status now: the match was dropped.
        let Transition::Advance(back) = waiting.apply_polled(&event(E::MatchmakingSearching, None)) else {
            panic!("a poll saying SEARCHING must return the ticket to searching");
        };
        assert_eq!(back.status, TicketStatus::Searching);
        assert_eq!(back.match_id, None);
        // The dropped match stays dropped, whatever arrives late for it.
        assert!(matches!(back.apply(&proposal), Transition::Ignore(_)));
        // Otherwise a poll is applied as the event it stands for.
        assert_eq!(
            searching.apply_polled(&event(E::MatchmakingSearching, None)),
            searching.apply(&event(E::MatchmakingSearching, None))
        );
    }

    #[test]
    fn happy_path_moves_forward_only() {
        let s = advance(&TicketState::new(), &event(E::MatchmakingSearching, None));
        assert_eq!(s.status, TicketStatus::Searching);
        assert_eq!(s.apply(&event(E::MatchmakingSearching, None)), Transition::Ignore("already searching or further"));
        let placing = advance(&s, &event(E::PotentialMatchCreated, Some("m1")));
        assert_eq!(placing.status, TicketStatus::Placing);
        // A late Searching does not pull the ticket back.
        assert!(matches!(placing.apply(&event(E::MatchmakingSearching, None)), Transition::Ignore(_)));
        let done = advance(&placing, &event(E::MatchmakingSucceeded, Some("m1")));
        assert_eq!(done.status, TicketStatus::Completed);
        for e in [E::MatchmakingSucceeded, E::MatchmakingCancelled, E::MatchmakingTimedOut, E::MatchmakingFailed] {
            assert!(
                matches!(done.apply(&event(e, Some("m1"))), Transition::Ignore(_)),
                "{e:?} must not leave COMPLETED"
            );
        }
    }

    #[test]
    fn rejected_match_returns_to_searching_and_stays_dropped() {
        let mut created = event(E::PotentialMatchCreated, Some("m1"));
        created.acceptance_required = Some(true);
        let waiting = advance(&TicketState::new(), &created);
        assert_eq!(waiting.status, TicketStatus::RequiresAcceptance);
        let mut rejected = event(E::AcceptMatchCompleted, Some("m1"));
        rejected.acceptance = Some("Rejected".into());
        let back = advance(&waiting, &rejected);
        assert_eq!(back.status, TicketStatus::Searching);
        // The dropped match's events, late or repeated, change nothing.
        assert!(matches!(back.apply(&created), Transition::Ignore(_)));
        assert!(matches!(back.apply(&rejected), Transition::Ignore(_)));
        // A new match is taken.
        let mut created2 = event(E::PotentialMatchCreated, Some("m2"));
        created2.acceptance_required = Some(true);
        assert_eq!(advance(&back, &created2).match_id.as_deref(), Some("m2"));
    }

    #[test]
    fn a_new_proposal_that_overtakes_the_rejection_of_the_last_wins() {
        let mut m1 = event(E::PotentialMatchCreated, Some("m1"));
        m1.acceptance_required = Some(true);
        let mut m2 = event(E::PotentialMatchCreated, Some("m2"));
        m2.acceptance_required = Some(true);
        let waiting = advance(&advance(&TicketState::new(), &m1), &m2);
        assert_eq!(waiting.status, TicketStatus::RequiresAcceptance);
        assert_eq!(waiting.match_id.as_deref(), Some("m2"));
        // m1's late rejection is about a closed match: it changes nothing.
        let mut rejected = event(E::AcceptMatchCompleted, Some("m1"));
        rejected.acceptance = Some("Rejected".into());
        assert!(matches!(waiting.apply(&rejected), Transition::Ignore(_)));
    }

    #[test]
    fn a_late_acceptance_never_pulls_a_placing_ticket_back() {
        let placing = advance(&TicketState::new(), &event(E::PotentialMatchCreated, Some("m1")));
        assert_eq!(placing.status, TicketStatus::Placing);
        for acceptance in ["Accepted", "Rejected", "TimedOut"] {
            let mut late = event(E::AcceptMatchCompleted, Some("m1"));
            late.acceptance = Some(acceptance.into());
            assert!(matches!(placing.apply(&late), Transition::Ignore(_)), "{acceptance}");
        }
    }

    #[test]
    fn success_without_the_events_before_it_still_completes() {
        let done = advance(&TicketState::new(), &event(E::MatchmakingSucceeded, Some("m9")));
        assert_eq!(done.status, TicketStatus::Completed);
        assert_eq!(done.match_id.as_deref(), Some("m9"));
    }

    #[test]
    fn status_names_round_trip() {
        for s in
            ["QUEUED", "SEARCHING", "REQUIRES_ACCEPTANCE", "PLACING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
        {
            assert_eq!(TicketStatus::parse(s).map(TicketStatus::as_str), Some(s));
        }
    }
}
