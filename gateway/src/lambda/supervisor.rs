//! The instance supervisor: a function's execution environments, as child processes.
//!
//! An invocation first takes its share of the function's concurrency ([`Capacity`]): past the
//! limit a client's request is throttled, while `$disconnect` and the asynchronous sources wait
//! (see [`super::waits_for_capacity`]). Holding it, the invocation joins the function's queue;
//! when more invocations wait than instances are free (starting or polling), one more instance
//! starts: a cold start, logged with its init duration and counted. Each instance polls the
//! Runtime API on a port of its own, takes one invocation at a time, and its deadline
//! ([`FunctionSettings::timeout`]) starts when it takes it. An instance that overruns a deadline
//! or does not poll within [`INIT_TIMEOUT`] of starting is stopped, one that exits is gone, one
//! idle for [`Concurrency::idle_timeout`] is reaped unless an invocation waits for it; a
//! replacement starts only when invocations wait. An instance that ends in its init fails the
//! invocations waiting (as Lambda fails the invocation whose environment failed to start), and
//! the function's next start backs off.
//!
//! The supervisor is written here rather than taken from a crate: it is the part of Lambda's
//! service this emulator exists to reproduce (the Runtime API contract, its deadlines, scaling).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::runtime_api::runtime_api_routes;
use super::{Concurrency, FunctionSettings, INIT_TIMEOUT, RESTART_BACKOFF, waits_for_capacity};
use crate::apigw::{Integration, IntegrationError};

pub(crate) type Reply = oneshot::Sender<Result<Value, IntegrationError>>;

pub(crate) struct Invocation {
    pub(crate) request_id: String,
    pub(crate) event: Value,
    /// Told the instance that takes the invocation; closed by a caller that stopped waiting, so
    /// that the invocation is never run.
    pub(crate) started: oneshot::Sender<u64>,
    pub(crate) reply: Reply,
}

/// The invocations waiting for an instance.
pub(crate) struct Queue {
    waiting: mpsc::UnboundedReceiver<Invocation>,
    /// One taken by a poll of an instance that ended meanwhile, for the next poll.
    held: Option<Invocation>,
}

/// What an instance is doing, for the scaling decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Started, or polling: it will take the next invocation.
    Free,
    /// Running an invocation.
    Busy,
}

/// The instances of a function and the invocations queued for them, under one lock so that a
/// start, a take and a reap see the same numbers.
#[derive(Debug, Default)]
struct Pool {
    /// Invocations in the queue (some may have been withdrawn by their callers meanwhile).
    waiting: usize,
    instances: HashMap<u64, Slot>,
    next_id: u64,
    /// Instances in a row that ended in their init: the next start backs off.
    init_failures: u32,
}

impl Pool {
    fn free(&self) -> usize {
        self.instances.values().filter(|s| **s == Slot::Free).count()
    }
}

/// A function's share of the account's concurrency: its own reservation, or its per-function
/// cap within the unreserved pool all such functions share.
#[derive(Debug)]
struct Capacity {
    function: Arc<Semaphore>,
    /// The account's unreserved concurrency; `None` for a function with reserved concurrency.
    unreserved: Option<Arc<Semaphore>>,
    limit: usize,
}

/// What an invocation holds while it waits and runs.
#[derive(Debug)]
#[allow(dead_code)] // Held for their drop only.
struct Permits(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

impl Capacity {
    fn try_acquire(&self) -> Option<Permits> {
        let own = Arc::clone(&self.function).try_acquire_owned().ok()?;
        let shared = match &self.unreserved {
            Some(pool) => Some(Arc::clone(pool).try_acquire_owned().ok()?),
            None => None,
        };
        Some(Permits(own, shared))
    }

    async fn acquire(&self) -> Permits {
        // The semaphores are never closed.
        let own = Arc::clone(&self.function).acquire_owned().await.expect("never closed");
        let shared = match &self.unreserved {
            Some(pool) => Some(Arc::clone(pool).acquire_owned().await.expect("never closed")),
            None => None,
        };
        Permits(own, shared)
    }
}

/// One function: its binary, its queue, its instances.
pub(crate) struct Function {
    pub(crate) name: String,
    binary: PathBuf,
    environment: BTreeMap<String, String>,
    pub(crate) settings: FunctionSettings,
    idle_timeout: Duration,
    capacity: Capacity,
    queue: mpsc::UnboundedSender<Invocation>,
    next: Mutex<Queue>,
    pool: SyncMutex<Pool>,
    /// The running instances, to stop one by its id.
    instances: DashMap<u64, Arc<Instance>>,
    /// Invocations handed to an instance and not answered yet: the instance, the reply.
    pub(crate) in_flight: DashMap<String, (u64, Reply)>,
    /// Invocations an instance has taken from `.../invocation/next`.
    pub(crate) taken: AtomicU64,
    cold_starts: AtomicU64,
    throttles: AtomicU64,
    /// Every instance's init duration (process start to its first poll), in start order.
    inits: SyncMutex<Vec<Duration>>,
    initialised: Notify,
    tasks: DashMap<u64, tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("name", &self.name).finish_non_exhaustive()
    }
}

/// One execution environment: a child process and the Runtime API it polls.
pub(crate) struct Instance {
    pub(crate) id: u64,
    pub(crate) function: Arc<Function>,
    /// Why the instance is to end (stopped, reaped); `None` while it runs.
    end: watch::Sender<Option<String>>,
    spawned: Instant,
    ready: AtomicBool,
}

impl Instance {
    /// Ends the instance (its process is killed); the first reason given is the one reported.
    pub(crate) fn end(&self, why: &str) {
        self.end.send_if_modified(|end| {
            let first = end.is_none();
            if first {
                *end = Some(why.to_owned());
            }
            first
        });
    }

    /// Completes once the instance is to end.
    pub(crate) async fn ending(&self) {
        let mut end = self.end.subscribe();
        // The sender lives as long as the instance.
        let _ = end.wait_for(Option::is_some).await;
    }

    /// The instance's first poll: its init is over. Reported as Lambda reports a cold start.
    pub(crate) fn mark_ready(&self) {
        if self.ready.swap(true, Ordering::SeqCst) {
            return;
        }
        let init = self.spawned.elapsed();
        let function = &self.function;
        function.cold_starts.fetch_add(1, Ordering::SeqCst);
        function.inits.lock().expect("inits").push(init);
        function.pool.lock().expect("pool").init_failures = 0;
        function.initialised.notify_waiters();
        tracing::info!(
            function = function.name,
            instance = self.id,
            init_ms = init.as_secs_f64() * 1000.0,
            "cold start: a new instance finished its init"
        );
    }

    /// Waits for the next invocation for this instance, as a long poll; `None` when the instance
    /// ends first (stopped, or reaped after [`Concurrency::idle_timeout`] with nothing to do).
    pub(crate) async fn next(&self) -> Option<(String, Value)> {
        let function = &self.function;
        loop {
            tokio::select! {
                taken = self.take() => return taken,
                () = self.ending() => return None,
                () = tokio::time::sleep(function.idle_timeout) => {
                    if function.reap(self.id) {
                        self.end("was idle");
                        return None;
                    }
                }
            }
        }
    }

    async fn take(&self) -> Option<(String, Value)> {
        let function = &self.function;
        let mut queue = function.next.lock().await;
        loop {
            let invocation = match queue.held.take() {
                Some(invocation) => invocation,
                None => queue.waiting.recv().await?,
            };
            let mut pool = function.pool.lock().expect("pool");
            pool.waiting = pool.waiting.saturating_sub(1);
            if !pool.instances.contains_key(&self.id) || self.end.borrow().is_some() {
                // This instance ended while it waited: the invocation is for another one.
                pool.waiting += 1;
                queue.held = Some(invocation);
                return None;
            }
            let Invocation { request_id, event, started, reply } = invocation;
            // A caller that gave up (it waited too long) is not run: the client was told the
            // request failed.
            if reply.is_closed() || started.send(self.id).is_err() {
                continue;
            }
            pool.instances.insert(self.id, Slot::Busy);
            function.in_flight.insert(request_id.clone(), (self.id, reply));
            function.taken.fetch_add(1, Ordering::SeqCst);
            return Some((request_id, event));
        }
    }
}

impl Function {
    /// Queues an invocation, starting one more instance when more invocations wait than
    /// instances are free and the function is under its limit.
    fn enqueue(self: &Arc<Self>, invocation: Invocation) {
        let mut pool = self.pool.lock().expect("pool");
        pool.waiting += 1;
        // The receiver lives as long as the function.
        let _ = self.queue.send(invocation);
        self.scale(&mut pool);
    }

    /// Starts instances while invocations wait for one and the function is under its limit.
    fn scale(self: &Arc<Self>, pool: &mut Pool) {
        while pool.waiting > pool.free() && pool.instances.len() < self.capacity.limit {
            self.start_instance(pool);
        }
    }

    /// Starts one more instance (backing off after failed inits).
    fn start_instance(self: &Arc<Self>, pool: &mut Pool) {
        let id = pool.next_id;
        pool.next_id += 1;
        pool.instances.insert(id, Slot::Free);
        let backoff = match pool.init_failures {
            0 => Duration::ZERO,
            n => (RESTART_BACKOFF.0 * 2u32.saturating_pow(n - 1)).min(RESTART_BACKOFF.1),
        };
        let task = tokio::spawn(run_instance(Arc::clone(self), id, backoff));
        self.tasks.insert(id, task.abort_handle());
    }

    /// Removes idle instance `id` unless the invocations waiting need it.
    fn reap(&self, id: u64) -> bool {
        let mut pool = self.pool.lock().expect("pool");
        let spare = pool.free() > pool.waiting;
        if spare && pool.instances.get(&id) == Some(&Slot::Free) {
            pool.instances.remove(&id);
            return true;
        }
        false
    }

    /// The instance that ran an invocation answered it: it is free for the next.
    pub(crate) fn answered(&self, request_id: &str) -> Option<Reply> {
        let (_, (instance, reply)) = self.in_flight.remove(request_id)?;
        if let Some(slot) = self.pool.lock().expect("pool").instances.get_mut(&instance) {
            *slot = Slot::Free;
        }
        Some(reply)
    }

    /// Instance `id` has ended: what it ran fails, and if it never finished its init, so do the
    /// invocations waiting (unless another instance is polling for them).
    fn instance_gone(self: &Arc<Self>, id: u64, ready: bool, why: &str) {
        self.instances.remove(&id);
        self.tasks.remove(&id);
        let ids: Vec<String> = self.in_flight.iter().filter(|e| e.value().0 == id).map(|e| e.key().clone()).collect();
        for request_id in ids {
            if let Some((_, (_, reply))) = self.in_flight.remove(&request_id) {
                let _ = reply.send(Err(IntegrationError::Unavailable(format!("{}: {why}", self.name))));
            }
        }
        if !ready {
            self.pool.lock().expect("pool").init_failures += 1;
            self.fail_waiting(&format!("{why} during its init"));
        }
        let mut pool = self.pool.lock().expect("pool");
        pool.instances.remove(&id);
        // A replacement, if invocations still wait.
        self.scale(&mut pool);
    }

    /// Fails every invocation waiting, as Lambda fails the invocations whose execution
    /// environment crashed or timed out in its init.
    fn fail_waiting(&self, why: &str) {
        // Locked by a live instance's poll: it takes what waits, nothing to fail.
        let Ok(mut queue) = self.next.try_lock() else { return };
        let held = queue.held.take();
        let waiting: Vec<Invocation> =
            held.into_iter().chain(std::iter::from_fn(|| queue.waiting.try_recv().ok())).collect();
        let mut pool = self.pool.lock().expect("pool");
        pool.waiting = pool.waiting.saturating_sub(waiting.len());
        drop(pool);
        for Invocation { reply, started, .. } in waiting {
            let _ = reply.send(Err(IntegrationError::Unavailable(format!("{}: {why}", self.name))));
            // After the reply: the caller, seeing `started` dropped, reads it.
            drop(started);
        }
    }

    /// Stops instance `id` if it is still running; a no-op for one that is gone.
    fn stop(&self, id: u64, why: &str) {
        if let Some(instance) = self.instances.get(&id) {
            instance.end(why);
        }
    }
}

/// Runs one instance: its Runtime API and its process, until the process exits or the instance
/// is ended.
async fn run_instance(function: Arc<Function>, id: u64, backoff: Duration) {
    tokio::time::sleep(backoff).await;
    let (end, _) = watch::channel(None);
    let instance =
        Arc::new(Instance { id, function: Arc::clone(&function), end, spawned: Instant::now(), ready: false.into() });
    function.instances.insert(id, Arc::clone(&instance));
    let why = match serve_instance(&instance).await {
        Ok(why) => why,
        Err(e) => format!("could not start: {e}"),
    };
    let ready = instance.ready.load(Ordering::SeqCst);
    if why != "was idle" {
        tracing::warn!(function = function.name, instance = id, "an instance of the function {why}");
    } else {
        tracing::debug!(function = function.name, instance = id, "an idle instance was reaped");
    }
    function.instance_gone(id, ready, &why);
}

async fn serve_instance(instance: &Arc<Instance>) -> std::io::Result<String> {
    let function = &instance.function;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let app = runtime_api_routes(Arc::clone(instance));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let child = tokio::process::Command::new(&function.binary)
        .envs(&function.environment)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        // Only the dummy credentials the stack gives: never the developer's own.
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            server.abort();
            return Err(e);
        }
    };
    let why = tokio::select! {
        status = child.wait() => format!("exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
        () = instance.ending() => {
            let _ = child.kill().await;
            instance.end.borrow().clone().unwrap_or_default()
        }
        () = init_overrun(instance) => {
            let _ = child.kill().await;
            format!("did not ask for an invocation within {INIT_TIMEOUT:?} of starting")
        }
    };
    instance.end(&why);
    server.abort();
    Ok(why)
}

/// Completes when the instance has not asked for an invocation within [`INIT_TIMEOUT`].
async fn init_overrun(instance: &Instance) {
    tokio::time::sleep(INIT_TIMEOUT).await;
    if instance.ready.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
}

/// The built Lambda binaries, run as child processes behind local Runtime APIs.
#[derive(Debug)]
pub struct LambdaHost {
    functions: HashMap<String, Arc<Function>>,
    targets: BTreeMap<String, String>,
}

impl LambdaHost {
    /// Readies every function of `targets` from `dir` (e.g. `target/debug`), each with its
    /// `settings` (by function name; [`FunctionSettings::default`] for one not there), plus the
    /// variables the Lambda runtime itself sets. No instance runs until an invocation needs one.
    pub async fn start(
        dir: &Path,
        targets: BTreeMap<String, String>,
        settings: &BTreeMap<String, FunctionSettings>,
        concurrency: Concurrency,
    ) -> Result<Self, std::io::Error> {
        let mut names: Vec<&String> = targets.values().collect();
        names.sort();
        names.dedup();
        let reserved: usize =
            names.iter().filter_map(|name| settings.get(*name).and_then(|s| s.reserved_concurrency)).sum();
        let Some(unreserved) = concurrency.account.checked_sub(reserved) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the functions reserve {reserved} concurrent executions, more than the account's {}",
                    concurrency.account
                ),
            ));
        };
        let unreserved = Arc::new(Semaphore::new(unreserved));
        let mut functions = HashMap::new();
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
            let settings = settings.get(name).cloned().unwrap_or_default();
            let capacity = match settings.reserved_concurrency {
                Some(limit) => Capacity { function: Arc::new(Semaphore::new(limit)), unreserved: None, limit },
                None => {
                    let limit = concurrency.function.min(concurrency.account);
                    Capacity {
                        function: Arc::new(Semaphore::new(limit)),
                        unreserved: Some(Arc::clone(&unreserved)),
                        limit,
                    }
                }
            };
            let mut environment = settings.environment.clone();
            environment.insert("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone());
            environment.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
            environment.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "128".into());
            let (queue, waiting) = mpsc::unbounded_channel();
            let function = Arc::new(Function {
                name: name.clone(),
                binary,
                environment,
                settings,
                idle_timeout: concurrency.idle_timeout,
                capacity,
                queue,
                next: Mutex::new(Queue { waiting, held: None }),
                pool: SyncMutex::new(Pool::default()),
                instances: DashMap::new(),
                in_flight: DashMap::new(),
                taken: AtomicU64::new(0),
                cold_starts: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                inits: SyncMutex::new(Vec::new()),
                initialised: Notify::new(),
                tasks: DashMap::new(),
            });
            functions.insert(name.clone(), function);
        }
        Ok(Self { functions, targets })
    }

    fn function(&self, name: &str) -> Option<&Arc<Function>> {
        self.functions.get(name)
    }

    /// How many invocations the instances of function `name` have taken (from
    /// `/2018-06-01/runtime/invocation/next`); `None` for a function this host does not run.
    pub fn invocations(&self, name: &str) -> Option<u64> {
        self.function(name).map(|f| f.taken.load(Ordering::SeqCst))
    }

    /// How many instances of function `name` run now (starting, idle or busy).
    pub fn instances(&self, name: &str) -> Option<usize> {
        self.function(name).map(|f| f.pool.lock().expect("pool").instances.len())
    }

    /// How many invocations of function `name` are queued for an instance (withdrawn ones
    /// included until an instance skips them).
    pub fn queued(&self, name: &str) -> Option<usize> {
        self.function(name).map(|f| f.pool.lock().expect("pool").waiting)
    }

    /// How many instances of function `name` have finished a cold start (their init).
    pub fn cold_starts(&self, name: &str) -> Option<u64> {
        self.function(name).map(|f| f.cold_starts.load(Ordering::SeqCst))
    }

    /// How many invocations of function `name` were throttled (at its concurrency limit).
    pub fn throttles(&self, name: &str) -> Option<u64> {
        self.function(name).map(|f| f.throttles.load(Ordering::SeqCst))
    }

    /// The init durations (process start to first poll) of function `name`'s instances so far.
    pub fn init_durations(&self, name: &str) -> Option<Vec<Duration>> {
        self.function(name).map(|f| f.inits.lock().expect("inits").clone())
    }

    /// Starts one more instance of function `name` with no invocation for it and waits for its
    /// init to finish (a cold start, as a provisioned-concurrency instance has); its init time.
    pub async fn warm(&self, name: &str) -> Result<Duration, IntegrationError> {
        let function =
            self.function(name).ok_or_else(|| IntegrationError::Unavailable(format!("no function {name}")))?;
        let before = function.inits.lock().expect("inits").len();
        let initialised = function.initialised.notified();
        tokio::pin!(initialised);
        initialised.as_mut().enable();
        {
            let mut pool = function.pool.lock().expect("pool");
            if pool.instances.len() >= function.capacity.limit {
                return Err(IntegrationError::Throttled(format!("{name} is at its concurrency limit")));
            }
            function.start_instance(&mut pool);
        }
        let deadline = Instant::now() + INIT_TIMEOUT;
        loop {
            if let Some(init) = function.inits.lock().expect("inits").get(before) {
                return Ok(*init);
            }
            if tokio::time::timeout_at(deadline, initialised.as_mut()).await.is_err() {
                return Err(IntegrationError::Unavailable(format!("{name} did not finish its init")));
            }
            initialised.set(function.initialised.notified());
            initialised.as_mut().enable();
        }
    }

    /// Stops every instance of every function.
    pub fn shutdown(&self) {
        for function in self.functions.values() {
            for task in function.tasks.iter() {
                task.value().abort();
            }
            function.tasks.clear();
        }
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        self.shutdown();
    }
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
        // The invocation's share of the function's concurrency, held until it is answered.
        let _permits = if waits_for_capacity(target) {
            function.capacity.acquire().await
        } else {
            function.capacity.try_acquire().ok_or_else(|| {
                function.throttles.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(function = name, limit = function.capacity.limit, "throttled: at the concurrency limit");
                IntegrationError::Throttled(format!("{name}: TooManyRequestsException: Rate Exceeded."))
            })?
        };
        let (reply, mut answer) = oneshot::channel();
        let (started, mut taken) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        function.enqueue(Invocation { request_id: request_id.clone(), event, started, reply });
        let settings = &function.settings;
        // Waiting for an instance (one starting), no deadline runs yet.
        let instance = match tokio::time::timeout(settings.queue_wait, &mut taken).await {
            Ok(Ok(instance)) => instance,
            // Failed without running (an instance's init failed), or dropped.
            Ok(Err(_)) => {
                return answer
                    .try_recv()
                    .unwrap_or_else(|_| Err(IntegrationError::Unavailable(format!("{name} dropped the invocation"))));
            }
            Err(_) => {
                // Waited longer than the caller is willing: withdrawn (unless an instance took it
                // just now), and the instances, busy or starting, are left alone.
                taken.close();
                taken.try_recv().map_err(|_| {
                    IntegrationError::Unavailable(format!(
                        "{name} timed out: the invocation waited {:?} for an instance",
                        settings.queue_wait
                    ))
                })?
            }
        };
        match tokio::time::timeout(settings.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IntegrationError::Unavailable(format!("{name} dropped the invocation"))),
            Err(_) => {
                // Still running past its deadline: the instance that took it is stopped (by its
                // id, so no other instance is ever hit) and replaced if invocations wait.
                if function.in_flight.remove(&request_id).is_some() {
                    function.stop(instance, "was stopped after an invocation overran its timeout");
                }
                Err(IntegrationError::Unavailable(format!("{name} timed out after {:?}", settings.timeout)))
            }
        }
    }
}
