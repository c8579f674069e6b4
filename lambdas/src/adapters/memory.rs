//! In-memory adapters: the embedded local stack's storage, mirroring the DynamoDB tables'
//! semantics (conditional writes, TTL filtered on read).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;

use crate::ports::{
    Clock, ConnectionRecord, ConnectionStore, PlayerAttributes, PlayerRecord, PlayerStore, StoreError, TicketRecord,
    TicketStore, is_live,
};

/// Locks a table. A poisoned lock means a panic mid-write in another task; the maps hold plain
/// rows that are replaced whole, so the data is still consistent and serving goes on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Default)]
pub struct MemoryConnections {
    rows: Mutex<HashMap<String, ConnectionRecord>>,
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn put(&self, connection: &ConnectionRecord) -> Result<(), StoreError> {
        lock(&self.rows).insert(connection.connection_id.clone(), connection.clone());
        Ok(())
    }

    async fn get(&self, connection_id: &str, now_ms: i64) -> Result<Option<ConnectionRecord>, StoreError> {
        Ok(lock(&self.rows).get(connection_id).filter(|c| is_live(c.expires_at, now_ms)).cloned())
    }

    async fn delete(&self, connection_id: &str) -> Result<(), StoreError> {
        lock(&self.rows).remove(connection_id);
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct MemoryPlayers {
    rows: Mutex<HashMap<String, PlayerRecord>>,
}

impl MemoryPlayers {
    fn with_row<R>(&self, player_id: &str, f: impl FnOnce(&mut PlayerRecord) -> R) -> R {
        let mut rows = lock(&self.rows);
        let row = rows
            .entry(player_id.to_owned())
            .or_insert_with(|| PlayerRecord { player_id: player_id.to_owned(), ..PlayerRecord::default() });
        f(row)
    }
}

#[async_trait]
impl PlayerStore for MemoryPlayers {
    async fn get(&self, player_id: &str) -> Result<Option<PlayerRecord>, StoreError> {
        Ok(lock(&self.rows).get(player_id).cloned())
    }

    async fn put_attributes(&self, player_id: &str, attributes: &PlayerAttributes) -> Result<(), StoreError> {
        self.with_row(player_id, |row| row.attributes = attributes.clone());
        Ok(())
    }

    async fn set_connection(
        &self,
        player_id: &str,
        connection_id: &str,
        connected_at: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.with_row(player_id, |row| {
            if row.connected_at.is_some_and(|newest| newest > connected_at) {
                return false;
            }
            row.connection_id = Some(connection_id.to_owned());
            row.connected_at = Some(connected_at);
            true
        }))
    }

    async fn clear_connection(&self, player_id: &str, connection_id: &str) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        match rows.get_mut(player_id) {
            Some(row) if row.connection_id.as_deref() == Some(connection_id) => {
                row.connection_id = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn claim_ticket(&self, player_id: &str, expected: Option<&str>, new: &str) -> Result<(), StoreError> {
        let mut rows = lock(&self.rows);
        let current = rows.get(player_id).and_then(|r| r.active_ticket_id.as_deref());
        if current != expected {
            // A failed claim writes nothing, as a failed conditional UpdateItem does.
            return Err(StoreError::ConditionFailed);
        }
        let row = rows
            .entry(player_id.to_owned())
            .or_insert_with(|| PlayerRecord { player_id: player_id.to_owned(), ..PlayerRecord::default() });
        row.active_ticket_id = Some(new.to_owned());
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct MemoryTickets {
    rows: Mutex<HashMap<String, TicketRecord>>,
}

#[async_trait]
impl TicketStore for MemoryTickets {
    async fn create(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let mut rows = lock(&self.rows);
        if rows.contains_key(&ticket.ticket_id) {
            return Err(StoreError::ConditionFailed);
        }
        rows.insert(ticket.ticket_id.clone(), ticket.clone());
        Ok(())
    }

    async fn get(&self, ticket_id: &str, now_ms: i64) -> Result<Option<TicketRecord>, StoreError> {
        Ok(lock(&self.rows).get(ticket_id).filter(|t| is_live(t.expires_at, now_ms)).cloned())
    }

    async fn replace(&self, ticket: &TicketRecord, expected_version: u64) -> Result<(), StoreError> {
        let mut rows = lock(&self.rows);
        match rows.get_mut(&ticket.ticket_id) {
            Some(row) if row.version == expected_version => {
                *row = ticket.clone();
                Ok(())
            }
            _ => Err(StoreError::ConditionFailed),
        }
    }

    async fn due_for_backstop(&self, now_ms: i64, limit: usize) -> Result<Vec<TicketRecord>, StoreError> {
        let rows = lock(&self.rows);
        let mut due: Vec<TicketRecord> = rows
            .values()
            .filter(|t| is_live(t.expires_at, now_ms) && t.backstop_due_at.is_some_and(|d| d <= now_ms))
            .cloned()
            .collect();
        due.sort_by_key(|t| (t.backstop_due_at, t.ticket_id.clone()));
        due.truncate(limit);
        Ok(due)
    }
}

/// A clock that only moves when told to, for tests of TTLs and timeouts.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self { now_ms: AtomicI64::new(now_ms) }
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.now_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
