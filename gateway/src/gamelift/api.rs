//! The GameLift API for FlexMatch's operations, in both protocols AWS SDKs speak to GameLift:
//!
//! - awsJson1.1: `POST /` with `X-Amz-Target: GameLift.<Operation>` and a JSON body (older SDKs,
//!   the CLI);
//! - Smithy RPC v2 CBOR: `POST /service/GameLift/operation/<Operation>` with a CBOR body (current
//!   SDKs, `aws-sdk-gamelift` among them).
//!
//! Both answer in AWS's shapes and error shapes, so any SDK with `endpoint_url =
//! http://127.0.0.1:PORT` works. Each operation is written once over typed request and response
//! shapes ([`shapes`]); the protocol only decides how a body is decoded and encoded.

mod shapes;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use matchgate_protocol::gamelift::{MatchmakingConfiguration, StartMatchmakingRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::shapes::*;
use super::engine::{GameLiftError, LocalFlexMatch};

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

/// A refused request, as both protocols answer it: an HTTP status and AWS's error body
/// (`__type` + `message`).
#[derive(Debug)]
struct AwsError {
    status: StatusCode,
    body: ErrorResponse,
}

impl AwsError {
    fn new(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: ErrorResponse { error_type: error_type.to_owned(), message: message.into() },
        }
    }

    /// A body that does not match the operation's input shape (Smithy's own name for it).
    fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    fn unknown_operation(message: impl Into<String>) -> Self {
        Self::new("UnknownOperationException", message)
    }
}

impl From<GameLiftError> for AwsError {
    fn from(e: GameLiftError) -> Self {
        Self::new(e.type_name(), e.to_string())
    }
}

fn invalid(message: String) -> AwsError {
    GameLiftError::InvalidRequest(message).into()
}

/// A request body in the protocol it came in.
#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    Json(&'a [u8]),
    Cbor(&'a [u8]),
}

impl Body<'_> {
    /// The operation's input shape; an empty body is an empty input, as SDKs send for
    /// operations without required members.
    fn decode<T: DeserializeOwned>(self) -> Result<T, AwsError> {
        match self {
            Self::Json(b) | Self::Cbor(b) if b.is_empty() => {
                serde_json::from_str("{}").map_err(|e| AwsError::serialization(format!("Invalid request: {e}")))
            }
            Self::Json(b) => {
                serde_json::from_slice(b).map_err(|e| AwsError::serialization(format!("Invalid request: {e}")))
            }
            Self::Cbor(b) => {
                ciborium::from_reader(b).map_err(|e| AwsError::serialization(format!("Invalid request: {e}")))
            }
        }
    }
}

type ApiResult = Result<Value, AwsError>;

/// The operation's output shape, ready for either protocol's encoder.
fn output<T: Serialize>(value: &T) -> ApiResult {
    serde_json::to_value(value).map_err(|e| AwsError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: ErrorResponse { error_type: "InternalServiceException".into(), message: e.to_string() },
    })
}

async fn aws_json(State(engine): State<Arc<LocalFlexMatch>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let outcome = match target.strip_prefix("GameLift.") {
        None => Err(AwsError::unknown_operation("X-Amz-Target must be GameLift.<Operation>")),
        Some(operation) => call(&engine, operation, Body::Json(&body)),
    };
    match outcome {
        Ok(output) => (StatusCode::OK, [("content-type", JSON_CONTENT_TYPE)], output.to_string()).into_response(),
        Err(e) => {
            let error_type = e.body.error_type.clone();
            let body = serde_json::to_string(&e.body).unwrap_or_default();
            (e.status, [("content-type", JSON_CONTENT_TYPE), ("x-amzn-ErrorType", error_type.as_str())], body)
                .into_response()
        }
    }
}

async fn rpc_v2_cbor(
    State(engine): State<Arc<LocalFlexMatch>>,
    Path(operation): Path<String>,
    body: Bytes,
) -> Response {
    let (status, output) = match call(&engine, &operation, Body::Cbor(&body)) {
        Ok(output) => (StatusCode::OK, json_to_cbor(&output, None)),
        Err(e) => {
            let body = ErrorResponse { error_type: format!("{ERROR_NAMESPACE}{}", e.body.error_type), ..e.body };
            (e.status, json_to_cbor(&serde_json::to_value(&body).unwrap_or_default(), None))
        }
    };
    let mut bytes = Vec::new();
    if ciborium::into_writer(&output, &mut bytes).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (status, [("content-type", CBOR_CONTENT_TYPE), ("smithy-protocol", "rpc-v2-cbor")], bytes).into_response()
}

/// An output shape → CBOR, with timestamp members as tag 1 and floats kept floats (SDKs decode a
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

/// One GameLift operation.
fn call(engine: &LocalFlexMatch, operation: &str, body: Body<'_>) -> ApiResult {
    match operation {
        "StartMatchmaking" => start_matchmaking(engine, body.decode()?),
        "DescribeMatchmaking" => describe_matchmaking(engine, body.decode()?),
        "StopMatchmaking" => stop_matchmaking(engine, body.decode()?),
        "AcceptMatch" => accept_match(engine, body.decode()?),
        "ValidateMatchmakingRuleSet" => validate_rule_set(body.decode()?),
        "CreateMatchmakingRuleSet" => create_rule_set(engine, body.decode()?),
        "DescribeMatchmakingRuleSets" => describe_rule_sets(engine, body.decode()?),
        "DeleteMatchmakingRuleSet" => delete_rule_set(engine, body.decode()?),
        "CreateMatchmakingConfiguration" => create_configuration(engine, body.decode()?),
        "DescribeMatchmakingConfigurations" => describe_configurations(engine, body.decode()?),
        "UpdateMatchmakingConfiguration" => update_configuration(engine, body.decode()?),
        "DeleteMatchmakingConfiguration" => delete_configuration(engine, body.decode()?),
        other => Err(AwsError::unknown_operation(format!("The local stack does not serve GameLift.{other}"))),
    }
}

// --- matchmaking ---------------------------------------------------------------------------

fn start_matchmaking(engine: &LocalFlexMatch, mut input: StartMatchmakingRequest) -> ApiResult {
    if input.ticket_id.is_empty() {
        input.ticket_id = uuid::Uuid::new_v4().to_string();
    }
    let ticket_id = input.ticket_id.clone();
    engine.start(input)?;
    let described = engine.describe(std::slice::from_ref(&ticket_id))?;
    output(&StartMatchmakingOutput { matchmaking_ticket: described.first() })
}

fn describe_matchmaking(engine: &LocalFlexMatch, input: DescribeMatchmakingInput) -> ApiResult {
    let tickets = engine.describe(&input.ticket_ids)?;
    output(&DescribeMatchmakingOutput { ticket_list: &tickets })
}

fn stop_matchmaking(engine: &LocalFlexMatch, input: StopMatchmakingInput) -> ApiResult {
    engine.stop(&input.ticket_id)?;
    output(&Empty {})
}

fn accept_match(engine: &LocalFlexMatch, input: AcceptMatchInput) -> ApiResult {
    let accept = match input.acceptance_type.as_str() {
        "ACCEPT" => true,
        "REJECT" => false,
        other => return Err(invalid(format!("Invalid AcceptanceType {other:?}"))),
    };
    engine.accept(&input.ticket_id, &input.player_ids, accept)?;
    output(&Empty {})
}

// --- rule sets -----------------------------------------------------------------------------

fn validate_rule_set(input: ValidateMatchmakingRuleSetInput) -> ApiResult {
    let errors = matchgate_flexmatch::RuleSet::validate_all(&input.rule_set_body);
    if errors.is_empty() {
        return output(&ValidateMatchmakingRuleSetOutput { valid: true });
    }
    // GameLift reports an invalid rule set as InvalidRequestException, naming what is wrong.
    let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    Err(invalid(format!("Invalid rule set: {message}")))
}

fn create_rule_set(engine: &LocalFlexMatch, input: CreateMatchmakingRuleSetInput) -> ApiResult {
    let stored = engine.create_rule_set(&input.name, &input.rule_set_body)?;
    output(&CreateMatchmakingRuleSetOutput { rule_set: MatchmakingRuleSet::new(engine, &stored) })
}

fn describe_rule_sets(engine: &LocalFlexMatch, input: DescribeMatchmakingRuleSetsInput) -> ApiResult {
    let rule_sets = engine.describe_rule_sets(&input.names)?;
    output(&DescribeMatchmakingRuleSetsOutput {
        rule_sets: rule_sets.iter().map(|r| MatchmakingRuleSet::new(engine, r)).collect(),
    })
}

fn delete_rule_set(engine: &LocalFlexMatch, input: NameInput) -> ApiResult {
    engine.delete_rule_set(&input.name)?;
    output(&Empty {})
}

// --- configurations ------------------------------------------------------------------------

fn create_configuration(engine: &LocalFlexMatch, input: ConfigurationInput) -> ApiResult {
    if input.request_timeout_seconds.is_none() || input.acceptance_required.is_none() || input.rule_set_name.is_none() {
        return Err(invalid("RequestTimeoutSeconds, AcceptanceRequired and RuleSetName are required".into()));
    }
    let mut configuration =
        MatchmakingConfiguration { name: input.name.clone(), ..MatchmakingConfiguration::default() };
    input.apply(&mut configuration)?;
    let created = engine.create_configuration(configuration)?;
    output(&ConfigurationOutput { configuration: ConfigurationDescription::new(engine, &created) })
}

fn describe_configurations(engine: &LocalFlexMatch, input: DescribeMatchmakingConfigurationsInput) -> ApiResult {
    let configurations = engine.describe_configurations(&input.names, input.rule_set_name.as_deref());
    output(&DescribeMatchmakingConfigurationsOutput {
        configurations: configurations.iter().map(|c| ConfigurationDescription::new(engine, c)).collect(),
    })
}

fn update_configuration(engine: &LocalFlexMatch, input: ConfigurationInput) -> ApiResult {
    let name = input.name.clone();
    // Check the input whole before the engine applies it, so a bad field changes nothing.
    input.apply(&mut MatchmakingConfiguration::default())?;
    let updated = engine.update_configuration(&name, |c| {
        let _checked_above = input.apply(c);
    })?;
    output(&ConfigurationOutput { configuration: ConfigurationDescription::new(engine, &updated) })
}

fn delete_configuration(engine: &LocalFlexMatch, input: NameInput) -> ApiResult {
    engine.delete_configuration(&input.name)?;
    output(&Empty {})
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use matchgate_lambdas::adapters::memory::ManualClock;
    use tokio::sync::mpsc;

    use super::*;
    use crate::gamelift::{Fleet, FleetConfig};

    fn engine() -> LocalFlexMatch {
        let (events, _) = mpsc::unbounded_channel();
        let engine = LocalFlexMatch::new(
            "us-east-1",
            Fleet::new(FleetConfig::default()),
            Arc::new(ManualClock::new(1_700_000_000_000)),
            events,
        );
        engine.create_rule_set("r", crate::stack::DEFAULT_RULE_SET).unwrap();
        engine
            .create_configuration(MatchmakingConfiguration {
                name: "c".into(),
                rule_set_name: "r".into(),
                ..Default::default()
            })
            .unwrap();
        engine
    }

    fn refused(operation: &str, body: &str) -> ErrorResponse {
        call(&engine(), operation, Body::Json(body.as_bytes())).expect_err("refused").body
    }

    #[test]
    fn an_attribute_with_two_values_is_refused_and_starts_nothing() {
        let engine = engine();
        let body = r#"{"ConfigurationName":"c","TicketId":"t","Players":[
            {"PlayerId":"p","PlayerAttributes":{"skill":{"S":"x","N":1}}}]}"#;
        let e = call(&engine, "StartMatchmaking", Body::Json(body.as_bytes())).expect_err("refused").body;
        assert_eq!(e.error_type, "SerializationException");
        assert!(e.message.contains("exactly one of S, N, SL, SDM"), "{}", e.message);
        assert_eq!(engine.ticket_status("t"), None);
    }

    #[test]
    fn bad_requests_get_the_aws_error_type_that_names_them() {
        let e = refused("AcceptMatch", r#"{"TicketId":"t","PlayerIds":["p"],"AcceptanceType":"MAYBE"}"#);
        assert_eq!(e.error_type, "InvalidRequestException");
        assert_eq!(refused("StopMatchmaking", r#"{"TicketId":"nope"}"#).error_type, "NotFoundException");
        assert_eq!(refused("StopMatchmaking", "{}").error_type, "SerializationException");
        assert_eq!(refused("CreateFleet", "{}").error_type, "UnknownOperationException");
        let e = refused("UpdateMatchmakingConfiguration", r#"{"Name":"c","FlexMatchMode":"SOMETIMES"}"#);
        assert_eq!(e.error_type, "InvalidRequestException");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json.as_object().map(|o| o.len()), Some(2), "AWS's error body is __type and message: {json}");
    }

    #[test]
    fn cbor_and_json_bodies_read_the_same_input() {
        let input = serde_json::json!({"ConfigurationName": "c", "TicketId": "t", "Players": [
            {"PlayerId": "p", "PlayerAttributes": {"skill": {"N": 12.5}}, "LatencyInMs": {"us-east-1": 30}}]});
        let mut cbor = Vec::new();
        ciborium::into_writer(&input, &mut cbor).unwrap();
        let from_cbor: StartMatchmakingRequest = Body::Cbor(&cbor).decode().unwrap();
        let from_json: StartMatchmakingRequest = Body::Json(input.to_string().as_bytes()).decode().unwrap();
        assert_eq!(from_cbor, from_json);
        assert_eq!(from_cbor.players[0].latency_in_ms["us-east-1"], 30);
    }
}
