//! Seeding the Players table: `matchgate up --players FILE`.
//!
//! The file maps player IDs to attributes in plain JSON — numbers, strings, lists of strings,
//! and maps of numbers — which become GameLift's typed attributes:
//!
//! ```json
//! { "alice": { "skill": 32, "mode": "ranked", "maps": ["dust", "nuke"] } }
//! ```

use std::collections::BTreeMap;

use matchgate_protocol::gamelift::{AttributeValue, PlayerAttributes};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the players file is not a JSON object of player IDs: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("player {player:?}, attribute {attribute:?}: {reason}")]
    BadAttribute { player: String, attribute: String, reason: &'static str },
}

/// Parses a players file.
pub fn parse_players(text: &str) -> Result<BTreeMap<String, PlayerAttributes>, SeedError> {
    let raw: BTreeMap<String, BTreeMap<String, Value>> = serde_json::from_str(text)?;
    raw.into_iter()
        .map(|(player, attributes)| {
            let typed =
                attributes
                    .into_iter()
                    .map(|(name, value)| {
                        let typed = AttributeValue::from_plain_json(value).map_err(|reason| {
                            SeedError::BadAttribute { player: player.clone(), attribute: name.clone(), reason }
                        })?;
                        Ok((name, typed))
                    })
                    .collect::<Result<PlayerAttributes, SeedError>>()?;
            Ok((player, typed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_attributes_like_gamelift() {
        let players =
            parse_players(r#"{"alice": {"skill": 32, "mode": "ranked", "maps": ["a"], "ping": {"x": 1}}}"#).unwrap();
        let alice = &players["alice"];
        assert_eq!(alice["skill"], AttributeValue::N(32.0));
        assert_eq!(alice["mode"], AttributeValue::S("ranked".into()));
        assert_eq!(alice["maps"], AttributeValue::SL(vec!["a".into()]));
        assert_eq!(alice["ping"], AttributeValue::SDM(BTreeMap::from([("x".into(), 1.0)])));
        assert!(parse_players(r#"{"bob": {"skill": null}}"#).is_err());
        assert!(parse_players("[1]").is_err());
    }
}
