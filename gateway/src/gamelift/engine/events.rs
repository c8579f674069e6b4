//! What happened to tickets, as FlexMatch's events, in the order FlexMatch publishes them.

use chrono::{SecondsFormat, TimeZone, Utc};

use super::*;

impl LocalFlexMatch {
    pub(super) fn event(&self, configuration_name: &str, detail: MatchmakingEventDetail) -> MatchmakingEvent {
        MatchmakingEvent {
            version: "0".into(),
            id: uuid::Uuid::new_v4().to_string(),
            detail_type: DETAIL_TYPE.into(),
            source: SOURCE.into(),
            account: self.account.clone(),
            time: iso8601(self.clock.now_ms()),
            region: self.region.clone(),
            resources: vec![self.configuration_arn(configuration_name)],
            detail,
        }
    }

    pub(super) fn publish(&self, configuration: &MatchmakingConfiguration, mut detail: MatchmakingEventDetail) {
        if detail.event_type == E::MatchmakingFailed || detail.event_type == E::MatchmakingSucceeded {
            detail.custom_event_data.clone_from(&configuration.custom_event_data);
        }
        // The receiver lives as long as the stack; after shutdown there is no one to tell.
        let _ = self.events.send(self.event(&configuration.name, detail));
    }
}

pub(super) fn iso8601(epoch_ms: i64) -> String {
    Utc.timestamp_millis_opt(epoch_ms).single().unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// MatchmakingSearching for one ticket, whether it just started or returned to the pool.
pub(super) fn searching_detail(ticket_id: &str, ticket: &EngineTicket) -> MatchmakingEventDetail {
    let mut detail = detail_for(E::MatchmakingSearching, &[(ticket_id, ticket)]);
    detail.estimated_wait_millis = Some(serde_json::Value::String("NOT_AVAILABLE".into()));
    detail
}

pub(super) fn detail_for(event_type: E, tickets: &[(&str, &EngineTicket)]) -> MatchmakingEventDetail {
    let seat = |t: &EngineTicket, player_id: &str| EventPlayer {
        player_id: player_id.to_owned(),
        team: t.teams.get(player_id).cloned(),
        player_session_id: t.game_session.as_ref().and_then(|g| g.player_sessions.get(player_id)).cloned(),
        accepted: None,
    };
    MatchmakingEventDetail {
        tickets: tickets
            .iter()
            .map(|(id, t)| EventTicket {
                ticket_id: (*id).to_owned(),
                start_time: Some(iso8601(t.start_time_ms)),
                players: t.players.iter().map(|p| seat(t, &p.player_id)).collect(),
            })
            .collect(),
        game_session_info: Some(GameSessionInfo {
            players: tickets.iter().flat_map(|(_, t)| t.players.iter().map(|p| seat(t, &p.player_id))).collect(),
            ..GameSessionInfo::default()
        }),
        ..MatchmakingEventDetail::new(event_type)
    }
}
