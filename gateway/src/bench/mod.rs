//! `matchgate bench`: the numbers in docs/benchmarks.md, measured, never asserted in tests.
//!
//! - `idle`: what an idle WebSocket connection costs the gateway, by the resident memory of a
//!   `matchgate up` child process before and after N clients connect.
//! - `flexmatch`: time per matchmaking cycle and matches formed per second for synthetic pools.
//! - `e2e`: request → `MatchmakingSucceeded` latency through the whole local stack.
//! - `connections`, `push` ([`load`]): load on a WebSocket API, a local `matchgate up` (embedded
//!   or `--lambdas`) or a deployed one.
//! - `lambdas` ([`lambdas`]): each Lambda bootstrap's size and init time.

mod lambdas;
mod load;

pub use lambdas::lambdas;
pub use load::{LoadTarget, connections, push};

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use matchgate_flexmatch::RuleSet;
use matchgate_flexmatch::bench_support::{balanced_rule_set, skill_latency_rule_set, synthetic_pool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most connections one bench process opens: a process may hold 20,000 open files here, and
/// the bench needs a few for itself.
pub const MAX_IDLE_CONNECTIONS: usize = 15_000;

/// Sorted samples, read as percentiles.
#[derive(Debug)]
struct Percentiles(Vec<Duration>);

impl Percentiles {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    /// The `p` quantile (0.0..=1.0); zero without samples.
    fn at(&self, p: f64) -> Duration {
        match self.0.len() {
            0 => Duration::ZERO,
            n => self.0[((n as f64 * p) as usize).min(n - 1)],
        }
    }

    /// The `p` quantile in milliseconds, as a table cell.
    fn ms(&self, p: f64) -> String {
        format!("{:.2} ms", self.at(p).as_secs_f64() * 1000.0)
    }
}

/// A result table: printed as Markdown (docs/benchmarks.md's format) or as JSON rows.
#[derive(Debug)]
struct Table {
    columns: Vec<&'static str>,
    rows: Vec<Vec<serde_json::Value>>,
}

impl Table {
    fn new(columns: &[&'static str]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<serde_json::Value>) {
        self.rows.push(cells);
    }

    fn print(&self, json: bool) {
        if json {
            let rows: Vec<serde_json::Value> = self
                .rows
                .iter()
                .map(|row| self.columns.iter().map(|c| (*c).to_owned()).zip(row.iter().cloned()).collect())
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            return;
        }
        println!("| {} |", self.columns.join(" | "));
        println!("|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            println!("| {} |", cells.join(" | "));
        }
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

async fn wait_healthy(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
            let mut response = String::new();
            s.read_to_string(&mut response).await.ok();
            if response.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the gateway did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Opens `connections` idle WebSockets to a fresh `matchgate up` and reports the gateway's
/// resident memory per connection.
pub async fn idle(connections: usize, exe: Option<PathBuf>) -> anyhow::Result<()> {
    if !(1..=MAX_IDLE_CONNECTIONS).contains(&connections) {
        bail!("--connections must be 1..={MAX_IDLE_CONNECTIONS} (open-file limit)");
    }
    let exe = match exe {
        Some(exe) => exe,
        None => std::env::current_exe()?,
    };
    let port = free_port()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["up", "--auth", "none", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting matchgate up")?;
    let pid = child.id().context("no pid")?;
    wait_healthy(port).await?;
    // Warm up: one connection, so lazily initialised state is not billed to the first N.
    let (warm, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/local?playerId=warmup")).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(connections);
    for n in 0..connections {
        let url = format!("ws://127.0.0.1:{port}/local?playerId=idle-{n}");
        let (socket, _) = tokio_tungstenite::connect_async(url).await.with_context(|| format!("connection {n}"))?;
        sockets.push(socket);
    }
    let connect_time = started.elapsed();
    // Prove every connection is live (a ping each), then let the gateway settle.
    for socket in &mut sockets {
        socket.send(tokio_tungstenite::tungstenite::Message::text(r#"{"action":"ping"}"#)).await?;
    }
    for socket in &mut sockets {
        socket.next().await.context("pong")??;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid)?;
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    println!("| connections | gateway RSS before | after | per idle connection | connect rate |");
    println!("|---|---|---|---|---|");
    println!(
        "| {connections} | {before} KiB | {after} KiB | {:.1} KiB | {:.0}/s |",
        per_connection / 1024.0,
        connections as f64 / connect_time.as_secs_f64()
    );
    drop(sockets);
    drop(warm);
    child.kill().await.ok();
    Ok(())
}

/// Times matchmaking cycles over synthetic pools.
pub fn flexmatch(pools: &[usize]) -> anyhow::Result<()> {
    const NOW: u64 = 10_000_000;
    println!("| rule set | pool (tickets) | cycle time | matches | players matched | matches/s |");
    println!("|---|---|---|---|---|---|");
    let skill = RuleSet::parse(&skill_latency_rule_set(5))?;
    let balanced = RuleSet::parse(&balanced_rule_set())?;
    let mut cases: Vec<(&str, &RuleSet, usize)> =
        pools.iter().map(|&n| ("5v5 skill batchDistance + latency", &skill, n)).collect();
    cases.push(("200-player balanced", &balanced, 2_000));
    for (name, rule_set, size) in cases {
        let pool = synthetic_pool(7, size, NOW, 30_000);
        let started = Instant::now();
        let matches = rule_set.find_matches(&pool, NOW);
        let elapsed = started.elapsed();
        let players: usize = matches.iter().flat_map(|m| &m.teams).map(|t| t.player_ids.len()).sum();
        println!(
            "| {name} | {size} | {:.1} ms | {} | {players} | {:.0} |",
            elapsed.as_secs_f64() * 1000.0,
            matches.len(),
            matches.len() as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// The rule set of `bench e2e`: the default one's rules with teams of exactly two. The default
/// rule set's teams take one or two players, so a cycle that finds three tickets forms a match of
/// three; when the matchmakes arrive spread out (a busy machine), one ticket can be left with no
/// partner until it times out, and the bench would measure the request timeout. Fixed-size
/// matches of four leave nobody over when the number of players is a multiple of four.
const E2E_RULE_SET: &str = r#"{
  "name": "bench-2v2",
  "ruleLanguageVersion": "1.0",
  "playerAttributes": [{"name": "skill", "type": "number", "default": 10}],
  "teams": [
    {"name": "red", "minPlayers": 2, "maxPlayers": 2},
    {"name": "blue", "minPlayers": 2, "maxPlayers": 2}
  ],
  "rules": [
    {"name": "FairSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 10},
    {"name": "FastConnection", "type": "latency", "maxLatency": 150}
  ]
}"#;
/// Players in one match of [`E2E_RULE_SET`].
const E2E_MATCH_SIZE: usize = 4;

/// Connects `players` clients to an in-process stack, has them all matchmake at once, and
/// reports request → `MatchmakingSucceeded` latency.
pub async fn e2e(players: usize) -> anyhow::Result<()> {
    use crate::stack::{Stack, StackConfig};
    if !(E2E_MATCH_SIZE..=MAX_IDLE_CONNECTIONS).contains(&players) || !players.is_multiple_of(E2E_MATCH_SIZE) {
        bail!("--players must be a multiple of {E2E_MATCH_SIZE} in {E2E_MATCH_SIZE}..={MAX_IDLE_CONNECTIONS}");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = StackConfig { rule_set_body: E2E_RULE_SET.to_owned(), ..StackConfig::default() };
    let stack = Stack::start(config, listener).await?;
    let mut sockets = Vec::with_capacity(players);
    for n in 0..players {
        let url = format!("{}?playerId=bench-{n}", stack.websocket_url());
        sockets.push(tokio_tungstenite::connect_async(url).await?.0);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(players);
    for mut socket in sockets {
        tasks.push(tokio::spawn(async move {
            let request = r#"{"action":"matchmake","latencyInMs":{"us-east-1":30,"us-west-2":80}}"#;
            let asked = Instant::now();
            socket.send(tokio_tungstenite::tungstenite::Message::text(request)).await?;
            while let Some(frame) = socket.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(text) = frame?
                    && text.contains("\"MatchmakingSucceeded\"")
                {
                    return Ok::<Duration, anyhow::Error>(asked.elapsed());
                }
            }
            bail!("closed before a match")
        }));
    }
    let mut latencies = Vec::with_capacity(players);
    for task in tasks {
        latencies.push(tokio::time::timeout(Duration::from_secs(120), task).await???);
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("| players | p50 | p95 | max | all matched in | players matched/s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {players} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} s | {:.0} |",
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.95).as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
        total.as_secs_f64(),
        players as f64 / total.as_secs_f64()
    );
    stack.shutdown().await;
    Ok(())
}
