//! The WebSocket endpoint: `$connect` before the upgrade, then one task per connection that
//! routes frames, writes pushes and enforces the idle and maximum durations.

use std::collections::{BTreeMap, BTreeSet};
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
use super::{ApiGateway, ConnectAuthorizer, Peer};
use crate::now_ms;

/// Close codes API Gateway uses.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
const CLOSE_ABNORMAL: u16 = 1006;
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// A connection's message rate: a token bucket of `rate` frames a second on average with bursts
/// of `burst`, and an abuse meter. Every refused frame adds one to the meter, which drains
/// `abuse_limit` per `abuse_window`; a full meter is sustained abuse. An allowed frame does not
/// empty the meter, so a client that floods between the frames that get through fills it all
/// the same, while one briefly over the rate drains it again.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    abuse: f64,
    abuse_limit: f64,
    /// Meter units drained per second.
    abuse_drain: f64,
    last: tokio::time::Instant,
    /// Whether the current run of refusals has had its `RateLimited` error: one per run, so
    /// a flood gets at most one error per frame that got through, never one per refused frame.
    warned: bool,
}

/// What the rate limit makes of one more frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    /// Refused; `warn`: the first refusal since a frame got through, which earns the error.
    Refuse {
        warn: bool,
    },
    /// Refused, and the meter is full: the connection is closed.
    Abuse,
}

impl RateLimit {
    fn new(limits: &super::Limits, now: tokio::time::Instant) -> Self {
        let window = limits.abuse_window.as_secs_f64();
        Self {
            tokens: f64::from(limits.message_burst),
            rate: f64::from(limits.message_rate),
            burst: f64::from(limits.message_burst),
            abuse: 0.0,
            abuse_limit: f64::from(limits.abuse_limit),
            abuse_drain: if window > 0.0 { f64::from(limits.abuse_limit) / window } else { f64::INFINITY },
            last: now,
            warned: false,
        }
    }

    /// Charges one frame that arrived at `now`.
    fn check(&mut self, now: tokio::time::Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        // `max` also turns 0 × ∞ (no time passed, no window) into an empty meter.
        self.abuse = (self.abuse - elapsed * self.abuse_drain).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.warned = false;
            return Verdict::Allow;
        }
        self.abuse += 1.0;
        if self.abuse >= self.abuse_limit {
            return Verdict::Abuse;
        }
        let warn = !self.warned;
        self.warned = true;
        Verdict::Refuse { warn }
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
    context.authorizer = match authorize(&gateway, &context, &headers, &query).await {
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

/// A refusal before the upgrade: the HTTP status and API Gateway's message.
type Refusal = (StatusCode, &'static str);

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
async fn authorize(
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
    let mut rate = RateLimit::new(&limits, tokio::time::Instant::now());

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
                // Data and control frames alike are charged to the rate limit: a flood of
                // pings is a flood. A refused frame neither reaches a route nor counts as
                // activity for the idle timeout.
                if let Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) = &frame {
                    Registry::touch(&handle, now);
                    match rate.check(tokio::time::Instant::now()) {
                        Verdict::Allow => idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout),
                        Verdict::Refuse { warn } => {
                            if warn {
                                let push = matchgate_protocol::Push::error(
                                    matchgate_protocol::ErrorCode::RateLimited,
                                    format!("more than {} messages a second; slow down", limits.message_rate),
                                );
                                // Best-effort: a client that floods and does not read gets none.
                                let _ = handle.tx.try_send(Outbound::Text(push.to_frame()));
                            }
                            continue;
                        }
                        Verdict::Abuse => {
                            Box::pin(close(&mut socket, CLOSE_POLICY_VIOLATION, "Too many messages")).await;
                            break (CLOSE_POLICY_VIOLATION, "Message rate abuse".into());
                        }
                    }
                }
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        // Boxed so the route future only takes memory while a message is handled,
                        // not in every idle connection's task.
                        Box::pin(dispatch(&gateway, &context, &handle, text.as_str(), false)).await;
                    }
                    Some(Ok(Message::Binary(data))) => {
                        let body = base64::engine::general_purpose::STANDARD.encode(&data);
                        Box::pin(dispatch(&gateway, &context, &handle, &body, true)).await;
                    }
                    // Answered by tungstenite itself (a Ping) or nothing to answer (a Pong).
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
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

/// API Gateway's answer to a message that selects no route and finds no `$default`.
const NO_ROUTE_MESSAGE: &str = "Forbidden";

/// The route API Gateway selects for a message on `$request.body.action`: the route the
/// `action` names if the API has it, else `$default` if it has one. Binary frames and bodies
/// the expression cannot be evaluated on go to `$default`. `$connect` and `$disconnect` are
/// never selected by a message.
fn select_route<'a>(route_keys: &'a BTreeSet<String>, body: &str, binary: bool) -> Option<&'a str> {
    #[derive(serde::Deserialize)]
    struct Selector<'a> {
        #[serde(borrow)]
        action: Option<std::borrow::Cow<'a, str>>,
    }
    let named = if binary {
        None
    } else {
        match serde_json::from_str::<Selector<'_>>(body) {
            Ok(Selector { action: Some(action) }) if !matches!(action.as_ref(), "$connect" | "$disconnect") => {
                route_keys.get(action.as_ref())
            }
            _ => None,
        }
    };
    named.or_else(|| route_keys.get("$default")).map(String::as_str)
}

/// Routes one frame on `$request.body.action` and invokes the route's integration. A failed
/// invocation gets API Gateway's own error frame; the connection stays open.
async fn dispatch(gateway: &ApiGateway, context: &EventContext, handle: &ConnectionHandle, body: &str, binary: bool) {
    let Some(route_key) = select_route(&gateway.route_keys, body, binary) else {
        let frame = json!({
            "message": NO_ROUTE_MESSAGE,
            "connectionId": context.connection_id,
            "requestId": uuid::Uuid::new_v4().to_string(),
        });
        let _ = handle.tx.try_send(Outbound::Text(frame.to_string()));
        return;
    };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn keys(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn selects_the_configured_routes_like_api_gateway() {
        let routes = keys(&["$connect", "$disconnect", "$default", "ping", "watch"]);
        assert_eq!(select_route(&routes, r#"{"action":"watch"}"#, false), Some("watch"));
        assert_eq!(select_route(&routes, r#"{"action":"ping"}"#, false), Some("ping"));
        // Not a route of this API, even if the protocol knows it.
        assert_eq!(select_route(&routes, r#"{"action":"status"}"#, false), Some("$default"));
        assert_eq!(select_route(&routes, r#"{"action":"$connect"}"#, false), Some("$default"));
        assert_eq!(select_route(&routes, "not json", false), Some("$default"));
        assert_eq!(select_route(&routes, r#"{"action":7}"#, false), Some("$default"));
        assert_eq!(select_route(&routes, r#"{"action":"ping"}"#, true), Some("$default"));
        let no_default = keys(&["$connect", "$disconnect", "ping"]);
        assert_eq!(select_route(&no_default, r#"{"action":"ping"}"#, false), Some("ping"));
        assert_eq!(select_route(&no_default, r#"{"action":"status"}"#, false), None);
        assert_eq!(select_route(&no_default, "not json", false), None);
    }

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

    fn limits(rate: u32, burst: u32, abuse_limit: u32, window: Duration) -> super::super::Limits {
        super::super::Limits {
            message_rate: rate,
            message_burst: burst,
            abuse_limit,
            abuse_window: window,
            ..super::super::Limits::default()
        }
    }

    #[test]
    fn flooding_between_allowed_messages_is_still_abuse() {
        let mut now = tokio::time::Instant::now();
        let mut rate = RateLimit::new(&limits(10, 1, 20, Duration::from_secs(10)), now);
        let mut rounds = 0;
        let verdict = loop {
            rounds += 1;
            assert!(rounds < 100, "never closed");
            // Long enough for one message to get through…
            now += Duration::from_millis(150);
            assert_eq!(rate.check(now), Verdict::Allow);
            // …then a flood of five, with one RateLimited error for all of them.
            let verdicts: Vec<Verdict> = (0..5).map(|_| rate.check(now)).collect();
            if let Some(abuse) = verdicts.iter().find(|v| **v == Verdict::Abuse) {
                break *abuse;
            }
            assert_eq!(verdicts[0], Verdict::Refuse { warn: true });
            assert!(verdicts[1..].iter().all(|v| *v == Verdict::Refuse { warn: false }), "{verdicts:?}");
        };
        assert_eq!(verdict, Verdict::Abuse);
        assert!(rounds > 1, "a single burst of five is not abuse");
    }

    #[test]
    fn a_client_briefly_over_the_rate_is_not_closed() {
        let mut now = tokio::time::Instant::now();
        let mut rate = RateLimit::new(&limits(10, 20, 30, Duration::from_secs(10)), now);
        for _ in 0..10 {
            // Forty at once, then quiet: twenty refused, and the meter drains in the pause.
            let refused: Vec<Verdict> = (0..40).map(|_| rate.check(now)).filter(|v| *v != Verdict::Allow).collect();
            assert_eq!(refused.len(), 20);
            assert!(!refused.contains(&Verdict::Abuse));
            now += Duration::from_secs(10);
        }
    }
}
