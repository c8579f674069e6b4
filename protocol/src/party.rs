//! Parties on the wire: what a party's members see of it, and the limits of party actions.
//!
//! A party is a group of players who queue together: its leader's `matchmake` starts one ticket
//! for every member, and FlexMatch keeps a ticket's players on the same team. The actions are in
//! [`crate::action`] (`createParty`, `joinParty`, `leaveParty`, `kickFromParty`, `setReady`);
//! every change is pushed to every member as [`crate::Push::PartyUpdated`].

use serde::{Deserialize, Serialize};

/// Longest invite code a client may send; the codes the gateway makes are shorter.
pub const MAX_INVITE_CODE_CHARS: usize = 64;

/// One member as the party's members see them: no connection IDs, no attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyMemberView {
    pub player_id: String,
    /// Set with `setReady`; the leader's `matchmake` needs every other member ready.
    pub ready: bool,
    /// False while the member is away within the disconnect grace.
    pub connected: bool,
}

/// Invite codes are letters and digits: a code with anything else cannot exist, and is refused
/// before any lookup (and without counting against the rate limit).
pub fn valid_invite_code(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > MAX_INVITE_CODE_CHARS || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("inviteCode must be 1-{MAX_INVITE_CODE_CHARS} letters and digits"));
    }
    Ok(())
}

/// Party IDs the gateway makes: `party-` and a UUID; a player ID is up to 128 characters.
pub fn valid_party_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("partyId must be 1-128 letters, digits and '-'".into());
    }
    Ok(())
}

/// Player IDs come from the authorizer (a token's subject), so any non-empty string up to 128
/// characters can name one.
pub fn valid_player_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > 128 {
        return Err("playerId must be 1-128 characters".into());
    }
    Ok(())
}
