//! What every Lambda binary shares: logging, and the handlers' dependencies built from the
//! function's environment once per cold start.
//!
//! | variable | meaning |
//! |---|---|
//! | `CONNECTIONS_TABLE`, `PLAYERS_TABLE`, `TICKETS_TABLE`, `PARTIES_TABLE` | the DynamoDB tables |
//! | `MATCHMAKING_CONFIGURATION_NAME` | the FlexMatch configuration tickets start in |
//! | `CONNECTIONS_ENDPOINT` | `https://{api}.execute-api.{region}.amazonaws.com/{stage}` for PostToConnection |
//! | `DYNAMODB_ENDPOINT`, `GAMELIFT_ENDPOINT` | local endpoints (the local stack, DynamoDB Local); unset in AWS |
//! | `DISCONNECT_GRACE_SECONDS`, `TICKET_TTL_SECONDS` | optional overrides of [`Settings`] |
//! | `MAX_PARTY_MEMBERS` | the rule set's largest team (1-10): the most members a party may hold |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::{LambdaEvent, service_fn};
use matchgate_protocol::ClientAction;

use crate::adapters::apigw::{self, ManagementApiPusher};
use crate::adapters::dynamodb::{self, DynamoConnections, DynamoPlayers, DynamoTickets, Table, TableNames};
use crate::adapters::dynamodb_parties::DynamoParties;
use crate::adapters::gamelift::{self, GameLiftMatchmaker};
use crate::handlers::{self, Caller};
use crate::ports::SystemClock;
use crate::{Deps, HandlerError, Settings, routes};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Logs as one line per event without colours, which is what CloudWatch Logs shows best;
/// `RUST_LOG` sets the level (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line already.
        .init();
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn seconds(name: &'static str) -> Result<Option<Duration>, ConfigError> {
    var(name)
        .map(|v| {
            v.parse::<u64>().map(Duration::from_secs).map_err(|e| ConfigError::Invalid { name, reason: e.to_string() })
        })
        .transpose()
}

/// The handlers' settings from the environment.
pub fn settings_from_env() -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    if let Some(name) = var("MATCHMAKING_CONFIGURATION_NAME") {
        settings.configuration_name = name;
    }
    if let Some(grace) = seconds("DISCONNECT_GRACE_SECONDS")? {
        settings.disconnect_grace = grace;
    }
    if let Some(ttl) = seconds("TICKET_TTL_SECONDS")? {
        settings.ticket_ttl = ttl;
    }
    if let Some(max) = var("MAX_PARTY_MEMBERS") {
        let reason = format!("must be 1 to {}", crate::ports::MAX_PARTY_MEMBERS);
        settings.max_party_members = max
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=crate::ports::MAX_PARTY_MEMBERS).contains(m))
            .ok_or(ConfigError::Invalid { name: "MAX_PARTY_MEMBERS", reason })?;
    }
    Ok(settings)
}

/// Builds every port's production adapter from the environment. SDK clients are built here,
/// once, and shared by every invocation of the warm Lambda.
pub async fn deps_from_env() -> Result<Deps, ConfigError> {
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamo = match var("DYNAMODB_ENDPOINT") {
        Some(endpoint) => dynamodb::client_for_endpoint(&endpoint),
        None => dynamodb::client_from_sdk_config(&sdk_config),
    };
    let tables = TableNames::from_env();
    let gamelift = gamelift::client(&sdk_config, var("GAMELIFT_ENDPOINT").as_deref());
    let endpoint = var("CONNECTIONS_ENDPOINT").ok_or(ConfigError::Missing("CONNECTIONS_ENDPOINT"))?;
    Ok(Deps {
        connections: Arc::new(DynamoConnections::new(dynamo.clone(), tables.name(Table::Connections))),
        players: Arc::new(DynamoPlayers::new(dynamo.clone(), tables.name(Table::Players))),
        parties: Arc::new(DynamoParties::new(dynamo.clone(), &tables)),
        tickets: Arc::new(DynamoTickets::new(dynamo, tables.name(Table::Tickets))),
        matchmaker: Arc::new(GameLiftMatchmaker::new(gamelift)),
        pusher: Arc::new(ManagementApiPusher::new(apigw::client(&sdk_config, &endpoint))),
        clock: Arc::new(SystemClock),
        settings: settings_from_env()?,
    })
}

/// A client action's handler, as the `mg-*` binaries name it: `handlers::matchmake` is one.
/// (Spelled as a trait because an `async fn` borrowing its [`Deps`] returns a future that
/// borrows them too, which a plain `Fn` bound cannot say for every borrow.)
pub trait ActionHandler<'a>: Copy + Send + Sync + 'static {
    type Future: Future<Output = Result<ApiGatewayProxyResponse, HandlerError>> + Send + 'a;
    fn call(self, caller: Caller, action: ClientAction, deps: &'a Deps) -> Self::Future;
}

impl<'a, F, Fut> ActionHandler<'a> for F
where
    F: Fn(Caller, ClientAction, &'a Deps) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<ApiGatewayProxyResponse, HandlerError>> + Send + 'a,
{
    type Future = Fut;
    fn call(self, caller: Caller, action: ClientAction, deps: &'a Deps) -> Fut {
        self(caller, action, deps)
    }
}

/// A handler of a whole WebSocket event (`handlers::connect`, `handlers::disconnect`).
pub trait EventHandler<'a>: Copy + Send + Sync + 'static {
    type Future: Future<Output = Result<ApiGatewayProxyResponse, HandlerError>> + Send + 'a;
    fn call(self, event: ApiGatewayWebsocketProxyRequest, deps: &'a Deps) -> Self::Future;
}

impl<'a, F, Fut> EventHandler<'a> for F
where
    F: Fn(ApiGatewayWebsocketProxyRequest, &'a Deps) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<ApiGatewayProxyResponse, HandlerError>> + Send + 'a,
{
    type Future = Fut;
    fn call(self, event: ApiGatewayWebsocketProxyRequest, deps: &'a Deps) -> Fut {
        self(event, deps)
    }
}

/// Serves one client action's function: each invocation's frame is parsed once into its
/// action and handed to `handler` (a frame that does not parse gets its `Error` push).
pub async fn run_action_function<H>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: for<'a> ActionHandler<'a>,
{
    init_tracing();
    let deps = deps_from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let deps = deps.clone();
        async move {
            match routes::parse_action(&event.payload, &deps).await? {
                Some((caller, action)) => handler.call(caller, action, &deps).await,
                None => Ok(handlers::ok()),
            }
        }
    }))
    .await
}

/// Serves a function that reads the whole WebSocket event (`$connect`, `$disconnect`).
pub async fn run_event_function<H>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: for<'a> EventHandler<'a>,
{
    init_tracing();
    let deps = deps_from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let deps = deps.clone();
        async move { handler.call(event.payload, &deps).await }
    }))
    .await
}

/// Serves any route by its `requestContext.routeKey` through [`routes::dispatch`]: the function
/// the template integrates with `ping`, `$default` and the routes only it knows.
pub async fn run_routes_function() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deps = deps_from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let deps = deps.clone();
        async move { routes::dispatch(event.payload, &deps).await }
    }))
    .await
}

/// Serves the events function: SNS deliveries of FlexMatch's events.
pub async fn run_events_function() -> Result<(), lambda_runtime::Error> {
    use aws_lambda_events::sns::SnsEvent;

    init_tracing();
    let deps = deps_from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SnsEvent>| {
        let deps = deps.clone();
        async move { handlers::events(event.payload, &deps).await }
    }))
    .await
}

/// Serves the backstop function, invoked on a schedule; the event's content is not used.
pub async fn run_backstop_function() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deps = deps_from_env().await?;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            let report = handlers::backstop(&deps).await?;
            tracing::info!(
                polled = report.polled,
                advanced = report.advanced,
                stopped = report.stopped,
                "backstop run"
            );
            Ok::<_, HandlerError>(serde_json::json!({
                "polled": report.polled, "advanced": report.advanced, "stopped": report.stopped
            }))
        }
    }))
    .await
}

/// Serves the `$connect` REQUEST authorizer.
pub async fn run_authorizer_function() -> Result<(), lambda_runtime::Error> {
    use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;

    use crate::authorizer::{AuthorizerConfig, Verifier, handle};

    init_tracing();
    let verifier = Arc::new(Verifier::with_https_jwks(AuthorizerConfig::from_env()?, Arc::new(SystemClock))?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| {
        let verifier = Arc::clone(&verifier);
        async move { handle(event.payload, &verifier).await }
    }))
    .await
}
