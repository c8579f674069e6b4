//! The WebSocket API the local stack emulates is the one the template declares: its route keys
//! select the routes (falling back to `$default` as API Gateway does), and its `$connect`
//! authorizer's identity sources refuse handshakes that lack them. Each test runs an edited
//! copy of infra/template.yaml, or the template with a parameter override.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use futures_util::{SinkExt, StreamExt};
use matchgate_gateway::apigw::AuthMode;
use matchgate_gateway::issuer::DevIssuer;
use matchgate_gateway::stack::{Functions, LOCAL_PARAMETER_DEFAULTS, Stack, StackConfig};
use matchgate_lambdas::ports::SystemClock;
use matchgate_tests::{HANG_GUARD, quiet_config, start_stack_with};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> anyhow::Result<Self> {
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        let dir = std::env::temp_dir().join(format!("matchgate-{what}-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn deployed_template() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    std::fs::read_to_string(path).expect("infra/template.yaml")
}

/// The template without the resource `logical_id` (and without it in the deployment's
/// `DependsOn`), as a developer would delete a route.
fn without_resource(template: &str, logical_id: &str) -> String {
    let start = template.find(&format!("\n  {logical_id}:\n")).expect("the resource is in the template") + 1;
    let end = template[start..].find("\n\n").map_or(template.len(), |i| start + i + 1);
    let mut edited = format!("{}{}", &template[..start], &template[end..]);
    edited = edited.replace(&format!("      - {logical_id}\n"), "");
    assert!(!edited.contains(&format!("{logical_id}:")), "{logical_id} is gone");
    edited
}

/// Loads `text` as the template, written to `dir`, with the local parameter defaults and
/// `overrides`.
fn config_from(dir: &TempDir, text: &str, overrides: &[(&str, &str)]) -> anyhow::Result<StackConfig> {
    let path = dir.0.join("template.yaml");
    std::fs::write(&path, text)?;
    let mut parameters: BTreeMap<String, String> =
        LOCAL_PARAMETER_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    parameters.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let template = matchgate_gateway::template::load(&path, &parameters)?;
    Ok(quiet_config().with_template(&template)?)
}

/// A Lambda Invoke API that records which function got which route key and answers 200.
struct Recorder {
    invoked: mpsc::UnboundedSender<(String, String)>,
}

async fn invoke(
    State(functions): State<Arc<Recorder>>,
    UrlPath(name): UrlPath<String>,
    Json(event): Json<Value>,
) -> Json<Value> {
    let route_key = event["requestContext"]["routeKey"].as_str().unwrap_or_default().to_owned();
    let _ = functions.invoked.send((name, route_key));
    Json(json!({"statusCode": 200}))
}

/// Runs `config` with its functions behind a recording Invoke API.
async fn recorded(mut config: StackConfig) -> anyhow::Result<(Stack, mpsc::UnboundedReceiver<(String, String)>)> {
    let (invoked, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
        .with_state(Arc::new(Recorder { invoked }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    config.functions = Functions::InvokeApi(format!("http://{}", listener.local_addr()?));
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Boxed: starting a stack is a large future.
    Ok((Box::pin(start_stack_with(config)).await?, rx))
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(stack: &Stack, player: &str) -> anyhow::Result<Socket> {
    Ok(tokio_tungstenite::connect_async(format!("{}?playerId={player}", stack.websocket_url())).await?.0)
}

/// The (function, route key) of the next message invocation (not `$connect`/`$disconnect`).
async fn next_route(rx: &mut mpsc::UnboundedReceiver<(String, String)>) -> (String, String) {
    loop {
        let next = tokio::time::timeout(HANG_GUARD, rx.recv()).await.expect("an invocation").expect("the server runs");
        if next.1 != "$connect" && next.1 != "$disconnect" {
            return next;
        }
    }
}

#[tokio::test]
async fn watch_is_routed_to_its_function_as_in_aws() -> anyhow::Result<()> {
    let dir = TempDir::new("routes-watch")?;
    let (stack, mut invoked) = recorded(config_from(&dir, &deployed_template(), &[])?).await?;
    let mut socket = connect(&stack, "designer").await?;
    socket.send(Message::text(r#"{"action":"watch"}"#)).await?;
    assert_eq!(next_route(&mut invoked).await, ("mg-ping".to_owned(), "watch".to_owned()));
    socket.send(Message::text(r#"{"action":"status"}"#)).await?;
    assert_eq!(next_route(&mut invoked).await, ("mg-status".to_owned(), "status".to_owned()));
    stack.shutdown().await;

    // Without a template, the built-in routes have no `watch`: it goes to $default.
    let (stack, mut invoked) = recorded(quiet_config()).await?;
    let mut socket = connect(&stack, "designer").await?;
    socket.send(Message::text(r#"{"action":"watch"}"#)).await?;
    assert_eq!(next_route(&mut invoked).await, ("mg-ping".to_owned(), "$default".to_owned()));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_route_removed_from_the_template_falls_to_default() -> anyhow::Result<()> {
    let dir = TempDir::new("routes-removed")?;
    let template = without_resource(&deployed_template(), "StatusRoute");
    let (stack, mut invoked) = recorded(config_from(&dir, &template, &[])?).await?;
    let mut socket = connect(&stack, "alice").await?;
    socket.send(Message::text(r#"{"action":"status"}"#)).await?;
    assert_eq!(next_route(&mut invoked).await, ("mg-ping".to_owned(), "$default".to_owned()));
    socket.send(Message::text(r#"{"action":"ping"}"#)).await?;
    assert_eq!(next_route(&mut invoked).await, ("mg-ping".to_owned(), "ping".to_owned()));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn without_default_an_unrouted_message_gets_api_gateways_forbidden_frame() -> anyhow::Result<()> {
    let dir = TempDir::new("routes-no-default")?;
    let template = without_resource(&without_resource(&deployed_template(), "DefaultRoute"), "StatusRoute");
    let (stack, mut invoked) = recorded(config_from(&dir, &template, &[])?).await?;
    let mut socket = connect(&stack, "alice").await?;
    for unrouted in [r#"{"action":"status"}"#, "not json"] {
        socket.send(Message::text(unrouted)).await?;
        let frame = loop {
            match tokio::time::timeout(HANG_GUARD, socket.next()).await? {
                Some(Ok(Message::Text(text))) => break serde_json::from_str::<Value>(&text)?,
                Some(Ok(_)) => continue,
                other => anyhow::bail!("no answer: {other:?}"),
            }
        };
        assert_eq!(frame["message"], "Forbidden", "{frame}");
        assert!(frame["connectionId"].is_string() && frame["requestId"].is_string(), "{frame}");
    }
    // Nothing was invoked for them: the next invocation is the next routed message.
    socket.send(Message::text(r#"{"action":"ping"}"#)).await?;
    assert_eq!(next_route(&mut invoked).await, ("mg-ping".to_owned(), "ping".to_owned()));
    stack.shutdown().await;
    Ok(())
}

/// A stack from `template` with the dev issuer's JWT auth, and a token for `alice`.
async fn jwt_stack(dir: &TempDir, template: &str, overrides: &[(&str, &str)]) -> anyhow::Result<(Stack, String)> {
    let issuer = DevIssuer::load_or_create(&dir.0.join("state"))?;
    let config = StackConfig {
        auth: AuthMode::Jwt(Arc::new(issuer.verifier(Arc::new(SystemClock)))),
        jwks: Some(issuer.jwks()),
        ..config_from(dir, template, overrides)?
    };
    let token = issuer.mint("alice", "player", Duration::from_secs(600))?;
    Ok((Box::pin(start_stack_with(config)).await?, token))
}

/// The HTTP status of the handshake: 101 when upgraded.
async fn handshake(stack: &Stack, token: &str, in_query: bool) -> anyhow::Result<u16> {
    let url = if in_query { format!("{}?token={token}", stack.websocket_url()) } else { stack.websocket_url() };
    let mut request = url.into_client_request()?;
    if !in_query {
        request.headers_mut().insert("Sec-WebSocket-Protocol", format!("matchgate.v1, {token}").parse()?);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => Ok(response.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Ok(response.status().as_u16()),
        Err(e) => Err(e.into()),
    }
}

const QUERY: bool = true;
const SUBPROTOCOL: bool = false;

#[tokio::test]
async fn the_default_template_takes_the_token_in_the_query_or_the_subprotocol() -> anyhow::Result<()> {
    let dir = TempDir::new("identity-default")?;
    let (stack, token) = jwt_stack(&dir, &deployed_template(), &[]).await?;
    assert_eq!(handshake(&stack, &token, QUERY).await?, 101);
    assert_eq!(handshake(&stack, &token, SUBPROTOCOL).await?, 101);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_querystring_identity_source_refuses_a_token_sent_only_as_a_subprotocol() -> anyhow::Result<()> {
    let dir = TempDir::new("identity-query")?;
    let (stack, token) = jwt_stack(&dir, &deployed_template(), &[("TokenIdentitySource", "querystring")]).await?;
    assert_eq!(stack.gateway.identity_sources, ["route.request.querystring.token"]);
    assert_eq!(handshake(&stack, &token, SUBPROTOCOL).await?, 401, "API Gateway refuses before the authorizer");
    assert_eq!(handshake(&stack, &token, QUERY).await?, 101);
    // An empty `?token=` is missing too.
    assert_eq!(handshake(&stack, "", QUERY).await?, 401);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_header_identity_source_refuses_a_token_sent_only_in_the_query() -> anyhow::Result<()> {
    let dir = TempDir::new("identity-header")?;
    let template = deployed_template();
    let edited = template.replace("[route.request.querystring.token]", "[route.request.header.Sec-WebSocket-Protocol]");
    assert_ne!(edited, template, "the template's identity source moved");
    let (stack, token) = jwt_stack(&dir, &edited, &[("TokenIdentitySource", "querystring")]).await?;
    assert_eq!(handshake(&stack, &token, QUERY).await?, 401, "API Gateway refuses before the authorizer");
    assert_eq!(handshake(&stack, &token, SUBPROTOCOL).await?, 101);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_identity_source_the_emulator_cannot_evaluate_is_reported() -> anyhow::Result<()> {
    let dir = TempDir::new("identity-unknown")?;
    let edited = deployed_template().replace("[route.request.querystring.token]", "[stageVariables.token]");
    match jwt_stack(&dir, &edited, &[("TokenIdentitySource", "querystring")]).await {
        Err(e) => assert!(format!("{e:#}").contains("stageVariables.token"), "{e:#}"),
        Ok((stack, _)) => {
            stack.shutdown().await;
            anyhow::bail!("an identity source the local stack cannot check must not be ignored");
        }
    }
    Ok(())
}
