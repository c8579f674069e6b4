//! The party routes' Lambda function: `createParty`, `joinParty`, `leaveParty`, `kickFromParty`
//! and `setReady`, dispatched on `requestContext.routeKey`.
//!
//! Build for AWS with `cargo lambda build --release --arm64 --bin mg-parties` (or `sam build`); the
//! local stack runs it with `matchgate up --lambdas target/debug`. Configured by environment
//! variables: see `matchgate_lambdas::runtime`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    matchgate_lambdas::runtime::run_routes_function().await
}
