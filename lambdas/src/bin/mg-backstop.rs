//! The scheduled backstop that polls DescribeMatchmaking for quiet tickets.
//!
//! Build for AWS with `cargo lambda build --release --arm64 --bin mg-backstop` (or `sam build`); the
//! local stack runs it with `matchgate up --lambdas target/debug`. Configured by environment
//! variables: see `matchgate_lambdas::runtime`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    matchgate_lambdas::runtime::run_backstop_function().await
}
