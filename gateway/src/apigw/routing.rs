//! Route selection on `$request.body.action` and the route's invocation, for one message.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::ApiGateway;
use super::event::EventContext;
use super::registry::{ConnectionHandle, Outbound};
use crate::now_ms;

/// API Gateway's answer to a message that selects no route and finds no `$default`.
const NO_ROUTE_MESSAGE: &str = "Forbidden";

/// The route API Gateway selects for a message on `$request.body.action`: the route the
/// `action` names if the API has it, else `$default` if it has one. Bodies the expression
/// cannot be evaluated on go to `$default`. `$connect` and `$disconnect` are never selected by
/// a message. (Binary frames never get here: API Gateway closes them with 1003.)
pub(super) fn select_route<'a>(route_keys: &'a BTreeSet<String>, body: &str) -> Option<&'a str> {
    #[derive(serde::Deserialize)]
    struct Selector<'a> {
        #[serde(borrow)]
        action: Option<std::borrow::Cow<'a, str>>,
    }
    let named = match serde_json::from_str::<Selector<'_>>(body) {
        Ok(Selector { action: Some(action) }) if !matches!(action.as_ref(), "$connect" | "$disconnect") => {
            route_keys.get(action.as_ref())
        }
        _ => None,
    };
    named.or_else(|| route_keys.get("$default")).map(String::as_str)
}

/// Routes one text message on `$request.body.action` and invokes the route's integration. A
/// failed invocation gets API Gateway's own error frame; the connection stays open.
pub(super) async fn dispatch(gateway: &ApiGateway, context: &EventContext, handle: &ConnectionHandle, body: &str) {
    let Some(route_key) = select_route(&gateway.route_keys, body) else {
        let frame = json!({
            "message": NO_ROUTE_MESSAGE,
            "connectionId": context.connection_id,
            "requestId": uuid::Uuid::new_v4().to_string(),
        });
        let _ = handle.tx.try_send(Outbound::Text(frame.to_string()));
        return;
    };
    let event = context.message(route_key, body, false, now_ms());
    let request_id = event["requestContext"]["requestId"].as_str().unwrap_or_default().to_owned();
    let failed = match gateway.integration.invoke(route_key, event).await {
        Ok(response) => response.get("statusCode").and_then(Value::as_u64).is_some_and(|s| s >= 500),
        Err(e) => {
            tracing::warn!(connection_id = context.connection_id, route_key, error = %e, "route failed");
            true
        }
    };
    if failed {
        let frame = json!({
            "message": "Internal server error",
            "connectionId": context.connection_id,
            "requestId": request_id,
        });
        let _ = handle.tx.try_send(Outbound::Text(frame.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn selects_the_configured_routes_like_api_gateway() {
        let routes = keys(&["$connect", "$disconnect", "$default", "ping", "watch"]);
        assert_eq!(select_route(&routes, r#"{"action":"watch"}"#), Some("watch"));
        assert_eq!(select_route(&routes, r#"{"action":"ping"}"#), Some("ping"));
        // Not a route of this API, even if the protocol knows it.
        assert_eq!(select_route(&routes, r#"{"action":"status"}"#), Some("$default"));
        assert_eq!(select_route(&routes, r#"{"action":"$connect"}"#), Some("$default"));
        assert_eq!(select_route(&routes, "not json"), Some("$default"));
        assert_eq!(select_route(&routes, r#"{"action":7}"#), Some("$default"));
        let no_default = keys(&["$connect", "$disconnect", "ping"]);
        assert_eq!(select_route(&no_default, r#"{"action":"ping"}"#), Some("ping"));
        assert_eq!(select_route(&no_default, r#"{"action":"status"}"#), None);
        assert_eq!(select_route(&no_default, "not json"), None);
    }
}
