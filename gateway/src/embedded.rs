//! The embedded mode: route and event handlers run in-process over in-memory adapters, with
//! exactly the event JSON a Lambda would receive.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::sns::SnsEvent;
use matchgate_lambdas::Deps;
use matchgate_lambdas::ports::{ConnectionPusher, PushError};
use matchgate_lambdas::{handlers, routes};
use serde_json::Value;

use crate::apigw::{Integration, IntegrationError, PostError, Registry};
use crate::gamelift::sns::EVENTS_TARGET;

/// The integration target of the scheduled backstop.
pub const BACKSTOP_TARGET: &str = "backstop";

/// Invokes the handlers in this process: a WebSocket route through the one route table
/// (`matchgate_lambdas::routes`), as the deployed functions do.
#[derive(Debug)]
pub struct EmbeddedLambdas {
    pub deps: Deps,
}

#[async_trait]
impl Integration for EmbeddedLambdas {
    async fn invoke(&self, target: &str, event: Value) -> Result<Value, IntegrationError> {
        let bad = |e: serde_json::Error| IntegrationError::FunctionError(format!("event does not parse: {e}"));
        if target == BACKSTOP_TARGET {
            let report =
                handlers::backstop(&self.deps).await.map_err(|e| IntegrationError::FunctionError(e.to_string()))?;
            return Ok(
                serde_json::json!({"polled": report.polled, "advanced": report.advanced, "stopped": report.stopped}),
            );
        }
        if target == EVENTS_TARGET {
            let event: SnsEvent = serde_json::from_value(event).map_err(bad)?;
            handlers::events(event, &self.deps).await.map_err(|e| IntegrationError::FunctionError(e.to_string()))?;
            return Ok(Value::Null);
        }
        let request: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event).map_err(bad)?;
        let response =
            routes::dispatch(request, &self.deps).await.map_err(|e| IntegrationError::FunctionError(e.to_string()))?;
        serde_json::to_value(response).map_err(|e| IntegrationError::FunctionError(e.to_string()))
    }
}

/// PostToConnection straight into the emulator's connections, with @connections' semantics.
#[derive(Debug)]
pub struct RegistryPusher {
    pub registry: Arc<Registry>,
    pub max_message_bytes: usize,
}

#[async_trait]
impl ConnectionPusher for RegistryPusher {
    async fn post_to_connection(&self, connection_id: &str, data: &[u8]) -> Result<(), PushError> {
        self.registry.post(connection_id, data, self.max_message_bytes).map_err(|e| match e {
            PostError::Gone => PushError::Gone,
            PostError::PayloadTooLarge => PushError::PayloadTooLarge,
            PostError::Throttled => PushError::Throttled,
        })
    }
}
