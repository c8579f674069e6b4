//! The local stack on one port: the WebSocket API, `@connections`, health, wired to the
//! handlers and the local FlexMatch. The one place where everything is put together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use matchgate_flexmatch::RuleSet;
use matchgate_lambdas::adapters::memory::{MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::ports::{PlayerAttributes, SystemClock};
use matchgate_lambdas::{Deps, Settings};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use matchgate_lambdas::adapters::apigw as apigw_adapter;
use matchgate_lambdas::adapters::apigw::ManagementApiPusher;
use matchgate_lambdas::adapters::dynamodb::{self, DynamoConnections, DynamoPlayers, DynamoTickets, TableNames};
use matchgate_lambdas::adapters::dynamodb_parties::DynamoParties;
use matchgate_lambdas::adapters::gamelift::{self, GameLiftMatchmaker};
use matchgate_lambdas::adapters::memory_parties::MemoryParties;

use crate::apigw::{self, ApiGateway, AuthMode, ConnectAuthorizer, Integration, Limits, Registry};
use crate::embedded::{EmbeddedLambdas, RegistryPusher};
use crate::gamelift::{Fleet, FleetConfig, LocalFlexMatch, MatchmakingConfiguration, sns};
use crate::lambda::{
    Concurrency, DEFAULT_FUNCTION_TIMEOUT, FunctionSettings, InvokeApi, LambdaHost, default_function_map,
};

/// How long shutdown waits, at most, for connections to close and for in-flight route
/// invocations and event deliveries to finish (`matchgate up --shutdown-drain`).
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// The rule set `matchgate up` loads when none is given: the one `infra/` deploys.
pub const DEFAULT_RULE_SET: &str = include_str!("../../infra/flexmatch/ruleset.json");

#[derive(Debug, Clone)]
pub struct StackConfig {
    pub stage: String,
    pub auth: AuthMode,
    pub limits: Limits,
    /// The WebSocket API's route keys (the template's routes; the built-in set by default).
    pub route_keys: BTreeSet<String>,
    /// The `$connect` authorizer's identity sources (the template's; none by default). Only
    /// used with JWT auth: `AuthMode::None` has no authorizer.
    pub identity_sources: Vec<String>,
    pub region: String,
    pub rule_set_body: String,
    pub configuration: MatchmakingConfiguration,
    pub fleet: FleetConfig,
    pub settings: Settings,
    /// How often FlexMatch's matchmaking cycle runs (it also runs soon after a ticket arrives).
    pub matchmaking_interval: Duration,
    /// Rows for the Players table.
    pub players: BTreeMap<String, PlayerAttributes>,
    /// The dev issuer's public keys, served at `/.well-known/jwks.json` for JWT auth.
    pub jwks: Option<serde_json::Value>,
    /// AWS-faithful storage: the handlers use the DynamoDB adapters against this endpoint
    /// (DynamoDB Local), and the GameLift and Management API SDK adapters against this stack.
    pub dynamodb_endpoint: Option<String>,
    /// Prefix of the three table names, so several stacks can share one DynamoDB Local.
    pub table_prefix: String,
    /// Who runs the functions.
    pub functions: Functions,
    /// How often the backstop runs (the handler itself limits how often a ticket is polled).
    pub backstop_every: Duration,
    /// Which function serves which route key, `events`, `backstop` and the `$connect`
    /// authorizer ([`apigw::AUTHORIZER_TARGET`]) (from the template). With JWT auth, functions
    /// that run outside this process (binaries, Invoke API) authorize `$connect` through the
    /// authorizer's function when the map has one; embedded, the authorizer's code runs here.
    pub function_map: BTreeMap<String, String>,
    /// How long an invocation of a function the template does not describe may run (binaries
    /// and Invoke API modes); the template's functions get their own `Timeout`.
    pub function_timeout: Duration,
    /// The template's functions by binary name: the environment and `Timeout` each one gets in
    /// AWS, which `--lambdas` gives it too (pointed at the local stack) and `--lambda-endpoint`
    /// times it by.
    pub template_functions: BTreeMap<String, crate::template::FunctionInfo>,
    /// A second rule set evaluated on the same traffic without affecting any player; both
    /// side by side at `GET /lab/shadow` (the rule-set lab).
    pub shadow_rule_set: Option<String>,
    /// How far the function binaries scale out (`--lambdas`): the account's and each function's
    /// concurrency, and how long idle instances stay warm. A function's
    /// `ReservedConcurrentExecutions` in the template overrides the per-function limit.
    pub concurrency: Concurrency,
    /// How long [`Stack::shutdown`] waits, at most, for connections to close and for in-flight
    /// invocations and event deliveries to finish.
    pub shutdown_drain: Duration,
}

/// Template parameters the local stack sets unless told otherwise: it places matches on its
/// simulated fleet, which stands in for a game session queue.
pub const LOCAL_PARAMETER_DEFAULTS: &[(&str, &str)] = &[
    ("FlexMatchMode", "WITH_QUEUE"),
    ("GameSessionQueueArn", "arn:aws:gamelift:us-east-1:000000000000:gamesessionqueue/matchgate-local"),
];

impl StackConfig {
    /// Takes the matchmaking configuration, the rule set and the function of every route from a
    /// SAM template (`infra/template.yaml`), so the local stack runs what deploys.
    pub fn with_template(mut self, template: &crate::template::LocalTemplate) -> Result<Self, StackError> {
        if template.route_selection_expression != "$request.body.action" {
            return Err(StackError::Template(format!(
                "route selection expression {:?}: the local stack routes on $request.body.action",
                template.route_selection_expression
            )));
        }
        let c = &template.configuration;
        self.configuration = MatchmakingConfiguration {
            rule_set_name: template.rule_set_name.clone(),
            acceptance_timeout_seconds: c.acceptance_timeout_seconds.or(self.configuration.acceptance_timeout_seconds),
            ..c.clone()
        };
        self.rule_set_body = template.rule_set_body.clone();
        let mut map: BTreeMap<String, String> =
            template.routes.iter().map(|r| (r.route_key.clone(), r.binary.clone())).collect();
        for function in template.functions.values() {
            if function.events.iter().any(|e| e == "SNS") {
                map.insert(sns::EVENTS_TARGET.to_owned(), function.binary.clone());
            }
            if function.events.iter().any(|e| e == "Schedule" || e == "ScheduleV2") {
                map.insert(crate::embedded::BACKSTOP_TARGET.to_owned(), function.binary.clone());
            }
        }
        if let Some(authorizer) = &template.authorizer {
            map.insert(apigw::AUTHORIZER_TARGET.to_owned(), authorizer.binary.clone());
        }
        self.function_map = map;
        self.template_functions = template.functions.values().map(|f| (f.binary.clone(), f.clone())).collect();
        self.route_keys = template.routes.iter().map(|r| r.route_key.clone()).collect();
        self.identity_sources = template.authorizer.as_ref().map(|a| a.identity_sources.clone()).unwrap_or_default();
        Ok(self)
    }
}

/// Who runs the Lambda functions of the local stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Functions {
    /// The handlers, in this process.
    Embedded,
    /// The built binaries from this directory, as child processes on a local Runtime API.
    Binaries(std::path::PathBuf),
    /// A Lambda Invoke API endpoint (`cargo lambda watch`).
    InvokeApi(String),
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            stage: "local".into(),
            auth: AuthMode::None,
            limits: Limits::default(),
            route_keys: apigw::builtin_route_keys(),
            identity_sources: Vec::new(),
            region: "us-east-1".into(),
            rule_set_body: DEFAULT_RULE_SET.into(),
            configuration: MatchmakingConfiguration::default(),
            fleet: FleetConfig::default(),
            settings: Settings::default(),
            matchmaking_interval: Duration::from_millis(200),
            players: BTreeMap::new(),
            jwks: None,
            dynamodb_endpoint: None,
            table_prefix: String::new(),
            functions: Functions::Embedded,
            backstop_every: Duration::from_secs(5),
            function_map: default_function_map(),
            function_timeout: DEFAULT_FUNCTION_TIMEOUT,
            template_functions: BTreeMap::new(),
            shadow_rule_set: None,
            concurrency: Concurrency::default(),
            shutdown_drain: DEFAULT_SHUTDOWN_DRAIN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("the rule set is invalid: {0}")]
    RuleSet(#[from] matchgate_flexmatch::RuleSetError),
    #[error("the initial matchmaking setup was refused: {0}")]
    GameLift(#[from] crate::gamelift::GameLiftError),
    #[error("seeding the Players table failed: {0}")]
    Seed(#[from] matchgate_lambdas::ports::StoreError),
    #[error("the template cannot run locally: {0}")]
    Template(String),
    #[error("running the built Lambda binaries needs --dynamodb-endpoint: they keep their state in DynamoDB")]
    FunctionsNeedDynamoDb,
    #[error("the shadow rule set: {0}")]
    Shadow(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A running local stack.
#[derive(Debug)]
pub struct Stack {
    pub addr: SocketAddr,
    pub stage: String,
    /// The matchmaking configuration loaded at start.
    pub configuration: MatchmakingConfiguration,
    pub engine: Arc<LocalFlexMatch>,
    pub gateway: Arc<ApiGateway>,
    /// The function processes, in `Functions::Binaries` mode.
    lambda_host: Option<Arc<LambdaHost>>,
    /// Cancelled second, once the connections are closed: the matchmaking cycle and the
    /// backstop stop between runs, and the events already emitted are delivered.
    background: CancellationToken,
    /// Cancelled last: the HTTP servers stop (the functions' own calls to `@connections` and
    /// the GameLift API are served until then).
    servers: CancellationToken,
    /// The stack's own tasks: servers, event delivery, backstop.
    tasks: TaskTracker,
    /// The matchmaking cycle (and the shadow rule set's tasks): stopped, not drained (a cycle
    /// left half done is redone by the next start from scratch anyway).
    stopped: Vec<tokio::task::JoinHandle<()>>,
    shutdown_drain: Duration,
}

impl Stack {
    /// Starts the stack on `listener`; it serves until [`Stack::shutdown`].
    pub async fn start(config: StackConfig, listener: TcpListener) -> Result<Self, StackError> {
        // Boxed: setting up every service is a large future, and callers nest it in their own.
        Box::pin(Self::start_boxed(config, listener)).await
    }

    async fn start_boxed(config: StackConfig, listener: TcpListener) -> Result<Self, StackError> {
        let addr = listener.local_addr()?;
        apigw::check_identity_sources(&config.identity_sources).map_err(StackError::Template)?;
        let clock = Arc::new(SystemClock);
        let (events_tx, engine_events) = mpsc::unbounded_channel();
        let engine = Arc::new(LocalFlexMatch::new(
            config.region.clone(),
            Fleet::new(config.fleet.clone()),
            clock.clone(),
            events_tx,
        ));
        // What infra/ deploys shows up in the GameLift API as the initial rule set and
        // configuration, exactly as if created through it.
        // Only what the handlers need is kept: the parsed rule set is large, and this future is too.
        let max_party_members = max_party_members(&RuleSet::parse(&config.rule_set_body)?);
        engine.create_rule_set(&config.configuration.rule_set_name, &config.rule_set_body)?;
        engine.create_configuration(config.configuration.clone())?;

        let registry = Arc::new(Registry::default());
        let mut settings = config.settings.clone();
        settings.configuration_name = config.configuration.name.clone();
        settings.max_party_members = max_party_members;
        let tables = TableNames::with_prefix(&config.table_prefix);
        let deps = match &config.dynamodb_endpoint {
            None => Deps {
                connections: Arc::new(MemoryConnections::default()),
                players: Arc::new(MemoryPlayers::default()),
                tickets: Arc::new(MemoryTickets::default()),
                parties: Arc::new(MemoryParties::default()),
                matchmaker: engine.clone(),
                pusher: Arc::new(RegistryPusher {
                    registry: Arc::clone(&registry),
                    max_message_bytes: config.limits.max_message_bytes,
                }),
                clock,
                settings,
            },
            Some(endpoint) => {
                // The same adapters the Lambdas use in AWS, against local endpoints.
                let dynamo = dynamodb::client_for_endpoint(endpoint);
                dynamodb::create_tables(&dynamo, &tables).await?;
                let sdk_config = local_sdk_config().await;
                Deps {
                    connections: Arc::new(DynamoConnections::new(dynamo.clone(), &tables.connections)),
                    players: Arc::new(DynamoPlayers::new(dynamo.clone(), &tables.players)),
                    parties: Arc::new(DynamoParties::new(dynamo.clone(), &tables)),
                    tickets: Arc::new(DynamoTickets::new(dynamo, &tables.tickets)),
                    matchmaker: Arc::new(GameLiftMatchmaker::new(gamelift::client(
                        &sdk_config,
                        Some(&format!("http://{addr}")),
                    ))),
                    pusher: Arc::new(ManagementApiPusher::new(apigw_adapter::client(
                        &sdk_config,
                        &format!("http://{addr}/{}", config.stage),
                    ))),
                    clock,
                    settings,
                }
            }
        };
        for (player_id, attributes) in &config.players {
            deps.players.put_attributes(player_id, attributes).await?;
        }
        let connect_authorizer = connect_authorizer(&config);
        let mut function_map = config.function_map.clone();
        if !matches!(connect_authorizer, ConnectAuthorizer::Function) {
            // No function authorizes: its process is not started (it could not run without its
            // issuer's settings anyway).
            function_map.remove(apigw::AUTHORIZER_TARGET);
        }
        let mut lambda_host = None;
        let mut internal_listener = None;
        let integration: Arc<dyn Integration> = match &config.functions {
            Functions::Embedded => Arc::new(EmbeddedLambdas { deps }),
            Functions::InvokeApi(endpoint) => {
                let timeouts = function_map.values().map(|name| (name.clone(), function_timeout(&config, name)));
                Arc::new(
                    InvokeApi::new(endpoint, function_map.clone(), config.function_timeout)
                        .with_timeouts(timeouts.collect()),
                )
            }
            Functions::Binaries(dir) => {
                let endpoint = config.dynamodb_endpoint.as_ref().ok_or(StackError::FunctionsNeedDynamoDb)?;
                // The functions reach @connections, GameLift and the dev issuer's JWKS on a
                // listener of their own, so the client connection cap never turns away the
                // stack's own traffic.
                let internal = TcpListener::bind("127.0.0.1:0").await?;
                let settings = function_settings(&config, &function_map, internal.local_addr()?, endpoint, &tables);
                internal_listener = Some(internal);
                let host = Arc::new(LambdaHost::start(dir, function_map.clone(), &settings, config.concurrency).await?);
                lambda_host = Some(Arc::clone(&host));
                host
            }
        };
        let tasks = TaskTracker::new();
        let background = CancellationToken::new();
        let servers = CancellationToken::new();
        let gateway = Arc::new(ApiGateway {
            stage: config.stage.clone(),
            api_id: "local".into(),
            limits: config.limits.clone(),
            auth: connect_authorizer,
            registry,
            integration: Arc::clone(&integration),
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            route_keys: config.route_keys.clone(),
            identity_sources: config.identity_sources.clone(),
        });

        let topic_arn = format!("arn:aws:sns:{}:000000000000:matchgate-events", config.region);
        let cycle = engine.spawn_cycle(config.matchmaking_interval);
        spawn_event_delivery(&tasks, &background, topic_arn, Arc::clone(&integration), engine_events);
        tasks.spawn(backstop(integration, config.backstop_every, background.clone()));

        let jwks = config.jwks.clone().unwrap_or_else(|| serde_json::json!({ "keys": [] }));
        let jwks_route = get(move || async move { axum::Json(jwks) });
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(crate::issuer::JWKS_PATH, jwks_route.clone())
            .merge(apigw::management_routes(Arc::clone(&gateway)))
            .merge(crate::gamelift::api::gamelift_routes(Arc::clone(&engine)))
            .merge(apigw::websocket_route(Arc::clone(&gateway)));
        let mut stopped = vec![cycle];
        let app = match &config.shadow_rule_set {
            Some(body) => {
                let (shadow, shadow_tasks) = crate::lab::shadow::Shadow::start(
                    &engine,
                    &config.configuration,
                    body,
                    config.matchmaking_interval,
                )
                .map_err(|e| StackError::Shadow(e.to_string()))?;
                stopped.extend(shadow_tasks);
                app.merge(crate::lab::shadow::routes(shadow))
            }
            None => app,
        };
        if let Some(internal) = internal_listener {
            let internal_app = Router::new()
                .route(crate::issuer::JWKS_PATH, jwks_route)
                .merge(apigw::management_routes(Arc::clone(&gateway)))
                .merge(crate::gamelift::api::gamelift_routes(Arc::clone(&engine)));
            let stop = servers.clone();
            tasks.spawn(async move {
                let _ = axum::serve(internal, internal_app).with_graceful_shutdown(stop.cancelled_owned()).await;
            });
        }
        let stop = servers.clone();
        let limits = config.limits.clone();
        tasks.spawn(async move {
            let listener = apigw::GuardedListener::new(listener, limits.max_connections, limits.handshake_timeout);
            let served = axum::serve(listener, app.into_make_service_with_connect_info::<apigw::Peer>())
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the server failed");
            }
        });
        tracing::info!(%addr, stage = config.stage, "matchgate local stack ready");
        Ok(Self {
            addr,
            stage: config.stage,
            configuration: config.configuration,
            engine,
            gateway,
            lambda_host,
            background,
            servers,
            tasks,
            stopped,
            shutdown_drain: config.shutdown_drain,
        })
    }

    /// How many invocations the process of function `name` (e.g. `mg-authorizer`) has taken, in
    /// `Functions::Binaries` mode; `None` in other modes or for a function not started.
    pub fn function_invocations(&self, name: &str) -> Option<u64> {
        self.lambda_host.as_ref().and_then(|host| host.invocations(name))
    }

    /// `ws://ADDR/STAGE`.
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.stage)
    }

    /// `http://ADDR/STAGE`: the endpoint for `aws-sdk-apigatewaymanagement`.
    pub fn connections_endpoint(&self) -> String {
        format!("http://{}/{}", self.addr, self.stage)
    }

    /// Shuts the stack down without losing what is in flight, within the drain time
    /// ([`StackConfig::shutdown_drain`]): new WebSocket connections are refused and every open
    /// one gets its queued pushes, close 1001 and its `$disconnect` (a message being routed is
    /// finished first); then the matchmaking cycle and the backstop stop and the FlexMatch
    /// events already emitted are delivered; then the servers stop and the function processes
    /// are stopped. Past the drain time, what is left is abandoned (and logged).
    pub async fn shutdown(self) {
        let drain = async {
            self.gateway.shutdown.cancel();
            self.gateway.connections.close();
            self.gateway.connections.wait().await;
            for task in &self.stopped {
                task.abort();
            }
            self.background.cancel();
            self.servers.cancel();
            self.tasks.close();
            self.tasks.wait().await;
        };
        if tokio::time::timeout(self.shutdown_drain, drain).await.is_err() {
            tracing::warn!(
                drain = ?self.shutdown_drain,
                connections = self.gateway.connections.len(),
                tasks = self.tasks.len(),
                "shutdown: the drain time ran out; abandoning what is left"
            );
        }
        if let Some(host) = &self.lambda_host {
            host.shutdown();
        }
    }
}

/// SDK settings for the local endpoints: a fixed region and dummy credentials, so a local run
/// never picks up (or needs) real AWS credentials.
async fn local_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "matchgatelocal",
            "matchgatelocal",
            None,
            None,
            "matchgate-local",
        ))
        .load()
        .await
}

/// What authorizes `$connect`: nothing with `AuthMode::None`; with JWT auth, the authorizer's
/// function when the functions run outside this process and one is mapped, as in AWS, else the
/// authorizer's code in this process.
fn connect_authorizer(config: &StackConfig) -> ConnectAuthorizer {
    match &config.auth {
        AuthMode::None => ConnectAuthorizer::None,
        AuthMode::Jwt(verifier) => {
            if matches!(config.functions, Functions::Embedded) {
                ConnectAuthorizer::InProcess(Arc::clone(verifier))
            } else if config.function_map.contains_key(apigw::AUTHORIZER_TARGET) {
                ConnectAuthorizer::Function
            } else {
                tracing::warn!(
                    "the $connect route has no authorizer function: tokens are verified by the authorizer's code \
                     in this process"
                );
                ConnectAuthorizer::InProcess(Arc::clone(verifier))
            }
        }
    }
}

/// A function's `Timeout` from the template, or the stack's default for one it does not describe.
fn function_timeout(config: &StackConfig, name: &str) -> Duration {
    config
        .template_functions
        .get(name)
        .map_or(config.function_timeout, |f| Duration::from_secs(f.timeout_seconds.into()))
}

/// What each function process gets: the environment the template gives it in AWS (`Globals`
/// included), with what must point at the local stack overridden, and its own `Timeout`.
fn function_settings(
    config: &StackConfig,
    function_map: &BTreeMap<String, String>,
    addr: SocketAddr,
    dynamodb_endpoint: &str,
    tables: &TableNames,
) -> BTreeMap<String, FunctionSettings> {
    let names: BTreeSet<&String> = function_map.values().collect();
    let authorizer = function_map.get(apigw::AUTHORIZER_TARGET);
    names
        .into_iter()
        .map(|name| {
            let mut environment =
                config.template_functions.get(name).map(|f| f.environment.clone()).unwrap_or_default();
            environment.extend(local_environment(config, addr, dynamodb_endpoint, tables));
            if authorizer == Some(name) {
                environment.extend(authorizer_environment(config, addr));
            }
            // The template's log level (`LogLevel`); the stack's own RUST_LOG, or warn, otherwise.
            environment
                .entry("RUST_LOG".to_owned())
                .or_insert_with(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()));
            let settings = FunctionSettings {
                environment,
                timeout: function_timeout(config, name),
                reserved_concurrency: config
                    .template_functions
                    .get(name)
                    .and_then(|f| f.reserved_concurrency)
                    .map(|n| n as usize),
                ..FunctionSettings::default()
            };
            (name.clone(), settings)
        })
        .collect()
}

/// The variables that point a function at the local stack instead of AWS: endpoints, table
/// names, the region and dummy credentials (and the stack's `--disconnect-grace`).
fn local_environment(
    config: &StackConfig,
    addr: SocketAddr,
    dynamodb_endpoint: &str,
    tables: &TableNames,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("CONNECTIONS_TABLE", tables.connections.clone()),
        ("PLAYERS_TABLE", tables.players.clone()),
        ("TICKETS_TABLE", tables.tickets.clone()),
        ("PARTIES_TABLE", tables.parties.clone()),
        ("MATCHMAKING_CONFIGURATION_NAME", config.configuration.name.clone()),
        ("CONNECTIONS_ENDPOINT", format!("http://{addr}/{}", config.stage)),
        ("GAMELIFT_ENDPOINT", format!("http://{addr}")),
        ("DYNAMODB_ENDPOINT", dynamodb_endpoint.to_owned()),
        ("DISCONNECT_GRACE_SECONDS", config.settings.disconnect_grace.as_secs().to_string()),
        ("MAX_PARTY_MEMBERS", max_party_members_of(&config.rule_set_body).to_string()),
        ("AWS_REGION", config.region.clone()),
        ("AWS_DEFAULT_REGION", config.region.clone()),
        ("AWS_ACCESS_KEY_ID", "matchgatelocal".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "matchgatelocal".to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env
}

/// The variables that make the authorizer function accept what the stack's JWT auth accepts
/// (the dev issuer's tokens, for `matchgate up`): its issuer, audience, token use, leeway and
/// observer group, and the JWKS this stack serves on its internal listener (the verifier's own
/// JWKS URL when the stack serves no keys).
fn authorizer_environment(config: &StackConfig, addr: SocketAddr) -> BTreeMap<String, String> {
    let AuthMode::Jwt(verifier) = &config.auth else { return BTreeMap::new() };
    let accepts = verifier.config();
    let jwks_url =
        if config.jwks.is_some() { format!("http://{addr}{}", crate::issuer::JWKS_PATH) } else { accepts.jwks_url() };
    [
        ("JWKS_URL", jwks_url),
        ("TOKEN_ISSUER", accepts.issuer.clone()),
        ("TOKEN_AUDIENCE", accepts.audience.join(",")),
        // Empty accepts ID and access tokens alike.
        ("TOKEN_USE", accepts.token_use.clone().unwrap_or_default()),
        ("TOKEN_LEEWAY_SECS", accepts.leeway_secs.to_string()),
        ("OBSERVER_GROUP", accepts.observer_group.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// SNS delivery of the engine's FlexMatch events, tracked: once `stop` is cancelled, the
/// events already emitted are still delivered, then delivery ends.
fn spawn_event_delivery(
    tasks: &TaskTracker,
    stop: &CancellationToken,
    topic_arn: String,
    integration: Arc<dyn Integration>,
    mut engine_events: mpsc::UnboundedReceiver<matchgate_protocol::flexmatch::MatchmakingEvent>,
) {
    let (deliver, deliveries) = mpsc::unbounded_channel();
    let delivery = sns::spawn_delivery(topic_arn, integration, deliveries);
    tasks.spawn(async move {
        if let Err(e) = delivery.await {
            tracing::error!(error = %e, "event delivery failed");
        }
    });
    let stop = stop.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = engine_events.recv() => match event {
                    Some(event) => { let _ = deliver.send(event); }
                    None => break,
                },
            }
        }
        while let Ok(event) = engine_events.try_recv() {
            let _ = deliver.send(event);
        }
        // `deliver` is dropped here: delivery ends once its queue is empty.
    });
}

/// Runs the backstop every `every`, as the deployed stack's schedule does, until `stop` (a run
/// in progress finishes).
async fn backstop(integration: Arc<dyn Integration>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        // The EventBridge Scheduler event a scheduled Lambda receives.
        let event = serde_json::json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000", "time": chrono::Utc::now().to_rfc3339(),
            "region": "us-east-1", "resources": [], "detail": {}
        });
        if let Err(e) = integration.invoke(crate::embedded::BACKSTOP_TARGET, event).await {
            tracing::warn!(error = %e, "backstop run failed");
        }
    }
}

/// The most members a party may have under `rule_set`: FlexMatch keeps a ticket's players on one
/// team, so its largest team, and never more than one matchmaking request's ten players.
pub fn max_party_members(rule_set: &RuleSet) -> usize {
    let largest = rule_set.teams().iter().map(|t| t.max_players).max().unwrap_or(1);
    largest.clamp(1, matchgate_lambdas::ports::MAX_PARTY_MEMBERS)
}

/// [`max_party_members`] of a rule set body the stack has already checked parses.
pub fn max_party_members_of(rule_set_body: &str) -> usize {
    RuleSet::parse(rule_set_body).map_or(matchgate_lambdas::ports::MAX_PARTY_MEMBERS, |r| max_party_members(&r))
}
