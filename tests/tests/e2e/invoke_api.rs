//! `matchgate up --lambda-endpoint URL`: the functions are invoked over the Lambda Invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`), as `cargo lambda watch` serves it. Here a
//! small Invoke API server runs the handlers over the SDK adapters (GameLift and @connections
//! pointed at the stack), so every hop is a real HTTP call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use matchgate_gateway::apigw::Integration;
use matchgate_gateway::embedded::EmbeddedLambdas;
use matchgate_gateway::stack::{Functions, StackConfig};
use matchgate_lambdas::adapters::memory::{MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::adapters::{apigw, gamelift};
use matchgate_lambdas::ports::SystemClock;
use matchgate_lambdas::{Deps, Settings};
use matchgate_protocol::Push;
use matchgate_tests::{Client, quiet_config, start_stack_with, teams_rule_set};
use tokio::sync::OnceCell;

#[derive(Default)]
struct InvokeServer {
    functions: OnceCell<EmbeddedLambdas>,
    invocations: AtomicUsize,
}

/// The Invoke API: the function name picks nothing here (every function is the same crate);
/// the event's shape does, as it does for the gateway's own in-process mode.
async fn invoke(
    State(server): State<Arc<InvokeServer>>,
    Path(name): Path<String>,
    Json(event): Json<serde_json::Value>,
) -> Response {
    server.invocations.fetch_add(1, Ordering::SeqCst);
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

#[tokio::test]
async fn functions_behind_the_invoke_api_match_two_players() -> anyhow::Result<()> {
    let server = Arc::new(InvokeServer::default());
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
        .with_state(Arc::clone(&server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let invoke_endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = StackConfig {
        rule_set_body: teams_rule_set(1),
        functions: Functions::InvokeApi(invoke_endpoint),
        ..quiet_config()
    };
    let stack = start_stack_with(config).await?;
    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "tests"))
        .load()
        .await;
    let deps = Deps {
        connections: Arc::new(MemoryConnections::default()),
        players: Arc::new(MemoryPlayers::default()),
        tickets: Arc::new(MemoryTickets::default()),
        matchmaker: Arc::new(gamelift::GameLiftMatchmaker::new(gamelift::client(
            &sdk_config,
            Some(&format!("http://{}", stack.addr)),
        ))),
        pusher: Arc::new(apigw::ManagementApiPusher::new(apigw::client(&sdk_config, &stack.connections_endpoint()))),
        clock: Arc::new(SystemClock),
        settings: Settings::default(),
    };
    let _ = server.functions.set(EmbeddedLambdas { deps });

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
