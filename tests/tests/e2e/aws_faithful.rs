//! AWS-faithful mode end to end: the very Lambda binaries that deploy to AWS handle every route
//! and FlexMatch's events, behind a local Lambda Runtime API, with their state in DynamoDB
//! Local; then the same scenario with the handlers in-process over the same DynamoDB adapters.
//!
//! The binaries are built by `scripts/test.sh` (`cargo test --workspace --all-targets` builds
//! every bin); run `cargo build -p matchgate-lambdas --bins` first when running these tests alone.

use std::collections::BTreeSet;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use matchgate_gateway::now_ms;
use matchgate_gateway::stack::{Functions, LOCAL_PARAMETER_DEFAULTS, Stack, StackConfig};
use matchgate_protocol::Push;
use matchgate_tests::dynamodb_local::DynamoDbLocal;
use matchgate_tests::{Client, quiet_config, start_stack_with, teams_rule_set};

/// `target/debug` (or wherever this test binary was built), where the Lambda bins are.
fn lambda_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").to_path_buf();
    assert!(
        dir.join("mg-matchmake").is_file(),
        "the Lambda binaries are not built in {}: run `cargo build -p matchgate-lambdas --bins`",
        dir.display()
    );
    dir
}

async fn stack(functions: Functions, prefix: &str) -> anyhow::Result<(Stack, &'static DynamoDbLocal)> {
    let dynamodb = DynamoDbLocal::shared().await?;
    let config = StackConfig {
        rule_set_body: teams_rule_set(2),
        dynamodb_endpoint: Some(dynamodb.endpoint.clone()),
        table_prefix: prefix.to_owned(),
        functions,
        ..quiet_config()
    };
    Ok((start_stack_with(config).await?, dynamodb))
}

async fn four_players_are_matched(stack: &Stack, dynamodb: &DynamoDbLocal, prefix: &str) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    let mut tickets = Vec::new();
    for name in ["ana", "bo", "cy", "di"] {
        let mut c = Client::connect(stack, name).await?;
        tickets.push(c.matchmake().await?);
        c.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
        clients.push(c);
    }
    stack.engine.cycle(now_ms());
    let mut sessions = BTreeSet::new();
    let mut matches = BTreeSet::new();
    for c in &mut clients {
        let push = c.expect("succeeded", |p| matches!(p, Push::MatchmakingSucceeded { .. })).await?;
        let Push::MatchmakingSucceeded { match_id, ip_address, port, player_session_id, .. } = push else {
            unreachable!()
        };
        assert_eq!(ip_address.as_deref(), Some("127.0.0.1"));
        assert!(port.is_some());
        sessions.insert(player_session_id.expect("own session"));
        matches.insert(match_id);
    }
    assert_eq!(sessions.len(), 4);
    assert_eq!(matches.len(), 1);

    // The tables hold what the design says: tickets completed with each player's result, and
    // every player pointing at a live connection and its ticket.
    let ddb = matchgate_lambdas::adapters::dynamodb::client_for_endpoint(&dynamodb.endpoint);
    for (ticket, player) in tickets.iter().zip(["ana", "bo", "cy", "di"]) {
        let item = ddb
            .get_item()
            .table_name(format!("{prefix}Tickets"))
            .key("ticketId", AttributeValue::S(ticket.clone()))
            .consistent_read(true)
            .send()
            .await?
            .item
            .expect("the ticket is stored");
        assert_eq!(item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str), Some("COMPLETED"));
        let results = item.get("results").and_then(|v| v.as_m().ok()).expect("results");
        let mine = results.get(player).and_then(|v| v.as_m().ok()).expect("this player's result");
        assert_eq!(mine.get("type").and_then(|v| v.as_s().ok()).map(String::as_str), Some("MatchmakingSucceeded"));
        assert!(!item.contains_key("backstopShard"), "an ended ticket leaves the backstop's index");
        let row = ddb
            .get_item()
            .table_name(format!("{prefix}Players"))
            .key("playerId", AttributeValue::S(player.to_owned()))
            .consistent_read(true)
            .send()
            .await?
            .item
            .expect("the player is stored");
        assert_eq!(row.get("activeTicketId").and_then(|v| v.as_s().ok()), Some(ticket));
        assert!(row.contains_key("connectionId"));
    }
    Ok(())
}

#[tokio::test]
async fn the_real_lambda_binaries_match_four_players() -> anyhow::Result<()> {
    let prefix = format!("bins{}", std::process::id());
    let (stack, dynamodb) = stack(Functions::Binaries(lambda_dir()), &prefix).await?;
    four_players_are_matched(&stack, dynamodb, &prefix).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn in_process_handlers_over_the_dynamodb_adapters_match_four_players() -> anyhow::Result<()> {
    let prefix = format!("inproc{}", std::process::id());
    let (stack, dynamodb) = stack(Functions::Embedded, &prefix).await?;
    four_players_are_matched(&stack, dynamodb, &prefix).await?;
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_crashed_function_is_reported_and_restarted() -> anyhow::Result<()> {
    // mg-ping's first process takes its invocation and exits; every later process is the real
    // mg-ping. The crash fails the invocation cleanly instead of hanging the gateway, the
    // connection that triggered it gets API Gateway's error frame, and the restarted process
    // answers the next ping.
    let real = lambda_dir().join("mg-ping");
    let crashing = format!(
        "#!/usr/bin/env python3\nimport os, sys, urllib.request\n\
         marker = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), 'crashed-once')\n\
         if os.path.exists(marker):\n    os.execv({real:?}, [{real:?}])\n\
         open(marker, 'w').close()\n\
         api = os.environ['AWS_LAMBDA_RUNTIME_API']\n\
         urllib.request.urlopen(f'http://{{api}}/2018-06-01/runtime/invocation/next').read()\n\
         sys.exit(3)\n",
        real = real.to_string_lossy()
    );
    let dir = functions_with("crash", &[("mg-ping", crashing)])?;
    let prefix = format!("crash{}", std::process::id());
    let (stack, _) = stack(Functions::Binaries(dir.clone()), &prefix).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    alice.send(serde_json::json!({"action": "ping"})).await?;
    let frame: serde_json::Value = serde_json::from_str(&alice.next_text().await?)?;
    assert_eq!(frame["message"], "Internal server error", "{frame}");
    alice.send(serde_json::json!({"action": "ping"})).await?;
    alice.expect("Pong from the restarted mg-ping", |p| matches!(p, Push::Pong { .. })).await?;
    // Other routes (other functions) carry on.
    let ticket = alice.matchmake().await?;
    assert!(ticket.starts_with("ticket-"));
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A copy of `lambda_dir()` (symlinks) in a directory of its own, with `scripts` instead of those
/// binaries.
fn functions_with(test: &str, scripts: &[(&str, String)]) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("matchgate-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(lambda_dir())? {
        let path = entry?.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("mg-") && !name.contains('.') && !scripts.iter().any(|(n, _)| *n == name) {
            std::os::unix::fs::symlink(&path, dir.join(&name))?;
        }
    }
    for (name, text) in scripts {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    Ok(dir)
}

#[tokio::test]
async fn a_stuck_function_times_out_is_restarted_and_cannot_hang_the_gateway() -> anyhow::Result<()> {
    // mg-ping's first process takes its invocation from the Runtime API and never answers; every
    // later process is the real mg-ping.
    let real = lambda_dir().join("mg-ping");
    let stuck = format!(
        "#!/usr/bin/env python3\nimport os, sys, time, urllib.request\n\
         marker = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), 'hung-once')\n\
         if os.path.exists(marker):\n    os.execv({real:?}, [{real:?}])\n\
         open(marker, 'w').close()\n\
         api = os.environ['AWS_LAMBDA_RUNTIME_API']\n\
         urllib.request.urlopen(f'http://{{api}}/2018-06-01/runtime/invocation/next').read()\n\
         time.sleep(3600)\n",
        real = real.to_string_lossy()
    );
    let dir = functions_with("stuck", &[("mg-ping", stuck)])?;
    let dynamodb = DynamoDbLocal::shared().await?;
    let config = StackConfig {
        rule_set_body: teams_rule_set(1),
        dynamodb_endpoint: Some(dynamodb.endpoint.clone()),
        table_prefix: format!("stuck{}", std::process::id()),
        functions: Functions::Binaries(dir.clone()),
        function_timeout: std::time::Duration::from_millis(500),
        ..quiet_config()
    };
    let stack = start_stack_with(config).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let mut bob = Client::connect(&stack, "bob").await?;
    // Two pings at once: the first one the process takes overruns and its sender gets API
    // Gateway's error frame; the other waits in the queue, without a deadline, for the
    // restarted process, which answers it.
    alice.send(serde_json::json!({"action": "ping"})).await?;
    bob.send(serde_json::json!({"action": "ping"})).await?;
    let mut answers = Vec::new();
    for c in [&mut alice, &mut bob] {
        let frame: serde_json::Value = serde_json::from_str(&c.next_text().await?)?;
        answers.push(if frame["message"] == "Internal server error" {
            "error".to_owned()
        } else {
            let push: Push = serde_json::from_value(frame.clone())?;
            assert!(matches!(&push, Push::Pong { player_id, .. } if *player_id == c.player_id), "{frame}");
            "pong".to_owned()
        });
    }
    answers.sort();
    assert_eq!(answers, ["error", "pong"]);
    // The restarted process keeps serving.
    for c in [&mut alice, &mut bob] {
        c.send(serde_json::json!({"action": "ping"})).await?;
        c.expect("Pong from the restarted mg-ping", |p| matches!(p, Push::Pong { .. })).await?;
    }
    let ticket = alice.matchmake().await?;
    assert!(ticket.starts_with("ticket-"), "other functions carry on");
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn the_template_gives_each_function_its_environment_and_timeout() -> anyhow::Result<()> {
    // mg-events and mg-backstop record what they are started with and the deadline of their
    // first invocation, then answer every invocation.
    const RECORDER: &str = r#"#!/usr/bin/env python3
import json, os, sys, urllib.request
here = os.path.dirname(os.path.abspath(sys.argv[0]))
api = os.environ['AWS_LAMBDA_RUNTIME_API']
recorded = False
try:
    while True:
        with urllib.request.urlopen(f'http://{api}/2018-06-01/runtime/invocation/next') as r:
            request_id, deadline = r.headers['lambda-runtime-aws-request-id'], r.headers['lambda-runtime-deadline-ms']
        if not recorded:
            with open(os.path.join(here, 'NAME.tmp'), 'w') as f:
                json.dump({'env': dict(os.environ), 'deadline': int(deadline)}, f)
            os.rename(os.path.join(here, 'NAME.tmp'), os.path.join(here, 'NAME.json'))
            recorded = True
        url = f'http://{api}/2018-06-01/runtime/invocation/{request_id}/response'
        urllib.request.urlopen(urllib.request.Request(url, data=b'{}', method='POST')).read()
except OSError:
    sys.exit(0)  # the stack shut down
"#;
    let recorder = |name: &str| RECORDER.replace("NAME", name);
    let dir = functions_with(
        "template-env",
        &[("mg-events", recorder("mg-events")), ("mg-backstop", recorder("mg-backstop"))],
    )?;
    let template_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let mut parameters: std::collections::BTreeMap<String, String> =
        LOCAL_PARAMETER_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let log_level = "warn,matchgate_template_log_level=info";
    parameters.insert("LogLevel".into(), log_level.into());
    let template = matchgate_gateway::template::load(&template_path, &parameters)?;
    let dynamodb = DynamoDbLocal::shared().await?;
    let prefix = format!("tplenv{}", std::process::id());
    let config = StackConfig {
        dynamodb_endpoint: Some(dynamodb.endpoint.clone()),
        table_prefix: prefix.clone(),
        functions: Functions::Binaries(dir.clone()),
        backstop_every: std::time::Duration::from_millis(100),
        ..quiet_config().with_template(&template)?
    };
    let before = now_ms();
    let stack = start_stack_with(config).await?;
    // A ticket makes FlexMatch publish events for mg-events; the backstop runs on its own.
    let mut alice = Client::connect(&stack, "alice").await?;
    alice.matchmake().await?;
    let wait_for = |name: &'static str| {
        let path = dir.join(format!("{name}.json"));
        async move {
            tokio::time::timeout(matchgate_tests::HANG_GUARD, async {
                loop {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        return serde_json::from_str::<serde_json::Value>(&text);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
            .await
            .map_err(|_| anyhow::anyhow!("{name} was never invoked"))?
            .map_err(anyhow::Error::from)
        }
    };
    let events = wait_for("mg-events").await?;
    let backstop = wait_for("mg-backstop").await?;
    let after = now_ms();
    for (record, timeout_ms) in [(&events, 30_000), (&backstop, 50_000)] {
        let env = &record["env"];
        // The template's variables (RUST_LOG is the LogLevel parameter) ...
        assert_eq!(env["RUST_LOG"], log_level, "{env}");
        assert_eq!(env["MATCHMAKING_CONFIGURATION_NAME"], "matchgate-default");
        // ... with what must point at the local stack overridden.
        let connections = env["CONNECTIONS_ENDPOINT"].as_str().unwrap_or_default();
        assert!(connections.starts_with("http://127.0.0.1:") && connections.ends_with("/local"), "{connections}");
        assert_eq!(env["CONNECTIONS_TABLE"], format!("{prefix}Connections"));
        assert_eq!(env["TICKETS_TABLE"], format!("{prefix}Tickets"));
        assert_eq!(env["DYNAMODB_ENDPOINT"], dynamodb.endpoint.as_str());
        assert_eq!(env["AWS_REGION"], "us-east-1");
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "matchgatelocal");
        // Each function's own Timeout (Events 30 s, Backstop 50 s; Globals give 10 s), from the
        // moment the process took the invocation, which was between `before` and `after`.
        let started = record["deadline"].as_i64().unwrap_or_default() - timeout_ms;
        assert!(
            (before..=after).contains(&started),
            "deadline - {timeout_ms} ms = {started}, not in {before}..={after}"
        );
    }
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
