//! What a client hears: pushes, and what happened to its connection.

use std::time::Duration;

use matchgate_protocol::{PUSH_TYPES, Push};

/// One item of the client's stream. Pushes are already deduplicated: a repeat (a `status`
/// answer, a push that crossed a reconnect) is never reported twice.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A push of the player's current ticket, or an answer (`Error`, `Pong`).
    Push(Push),
    /// The answer to the client's own `status` after a (re)connect: the player has no ticket
    /// from the last 24 hours. Nothing to resume.
    NoTicket,
    /// A push whose `type` this client does not know: a newer server. The frame is kept whole.
    Unknown { type_name: String, frame: String },
    /// A frame that is not a push (not JSON, no `type`, or fields of the wrong shape). The
    /// connection is kept.
    Malformed { frame: String, error: String },
    /// API Gateway's own answer when a route's function failed
    /// (`{"message": "Internal server error", ...}`).
    GatewayError { message: String },
    /// The connection dropped; the client is reconnecting.
    Disconnected { reason: String },
    /// The client waits `delay` before reconnect attempt `attempt` (from 1).
    Reconnecting { attempt: u32, delay: Duration },
    /// Connected again; `status` is on its way (the resume routine).
    Reconnected,
}

/// Reads one text frame from the server.
pub(crate) fn classify(frame: &str) -> Event {
    let value: serde_json::Value = match serde_json::from_str(frame) {
        Ok(value) => value,
        Err(e) => return malformed(frame, format!("not JSON: {e}")),
    };
    let Some(object) = value.as_object() else { return malformed(frame, "not a JSON object".into()) };
    let Some(type_name) = object.get("type").and_then(|t| t.as_str()) else {
        if let Some(message) = object.get("message").and_then(|m| m.as_str()) {
            return Event::GatewayError { message: message.to_owned() };
        }
        return malformed(frame, "no string field \"type\"".into());
    };
    if !PUSH_TYPES.contains(&type_name) {
        return Event::Unknown { type_name: type_name.to_owned(), frame: frame.to_owned() };
    }
    match serde_json::from_value::<Push>(value.clone()) {
        Ok(push) => Event::Push(push),
        Err(e) => malformed(frame, format!("a {type_name} with unexpected fields: {e}")),
    }
}

fn malformed(frame: &str, error: String) -> Event {
    Event::Malformed { frame: frame.to_owned(), error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_pushes_unknown_pushes_and_garbage_apart() {
        assert_eq!(
            classify(r#"{"type":"MatchmakingQueued","ticketId":"t1"}"#),
            Event::Push(Push::MatchmakingQueued { ticket_id: "t1".into() })
        );
        assert!(matches!(
            classify(r#"{"type":"MatchmakingBackfilled","ticketId":"t1"}"#),
            Event::Unknown { type_name, .. } if type_name == "MatchmakingBackfilled"
        ));
        for garbage in ["", "hello", "[1]", "null", r#"{"ticketId":"t"}"#, r#"{"type":7}"#] {
            assert!(matches!(classify(garbage), Event::Malformed { .. }), "{garbage:?}");
        }
        // A known type with the wrong fields is malformed, not a crash.
        assert!(matches!(classify(r#"{"type":"MatchmakingQueued"}"#), Event::Malformed { .. }));
        assert!(matches!(
            classify(r#"{"type":"MatchmakingSucceeded","ticketId":"t","matchId":"m","port":"x"}"#),
            Event::Malformed { .. }
        ));
        assert_eq!(
            classify(r#"{"message":"Internal server error","connectionId":"c","requestId":"r"}"#),
            Event::GatewayError { message: "Internal server error".into() }
        );
    }
}
