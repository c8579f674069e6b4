//! One WebSocket connection after the upgrade: it routes the client's messages, writes pushes
//! (in frames of at most the frame limit), and enforces the rate limit, the idle timeout, the
//! maximum duration, the write timeout, `DELETE @connections` and shutdown; then `$disconnect`.
//!
//! Written over any `Sink` + `Stream` of tungstenite messages (the split halves of the socket
//! in the server), so its tests drive it through channels on paused time.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use super::ApiGateway;
use super::event::EventContext;
use super::rate_limit::{RateLimit, Verdict};
use super::registry::{ConnectionHandle, Outbound, Registry};
use crate::now_ms;

/// Close codes API Gateway uses.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_ABNORMAL: u16 = 1006;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_POLICY_VIOLATION: u16 = 1008;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// How long a closing connection waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Runs a connection until it closes, then invokes `$disconnect`. `sink` and `stream` are the
/// two halves of the client's WebSocket.
pub(super) async fn run<Si, St>(mut sink: Si, mut stream: St, context: EventContext, gateway: Arc<ApiGateway>)
where
    Si: Sink<Message> + Unpin,
    Si::Error: Display,
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
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
    let mut rate = RateLimit::new(&limits, tokio::time::Instant::now());

    let (code, reason): (u16, String) = loop {
        tokio::select! {
            () = handle.close_requested.notified() => {
                Box::pin(close(&mut sink, &mut stream, CLOSE_NORMAL, "Connection closed")).await;
                break (CLOSE_NORMAL, "Connection closed by the @connections API".into());
            }
            out = rx.recv() => {
                let Some(out) = out else { break (CLOSE_ABNORMAL, String::new()) };
                // A client that stops reading must not freeze this loop (and with it the idle and
                // maximum durations, DELETE and shutdown): a frame that cannot be written in time
                // ends it. Boxed, as every future awaited only now and then: the connection task
                // is as large as its largest await, and it sits in memory for every idle connection.
                match Box::pin(write(&mut sink, out, limits.max_frame_bytes, limits.write_timeout)).await {
                    Ok(()) => {}
                    Err(reason) => break (CLOSE_ABNORMAL, reason.into()),
                }
            }
            frame = stream.next() => {
                // API Gateway takes no binary frames: it closes the connection with 1003.
                if let Some(Ok(Message::Binary(_))) = &frame {
                    Box::pin(close(&mut sink, &mut stream, CLOSE_UNSUPPORTED_DATA, "Binary frames are not supported")).await;
                    break (CLOSE_UNSUPPORTED_DATA, "Binary frames are not supported".into());
                }
                // Data and control frames alike are charged to the rate limit: a flood of
                // pings is a flood. A refused frame neither reaches a route nor counts as
                // activity for the idle timeout.
                if let Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) = &frame {
                    Registry::touch(&handle, now_ms());
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
                            Box::pin(close(&mut sink, &mut stream, CLOSE_POLICY_VIOLATION, "Too many messages")).await;
                            break (CLOSE_POLICY_VIOLATION, "Message rate abuse".into());
                        }
                    }
                }
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        // Boxed so the route future only takes memory while a message is handled,
                        // not in every idle connection's task.
                        Box::pin(super::routing::dispatch(&gateway, &context, &handle, text.as_str())).await;
                    }
                    // Answered by tungstenite itself (a Ping), nothing to answer (a Pong), or
                    // never seen when reading (a raw frame; binary frames are closed above).
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Binary(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite has queued the reply close frame; send it before dropping.
                        let _ = Box::pin(tokio::time::timeout(CLOSE_LINGER, sink.flush())).await;
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((CLOSE_NO_STATUS, String::new()));
                        break (code, reason);
                    }
                    Some(Err(e)) => match protocol_error(&e) {
                        Some((code, reason)) => {
                            Box::pin(close(&mut sink, &mut stream, code, reason)).await;
                            break (code, reason.into());
                        }
                        None => break (CLOSE_ABNORMAL, String::new()),
                    },
                    None => break (CLOSE_ABNORMAL, String::new()),
                }
            }
            () = &mut idle => {
                Box::pin(close(&mut sink, &mut stream, CLOSE_GOING_AWAY, "Going away")).await;
                break (CLOSE_GOING_AWAY, "Idle timeout".into());
            }
            () = gateway.shutdown.cancelled() => {
                // What was queued for the client before shutdown still reaches it.
                while let Ok(out) = rx.try_recv() {
                    if Box::pin(write(&mut sink, out, limits.max_frame_bytes, limits.write_timeout)).await.is_err() {
                        break;
                    }
                }
                Box::pin(close(&mut sink, &mut stream, CLOSE_GOING_AWAY, "Going away")).await;
                break (CLOSE_GOING_AWAY, "Server shutting down".into());
            }
            () = &mut max_duration => {
                Box::pin(close(&mut sink, &mut stream, limits.max_duration_close_code, "Going away")).await;
                break (limits.max_duration_close_code, "Maximum connection duration reached".into());
            }
        }
    };
    gateway.registry.remove(&context.connection_id);
    drop((sink, stream));
    let event = context.disconnect(code, &reason, now_ms());
    if let Err(e) = gateway.integration.invoke("$disconnect", event).await {
        tracing::warn!(connection_id = context.connection_id, error = %e, "$disconnect failed");
    }
}

/// Writes one push, in frames of at most `max_frame_bytes` each taking at most `write_timeout`.
async fn write<Si>(
    sink: &mut Si,
    out: Outbound,
    max_frame_bytes: usize,
    write_timeout: Duration,
) -> Result<(), &'static str>
where
    Si: Sink<Message> + Unpin,
    Si::Error: Display,
{
    for frame in frames(out, max_frame_bytes) {
        match tokio::time::timeout(write_timeout, sink.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                return Err("write failed");
            }
            Err(_) => return Err("the client stopped reading"),
        }
    }
    Ok(())
}

/// A push as API Gateway sends it: one frame up to the frame limit; above it, a first frame and
/// continuation frames of at most the limit each (RFC 6455 §5.4).
fn frames(out: Outbound, max_frame_bytes: usize) -> Vec<Message> {
    let (opcode, payload) = match out {
        Outbound::Text(text) if text.len() <= max_frame_bytes => return vec![Message::text(text)],
        Outbound::Binary(data) if data.len() <= max_frame_bytes => return vec![Message::binary(data)],
        Outbound::Text(text) => (Data::Text, bytes::Bytes::from(text)),
        Outbound::Binary(data) => (Data::Binary, data),
    };
    let chunks = payload.len().div_ceil(max_frame_bytes.max(1));
    (0..chunks)
        .map(|i| {
            let start = i * max_frame_bytes;
            let chunk = payload.slice(start..payload.len().min(start + max_frame_bytes));
            let opcode = if i == 0 { OpCode::Data(opcode) } else { OpCode::Data(Data::Continue) };
            Message::Frame(Frame::message(chunk, opcode, i + 1 == chunks))
        })
        .collect()
}

/// The close a protocol error earns, as API Gateway sends it: 1009 for a frame or message over
/// the limits, 1007 for a text frame that is not UTF-8. `None`: the connection just broke.
fn protocol_error(e: &tungstenite::Error) -> Option<(u16, &'static str)> {
    match e {
        tungstenite::Error::Capacity(_) => Some((CLOSE_MESSAGE_TOO_BIG, "Message too big")),
        tungstenite::Error::Utf8(_) => Some((CLOSE_INVALID_PAYLOAD, "Invalid UTF-8 in a text frame")),
        tungstenite::Error::Protocol(_) => Some((CLOSE_PROTOCOL_ERROR, "Protocol error")),
        _ => None,
    }
}

/// Sends a close frame, then reads (and drops) what the client still sends until its own
/// close frame, briefly: closing the socket with unread data would reset it and the client
/// would never see the close code.
async fn close<Si, St>(sink: &mut Si, stream: &mut St, code: u16, reason: &'static str)
where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let frame = Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }));
    if !matches!(tokio::time::timeout(CLOSE_LINGER, sink.send(frame)).await, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
