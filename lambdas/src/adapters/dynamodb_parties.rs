//! The DynamoDB adapter of [`PartyStore`]: the `Parties` table, and the `partyId` pointer on each
//! member's `Players` row.
//!
//! Every membership change is one TransactWriteItems: the party row (conditional on its
//! `version`, or on not existing yet) and each moving player's pointer (conditional on what it was
//! read as). Two joins racing for the last place both read version N; the transaction of one
//! lands and the other is cancelled, so a party never exceeds its limit and a player is never in
//! two parties. The calls and grants (infra/template.yaml):
//! - `Parties`: GetItem, and PutItem/DeleteItem inside transactions; Query on `invite-codes`.
//! - `Players`: GetItem, and UpdateItem inside transactions (the `partyId` attribute only).
//! - `Connections`: UpdateItem of the invite-lookup count.
//!
//! A party is stored as its record's fields (camelCase) in native DynamoDB types through
//! `serde_dynamo`: `members` is a list of maps, latencies a map of numbers. Reads are consistent
//! GetItems and filter items past their TTL; the `invite-codes` index (KEYS_ONLY, eventually
//! consistent) only finds the party ID, which is then read and checked on the row itself.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, TransactWriteItem, Update};

use super::dynamodb::{Item, TableNames, attr, consistent_get, n, s, store_error, unavailable};
use crate::ports::{PartyChange, PartyRecord, PartyStore, PartyWrite, StoreError, is_live};

#[derive(Debug, Clone)]
pub struct DynamoParties {
    client: Client,
    parties: String,
    players: String,
    connections: String,
}

impl DynamoParties {
    pub fn new(client: Client, tables: &TableNames) -> Self {
        Self {
            client,
            parties: tables.parties.clone(),
            players: tables.players.clone(),
            connections: tables.connections.clone(),
        }
    }

    fn read(&self, item: Item) -> Result<PartyRecord, StoreError> {
        serde_dynamo::from_item(item)
            .map_err(|e| StoreError::Unavailable(format!("{}: a party row does not read: {e}", self.parties)))
    }

    fn row_write(&self, change: &PartyChange) -> Result<TransactWriteItem, StoreError> {
        let built =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(format!("TransactWriteItems: {e}"));
        let party = &change.party;
        let item = || {
            serde_dynamo::to_item(party)
                .map_err(|e| StoreError::Unavailable(format!("{}: a party does not write: {e}", self.parties)))
        };
        let write = match change.write {
            PartyWrite::Create => TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(&self.parties)
                    .set_item(Some(item()?))
                    .condition_expression("attribute_not_exists(#id)")
                    .expression_attribute_names("#id", attr::PARTY_ID)
                    .build()
                    .map_err(built)?,
            ),
            PartyWrite::Replace { expected_version } => TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(&self.parties)
                    .set_item(Some(item()?))
                    .condition_expression("#version = :expected")
                    .expression_attribute_names("#version", attr::VERSION)
                    .expression_attribute_values(":expected", n(expected_version))
                    .build()
                    .map_err(built)?,
            ),
            PartyWrite::Delete { expected_version } => TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(&self.parties)
                    .key(attr::PARTY_ID, s(&party.party_id))
                    .condition_expression("#version = :expected")
                    .expression_attribute_names("#version", attr::VERSION)
                    .expression_attribute_values(":expected", n(expected_version))
                    .build()
                    .map_err(built)?,
            ),
        };
        Ok(write.build())
    }

    fn pointer_writes(&self, change: &PartyChange) -> Result<Vec<TransactWriteItem>, StoreError> {
        let built =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(format!("TransactWriteItems: {e}"));
        let party_id = &change.party.party_id;
        let update = |player: &str| {
            Update::builder()
                .table_name(&self.players)
                .key(attr::PLAYER_ID, s(player))
                .expression_attribute_names("#p", attr::PARTY_ID)
        };
        let mut writes = Vec::new();
        for (player, expected) in &change.joining {
            let joining =
                update(player).update_expression("SET #p = :party").expression_attribute_values(":party", s(party_id));
            let joining = match expected {
                // Creates the row for a player seen for the first time.
                None => joining.condition_expression("attribute_not_exists(#p)"),
                Some(stale) => {
                    joining.condition_expression("#p = :stale").expression_attribute_values(":stale", s(stale))
                }
            };
            writes.push(TransactWriteItem::builder().update(joining.build().map_err(built)?).build());
        }
        for player in &change.leaving {
            let leaving = update(player)
                .update_expression("REMOVE #p")
                .condition_expression("#p = :party")
                .expression_attribute_values(":party", s(party_id));
            writes.push(TransactWriteItem::builder().update(leaving.build().map_err(built)?).build());
        }
        Ok(writes)
    }
}

/// A cancelled transaction whose reasons include a failed condition or a conflicting concurrent
/// transaction lost a race: the caller re-reads and decides again.
fn transaction_error(table: &str, err: impl Into<aws_sdk_dynamodb::Error>) -> StoreError {
    match err.into() {
        aws_sdk_dynamodb::Error::TransactionCanceledException(cancelled) => {
            let lost_race = cancelled
                .cancellation_reasons()
                .iter()
                .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict")));
            if lost_race {
                StoreError::ConditionFailed
            } else {
                unavailable(
                    "TransactWriteItems",
                    table,
                    aws_sdk_dynamodb::Error::TransactionCanceledException(cancelled),
                )
            }
        }
        aws_sdk_dynamodb::Error::TransactionConflictException(_) => StoreError::ConditionFailed,
        other => unavailable("TransactWriteItems", table, other),
    }
}

#[async_trait]
impl PartyStore for DynamoParties {
    async fn get(&self, party_id: &str, now_ms: i64) -> Result<Option<PartyRecord>, StoreError> {
        let Some(item) = consistent_get(&self.client, &self.parties, attr::PARTY_ID, party_id).await? else {
            return Ok(None);
        };
        let party = self.read(item)?;
        Ok(is_live(party.expires_at, now_ms).then_some(party))
    }

    async fn find_by_invite(&self, invite_code: &str, now_ms: i64) -> Result<Option<PartyRecord>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.parties)
            .index_name(super::dynamodb::INVITE_CODES_INDEX)
            .key_condition_expression("#code = :code")
            .expression_attribute_names("#code", attr::INVITE_CODE)
            .expression_attribute_values(":code", s(invite_code))
            .send()
            .await
            .map_err(|e| store_error("Query", &self.parties, e))?;
        for key in page.items() {
            let Some(aws_sdk_dynamodb::types::AttributeValue::S(party_id)) = key.get(attr::PARTY_ID) else { continue };
            // The index lags the table: the row itself says whether the code still admits anyone.
            if let Some(party) = self.get(party_id, now_ms).await?
                && party.invite_code == invite_code
                && is_live(party.invite_expires_at, now_ms)
            {
                return Ok(Some(party));
            }
        }
        Ok(None)
    }

    async fn party_of(&self, player_id: &str) -> Result<Option<String>, StoreError> {
        let Some(item) = consistent_get(&self.client, &self.players, attr::PLAYER_ID, player_id).await? else {
            return Ok(None);
        };
        match item.get(attr::PARTY_ID) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(party_id)) => Ok(Some(party_id.clone())),
            _ => Ok(None),
        }
    }

    async fn apply(&self, change: &PartyChange) -> Result<(), StoreError> {
        let mut request = self.client.transact_write_items().transact_items(self.row_write(change)?);
        for write in self.pointer_writes(change)? {
            request = request.transact_items(write);
        }
        request.send().await.map_err(|e| transaction_error(&self.parties, e))?;
        Ok(())
    }

    async fn count_invite_lookup(&self, connection_id: &str, window_start_ms: i64) -> Result<u32, StoreError> {
        let table = &self.connections;
        let update = || {
            self.client
                .update_item()
                .table_name(table)
                .key(attr::CONNECTION_ID, s(connection_id))
                .expression_attribute_names("#id", attr::CONNECTION_ID)
                .expression_attribute_names("#w", attr::INVITE_LOOKUP_WINDOW)
                .expression_attribute_names("#c", attr::INVITE_LOOKUPS)
                .expression_attribute_values(":w", n(window_start_ms))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::UpdatedNew)
        };
        // Two tries: a concurrent lookup may start the window between this one's two writes.
        for _ in 0..2 {
            let counted = update()
                .update_expression("ADD #c :one")
                .condition_expression("attribute_exists(#id) AND #w = :w")
                .send()
                .await
                .map_err(|e| store_error("UpdateItem", table, e));
            match counted {
                Ok(out) => {
                    let count = match out.attributes().and_then(|a| a.get(attr::INVITE_LOOKUPS)) {
                        Some(aws_sdk_dynamodb::types::AttributeValue::N(v)) => v.parse().unwrap_or(u32::MAX),
                        _ => u32::MAX,
                    };
                    return Ok(count);
                }
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
            let started = update()
                .update_expression("SET #w = :w, #c = :one")
                .condition_expression("attribute_exists(#id) AND (attribute_not_exists(#w) OR #w < :w)")
                .send()
                .await
                .map_err(|e| store_error("UpdateItem", table, e));
            match started {
                Ok(_) => return Ok(1),
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
        // The connection has no row (it is gone): nothing to count against.
        Ok(1)
    }
}
