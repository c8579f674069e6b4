//! `matchgate`: the local AWS side of a WebSocket matchmaking stack, and its tools.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use matchgate_gateway::apigw::AuthMode;
use matchgate_gateway::stack::{Stack, StackConfig};

#[derive(Debug, Parser)]
#[command(name = "matchgate", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    up: UpArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local stack (the default).
    Up(UpArgs),
    /// Measure: idle connection memory, the FlexMatch engine, end-to-end latency.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The gateway's resident memory per idle WebSocket connection.
    Idle {
        #[arg(long, default_value_t = 5_000)]
        connections: usize,
    },
    /// Matchmaking cycle time for synthetic pools.
    Flexmatch {
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        pools: Vec<usize>,
    },
    /// Request → MatchmakingSucceeded latency through the local stack.
    E2e {
        #[arg(long, default_value_t = 1_000)]
        players: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Auth {
    /// `?playerId=NAME` on connect, unverified (local experiments only).
    None,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Port for everything: the WebSocket API, @connections and health.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind. Loopback by default: the local stack has no production hardening.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// API Gateway stage name: the WebSocket API is at ws://HOST:PORT/STAGE.
    #[arg(long, default_value = "local")]
    stage: String,
    /// How `$connect` is authorized.
    #[arg(long, value_enum, default_value_t = Auth::None)]
    auth: Auth,
    /// FlexMatch rule set JSON (default: the one infra/ deploys).
    #[arg(long)]
    ruleset: Option<PathBuf>,
    /// Seed the Players table from a JSON file: {"PLAYER": {"skill": 30, ...}}.
    #[arg(long)]
    players: Option<PathBuf>,
    /// The matchmaking configuration's request timeout, in seconds.
    #[arg(long, default_value_t = 60)]
    request_timeout: u32,
    /// Seconds a player who disconnects while searching keeps the ticket (0 stops it at once).
    #[arg(long, default_value_t = 0)]
    disconnect_grace: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,matchgate=info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Up(args)) => up(args).await,
        Some(Command::Bench(Bench::Idle { connections })) => matchgate_gateway::bench::idle(connections, None).await,
        Some(Command::Bench(Bench::Flexmatch { pools })) => matchgate_gateway::bench::flexmatch(&pools),
        Some(Command::Bench(Bench::E2e { players })) => matchgate_gateway::bench::e2e(players).await,
        None => up(cli.up).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = StackConfig { stage: args.stage, ..StackConfig::default() };
    config.auth = match args.auth {
        Auth::None => AuthMode::None,
    };
    if let Some(path) = &args.ruleset {
        config.rule_set_body =
            std::fs::read_to_string(path).with_context(|| format!("reading the rule set {}", path.display()))?;
    }
    if let Some(path) = &args.players {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.players = matchgate_gateway::players::parse_players(&text)?;
    }
    config.configuration.request_timeout_seconds = args.request_timeout;
    config.settings.disconnect_grace = Duration::from_secs(args.disconnect_grace);
    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    let stack = Stack::start(config, listener).await?;
    println!("matchgate local stack");
    println!("  WebSocket API   {}", stack.websocket_url());
    println!("  @connections    {}/@connections/{{connectionId}}", stack.connections_endpoint());
    println!("  health          http://{}/health", stack.addr);
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    stack.shutdown().await;
    Ok(())
}
