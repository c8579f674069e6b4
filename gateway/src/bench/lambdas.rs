//! `matchgate bench lambdas`: what each Lambda `bootstrap` costs before it serves anything: its
//! size on disk, and its init time, from process start to its first poll of the Runtime API,
//! measured by [`LambdaHost::warm`] exactly as `matchgate up --lambdas` starts an instance.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Percentiles, Table};
use crate::lambda::{Concurrency, FunctionSettings, LambdaHost, default_function_map};

/// The environment a function needs to finish its init. Nothing is reached during init: the
/// endpoints are never called, the credentials are dummies.
fn init_environment() -> BTreeMap<String, String> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("DYNAMODB_ENDPOINT", "http://127.0.0.1:9"),
        ("GAMELIFT_ENDPOINT", "http://127.0.0.1:9"),
        ("CONNECTIONS_ENDPOINT", "http://127.0.0.1:9/local"),
        ("JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json"),
        ("TOKEN_ISSUER", "http://matchgate.local/dev"),
        ("TOKEN_AUDIENCE", "matchgate-local"),
        ("TOKEN_USE", "id"),
        ("RUST_LOG", "error"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Starts `runs` instances of every function in `dir`, one after another, and reports each
/// binary's size and its init times.
pub async fn lambdas(dir: &Path, runs: usize, json: bool) -> anyhow::Result<()> {
    if !(1..=100).contains(&runs) {
        bail!("--runs must be 1..=100");
    }
    let mut names: Vec<String> = default_function_map().into_values().collect();
    names.sort();
    names.dedup();
    let mut table = Table::new(&["function", "bootstrap size", "init p50", "init max", "runs"]);
    for name in names {
        let binary = dir.join(&name);
        let size = std::fs::metadata(&binary).with_context(|| format!("{}", binary.display()))?.len();
        let targets = BTreeMap::from([(name.clone(), name.clone())]);
        let settings = BTreeMap::from([(
            name.clone(),
            FunctionSettings { environment: init_environment(), ..FunctionSettings::default() },
        )]);
        let concurrency = Concurrency { account: runs, function: runs, idle_timeout: Duration::from_secs(600) };
        let host = LambdaHost::start(dir, targets, &settings, concurrency).await?;
        let mut inits = Vec::with_capacity(runs);
        for _ in 0..runs {
            inits.push(host.warm(&name).await.with_context(|| format!("starting {name}"))?);
        }
        host.shutdown();
        let inits = Percentiles::new(inits);
        table.row(vec![
            name.into(),
            format!("{:.1} MB", size as f64 / 1e6).into(),
            inits.ms(0.5).into(),
            inits.ms(1.0).into(),
            runs.into(),
        ]);
    }
    table.print(json);
    Ok(())
}
