//! `GET /{stage}`: the WebSocket handshake as API Gateway answers it. The URL limit, the stage,
//! the upgrade request itself and the allowed origins are checked, `$connect` runs (see
//! [`super::connect`]), and only then is the connection upgraded and handed to its own task
//! ([`super::connection`]).
//!
//! The handshake is answered here rather than by axum's `WebSocketUpgrade`, whose socket only
//! sends whole messages: API Gateway sends a message over its 32 KB frame limit in several
//! frames, which takes tungstenite's own stream (`Message::Frame`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::{Map, json};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::connect::{authorize, invoke_connect, parse_query};
use super::event::EventContext;
use super::registry::new_connection_id;
use super::{ApiGateway, MAX_URL_LENGTH, Peer};
use crate::now_ms;

/// `GET /{stage}`: the WebSocket API.
pub fn websocket_route(gateway: Arc<ApiGateway>) -> Router {
    Router::new().route("/{stage}", get(upgrade)).with_state(gateway)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    // API Gateway's refusal body.
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// The URL a client connected to, as API Gateway counts it against [`MAX_URL_LENGTH`]: scheme,
/// host and the request target (path and query string).
fn url_length(headers: &HeaderMap, request: &Request) -> usize {
    let host = headers.get(header::HOST).map_or(0, HeaderValue::len);
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    "ws://".len() + host + target
}

async fn upgrade(
    State(gateway): State<Arc<ApiGateway>>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    if url_length(&headers, &request) > MAX_URL_LENGTH {
        return refuse(StatusCode::URI_TOO_LONG, "Request-URI Too Long");
    }
    if stage != gateway.stage {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    if gateway.shutdown.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: shutting down");
    }
    let key = match websocket_key(&headers) {
        Ok(key) => key,
        Err(refusal) => return (StatusCode::BAD_REQUEST, refusal).into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "WebSocket request couldn't be upgraded").into_response();
    };
    if !gateway.limits.allowed_origins.is_empty() {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        // Browsers always send Origin; native clients may not, and cannot be told apart by it.
        if origin.is_some_and(|o| !gateway.limits.allowed_origins.iter().any(|a| a == o)) {
            return refuse(StatusCode::FORBIDDEN, "Forbidden: origin not allowed");
        }
    }
    let query = parse_query(raw_query.as_deref().unwrap_or_default());
    let mut context = EventContext {
        api_id: gateway.api_id.clone(),
        stage: gateway.stage.clone(),
        domain_name: headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned(),
        connection_id: new_connection_id(),
        source_ip: peer.addr.ip(),
        user_agent: headers.get(header::USER_AGENT).and_then(|h| h.to_str().ok()).map(str::to_owned),
        connected_at: now_ms(),
        authorizer: Map::new(),
    };
    // The authorizer runs first and sees the same request; its context then travels with every
    // event of the connection.
    context.authorizer = match authorize(&gateway, &context, &headers, &query).await {
        Ok(authorizer) => authorizer,
        Err((status, message)) => return refuse(status, message),
    };
    let subprotocol = match invoke_connect(&gateway, &context, &headers, &query).await {
        Ok(subprotocol) => subprotocol,
        Err((status, message)) => return refuse(status, message),
    };
    let limits = &gateway.limits;
    let config = WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer_bytes)
        // Pushes are written as they come; nothing waits in a write buffer.
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message_bytes * 2)
        .max_frame_size(Some(limits.max_frame_bytes))
        .max_message_size(Some(limits.max_message_bytes));
    let task_gateway = Arc::clone(&gateway);
    // Tracked: shutdown waits for the connection's close frame and its `$disconnect`.
    gateway.connections.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(connection_id = context.connection_id, error = %e, "the upgrade failed");
                return;
            }
        };
        peer.mark_upgraded();
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        let (sink, stream) = socket.split();
        super::connection::run(sink, stream, context, task_gateway).await;
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .body(Body::empty())
        .unwrap_or_default();
    // As in AWS, the subprotocol the client gets is the one `$connect` answered with, when the
    // client offered it.
    if let Some(protocol) = subprotocol.filter(|p| offered_protocols(&headers).any(|o| o == p.as_bytes()))
        && let Ok(value) = HeaderValue::from_str(&protocol)
    {
        response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    response
}

/// The client's `Sec-WebSocket-Key`, once the request is a WebSocket upgrade (RFC 6455 §4.2.1);
/// otherwise why it is not.
fn websocket_key(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has(header::CONNECTION, "upgrade") {
        return Err("Connection header did not include 'upgrade'");
    }
    if !has(header::UPGRADE, "websocket") {
        return Err("`Upgrade` header did not include 'websocket'");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err("`Sec-WebSocket-Version` header did not include '13'");
    }
    headers.get(header::SEC_WEBSOCKET_KEY).cloned().ok_or("`Sec-WebSocket-Key` header missing")
}

/// The subprotocols the client offered in `Sec-WebSocket-Protocol`.
fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn only_a_websocket_upgrade_request_has_a_key() {
        let upgrade = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(websocket_key(&headers(&upgrade)).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        for missing in 0..upgrade.len() {
            let mut partial = upgrade.to_vec();
            partial.remove(missing);
            assert!(websocket_key(&headers(&partial)).is_err(), "without {:?}", upgrade[missing].0);
        }
        let old = [upgrade[0], upgrade[1], ("sec-websocket-version", "8"), upgrade[3]];
        assert!(websocket_key(&headers(&old)).is_err());
    }

    #[test]
    fn offered_subprotocols_are_read_from_every_header() {
        let mut offered = headers(&[("sec-websocket-protocol", "matchgate.v1, abc")]);
        offered.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("xyz"));
        let protocols: Vec<&[u8]> = offered_protocols(&offered).collect();
        assert_eq!(protocols, [&b"matchgate.v1"[..], b"abc", b"xyz"]);
    }
}
