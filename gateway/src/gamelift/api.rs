//! The GameLift API for FlexMatch's operations, in both protocols AWS SDKs speak to GameLift:
//!
//! - awsJson1.1: `POST /` with `X-Amz-Target: GameLift.<Operation>` and a JSON body (older SDKs,
//!   the CLI);
//! - Smithy RPC v2 CBOR: `POST /service/GameLift/operation/<Operation>` with a CBOR body (current
//!   SDKs, `aws-sdk-gamelift` among them).
//!
//! Both answer in AWS's shapes and error shapes, so any SDK with `endpoint_url =
//! http://127.0.0.1:PORT` works. The operations are written once, over JSON values; CBOR is
//! converted at the edge.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration, StartMatchmakingRequest};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::engine::{DescribedTicket, GameLiftError, LocalFlexMatch, StoredRuleSet};

/// `POST /` (awsJson1.1) and `POST /service/GameLift/operation/{operation}` (RPC v2 CBOR).
pub fn gamelift_routes(engine: Arc<LocalFlexMatch>) -> Router {
    Router::new()
        .route("/", post(aws_json))
        .route("/service/GameLift/operation/{operation}", post(rpc_v2_cbor))
        .with_state(engine)
}

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const CBOR_CONTENT_TYPE: &str = "application/cbor";
/// Shape IDs in RPC v2 CBOR errors are namespaced; SDKs strip everything up to `#`.
const ERROR_NAMESPACE: &str = "com.amazonaws.gamelift#";
/// Output members that are timestamps: RPC v2 CBOR carries them as tag 1 (epoch seconds).
const TIMESTAMP_MEMBERS: &[&str] = &["CreationTime", "StartTime", "EndTime"];

/// A refused request: HTTP status, AWS error type, message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl From<GameLiftError> for ApiError {
    fn from(e: GameLiftError) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error_type: e.type_name(), message: e.to_string() }
    }
}

fn invalid(message: String) -> ApiError {
    GameLiftError::InvalidRequest(message).into()
}

type ApiResult = Result<Value, ApiError>;

fn parse<T: DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    let body = if body.is_null() { json!({}) } else { body.clone() };
    serde_json::from_value(body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        // Smithy's own name for a request that does not match the operation's input shape.
        error_type: "SerializationException",
        message: format!("Invalid request: {e}"),
    })
}

async fn aws_json(State(engine): State<Arc<LocalFlexMatch>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let outcome = match target.strip_prefix("GameLift.") {
        None => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "UnknownOperationException",
            message: "X-Amz-Target must be GameLift.<Operation>".into(),
        }),
        Some(operation) => match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { &body }) {
            Ok(input) => call(&engine, operation, &input),
            Err(e) => Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                error_type: "SerializationException",
                message: format!("The body is not JSON: {e}"),
            }),
        },
    };
    match outcome {
        Ok(output) => (StatusCode::OK, [("content-type", JSON_CONTENT_TYPE)], output.to_string()).into_response(),
        Err(e) => (
            e.status,
            [("content-type", JSON_CONTENT_TYPE), ("x-amzn-ErrorType", e.error_type)],
            json!({ "__type": e.error_type, "message": e.message }).to_string(),
        )
            .into_response(),
    }
}

async fn rpc_v2_cbor(
    State(engine): State<Arc<LocalFlexMatch>>,
    Path(operation): Path<String>,
    body: Bytes,
) -> Response {
    let input = if body.is_empty() {
        Ok(json!({}))
    } else {
        ciborium::from_reader::<ciborium::Value, _>(body.as_ref()).map(|v| cbor_to_json(&v)).map_err(|e| ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "SerializationException",
            message: format!("The body is not CBOR: {e}"),
        })
    };
    let (status, output) = match input.and_then(|input| call(&engine, &operation, &input)) {
        Ok(output) => (StatusCode::OK, json_to_cbor(&output, None)),
        Err(e) => (
            e.status,
            json_to_cbor(
                &json!({ "__type": format!("{ERROR_NAMESPACE}{}", e.error_type), "message": e.message }),
                None,
            ),
        ),
    };
    let mut bytes = Vec::new();
    if ciborium::into_writer(&output, &mut bytes).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (status, [("content-type", CBOR_CONTENT_TYPE), ("smithy-protocol", "rpc-v2-cbor")], bytes).into_response()
}

fn cbor_to_json(value: &ciborium::Value) -> Value {
    use ciborium::Value as C;
    match value {
        C::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(u) = u64::try_from(n) {
                json!(u)
            } else {
                i64::try_from(n).map(|i| json!(i)).unwrap_or(Value::Null)
            }
        }
        C::Float(f) => json!(f),
        C::Text(s) => json!(s),
        C::Bool(b) => json!(b),
        C::Null => Value::Null,
        C::Tag(_, inner) => cbor_to_json(inner),
        C::Array(items) => Value::Array(items.iter().map(cbor_to_json).collect()),
        C::Map(entries) => Value::Object(
            entries.iter().filter_map(|(k, v)| k.as_text().map(|k| (k.to_owned(), cbor_to_json(v)))).collect(),
        ),
        C::Bytes(b) => json!(b),
        _ => Value::Null,
    }
}

/// JSON output → CBOR, with timestamp members as tag 1 and floats kept floats (SDKs decode a
/// `double` only from a CBOR float).
fn json_to_cbor(value: &Value, member: Option<&str>) -> ciborium::Value {
    use ciborium::Value as C;
    match value {
        Value::Number(n) if member.is_some_and(|m| TIMESTAMP_MEMBERS.contains(&m)) => {
            C::Tag(1, Box::new(C::Float(n.as_f64().unwrap_or_default())))
        }
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => C::Integer(u.into()),
            (_, Some(i), _) => C::Integer(i.into()),
            (_, _, Some(f)) => C::Float(f),
            _ => C::Null,
        },
        Value::String(s) => C::Text(s.clone()),
        Value::Bool(b) => C::Bool(*b),
        Value::Null => C::Null,
        Value::Array(items) => C::Array(items.iter().map(|v| json_to_cbor(v, None)).collect()),
        Value::Object(map) => {
            C::Map(map.iter().map(|(k, v)| (C::Text(k.clone()), json_to_cbor(v, Some(k.as_str())))).collect())
        }
    }
}

/// One GameLift operation over JSON values.
fn call(engine: &LocalFlexMatch, operation: &str, input: &Value) -> ApiResult {
    match operation {
        "StartMatchmaking" => start_matchmaking(engine, input),
        "DescribeMatchmaking" => describe_matchmaking(engine, input),
        "StopMatchmaking" => stop_matchmaking(engine, input),
        "AcceptMatch" => accept_match(engine, input),
        "ValidateMatchmakingRuleSet" => validate_rule_set(input),
        "CreateMatchmakingRuleSet" => create_rule_set(engine, input),
        "DescribeMatchmakingRuleSets" => describe_rule_sets(engine, input),
        "DeleteMatchmakingRuleSet" => delete_rule_set(engine, input),
        "CreateMatchmakingConfiguration" => create_configuration(engine, input),
        "DescribeMatchmakingConfigurations" => describe_configurations(engine, input),
        "UpdateMatchmakingConfiguration" => update_configuration(engine, input),
        "DeleteMatchmakingConfiguration" => delete_configuration(engine, input),
        other => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "UnknownOperationException",
            message: format!("The local stack does not serve GameLift.{other}"),
        }),
    }
}

fn seconds(epoch_ms: i64) -> Value {
    json!(epoch_ms as f64 / 1000.0)
}

// --- matchmaking ---------------------------------------------------------------------------

fn attribute_json(value: &matchgate_flexmatch::AttributeValue) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn ticket_json(t: &DescribedTicket) -> Value {
    let mut ticket = json!({
        "TicketId": t.ticket_id,
        "ConfigurationName": t.configuration_name,
        "ConfigurationArn": t.configuration_arn,
        "Status": t.status.as_str(),
        "StartTime": seconds(t.start_time_ms),
        "Players": t.players.iter().map(|p| {
            let mut player = json!({
                "PlayerId": p.player_id,
                "PlayerAttributes": p.attributes.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>(),
                "LatencyInMs": p.latency_in_ms,
            });
            if let Some(team) = t.teams.get(&p.player_id) {
                player["Team"] = json!(team);
            }
            player
        }).collect::<Vec<_>>(),
    });
    if let Some(reason) = &t.status_reason {
        ticket["StatusReason"] = json!(reason);
    }
    if let Some(message) = &t.status_message {
        ticket["StatusMessage"] = json!(message);
    }
    if let Some(end) = t.end_time_ms {
        ticket["EndTime"] = seconds(end);
    }
    if let Some(g) = &t.game_session {
        ticket["GameSessionConnectionInfo"] = json!({
            "GameSessionArn": g.game_session_arn,
            "IpAddress": g.ip_address,
            "DnsName": g.dns_name,
            "Port": g.port,
            "MatchedPlayerSessions": g.player_sessions.iter()
                .map(|(player, session)| json!({"PlayerId": player, "PlayerSessionId": session}))
                .collect::<Vec<_>>(),
        });
    }
    ticket
}

fn start_matchmaking(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let mut input: StartMatchmakingRequest = parse(body)?;
    if input.ticket_id.is_empty() {
        input.ticket_id = uuid::Uuid::new_v4().to_string();
    }
    let ticket_id = input.ticket_id.clone();
    engine.start(input)?;
    let described = engine.describe(std::slice::from_ref(&ticket_id))?;
    let ticket = described.first().map(ticket_json).unwrap_or(Value::Null);
    Ok(json!({ "MatchmakingTicket": ticket }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    ticket_ids: Vec<String>,
}

fn describe_matchmaking(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: DescribeInput = parse(body)?;
    let tickets = engine.describe(&input.ticket_ids)?;
    Ok(json!({ "TicketList": tickets.iter().map(ticket_json).collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StopInput {
    ticket_id: String,
}

fn stop_matchmaking(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: StopInput = parse(body)?;
    engine.stop(&input.ticket_id)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AcceptInput {
    ticket_id: String,
    player_ids: Vec<String>,
    acceptance_type: String,
}

fn accept_match(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: AcceptInput = parse(body)?;
    let accept = match input.acceptance_type.as_str() {
        "ACCEPT" => true,
        "REJECT" => false,
        other => return Err(invalid(format!("Invalid AcceptanceType {other:?}"))),
    };
    engine.accept(&input.ticket_id, &input.player_ids, accept)?;
    Ok(json!({}))
}

// --- rule sets -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ValidateInput {
    rule_set_body: String,
}

fn validate_rule_set(body: &Value) -> ApiResult {
    let input: ValidateInput = parse(body)?;
    let errors = matchgate_flexmatch::RuleSet::validate_all(&input.rule_set_body);
    if errors.is_empty() {
        return Ok(json!({ "Valid": true }));
    }
    // GameLift reports an invalid rule set as InvalidRequestException, naming what is wrong.
    let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    Err(invalid(format!("Invalid rule set: {message}")))
}

fn rule_set_json(engine: &LocalFlexMatch, r: &StoredRuleSet) -> Value {
    json!({
        "RuleSetName": r.name,
        "RuleSetArn": engine.rule_set_arn(&r.name),
        "RuleSetBody": r.body,
        "CreationTime": seconds(r.creation_time_ms),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRuleSetInput {
    name: String,
    rule_set_body: String,
}

fn create_rule_set(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: CreateRuleSetInput = parse(body)?;
    let stored = engine.create_rule_set(&input.name, &input.rule_set_body)?;
    Ok(json!({ "RuleSet": rule_set_json(engine, &stored) }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DescribeRuleSetsInput {
    #[serde(default)]
    names: Vec<String>,
}

fn describe_rule_sets(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: DescribeRuleSetsInput = parse(body)?;
    let rule_sets = engine.describe_rule_sets(&input.names)?;
    Ok(json!({ "RuleSets": rule_sets.iter().map(|r| rule_set_json(engine, r)).collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameInput {
    name: String,
}

fn delete_rule_set(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: NameInput = parse(body)?;
    engine.delete_rule_set(&input.name)?;
    Ok(json!({}))
}

// --- configurations ------------------------------------------------------------------------

/// The configuration fields Create and Update take; Update leaves absent ones as they are.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigurationInput {
    name: String,
    description: Option<String>,
    game_session_queue_arns: Option<Vec<String>>,
    request_timeout_seconds: Option<u32>,
    acceptance_timeout_seconds: Option<u32>,
    acceptance_required: Option<bool>,
    rule_set_name: Option<String>,
    notification_target: Option<String>,
    additional_player_count: Option<u32>,
    custom_event_data: Option<String>,
    backfill_mode: Option<String>,
    flex_match_mode: Option<String>,
}

impl ConfigurationInput {
    fn apply(&self, c: &mut MatchmakingConfiguration) -> Result<(), GameLiftError> {
        if let Some(v) = self.description.clone() {
            c.description = Some(v);
        }
        if let Some(v) = self.game_session_queue_arns.clone() {
            c.game_session_queue_arns = v;
        }
        if let Some(v) = self.request_timeout_seconds {
            c.request_timeout_seconds = v;
        }
        if let Some(v) = self.acceptance_timeout_seconds {
            c.acceptance_timeout_seconds = Some(v);
        }
        if let Some(v) = self.acceptance_required {
            c.acceptance_required = v;
        }
        if let Some(v) = self.rule_set_name.clone() {
            c.rule_set_name = v.rsplit('/').next().unwrap_or(&v).to_owned();
        }
        if let Some(v) = self.notification_target.clone() {
            c.notification_target = Some(v);
        }
        if let Some(v) = self.additional_player_count {
            c.additional_player_count = v;
        }
        if let Some(v) = self.custom_event_data.clone() {
            c.custom_event_data = Some(v);
        }
        if let Some(v) = self.backfill_mode.clone() {
            c.backfill_mode = Some(v);
        }
        if let Some(v) = self.flex_match_mode.clone() {
            c.flex_match_mode = FlexMatchMode::parse(&v)
                .ok_or_else(|| GameLiftError::InvalidRequest(format!("Invalid FlexMatchMode {v:?}")))?;
        }
        Ok(())
    }
}

fn configuration_json(engine: &LocalFlexMatch, c: &MatchmakingConfiguration) -> Value {
    let mut value = json!({
        "Name": c.name,
        "ConfigurationArn": engine.configuration_arn(&c.name),
        "GameSessionQueueArns": c.game_session_queue_arns,
        "RequestTimeoutSeconds": c.request_timeout_seconds,
        "AcceptanceRequired": c.acceptance_required,
        "RuleSetName": c.rule_set_name,
        "RuleSetArn": engine.rule_set_arn(&c.rule_set_name),
        "AdditionalPlayerCount": c.additional_player_count,
        "CreationTime": seconds(c.creation_time_ms),
        "FlexMatchMode": c.flex_match_mode.as_str(),
    });
    if c.acceptance_required {
        value["AcceptanceTimeoutSeconds"] = json!(c.acceptance_timeout());
    }
    for (key, v) in [
        ("Description", &c.description),
        ("NotificationTarget", &c.notification_target),
        ("CustomEventData", &c.custom_event_data),
        ("BackfillMode", &c.backfill_mode),
    ] {
        if let Some(v) = v {
            value[key] = json!(v);
        }
    }
    value
}

fn create_configuration(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: ConfigurationInput = parse(body)?;
    if input.request_timeout_seconds.is_none() || input.acceptance_required.is_none() || input.rule_set_name.is_none() {
        return Err(invalid("RequestTimeoutSeconds, AcceptanceRequired and RuleSetName are required".into()));
    }
    let mut configuration =
        MatchmakingConfiguration { name: input.name.clone(), ..MatchmakingConfiguration::default() };
    input.apply(&mut configuration)?;
    let created = engine.create_configuration(configuration)?;
    Ok(json!({ "Configuration": configuration_json(engine, &created) }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DescribeConfigurationsInput {
    #[serde(default)]
    names: Vec<String>,
    rule_set_name: Option<String>,
}

fn describe_configurations(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: DescribeConfigurationsInput = parse(body)?;
    let configurations = engine.describe_configurations(&input.names, input.rule_set_name.as_deref());
    Ok(json!({
        "Configurations": configurations.iter().map(|c| configuration_json(engine, c)).collect::<Vec<_>>()
    }))
}

fn update_configuration(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: ConfigurationInput = parse(body)?;
    let name = input.name.clone();
    // Check the input whole before the engine applies it, so a bad field changes nothing.
    input.apply(&mut MatchmakingConfiguration::default())?;
    let updated = engine.update_configuration(&name, |c| {
        let _checked_above = input.apply(c);
    })?;
    Ok(json!({ "Configuration": configuration_json(engine, &updated) }))
}

fn delete_configuration(engine: &LocalFlexMatch, body: &Value) -> ApiResult {
    let input: NameInput = parse(body)?;
    engine.delete_configuration(&input.name)?;
    Ok(json!({}))
}
