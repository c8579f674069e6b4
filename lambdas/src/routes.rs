//! The WebSocket API's routes, declared once: route key → handler → Lambda function.
//!
//! Everything that needs to know the routes reads [`ROUTES`]: the Lambda binaries' dispatch
//! ([`dispatch`]), the local gateway's function map and route keys, and the tests that hold
//! `infra/template.yaml` to the workspace.
//!
//! # Adding a route
//!
//! 1. Add the action to `matchgate_protocol::ClientAction` (its wire shape; fields in camelCase,
//!    an action without fields as an empty struct variant `Name {}`).
//! 2. Write its handler as `pub async fn name(caller: Caller, action: ClientAction, deps: &Deps)`
//!    in `handlers/`, destructuring its own variant first.
//! 3. Add one line to [`ROUTES`] with the route key, the function that serves it (the binary in
//!    `src/bin/` and `infra/template.yaml`'s function; a new function also needs its `mg-*` binary
//!    calling [`crate::runtime::run_action_function`] with the handler) and the handler.
//!
//! The tests then check that every action has a route, every route's function has a binary and
//! the template routes every route key to the same function.

use std::future::Future;
use std::pin::Pin;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use matchgate_protocol::ClientAction;

use crate::handlers::{self, Caller};
use crate::{Deps, HandlerError};

/// The route API Gateway selects when a message's `action` names no other route.
pub const DEFAULT_ROUTE: &str = "$default";
/// The route keys API Gateway defines itself; every other route key is a client action's name.
pub const SPECIAL_ROUTE_KEYS: [&str; 3] = ["$connect", "$disconnect", DEFAULT_ROUTE];

/// The function of FlexMatch's events (the SNS subscription).
pub const EVENTS_FUNCTION: &str = "mg-events";
/// The function of the scheduled backstop.
pub const BACKSTOP_FUNCTION: &str = "mg-backstop";
/// The function of the `$connect` REQUEST authorizer.
pub const AUTHORIZER_FUNCTION: &str = "mg-authorizer";

/// What a route handler returns, boxed so that routes of both kinds fit in one table.
pub type RouteFuture<'a> = Pin<Box<dyn Future<Output = Result<ApiGatewayProxyResponse, HandlerError>> + Send + 'a>>;

/// How a route's handler is called.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Reads the whole event: `$connect` (headers, query string), `$disconnect` (its status
    /// code), `$default` (the frame no route took, to say why).
    Event(for<'a> fn(ApiGatewayWebsocketProxyRequest, &'a Deps) -> RouteFuture<'a>),
    /// A client action's route: gets the caller and the action, parsed from the frame once by
    /// [`dispatch`]. A frame that does not parse gets its `Error` push instead.
    Action(for<'a> fn(Caller, ClientAction, &'a Deps) -> RouteFuture<'a>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Event(_) => "Handler::Event",
            Self::Action(_) => "Handler::Action",
        })
    }
}

/// One route of the WebSocket API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The route key (`$connect`, `$disconnect`, `$default`, or an action's name).
    pub key: &'static str,
    /// The Lambda function integrated with the route: the name of its `mg-*` binary, as in
    /// `infra/template.yaml`.
    pub function: &'static str,
    pub handler: Handler,
}

/// Every route of the WebSocket API.
pub const ROUTES: &[Route] = &[
    Route {
        key: "$connect",
        function: "mg-connect",
        handler: Handler::Event(|e, d| Box::pin(handlers::connect(e, d))),
    },
    Route {
        key: "$disconnect",
        function: "mg-disconnect",
        handler: Handler::Event(|e, d| Box::pin(handlers::disconnect(e, d))),
    },
    Route {
        key: DEFAULT_ROUTE,
        function: "mg-ping",
        handler: Handler::Event(|e, d| Box::pin(handlers::default_route(e, d))),
    },
    Route {
        key: "matchmake",
        function: "mg-matchmake",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::matchmake(c, a, d))),
    },
    Route {
        key: "cancel",
        function: "mg-cancel",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::cancel(c, a, d))),
    },
    Route {
        key: "accept",
        function: "mg-accept",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::accept(c, a, d))),
    },
    Route {
        key: "status",
        function: "mg-status",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::status(c, a, d))),
    },
    Route { key: "ping", function: "mg-ping", handler: Handler::Action(|c, a, d| Box::pin(handlers::ping(c, a, d))) },
    Route {
        key: "createParty",
        function: "mg-parties",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::create_party(c, a, d))),
    },
    Route {
        key: "joinParty",
        function: "mg-parties",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::join_party(c, a, d))),
    },
    Route {
        key: "leaveParty",
        function: "mg-parties",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::leave_party(c, a, d))),
    },
    Route {
        key: "kickFromParty",
        function: "mg-parties",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::kick_from_party(c, a, d))),
    },
    Route {
        key: "setReady",
        function: "mg-parties",
        handler: Handler::Action(|c, a, d| Box::pin(handlers::set_ready(c, a, d))),
    },
];

/// The route with this key.
pub fn route(key: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.key == key)
}

/// Every route key: the special ones and one per client action.
pub fn route_keys() -> impl Iterator<Item = &'static str> {
    ROUTES.iter().map(|r| r.key)
}

/// The route keys that are client actions.
pub fn action_route_keys() -> impl Iterator<Item = &'static str> {
    route_keys().filter(|key| !SPECIAL_ROUTE_KEYS.contains(key))
}

/// Every Lambda function of the stack, each once: the routes' functions, then the events,
/// backstop and authorizer functions.
pub fn functions() -> Vec<&'static str> {
    let mut functions: Vec<&'static str> = Vec::new();
    for function in ROUTES.iter().map(|r| r.function).chain([EVENTS_FUNCTION, BACKSTOP_FUNCTION, AUTHORIZER_FUNCTION]) {
        if !functions.contains(&function) {
            functions.push(function);
        }
    }
    functions
}

/// Serves a WebSocket event by its `requestContext.routeKey`, as API Gateway's integrations
/// do; a route key this table lacks (one only the template routes) is served as `$default`.
pub async fn dispatch(
    event: ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let key = event.request_context.route_key.as_deref().unwrap_or(DEFAULT_ROUTE);
    let route = route(key).or_else(|| route(DEFAULT_ROUTE)).expect("ROUTES has $default");
    call(route.handler, event, deps).await
}

/// Calls one handler with the event; an action handler gets the frame parsed (once) into its
/// action, and a frame that does not parse gets the matching `Error` push.
pub async fn call(
    handler: Handler,
    event: ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    match handler {
        Handler::Event(handler) => handler(event, deps).await,
        Handler::Action(handler) => match parse_action(&event, deps).await? {
            Some((caller, action)) => handler(caller, action, deps).await,
            None => Ok(handlers::ok()),
        },
    }
}

/// The caller and the action of a message event; `None` once a frame that is no valid action
/// has had its `Error` push.
pub(crate) async fn parse_action(
    event: &ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<Option<(Caller, ClientAction)>, HandlerError> {
    let caller = Caller::from_request(event)?;
    match ClientAction::parse(event.body.as_deref().unwrap_or_default()) {
        Ok(action) => Ok(Some((caller, action))),
        Err(e) => {
            handlers::push_error(deps, &caller, handlers::error_code(&e), e.to_string()).await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_route_key_is_declared_once() {
        let keys: BTreeSet<&str> = route_keys().collect();
        assert_eq!(keys.len(), ROUTES.len(), "a route key appears twice in ROUTES");
        for key in SPECIAL_ROUTE_KEYS {
            assert!(keys.contains(key), "ROUTES lacks {key}");
        }
    }

    #[test]
    fn every_client_action_has_a_route_and_every_route_an_action() {
        let actions: BTreeSet<&str> = ClientAction::names().iter().copied().collect();
        let routed: BTreeSet<&str> = action_route_keys().collect();
        assert_eq!(routed, actions, "the action routes of ROUTES and the actions of ClientAction differ");
        for key in action_route_keys() {
            assert!(matches!(route(key).map(|r| r.handler), Some(Handler::Action(_))), "{key} parses its action");
        }
    }

    #[test]
    fn every_function_has_its_binary() {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
        for function in functions() {
            assert!(bin.join(format!("{function}.rs")).is_file(), "{function} has no src/bin/{function}.rs");
        }
    }
}
