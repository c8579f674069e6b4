//! `$connect` authorization over real sockets: the JWT authorizer refuses bad tokens before the
//! upgrade, with the status API Gateway would answer, and the identity it establishes is the
//! only one any action can use.

use std::sync::Arc;
use std::time::Duration;

use matchgate_gateway::apigw::AuthMode;
use matchgate_gateway::issuer::{DEV_CLIENT_ID, DEV_ISSUER, DevIssuer};
use matchgate_gateway::stack::{Stack, StackConfig};
use matchgate_lambdas::ports::SystemClock;
use matchgate_protocol::{ErrorCode, Push};
use matchgate_tests::{Client, quiet_config, start_stack_with, teams_rule_set};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Fixture {
    stack: Stack,
    issuer: DevIssuer,
    _dir: TempDir,
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn jwt_stack() -> anyhow::Result<Fixture> {
    let dir = std::env::temp_dir().join(format!("matchgate-auth-{}", uuid_like()));
    let issuer = DevIssuer::load_or_create(&dir)?;
    let config = StackConfig {
        auth: AuthMode::Jwt(Arc::new(issuer.verifier(Arc::new(SystemClock)))),
        jwks: Some(issuer.jwks()),
        rule_set_body: teams_rule_set(1),
        ..quiet_config()
    };
    Ok(Fixture { stack: start_stack_with(config).await?, issuer, _dir: TempDir(dir) })
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// The HTTP status a refused upgrade gets.
async fn refused_with(url: String) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("the upgrade must be refused"),
    }
}

/// Claims signed with the dev issuer's own key, so only the claim under test is wrong.
pub(crate) fn signed_with_dev_key(issuer: &DevIssuer, claims: serde_json::Value) -> String {
    let pem = std::fs::read(issuer.key_path()).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(issuer.kid().to_owned());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

pub(crate) fn claims(overrides: serde_json::Value) -> serde_json::Value {
    let now = chrono_now();
    let mut claims = json!({
        "sub": "alice", "iss": DEV_ISSUER, "aud": DEV_CLIENT_ID, "token_use": "id",
        "iat": now, "nbf": now, "exp": now + 600, "role": "player"
    });
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

pub(crate) fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn a_valid_token_connects_as_its_subject() -> anyhow::Result<()> {
    let f = jwt_stack().await?;
    let token = f.issuer.mint("alice", "player", Duration::from_secs(600))?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}?token={token}", f.stack.websocket_url())).await?;
    use futures_util::{SinkExt, StreamExt};
    socket.send(tokio_tungstenite::tungstenite::Message::text(r#"{"action":"ping"}"#)).await?;
    let frame = socket.next().await.unwrap()?;
    let pong: Push = serde_json::from_str(frame.to_text()?)?;
    assert!(matches!(pong, Push::Pong { player_id, .. } if player_id == "alice"));
    f.stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_browser_sends_the_token_as_a_subprotocol_and_gets_matchgate_v1_back() -> anyhow::Result<()> {
    let f = jwt_stack().await?;
    let token = f.issuer.mint("bob", "player", Duration::from_secs(600))?;
    let mut request = f.stack.websocket_url().into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", format!("matchgate.v1, {token}").parse()?);
    let (_socket, response) = tokio_tungstenite::connect_async(request).await?;
    let selected = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(selected.as_deref(), Some("matchgate.v1"), "the token itself is never echoed back");
    f.stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn every_bad_token_is_refused_before_the_upgrade() -> anyhow::Result<()> {
    let f = jwt_stack().await?;
    let url = |token: &str| format!("{}?token={token}", f.stack.websocket_url());
    let now = chrono_now();
    let other_key_dir = std::env::temp_dir().join(format!("matchgate-forger-{}", uuid_like()));
    let forger = DevIssuer::load_or_create(&other_key_dir)?;
    let forged = forger.mint("alice", "player", Duration::from_secs(600))?;
    let _cleanup = TempDir(other_key_dir);

    let cases: Vec<(&str, String, u16)> = vec![
        ("missing", f.stack.websocket_url(), 401),
        ("malformed", url("not-a-jwt"), 401),
        ("expired", url(&f.issuer.mint_at("alice", "player", Duration::from_secs(60), now - 3600)?), 401),
        (
            "not yet valid",
            url(&signed_with_dev_key(&f.issuer, claims(json!({"nbf": now + 3600, "iat": now + 3600})))),
            401,
        ),
        ("forged (another key)", url(&forged), 401),
        ("wrong issuer", url(&signed_with_dev_key(&f.issuer, claims(json!({"iss": "https://evil.example"})))), 403),
        ("wrong audience", url(&signed_with_dev_key(&f.issuer, claims(json!({"aud": "another-app"})))), 403),
        (
            "access token where an ID token is required",
            url(&signed_with_dev_key(&f.issuer, claims(json!({"token_use": "access"})))),
            403,
        ),
    ];
    for (what, url, status) in cases {
        assert_eq!(refused_with(url).await, status, "{what}");
    }
    // The server is still up and other players are unaffected.
    let token = f.issuer.mint("carol", "player", Duration::from_secs(600))?;
    assert!(tokio_tungstenite::connect_async(url(&token)).await.is_ok());
    f.stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn no_field_of_any_action_can_name_another_player() -> anyhow::Result<()> {
    // With --auth none the playerId comes from the query once, at $connect; message bodies that
    // try to name a player are refused as invalid and act on nobody.
    let stack = matchgate_tests::start_stack(&teams_rule_set(1)).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let mut mallory = Client::connect(&stack, "mallory").await?;
    let ticket = alice.matchmake().await?;
    alice.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
    let attempts = [
        json!({"action": "matchmake", "playerId": "alice"}),
        json!({"action": "cancel", "ticketId": ticket, "playerId": "alice"}),
        json!({"action": "accept", "ticketId": ticket, "accept": false, "playerId": "alice"}),
        json!({"action": "status", "ticketId": ticket, "playerId": "alice"}),
        json!({"action": "status", "playerIds": ["alice"]}),
    ];
    for attempt in attempts {
        mallory.send(attempt.clone()).await?;
        match mallory.next_push().await? {
            Push::Error { code: ErrorCode::InvalidRequest, .. } => {}
            other => panic!("{attempt} must be refused, got {other:?}"),
        }
    }
    // Alice's ticketId itself, with no extra field, in every action that takes one: each gets
    // exactly the answer a ticket that does not exist gets, so Mallory learns nothing, not even
    // that the ticket exists.
    let unknown = "ticket-00000000-0000-4000-8000-000000000000";
    for action in [
        json!({"action": "cancel", "ticketId": ticket}),
        json!({"action": "accept", "ticketId": ticket, "accept": false}),
        json!({"action": "status", "ticketId": ticket}),
    ] {
        mallory.send(action.clone()).await?;
        let answer = mallory.next_push().await?;
        let mut probe = action.clone();
        probe["ticketId"] = json!(unknown);
        mallory.send(probe).await?;
        let for_unknown = mallory.next_push().await?;
        assert!(matches!(answer, Push::Error { code: ErrorCode::NotFound, .. }), "{action} answered {answer:?}");
        assert_eq!(
            serde_json::to_value(&answer)?.to_string().replace(&ticket, unknown),
            serde_json::to_value(&for_unknown)?.to_string(),
            "{action}: another player's ticket must be answered as an unknown one"
        );
    }
    // A ping that names another connection is refused like every other action with a field it
    // does not define (docs/protocol.md); a plain one answers for the caller's own connection.
    mallory.send(json!({"action": "ping", "connectionId": "someone-else", "playerId": "alice"})).await?;
    assert!(matches!(mallory.next_push().await?, Push::Error { code: ErrorCode::InvalidRequest, .. }));
    mallory.send(json!({"action": "ping"})).await?;
    match mallory.next_push().await? {
        Push::Pong { player_id, .. } => assert_eq!(player_id, "mallory"),
        other => panic!("a plain ping must be answered with Pong, got {other:?}"),
    }
    // Alice's ticket is untouched and Mallory has none.
    assert!(matches!(alice.status(Some(&ticket)).await?, Push::MatchmakingSearching { .. }));
    assert!(matches!(mallory.status(None).await?, Push::Error { code: ErrorCode::NotFound, .. }));
    stack.shutdown().await;
    Ok(())
}
