//! The in-memory `Parties` table and its player → party pointers, mirroring the DynamoDB
//! adapter: every membership change is one all-or-nothing conditional write.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{PartyChange, PartyRecord, PartyStore, PartyWrite, StoreError, is_live};

#[derive(Debug, Default)]
struct Tables {
    parties: HashMap<String, PartyRecord>,
    /// player → party, as the `partyId` attribute of `Players` holds it in DynamoDB.
    pointers: HashMap<String, String>,
    /// connection → (window start, invite lookups in it).
    lookups: HashMap<String, (i64, u32)>,
}

#[derive(Debug, Default)]
pub struct MemoryParties {
    tables: Mutex<Tables>,
}

impl MemoryParties {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // Rows are replaced whole, so a poisoned lock still guards consistent data.
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn live(party: &PartyRecord, now_ms: i64) -> bool {
    is_live(party.expires_at, now_ms)
}

#[async_trait]
impl PartyStore for MemoryParties {
    async fn get(&self, party_id: &str, now_ms: i64) -> Result<Option<PartyRecord>, StoreError> {
        Ok(self.lock().parties.get(party_id).filter(|p| live(p, now_ms)).cloned())
    }

    async fn find_by_invite(&self, invite_code: &str, now_ms: i64) -> Result<Option<PartyRecord>, StoreError> {
        let tables = self.lock();
        let found = tables
            .parties
            .values()
            .find(|p| p.invite_code == invite_code && live(p, now_ms) && is_live(p.invite_expires_at, now_ms));
        Ok(found.cloned())
    }

    async fn party_of(&self, player_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().pointers.get(player_id).cloned())
    }

    async fn apply(&self, change: &PartyChange) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let party_id = &change.party.party_id;
        let stored_version = tables.parties.get(party_id).map(|p| p.version);
        let row_holds = match change.write {
            PartyWrite::Create => stored_version.is_none(),
            PartyWrite::Replace { expected_version } | PartyWrite::Delete { expected_version } => {
                stored_version == Some(expected_version)
            }
        };
        let pointers_hold =
            change.joining.iter().all(|(player, expected)| tables.pointers.get(player) == expected.as_ref())
                && change.leaving.iter().all(|player| tables.pointers.get(player) == Some(party_id));
        if !row_holds || !pointers_hold {
            // Nothing is written, as when a transaction is cancelled.
            return Err(StoreError::ConditionFailed);
        }
        match change.write {
            PartyWrite::Delete { .. } => {
                tables.parties.remove(party_id);
            }
            PartyWrite::Create | PartyWrite::Replace { .. } => {
                tables.parties.insert(party_id.clone(), change.party.clone());
            }
        }
        for player in &change.leaving {
            tables.pointers.remove(player);
        }
        for (player, _) in &change.joining {
            tables.pointers.insert(player.clone(), party_id.clone());
        }
        Ok(())
    }

    async fn count_invite_lookup(&self, connection_id: &str, window_start_ms: i64) -> Result<u32, StoreError> {
        let mut tables = self.lock();
        let entry = tables.lookups.entry(connection_id.to_owned()).or_insert((window_start_ms, 0));
        if entry.0 < window_start_ms {
            *entry = (window_start_ms, 0);
        }
        if entry.0 == window_start_ms {
            entry.1 = entry.1.saturating_add(1);
        }
        Ok(entry.1)
    }
}
