//! Running the real Lambda binaries locally, two ways:
//!
//! - [`LambdaHost`] (`matchgate up --lambdas DIR`): each function's binary runs as a child
//!   process against a Lambda Runtime API (`/2018-06-01/runtime/invocation/next`, `.../response`,
//!   `.../error`) that this module serves, one loopback port per function, exactly as the
//!   binary talks to Lambda in AWS. A crashed or stuck function is reported, restarted, and
//!   cannot hang the gateway. One process runs one invocation at a time, as one Lambda execution
//!   environment does: an invocation waits in its function's queue (at most
//!   [`FunctionSettings::queue_wait`], then its caller gets a timeout error and the process is
//!   left alone), and its deadline ([`FunctionSettings::timeout`], the template's `Timeout`)
//!   starts when the process takes it from `.../invocation/next`. Only a process that overruns
//!   the deadline of an invocation it took, or that never asks for one within [`INIT_TIMEOUT`],
//!   is stopped and restarted; each start is a new generation, so a stop meant for one process
//!   can never reach the next. A process that ends in its init fails the invocations waiting.
//! - [`InvokeApi`] (`matchgate up --lambda-endpoint URL`): functions are invoked over the Lambda
//!   Invoke API (`POST /2015-03-31/functions/{name}/invocations`), as `cargo lambda watch` and
//!   the Runtime Interface Emulator serve it.
//!
//! Both are an [`Integration`], so the WebSocket emulator cannot tell them from in-process
//! handlers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashmap::DashMap;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::apigw::{Integration, IntegrationError};

/// How long one invocation may run, from the moment its process takes it, before it is
/// abandoned and its process restarted, for a function the template does not give a `Timeout`
/// (the template's `Globals` give 10 s).
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an invocation waits for its function's process to be free before its caller gets a
/// timeout error (API Gateway gives up on an integration after 29 s).
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(29);
/// Lambda's limit on a function's init: a process that has not asked for an invocation this long
/// after it started is stopped and restarted.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Invocations queued per function before new ones are refused (API Gateway would throttle).
pub const MAX_QUEUED_INVOCATIONS: usize = 1024;
/// Backoff between restarts of a function that keeps exiting.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Which function serves which integration target: route keys, `events`, `backstop` and the
/// `$connect` authorizer ([`AUTHORIZER_TARGET`](crate::apigw::AUTHORIZER_TARGET)), as in
/// `infra/template.yaml`.
pub fn default_function_map() -> BTreeMap<String, String> {
    [
        ("$connect", "mg-connect"),
        ("$disconnect", "mg-disconnect"),
        ("matchmake", "mg-matchmake"),
        ("cancel", "mg-cancel"),
        ("accept", "mg-accept"),
        ("status", "mg-status"),
        ("ping", "mg-ping"),
        ("$default", "mg-ping"),
        ("events", "mg-events"),
        ("backstop", "mg-backstop"),
        (crate::apigw::AUTHORIZER_TARGET, "mg-authorizer"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// How one function runs: what the template gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    /// The function's environment; the variables the Lambda runtime sets are added to it.
    pub environment: BTreeMap<String, String>,
    /// How long one invocation may run once the process has taken it (the function's `Timeout`).
    pub timeout: Duration,
    /// How long an invocation may wait for the process to be free.
    pub queue_wait: Duration,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        Self { environment: BTreeMap::new(), timeout: DEFAULT_FUNCTION_TIMEOUT, queue_wait: DEFAULT_QUEUE_WAIT }
    }
}

type Reply = oneshot::Sender<Result<Value, IntegrationError>>;

struct Invocation {
    request_id: String,
    event: Value,
    /// Told the generation of the process that takes the invocation; closed by a caller that
    /// stopped waiting, so that the invocation is never run.
    started: oneshot::Sender<u64>,
    reply: Reply,
}

/// The invocations waiting for the process.
struct Queue {
    waiting: mpsc::Receiver<Invocation>,
    /// One taken by a poll from a process that has been replaced since, for the next poll.
    held: Option<Invocation>,
}

/// One function: its queue, its Runtime API, its process.
struct Function {
    name: String,
    queue: mpsc::Sender<Invocation>,
    next: Mutex<Queue>,
    /// Invocations handed to the process and not answered yet.
    in_flight: DashMap<String, Reply>,
    /// The generation of the running process, odd: 1 for the first, 3 for the next, ...; even
    /// while no process runs (between an exit and the restart).
    generation: AtomicU64,
    /// The newest generation to stop (it overran an invocation's deadline). Only ever grows, so a
    /// stop meant for an older process cannot reach a newer one.
    stop: watch::Sender<u64>,
    /// The newest generation that asked for an invocation, i.e. finished its init.
    ready: watch::Sender<u64>,
    settings: FunctionSettings,
    /// Invocations a process of this function has taken from `.../invocation/next`.
    taken: AtomicU64,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Raises `value` to `generation`; false (nothing to tell) when it is there already.
fn raise(value: &mut u64, generation: u64) -> bool {
    let newer = generation > *value;
    if newer {
        *value = generation;
    }
    newer
}

impl Function {
    /// Stops process `generation` if it is still running; a no-op for one that is gone.
    fn stop(&self, generation: u64) {
        self.stop.send_if_modified(|stop| raise(stop, generation));
    }

    /// Fails every invocation waiting for the process, as Lambda fails the invocations whose
    /// execution environment crashed or timed out in its init.
    fn fail_waiting(&self, why: &str) {
        // Locked only by a poll of a process that is gone: what it holds goes to the next process.
        let Ok(mut queue) = self.next.try_lock() else { return };
        let held = queue.held.take();
        let waiting = std::iter::from_fn(|| queue.waiting.try_recv().ok());
        for Invocation { reply, started, .. } in held.into_iter().chain(waiting).collect::<Vec<_>>() {
            let _ = reply.send(Err(IntegrationError::Unavailable(format!("{}: {why}", self.name))));
            // After the reply: the caller, seeing `started` dropped, reads it.
            drop(started);
        }
    }

    fn fail_in_flight(&self, why: &str) {
        let ids: Vec<String> = self.in_flight.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            if let Some((_, reply)) = self.in_flight.remove(&id) {
                let _ = reply.send(Err(IntegrationError::Unavailable(format!("{}: {why}", self.name))));
            }
        }
    }
}

/// The built Lambda binaries, run as child processes behind a local Runtime API.
#[derive(Debug)]
pub struct LambdaHost {
    functions: HashMap<String, Arc<Function>>,
    targets: BTreeMap<String, String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LambdaHost {
    /// Starts every function of `targets` from `dir` (e.g. `target/debug`), each with its
    /// `settings` (by function name; [`FunctionSettings::default`] for one not there), plus the
    /// variables the Lambda runtime itself sets.
    pub async fn start(
        dir: &Path,
        targets: BTreeMap<String, String>,
        settings: &BTreeMap<String, FunctionSettings>,
    ) -> Result<Self, std::io::Error> {
        let mut functions = HashMap::new();
        let mut tasks = Vec::new();
        let mut names: Vec<&String> = targets.values().collect();
        names.sort();
        names.dedup();
        for name in names {
            let binary = dir.join(name);
            if !binary.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no Lambda binary {} (build it with `cargo build -p matchgate-lambdas --bins`)",
                        binary.display()
                    ),
                ));
            }
            let (queue, waiting) = mpsc::channel(MAX_QUEUED_INVOCATIONS);
            let settings = settings.get(name).cloned().unwrap_or_default();
            let mut env = settings.environment.clone();
            let function = Arc::new(Function {
                name: name.clone(),
                queue,
                next: Mutex::new(Queue { waiting, held: None }),
                in_flight: DashMap::new(),
                generation: AtomicU64::new(0),
                stop: watch::Sender::new(0),
                ready: watch::Sender::new(0),
                settings,
                taken: AtomicU64::new(0),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let runtime_api = listener.local_addr()?.to_string();
            let app = runtime_api_routes(Arc::clone(&function));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            env.insert("AWS_LAMBDA_RUNTIME_API".into(), runtime_api);
            env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone());
            env.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
            env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "128".into());
            tasks.push(tokio::spawn(supervise(Arc::clone(&function), binary, env)));
            functions.insert(name.clone(), function);
        }
        Ok(Self { functions, targets, tasks })
    }

    /// How many invocations the processes of function `name` have taken (from
    /// `/2018-06-01/runtime/invocation/next`); `None` for a function this host does not run.
    pub fn invocations(&self, name: &str) -> Option<u64> {
        self.functions.get(name).map(|f| f.taken.load(Ordering::SeqCst))
    }

    /// Stops every function process.
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a function's process, restarting it whenever it exits or is stopped for overrunning.
async fn supervise(function: Arc<Function>, binary: PathBuf, env: BTreeMap<String, String>) {
    let mut backoff = RESTART_BACKOFF.0;
    let mut stop = function.stop.subscribe();
    let mut ready = function.ready.subscribe();
    loop {
        // A new generation before the process exists: its polls and its stops carry this number.
        let generation = function.generation.fetch_add(1, Ordering::SeqCst) + 1;
        debug_assert!(generation % 2 == 1);
        let child = tokio::process::Command::new(&binary)
            .envs(&env)
            // Only the dummy credentials the stack gives: never the developer's own.
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(function = function.name, error = %e, "cannot start the function");
                function.generation.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(RESTART_BACKOFF.1).await;
                continue;
            }
        };
        let started = tokio::time::Instant::now();
        let why = tokio::select! {
            status = child.wait() => format!("exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
            () = stopped(&mut stop, generation) => {
                let _ = child.kill().await;
                "was stopped after an invocation overran its timeout".to_owned()
            }
            () = init_overrun(&mut ready, generation) => {
                let _ = child.kill().await;
                format!("did not ask for an invocation within {INIT_TIMEOUT:?} of starting")
            }
        };
        // No process until the restart: a poll still on its way from the one that ended is refused.
        function.generation.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(function = function.name, "the function {why}; restarting it");
        function.fail_in_flight(&why);
        if *function.ready.borrow() < generation {
            // It never took an invocation (its init failed): those waiting for it fail.
            function.fail_waiting(&format!("{why} during its init"));
        }
        // A process that ran for a while gets restarted at once; one that dies on start backs off.
        backoff = if started.elapsed() > RESTART_BACKOFF.1 {
            RESTART_BACKOFF.0
        } else {
            (backoff * 2).min(RESTART_BACKOFF.1)
        };
        tokio::time::sleep(backoff).await;
    }
}

/// Completes when process `generation` is to be stopped.
async fn stopped(stop: &mut watch::Receiver<u64>, generation: u64) {
    // The sender lives as long as the function: an error cannot happen while this runs.
    let _ = stop.wait_for(|stop| *stop >= generation).await;
}

/// Completes when process `generation` has not asked for an invocation within [`INIT_TIMEOUT`].
async fn init_overrun(ready: &mut watch::Receiver<u64>, generation: u64) {
    let asked = tokio::time::timeout(INIT_TIMEOUT, ready.wait_for(|ready| *ready >= generation)).await;
    if matches!(asked.map(|r| r.is_ok()), Ok(true)) {
        std::future::pending::<()>().await;
    }
}

fn runtime_api_routes(function: Arc<Function>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(function)
}

/// Long-polls for the next invocation, as Lambda's Runtime API does. The invocation's deadline
/// starts here, when the process takes it.
async fn next_invocation(State(function): State<Arc<Function>>) -> Response {
    // Only the running process polls: this poll is its generation, and it finished its init.
    let generation = function.generation.load(Ordering::SeqCst);
    if generation % 2 == 0 {
        return StatusCode::GONE.into_response();
    }
    function.ready.send_if_modified(|ready| raise(ready, generation));
    let (request_id, event, deadline_ms) = {
        let mut queue = function.next.lock().await;
        loop {
            let invocation = match queue.held.take() {
                Some(invocation) => invocation,
                None => match queue.waiting.recv().await {
                    Some(invocation) => invocation,
                    None => return StatusCode::GONE.into_response(),
                },
            };
            if function.generation.load(Ordering::SeqCst) != generation {
                // The process that polled has been replaced while it waited: the invocation is
                // for the next one.
                queue.held = Some(invocation);
                return StatusCode::GONE.into_response();
            }
            let Invocation { request_id, event, started, reply } = invocation;
            let deadline_ms = crate::now_ms() + function.settings.timeout.as_millis() as i64;
            // A caller that gave up (it waited too long in the queue) is not run: the client was
            // told the request failed.
            if reply.is_closed() || started.send(generation).is_err() {
                continue;
            }
            function.in_flight.insert(request_id.clone(), reply);
            function.taken.fetch_add(1, Ordering::SeqCst);
            break (request_id, event, deadline_ms);
        }
    };
    let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{}", function.name);
    let body = event.to_string();
    let headers = [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        ("lambda-runtime-trace-id", format!("Root=1-{}", uuid::Uuid::new_v4().simple())),
    ];
    let mut response = (StatusCode::OK, body).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn invocation_response(
    State(function): State<Arc<Function>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let Some((_, reply)) = function.in_flight.remove(&id) else { return StatusCode::BAD_REQUEST };
    let value = if body.is_empty() { Ok(Value::Null) } else { serde_json::from_slice(&body) };
    let _ = reply.send(value.map_err(|e| IntegrationError::FunctionError(format!("the response is not JSON: {e}"))));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(function): State<Arc<Function>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let Some((_, reply)) = function.in_flight.remove(&id) else { return StatusCode::BAD_REQUEST };
    let _ = reply.send(Err(IntegrationError::FunctionError(String::from_utf8_lossy(&body).into_owned())));
    StatusCode::ACCEPTED
}

async fn init_error(State(function): State<Arc<Function>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let kind = headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    tracing::error!(function = function.name, kind, body = %String::from_utf8_lossy(&body), "the function failed to initialise");
    StatusCode::ACCEPTED
}

#[async_trait]
impl Integration for LambdaHost {
    async fn invoke(&self, target: &str, event: Value) -> Result<Value, IntegrationError> {
        let name = self
            .targets
            .get(target)
            .ok_or_else(|| IntegrationError::Unavailable(format!("no function serves {target}")))?;
        let function =
            self.functions.get(name).ok_or_else(|| IntegrationError::Unavailable(format!("{name} is not running")))?;
        let (reply, mut answer) = oneshot::channel();
        let (started, mut taken) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        function
            .queue
            .try_send(Invocation { request_id: request_id.clone(), event, started, reply })
            .map_err(|_| IntegrationError::Unavailable(format!("{name}: too many invocations queued")))?;
        let settings = &function.settings;
        // In the queue, no deadline runs: the process is busy with earlier invocations or starting.
        let generation = match tokio::time::timeout(settings.queue_wait, &mut taken).await {
            Ok(Ok(generation)) => generation,
            // Failed without running (its process's init failed), or dropped.
            Ok(Err(_)) => {
                return answer
                    .try_recv()
                    .unwrap_or_else(|_| Err(IntegrationError::Unavailable(format!("{name} dropped the invocation"))));
            }
            Err(_) => {
                // Waited longer than the caller is willing: withdrawn (unless the process took it
                // just now), and the process, busy or starting, is left alone.
                taken.close();
                taken.try_recv().map_err(|_| {
                    IntegrationError::Unavailable(format!(
                        "{name} timed out: the invocation waited {:?} for the function to be free",
                        settings.queue_wait
                    ))
                })?
            }
        };
        match tokio::time::timeout(settings.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IntegrationError::Unavailable(format!("{name} dropped the invocation"))),
            Err(_) => {
                // Still running past its deadline: the process that took it is restarted. Its
                // generation, not "the current process", is stopped, so a process started since
                // is never hit.
                if function.in_flight.remove(&request_id).is_some() {
                    function.stop(generation);
                }
                Err(IntegrationError::Unavailable(format!("{name} timed out after {:?}", settings.timeout)))
            }
        }
    }
}

/// Functions behind the Lambda Invoke API at `endpoint` (e.g. `cargo lambda watch`'s
/// `http://127.0.0.1:9000`).
#[derive(Debug)]
pub struct InvokeApi {
    endpoint: String,
    targets: BTreeMap<String, String>,
    timeout: Duration,
    /// Functions with a timeout of their own (the template's `Timeout`), by name.
    timeouts: BTreeMap<String, Duration>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl InvokeApi {
    pub fn new(endpoint: &str, targets: BTreeMap<String, String>, timeout: Duration) -> Self {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            targets,
            timeout,
            timeouts: BTreeMap::new(),
            client,
        }
    }

    /// Gives these functions (by name) their own timeouts instead of the common one.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: BTreeMap<String, Duration>) -> Self {
        self.timeouts = timeouts;
        self
    }
}

#[async_trait]
impl Integration for InvokeApi {
    async fn invoke(&self, target: &str, event: Value) -> Result<Value, IntegrationError> {
        let name = self
            .targets
            .get(target)
            .ok_or_else(|| IntegrationError::Unavailable(format!("no function serves {target}")))?;
        let request = http::Request::post(format!("{}/2015-03-31/functions/{name}/invocations", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event.to_string())))
            .map_err(|e| IntegrationError::Unavailable(e.to_string()))?;
        let call = async {
            let response =
                self.client.request(request).await.map_err(|e| IntegrationError::Unavailable(e.to_string()))?;
            let failed = response.headers().contains_key("x-amz-function-error");
            let status = response.status();
            let body =
                response.into_body().collect().await.map_err(|e| IntegrationError::Unavailable(e.to_string()))?;
            let body = body.to_bytes();
            if failed {
                return Err(IntegrationError::FunctionError(String::from_utf8_lossy(&body).into_owned()));
            }
            if !status.is_success() {
                return Err(IntegrationError::Unavailable(format!("{name}: HTTP {status}")));
            }
            if body.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(&body)
                .map_err(|e| IntegrationError::FunctionError(format!("the response is not JSON: {e}")))
        };
        let timeout = self.timeouts.get(name).copied().unwrap_or(self.timeout);
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(IntegrationError::Unavailable(format!("{name} timed out after {timeout:?}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every test function script starts with: the Runtime API client, and a line in
    /// `starts` for every process start.
    const PRELUDE: &str = r#"#!/usr/bin/env python3
import json, os, sys, time, urllib.request
api = os.environ['AWS_LAMBDA_RUNTIME_API']
here = os.path.dirname(os.path.abspath(sys.argv[0]))
def mark(name):
    with open(os.path.join(here, name), 'a') as f:
        f.write('x\n')
def next_invocation():
    with urllib.request.urlopen(f'http://{api}/2018-06-01/runtime/invocation/next') as r:
        return r.headers['lambda-runtime-aws-request-id'], json.loads(r.read())
def respond(request_id, value):
    url = f'http://{api}/2018-06-01/runtime/invocation/{request_id}/response'
    urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(value).encode(), method='POST')).read()
mark('starts')
"#;

    /// Starts function `mg-test` from `body` (Python after [`PRELUDE`]) in a directory of its own.
    async fn host(test: &str, body: &str, settings: FunctionSettings) -> (LambdaHost, PathBuf) {
        let dir = std::env::temp_dir().join(format!("matchgate-lambda-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let script = dir.join("mg-test");
        std::fs::write(&script, format!("{PRELUDE}{body}")).expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let targets = BTreeMap::from([("t".to_owned(), "mg-test".to_owned())]);
        let settings = BTreeMap::from([("mg-test".to_owned(), settings)]);
        (LambdaHost::start(&dir, targets, &settings).await.expect("host"), dir)
    }

    fn lines(dir: &Path, name: &str) -> usize {
        std::fs::read_to_string(dir.join(name)).map(|s| s.lines().count()).unwrap_or(0)
    }

    /// Guards a test against a hang (not a timing assertion: every step ends long before).
    async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), future).await.unwrap_or_else(|_| panic!("{what} hung"))
    }

    #[tokio::test]
    async fn an_invocation_queued_behind_a_stuck_one_runs_with_its_own_deadline_on_the_restarted_process() {
        // The first process hangs on its invocation; every later one answers.
        let body = r#"
first = not os.path.exists(os.path.join(here, 'hung'))
mark('hung')
while True:
    request_id, event = next_invocation()
    if first:
        time.sleep(3600)
    respond(request_id, {'echo': event})
"#;
        let timeout = Duration::from_millis(500);
        let (host, dir) = host("queued", body, FunctionSettings { timeout, ..FunctionSettings::default() }).await;
        // Both are queued at once: the second waits for the first to overrun, for the process to
        // be restarted, and only then does its own deadline start.
        let (stuck, queued) =
            bounded("two invocations", async { tokio::join!(host.invoke("t", json(1)), host.invoke("t", json(2))) })
                .await;
        let stuck = stuck.expect_err("the stuck invocation overruns").to_string();
        assert!(stuck.contains("timed out"), "{stuck}");
        assert_eq!(
            queued.expect("the queued invocation runs on the restarted process"),
            serde_json::json!({"echo": 2})
        );
        assert_eq!(bounded("a third", host.invoke("t", json(3))).await.expect("runs"), serde_json::json!({"echo": 3}));
        // One restart, for the one overrun: no stop reached the restarted process.
        assert_eq!(lines(&dir, "starts"), 2);
        host.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_process_still_starting_is_not_killed_by_the_invocations_waiting_for_it() {
        // A cold start longer than the function's timeout: the invocation waits for it.
        let body = r#"
time.sleep(1.5)
while True:
    request_id, event = next_invocation()
    respond(request_id, {'echo': event})
"#;
        let timeout = Duration::from_millis(300);
        let (host, dir) = host("cold", body, FunctionSettings { timeout, ..FunctionSettings::default() }).await;
        assert_eq!(
            bounded("a cold start", host.invoke("t", json(1))).await.expect("runs"),
            serde_json::json!({"echo": 1})
        );
        assert_eq!(lines(&dir, "starts"), 1, "the starting process was left alone");
        host.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_caller_that_waits_too_long_in_the_queue_times_out_and_the_process_carries_on() {
        // Each invocation records that it ran, then waits for the file its event names.
        let body = r#"
while True:
    request_id, event = next_invocation()
    mark(f"ran-{event['id']}")
    while event.get('gate') and not os.path.exists(event['gate']):
        time.sleep(0.02)
    respond(request_id, {'echo': event['id']})
"#;
        let settings = FunctionSettings {
            timeout: Duration::from_secs(120),
            queue_wait: Duration::from_millis(300),
            ..FunctionSettings::default()
        };
        let (host, dir) = host("busy", body, settings).await;
        let host = Arc::new(host);
        let gate = dir.join("gate");
        let busy = tokio::spawn({
            let host = Arc::clone(&host);
            let event = serde_json::json!({"id": "a", "gate": gate.to_string_lossy()});
            async move { host.invoke("t", event).await }
        });
        bounded("the first invocation to be taken", async {
            while lines(&dir, "ran-a") == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let refused = bounded("the queued one", host.invoke("t", serde_json::json!({"id": "b"}))).await;
        let refused = refused.expect_err("the process is busy for longer than the caller waits").to_string();
        assert!(refused.contains("waited"), "{refused}");
        std::fs::write(&gate, "").expect("open the gate");
        let done = bounded("the first invocation", busy).await.expect("task");
        assert_eq!(done.expect("the busy invocation completes"), serde_json::json!({"echo": "a"}));
        let next = bounded("a later one", host.invoke("t", serde_json::json!({"id": "c"}))).await;
        assert_eq!(next.expect("runs"), serde_json::json!({"echo": "c"}));
        assert_eq!(lines(&dir, "ran-b"), 0, "an invocation its caller gave up on never runs");
        assert_eq!(lines(&dir, "starts"), 1, "the busy process was not killed");
        host.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_function_that_crashes_in_its_init_fails_the_invocations_waiting_for_it() {
        let (host, dir) = host("crash", "sys.exit(3)\n", FunctionSettings::default()).await;
        // Whether the invocation arrives before the first crash or during a restart's backoff,
        // the next crash fails it, long before it could wait out its queue time.
        for id in 1..=2 {
            let failed = bounded("an invocation of a crashing function", host.invoke("t", json(id))).await;
            let failed = failed.expect_err("the function never runs").to_string();
            assert!(failed.contains("exited") && failed.contains("during its init"), "{failed}");
        }
        host.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn json(id: u32) -> Value {
        serde_json::json!(id)
    }
}
