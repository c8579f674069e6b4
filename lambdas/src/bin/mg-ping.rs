//! The function of `ping`, `$default` and any route only the template knows: dispatched on
//! `requestContext.routeKey` through `matchgate_lambdas::routes::ROUTES`.
//!
//! Build for AWS with `cargo lambda build --release --arm64 --bin mg-ping` (or `sam build`); the
//! local stack runs it with `matchgate up --lambdas target/debug`. Configured by environment
//! variables: see `matchgate_lambdas::runtime`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    matchgate_lambdas::runtime::run_routes_function().await
}
