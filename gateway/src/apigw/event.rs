//! The events API Gateway sends to a WebSocket API's integrations, field for field, so the
//! handlers can read them as `aws_lambda_events` types and a Lambda binary cannot tell the
//! emulator from AWS.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value, json};

/// What every event of one connection shares.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub api_id: String,
    pub stage: String,
    /// `Host` of the upgrade request; AWS's is `{apiId}.execute-api.{region}.amazonaws.com`.
    pub domain_name: String,
    pub connection_id: String,
    pub source_ip: IpAddr,
    pub user_agent: Option<String>,
    /// Epoch milliseconds.
    pub connected_at: i64,
    /// The authorizer's context plus `principalId`, as API Gateway passes it to every route.
    pub authorizer: Map<String, Value>,
}

fn request_time(epoch_ms: i64) -> String {
    // API Gateway's CLF-style request time, e.g. `09/Feb/2024:18:11:43 +0000`.
    Utc.timestamp_millis_opt(epoch_ms).single().unwrap_or_default().format("%d/%b/%Y:%H:%M:%S %z").to_string()
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl EventContext {
    fn request_context(&self, route_key: &str, event_type: &str, now_ms: i64) -> Map<String, Value> {
        let mut ctx = Map::new();
        ctx.insert("routeKey".into(), json!(route_key));
        ctx.insert("eventType".into(), json!(event_type));
        ctx.insert("extendedRequestId".into(), json!(id()));
        ctx.insert("requestTime".into(), json!(request_time(now_ms)));
        ctx.insert("messageDirection".into(), json!("IN"));
        ctx.insert("stage".into(), json!(self.stage));
        ctx.insert("connectedAt".into(), json!(self.connected_at));
        ctx.insert("requestTimeEpoch".into(), json!(now_ms));
        let mut identity = Map::new();
        identity.insert("sourceIp".into(), json!(self.source_ip.to_string()));
        if let Some(ua) = &self.user_agent {
            identity.insert("userAgent".into(), json!(ua));
        }
        ctx.insert("identity".into(), Value::Object(identity));
        ctx.insert("requestId".into(), json!(id()));
        ctx.insert("domainName".into(), json!(self.domain_name));
        ctx.insert("connectionId".into(), json!(self.connection_id));
        ctx.insert("apiId".into(), json!(self.api_id));
        if !self.authorizer.is_empty() {
            ctx.insert("authorizer".into(), Value::Object(self.authorizer.clone()));
        }
        ctx
    }

    /// `$connect`: the upgrade request's headers and query string.
    pub fn connect(&self, headers: &http::HeaderMap, query: &BTreeMap<String, Vec<String>>, now_ms: i64) -> Value {
        let (single, multi) = header_maps(headers);
        let (query_single, query_multi) = query_maps(query);
        let mut event = Map::new();
        event.insert("headers".into(), single);
        event.insert("multiValueHeaders".into(), multi);
        if !query.is_empty() {
            event.insert("queryStringParameters".into(), query_single);
            event.insert("multiValueQueryStringParameters".into(), query_multi);
        }
        event.insert("requestContext".into(), Value::Object(self.request_context("$connect", "CONNECT", now_ms)));
        event.insert("isBase64Encoded".into(), json!(false));
        Value::Object(event)
    }

    /// A message routed to `route_key`. Binary frames arrive base64-encoded.
    pub fn message(&self, route_key: &str, body: &str, is_base64_encoded: bool, now_ms: i64) -> Value {
        let mut ctx = self.request_context(route_key, "MESSAGE", now_ms);
        ctx.insert("messageId".into(), json!(id()));
        json!({
            "requestContext": ctx,
            "body": body,
            "isBase64Encoded": is_base64_encoded,
        })
    }

    /// `$disconnect`, with the close code and reason API Gateway reports.
    pub fn disconnect(&self, status_code: u16, reason: &str, now_ms: i64) -> Value {
        let mut ctx = self.request_context("$disconnect", "DISCONNECT", now_ms);
        ctx.insert("disconnectStatusCode".into(), json!(status_code));
        ctx.insert("disconnectReason".into(), json!(reason));
        json!({
            "headers": {"Host": self.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {
                "Host": [self.domain_name], "x-api-key": [""], "X-Forwarded-For": [""], "x-restapi": [""]
            },
            "requestContext": ctx,
            "isBase64Encoded": false,
        })
    }
}

fn header_maps(headers: &http::HeaderMap) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        // API Gateway passes header names as the client sent them; HTTP/1.1 names are
        // case-insensitive and hyper lower-cases them, which every reader must accept anyway.
        single.insert(name.as_str().to_owned(), json!(value));
        match multi.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(json!(value)),
            _ => {
                multi.insert(name.as_str().to_owned(), json!([value]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

fn query_maps(query: &BTreeMap<String, Vec<String>>) -> (Value, Value) {
    let single: Map<String, Value> =
        query.iter().filter_map(|(k, v)| v.last().map(|last| (k.clone(), json!(last)))).collect();
    let multi: Map<String, Value> = query.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    (Value::Object(single), Value::Object(multi))
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

    use super::*;

    fn context() -> EventContext {
        let mut authorizer = Map::new();
        authorizer.insert("principalId".into(), json!("alice"));
        authorizer.insert("playerId".into(), json!("alice"));
        EventContext {
            api_id: "local".into(),
            stage: "local".into(),
            domain_name: "127.0.0.1:8080".into(),
            connection_id: "AbCdEfGhIjKlMnO=".into(),
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: Some("test".into()),
            connected_at: 1_700_000_000_000,
            authorizer,
        }
    }

    #[test]
    fn events_parse_as_the_rust_event_types() {
        let ctx = context();
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        let query = BTreeMap::from([("playerId".to_string(), vec!["alice".to_string()])]);
        let connect: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(ctx.connect(&headers, &query, 1_700_000_000_001)).unwrap();
        assert_eq!(connect.request_context.route_key.as_deref(), Some("$connect"));
        assert_eq!(connect.request_context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(connect.request_context.connected_at, 1_700_000_000_000);
        assert_eq!(connect.request_context.request_time_epoch, 1_700_000_000_001);
        assert_eq!(connect.query_string_parameters.first("playerId"), Some("alice"));
        assert_eq!(connect.request_context.identity.source_ip.as_deref(), Some("127.0.0.1"));

        let message: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(ctx.message("ping", r#"{"action":"ping"}"#, false, 1_700_000_000_002)).unwrap();
        assert!(message.request_context.message_id.is_some());
        assert!(message.request_context.request_id.is_some());
        assert_eq!(message.body.as_deref(), Some(r#"{"action":"ping"}"#));
        assert_eq!(message.request_context.authorizer.fields.get("playerId"), Some(&json!("alice")));

        let disconnect: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(ctx.disconnect(1001, "Going away", 1_700_000_000_003)).unwrap();
        assert_eq!(disconnect.request_context.disconnect_status_code, Some(1001));
        assert_eq!(disconnect.request_context.disconnect_reason.as_deref(), Some("Going away"));
    }

    #[test]
    fn request_time_is_clf() {
        assert_eq!(request_time(1_707_502_303_419), "09/Feb/2024:18:11:43 +0000");
    }
}
