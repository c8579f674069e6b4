//! The Lambda Invoke API client: functions run elsewhere (`cargo lambda watch`, the Runtime
//! Interface Emulator) and are invoked over `POST /2015-03-31/functions/{name}/invocations`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::waits_for_capacity;
use crate::apigw::{Integration, IntegrationError};

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

/// How long an invocation that waits for capacity ([`waits_for_capacity`]) keeps retrying a
/// throttled function before it is reported failed; and the backoff between tries.
const THROTTLE_RETRY: Duration = Duration::from_secs(300);
const THROTTLE_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

impl InvokeApi {
    /// One `Invoke` call, bounded by the function's timeout.
    async fn call(&self, name: &str, event: &Value) -> Result<Value, IntegrationError> {
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
            if status == http::StatusCode::TOO_MANY_REQUESTS {
                // Lambda's TooManyRequestsException: the function is at its concurrency limit.
                return Err(IntegrationError::Throttled(format!(
                    "{name}: HTTP 429 {}",
                    String::from_utf8_lossy(&body)
                )));
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

#[async_trait]
impl Integration for InvokeApi {
    async fn invoke(&self, target: &str, event: Value) -> Result<Value, IntegrationError> {
        let name = self
            .targets
            .get(target)
            .ok_or_else(|| IntegrationError::Unavailable(format!("no function serves {target}")))?;
        if !waits_for_capacity(target) {
            // A client's request: a throttle is its answer, as API Gateway gives it.
            return self.call(name, &event).await;
        }
        // `$disconnect` and the asynchronous sources retry a throttled function, as Lambda's
        // asynchronous invocation does, rather than be lost to its capacity.
        let give_up = tokio::time::Instant::now() + THROTTLE_RETRY;
        let mut backoff = THROTTLE_BACKOFF.0;
        loop {
            match self.call(name, &event).await {
                Err(IntegrationError::Throttled(why)) if tokio::time::Instant::now() < give_up => {
                    tracing::debug!(function = name, why, "throttled; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(THROTTLE_BACKOFF.1);
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::*;

    /// An Invoke API that throttles the first `throttled` calls, then answers `{"ok":true}`;
    /// the calls it got.
    async fn endpoint(throttled: usize) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/2015-03-31/functions/{name}/invocations",
            post(move || {
                let calls = Arc::clone(&seen);
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) < throttled {
                        let body = r#"{"Type":"User","message":"Rate Exceeded."}"#;
                        (StatusCode::TOO_MANY_REQUESTS, [("x-amzn-errortype", "TooManyRequestsException")], body)
                            .into_response()
                    } else {
                        axum::Json(serde_json::json!({"ok": true})).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), calls)
    }

    fn api(endpoint: &str) -> InvokeApi {
        let targets = [("ping", "mg-ping"), ("$disconnect", "mg-disconnect")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        InvokeApi::new(endpoint, targets, Duration::from_secs(30))
    }

    #[tokio::test]
    async fn a_throttled_request_is_a_throttle_and_is_not_retried() {
        let (endpoint, calls) = endpoint(1).await;
        let answer = api(&endpoint).invoke("ping", serde_json::json!({})).await;
        assert!(matches!(answer, Err(IntegrationError::Throttled(ref m)) if m.contains("Rate Exceeded")), "{answer:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_throttled_disconnect_is_retried_until_it_runs() {
        let (endpoint, calls) = endpoint(3).await;
        let answer = api(&endpoint).invoke("$disconnect", serde_json::json!({})).await;
        assert_eq!(answer.expect("runs once the function has room"), serde_json::json!({"ok": true}));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
