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
use matchgate_gateway::stack::{Functions, Stack, StackConfig};
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
    // A "function" that exits at once: invoking it fails cleanly instead of hanging the gateway,
    // and the connection that triggered it gets API Gateway's error frame.
    let dir = std::env::temp_dir().join(format!("matchgate-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let real = lambda_dir();
    for entry in std::fs::read_dir(&real)? {
        let path = entry?.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("mg-") && !name.contains('.') && name != "mg-ping" {
            let _ = std::os::unix::fs::symlink(&path, dir.join(&name));
        }
    }
    let crashing = dir.join("mg-ping");
    std::fs::write(&crashing, "#!/bin/sh\nexit 3\n")?;
    std::fs::set_permissions(&crashing, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let prefix = format!("crash{}", std::process::id());
    let (stack, _) = stack(Functions::Binaries(dir.clone()), &prefix).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    alice.send(serde_json::json!({"action": "ping"})).await?;
    let frame: serde_json::Value = serde_json::from_str(&alice.next_text().await?)?;
    assert_eq!(frame["message"], "Internal server error", "{frame}");
    // Other routes (other functions) carry on.
    let ticket = alice.matchmake().await?;
    assert!(ticket.starts_with("ticket-"));
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn a_stuck_function_times_out_is_restarted_and_cannot_hang_the_gateway() -> anyhow::Result<()> {
    // A "function" that takes its invocation from the Runtime API and never answers.
    let dir = std::env::temp_dir().join(format!("matchgate-stuck-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(lambda_dir())? {
        let path = entry?.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("mg-") && !name.contains('.') && name != "mg-ping" {
            let _ = std::os::unix::fs::symlink(&path, dir.join(&name));
        }
    }
    let stuck = dir.join("mg-ping");
    std::fs::write(
        &stuck,
        "#!/usr/bin/env python3\nimport os, time, urllib.request\n\
         api = os.environ['AWS_LAMBDA_RUNTIME_API']\n\
         urllib.request.urlopen(f'http://{api}/2018-06-01/runtime/invocation/next').read()\n\
         time.sleep(3600)\n",
    )?;
    std::fs::set_permissions(&stuck, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
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
    for _ in 0..2 {
        // Each time: the invocation overruns, the client gets API Gateway's error frame, the
        // process is killed and a new one takes the next invocation.
        alice.send(serde_json::json!({"action": "ping"})).await?;
        let frame: serde_json::Value = serde_json::from_str(&alice.next_text().await?)?;
        assert_eq!(frame["message"], "Internal server error", "{frame}");
    }
    let ticket = alice.matchmake().await?;
    assert!(ticket.starts_with("ticket-"), "other functions carry on");
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
