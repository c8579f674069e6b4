//! Helpers for matchgate's end-to-end tests: a local stack on a free loopback port and a game
//! client that speaks the protocol over a real WebSocket.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use matchgate_gateway::stack::{Stack, StackConfig};
use matchgate_protocol::{PUSH_TYPES, Push};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen before calling it a hang. A guard
/// against a stuck test, not a performance bound: healthy runs take milliseconds.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// A rule set of two teams of exactly `per_team` players, with no other rules.
pub fn teams_rule_set(per_team: usize) -> String {
    serde_json::json!({
        "name": "test-teams",
        "ruleLanguageVersion": "1.0",
        "playerAttributes": [{"name": "skill", "type": "number", "default": 10}],
        "teams": [
            {"name": "red", "minPlayers": per_team, "maxPlayers": per_team},
            {"name": "blue", "minPlayers": per_team, "maxPlayers": per_team}
        ]
    })
    .to_string()
}

/// Starts a local stack on 127.0.0.1 at a free port. The matchmaking cycle only runs when a
/// test calls `stack.engine.cycle(..)` or a ticket arrives, so tests decide when matches form.
pub async fn start_stack(rule_set: &str) -> anyhow::Result<Stack> {
    start_stack_with(StackConfig { rule_set_body: rule_set.to_owned(), ..quiet_config() }).await
}

/// The default config with the periodic matchmaking tick effectively off.
pub fn quiet_config() -> StackConfig {
    StackConfig { matchmaking_interval: Duration::from_secs(3600), ..StackConfig::default() }
}

pub async fn start_stack_with(config: StackConfig) -> anyhow::Result<Stack> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // Boxed: starting a stack is a large future (the whole config and every service's setup),
    // and test functions nest it in their own.
    Ok(Box::pin(Stack::start(config, listener)).await?)
}

/// One game client's socket.
#[derive(Debug)]
pub struct Client {
    pub player_id: String,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects as `player_id` with `--auth none`.
    pub async fn connect(stack: &Stack, player_id: &str) -> anyhow::Result<Self> {
        let url = format!("{}?playerId={player_id}", stack.websocket_url());
        let (socket, _) = tokio_tungstenite::connect_async(url).await.context("connect")?;
        Ok(Self { player_id: player_id.to_owned(), socket })
    }

    /// Connects as `player_id` with a JWT in `?token=` (JWT auth).
    pub async fn connect_with_token(stack: &Stack, player_id: &str, token: &str) -> anyhow::Result<Self> {
        let url = format!("{}?token={token}", stack.websocket_url());
        let (socket, _) = tokio::time::timeout(HANG_GUARD, tokio_tungstenite::connect_async(url))
            .await
            .context("the handshake hung")?
            .context("connect")?;
        Ok(Self { player_id: player_id.to_owned(), socket })
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn send(&mut self, value: serde_json::Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    /// The next text frame, raw. A push is checked against the published JSON Schema first.
    pub async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            let frame = tokio::time::timeout(HANG_GUARD, self.socket.next())
                .await
                .with_context(|| format!("{}: no frame within the hang guard", self.player_id))?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    check_push_frame(&text).with_context(|| format!("{}: received", self.player_id))?;
                    return Ok(text.to_string());
                }
                Some(Ok(Message::Close(frame))) => bail!("{}: closed: {frame:?}", self.player_id),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("{}: {e}", self.player_id),
                None => bail!("{}: the connection ended", self.player_id),
            }
        }
    }

    /// The next push.
    pub async fn next_push(&mut self) -> anyhow::Result<Push> {
        let text = self.next_text().await?;
        serde_json::from_str(&text).with_context(|| format!("not a push: {text}"))
    }

    /// Skips pushes until one matches; returns it.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Push) -> bool) -> anyhow::Result<Push> {
        loop {
            let push = self.next_push().await?;
            if matches(&push) {
                return Ok(push);
            }
            if let Push::Error { .. } = push {
                bail!("{}: expected {what}, got {push:?}", self.player_id);
            }
        }
    }

    /// Sends `matchmake` and returns the new ticket's ID (from `MatchmakingQueued`).
    pub async fn matchmake(&mut self) -> anyhow::Result<String> {
        self.send(serde_json::json!({"action": "matchmake", "latencyInMs": {"us-east-1": 30}})).await?;
        match self.next_push().await? {
            Push::MatchmakingQueued { ticket_id } => Ok(ticket_id),
            other => bail!("{}: expected MatchmakingQueued, got {other:?}", self.player_id),
        }
    }

    /// Sends `status` and returns the answer.
    pub async fn status(&mut self, ticket_id: Option<&str>) -> anyhow::Result<Push> {
        let mut request = serde_json::json!({"action": "status"});
        if let Some(id) = ticket_id {
            request["ticketId"] = id.into();
        }
        self.send(request).await?;
        self.next_push().await
    }

    /// Sends `ping`; returns this connection's ID from the `Pong`.
    pub async fn connection_id(&mut self) -> anyhow::Result<String> {
        self.send(serde_json::json!({"action": "ping"})).await?;
        match self.next_push().await? {
            Push::Pong { connection_id, .. } => Ok(connection_id),
            other => bail!("expected Pong, got {other:?}"),
        }
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn closed(&mut self) -> anyhow::Result<Option<u16>> {
        loop {
            let frame = tokio::time::timeout(HANG_GUARD, self.socket.next()).await.context("no close")?;
            match frame {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(None),
            }
        }
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        self.socket.close(None).await?;
        // Drain until the server's close arrives, so $disconnect has been triggered.
        while let Some(Ok(_)) = self.socket.next().await {}
        Ok(())
    }
}

/// `protocol/schema/push.schema.json`, the contract client developers in every language code
/// against: every push an end-to-end test receives must match it.
static PUSH_SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: serde_json::Value = serde_json::from_str(include_str!("../../protocol/schema/push.schema.json"))
        .expect("protocol/schema/push.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("protocol/schema/push.schema.json is a valid JSON Schema")
});

/// Fails when `frame` is a push (its `type` is one of [`PUSH_TYPES`]) that does not match the
/// push schema. Other frames (API Gateway's error frame, frames that are not JSON) are not pushes
/// and pass.
pub fn check_push_frame(frame: &str) -> anyhow::Result<()> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(frame) else { return Ok(()) };
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else { return Ok(()) };
    if !PUSH_TYPES.contains(&kind) {
        return Ok(());
    }
    let errors: Vec<String> =
        PUSH_SCHEMA.iter_errors(&value).map(|e| format!("{e} (at {:?})", e.instance_path().to_string())).collect();
    if !errors.is_empty() {
        bail!("a push that does not match protocol/schema/push.schema.json: {frame}: {}", errors.join("; "));
    }
    Ok(())
}

/// The HTTP status of a handshake with `url`: 101 when upgraded, else the refusal's.
pub async fn handshake_status(url: &str) -> anyhow::Result<u16> {
    match tokio::time::timeout(HANG_GUARD, tokio_tungstenite::connect_async(url)).await.context("the handshake hung")? {
        Ok((_, response)) => Ok(response.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Ok(response.status().as_u16()),
        Err(e) => Err(e.into()),
    }
}

/// Repeats `status` until `done` holds for the answer; for outcomes that follow an event the
/// client does not see (its own disconnect).
pub async fn status_until(client: &mut Client, ticket_id: &str, done: impl Fn(&Push) -> bool) -> anyhow::Result<Push> {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let push = client.status(Some(ticket_id)).await?;
        if done(&push) {
            return Ok(push);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("status never settled; last {push:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
pub mod dynamodb_local;

/// `aws-sdk-apigatewaymanagement` pointed at the stack's `@connections` API.
pub fn management_client(stack: &Stack) -> aws_sdk_apigatewaymanagement::Client {
    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(stack.connections_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "matchgate-tests"))
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// `aws-sdk-gamelift` pointed at the stack's GameLift API.
pub fn gamelift_client(stack: &Stack) -> aws_sdk_gamelift::Client {
    use aws_sdk_gamelift::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_gamelift::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", stack.addr))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "matchgate-tests"))
        .build();
    aws_sdk_gamelift::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::check_push_frame;

    #[test]
    fn the_push_schema_accepts_pushes_and_refuses_what_a_client_could_not_read() {
        check_push_frame(r#"{"type":"MatchmakingQueued","ticketId":"t1"}"#).unwrap();
        check_push_frame(r#"{"type":"Error","code":"Conflict","message":"live","ticketId":"t1"}"#).unwrap();
        check_push_frame(r#"{"message":"Internal server error","connectionId":"c","requestId":"r"}"#).unwrap();
        for bad in [
            r#"{"type":"MatchmakingQueued"}"#,
            r#"{"type":"MatchmakingSucceeded","ticketId":"t","matchId":"m","port":"7777"}"#,
            r#"{"type":"Error","code":"Oops","message":"m"}"#,
            r#"{"type":"MatchmakingSearching","ticketId":"t","estimatedWaitMillis":null}"#,
        ] {
            assert!(check_push_frame(bad).is_err(), "{bad}");
        }
    }
}
