//! API Gateway's limits and abuse handling, one test per bad input, over real sockets. Each
//! gets its documented response, the server stays up, and other players carry on.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::{SinkExt, StreamExt};
use matchgate_gateway::apigw::Limits;
use matchgate_gateway::stack::{Stack, StackConfig};
use matchgate_protocol::{ErrorCode, Push};
use matchgate_tests::{Client, management_client, quiet_config, start_stack_with, teams_rule_set};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn stack_with(limits: Limits) -> anyhow::Result<Stack> {
    start_stack_with(StackConfig { limits, rule_set_body: teams_rule_set(1), ..quiet_config() }).await
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(stack: &Stack, player: &str) -> anyhow::Result<Socket> {
    Ok(tokio_tungstenite::connect_async(format!("{}?playerId={player}", stack.websocket_url())).await?.0)
}

/// Reads until the server's close frame; its code.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    let read = async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(matchgate_tests::HANG_GUARD, read).await.expect("the server closes the connection")
}

/// The rest of the stack still works: a fresh player gets a Pong.
async fn still_serving(stack: &Stack) -> anyhow::Result<()> {
    let mut other = Client::connect(stack, "bystander").await?;
    other.connection_id().await?;
    Ok(())
}

#[tokio::test]
async fn a_frame_over_32_kb_is_closed_with_1009() -> anyhow::Result<()> {
    let stack = stack_with(Limits::default()).await?;
    let mut socket = raw(&stack, "big").await?;
    socket.send(Message::text("x".repeat(33 * 1024))).await?;
    assert_eq!(close_code(&mut socket).await, Some(1009));
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_message_over_128_kb_in_small_frames_is_closed_with_1009() -> anyhow::Result<()> {
    let stack = stack_with(Limits::default()).await?;
    let mut socket = raw(&stack, "fragments").await?;
    let chunk = vec![b'x'; 30 * 1024];
    socket.send(Message::Frame(Frame::message(chunk.clone(), OpCode::Data(Data::Text), false))).await?;
    for _ in 0..4 {
        socket.send(Message::Frame(Frame::message(chunk.clone(), OpCode::Data(Data::Continue), false))).await?;
    }
    socket.send(Message::Frame(Frame::message(chunk, OpCode::Data(Data::Continue), true))).await?;
    assert_eq!(close_code(&mut socket).await, Some(1009));
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_closed_with_1007() -> anyhow::Result<()> {
    let stack = stack_with(Limits::default()).await?;
    let mut socket = raw(&stack, "mojibake").await?;
    socket.send(Message::Frame(Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true))).await?;
    assert_eq!(close_code(&mut socket).await, Some(1007));
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_binary_frame_is_closed_with_1003_like_api_gateway() -> anyhow::Result<()> {
    // API Gateway's WebSocket APIs take no binary frames: it disconnects the client with 1003.
    let stack = stack_with(Limits::default()).await?;
    let mut client = Client::connect(&stack, "binary").await?;
    let mut socket = raw(&stack, "binary2").await?;
    socket.send(Message::binary(vec![1u8, 2, 3])).await?;
    assert_eq!(close_code(&mut socket).await, Some(1003));
    client.connection_id().await?;
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_url_over_4096_characters_is_refused_with_414() -> anyhow::Result<()> {
    let stack = stack_with(Limits::default()).await?;
    let url_of = |length: usize| {
        let base = format!("{}?playerId=long&pad=", stack.websocket_url());
        format!("{base}{}", "p".repeat(length - base.len()))
    };
    assert_eq!(matchgate_tests::handshake_status(&url_of(4096)).await?, 101, "at the limit");
    assert_eq!(matchgate_tests::handshake_status(&url_of(4097)).await?, 414);
    assert_eq!(matchgate_tests::handshake_status(&url_of(5000)).await?, 414);
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_push_over_32_kb_arrives_in_frames_of_at_most_32_kb() -> anyhow::Result<()> {
    let stack = stack_with(Limits::default()).await?;
    // A client that, like API Gateway's clients may, takes frames of at most 32 KB: the
    // 128 KB push reaches it whole, in several frames.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().max_frame_size(Some(32 * 1024));
    let url = format!("{}?playerId=big", stack.websocket_url());
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
    socket.send(Message::text(r#"{"action":"ping"}"#)).await?;
    let Some(Ok(Message::Text(pong))) = socket.next().await else { anyhow::bail!("no pong") };
    let Push::Pong { connection_id, .. } = serde_json::from_str(&pong)? else { anyhow::bail!("{pong}") };
    let payload: String = (0..128 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    management_client(&stack)
        .post_to_connection()
        .connection_id(&connection_id)
        .data(Blob::new(payload.clone()))
        .send()
        .await?;
    let frame = tokio::time::timeout(matchgate_tests::HANG_GUARD, socket.next()).await?;
    let Some(Ok(Message::Text(text))) = frame else { anyhow::bail!("{frame:?}") };
    assert_eq!(text.as_str(), payload);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_and_other_players_match_meanwhile() -> anyhow::Result<()> {
    let limits = Limits { message_rate: 5, message_burst: 5, abuse_limit: 50, ..Limits::default() };
    let stack = stack_with(limits).await?;
    let mut flooder = raw(&stack, "flooder").await?;
    for _ in 0..200 {
        flooder.send(Message::text(r#"{"action":"ping"}"#)).await?;
    }
    let mut rate_limited = 0;
    let mut pongs = 0;
    let code = loop {
        match tokio::time::timeout(matchgate_tests::HANG_GUARD, flooder.next()).await? {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Push>(&text)? {
                Push::Error { code: ErrorCode::RateLimited, .. } => rate_limited += 1,
                Push::Pong { .. } => pongs += 1,
                other => anyhow::bail!("unexpected {other:?}"),
            },
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!((1..=200).contains(&pongs), "the burst is served: {pongs}");
    assert!(rate_limited >= 1, "the excess gets RateLimited errors");
    // One error per run of refused messages, not one per refused message: a flood cannot
    // make the server send more than it lets through.
    assert!(rate_limited <= pongs + 1, "{rate_limited} RateLimited errors for {pongs} messages let through");
    assert_eq!(code, Some(1008), "sustained abuse closes the connection");

    // Meanwhile, and after, other players are matched as usual.
    let mut a = Client::connect(&stack, "a").await?;
    let mut b = Client::connect(&stack, "b").await?;
    a.matchmake().await?;
    b.matchmake().await?;
    a.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
    b.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
    stack.engine.cycle(matchgate_gateway::now_ms());
    a.expect("succeeded", |p| matches!(p, Push::MatchmakingSucceeded { .. })).await?;
    b.expect("succeeded", |p| matches!(p, Push::MatchmakingSucceeded { .. })).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn flooding_between_messages_that_get_through_is_still_closed() -> anyhow::Result<()> {
    // 10 messages a second, no burst: four sent back to back are over the rate, and a pause
    // of 150 ms always lets the next one through. Each flood alone is far below the abuse
    // limit; together they are sustained abuse.
    let limits = Limits {
        message_rate: 10,
        message_burst: 1,
        abuse_limit: 12,
        abuse_window: Duration::from_secs(60),
        ..Limits::default()
    };
    let stack = stack_with(limits).await?;
    let mut flooder = raw(&stack, "pulsing").await?;
    let mut code = None;
    let mut answered = 0;
    'rounds: for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if flooder.send(Message::text(r#"{"action":"ping"}"#)).await.is_err() {
            break;
        }
        // The single message gets through: its Pong arrives (after the last flood's error).
        loop {
            match tokio::time::timeout(matchgate_tests::HANG_GUARD, flooder.next()).await? {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<Push>(&text)? {
                    Push::Pong { .. } => break,
                    Push::Error { code: ErrorCode::RateLimited, .. } => continue,
                    other => anyhow::bail!("unexpected {other:?}"),
                },
                Some(Ok(Message::Close(frame))) => {
                    code = frame.map(|f| u16::from(f.code));
                    break 'rounds;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break 'rounds,
            }
        }
        answered += 1;
        for _ in 0..4 {
            if flooder.send(Message::text(r#"{"action":"ping"}"#)).await.is_err() {
                break 'rounds;
            }
        }
    }
    if code.is_none() {
        code = close_code(&mut flooder).await;
    }
    assert!(answered >= 1, "messages got through between the floods");
    assert_eq!(code, Some(1008), "sustained abuse closes the connection, however it is spread");
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_flood_of_pings_is_closed_like_a_flood_of_messages() -> anyhow::Result<()> {
    let limits = Limits { message_rate: 5, message_burst: 5, abuse_limit: 20, ..Limits::default() };
    let stack = stack_with(limits).await?;
    let mut flooder = raw(&stack, "pinger").await?;
    for i in 0..200u32 {
        if flooder.send(Message::Ping(i.to_be_bytes().to_vec().into())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut flooder).await, Some(1008), "control frames are charged to the rate limit");
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_slow_handshake_is_cut_off() -> anyhow::Result<()> {
    let stack = stack_with(Limits { handshake_timeout: Duration::from_millis(300), ..Limits::default() }).await?;
    let mut slow = tokio::net::TcpStream::connect(stack.addr).await?;
    slow.write_all(b"GET /local?playerId=slow HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n").await?;
    // The request never completes: the server closes the socket (EOF or reset).
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(matchgate_tests::HANG_GUARD, slow.read(&mut buf)).await?;
    assert!(matches!(read, Ok(0) | Err(_)), "closed, not answered: {read:?}");
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_half_open_socket_is_closed_by_the_idle_timeout() -> anyhow::Result<()> {
    let stack = stack_with(Limits { idle_timeout: Duration::from_millis(300), ..Limits::default() }).await?;
    let mut silent = raw(&stack, "silent").await?;
    // The client sends nothing more, as a peer that vanished without a FIN would.
    assert_eq!(close_code(&mut silent).await, Some(1001));
    still_serving(&stack).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn past_the_connection_cap_new_sockets_get_503_and_open_ones_carry_on() -> anyhow::Result<()> {
    let stack = stack_with(Limits { max_connections: 2, ..Limits::default() }).await?;
    let mut first = Client::connect(&stack, "first").await?;
    let mut second = Client::connect(&stack, "second").await?;
    match tokio_tungstenite::connect_async(format!("{}?playerId=third", stack.websocket_url())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    first.connection_id().await?;
    second.connection_id().await?;
    // A place frees up when a connection closes.
    second.close().await?;
    let mut third = None;
    for _ in 0..100 {
        if let Ok(c) = Client::connect(&stack, "third").await {
            third = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    third.expect("a freed place is reusable").connection_id().await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn only_allowed_origins_may_connect() -> anyhow::Result<()> {
    let limits = Limits { allowed_origins: vec!["https://game.example".into()], ..Limits::default() };
    let stack = stack_with(limits).await?;
    let url = format!("{}?playerId=web", stack.websocket_url());
    let mut evil = url.clone().into_client_request()?;
    evil.headers_mut().insert("Origin", "https://evil.example".parse()?);
    match tokio_tungstenite::connect_async(evil).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut good = url.clone().into_client_request()?;
    good.headers_mut().insert("Origin", "https://game.example".parse()?);
    assert!(tokio_tungstenite::connect_async(good).await.is_ok());
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_client_that_does_not_read_fills_its_queue_and_gets_429_alone() -> anyhow::Result<()> {
    let stack = stack_with(Limits { outbound_queue: 2, ..Limits::default() }).await?;
    let sdk = management_client(&stack);
    let mut stalled = Client::connect(&stack, "stalled").await?;
    let stalled_id = stalled.connection_id().await?;
    // From here on the client reads nothing; the kernel's buffers fill, then its queue.
    let payload = "y".repeat(64 * 1024);
    let mut throttled = false;
    for _ in 0..2_000 {
        match sdk.post_to_connection().connection_id(&stalled_id).data(Blob::new(payload.clone())).send().await {
            Ok(_) => {}
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                assert_eq!(status, Some(429), "{e:?}");
                throttled = true;
                break;
            }
        }
    }
    assert!(throttled, "a full outbound queue answers 429");
    // Other connections are unaffected.
    let mut other = Client::connect(&stack, "reader").await?;
    let other_id = other.connection_id().await?;
    sdk.post_to_connection()
        .connection_id(&other_id)
        .data(Blob::new(r#"{"type":"Pong","connectionId":"x","playerId":"y"}"#))
        .send()
        .await?;
    assert!(matches!(other.next_push().await?, Push::Pong { .. }));
    drop(stalled);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn permessage_deflate_is_never_negotiated() -> anyhow::Result<()> {
    let stack = stack_with(Limits::default()).await?;
    let mut request = format!("{}?playerId=zip", stack.websocket_url()).into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits".parse()?);
    let (_socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert!(response.headers().get("sec-websocket-extensions").is_none(), "{:?}", response.headers());
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_not_left_hanging() -> anyhow::Result<()> {
    let limits = Limits { outbound_queue: 2, write_timeout: Duration::from_millis(300), ..Limits::default() };
    let stack = stack_with(limits).await?;
    let sdk = management_client(&stack);
    let mut stalled = Client::connect(&stack, "stalled").await?;
    let id = stalled.connection_id().await?;
    let payload = "z".repeat(64 * 1024);
    // Fill the kernel's buffers and the queue; then the writer's deadline passes and the
    // connection is dropped: @connections answers 410 for it.
    let mut gone = false;
    for _ in 0..4_000 {
        match sdk.post_to_connection().connection_id(&id).data(Blob::new(payload.clone())).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_gone_exception()) => {
                gone = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(gone, "a connection whose client does not read is closed");
    still_serving(&stack).await?;
    drop(stalled);
    stack.shutdown().await;
    Ok(())
}
