//! `matchgate`: the local AWS side of a WebSocket matchmaking stack, and its tools.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use matchgate_gateway::apigw::{AuthMode, Limits};
use matchgate_gateway::stack::{Functions, Stack, StackConfig};

#[derive(Debug, Parser)]
#[command(name = "matchgate", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    up: UpArgs,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the local stack (the default).
    Up(UpArgs),
    /// Print a token for PLAYER from the local dev issuer (for `?token=` or Sec-WebSocket-Protocol).
    Token {
        /// The player ID (the token's `sub`).
        player: String,
        /// `player`, or `observer` for the designers' live view.
        #[arg(long, default_value = "player")]
        role: String,
        /// Lifetime: seconds, or with a unit (`90s`, `15m`, `1h`); at most 24h.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// Where the dev issuer keeps its signing key.
        #[arg(long, default_value = matchgate_gateway::issuer::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Simulate a player population or a recording against a rule set, on a virtual clock.
    Simulate(matchgate_gateway::lab::cli::SimulateArgs),
    /// Run sample tickets through a rule set and check which match together and which must not.
    TestRules(matchgate_gateway::lab::cli::TestRulesArgs),
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
    /// The rule-set lab's simulator: simulated seconds per wall-clock second.
    Simulate {
        /// Simulated seconds of arrivals.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// Tickets per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Request → MatchmakingSucceeded latency through the local stack.
    E2e {
        /// Players to match (a multiple of 4: the bench forms 2v2 matches).
        #[arg(long, default_value_t = 1_000)]
        players: usize,
    },
    /// Hold N connections: connect rate, handshake p50/p99, memory per connection, failed
    /// $disconnects when they all close.
    Connections {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        #[command(flatten)]
        target: matchgate_gateway::bench::LoadTarget,
    },
    /// Round trips: ping → Pong and @connections POST → frame.
    Push {
        /// Requests in flight at once, one per connection (each measured in turn).
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        in_flight: Vec<usize>,
        /// Round trips per measurement.
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[command(flatten)]
        target: matchgate_gateway::bench::LoadTarget,
    },
    /// Each Lambda bootstrap's size and init time (process start to its first Runtime API poll).
    Lambdas {
        /// Where the built binaries are, e.g. target/lambda or target/release.
        #[arg(long, default_value = "target/debug")]
        dir: PathBuf,
        /// Instances started per function.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Auth {
    /// A JWT from `matchgate token` (or any issuer's) in `?token=` or Sec-WebSocket-Protocol.
    Jwt,
    /// `?playerId=NAME` on connect, unverified (local experiments only).
    None,
}

fn parse_parameter(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.to_owned(), value.to_owned()))
}

/// `90`, `90s`, `15m`, `1h`, `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 15m or 1h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// A size in bytes: `32768`, `32KB` (KB = 1,024 bytes, as API Gateway's quotas count), `1MB`.
fn parse_size(s: &str) -> Result<usize, String> {
    let (number, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: usize = number.parse().map_err(|_| format!("{s:?} is not a size like 32768, 32KB or 1MB"))?;
    let factor = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        _ => return Err(format!("unknown unit {unit:?}: use B, KB or MB")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too large"))
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
    #[arg(long, value_enum, default_value_t = Auth::Jwt)]
    auth: Auth,
    /// Where the dev issuer keeps its signing key (shared with `matchgate token`).
    #[arg(long, default_value = matchgate_gateway::issuer::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The SAM template to run: its matchmaking configuration, rule set and route → function
    /// map [default: infra/template.yaml when it exists, else the built-in configuration].
    #[arg(long)]
    template: Option<PathBuf>,
    /// Template parameter overrides, `NAME=VALUE` (as `sam deploy --parameter-overrides`). The
    /// local stack defaults FlexMatchMode=WITH_QUEUE with a local queue ARN: it places matches on
    /// its simulated fleet.
    #[arg(long = "parameter", value_parser = parse_parameter)]
    parameters: Vec<(String, String)>,
    /// FlexMatch rule set JSON, instead of the template's.
    #[arg(long)]
    ruleset: Option<PathBuf>,
    /// Seed the Players table from a JSON file: {"PLAYER": {"skill": 30, ...}}.
    #[arg(long)]
    players: Option<PathBuf>,
    /// The matchmaking configuration's request timeout, in seconds (default: the template's).
    #[arg(long)]
    request_timeout: Option<u32>,
    /// Seconds a player who disconnects while searching keeps the ticket, so a client that
    /// reconnects within them carries on (0 stops the ticket at once).
    #[arg(long, default_value_t = matchgate_lambdas::deps::DEFAULT_DISCONNECT_GRACE.as_secs())]
    disconnect_grace: u64,
    /// AWS-faithful mode: keep state in DynamoDB at this endpoint (DynamoDB Local) through the
    /// same SDK adapters the Lambdas use in AWS. Tables are created if missing.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Prefix for the Connections, Players and Tickets table names.
    #[arg(long, default_value = "")]
    table_prefix: String,
    /// Run the built Lambda binaries from DIR (e.g. target/debug) as child processes behind a
    /// local Lambda Runtime API. Needs --dynamodb-endpoint.
    #[arg(long, conflicts_with = "lambda_endpoint")]
    lambdas: Option<PathBuf>,
    /// Most open connections (HTTP and WebSocket); past it new sockets get a 503.
    #[arg(long, default_value_t = 15_000)]
    max_connections: usize,
    /// Idle timeout of a WebSocket connection (API Gateway: 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Maximum duration of a WebSocket connection (API Gateway: 2h).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    max_connection_duration: Duration,
    /// Close code sent when the maximum duration is reached.
    #[arg(long, default_value_t = 1001)]
    max_duration_close_code: u16,
    /// Time a client has to complete its upgrade request.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// Messages per second per connection (average) before RateLimited errors.
    #[arg(long, default_value_t = 10)]
    message_rate: u32,
    /// Burst of messages per connection allowed above the rate.
    #[arg(long, default_value_t = 20)]
    message_burst: u32,
    /// Sustained abuse: this many refused messages within --abuse-window close the connection
    /// with 1008 (the count drains over the window; messages that get through do not reset it).
    #[arg(long, default_value_t = 100)]
    abuse_limit: u32,
    /// The window of --abuse-limit.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    abuse_window: Duration,
    /// Largest WebSocket frame a client may send (API Gateway: 32 KB); larger closes with 1009.
    #[arg(long, default_value = "32KB", value_parser = parse_size)]
    max_frame_size: usize,
    /// Largest message, all frames together (API Gateway: 128 KB), from a client or through
    /// @connections; larger closes with 1009, or gets 413 from @connections.
    #[arg(long, default_value = "128KB", value_parser = parse_size)]
    max_message_size: usize,
    /// Pushes queued for one connection before @connections answers 429.
    #[arg(long, default_value_t = 64)]
    outbound_queue: usize,
    /// How long writing one frame to a client may take; a client that stops reading is then
    /// disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// Bytes read from a socket at a time (larger messages grow the buffer as needed).
    #[arg(long, default_value = "2KB", value_parser = parse_size)]
    read_buffer_size: usize,
    /// Allow only this browser Origin (repeatable); by default any.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// On SIGTERM or Ctrl-C, how long to wait at most for connections to close (1001) and for
    /// in-flight route invocations and event deliveries to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    shutdown_drain: Duration,
    /// Invoke the functions over the Lambda Invoke API at URL (e.g. `cargo lambda watch`'s
    /// http://127.0.0.1:9000).
    #[arg(long)]
    lambda_endpoint: Option<String>,
    /// With --lambdas: most function instances running at once, all functions together (the
    /// account's concurrency). Functions with ReservedConcurrentExecutions take theirs from it.
    #[arg(long, default_value_t = matchgate_gateway::lambda::DEFAULT_ACCOUNT_CONCURRENCY)]
    account_concurrency: usize,
    /// With --lambdas: most instances of one function without ReservedConcurrentExecutions
    /// (default: the account's concurrency). Past its limit a client's request is throttled.
    #[arg(long)]
    function_concurrency: Option<usize>,
    /// With --lambdas: seconds an idle function instance stays warm before it is stopped.
    #[arg(long, default_value_t = matchgate_gateway::lambda::DEFAULT_IDLE_TIMEOUT.as_secs())]
    lambda_idle_timeout: u64,
    /// Append every StartMatchmaking the stack receives to FILE as JSON Lines, for
    /// `matchgate simulate --replay`.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Evaluate a second FlexMatch rule set on the same live traffic without affecting any
    /// player; both side by side at GET /lab/shadow and in the log.
    #[arg(long)]
    shadow_rule_set: Option<PathBuf>,
}

impl UpArgs {
    /// API Gateway's limits as the flags set them. Every field is named (no `..`), so a new
    /// limit cannot be added without a flag.
    fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_size,
            max_message_bytes: self.max_message_size,
            outbound_queue: self.outbound_queue,
            write_timeout: self.write_timeout,
            idle_timeout: self.idle_timeout,
            max_connection_duration: self.max_connection_duration,
            max_duration_close_code: self.max_duration_close_code,
            read_buffer_bytes: self.read_buffer_size,
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            message_rate: self.message_rate,
            message_burst: self.message_burst,
            abuse_limit: self.abuse_limit,
            abuse_window: self.abuse_window,
            allowed_origins: self.allowed_origins.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries a command's output only (`TOKEN=$(matchgate token NAME)`,
    // `up`'s URLs).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,matchgate=info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Up(args)) => Box::pin(up(args)).await,
        Some(Command::Token { player, role, ttl, state_dir }) => {
            let issuer = matchgate_gateway::issuer::DevIssuer::load_or_create(&state_dir)?;
            println!("{}", issuer.mint(&player, &role, ttl)?);
            Ok(())
        }
        Some(Command::Bench(Bench::Idle { connections })) => matchgate_gateway::bench::idle(connections, None).await,
        Some(Command::Bench(Bench::Flexmatch { pools })) => matchgate_gateway::bench::flexmatch(&pools),
        Some(Command::Bench(Bench::Simulate { seconds, rate })) => {
            Ok(matchgate_gateway::lab::bench::simulate(seconds, rate)?)
        }
        Some(Command::Bench(Bench::E2e { players })) => matchgate_gateway::bench::e2e(players).await,
        Some(Command::Simulate(args)) => Ok(matchgate_gateway::lab::cli::simulate(&args)?),
        Some(Command::TestRules(args)) => Ok(matchgate_gateway::lab::cli::test_rules(&args)?),
        Some(Command::Bench(Bench::Connections { connections, in_flight, target })) => {
            Box::pin(matchgate_gateway::bench::connections(connections, in_flight, target)).await
        }
        Some(Command::Bench(Bench::Push { in_flight, messages, target })) => {
            Box::pin(matchgate_gateway::bench::push(&in_flight, messages, target)).await
        }
        Some(Command::Bench(Bench::Lambdas { dir, runs, json })) => {
            Box::pin(matchgate_gateway::bench::lambdas(&dir, runs, json)).await
        }
        None => Box::pin(up(cli.up)).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = StackConfig { stage: args.stage.clone(), ..StackConfig::default() };
    let default_template = PathBuf::from("infra/template.yaml");
    let template_path = args.template.clone().or_else(|| default_template.exists().then_some(default_template));
    if let Some(template_path) = &template_path {
        let mut overrides: std::collections::BTreeMap<String, String> =
            matchgate_gateway::stack::LOCAL_PARAMETER_DEFAULTS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        overrides.extend(args.parameters.iter().cloned());
        let template = matchgate_gateway::template::load(template_path, &overrides)
            .with_context(|| format!("reading the template {}", template_path.display()))?;
        for warning in &template.warnings {
            tracing::warn!("{}: {warning}", template_path.display());
        }
        config = config.with_template(&template)?;
        tracing::info!(template = %template_path.display(), configuration = config.configuration.name, "running the template");
    } else {
        tracing::warn!("no infra/template.yaml here: running the built-in configuration and rule set");
    }
    config.auth = match args.auth {
        Auth::None => AuthMode::None,
        Auth::Jwt => {
            let issuer = matchgate_gateway::issuer::DevIssuer::load_or_create(&args.state_dir)?;
            config.jwks = Some(issuer.jwks());
            let clock = std::sync::Arc::new(matchgate_lambdas::ports::SystemClock);
            AuthMode::Jwt(std::sync::Arc::new(issuer.verifier(clock)))
        }
    };
    if let Some(path) = &args.ruleset {
        config.rule_set_body =
            std::fs::read_to_string(path).with_context(|| format!("reading the rule set {}", path.display()))?;
    }
    if let Some(path) = &args.shadow_rule_set {
        config.shadow_rule_set =
            Some(std::fs::read_to_string(path).with_context(|| format!("reading the rule set {}", path.display()))?);
    }
    if let Some(path) = &args.players {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.players = matchgate_gateway::players::parse_players(&text)?;
    }
    if let Some(timeout) = args.request_timeout {
        config.configuration.request_timeout_seconds = timeout;
    }
    config.limits = args.limits();
    config.dynamodb_endpoint = args.dynamodb_endpoint.clone();
    config.table_prefix = args.table_prefix.clone();
    config.concurrency = matchgate_gateway::lambda::Concurrency {
        account: args.account_concurrency,
        function: args.function_concurrency.unwrap_or(args.account_concurrency),
        idle_timeout: Duration::from_secs(args.lambda_idle_timeout),
    };
    config.functions = match (&args.lambdas, &args.lambda_endpoint) {
        (Some(dir), _) => Functions::Binaries(dir.clone()),
        (None, Some(endpoint)) => Functions::InvokeApi(endpoint.clone()),
        (None, None) => Functions::Embedded,
    };
    config.settings.disconnect_grace = Duration::from_secs(args.disconnect_grace);
    config.shutdown_drain = args.shutdown_drain;
    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    let stack = Stack::start(config, listener).await?;
    if let Some(path) = &args.record {
        stack.engine.observe(std::sync::Arc::new(matchgate_gateway::lab::recording::Recorder::create(path)?));
    }
    println!("matchgate local stack");
    println!("  WebSocket API   {}", stack.websocket_url());
    println!("  @connections    {}/@connections/{{connectionId}}", stack.connections_endpoint());
    println!("  GameLift API    http://{} (aws-sdk-gamelift endpoint_url)", stack.addr);
    println!("  health          http://{}/health", stack.addr);
    if matches!(args.auth, Auth::Jwt) {
        println!("  auth            JWT: connect with ?token=$(matchgate token PLAYER)");
    }
    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down");
    stack.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM (an operator's `kill`, a container stop) or SIGINT (Ctrl-C): both shut
/// the stack down the same way.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(args: &[&str]) -> UpArgs {
        let cli = Cli::try_parse_from(std::iter::once("matchgate").chain(args.iter().copied())).expect("parses");
        match cli.command {
            Some(Command::Up(args)) => args,
            None => cli.up,
            Some(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_flags_are_api_gateways_limits() {
        assert_eq!(up(&[]).limits(), Limits::default());
        assert_eq!(up(&["up"]).limits(), Limits::default());
    }

    #[test]
    fn every_limit_has_a_flag() {
        let args = up(&[
            "up",
            "--max-frame-size=16KB",
            "--max-message-size=64KB",
            "--outbound-queue=8",
            "--write-timeout=3s",
            "--idle-timeout=5m",
            "--max-connection-duration=1h",
            "--max-duration-close-code=4000",
            "--read-buffer-size=4096",
            "--max-connections=100",
            "--handshake-timeout=500ms",
            "--message-rate=2",
            "--message-burst=3",
            "--abuse-limit=7",
            "--abuse-window=1m",
            "--allowed-origin=https://game.example",
        ]);
        let expected = Limits {
            max_frame_bytes: 16 * 1024,
            max_message_bytes: 64 * 1024,
            outbound_queue: 8,
            write_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
            max_connection_duration: Duration::from_secs(3600),
            max_duration_close_code: 4000,
            read_buffer_bytes: 4096,
            max_connections: 100,
            handshake_timeout: Duration::from_millis(500),
            message_rate: 2,
            message_burst: 3,
            abuse_limit: 7,
            abuse_window: Duration::from_secs(60),
            allowed_origins: vec!["https://game.example".into()],
        };
        assert_eq!(args.limits(), expected);
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("32KB"), Ok(32 * 1024));
        assert_eq!(parse_size("128kb"), Ok(128 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1024 * 1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("1d").is_err());
    }
}
