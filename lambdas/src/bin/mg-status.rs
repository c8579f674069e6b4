//! The `status` route's Lambda function.
//!
//! Build for AWS with `cargo lambda build --release --arm64 --bin mg-status` (or `sam build`); the
//! local stack runs it with `matchgate up --lambdas target/debug`. Configured by environment
//! variables: see `matchgate_lambdas::runtime`.

use matchgate_lambdas::handlers;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    matchgate_lambdas::runtime::run_action_function(handlers::status).await
}
