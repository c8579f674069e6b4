//! Running the real Lambda binaries locally, two ways:
//!
//! - [`LambdaHost`] (`matchgate up --lambdas DIR`): each function's binary runs as a child
//!   process against a Lambda Runtime API (`/2018-06-01/runtime/invocation/next`, `.../response`,
//!   `.../error`) that this module serves, one loopback port per function, exactly as the
//!   binary talks to Lambda in AWS. A crashed or stuck function is reported, restarted, and
//!   cannot hang the gateway: every invocation has a deadline.
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
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::apigw::{Integration, IntegrationError};

/// How long one invocation may run before it is abandoned and its process restarted (API
/// Gateway itself gives up on an integration after 29 s).
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Invocations queued per function before new ones are refused (API Gateway would throttle).
pub const MAX_QUEUED_INVOCATIONS: usize = 1024;
/// Backoff between restarts of a function that keeps exiting.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Which function serves which integration target: route keys, `events` and `backstop`.
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
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

type Reply = oneshot::Sender<Result<Value, IntegrationError>>;

struct Invocation {
    request_id: String,
    event: Value,
    deadline_ms: i64,
    reply: Reply,
}

/// One function: its queue, its Runtime API, its process.
struct Function {
    name: String,
    queue: mpsc::Sender<Invocation>,
    next: Mutex<mpsc::Receiver<Invocation>>,
    /// Invocations handed to the process and not answered yet.
    in_flight: DashMap<String, Reply>,
    /// Signalled when an invocation overran its deadline: the process is killed and restarted.
    kill: Notify,
    timeout: Duration,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Function {
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
    /// Starts every function of `targets` from `dir` (e.g. `target/debug`), each with `env`
    /// plus the variables the Lambda runtime itself sets.
    pub async fn start(
        dir: &Path,
        targets: BTreeMap<String, String>,
        env: &BTreeMap<String, String>,
        timeout: Duration,
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
            let (queue, next) = mpsc::channel(MAX_QUEUED_INVOCATIONS);
            let function = Arc::new(Function {
                name: name.clone(),
                queue,
                next: Mutex::new(next),
                in_flight: DashMap::new(),
                kill: Notify::new(),
                timeout,
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let runtime_api = listener.local_addr()?.to_string();
            let app = runtime_api_routes(Arc::clone(&function));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            let mut env = env.clone();
            env.insert("AWS_LAMBDA_RUNTIME_API".into(), runtime_api);
            env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone());
            env.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
            env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "128".into());
            tasks.push(tokio::spawn(supervise(Arc::clone(&function), binary, env)));
            functions.insert(name.clone(), function);
        }
        Ok(Self { functions, targets, tasks })
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

/// Runs a function's process, restarting it whenever it exits or is killed for overrunning.
async fn supervise(function: Arc<Function>, binary: PathBuf, env: BTreeMap<String, String>) {
    let mut backoff = RESTART_BACKOFF.0;
    loop {
        let child = tokio::process::Command::new(&binary).envs(&env).stdin(Stdio::null()).kill_on_drop(true).spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(function = function.name, error = %e, "cannot start the function");
                tokio::time::sleep(RESTART_BACKOFF.1).await;
                continue;
            }
        };
        let started = tokio::time::Instant::now();
        let why = tokio::select! {
            status = child.wait() => format!("exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
            () = function.kill.notified() => {
                let _ = child.kill().await;
                "was stopped after overrunning its timeout".to_owned()
            }
        };
        tracing::warn!(function = function.name, "the function {why}; restarting it");
        function.fail_in_flight(&why);
        // A process that ran for a while gets restarted at once; one that dies on start backs off.
        backoff = if started.elapsed() > RESTART_BACKOFF.1 {
            RESTART_BACKOFF.0
        } else {
            (backoff * 2).min(RESTART_BACKOFF.1)
        };
        tokio::time::sleep(backoff).await;
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

/// Long-polls for the next invocation, as Lambda's Runtime API does.
async fn next_invocation(State(function): State<Arc<Function>>) -> Response {
    let invocation = {
        let mut next = function.next.lock().await;
        loop {
            match next.recv().await {
                // The caller already gave up (its deadline passed while the function was busy or
                // restarting): running it now would act on a request the client was told failed.
                Some(i) if i.reply.is_closed() || i.deadline_ms <= crate::now_ms() => continue,
                other => break other,
            }
        }
    };
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{}", function.name);
    let body = invocation.event.to_string();
    let headers = [
        ("lambda-runtime-aws-request-id", invocation.request_id.clone()),
        ("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        ("lambda-runtime-trace-id", format!("Root=1-{}", uuid::Uuid::new_v4().simple())),
    ];
    function.in_flight.insert(invocation.request_id, invocation.reply);
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
        let (reply, answer) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        let deadline_ms = crate::now_ms() + function.timeout.as_millis() as i64;
        function
            .queue
            .try_send(Invocation { request_id: request_id.clone(), event, deadline_ms, reply })
            .map_err(|_| IntegrationError::Unavailable(format!("{name}: too many invocations queued")))?;
        match tokio::time::timeout(function.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IntegrationError::Unavailable(format!("{name} dropped the invocation"))),
            Err(_) => {
                // Running past its deadline, or never picked up by a process that is running
                // nothing (stuck in its init): either way the process is restarted.
                let overran = function.in_flight.remove(&request_id).is_some();
                if overran || function.in_flight.is_empty() {
                    function.kill.notify_one();
                }
                Err(IntegrationError::Unavailable(format!("{name} timed out after {:?}", function.timeout)))
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
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl InvokeApi {
    pub fn new(endpoint: &str, targets: BTreeMap<String, String>, timeout: Duration) -> Self {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self { endpoint: endpoint.trim_end_matches('/').to_owned(), targets, timeout, client }
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
        tokio::time::timeout(self.timeout, call).await.unwrap_or_else(|_| {
            Err(IntegrationError::Unavailable(format!("{name} timed out after {:?}", self.timeout)))
        })
    }
}
