//! The instance supervisor against real processes: small Python functions on the Runtime API.
//! The processes are real, so these tests run on the real clock; every wait is bounded by
//! [`bounded`] against a hang, never timed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Concurrency, FunctionSettings, LambdaHost};
use crate::apigw::{Integration, IntegrationError};

/// What every test function script starts with: the Runtime API client, `mark` (a line in a
/// file named after its argument), `gate` (waits for the file an event names), and a line in
/// `starts` for every process start.
const PRELUDE: &str = r#"#!/usr/bin/env python3
import json, os, sys, time, urllib.request
api = os.environ['AWS_LAMBDA_RUNTIME_API']
here = os.path.dirname(os.path.abspath(sys.argv[0]))
def mark(name, line='x'):
    with open(os.path.join(here, name), 'a') as f:
        f.write(f'{line}\n')
def gate(event):
    while isinstance(event, dict) and event.get('gate') and not os.path.exists(event['gate']):
        time.sleep(0.02)
def next_invocation():
    with urllib.request.urlopen(f'http://{api}/2018-06-01/runtime/invocation/next') as r:
        return r.headers['lambda-runtime-aws-request-id'], json.loads(r.read())
def respond(request_id, value):
    url = f'http://{api}/2018-06-01/runtime/invocation/{request_id}/response'
    urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(value).encode(), method='POST')).read()
mark('starts')
"#;

/// A function that records each invocation it takes (`ran-ID`), waits for its gate, and
/// answers with its id and the process that ran it.
const GATED: &str = r#"
while True:
    request_id, event = next_invocation()
    mark(f"ran-{event['id']}")
    gate(event)
    respond(request_id, {'echo': event['id'], 'pid': os.getpid()})
"#;

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("matchgate-lambda-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes function `name` (Python after [`PRELUDE`]) into `dir`.
fn function(dir: &Path, name: &str, body: &str) {
    let script = dir.join(name);
    std::fs::write(&script, format!("{PRELUDE}{body}")).expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
}

/// Starts function `mg-test` from `body`, serving targets `t` (a client's request) and
/// `$disconnect`.
async fn host_with(
    test: &str,
    body: &str,
    settings: FunctionSettings,
    concurrency: Concurrency,
) -> (Arc<LambdaHost>, PathBuf) {
    let dir = scratch(test);
    function(&dir, "mg-test", body);
    let targets =
        BTreeMap::from([("t".to_owned(), "mg-test".to_owned()), ("$disconnect".to_owned(), "mg-test".to_owned())]);
    let settings = BTreeMap::from([("mg-test".to_owned(), settings)]);
    (Arc::new(LambdaHost::start(&dir, targets, &settings, concurrency).await.expect("host")), dir)
}

async fn host(test: &str, body: &str, settings: FunctionSettings) -> (Arc<LambdaHost>, PathBuf) {
    host_with(test, body, settings, Concurrency::default()).await
}

fn lines(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(name)).map(|s| s.lines().count()).unwrap_or(0)
}

/// Guards a test against a hang (not a timing assertion: every step ends long before).
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future).await.unwrap_or_else(|_| panic!("{what} hung"))
}

/// Waits until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    bounded(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Invokes `target` with a gated event `id` in the background.
fn spawn_gated(
    host: &Arc<LambdaHost>,
    target: &'static str,
    id: &str,
    gate: &Path,
) -> tokio::task::JoinHandle<Result<Value, IntegrationError>> {
    let host = Arc::clone(host);
    let event = json!({"id": id, "gate": gate.to_string_lossy()});
    tokio::spawn(async move { host.invoke(target, event).await })
}

fn pid(answer: &Value) -> u64 {
    answer["pid"].as_u64().expect("the answer names its process")
}

#[tokio::test]
async fn concurrent_slow_invocations_run_on_as_many_instances_as_the_limit_and_the_next_is_throttled() {
    let concurrency = Concurrency { function: 3, ..Concurrency::default() };
    let (host, dir) = host_with("scale", GATED, FunctionSettings::default(), concurrency).await;
    let gate = dir.join("gate");
    let running: Vec<_> = (0..3).map(|n| spawn_gated(&host, "t", &n.to_string(), &gate)).collect();
    // All three run at once: three instances, each holding one invocation.
    until("three invocations running at once", || (0..3).all(|n| lines(&dir, &format!("ran-{n}")) == 1)).await;
    assert_eq!(host.instances("mg-test"), Some(3));
    // A fourth, at the limit, is throttled as Lambda throttles: at once, and never run.
    let throttled = bounded("a throttled invocation", host.invoke("t", json!({"id": "over"}))).await;
    assert!(matches!(throttled, Err(IntegrationError::Throttled(ref m)) if m.contains("TooManyRequestsException")));
    assert_eq!(host.throttles("mg-test"), Some(1));
    std::fs::write(&gate, "").expect("open the gate");
    let mut pids = BTreeSet::new();
    for task in running {
        pids.insert(pid(&bounded("a gated invocation", task).await.expect("task").expect("runs")));
    }
    assert_eq!(pids.len(), 3, "three processes ran them");
    // The next one runs on a warm instance: no new process, no new cold start.
    let warm = bounded("a warm invocation", host.invoke("t", json!({"id": "warm"}))).await.expect("runs");
    assert!(pids.contains(&pid(&warm)), "a warm instance was reused");
    assert_eq!(lines(&dir, "starts"), 3);
    assert_eq!(host.cold_starts("mg-test"), Some(3));
    assert_eq!(lines(&dir, "ran-over"), 0, "the throttled invocation never ran");
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn disconnects_past_the_limit_wait_for_an_instance_and_none_is_lost() {
    let concurrency = Concurrency { function: 2, ..Concurrency::default() };
    let (host, dir) = host_with("disconnect", GATED, FunctionSettings::default(), concurrency).await;
    let gate = dir.join("gate");
    let disconnects: Vec<_> = (0..6).map(|n| spawn_gated(&host, "$disconnect", &n.to_string(), &gate)).collect();
    until("two running", || (0..6).filter(|n| lines(&dir, &format!("ran-{n}")) == 1).count() == 2).await;
    std::fs::write(&gate, "").expect("open the gate");
    for (n, task) in disconnects.into_iter().enumerate() {
        let answer = bounded("a $disconnect", task).await.expect("task").expect("runs");
        assert_eq!(answer["echo"], json!(n.to_string()));
    }
    // Never more than the limit: two processes ran all six, one at a time each.
    assert_eq!(lines(&dir, "starts"), 2);
    assert_eq!(host.throttles("mg-test"), Some(0));
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_account_limit_is_shared_and_a_reserved_function_keeps_its_share() {
    let dir = scratch("account");
    function(&dir, "mg-a", GATED);
    function(&dir, "mg-b", GATED);
    let targets = BTreeMap::from([("a".to_owned(), "mg-a".to_owned()), ("b".to_owned(), "mg-b".to_owned())]);
    let settings = BTreeMap::from([(
        "mg-b".to_owned(),
        FunctionSettings { reserved_concurrency: Some(1), ..FunctionSettings::default() },
    )]);
    // An account of 3 with 1 reserved by mg-b leaves mg-a 2, below its own cap of 3.
    let concurrency = Concurrency { account: 3, function: 3, ..Concurrency::default() };
    let host = Arc::new(LambdaHost::start(&dir, targets, &settings, concurrency).await.expect("host"));
    let gate = dir.join("gate");
    let a: Vec<_> = (0..2).map(|n| spawn_gated(&host, "a", &format!("a{n}"), &gate)).collect();
    until("two of mg-a running", || lines(&dir, "ran-a0") + lines(&dir, "ran-a1") == 2).await;
    let throttled = bounded("a third of mg-a", host.invoke("a", json!({"id": "a2"}))).await;
    assert!(matches!(throttled, Err(IntegrationError::Throttled(_))), "the unreserved share is used up");
    let b = bounded("mg-b", host.invoke("b", json!({"id": "b0"}))).await;
    assert_eq!(b.expect("the reserved function still runs")["echo"], json!("b0"));
    std::fs::write(&gate, "").expect("open the gate");
    for task in a {
        bounded("mg-a", task).await.expect("task").expect("runs");
    }
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reserving_more_than_the_account_has_is_refused() {
    let dir = scratch("overreserved");
    function(&dir, "mg-test", GATED);
    let targets = BTreeMap::from([("t".to_owned(), "mg-test".to_owned())]);
    let settings = BTreeMap::from([(
        "mg-test".to_owned(),
        FunctionSettings { reserved_concurrency: Some(5), ..FunctionSettings::default() },
    )]);
    let concurrency = Concurrency { account: 4, ..Concurrency::default() };
    let refused = LambdaHost::start(&dir, targets, &settings, concurrency).await.expect_err("refused");
    assert!(refused.to_string().contains("reserve 5"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_idle_instance_is_reaped_and_the_next_invocation_is_a_cold_start() {
    let concurrency = Concurrency { idle_timeout: Duration::from_millis(100), ..Concurrency::default() };
    let (host, dir) = host_with("idle", GATED, FunctionSettings::default(), concurrency).await;
    bounded("a first invocation", host.invoke("t", json!({"id": "1"}))).await.expect("runs");
    until("the idle instance to be reaped", || host.instances("mg-test") == Some(0)).await;
    bounded("a second invocation", host.invoke("t", json!({"id": "2"}))).await.expect("runs");
    assert_eq!(lines(&dir, "starts"), 2, "the second ran on a new instance");
    assert_eq!(host.cold_starts("mg-test"), Some(2));
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_disconnect_queued_behind_a_stuck_one_runs_with_its_own_deadline_on_a_new_instance() {
    // The first process hangs on its invocation; every later one answers.
    let body = r#"
first = not os.path.exists(os.path.join(here, 'hung'))
mark('hung')
while True:
    request_id, event = next_invocation()
    if first:
        time.sleep(3600)
    respond(request_id, {'echo': event})
"#;
    let settings = FunctionSettings { timeout: Duration::from_millis(500), ..FunctionSettings::default() };
    let concurrency = Concurrency { function: 1, ..Concurrency::default() };
    let (host, dir) = host_with("queued", body, settings, concurrency).await;
    // Both at once, with room for one: the second waits for the first to overrun, for its
    // instance to be stopped and replaced, and only then does its own deadline start.
    let (stuck, queued) = bounded("two invocations", async {
        tokio::join!(host.invoke("$disconnect", json!(1)), host.invoke("$disconnect", json!(2)))
    })
    .await;
    let stuck = stuck.expect_err("the stuck invocation overruns").to_string();
    assert!(stuck.contains("timed out"), "{stuck}");
    assert_eq!(queued.expect("the queued invocation runs on the new instance"), json!({"echo": 2}));
    assert_eq!(bounded("a third", host.invoke("t", json!(3))).await.expect("runs"), json!({"echo": 3}));
    // One replacement, for the one overrun: no stop reached the new instance.
    assert_eq!(lines(&dir, "starts"), 2);
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_instance_still_starting_is_not_killed_by_the_invocation_waiting_for_it() {
    // A cold start longer than the function's timeout: the invocation waits for it.
    let body = r#"
time.sleep(1.5)
while True:
    request_id, event = next_invocation()
    respond(request_id, {'echo': event})
"#;
    let settings = FunctionSettings { timeout: Duration::from_millis(300), ..FunctionSettings::default() };
    let (host, dir) = host("cold", body, settings).await;
    assert_eq!(bounded("a cold start", host.invoke("t", json!(1))).await.expect("runs"), json!({"echo": 1}));
    assert_eq!(lines(&dir, "starts"), 1, "the starting instance was left alone");
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_caller_that_waits_too_long_for_a_cold_start_times_out_and_its_invocation_never_runs() {
    // The init waits for a file, so the first caller gives up before the instance is ready.
    let body = format!("gate({{'gate': os.path.join(here, 'init-gate')}})\n{GATED}");
    let settings = FunctionSettings { queue_wait: Duration::from_millis(300), ..FunctionSettings::default() };
    let (host, dir) = host("busy", &body, settings).await;
    let refused = bounded("a caller waiting for a cold start", host.invoke("t", json!({"id": "b"}))).await;
    let refused = refused.expect_err("the init takes longer than the caller waits").to_string();
    assert!(refused.contains("waited"), "{refused}");
    std::fs::write(dir.join("init-gate"), "").expect("let the init finish");
    // The instance finishes its init, skips the withdrawn invocation, and serves the next.
    until("the withdrawn invocation to be skipped", || host.queued("mg-test") == Some(0)).await;
    let next = bounded("a later one", host.invoke("t", json!({"id": "c"}))).await;
    assert_eq!(next.expect("runs")["echo"], json!("c"));
    assert_eq!(lines(&dir, "ran-b"), 0, "an invocation its caller gave up on never runs");
    assert_eq!(lines(&dir, "starts"), 1, "the starting instance was not killed");
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_function_that_crashes_in_its_init_fails_the_invocations_waiting_for_it() {
    let (host, dir) = host("crash", "sys.exit(3)\n", FunctionSettings::default()).await;
    // Each invocation starts an instance that crashes in its init; the crash fails it, long
    // before it could wait out its queue time.
    for id in 1..=2 {
        let failed = bounded("an invocation of a crashing function", host.invoke("t", json!(id))).await;
        let failed = failed.expect_err("the function never runs").to_string();
        assert!(failed.contains("exited") && failed.contains("during its init"), "{failed}");
    }
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn warming_starts_one_more_instance_each_time_and_reports_its_init() {
    let (host, dir) = host("warm", GATED, FunctionSettings::default()).await;
    for n in 1..=2 {
        let init = bounded("a warm start", host.warm("mg-test")).await.expect("the instance finishes its init");
        assert!(init > Duration::ZERO);
        assert_eq!(host.instances("mg-test"), Some(n));
    }
    assert_eq!(lines(&dir, "starts"), 2);
    assert_eq!(host.init_durations("mg-test").map(|d| d.len()), Some(2));
    // A warm instance serves the next invocation: no third start.
    bounded("an invocation", host.invoke("t", json!({"id": "1"}))).await.expect("runs");
    assert_eq!(lines(&dir, "starts"), 2);
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
