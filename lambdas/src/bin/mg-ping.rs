//! The `*` route's Lambda function (any route, dispatched on `requestContext.routeKey`: `ping`, `$default`).
//!
//! Build for AWS with `cargo lambda build --release --arm64 --bin mg-ping` (or `sam build`); the
//! local stack runs it with `matchgate up --lambdas target/debug`. Configured by environment
//! variables: see `matchgate_lambdas::runtime`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    matchgate_lambdas::runtime::run_websocket_function("*").await
}
