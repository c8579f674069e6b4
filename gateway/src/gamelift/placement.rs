//! Game session placement on a simulated fleet: a game session queue's choice of location by
//! player latency, a game session per match and a player session per player.

use std::collections::BTreeMap;
use std::sync::Mutex;

use matchgate_flexmatch::Player;

/// A simulated fleet, with the locations a game session queue would place into.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub fleet_id: String,
    /// AWS region names; a match is placed where its players' latency is lowest.
    pub locations: Vec<String>,
    /// What game sessions listen on. Locally every location is this machine.
    pub ip_address: String,
    pub dns_name: String,
    /// Game session ports are taken from this range in turn.
    pub port_range: (u16, u16),
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            fleet_id: "fleet-00000000-0000-4000-8000-000000000001".into(),
            locations: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()],
            ip_address: "127.0.0.1".into(),
            dns_name: "localhost".into(),
            port_range: (7000, 7999),
        }
    }
}

/// A placed game session.
#[derive(Debug, Clone, PartialEq)]
pub struct GameSession {
    pub game_session_arn: String,
    pub location: String,
    pub ip_address: String,
    pub dns_name: String,
    pub port: u16,
    /// playerId → playerSessionId.
    pub player_sessions: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    next_port: Mutex<u16>,
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Self {
        let first = config.port_range.0;
        Self { config, next_port: Mutex::new(first) }
    }

    /// The location a queue's latency policy would choose: among the locations every player
    /// reported a latency for, the one whose worst latency is lowest; with no such location, the
    /// queue's first.
    pub fn choose_location<'a>(&self, players: impl Iterator<Item = &'a Player> + Clone) -> String {
        self.config
            .locations
            .iter()
            .filter_map(|location| {
                let worst = players
                    .clone()
                    .map(|p| p.latency_in_ms.get(location).copied())
                    .try_fold(0u32, |acc, l| l.map(|l| acc.max(l)))?;
                Some((worst, location))
            })
            .min()
            .map(|(_, location)| location.clone())
            .unwrap_or_else(|| self.config.locations.first().cloned().unwrap_or_else(|| "local".into()))
    }

    /// Creates a game session for these players, with one player session each. `preferred` are
    /// the regions the rule set accepts, best first; the first the fleet has wins.
    pub fn place<'a>(
        &self,
        region: &str,
        preferred: &[String],
        players: impl Iterator<Item = &'a Player> + Clone,
    ) -> GameSession {
        let location = preferred
            .iter()
            .find(|r| self.config.locations.contains(r))
            .cloned()
            .unwrap_or_else(|| self.choose_location(players.clone()));
        let port = {
            let mut next = self.next_port.lock().unwrap_or_else(|p| p.into_inner());
            let port = *next;
            *next = if port >= self.config.port_range.1 { self.config.port_range.0 } else { port + 1 };
            port
        };
        let game_session_id = format!("gsess-{}", uuid::Uuid::new_v4());
        GameSession {
            game_session_arn: format!(
                "arn:aws:gamelift:{region}::gamesession/{}/{location}/{game_session_id}",
                self.config.fleet_id
            ),
            location,
            ip_address: self.config.ip_address.clone(),
            dns_name: self.config.dns_name.clone(),
            port,
            player_sessions: players
                .map(|p| (p.player_id.clone(), format!("psess-{}", uuid::Uuid::new_v4())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(id: &str, latencies: &[(&str, u32)]) -> Player {
        Player {
            player_id: id.into(),
            latency_in_ms: latencies.iter().map(|(r, l)| (r.to_string(), *l)).collect(),
            ..Player::default()
        }
    }

    #[test]
    fn places_where_the_worst_latency_is_lowest() {
        let fleet = Fleet::new(FleetConfig::default());
        let a = player("a", &[("us-east-1", 30), ("us-west-2", 80), ("eu-west-1", 120)]);
        let b = player("b", &[("us-east-1", 150), ("us-west-2", 60), ("eu-west-1", 20)]);
        assert_eq!(fleet.choose_location([&a, &b].into_iter()), "us-west-2");
        // A location a player did not report is never chosen over one all reported.
        let c = player("c", &[("eu-west-1", 10)]);
        assert_eq!(fleet.choose_location([&a, &c].into_iter()), "eu-west-1");
        // The rule set's acceptable regions come first.
        let placed = fleet.place("us-east-1", &["ap-south-1".into(), "eu-west-1".into()], [&a, &b].into_iter());
        assert_eq!(placed.location, "eu-west-1");
    }

    #[test]
    fn every_player_gets_a_distinct_session_and_ports_rotate() {
        let fleet = Fleet::new(FleetConfig { port_range: (7000, 7001), ..FleetConfig::default() });
        let players = [player("a", &[]), player("b", &[])];
        let first = fleet.place("us-east-1", &[], players.iter());
        assert_eq!(first.player_sessions.len(), 2);
        assert_ne!(first.player_sessions["a"], first.player_sessions["b"]);
        assert_eq!(first.port, 7000);
        assert_eq!(fleet.place("us-east-1", &[], players.iter()).port, 7001);
        assert_eq!(fleet.place("us-east-1", &[], players.iter()).port, 7000);
    }
}
