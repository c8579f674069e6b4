//! `matchgate bench connections` and `matchgate bench push`: load on a WebSocket API, either a
//! fresh local `matchgate up` this bench starts (embedded, or `--lambdas` with DynamoDB Local) or
//! a running one (`--url ws://...` or `wss://...`, with `--query token=...` for its authorizer).
//!
//! - `connections`: opens N connections with a bounded number of handshakes in flight; connect
//!   rate, handshake p50/p99, refusals, the local gateway's resident memory per connection; then
//!   closes them all and, for a local stack, counts the `$disconnect` invocations that failed.
//! - `push`: ping → `Pong` round trips, and for a local stack `@connections` POST → frame, at 1
//!   and at 32 in flight.
//!
//! Sockets can be spread over several loopback source addresses (`--source-addresses`), each good
//! for about 28,000 sockets to one port; the open-file limit (20,000 here) is per process, so
//! past it run one bench per process, each with its own `--first-client`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{MAX_IDLE_CONNECTIONS, Percentiles, Table, free_port, rss_kib, wait_healthy};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where the load goes.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadTarget {
    /// A running WebSocket API with its stage, e.g. ws://127.0.0.1:8080/local or
    /// wss://ID.execute-api.REGION.amazonaws.com/prod. Default: a fresh local
    /// `matchgate up --auth none`, started and stopped by the bench.
    #[arg(long)]
    pub url: Option<String>,
    /// The connect query of client N (`{n}` is replaced by N): `playerId=bench-{n}` for a local
    /// stack, e.g. `token=...` for a deployed one.
    #[arg(long, default_value = "playerId=bench-{n}")]
    pub query: String,
    /// The number of the first client (to run several bench processes side by side).
    #[arg(long, default_value_t = 0)]
    pub first_client: usize,
    /// Local stack: run the Lambda binaries from DIR (`matchgate up --lambdas DIR`).
    #[arg(long, requires = "dynamodb_endpoint")]
    pub lambdas: Option<PathBuf>,
    /// Local stack: DynamoDB Local's endpoint, for `--lambdas`.
    #[arg(long)]
    pub dynamodb_endpoint: Option<String>,
    /// Local stack: one more argument for `matchgate up` (repeatable), e.g.
    /// `--up-arg=--account-concurrency=32`.
    #[arg(long, allow_hyphen_values = true)]
    pub up_arg: Vec<String>,
    /// Spread the client sockets over this many loopback source addresses (127.0.0.1, .2, ...).
    #[arg(long, default_value_t = 1)]
    pub source_addresses: u8,
    /// Print JSON rows instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
}

/// The stack under load: its URLs and, when the bench started it, its process and log.
#[derive(Debug)]
struct Stack {
    websocket: String,
    /// `http://HOST:PORT/STAGE` for `@connections`, local stacks only.
    management: Option<String>,
    child: Option<tokio::process::Child>,
    log: Option<PathBuf>,
}

impl Stack {
    async fn start(target: &LoadTarget) -> anyhow::Result<Self> {
        if let Some(url) = &target.url {
            return Ok(Self {
                websocket: url.trim_end_matches('/').to_owned(),
                management: None,
                child: None,
                log: None,
            });
        }
        let port = free_port()?;
        let exe = std::env::current_exe()?;
        let log = std::env::temp_dir().join(format!("matchgate-bench-{}-{port}.log", std::process::id()));
        let file = std::fs::File::create(&log)?;
        let mut command = tokio::process::Command::new(exe);
        command.args(["up", "--auth", "none", "--port", &port.to_string()]);
        // The per-connection rate limit (10 messages a second by default) would measure itself.
        command.args(["--message-rate", "1000000", "--message-burst", "1000000"]);
        if let Some(dir) = &target.lambdas {
            command.arg("--lambdas").arg(dir);
            command.args(["--table-prefix", &format!("bench{}-{port}-", std::process::id())]);
        }
        if let Some(endpoint) = &target.dynamodb_endpoint {
            command.args(["--dynamodb-endpoint", endpoint]);
        }
        command.args(&target.up_arg);
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .context("starting matchgate up")?;
        wait_healthy(port).await?;
        Ok(Self {
            websocket: format!("ws://127.0.0.1:{port}/local"),
            management: Some(format!("http://127.0.0.1:{port}/local")),
            child: Some(child),
            log: Some(log),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// Lines of the local stack's log that contain `needle`.
    fn log_lines(&self, needle: &str) -> Option<usize> {
        let log = std::fs::read_to_string(self.log.as_ref()?).ok()?;
        Some(log.lines().filter(|l| l.contains(needle)).count())
    }

    async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill().await;
        }
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Client `n`'s connect URL.
fn client_url(stack: &Stack, target: &LoadTarget, n: usize) -> String {
    format!("{}?{}", stack.websocket, target.query.replace("{n}", &(target.first_client + n).to_string()))
}

/// The loopback source address of client `n`.
fn source(target: &LoadTarget, n: usize) -> Option<IpAddr> {
    (target.source_addresses > 1)
        .then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % usize::from(target.source_addresses)) as u8)))
}

/// Opens one WebSocket (TLS for `wss://`) from `source`; the handshake's duration.
async fn connect(url: &str, source: Option<IpAddr>) -> anyhow::Result<(Socket, Duration)> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().context("no host in the URL")?;
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let started = Instant::now();
    let stream = match source {
        Some(source) => {
            let addr = tokio::net::lookup_host((host, port)).await?.next().context("no address")?;
            let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect((host, port)).await?,
    };
    stream.set_nodelay(true)?;
    let (socket, _) = tokio_tungstenite::client_async_tls(url, stream).await?;
    Ok((socket, started.elapsed()))
}

fn progress(len: usize, what: &'static str, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what);
    bar
}

/// Waits until `ping` on `socket` is answered with its `Pong`; the round trip.
async fn ping(socket: &mut Socket) -> anyhow::Result<Duration> {
    let started = Instant::now();
    socket.send(Message::text(r#"{"action":"ping"}"#)).await?;
    loop {
        match socket.next().await.context("closed")?? {
            Message::Text(text) if text.contains("\"Pong\"") => return Ok(started.elapsed()),
            Message::Text(text) if text.contains("\"message\"") => bail!("the API answered {text}"),
            _ => {}
        }
    }
}

/// Opens `connections` connections with `in_flight` handshakes at a time and reports what it
/// cost; then closes them and counts failed `$disconnect`s (local stacks).
pub async fn connections(connections: usize, in_flight: usize, target: LoadTarget) -> anyhow::Result<()> {
    if !(1..=MAX_IDLE_CONNECTIONS).contains(&connections) || in_flight == 0 {
        bail!("--connections must be 1..={MAX_IDLE_CONNECTIONS} per process and --in-flight at least 1");
    }
    let stack = Stack::start(&target).await?;
    // Warm up: the first connection pays for lazily initialised state (and a cold start).
    let (mut warm, _) = connect(&client_url(&stack, &target, usize::MAX / 2), None).await?;
    ping(&mut warm).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stack.pid().map(rss_kib).transpose()?;
    let bar = progress(connections, "connecting", target.json);
    let started = Instant::now();
    let urls: Vec<(String, Option<IpAddr>)> =
        (0..connections).map(|n| (client_url(&stack, &target, n), source(&target, n))).collect();
    let results: Vec<anyhow::Result<(Socket, Duration)>> = futures_util::stream::iter(urls)
        .map(|(url, source)| {
            let bar = bar.clone();
            async move {
                let result = connect(&url, source).await;
                bar.inc(1);
                result
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut sockets = Vec::with_capacity(connections);
    let mut handshakes = Vec::with_capacity(connections);
    let mut refused = 0usize;
    let mut first_refusal = None;
    for result in results {
        match result {
            Ok((socket, handshake)) => {
                sockets.push(socket);
                handshakes.push(handshake);
            }
            Err(e) => {
                refused += 1;
                first_refusal.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if let Some(why) = &first_refusal {
        tracing::warn!(refused, "connections refused, the first: {why}");
    }
    // Every connection is live: a ping each, a few at a time.
    let bar = progress(sockets.len(), "pinging", target.json);
    let live: Vec<bool> = futures_util::stream::iter(sockets.iter_mut())
        .map(|socket| {
            let bar = bar.clone();
            async move {
                let ok = tokio::time::timeout(Duration::from_secs(30), ping(socket)).await.is_ok_and(|r| r.is_ok());
                bar.inc(1);
                ok
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    bar.finish_and_clear();
    let live = live.into_iter().filter(|ok| *ok).count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = stack.pid().map(rss_kib).transpose()?;
    let per_connection = before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64 / handshakes.len().max(1) as f64);
    // Everyone leaves at once: each close is a `$disconnect` invocation.
    let opened = sockets.len();
    let closes = futures_util::stream::iter(sockets).for_each_concurrent(in_flight, |mut socket| async move {
        let _ = socket.close(None).await;
    });
    closes.await;
    drop(warm);
    let failed_disconnects = settle_disconnects(&stack).await;
    let handshakes = Percentiles::new(handshakes);
    let mut table = Table::new(&[
        "connections",
        "handshakes in flight",
        "opened",
        "refused",
        "live (ping)",
        "connects/s",
        "handshake p50",
        "handshake p99",
        "gateway RSS per connection",
        "$disconnect failed",
    ]);
    table.row(vec![
        connections.into(),
        in_flight.into(),
        opened.into(),
        refused.into(),
        live.into(),
        format!("{:.0}", opened as f64 / elapsed.as_secs_f64()).into(),
        handshakes.ms(0.5).into(),
        handshakes.ms(0.99).into(),
        per_connection.map_or("n/a (remote)".into(), |kib| format!("{kib:.1} KiB")).into(),
        failed_disconnects.map_or("n/a (remote)".into(), |n| n.to_string()).into(),
    ]);
    table.print(target.json);
    stack.stop().await;
    Ok(())
}

/// Waits for the local stack's `$disconnect` invocations to finish (its log stops growing) and
/// counts those that failed; `None` for a remote stack.
async fn settle_disconnects(stack: &Stack) -> Option<usize> {
    let log = stack.log.as_ref()?;
    let mut size = 0;
    let mut quiet = 0;
    // At most 5 minutes: every waiting `$disconnect` has run or failed long before.
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        quiet = if now == size { quiet + 1 } else { 0 };
        size = now;
        if quiet >= 5 {
            break;
        }
    }
    stack.log_lines("$disconnect failed")
}

/// Round trips at each of `in_flight`: ping → `Pong`, and for a local stack `@connections` POST →
/// the frame on the socket; `messages` per measurement.
pub async fn push(in_flight: &[usize], messages: usize, target: LoadTarget) -> anyhow::Result<()> {
    if in_flight.is_empty() || in_flight.iter().any(|n| !(1..=1000).contains(n)) || messages == 0 {
        bail!("--in-flight takes 1..=1000 per entry and --messages at least 1");
    }
    let stack = Stack::start(&target).await?;
    let mut table = Table::new(&["measure", "in flight", "messages", "per second", "p50", "p99", "max"]);
    let client = http_client();
    for &n in in_flight {
        let mut sockets = Vec::with_capacity(n);
        for c in 0..n {
            let (mut socket, _) = connect(&client_url(&stack, &target, c), source(&target, c)).await?;
            ping(&mut socket).await?; // warm: a cold start is not a round trip
            sockets.push(socket);
        }
        let per_socket = messages.div_ceil(n);
        let (rate, samples) = run_pings(&mut sockets, per_socket, target.json).await?;
        add_row(&mut table, "ping → Pong", n, &samples, rate);
        if let Some(management) = &stack.management {
            let (rate, samples) = run_posts(&client, management, &mut sockets, per_socket, target.json).await?;
            add_row(&mut table, "@connections POST → frame", n, &samples, rate);
        }
        for mut socket in sockets {
            let _ = socket.close(None).await;
        }
    }
    table.print(target.json);
    stack.stop().await;
    Ok(())
}

fn add_row(table: &mut Table, measure: &str, in_flight: usize, samples: &Percentiles, rate: f64) {
    table.row(vec![
        measure.into(),
        in_flight.into(),
        samples.0.len().into(),
        format!("{rate:.0}").into(),
        format!("{:.3} ms", samples.at(0.5).as_secs_f64() * 1000.0).into(),
        format!("{:.3} ms", samples.at(0.99).as_secs_f64() * 1000.0).into(),
        format!("{:.3} ms", samples.at(1.0).as_secs_f64() * 1000.0).into(),
    ]);
}

/// Each socket pings `per_socket` times, one after another; all sockets at once.
async fn run_pings(sockets: &mut [Socket], per_socket: usize, json: bool) -> anyhow::Result<(f64, Percentiles)> {
    let bar = progress(sockets.len() * per_socket, "ping", json);
    let started = Instant::now();
    let rounds = futures_util::future::try_join_all(sockets.iter_mut().map(|socket| {
        let bar = bar.clone();
        async move {
            let mut samples = Vec::with_capacity(per_socket);
            for _ in 0..per_socket {
                samples.push(ping(socket).await?);
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>(samples)
        }
    }))
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let samples: Vec<Duration> = rounds.into_iter().flatten().collect();
    Ok((samples.len() as f64 / elapsed.as_secs_f64(), Percentiles::new(samples)))
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Each socket learns its connection ID (from `Pong`), then `per_socket` times the bench POSTs
/// to `@connections/{id}` and waits for the frame on the socket.
async fn run_posts(
    client: &HttpClient,
    management: &str,
    sockets: &mut [Socket],
    per_socket: usize,
    json: bool,
) -> anyhow::Result<(f64, Percentiles)> {
    let mut ids = Vec::with_capacity(sockets.len());
    for socket in sockets.iter_mut() {
        socket.send(Message::text(r#"{"action":"ping"}"#)).await?;
        let id = loop {
            if let Message::Text(text) = socket.next().await.context("closed")??
                && let Ok(pong) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(id) = pong["connectionId"].as_str()
            {
                break id.to_owned();
            }
        };
        ids.push(id);
    }
    let bar = progress(sockets.len() * per_socket, "@connections", json);
    let started = Instant::now();
    let client = Arc::new(client.clone());
    let rounds = futures_util::future::try_join_all(sockets.iter_mut().zip(ids).map(|(socket, id)| {
        let bar = bar.clone();
        let client = Arc::clone(&client);
        let url = format!("{management}/@connections/{id}");
        async move {
            let mut samples = Vec::with_capacity(per_socket);
            for _ in 0..per_socket {
                let sent = Instant::now();
                let request = http::Request::post(&url)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"type":"Bench"}"#)))?;
                let status = client.request(request).await?.status();
                if !status.is_success() {
                    bail!("@connections answered {status}");
                }
                loop {
                    if let Message::Text(text) = socket.next().await.context("closed")??
                        && text.contains("\"Bench\"")
                    {
                        break;
                    }
                }
                samples.push(sent.elapsed());
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>(samples)
        }
    }))
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let samples: Vec<Duration> = rounds.into_iter().flatten().collect();
    Ok((samples.len() as f64 / elapsed.as_secs_f64(), Percentiles::new(samples)))
}
