//! The local stack on one port: the WebSocket API, `@connections`, health, wired to the
//! handlers and the local FlexMatch. The one place where everything is put together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use matchgate_flexmatch::RuleSet;
use matchgate_lambdas::adapters::memory::{MemoryConnections, MemoryPlayers, MemoryTickets};
use matchgate_lambdas::ports::{PlayerAttributes, PlayerStore, SystemClock};
use matchgate_lambdas::{Deps, Settings};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::apigw::{self, ApiGateway, AuthMode, Integration, Limits, Registry};
use crate::embedded::{EmbeddedLambdas, RegistryPusher};
use crate::gamelift::{Fleet, FleetConfig, LocalFlexMatch, MatchmakingConfiguration, sns};

/// The rule set `matchgate up` loads when none is given: the one `infra/` deploys.
pub const DEFAULT_RULE_SET: &str = include_str!("../../infra/flexmatch/ruleset.json");

#[derive(Debug, Clone)]
pub struct StackConfig {
    pub stage: String,
    pub auth: AuthMode,
    pub limits: Limits,
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
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            stage: "local".into(),
            auth: AuthMode::None,
            limits: Limits::default(),
            region: "us-east-1".into(),
            rule_set_body: DEFAULT_RULE_SET.into(),
            configuration: MatchmakingConfiguration::default(),
            fleet: FleetConfig::default(),
            settings: Settings::default(),
            matchmaking_interval: Duration::from_millis(200),
            players: BTreeMap::new(),
            jwks: None,
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
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Stack {
    /// Starts the stack on `listener`; it serves until [`Stack::shutdown`].
    pub async fn start(config: StackConfig, listener: TcpListener) -> Result<Self, StackError> {
        let addr = listener.local_addr()?;
        let clock = Arc::new(SystemClock);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let engine = Arc::new(LocalFlexMatch::new(
            config.region.clone(),
            Fleet::new(config.fleet.clone()),
            clock.clone(),
            events_tx,
        ));
        // What infra/ deploys shows up in the GameLift API as the initial rule set and
        // configuration, exactly as if created through it.
        let rule_set_name = RuleSet::parse(&config.rule_set_body)?.name().to_owned();
        let rule_set_name =
            if rule_set_name.is_empty() { config.configuration.rule_set_name.clone() } else { rule_set_name };
        engine.create_rule_set(&rule_set_name, &config.rule_set_body)?;
        engine.create_configuration(MatchmakingConfiguration { rule_set_name, ..config.configuration.clone() })?;

        let registry = Arc::new(Registry::default());
        let players = Arc::new(MemoryPlayers::default());
        for (player_id, attributes) in &config.players {
            players.put_attributes(player_id, attributes).await?;
        }
        let mut settings = config.settings.clone();
        settings.configuration_name = config.configuration.name.clone();
        let deps = Deps {
            connections: Arc::new(MemoryConnections::default()),
            players,
            tickets: Arc::new(MemoryTickets::default()),
            matchmaker: engine.clone(),
            pusher: Arc::new(RegistryPusher {
                registry: Arc::clone(&registry),
                max_message_bytes: config.limits.max_message_bytes,
            }),
            clock,
            settings,
        };
        let integration: Arc<dyn Integration> = Arc::new(EmbeddedLambdas { deps });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let gateway = Arc::new(ApiGateway {
            stage: config.stage.clone(),
            api_id: "local".into(),
            limits: config.limits.clone(),
            auth: config.auth.clone(),
            registry,
            integration: Arc::clone(&integration),
            shutdown: shutdown_rx.clone(),
        });

        let topic_arn = format!("arn:aws:sns:{}:000000000000:matchgate-events", config.region);
        let tasks = vec![
            engine.spawn_cycle(config.matchmaking_interval),
            sns::spawn_delivery(topic_arn, integration, events_rx),
        ];

        let jwks = config.jwks.clone().unwrap_or_else(|| serde_json::json!({ "keys": [] }));
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(crate::issuer::JWKS_PATH, get(move || async move { axum::Json(jwks) }))
            .merge(apigw::management_routes(Arc::clone(&gateway)))
            .merge(crate::gamelift::api::gamelift_routes(Arc::clone(&engine)))
            .merge(apigw::websocket_route(Arc::clone(&gateway)));
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, stage = config.stage, "matchgate local stack ready");
        Ok(Self {
            addr,
            stage: config.stage,
            configuration: config.configuration,
            engine,
            gateway,
            shutdown,
            tasks,
            server,
        })
    }

    /// `ws://ADDR/STAGE`.
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.stage)
    }

    /// `http://ADDR/STAGE`: the endpoint for `aws-sdk-apigatewaymanagement`.
    pub fn connections_endpoint(&self) -> String {
        format!("http://{}/{}", self.addr, self.stage)
    }

    /// Closes every connection with 1001 and stops serving.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.server.await;
    }
}
