//! `matchgate up --lambda-endpoint URL`: the functions are invoked over the Lambda Invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`), as `cargo lambda watch` serves it. Here a
//! small Invoke API server runs the handlers over the SDK adapters (GameLift and @connections
//! pointed at the stack), so every hop is a real HTTP call; with JWT auth it serves the
//! authorizer Lambda's handler as `mg-authorizer`, which then decides every `$connect`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use matchgate_gateway::apigw::{AuthMode, Integration};
use matchgate_gateway::embedded::EmbeddedLambdas;
use matchgate_gateway::issuer::DevIssuer;
use matchgate_gateway::stack::{Functions, Stack, StackConfig};
use matchgate_lambdas::adapters::memory::{MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::adapters::memory_parties::MemoryParties;
use matchgate_lambdas::adapters::{apigw, gamelift};
use matchgate_lambdas::authorizer::Verifier;
use matchgate_lambdas::ports::SystemClock;
use matchgate_lambdas::{Deps, Settings};
use matchgate_protocol::Push;
use matchgate_tests::{Client, handshake_status, quiet_config, start_stack_with, teams_rule_set};
use tokio::sync::OnceCell;

#[derive(Default)]
struct InvokeServer {
    functions: OnceCell<EmbeddedLambdas>,
    invocations: AtomicUsize,
    /// `mg-authorizer`: the authorizer Lambda's handler over this verifier.
    authorizer: Option<Verifier>,
    authorizations: AtomicUsize,
}

/// The Invoke API: the function name picks nothing here (every function is the same crate);
/// the event's shape does, as it does for the gateway's own in-process mode.
async fn invoke(
    State(server): State<Arc<InvokeServer>>,
    Path(name): Path<String>,
    Json(event): Json<serde_json::Value>,
) -> Response {
    server.invocations.fetch_add(1, Ordering::SeqCst);
    if name == "mg-authorizer" {
        server.authorizations.fetch_add(1, Ordering::SeqCst);
        let Some(verifier) = &server.authorizer else { return StatusCode::NOT_FOUND.into_response() };
        let event = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
        // As Lambda answers an invocation whose function failed: 200, X-Amz-Function-Error, and
        // the error's type and message.
        return match matchgate_lambdas::authorizer::handle(event, verifier).await {
            Ok(response) => Json(serde_json::to_value(response).unwrap_or_default()).into_response(),
            Err(e) => {
                let body = serde_json::json!({"errorType": format!("{e:?}"), "errorMessage": e.to_string()});
                ([("X-Amz-Function-Error", "Unhandled")], Json(body)).into_response()
            }
        };
    }
    let target = if name == "mg-events" {
        "events".to_owned()
    } else if name == "mg-backstop" {
        "backstop".to_owned()
    } else {
        event["requestContext"]["routeKey"].as_str().unwrap_or("$default").to_owned()
    };
    let Some(functions) = server.functions.get() else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    match functions.invoke(&target, event).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => ([("X-Amz-Function-Error", "Unhandled")], Json(serde_json::json!({"errorMessage": e.to_string()})))
            .into_response(),
    }
}

/// Serves the Invoke API of `server` on a free loopback port; returns its endpoint.
async fn serve_invoke_api(server: Arc<InvokeServer>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(endpoint)
}

/// The handlers' dependencies as a function behind the Invoke API has them: in-memory stores,
/// and the SDK clients for GameLift and @connections pointed at `stack`.
async fn sdk_deps(stack: &Stack) -> Deps {
    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "tests"))
        .load()
        .await;
    Deps {
        connections: Arc::new(MemoryConnections::default()),
        players: Arc::new(MemoryPlayers::default()),
        tickets: Arc::new(MemoryTickets::default()),
        parties: Arc::new(MemoryParties::default()),
        matchmaker: Arc::new(gamelift::GameLiftMatchmaker::new(gamelift::client(
            &sdk_config,
            Some(&format!("http://{}", stack.addr)),
        ))),
        pusher: Arc::new(apigw::ManagementApiPusher::new(apigw::client(&sdk_config, &stack.connections_endpoint()))),
        clock: Arc::new(SystemClock),
        settings: Settings::default(),
    }
}

#[tokio::test]
async fn functions_behind_the_invoke_api_match_two_players() -> anyhow::Result<()> {
    let server = Arc::new(InvokeServer::default());
    let invoke_endpoint = serve_invoke_api(Arc::clone(&server)).await?;

    let config = StackConfig {
        rule_set_body: teams_rule_set(1),
        functions: Functions::InvokeApi(invoke_endpoint),
        ..quiet_config()
    };
    let stack = start_stack_with(config).await?;
    let _ = server.functions.set(EmbeddedLambdas { deps: sdk_deps(&stack).await });

    let mut alice = Client::connect(&stack, "alice").await?;
    let mut bob = Client::connect(&stack, "bob").await?;
    alice.matchmake().await?;
    bob.matchmake().await?;
    alice.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
    bob.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
    stack.engine.cycle(matchgate_gateway::now_ms());
    for c in [&mut alice, &mut bob] {
        let done = c.expect("succeeded", |p| matches!(p, Push::MatchmakingSucceeded { .. })).await?;
        assert!(matches!(done, Push::MatchmakingSucceeded { player_session_id: Some(_), .. }));
    }
    // $connect ×2, matchmake ×2 and the events all went through the Invoke API.
    assert!(server.invocations.load(Ordering::SeqCst) >= 6);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_authorizer_behind_the_invoke_api_decides_connect() -> anyhow::Result<()> {
    // `cargo lambda watch` serves mg-authorizer too: with JWT auth, `$connect` is authorized by
    // invoking it, and its answer (Allow, Deny, the error `Unauthorized`) decides.
    let state = std::env::temp_dir().join(format!("matchgate-invoke-auth-{}", std::process::id()));
    let issuer = DevIssuer::load_or_create(&state)?;
    let server =
        Arc::new(InvokeServer { authorizer: Some(issuer.verifier(Arc::new(SystemClock))), ..InvokeServer::default() });
    let invoke_endpoint = serve_invoke_api(Arc::clone(&server)).await?;
    let config = StackConfig {
        rule_set_body: teams_rule_set(1),
        functions: Functions::InvokeApi(invoke_endpoint),
        auth: AuthMode::Jwt(Arc::new(issuer.verifier(Arc::new(SystemClock)))),
        jwks: Some(issuer.jwks()),
        ..quiet_config()
    };
    let stack = start_stack_with(config).await?;
    let _ = server.functions.set(EmbeddedLambdas { deps: sdk_deps(&stack).await });

    let token = issuer.mint("alice", "player", Duration::from_secs(600))?;
    let mut alice = Client::connect_with_token(&stack, "alice", &token).await?;
    alice.send(serde_json::json!({"action": "ping"})).await?;
    alice.expect("Pong", |p| matches!(p, Push::Pong { player_id, .. } if player_id == "alice")).await?;
    assert_eq!(server.authorizations.load(Ordering::SeqCst), 1);

    let url = |token: &str| format!("{}?token={token}", stack.websocket_url());
    let now = crate::auth::chrono_now();
    let expired = issuer.mint_at("bob", "player", Duration::from_secs(60), now - 3600)?;
    let wrong_audience =
        crate::auth::signed_with_dev_key(&issuer, crate::auth::claims(serde_json::json!({"aud": "another-app"})));
    assert_eq!(handshake_status(&url(&expired)).await?, 401, "expired: the error Unauthorized");
    assert_eq!(handshake_status(&url(&wrong_audience)).await?, 403, "wrong audience: a Deny policy");
    assert_eq!(server.authorizations.load(Ordering::SeqCst), 3, "each decided by the function");
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
