//! Running the real Lambda binaries locally, two ways:
//!
//! - [`LambdaHost`] (`matchgate up --lambdas DIR`): each function's binary runs as child
//!   processes, Lambda's execution environments, each against a Lambda Runtime API
//!   (`/2018-06-01/runtime/invocation/next`, `.../response`, `.../error`) that this module
//!   serves on a loopback port of its own, exactly as the binary talks to Lambda in AWS. A
//!   function scales like Lambda (see [`supervisor`]): one instance runs one invocation at a
//!   time; when invocations wait, more instances start (each start a cold start, logged and
//!   counted) up to the function's concurrency ([`Concurrency`]: its
//!   `ReservedConcurrentExecutions`, else the per-function and account-wide limits); warm
//!   instances are reused and idle ones reaped. Past the limit a client's invocation is
//!   throttled at once ([`IntegrationError::Throttled`](crate::apigw::IntegrationError), which
//!   API Gateway turns into its `Internal server error`), while `$disconnect`, FlexMatch events
//!   and the backstop ([`waits_for_capacity`]) wait for an instance instead, as Lambda's
//!   asynchronous invocations do. A crashed or stuck instance is reported and replaced, and
//!   cannot hang the gateway.
//! - [`InvokeApi`] (`matchgate up --lambda-endpoint URL`): functions are invoked over the Lambda
//!   Invoke API (`POST /2015-03-31/functions/{name}/invocations`), as `cargo lambda watch` and
//!   the Runtime Interface Emulator serve it; its `429 TooManyRequestsException` is a throttle.
//!
//! Both are an [`Integration`](crate::apigw::Integration), so the WebSocket emulator cannot tell
//! them from in-process handlers.
mod invoke_api;
mod runtime_api;
pub mod supervisor;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use invoke_api::InvokeApi;
pub use supervisor::LambdaHost;

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
/// How many invocations may run at once across all functions when `--account-concurrency` does
/// not say (AWS's default is 1,000 per account and Region; each instance here is a process on
/// one machine).
pub const DEFAULT_ACCOUNT_CONCURRENCY: usize = 64;
/// How long an instance may sit idle, polling with nothing to run, before it is reaped (Lambda
/// keeps idle execution environments for minutes, then freezes and reclaims them).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Backoff between restarts of a function that keeps exiting.
pub(crate) const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Which function serves which integration target: route keys, `events`, `backstop` and the
/// `$connect` authorizer ([`AUTHORIZER_TARGET`](crate::apigw::AUTHORIZER_TARGET)), as in
/// `infra/template.yaml`.
pub fn default_function_map() -> BTreeMap<String, String> {
    use matchgate_lambdas::routes;
    routes::ROUTES
        .iter()
        .map(|route| (route.key, route.function))
        .chain([
            (crate::gamelift::sns::EVENTS_TARGET, routes::EVENTS_FUNCTION),
            (crate::embedded::BACKSTOP_TARGET, routes::BACKSTOP_FUNCTION),
            (crate::apigw::AUTHORIZER_TARGET, routes::AUTHORIZER_FUNCTION),
        ])
        .map(|(target, function)| (target.to_owned(), function.to_owned()))
        .collect()
}

/// How one function runs: what the template gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    /// The function's environment; the variables the Lambda runtime sets are added to it.
    pub environment: BTreeMap<String, String>,
    /// How long one invocation may run once the process has taken it (the function's `Timeout`).
    pub timeout: Duration,
    /// How long an invocation may wait for an instance to take it (a cold start) once it holds
    /// its share of the function's concurrency.
    pub queue_wait: Duration,
    /// The template's `ReservedConcurrentExecutions`: the function's own share of the account's
    /// concurrency, and its limit. `None`: it shares the unreserved rest, up to
    /// [`Concurrency::function`].
    pub reserved_concurrency: Option<usize>,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        Self {
            environment: BTreeMap::new(),
            timeout: DEFAULT_FUNCTION_TIMEOUT,
            queue_wait: DEFAULT_QUEUE_WAIT,
            reserved_concurrency: None,
        }
    }
}

/// How far the functions of a [`LambdaHost`] scale out, as Lambda's concurrency quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    /// Invocations running at once across every function (the account's concurrency). Functions
    /// with reserved concurrency take their share out of it; the others share the rest.
    pub account: usize,
    /// The most instances one function without reserved concurrency runs at once.
    pub function: usize,
    /// How long an idle instance is kept warm before it is reaped.
    pub idle_timeout: Duration,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            account: DEFAULT_ACCOUNT_CONCURRENCY,
            function: DEFAULT_ACCOUNT_CONCURRENCY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Whether invocations of integration `target` wait for capacity rather than being throttled:
/// `$disconnect` (it must never be lost to local capacity) and the asynchronously invoked
/// functions (SNS's FlexMatch events, the scheduled backstop), which Lambda queues and retries
/// when throttled. A client's request (`$connect`, the authorizer, a route) is throttled at once.
pub fn waits_for_capacity(target: &str) -> bool {
    target == "$disconnect"
        || target == crate::gamelift::sns::EVENTS_TARGET
        || target == crate::embedded::BACKSTOP_TARGET
}
