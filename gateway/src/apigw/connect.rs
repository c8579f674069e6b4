//! `$connect` before the upgrade: the REQUEST authorizer (in-process, the authorizer function,
//! or `--auth none`'s unverified `playerId`) and the `$connect` route, as API Gateway runs them.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::event::EventContext;
use super::{ApiGateway, ConnectAuthorizer};
use crate::now_ms;

/// The `$connect` route's answer: `Ok` with the subprotocol it chose (the one the client gets,
/// as in AWS), or the refusal the handshake gets.
pub(super) async fn invoke_connect(
    gateway: &ApiGateway,
    context: &EventContext,
    headers: &HeaderMap,
    query: &BTreeMap<String, Vec<String>>,
) -> Result<Option<String>, (StatusCode, &'static str)> {
    let event = context.connect(headers, query, now_ms());
    match gateway.integration.invoke("$connect", event).await {
        Ok(response) => {
            let status = response.get("statusCode").and_then(Value::as_u64).unwrap_or(200);
            if !(200..300).contains(&status) {
                let status = u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::FORBIDDEN);
                return Err((status, status.canonical_reason().unwrap_or("Forbidden")));
            }
            Ok(response["headers"]
                .as_object()
                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol")))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_owned))
        }
        Err(e) => {
            tracing::warn!(connection_id = context.connection_id, error = %e, "$connect failed; refusing the upgrade");
            Err((StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"))
        }
    }
}

/// A refusal before the upgrade: the HTTP status and API Gateway's message.
pub(super) type Refusal = (StatusCode, &'static str);

/// API Gateway's body for a handshake refused with `status`.
fn gateway_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        _ => "Internal server error",
    }
}

/// `$connect` authorization: the REQUEST authorizer's context for this connection. The identity
/// it establishes is the only one handlers ever use.
pub(super) async fn authorize(
    gateway: &ApiGateway,
    context: &EventContext,
    headers: &HeaderMap,
    query: &BTreeMap<String, Vec<String>>,
) -> Result<Map<String, Value>, Refusal> {
    // The verifier of the in-process authorizer; none when the authorizer function decides.
    let in_process = match &gateway.auth {
        ConnectAuthorizer::None => return unverified(query),
        ConnectAuthorizer::InProcess(verifier) => Some(verifier),
        ConnectAuthorizer::Function => None,
    };
    // As API Gateway does: a handshake without one of the identity sources is refused before the
    // authorizer is invoked.
    if let Some(missing) = gateway.identity_sources.iter().find(|s| !identity_source_present(s, headers, query)) {
        tracing::info!(connection_id = context.connection_id, identity_source = missing, "$connect refused");
        return Err((StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    // The very event a REQUEST authorizer Lambda receives.
    let method_arn = super::authorizer::method_arn(&context.api_id, &context.stage);
    let mut event = context.connect(headers, query, now_ms());
    event["type"] = json!("REQUEST");
    event["methodArn"] = json!(method_arn);
    let started = std::time::Instant::now();
    let outcome = match in_process {
        // The authorizer's own code, in this process.
        Some(verifier) => {
            let event = serde_json::from_value(event)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("not a REQUEST authorizer event: {e}")));
            match event {
                Ok(event) => match matchgate_lambdas::authorizer::authorize(event, verifier).await {
                    Ok(response) => Ok(response.request_context_authorizer()),
                    Err(e) => {
                        Err((StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED), e.to_string()))
                    }
                },
                Err(refused) => Err(refused),
            }
        }
        // The authorizer function, and API Gateway's reading of its answer. It gets a third of
        // the handshake's time, so `$connect` still has the rest and a stuck authorizer (one
        // process serves every handshake) costs the client a 500, not a dropped socket.
        None => {
            let budget = gateway.limits.handshake_timeout / 3;
            match tokio::time::timeout(budget, gateway.integration.invoke(super::AUTHORIZER_TARGET, event)).await {
                Ok(result) => super::authorizer::outcome(result, &method_arn),
                Err(_) => {
                    Err((StatusCode::INTERNAL_SERVER_ERROR, format!("the authorizer did not answer within {budget:?}")))
                }
            }
        }
    };
    match outcome {
        Ok(mut authorizer) => {
            let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            authorizer.insert("integrationLatency".into(), json!(latency));
            Ok(authorizer)
        }
        Err((status, reason)) => {
            tracing::info!(connection_id = context.connection_id, %status, reason, "$connect refused");
            Err((status, gateway_message(status)))
        }
    }
}

/// `--auth none`: `?playerId=NAME` is the identity, unverified.
fn unverified(query: &BTreeMap<String, Vec<String>>) -> Result<Map<String, Value>, Refusal> {
    let player_id = query
        .get("playerId")
        .and_then(|v| v.last())
        .ok_or((StatusCode::UNAUTHORIZED, "Unauthorized: --auth none needs ?playerId=NAME"))?;
    if !matchgate_lambdas::authorizer::valid_player_id(player_id) {
        return Err((StatusCode::FORBIDDEN, "Forbidden: invalid playerId"));
    }
    let mut authorizer = Map::new();
    authorizer.insert("principalId".into(), json!(player_id));
    authorizer.insert("playerId".into(), json!(player_id));
    authorizer.insert("role".into(), json!("player"));
    authorizer.insert("integrationLatency".into(), json!(0));
    Ok(authorizer)
}

/// Whether a handshake carries an identity source: a header or query parameter that is present
/// and not empty (API Gateway treats an empty one as missing). Sources are checked at start-up
/// ([`super::check_identity_sources`]); any other kind counts as missing.
fn identity_source_present(source: &str, headers: &HeaderMap, query: &BTreeMap<String, Vec<String>>) -> bool {
    if let Some(name) = source.strip_prefix("route.request.header.") {
        headers.get_all(name).iter().any(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
    } else if let Some(name) = source.strip_prefix("route.request.querystring.") {
        query.get(name).is_some_and(|values| values.iter().any(|v| !v.is_empty()))
    } else {
        false
    }
}

pub(super) fn parse_query(raw: &str) -> BTreeMap<String, Vec<String>> {
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        query.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources_must_be_present_and_not_empty() {
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-protocol", "matchgate.v1, abc".parse().unwrap());
        let query = parse_query("token=&playerId=x");
        assert!(identity_source_present("route.request.header.Sec-WebSocket-Protocol", &headers, &query));
        assert!(!identity_source_present("route.request.header.Authorization", &headers, &query));
        assert!(!identity_source_present("route.request.querystring.token", &headers, &query));
        assert!(identity_source_present("route.request.querystring.playerId", &headers, &query));
        assert!(!identity_source_present("stageVariables.token", &headers, &query));
    }
}
