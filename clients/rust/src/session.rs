//! The resume routine's memory, without I/O: which ticket is the player's current one, and which
//! of its pushes were handled already (docs/protocol.md, "Reconnect routine", step 3).

use std::collections::HashSet;

use matchgate_protocol::{ErrorCode, Push};

/// What to do with a push.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// New: report it.
    Deliver,
    /// Handled before (a `status` answer, a push that crossed a reconnect): skip it.
    Repeat,
    /// About a ticket other than the current one (leftovers of an older ticket): skip it.
    Stale,
    /// `Conflict`: the player already has a live ticket, which is now the current one; ask
    /// `status` for it, then report the error.
    Adopt(String),
}

/// The key a push is recognised by: `type` + `matchId` (+ `acceptedCount`), within the ticket.
/// A ticket that returns to searching gets a second `PotentialMatchCreated` for a new match:
/// a new key.
type Key = (&'static str, Option<String>, Option<u32>);

#[derive(Debug, Default)]
pub(crate) struct Session {
    current: Option<String>,
    /// The current ticket's terminal push was handled: anything later about it is a repeat.
    ended: bool,
    handled: HashSet<Key>,
}

impl Session {
    /// The current ticket, while it is live.
    pub(crate) fn live_ticket(&self) -> Option<&str> {
        if self.ended { None } else { self.current.as_deref() }
    }

    /// The current ticket, live or ended.
    pub(crate) fn current_ticket(&self) -> Option<&str> {
        self.current.as_deref()
    }

    pub(crate) fn on_push(&mut self, push: &Push) -> Verdict {
        match push {
            Push::Error { code: ErrorCode::Conflict, ticket_id: Some(id), .. } => {
                self.switch_to(id);
                return Verdict::Adopt(id.clone());
            }
            Push::Error { .. } | Push::Pong { .. } => return Verdict::Deliver,
            // The answer to this client's own matchmake: a new current ticket.
            Push::MatchmakingQueued { ticket_id } if self.current.as_ref() != Some(ticket_id) => {
                self.switch_to(ticket_id);
            }
            _ => {}
        }
        let Some(ticket_id) = push.ticket_id() else { return Verdict::Deliver };
        match &self.current {
            // The first answer after an app restart: the player's latest ticket.
            None => self.switch_to(ticket_id),
            Some(current) if current != ticket_id => return Verdict::Stale,
            Some(_) => {}
        }
        if self.ended || !self.handled.insert(key(push)) {
            return Verdict::Repeat;
        }
        if push.is_terminal() {
            self.ended = true;
        }
        Verdict::Deliver
    }

    fn switch_to(&mut self, ticket_id: &str) {
        if self.current.as_deref() != Some(ticket_id) {
            self.current = Some(ticket_id.to_owned());
            self.ended = false;
            self.handled.clear();
        }
    }
}

fn key(push: &Push) -> Key {
    let (match_id, accepted) = match push {
        Push::PotentialMatchCreated { match_id, .. }
        | Push::AcceptMatchCompleted { match_id, .. }
        | Push::MatchmakingSucceeded { match_id, .. } => (Some(match_id.clone()), None),
        Push::AcceptMatch { match_id, accepted_count, .. } => (Some(match_id.clone()), Some(*accepted_count)),
        _ => (None, None),
    };
    (push.type_name(), match_id, accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(t: &str) -> Push {
        Push::MatchmakingQueued { ticket_id: t.into() }
    }

    fn searching(t: &str) -> Push {
        Push::MatchmakingSearching { ticket_id: t.into(), estimated_wait_millis: None }
    }

    fn proposed(t: &str, m: &str) -> Push {
        Push::PotentialMatchCreated {
            ticket_id: t.into(),
            match_id: m.into(),
            acceptance_required: true,
            acceptance_timeout: Some(10),
            team: None,
        }
    }

    fn succeeded(t: &str) -> Push {
        Push::MatchmakingSucceeded {
            ticket_id: t.into(),
            match_id: "m2".into(),
            game_session_arn: None,
            ip_address: Some("127.0.0.1".into()),
            dns_name: None,
            port: Some(7777),
            player_session_id: Some("psess-1".into()),
            team: Some("red".into()),
        }
    }

    #[test]
    fn every_push_is_reported_once_and_the_outcome_ends_the_ticket() {
        let mut s = Session::default();
        assert_eq!(s.on_push(&queued("t1")), Verdict::Deliver);
        assert_eq!(s.on_push(&searching("t1")), Verdict::Deliver);
        assert_eq!(s.on_push(&searching("t1")), Verdict::Repeat, "a status answer repeating the last push");
        assert_eq!(s.on_push(&proposed("t1", "m1")), Verdict::Deliver);
        assert_eq!(s.on_push(&proposed("t1", "m2")), Verdict::Deliver, "a second proposal is a new match");
        assert_eq!(s.live_ticket(), Some("t1"));
        assert_eq!(s.on_push(&succeeded("t1")), Verdict::Deliver);
        assert_eq!(s.live_ticket(), None);
        assert_eq!(s.on_push(&succeeded("t1")), Verdict::Repeat, "the outcome again, after a reconnect");
        let cancelled = Push::MatchmakingCancelled { ticket_id: "t1".into(), reason: None, message: None };
        assert_eq!(s.on_push(&cancelled), Verdict::Repeat, "nothing after the outcome is news");
    }

    #[test]
    fn an_older_tickets_leftovers_are_skipped_and_a_new_ticket_starts_fresh() {
        let mut s = Session::default();
        s.on_push(&queued("t1"));
        s.on_push(&succeeded("t1"));
        assert_eq!(s.on_push(&queued("t2")), Verdict::Deliver);
        assert_eq!(s.on_push(&searching("t1")), Verdict::Stale);
        assert_eq!(s.on_push(&searching("t2")), Verdict::Deliver);
        assert_eq!(s.on_push(&succeeded("t2")), Verdict::Deliver);
    }

    #[test]
    fn after_a_restart_the_first_answer_names_the_ticket_and_a_conflict_adopts_one() {
        let mut s = Session::default();
        assert_eq!(s.on_push(&searching("t9")), Verdict::Deliver);
        assert_eq!(s.live_ticket(), Some("t9"));
        let conflict = Push::Error { code: ErrorCode::Conflict, message: "live".into(), ticket_id: Some("t7".into()) };
        assert_eq!(s.on_push(&conflict), Verdict::Adopt("t7".into()));
        assert_eq!(s.live_ticket(), Some("t7"));
        assert_eq!(s.on_push(&searching("t9")), Verdict::Stale);
    }
}
