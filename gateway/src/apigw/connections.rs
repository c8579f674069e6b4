//! The API Gateway Management API (`@connections`), byte-compatible with AWS's, so
//! `aws-sdk-apigatewaymanagement` with `endpoint_url = http://127.0.0.1:PORT/{stage}` works.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::json;

use super::ApiGateway;
use super::registry::PostError;

/// `POST|GET|DELETE /{stage}/@connections/{connectionId}`.
pub fn management_routes(gateway: Arc<ApiGateway>) -> Router {
    // A body is read up to the configured message limit, not axum's default of 2 MB: past it
    // the answer is API Gateway's 413, whatever `--max-message-size` says.
    let body_limit = DefaultBodyLimit::max(gateway.limits.max_message_bytes);
    Router::new()
        .route(
            "/{stage}/@connections/{connection_id}",
            post(post_to_connection).get(get_connection).delete(delete_connection),
        )
        .layer(body_limit)
        .with_state(gateway)
}

/// An error as the AWS SDKs read it: the type in `x-amzn-ErrorType` and in the body.
fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, [("x-amzn-ErrorType", error_type)], axum::Json(json!({ "__type": error_type, "message": message })))
        .into_response()
}

fn post_error(e: PostError) -> Response {
    match e {
        PostError::Gone => aws_error(StatusCode::GONE, "GoneException", "the connection is gone"),
        PostError::PayloadTooLarge => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "the data is over the message payload limit (128 KB by default)",
        ),
        PostError::Throttled => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "the connection's outbound queue is full",
        ),
    }
}

fn wrong_stage() -> Response {
    aws_error(StatusCode::FORBIDDEN, "ForbiddenException", "no such stage")
}

async fn post_to_connection(
    State(gateway): State<Arc<ApiGateway>>,
    Path((stage, connection_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if stage != gateway.stage {
        return wrong_stage();
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return post_error(PostError::PayloadTooLarge);
        }
        Err(rejection) => return rejection.into_response(),
    };
    match gateway.registry.post(&connection_id, &body, gateway.limits.max_message_bytes) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => post_error(e),
    }
}

fn iso8601(epoch_ms: i64) -> String {
    Utc.timestamp_millis_opt(epoch_ms).single().unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn get_connection(
    State(gateway): State<Arc<ApiGateway>>,
    Path((stage, connection_id)): Path<(String, String)>,
) -> Response {
    if stage != gateway.stage {
        return wrong_stage();
    }
    let Some(handle) = gateway.registry.get(&connection_id) else {
        return post_error(PostError::Gone);
    };
    let mut identity = json!({ "sourceIp": handle.source.ip().to_string() });
    if let Some(ua) = &handle.user_agent {
        identity["userAgent"] = json!(ua);
    }
    axum::Json(json!({
        "connectedAt": iso8601(handle.connected_at),
        "lastActiveAt": iso8601(handle.last_active_at.load(Ordering::Relaxed)),
        "identity": identity,
    }))
    .into_response()
}

async fn delete_connection(
    State(gateway): State<Arc<ApiGateway>>,
    Path((stage, connection_id)): Path<(String, String)>,
) -> Response {
    if stage != gateway.stage {
        return wrong_stage();
    }
    match gateway.registry.close(&connection_id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => post_error(e),
    }
}
