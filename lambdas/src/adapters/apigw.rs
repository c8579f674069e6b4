//! The ConnectionPusher port over `aws-sdk-apigatewaymanagement`: PostToConnection at
//! `https://{api}.execute-api.{region}.amazonaws.com/{stage}`, the `https://{domainName}/{stage}`
//! of the API's own domain.
//!
//! The endpoint comes from `CONNECTIONS_ENDPOINT` (the template builds it from the API's ID and
//! stage), not from each request's `requestContext.domainName`: the events and backstop
//! functions have no request to read it from, and behind a custom domain `domainName` is that
//! domain, whose base path mapping may not name the stage.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;

use crate::ports::{ConnectionPusher, PushError};

/// How often a throttled (429) post is tried in all. API Gateway throttles per account and
/// per connection; a few quick retries ride out a burst, and after that the result waits on
/// its ticket for `status` rather than holding the Lambda.
pub const MAX_POST_ATTEMPTS: u32 = 4;
/// The first retry's wait; the standard retry mode doubles it with jitter.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct ManagementApiPusher {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApiPusher {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Self { client }
    }
}

/// A Management API client for `endpoint` (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`,
/// or the local stack's `http://127.0.0.1:PORT/{stage}`), with explicit timeouts and retries:
/// 429s are retried with backoff by the standard retry mode, which classifies API Gateway's
/// `LimitExceededException` as throttling.
pub fn client(sdk_config: &aws_config::SdkConfig, endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config)
        .endpoint_url(endpoint)
        .timeout_config(
            aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .retry_config(
            aws_sdk_apigatewaymanagement::config::retry::RetryConfig::standard()
                .with_max_attempts(MAX_POST_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF),
        )
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

fn map_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(e: SdkError<E, R>) -> PushError {
    match e.code() {
        Some("GoneException") => PushError::Gone,
        Some("PayloadTooLargeException") => PushError::PayloadTooLarge,
        Some("LimitExceededException") => PushError::Throttled,
        Some(code) => PushError::Other(format!("{code}: {}", e.message().unwrap_or_default())),
        None => PushError::Other(format!("{e}")),
    }
}

#[async_trait]
impl ConnectionPusher for ManagementApiPusher {
    async fn post_to_connection(&self, connection_id: &str, data: &[u8]) -> Result<(), PushError> {
        self.client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data))
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }
}
