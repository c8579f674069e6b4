//! The Lambda Runtime API one instance polls: `/2018-06-01/runtime/invocation/next`,
//! `.../response`, `.../error` and `/2018-06-01/runtime/init/error`. Each instance has its own
//! server on a loopback port, so the instances of a function never queue behind one another's
//! requests and a poll always knows which instance it comes from.
//!
//! Written here rather than taken from a crate: the emulator is the Runtime API's host side,
//! which no published crate provides (the `lambda_runtime` crate is its client).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::supervisor::Instance;
use crate::apigw::IntegrationError;

pub(crate) fn runtime_api_routes(instance: Arc<Instance>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(instance)
}

/// Long-polls for the next invocation, as Lambda's Runtime API does. The instance's first poll
/// ends its init (its cold start); the invocation's deadline starts when the instance takes it.
async fn next_invocation(State(instance): State<Arc<Instance>>) -> Response {
    instance.mark_ready();
    let Some((request_id, event)) = instance.next().await else {
        return StatusCode::GONE.into_response();
    };
    let function = &instance.function;
    let deadline_ms = crate::now_ms() + function.settings.timeout.as_millis() as i64;
    let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{}", function.name);
    let headers = [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        ("lambda-runtime-trace-id", format!("Root=1-{}", uuid::Uuid::new_v4().simple())),
    ];
    let mut response = (StatusCode::OK, event.to_string()).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn invocation_response(
    State(instance): State<Arc<Instance>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let Some(reply) = instance.function.answered(&id) else { return StatusCode::BAD_REQUEST };
    let value = if body.is_empty() { Ok(Value::Null) } else { serde_json::from_slice(&body) };
    let _ = reply.send(value.map_err(|e| IntegrationError::FunctionError(format!("the response is not JSON: {e}"))));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(instance): State<Arc<Instance>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let Some(reply) = instance.function.answered(&id) else { return StatusCode::BAD_REQUEST };
    let _ = reply.send(Err(IntegrationError::FunctionError(String::from_utf8_lossy(&body).into_owned())));
    StatusCode::ACCEPTED
}

async fn init_error(State(instance): State<Arc<Instance>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let kind = headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    tracing::error!(function = instance.function.name, instance = instance.id, kind, body = %String::from_utf8_lossy(&body), "the function failed to initialise");
    StatusCode::ACCEPTED
}
