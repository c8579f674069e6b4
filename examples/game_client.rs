//! A game client for matchgate: connects N players with the `matchgate-client` crate, asks each
//! for a match, prints every event as it arrives and how long each player waited from
//! `matchmake` to `MatchmakingSucceeded`. Dropped sockets are reconnected and resumed by the crate.
//!
//! Run the local stack in one terminal and the client in another (from the same directory: the
//! client mints its players' tokens with the stack's dev issuer key in `.matchgate/`):
//!
//! ```sh
//! cargo run --release
//! cargo run --release -p matchgate-examples --bin game-client -- --players 4
//! ```
//!
//! Against `matchgate up --auth none`, pass `--auth none` (players connect with `?playerId=`).
//!
//! Exits non-zero if any player's matchmaking ends in anything but `MatchmakingSucceeded`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use matchgate_client::{Auth, Client, Event};
use matchgate_protocol::Push;

#[derive(Debug, Parser)]
#[command(about = "Connect players to matchgate and matchmake them")]
struct Args {
    /// The WebSocket API.
    #[arg(long, default_value = "ws://127.0.0.1:8080/local")]
    url: String,
    /// How many players to connect.
    #[arg(long, default_value_t = 4)]
    players: usize,
    /// Player IDs are PREFIX-1, PREFIX-2, ...
    #[arg(long, default_value = "player")]
    prefix: String,
    /// Latency reports, e.g. `--latency us-east-1=40 --latency us-west-2=90`.
    #[arg(long, value_parser = parse_latency)]
    latency: Vec<(String, u32)>,
    /// Give up on a player after this many seconds.
    #[arg(long, default_value_t = 90)]
    timeout: u64,
    /// `jwt`: a token from the local dev issuer (as `matchgate token` mints), sent as a
    /// subprotocol; `none`: `?playerId=`.
    #[arg(long, default_value = "jwt")]
    auth: String,
    /// The dev issuer's state directory (the stack's `--state-dir`).
    #[arg(long, default_value = ".matchgate")]
    state_dir: std::path::PathBuf,
}

fn parse_latency(s: &str) -> Result<(String, u32), String> {
    let (region, ms) = s.split_once('=').ok_or("expected REGION=MS")?;
    Ok((region.to_owned(), ms.parse().map_err(|_| "MS must be a whole number")?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let latency: BTreeMap<String, u32> = if args.latency.is_empty() {
        BTreeMap::from([("us-east-1".to_owned(), 40), ("us-west-2".to_owned(), 90)])
    } else {
        args.latency.iter().cloned().collect()
    };
    let issuer = match args.auth.as_str() {
        "jwt" => Some(matchgate_gateway::issuer::DevIssuer::load_or_create(&args.state_dir)?),
        "none" => None,
        other => bail!("--auth must be jwt or none, not {other:?}"),
    };
    let mut tasks = Vec::new();
    for n in 1..=args.players {
        let player_id = format!("{}-{n}", args.prefix);
        let auth = match &issuer {
            Some(issuer) => Auth::Subprotocol(issuer.mint(&player_id, "player", Duration::from_secs(3600))?),
            None => Auth::PlayerId(player_id.clone()),
        };
        let (url, latency) = (args.url.clone(), latency.clone());
        let timeout = Duration::from_secs(args.timeout);
        tasks.push(tokio::spawn(async move {
            match tokio::time::timeout(timeout, play(&player_id, &url, auth, latency)).await {
                Ok(result) => result,
                Err(_) => bail!("{player_id}: no result within {timeout:?}"),
            }
        }));
    }
    let mut failures = 0;
    for task in tasks {
        if let Err(e) = task.await? {
            eprintln!("{e:#}");
            failures += 1;
        }
    }
    if failures > 0 {
        bail!("{failures} of {} players were not matched", args.players);
    }
    println!("all {} players matched", args.players);
    Ok(())
}

async fn play(player_id: &str, url: &str, auth: Auth, latency: BTreeMap<String, u32>) -> anyhow::Result<()> {
    let mut client = Client::connect(url, auth).await?;
    let asked = Instant::now();
    client.matchmake(latency)?;
    while let Some(event) = client.next_event().await {
        let elapsed = asked.elapsed().as_millis();
        println!("[{player_id}] +{elapsed:>5} ms {event:?}");
        match event {
            Event::Push(Push::MatchmakingSucceeded { ip_address, port, player_session_id, .. }) => {
                println!(
                    "[{player_id}] matched in {elapsed} ms: connect to {}:{} with {}",
                    ip_address.unwrap_or_default(),
                    port.unwrap_or_default(),
                    player_session_id.unwrap_or_default()
                );
                client.close();
                return Ok(());
            }
            Event::Push(push) if push.is_terminal() => bail!("{player_id}: matchmaking ended with {push:?}"),
            Event::Push(Push::Error { code, message, .. }) => bail!("{player_id}: {code:?}: {message}"),
            _ => {}
        }
    }
    bail!("{player_id}: {}", client.stopped().map(|e| e.to_string()).unwrap_or_else(|| "the client stopped".into()))
}
