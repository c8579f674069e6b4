//! FlexMatch's events, delivered by the SNS subscription.
//!
//! Build for AWS with `cargo lambda build --release --arm64 --bin mg-events` (or `sam build`); the
//! local stack runs it with `matchgate up --lambdas target/debug`. Configured by environment
//! variables: see `matchgate_lambdas::runtime`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    matchgate_lambdas::runtime::run_events_function().await
}
