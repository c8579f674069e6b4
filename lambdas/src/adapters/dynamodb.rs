//! DynamoDB adapters for the storage ports: the `Connections`, `Players` and `Tickets` tables of
//! DESIGN.md, as `infra/template.yaml` defines them.
//!
//! The in-memory adapters define the semantics and the conformance suite (tests/tests/e2e/conformance.rs)
//! holds both to them against DynamoDB Local. The calls stay within what the template's IAM policies
//! grant each function:
//! - `Connections`: PutItem, GetItem, DeleteItem.
//! - `Players`: GetItem, and UpdateItem for every write (so a write touches only its own attributes
//!   and creates the row when needed).
//! - `Tickets`: GetItem, conditional PutItem (create: `attribute_not_exists(ticketId)`; replace:
//!   `version = :expected`), and Query on the `open-tickets` index for the backstop.
//!
//! Every read is a consistent GetItem and filters items past their TTL: DynamoDB deletes expired
//! items up to two days late. Top-level fields are plain DynamoDB attributes (strings, numbers,
//! lists, maps) so a row reads naturally in the console; no field is a JSON string.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Av, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use matchgate_protocol::Push;
use matchgate_protocol::ticket::TicketState;

use crate::ports::{
    AttributeValue, ConnectionRecord, ConnectionStore, PlayerAttributes, PlayerRecord, PlayerStore, Role, StoreError,
    TicketRecord, TicketStore, is_live,
};

// ------------------------------------------------------------------------------------------------
// Schema: the one definition of keys, indexes and TTL that create_tables uses and that a test can
// compare with infra/template.yaml.
// ------------------------------------------------------------------------------------------------

/// Attribute names, exactly as the template and DESIGN.md spell them.
pub mod attr {
    pub const CONNECTION_ID: &str = "connectionId";
    pub const PLAYER_ID: &str = "playerId";
    pub const ROLE: &str = "role";
    pub const CONNECTED_AT: &str = "connectedAt";
    /// The TTL attribute of every table, in epoch seconds.
    pub const EXPIRES_AT: &str = "expiresAt";
    /// Key of the `watchers` index: only observer connections that sent `watch` carry it.
    pub const WATCH_CHANNEL: &str = "watchChannel";

    pub const ATTRIBUTES: &str = "attributes";
    pub const ACTIVE_TICKET_ID: &str = "activeTicketId";

    pub const TICKET_ID: &str = "ticketId";
    pub const PLAYER_IDS: &str = "playerIds";
    pub const CONFIGURATION_NAME: &str = "configurationName";
    pub const VERSION: &str = "version";
    pub const CREATED_AT: &str = "createdAt";
    pub const LAST_EVENT_AT: &str = "lastEventAt";
    pub const RESULTS: &str = "results";
    pub const APPLIED_EVENT_IDS: &str = "appliedEventIds";
    /// The player's party (on `Players`), and the key of `Parties`.
    pub const PARTY_ID: &str = "partyId";
    /// Key of the `invite-codes` index of `Parties`.
    pub const INVITE_CODE: &str = "inviteCode";
    /// On a `Connections` row: the start (epoch ms) of the connection's invite-lookup window and
    /// how many lookups it made in it.
    pub const INVITE_LOOKUP_WINDOW: &str = "inviteLookupWindow";
    pub const INVITE_LOOKUPS: &str = "inviteLookups";

    /// For each applied event, the events-handler invocation that applied it (a random token).
    pub const APPLIED_BY: &str = "appliedBy";
    /// Partition key of the sparse `open-tickets` index, present only while the ticket is live.
    pub const BACKSTOP_SHARD: &str = "backstopShard";
    /// Sort key of the `open-tickets` index: when the backstop should next look (epoch ms).
    pub const BACKSTOP_DUE_AT: &str = "backstopDueAt";
    /// When every player of a live ticket had disconnected (epoch ms), for the disconnect grace.
    pub const DISCONNECTED_AT: &str = "disconnectedAt";
}

/// The `open-tickets` index of `Tickets`.
pub const OPEN_TICKETS_INDEX: &str = "open-tickets";
/// The `invite-codes` index of `Parties`.
pub const INVITE_CODES_INDEX: &str = "invite-codes";
/// The `watchers` index of `Connections`.
pub const WATCHERS_INDEX: &str = "watchers";
/// The one `backstopShard` value. Every live ticket is in this index partition; at matchmaking's
/// write rates one partition is plenty, and the template's "per shard" query leaves room to spread
/// tickets over `open#0..n` later without a schema change.
pub const BACKSTOP_SHARD: &str = "open";

/// Which of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Connections,
    Players,
    Tickets,
    Parties,
}

/// A key attribute's DynamoDB scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAttributeType {
    S,
    N,
}

impl KeyAttributeType {
    fn sdk(self) -> ScalarAttributeType {
        match self {
            Self::S => ScalarAttributeType::S,
            Self::N => ScalarAttributeType::N,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: &'static str,
    pub attribute_type: KeyAttributeType,
}

/// A global secondary index. Every index of the template projects KEYS_ONLY: readers fetch the
/// row itself with a consistent GetItem, because the index lags the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSchema {
    pub name: &'static str,
    pub hash_key: KeyAttribute,
    pub range_key: Option<KeyAttribute>,
}

/// One table as `infra/template.yaml` declares it (billing mode PAY_PER_REQUEST for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSchema {
    pub table: Table,
    /// The table's logical ID in infra/template.yaml.
    pub logical_id: &'static str,
    pub hash_key: KeyAttribute,
    pub indexes: &'static [IndexSchema],
    pub ttl_attribute: &'static str,
}

impl TableSchema {
    /// The AttributeDefinitions CloudFormation needs: every key attribute of the table and its
    /// indexes, each once, table key first.
    pub fn attribute_definitions(&self) -> Vec<KeyAttribute> {
        let mut defs = vec![self.hash_key];
        for index in self.indexes {
            for key in std::iter::once(index.hash_key).chain(index.range_key) {
                if !defs.iter().any(|d| d.name == key.name) {
                    defs.push(key);
                }
            }
        }
        defs
    }
}

const fn s_key(name: &'static str) -> KeyAttribute {
    KeyAttribute { name, attribute_type: KeyAttributeType::S }
}

const fn n_key(name: &'static str) -> KeyAttribute {
    KeyAttribute { name, attribute_type: KeyAttributeType::N }
}

pub const CONNECTIONS_SCHEMA: TableSchema = TableSchema {
    table: Table::Connections,
    logical_id: "ConnectionsTable",
    hash_key: s_key(attr::CONNECTION_ID),
    indexes: &[IndexSchema { name: WATCHERS_INDEX, hash_key: s_key(attr::WATCH_CHANNEL), range_key: None }],
    ttl_attribute: attr::EXPIRES_AT,
};

pub const PLAYERS_SCHEMA: TableSchema = TableSchema {
    table: Table::Players,
    logical_id: "PlayersTable",
    hash_key: s_key(attr::PLAYER_ID),
    indexes: &[],
    ttl_attribute: attr::EXPIRES_AT,
};

pub const TICKETS_SCHEMA: TableSchema = TableSchema {
    table: Table::Tickets,
    logical_id: "TicketsTable",
    hash_key: s_key(attr::TICKET_ID),
    indexes: &[IndexSchema {
        name: OPEN_TICKETS_INDEX,
        hash_key: s_key(attr::BACKSTOP_SHARD),
        range_key: Some(n_key(attr::BACKSTOP_DUE_AT)),
    }],
    ttl_attribute: attr::EXPIRES_AT,
};

pub const PARTIES_SCHEMA: TableSchema = TableSchema {
    table: Table::Parties,
    logical_id: "PartiesTable",
    hash_key: s_key(attr::PARTY_ID),
    indexes: &[IndexSchema { name: INVITE_CODES_INDEX, hash_key: s_key(attr::INVITE_CODE), range_key: None }],
    ttl_attribute: attr::EXPIRES_AT,
};

/// The tables, in the template's order.
pub const SCHEMAS: [TableSchema; 4] = [CONNECTIONS_SCHEMA, PLAYERS_SCHEMA, TICKETS_SCHEMA, PARTIES_SCHEMA];

/// The physical table names (CloudFormation generates them; the Lambdas get them from the
/// environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub connections: String,
    pub players: String,
    pub tickets: String,
    pub parties: String,
}

impl TableNames {
    /// `CONNECTIONS_TABLE`, `PLAYERS_TABLE`, `TICKETS_TABLE` and `PARTIES_TABLE`, as the
    /// template sets them; `Connections`, `Players`, `Tickets` and `Parties` where unset
    /// (DynamoDB Local).
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            connections: var("CONNECTIONS_TABLE", "Connections"),
            players: var("PLAYERS_TABLE", "Players"),
            tickets: var("TICKETS_TABLE", "Tickets"),
            parties: var("PARTIES_TABLE", "Parties"),
        }
    }

    /// `{prefix}Connections`, `{prefix}Players`, `{prefix}Tickets`, `{prefix}Parties`: separate
    /// tables per test or per local stack in one DynamoDB Local.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            connections: format!("{prefix}Connections"),
            players: format!("{prefix}Players"),
            tickets: format!("{prefix}Tickets"),
            parties: format!("{prefix}Parties"),
        }
    }

    pub fn name(&self, table: Table) -> &str {
        match table {
            Table::Connections => &self.connections,
            Table::Players => &self.players,
            Table::Tickets => &self.tickets,
            Table::Parties => &self.parties,
        }
    }
}

/// How long create_tables waits for a new table to become ACTIVE. DynamoDB Local creates tables
/// at once; in AWS an on-demand table with one index takes well under a minute.
pub const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
const TABLE_ACTIVE_POLL: Duration = Duration::from_millis(500);

/// Creates the tables as the template defines them (keys, indexes, on-demand billing) and
/// enables TTL on `expiresAt`. Idempotent: an existing table is left as it is (its schema is not
/// checked) and TTL is only enabled where it is not yet. Point-in-time recovery and tags are the
/// template's business, not this function's: DynamoDB Local has neither.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<(), StoreError> {
    for schema in &SCHEMAS {
        create_table(client, names.name(schema.table), schema).await?;
    }
    Ok(())
}

async fn create_table(client: &Client, table_name: &str, schema: &TableSchema) -> Result<(), StoreError> {
    let built =
        |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(format!("CreateTable {table_name}: {e}"));
    let key_element = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(built)
    };

    let mut request = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element(schema.hash_key.name, KeyType::Hash)?);
    for def in schema.attribute_definitions() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(def.name)
                .attribute_type(def.attribute_type.sdk())
                .build()
                .map_err(built)?,
        );
    }
    for index in schema.indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(index.name)
            .key_schema(key_element(index.hash_key.name, KeyType::Hash)?)
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build());
        if let Some(range) = index.range_key {
            gsi = gsi.key_schema(key_element(range.name, KeyType::Range)?);
        }
        request = request.global_secondary_indexes(gsi.build().map_err(built)?);
    }
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) | Err(aws_sdk_dynamodb::Error::ResourceInUseException(_)) => {}
        Err(e) => return Err(unavailable("CreateTable", table_name, e)),
    }

    wait_until_active(client, table_name).await?;

    let ttl = client
        .describe_time_to_live()
        .table_name(table_name)
        .send()
        .await
        .map_err(|e| store_error("DescribeTimeToLive", table_name, e))?;
    let enabled = ttl.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some(schema.ttl_attribute)
            && matches!(d.time_to_live_status(), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
    });
    if !enabled {
        client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(schema.ttl_attribute)
                    .enabled(true)
                    .build()
                    .map_err(built)?,
            )
            .send()
            .await
            .map_err(|e| store_error("UpdateTimeToLive", table_name, e))?;
    }
    Ok(())
}

/// UpdateTimeToLive is refused while a table is CREATING, so wait for ACTIVE first.
async fn wait_until_active(client: &Client, table_name: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        let described = client
            .describe_table()
            .table_name(table_name)
            .send()
            .await
            .map_err(|e| store_error("DescribeTable", table_name, e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {table_name} is not ACTIVE after {TABLE_ACTIVE_TIMEOUT:?} (status {status:?})"
            )));
        }
        tokio::time::sleep(TABLE_ACTIVE_POLL).await;
    }
}

// ------------------------------------------------------------------------------------------------
// Clients
// ------------------------------------------------------------------------------------------------

/// The SDK sets no operation timeout by default, so a stalled connection would hang a handler
/// until Lambda kills it; these bound every call. DynamoDB answers in milliseconds, so an attempt
/// that takes seconds is better retried than waited on.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const OPERATION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per call (the first plus retries) for throttling and transient errors. Conditional
/// check failures are never retried: they are answers, not failures.
pub const MAX_ATTEMPTS: u32 = 3;

/// DynamoDB Local is a JVM on the same machine: its first requests run before the JIT has warmed
/// up and share two cores with the build and the tests, so it gets longer than AWS does.
pub const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const LOCAL_OPERATION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const LOCAL_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The access key ID of local clients; any letters and digits will do.
pub const LOCAL_ACCESS_KEY_ID: &str = "matchgatelocal";

fn retry_config() -> RetryConfig {
    // Standard mode: exponential backoff with jitter and a retry quota, so an outage does not turn
    // into a retry storm. The backoff is short because handlers answer a waiting client.
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_secs(1))
}

/// A client for AWS built from the shared SDK config (region and credentials from the Lambda
/// environment), with this module's explicit timeouts and retries.
pub fn client_from_sdk_config(sdk_config: &aws_config::SdkConfig) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk_config)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(OPERATION_ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(retry_config())
        .build();
    Client::from_conf(config)
}

/// A client for DynamoDB Local at `endpoint_url` (e.g. `http://127.0.0.1:8000`).
///
/// The credentials are static dummies: DynamoDB Local does not check signatures, and a local run
/// must never pick up (or need) real AWS credentials from the environment. DynamoDB Local (2.0 and
/// later) still refuses an access key ID that is not purely letters and digits. The region is fixed
/// because DynamoDB Local keeps a separate database per access key and region unless started
/// with `-sharedDb`; every local client then sees the same tables.
pub fn client_for_endpoint(endpoint_url: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(LOCAL_ACCESS_KEY_ID, "matchgatelocal", None, None, "matchgate-local"))
        .endpoint_url(endpoint_url)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(LOCAL_CONNECT_TIMEOUT)
                .operation_attempt_timeout(LOCAL_OPERATION_ATTEMPT_TIMEOUT)
                .operation_timeout(LOCAL_OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(retry_config())
        .build();
    Client::from_conf(config)
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

/// A failed call: a conditional check is `ConditionFailed`, anything else `Unavailable` with the
/// operation, the table and the SDK's error chain (codes, messages, request IDs; the SDK never puts
/// credentials or item contents in them).
/// A conditional write's outcome as whether its condition held: a failed condition is an
/// answer, not an error.
fn condition_held<T>(result: Result<T, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A strongly consistent GetItem of the item whose key attribute `key` is `value`.
pub(crate) async fn consistent_get(
    client: &Client,
    table: &str,
    key: &str,
    value: &str,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(key, s(value))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("GetItem", table, e))?;
    Ok(out.item)
}

pub(crate) fn store_error<E>(operation: &str, table: &str, err: E) -> StoreError
where
    aws_sdk_dynamodb::Error: From<E>,
{
    match aws_sdk_dynamodb::Error::from(err) {
        aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_) => StoreError::ConditionFailed,
        other => unavailable(operation, table, other),
    }
}

pub(crate) fn unavailable(operation: &str, table: &str, err: aws_sdk_dynamodb::Error) -> StoreError {
    StoreError::Unavailable(format!("DynamoDB {operation} on {table}: {}", DisplayErrorContext(&err)))
}

/// A stored item this code cannot read: someone edited it by hand, or a different version wrote it.
fn malformed(table: &str, name: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{table}: attribute {name} {what}"))
}

// ------------------------------------------------------------------------------------------------
// Item encoding helpers
// ------------------------------------------------------------------------------------------------

pub(crate) type Item = HashMap<String, Av>;

pub(crate) fn s(value: impl Into<String>) -> Av {
    Av::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> Av {
    Av::N(value.to_string())
}

fn string_list(values: &[String]) -> Av {
    Av::L(values.iter().map(|v| Av::S(v.clone())).collect())
}

/// Reads the attributes of one stored item, naming the table in every error.
struct Fields<'a> {
    table: &'a str,
    item: &'a Item,
}

impl Fields<'_> {
    fn optional_s(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.item.get(name) {
            None | Some(Av::Null(_)) => Ok(None),
            Some(Av::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(malformed(self.table, name, "is not a string")),
        }
    }

    /// A map of strings; absent is empty.
    fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        match self.item.get(name) {
            None | Some(Av::Null(_)) => Ok(BTreeMap::new()),
            Some(Av::M(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Av::S(v) => Ok((k.clone(), v.clone())),
                    _ => Err(malformed(self.table, name, "holds a value that is not a string")),
                })
                .collect(),
            Some(_) => Err(malformed(self.table, name, "is not a map")),
        }
    }

    fn s(&self, name: &str) -> Result<String, StoreError> {
        self.optional_s(name)?.ok_or_else(|| malformed(self.table, name, "is missing"))
    }

    fn optional_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.item.get(name) {
            None | Some(Av::Null(_)) => Ok(None),
            Some(Av::N(v)) => v.parse().map(Some).map_err(|_| malformed(self.table, name, "is out of range")),
            Some(_) => Err(malformed(self.table, name, "is not a number")),
        }
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.optional_n(name)?.ok_or_else(|| malformed(self.table, name, "is missing"))
    }

    /// A list of strings (or a string set, as the console may write one); missing means empty.
    fn string_list(&self, name: &str) -> Result<Vec<String>, StoreError> {
        match self.item.get(name) {
            None | Some(Av::Null(_)) => Ok(Vec::new()),
            Some(Av::Ss(values)) => Ok(values.clone()),
            Some(Av::L(values)) => values
                .iter()
                .map(|v| match v {
                    Av::S(v) => Ok(v.clone()),
                    _ => Err(malformed(self.table, name, "holds a non-string")),
                })
                .collect(),
            Some(_) => Err(malformed(self.table, name, "is not a list")),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Connections
// ------------------------------------------------------------------------------------------------

/// `Connections`: `connectionId` (S, key), `playerId` (S), `role` (S: `player` | `observer`),
/// `connectedAt` (N, epoch ms), `expiresAt` (N, epoch s, TTL).
#[derive(Debug, Clone)]
pub struct DynamoConnections {
    client: Client,
    table: String,
}

impl DynamoConnections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn connection_item(connection: &ConnectionRecord) -> Item {
    let ConnectionRecord { connection_id, player_id, role, connected_at, expires_at } = connection;
    HashMap::from([
        (attr::CONNECTION_ID.to_owned(), s(connection_id)),
        (attr::PLAYER_ID.to_owned(), s(player_id)),
        (attr::ROLE.to_owned(), s(role.as_str())),
        (attr::CONNECTED_AT.to_owned(), n(connected_at)),
        (attr::EXPIRES_AT.to_owned(), n(expires_at)),
    ])
}

fn connection_from_item(table: &str, item: &Item) -> Result<ConnectionRecord, StoreError> {
    let f = Fields { table, item };
    let role = f.s(attr::ROLE)?;
    Ok(ConnectionRecord {
        connection_id: f.s(attr::CONNECTION_ID)?,
        player_id: f.s(attr::PLAYER_ID)?,
        role: Role::parse(&role).ok_or_else(|| malformed(table, attr::ROLE, format!("is not a role: {role:?}")))?,
        connected_at: f.n(attr::CONNECTED_AT)?,
        expires_at: f.n(attr::EXPIRES_AT)?,
    })
}

#[async_trait]
impl ConnectionStore for DynamoConnections {
    async fn put(&self, connection: &ConnectionRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(connection_item(connection)))
            .send()
            .await
            .map_err(|e| store_error("PutItem", &self.table, e))?;
        Ok(())
    }

    async fn get(&self, connection_id: &str, now_ms: i64) -> Result<Option<ConnectionRecord>, StoreError> {
        let Some(item) = consistent_get(&self.client, &self.table, attr::CONNECTION_ID, connection_id).await? else {
            return Ok(None);
        };
        let connection = connection_from_item(&self.table, &item)?;
        Ok(is_live(connection.expires_at, now_ms).then_some(connection))
    }

    async fn delete(&self, connection_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(attr::CONNECTION_ID, s(connection_id))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", &self.table, e))?;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Players
// ------------------------------------------------------------------------------------------------

/// `Players`: `playerId` (S, key), `attributes` (M), `connectionId` (S, absent when none),
/// `connectedAt` (N, epoch ms of the newest connection recorded, kept when it is cleared),
/// `activeTicketId` (S, absent until the first ticket).
///
/// `attributes` holds GameLift's typed attributes as native DynamoDB values, so designers can seed
/// and edit them in the console: `S` is a string, `N` a number, `SL` a list of strings and `SDM` a
/// map of numbers, e.g. `{"skill": 23, "mode": "ranked", "roles": ["tank"], "ping": {"eu": 40}}`.
#[derive(Debug, Clone)]
pub struct DynamoPlayers {
    client: Client,
    table: String,
}

impl DynamoPlayers {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn finite(table: &str, name: &str, value: f64) -> Result<Av, StoreError> {
    // DynamoDB numbers have no NaN or infinity; refuse them here with a clear message.
    if value.is_finite() {
        Ok(n(value))
    } else {
        Err(malformed(table, name, format!("is not a finite number: {value}")))
    }
}

fn attributes_value(table: &str, attributes: &PlayerAttributes) -> Result<Av, StoreError> {
    let mut map = HashMap::with_capacity(attributes.len());
    for (name, value) in attributes {
        let av = match value {
            AttributeValue::S(v) => s(v),
            AttributeValue::N(v) => finite(table, name, *v)?,
            AttributeValue::SL(values) => string_list(values),
            AttributeValue::SDM(values) => Av::M(
                values
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), finite(table, name, *v)?)))
                    .collect::<Result<_, StoreError>>()?,
            ),
        };
        map.insert(name.clone(), av);
    }
    Ok(Av::M(map))
}

fn attributes_from_value(table: &str, value: Option<&Av>) -> Result<PlayerAttributes, StoreError> {
    let map = match value {
        None | Some(Av::Null(_)) => return Ok(PlayerAttributes::new()),
        Some(Av::M(map)) => map,
        Some(_) => return Err(malformed(table, attr::ATTRIBUTES, "is not a map")),
    };
    let number = |name: &str, v: &str| {
        v.parse::<f64>().map_err(|_| malformed(table, &format!("{}.{name}", attr::ATTRIBUTES), "is not a number"))
    };
    let mut attributes = PlayerAttributes::new();
    for (name, av) in map {
        let value = match av {
            Av::S(v) => AttributeValue::S(v.clone()),
            Av::N(v) => AttributeValue::N(number(name, v)?),
            Av::Ss(values) => AttributeValue::SL(values.clone()),
            Av::L(values) => AttributeValue::SL(
                values
                    .iter()
                    .map(|v| match v {
                        Av::S(v) => Ok(v.clone()),
                        _ => Err(malformed(table, &format!("{}.{name}", attr::ATTRIBUTES), "holds a non-string")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Av::M(values) => AttributeValue::SDM(
                values
                    .iter()
                    .map(|(k, v)| match v {
                        Av::N(v) => Ok((k.clone(), number(name, v)?)),
                        _ => Err(malformed(table, &format!("{}.{name}.{k}", attr::ATTRIBUTES), "is not a number")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(malformed(
                    table,
                    &format!("{}.{name}", attr::ATTRIBUTES),
                    "is not a string, number, list of strings or map of numbers",
                ));
            }
        };
        attributes.insert(name.clone(), value);
    }
    Ok(attributes)
}

fn player_from_item(table: &str, item: &Item) -> Result<PlayerRecord, StoreError> {
    let f = Fields { table, item };
    Ok(PlayerRecord {
        player_id: f.s(attr::PLAYER_ID)?,
        attributes: attributes_from_value(table, item.get(attr::ATTRIBUTES))?,
        connection_id: f.optional_s(attr::CONNECTION_ID)?,
        connected_at: f.optional_n(attr::CONNECTED_AT)?,
        active_ticket_id: f.optional_s(attr::ACTIVE_TICKET_ID)?,
    })
}

impl DynamoPlayers {
    /// An UpdateItem on one player's row, attribute names bound as `#a`.
    fn update(
        &self,
        player_id: &str,
        attribute: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(attr::PLAYER_ID, s(player_id))
            .expression_attribute_names("#a", attribute)
    }
}

#[async_trait]
impl PlayerStore for DynamoPlayers {
    async fn get(&self, player_id: &str) -> Result<Option<PlayerRecord>, StoreError> {
        let item = consistent_get(&self.client, &self.table, attr::PLAYER_ID, player_id).await?;
        item.map(|item| player_from_item(&self.table, &item)).transpose()
    }

    async fn put_attributes(&self, player_id: &str, attributes: &PlayerAttributes) -> Result<(), StoreError> {
        self.update(player_id, attr::ATTRIBUTES)
            .update_expression("SET #a = :v")
            .expression_attribute_values(":v", attributes_value(&self.table, attributes)?)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e))?;
        Ok(())
    }

    async fn set_connection(
        &self,
        player_id: &str,
        connection_id: &str,
        connected_at: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .update(player_id, attr::CONNECTION_ID)
            .update_expression("SET #a = :v, #t = :t")
            .condition_expression("attribute_not_exists(#t) OR #t <= :t")
            .expression_attribute_names("#t", attr::CONNECTED_AT)
            .expression_attribute_values(":v", s(connection_id))
            .expression_attribute_values(":t", n(connected_at))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e));
        condition_held(result)
    }

    async fn clear_connection(&self, player_id: &str, connection_id: &str) -> Result<bool, StoreError> {
        // The condition also fails for a missing row, so this never creates one.
        let result = self
            .update(player_id, attr::CONNECTION_ID)
            .update_expression("REMOVE #a")
            .condition_expression("#a = :c")
            .expression_attribute_values(":c", s(connection_id))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e));
        condition_held(result)
    }

    async fn claim_ticket(&self, player_id: &str, expected: Option<&str>, new: &str) -> Result<(), StoreError> {
        let request = self
            .update(player_id, attr::ACTIVE_TICKET_ID)
            .update_expression("SET #a = :new")
            .expression_attribute_values(":new", s(new));
        let request = match expected {
            // Creates the row for a player seen for the first time.
            None => request.condition_expression("attribute_not_exists(#a)"),
            Some(expected) => {
                request.condition_expression("#a = :expected").expression_attribute_values(":expected", s(expected))
            }
        };
        request.send().await.map_err(|e| store_error("UpdateItem", &self.table, e))?;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Tickets
// ------------------------------------------------------------------------------------------------

/// `Tickets`: `ticketId` (S, key), `playerIds` (L of S), `configurationName` (S), the state
/// machine's fields at the top level (`status` S in DescribeMatchmaking's spelling, `matchId` S,
/// `closedMatchIds` L of S, each omitted when empty), `version` (N), `createdAt` and `lastEventAt`
/// (N, epoch ms), `results` (M: playerId → the push as a map, e.g. `{type: "MatchmakingSucceeded",
/// ticketId: .., port: 7777, ..}`), `appliedEventIds` (L of S), `appliedBy` (M: event ID → the token of the invocation that applied it), `expiresAt` (N, epoch s, TTL), and
/// while the ticket is live `backstopShard` (S, `open`) + `backstopDueAt` (N, epoch ms), the keys
/// of the sparse `open-tickets` index. An ended ticket has neither, so it leaves the index.
#[derive(Debug, Clone)]
pub struct DynamoTickets {
    client: Client,
    table: String,
}

impl DynamoTickets {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn ticket_item(table: &str, ticket: &TicketRecord) -> Result<Item, StoreError> {
    let TicketRecord {
        ticket_id,
        player_ids,
        configuration_name,
        state,
        version,
        created_at,
        last_event_at,
        results,
        applied_event_ids,
        applied_by,
        backstop_due_at,
        disconnected_at,
        expires_at,
    } = ticket;
    let mut results_map = HashMap::with_capacity(results.len());
    for (player_id, push) in results {
        let value = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(push)
            .map_err(|e| malformed(table, attr::RESULTS, format!("cannot hold a push: {e}")))?;
        results_map.insert(player_id.clone(), value);
    }
    let mut item = HashMap::from([
        (attr::TICKET_ID.to_owned(), s(ticket_id)),
        (attr::PLAYER_IDS.to_owned(), string_list(player_ids)),
        (attr::CONFIGURATION_NAME.to_owned(), s(configuration_name)),
        (attr::VERSION.to_owned(), n(version)),
        (attr::CREATED_AT.to_owned(), n(created_at)),
        (attr::LAST_EVENT_AT.to_owned(), n(last_event_at)),
        (attr::RESULTS.to_owned(), Av::M(results_map)),
        (attr::APPLIED_EVENT_IDS.to_owned(), string_list(applied_event_ids)),
        (attr::EXPIRES_AT.to_owned(), n(expires_at)),
    ]);
    if !applied_by.is_empty() {
        let tokens = applied_by.iter().map(|(event_id, token)| (event_id.clone(), s(token))).collect();
        item.insert(attr::APPLIED_BY.to_owned(), Av::M(tokens));
    }
    if let Some(at) = disconnected_at {
        item.insert(attr::DISCONNECTED_AT.to_owned(), n(at));
    }
    if let Some(due) = backstop_due_at {
        item.insert(attr::BACKSTOP_SHARD.to_owned(), s(BACKSTOP_SHARD));
        item.insert(attr::BACKSTOP_DUE_AT.to_owned(), n(due));
    }
    // The state machine's fields go at the top level through its own serde names, so a field it
    // gains later is stored without touching this code.
    let state_item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(state)
        .map_err(|e| malformed(table, "status", format!("cannot hold the ticket state: {e}")))?;
    for (name, value) in state_item {
        if item.contains_key(&name) {
            return Err(malformed(table, &name, "is both a ticket field and a TicketState field"));
        }
        item.insert(name, value);
    }
    Ok(item)
}

fn ticket_from_item(table: &str, item: &Item) -> Result<TicketRecord, StoreError> {
    let f = Fields { table, item };
    let results = match item.get(attr::RESULTS) {
        None | Some(Av::Null(_)) => Default::default(),
        Some(Av::M(map)) => map
            .iter()
            .map(|(player_id, value)| {
                let push: Push = serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(value.clone())
                    .map_err(|e| malformed(table, &format!("{}.{player_id}", attr::RESULTS), e))?;
                Ok((player_id.clone(), push))
            })
            .collect::<Result<_, StoreError>>()?,
        Some(_) => return Err(malformed(table, attr::RESULTS, "is not a map")),
    };
    let state: TicketState = serde_dynamo::aws_sdk_dynamodb_1::from_item(item.clone())
        .map_err(|e| malformed(table, "status", format!("is not a ticket state: {e}")))?;
    Ok(TicketRecord {
        ticket_id: f.s(attr::TICKET_ID)?,
        player_ids: f.string_list(attr::PLAYER_IDS)?,
        configuration_name: f.s(attr::CONFIGURATION_NAME)?,
        state,
        version: f.n(attr::VERSION)?,
        created_at: f.n(attr::CREATED_AT)?,
        last_event_at: f.n(attr::LAST_EVENT_AT)?,
        results,
        applied_event_ids: f.string_list(attr::APPLIED_EVENT_IDS)?,
        applied_by: f.string_map(attr::APPLIED_BY)?,
        backstop_due_at: f.optional_n(attr::BACKSTOP_DUE_AT)?,
        disconnected_at: f.optional_n(attr::DISCONNECTED_AT)?,
        expires_at: f.n(attr::EXPIRES_AT)?,
    })
}

impl DynamoTickets {
    async fn put(
        &self,
        ticket: &TicketRecord,
        condition: &str,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(ticket_item(&self.table, ticket)?))
            .condition_expression(condition);
        request = match expected_version {
            None => request.expression_attribute_names("#id", attr::TICKET_ID),
            Some(expected) => request
                .expression_attribute_names("#version", attr::VERSION)
                .expression_attribute_values(":expected", n(expected)),
        };
        request.send().await.map_err(|e| store_error("PutItem", &self.table, e))?;
        Ok(())
    }
}

#[async_trait]
impl TicketStore for DynamoTickets {
    async fn create(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.put(ticket, "attribute_not_exists(#id)", None).await
    }

    async fn get(&self, ticket_id: &str, now_ms: i64) -> Result<Option<TicketRecord>, StoreError> {
        let Some(item) = consistent_get(&self.client, &self.table, attr::TICKET_ID, ticket_id).await? else {
            return Ok(None);
        };
        let ticket = ticket_from_item(&self.table, &item)?;
        Ok(is_live(ticket.expires_at, now_ms).then_some(ticket))
    }

    async fn replace(&self, ticket: &TicketRecord, expected_version: u64) -> Result<(), StoreError> {
        // A missing ticket has no version, so the condition fails for it too: replace never creates.
        self.put(ticket, "#version = :expected", Some(expected_version)).await
    }

    /// Queries the `open-tickets` index (`backstopShard = "open" AND backstopDueAt <= now`, oldest
    /// due first) and reads each ticket with a consistent GetItem.
    ///
    /// The index is eventually consistent and KEYS_ONLY, and the backstop tolerates both: a ticket
    /// that just ended or was rescheduled may still show up there, so each one is re-checked on the
    /// consistent read (still live, not expired, still due) and dropped if it no longer qualifies;
    /// a ticket that just became due may be missing, and the next run a minute later finds it.
    /// Expired tickets stay in the index until TTL deletes them (up to two days), so they are
    /// skipped and the query pages on until `limit` tickets are found or the due ones run out.
    async fn due_for_backstop(&self, now_ms: i64, limit: usize) -> Result<Vec<TicketRecord>, StoreError> {
        let mut due = Vec::new();
        if limit == 0 {
            return Ok(due);
        }
        let page_size = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut start_key = None;
        'pages: loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OPEN_TICKETS_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .expression_attribute_names("#shard", attr::BACKSTOP_SHARD)
                .expression_attribute_names("#due", attr::BACKSTOP_DUE_AT)
                .expression_attribute_values(":shard", s(BACKSTOP_SHARD))
                .expression_attribute_values(":now", n(now_ms))
                .scan_index_forward(true)
                .limit(page_size)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| store_error("Query", &self.table, e))?;
            for key in page.items() {
                let ticket_id = Fields { table: &self.table, item: key }.s(attr::TICKET_ID)?;
                let Some(ticket) = self.get(&ticket_id, now_ms).await? else { continue };
                if ticket.backstop_due_at.is_some_and(|d| d <= now_ms) {
                    due.push(ticket);
                    if due.len() == limit {
                        break 'pages;
                    }
                }
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                break;
            }
        }
        // The consistent reads may have moved a ticket's due time since the index was written.
        due.sort_by(|a, b| (a.backstop_due_at, &a.ticket_id).cmp(&(b.backstop_due_at, &b.ticket_id)));
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use matchgate_protocol::ticket::TicketStatus;

    use super::*;

    fn ticket() -> TicketRecord {
        TicketRecord {
            ticket_id: "t1".into(),
            player_ids: vec!["b".into(), "a".into()],
            configuration_name: "cfg".into(),
            state: TicketState {
                status: TicketStatus::Searching,
                match_id: Some("m2".into()),
                closed_match_ids: vec!["m1".into()],
            },
            version: 3,
            created_at: 1,
            last_event_at: 2,
            results: BTreeMap::from([(
                "a".to_owned(),
                Push::MatchmakingSucceeded {
                    ticket_id: "t1".into(),
                    match_id: "m2".into(),
                    game_session_arn: Some("arn".into()),
                    ip_address: Some("10.0.0.1".into()),
                    dns_name: None,
                    port: Some(7777),
                    player_session_id: Some("psess-1".into()),
                    team: Some("red".into()),
                },
            )]),
            applied_event_ids: vec!["e1".into()],
            applied_by: BTreeMap::from([("e1".into(), "invocation-1".into())]),
            backstop_due_at: Some(5),
            disconnected_at: None,
            expires_at: 6,
        }
    }

    #[test]
    fn ticket_items_are_plain_attributes_and_round_trip() {
        let t = ticket();
        let item = ticket_item("Tickets", &t).unwrap();
        assert_eq!(item[attr::TICKET_ID], s("t1"));
        assert_eq!(item["status"], s("SEARCHING"));
        assert_eq!(item["matchId"], s("m2"));
        assert_eq!(item["closedMatchIds"], string_list(&["m1".into()]));
        assert_eq!(item[attr::BACKSTOP_SHARD], s(BACKSTOP_SHARD));
        assert_eq!(item[attr::BACKSTOP_DUE_AT], n(5));
        let Av::M(results) = &item[attr::RESULTS] else { panic!("results is not a map") };
        let Av::M(push) = &results["a"] else { panic!("a push is not a map") };
        assert_eq!(push["type"], s("MatchmakingSucceeded"));
        assert_eq!(push["port"], n(7777));
        assert_eq!(ticket_from_item("Tickets", &item).unwrap(), t);

        let ended = TicketRecord { backstop_due_at: None, ..t };
        let item = ticket_item("Tickets", &ended).unwrap();
        assert!(!item.contains_key(attr::BACKSTOP_SHARD) && !item.contains_key(attr::BACKSTOP_DUE_AT));
        assert_eq!(ticket_from_item("Tickets", &item).unwrap(), ended);
    }

    #[test]
    fn attributes_are_native_values() {
        let attributes = PlayerAttributes::from([
            ("skill".to_owned(), AttributeValue::N(23.5)),
            ("mode".to_owned(), AttributeValue::S("ranked".into())),
            ("roles".to_owned(), AttributeValue::SL(vec!["tank".into()])),
            ("ping".to_owned(), AttributeValue::SDM(BTreeMap::from([("eu".to_owned(), 40.0)]))),
        ]);
        let value = attributes_value("Players", &attributes).unwrap();
        let Av::M(map) = &value else { panic!("not a map") };
        assert_eq!(map["skill"], Av::N("23.5".into()));
        assert_eq!(map["mode"], s("ranked"));
        assert_eq!(attributes_from_value("Players", Some(&value)).unwrap(), attributes);
        let nan = PlayerAttributes::from([("skill".to_owned(), AttributeValue::N(f64::NAN))]);
        assert!(attributes_value("Players", &nan).is_err());
    }

    #[test]
    fn attribute_definitions_cover_every_key_once() {
        let names: Vec<_> = TICKETS_SCHEMA.attribute_definitions().iter().map(|d| d.name).collect();
        assert_eq!(names, [attr::TICKET_ID, attr::BACKSTOP_SHARD, attr::BACKSTOP_DUE_AT]);
        let names: Vec<_> = CONNECTIONS_SCHEMA.attribute_definitions().iter().map(|d| d.name).collect();
        assert_eq!(names, [attr::CONNECTION_ID, attr::WATCH_CHANNEL]);
    }
}
