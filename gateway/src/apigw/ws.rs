//! The WebSocket endpoint: `$connect` before the upgrade, then one task per connection that
//! routes frames, writes pushes and enforces the idle and maximum durations.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::event::EventContext;
use super::registry::{ConnectionHandle, Outbound, Registry, new_connection_id};
use super::{ApiGateway, AuthMode, Peer};
use crate::now_ms;

/// Close codes API Gateway uses.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
const CLOSE_ABNORMAL: u16 = 1006;
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// A token bucket: `rate` messages a second on average, bursts of `burst`.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: tokio::time::Instant,
    refused_in_a_row: u32,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: tokio::time::Instant::now(),
            refused_in_a_row: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}

/// `GET /{stage}`: the WebSocket API.
pub fn websocket_route(gateway: Arc<ApiGateway>) -> Router {
    Router::new().route("/{stage}", get(upgrade)).with_state(gateway)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    // API Gateway's refusal body.
    (status, axum::Json(json!({ "message": message }))).into_response()
}

async fn upgrade(
    State(gateway): State<Arc<ApiGateway>>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if stage != gateway.stage {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if !gateway.limits.allowed_origins.is_empty() {
        let origin = headers.get(http::header::ORIGIN).and_then(|o| o.to_str().ok());
        // Browsers always send Origin; native clients may not, and cannot be told apart by it.
        if origin.is_some_and(|o| !gateway.limits.allowed_origins.iter().any(|a| a == o)) {
            return refuse(StatusCode::FORBIDDEN, "Forbidden: origin not allowed");
        }
    }
    let query = parse_query(raw_query.as_deref().unwrap_or_default());
    let mut context = EventContext {
        api_id: gateway.api_id.clone(),
        stage: gateway.stage.clone(),
        domain_name: headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned(),
        connection_id: new_connection_id(),
        source_ip: peer.addr.ip(),
        user_agent: headers.get(http::header::USER_AGENT).and_then(|h| h.to_str().ok()).map(str::to_owned),
        connected_at: now_ms(),
        authorizer: Map::new(),
    };
    // The authorizer runs first and sees the same request; its context then travels with every
    // event of the connection.
    context.authorizer = match authorize(&gateway.auth, &context, &headers, &query).await {
        Ok(authorizer) => authorizer,
        Err((status, message)) => return refuse(status, message),
    };
    let event = context.connect(&headers, &query, now_ms());
    let subprotocol = match gateway.integration.invoke("$connect", event).await {
        Ok(response) => {
            let status = response.get("statusCode").and_then(Value::as_u64).unwrap_or(200);
            if !(200..300).contains(&status) {
                let status = u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::FORBIDDEN);
                return refuse(status, status.canonical_reason().unwrap_or("Forbidden"));
            }
            // As in AWS, the subprotocol the client gets is the one `$connect` answered with.
            response["headers"]
                .as_object()
                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol")))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_owned)
        }
        Err(e) => {
            tracing::warn!(connection_id = context.connection_id, error = %e, "$connect failed; refusing the upgrade");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
    };
    let limits = &gateway.limits;
    let ws = match subprotocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    ws.read_buffer_size(limits.read_buffer_bytes)
        // Pushes are written as they come; nothing waits in a write buffer.
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message_bytes * 2)
        .max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_message_bytes)
        .on_upgrade(move |socket| {
            peer.mark_upgraded();
            run_connection(socket, context, gateway)
        })
}

/// `$connect` authorization. The identity it establishes is the only one handlers ever use.
/// A refusal before the upgrade: the HTTP status and API Gateway's message.
type Refusal = (StatusCode, &'static str);

/// `$connect` authorization: the REQUEST authorizer's context for this connection. The identity
/// it establishes is the only one handlers ever use.
async fn authorize(
    auth: &AuthMode,
    context: &EventContext,
    headers: &HeaderMap,
    query: &BTreeMap<String, Vec<String>>,
) -> Result<Map<String, Value>, Refusal> {
    let mut authorizer = match auth {
        AuthMode::None => {
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
            authorizer
        }
        AuthMode::Jwt(verifier) => {
            // The very event a REQUEST authorizer Lambda receives, through the very same code.
            let mut event = context.connect(headers, query, now_ms());
            event["type"] = json!("REQUEST");
            event["methodArn"] = json!(format!(
                "arn:aws:execute-api:us-east-1:000000000000:{}/{}/$connect",
                context.api_id, context.stage
            ));
            let event = serde_json::from_value(event)
                .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"))?;
            match matchgate_lambdas::authorizer::authorize(event, verifier).await {
                Ok(response) => response.request_context_authorizer(),
                Err(e) => {
                    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
                    tracing::info!(connection_id = context.connection_id, reason = %e, "$connect refused");
                    return Err((status, e.gateway_message()));
                }
            }
        }
    };
    authorizer.insert("integrationLatency".into(), json!(0));
    Ok(authorizer)
}

fn parse_query(raw: &str) -> BTreeMap<String, Vec<String>> {
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        query.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    query
}

async fn run_connection(mut socket: WebSocket, context: EventContext, gateway: Arc<ApiGateway>) {
    let limits = gateway.limits.clone();
    let (tx, mut rx) = mpsc::channel(limits.outbound_queue);
    let handle = Arc::new(ConnectionHandle {
        connection_id: context.connection_id.clone(),
        source: SocketAddr::new(context.source_ip, 0),
        user_agent: context.user_agent.clone(),
        connected_at: context.connected_at,
        last_active_at: AtomicI64::new(context.connected_at),
        tx,
        close_requested: tokio::sync::Notify::new(),
    });
    gateway.registry.insert(Arc::clone(&handle));
    let idle = tokio::time::sleep(limits.idle_timeout);
    let max_duration = tokio::time::sleep(limits.max_connection_duration);
    tokio::pin!(idle, max_duration);
    let mut shutdown = gateway.shutdown.clone();
    let mut rate = RateLimit::new(limits.message_rate, limits.message_burst);

    let (code, reason): (u16, String) = loop {
        tokio::select! {
            () = handle.close_requested.notified() => {
                Box::pin(close(&mut socket, CLOSE_NORMAL, "Connection closed")).await;
                break (CLOSE_NORMAL, "Connection closed by the @connections API".into());
            }
            out = rx.recv() => {
                let message = match out {
                    Some(Outbound::Text(text)) => Message::Text(text.into()),
                    Some(Outbound::Binary(data)) => Message::Binary(data),
                    None => break (CLOSE_ABNORMAL, String::new()),
                };
                // A client that stops reading must not freeze this loop (and with it the idle and
                // maximum durations, DELETE and shutdown): a write that cannot finish ends it.
                // Boxed, as every future awaited only now and then: the connection task is as
                // large as its largest await, and it sits in memory for every idle connection.
                match Box::pin(tokio::time::timeout(limits.write_timeout, socket.send(message))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break (CLOSE_ABNORMAL, "write failed".into()),
                    Err(_) => break (CLOSE_ABNORMAL, "the client stopped reading".into()),
                }
            }
            frame = socket.recv() => {
                let now = now_ms();
                match frame {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) if !rate.allow() => {
                        Registry::touch(&handle, now);
                        if rate.refused_in_a_row >= limits.abuse_limit {
                            Box::pin(close(&mut socket, CLOSE_POLICY_VIOLATION, "Too many messages")).await;
                            break (CLOSE_POLICY_VIOLATION, "Message rate abuse".into());
                        }
                        let push = matchgate_protocol::Push::error(
                            matchgate_protocol::ErrorCode::RateLimited,
                            format!("more than {} messages a second; slow down", limits.message_rate),
                        );
                        // Refusals are best-effort: a client that floods and does not read gets none.
                        let _ = handle.tx.try_send(Outbound::Text(push.to_frame()));
                    }
                    Some(Ok(Message::Text(text))) => {
                        Registry::touch(&handle, now);
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                        // Boxed so the route future only takes memory while a message is handled,
                        // not in every idle connection's task.
                        Box::pin(dispatch(&gateway, &context, &handle, text.as_str(), false)).await;
                    }
                    Some(Ok(Message::Binary(data))) => {
                        Registry::touch(&handle, now);
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                        let body = base64::engine::general_purpose::STANDARD.encode(&data);
                        Box::pin(dispatch(&gateway, &context, &handle, &body, true)).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        Registry::touch(&handle, now);
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite has queued the reply close frame; send it before dropping.
                        let _ = Box::pin(tokio::time::timeout(CLOSE_LINGER, futures_util::SinkExt::flush(&mut socket))).await;
                        let (code, reason) = frame.map(|f| (f.code, f.reason.to_string())).unwrap_or((CLOSE_NO_STATUS, String::new()));
                        break (code, reason);
                    }
                    Some(Err(e)) => match protocol_error(e) {
                        Some((code, reason)) => {
                            Box::pin(close(&mut socket, code, reason)).await;
                            break (code, reason.into());
                        }
                        None => break (CLOSE_ABNORMAL, String::new()),
                    },
                    None => break (CLOSE_ABNORMAL, String::new()),
                }
            }
            () = &mut idle => {
                Box::pin(close(&mut socket, CLOSE_GOING_AWAY, "Going away")).await;
                break (CLOSE_GOING_AWAY, "Idle timeout".into());
            }
            _ = shutdown.changed() => {
                Box::pin(close(&mut socket, CLOSE_GOING_AWAY, "Going away")).await;
                break (CLOSE_GOING_AWAY, "Server shutting down".into());
            }
            () = &mut max_duration => {
                Box::pin(close(&mut socket, limits.max_duration_close_code, "Going away")).await;
                break (limits.max_duration_close_code, "Maximum connection duration reached".into());
            }
        }
    };
    gateway.registry.remove(&context.connection_id);
    drop(socket);
    let event = context.disconnect(code, &reason, now_ms());
    if let Err(e) = gateway.integration.invoke("$disconnect", event).await {
        tracing::warn!(connection_id = context.connection_id, error = %e, "$disconnect failed");
    }
}

/// The close a protocol error earns, as API Gateway sends it: 1009 for a frame or message over
/// the limits, 1007 for a text frame that is not UTF-8. `None`: the connection just broke.
fn protocol_error(e: axum::Error) -> Option<(u16, &'static str)> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Some((CLOSE_MESSAGE_TOO_BIG, "Message too big")),
        Some(tungstenite::Error::Utf8(_)) => Some((CLOSE_INVALID_PAYLOAD, "Invalid UTF-8 in a text frame")),
        Some(tungstenite::Error::Protocol(_)) => Some((1002, "Protocol error")),
        _ => None,
    }
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends a close frame, then reads (and drops) what the client still sends until its own
/// close frame, briefly: closing the socket with unread data would reset it and the client
/// would never see the close code.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    if tokio::time::timeout(CLOSE_LINGER, socket.send(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(frame)) = socket.recv().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Routes one frame on `$request.body.action` and invokes the route's integration. A failed
/// invocation gets API Gateway's own error frame; the connection stays open.
async fn dispatch(gateway: &ApiGateway, context: &EventContext, handle: &ConnectionHandle, body: &str, binary: bool) {
    let route_key = if binary { "$default" } else { matchgate_protocol::action::select_route(body) };
    let event = context.message(route_key, body, binary, now_ms());
    let request_id = event["requestContext"]["requestId"].as_str().unwrap_or_default().to_owned();
    let failed = match gateway.integration.invoke(route_key, event).await {
        Ok(response) => response.get("statusCode").and_then(Value::as_u64).is_some_and(|s| s >= 500),
        Err(e) => {
            tracing::warn!(connection_id = context.connection_id, route_key, error = %e, "route failed");
            true
        }
    };
    if failed {
        let frame = json!({
            "message": "Internal server error",
            "connectionId": context.connection_id,
            "requestId": request_id,
        });
        let _ = handle.tx.try_send(Outbound::Text(frame.to_string()));
    }
}
