//! A game client for matchgate: connects N players, asks each for a match, prints every push
//! as it arrives and how long each player waited from `matchmake` to `MatchmakingSucceeded`.
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

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use matchgate_protocol::Push;
use tokio_tungstenite::tungstenite::Message;

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
    /// `jwt`: a token from the local dev issuer (as `matchgate token` mints); `none`: `?playerId=`.
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
        let url = match &issuer {
            Some(issuer) => {
                let token = issuer.mint(&player_id, "player", Duration::from_secs(3600))?;
                format!("{}?token={token}", args.url)
            }
            None => format!("{}?playerId={player_id}", args.url),
        };
        let latency = latency.clone();
        let timeout = Duration::from_secs(args.timeout);
        tasks.push(tokio::spawn(async move {
            let outcome = tokio::time::timeout(timeout, play(&player_id, &url, &latency)).await;
            match outcome {
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

async fn play(player_id: &str, url: &str, latency: &BTreeMap<String, u32>) -> anyhow::Result<()> {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(url).await.with_context(|| format!("{player_id}: connect"))?;
    let request = serde_json::json!({ "action": "matchmake", "latencyInMs": latency });
    let asked = Instant::now();
    socket.send(Message::text(request.to_string())).await?;
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame? else { continue };
        let elapsed = asked.elapsed();
        println!("[{player_id}] +{:>5} ms {text}", elapsed.as_millis());
        match serde_json::from_str::<Push>(&text) {
            Ok(Push::MatchmakingSucceeded { ip_address, port, player_session_id, .. }) => {
                println!(
                    "[{player_id}] matched in {} ms: connect to {}:{} with {}",
                    elapsed.as_millis(),
                    ip_address.unwrap_or_default(),
                    port.unwrap_or_default(),
                    player_session_id.unwrap_or_default()
                );
                socket.close(None).await.ok();
                return Ok(());
            }
            Ok(push) if push.is_terminal() => bail!("{player_id}: matchmaking ended with {text}"),
            Ok(Push::Error { .. }) => bail!("{player_id}: {text}"),
            _ => {}
        }
    }
    bail!("{player_id}: the connection closed before a result")
}
