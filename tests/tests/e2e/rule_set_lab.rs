//! The rule-set lab against the running stack: traffic recorded by `up --record` and replayed
//! by the simulator forms the same matches as the stack did.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_gamelift::types::{AttributeValue, Player};
use matchgate_gateway::lab::recording::{Recorder, replay};
use matchgate_gateway::lab::simulator::{self, AcceptanceModel, SimulationSetup};
use matchgate_gateway::now_ms;
use matchgate_tests::{gamelift_client, start_stack};

/// 2v2 within 10 skill points: three skill groups of four can only match within themselves.
const RULE_SET: &str = r#"{
    "name": "lab-replay", "ruleLanguageVersion": "1.0",
    "playerAttributes": [{ "name": "skill", "type": "number", "default": 10 }],
    "teams": [{ "name": "red", "minPlayers": 2, "maxPlayers": 2 }, { "name": "blue", "minPlayers": 2, "maxPlayers": 2 }],
    "rules": [{ "name": "FairSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 10 }]
}"#;

#[tokio::test]
async fn a_replayed_recording_forms_the_matches_the_stack_formed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let recording = dir.path().join("traffic.jsonl");
    let stack = start_stack(RULE_SET).await?;
    stack.engine.observe(Arc::new(Recorder::create(&recording)?));
    let gl = gamelift_client(&stack);
    // Interleaved skills, and one player nobody is close to.
    let skills = [10.0, 50.0, 90.0, 12.0, 55.0, 88.0, 300.0, 15.0, 52.0, 91.0, 11.0, 58.0, 85.0];
    let mut tickets = Vec::new();
    for (i, skill) in skills.iter().enumerate() {
        let ticket_id = format!("t{i:02}");
        let player = Player::builder()
            .player_id(format!("p{i:02}"))
            .player_attributes("skill", AttributeValue::builder().n(*skill).build())
            .latency_in_ms("us-east-1", 30 + i as i32)
            .build();
        gl.start_matchmaking()
            .configuration_name(&stack.configuration.name)
            .ticket_id(&ticket_id)
            .players(player)
            .send()
            .await?;
        tickets.push(ticket_id);
    }
    stack.engine.cycle(now_ms());
    // The stack's matches: tickets placed in the same game session.
    let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for chunk in tickets.chunks(10) {
        for t in stack.engine.describe(chunk)? {
            if let Some(session) = t.game_session_connection_info {
                live.entry(session.game_session_arn).or_default().insert(t.ticket_id);
            }
        }
    }
    let live: BTreeSet<BTreeSet<String>> = live.into_values().collect();
    let configuration = stack.configuration.clone();
    stack.shutdown().await;
    assert_eq!(live.len(), 3, "{live:?}");

    let arrivals = replay(&recording, 1.0)?;
    assert_eq!(arrivals.len(), skills.len(), "every StartMatchmaking was recorded");
    let setup = SimulationSetup {
        rule_set_body: RULE_SET.to_owned(),
        configuration,
        batching_interval_ms: 1000,
        acceptance: AcceptanceModel::default(),
        seed: 1,
    };
    let sim = simulator::run(&setup, arrivals)?;
    let simulated: BTreeSet<BTreeSet<String>> =
        sim.matches.iter().map(|m| m.ticket_ids.iter().cloned().collect()).collect();
    assert_eq!(simulated, live);
    // The loner times out in the simulation, as it would have live.
    let loner = sim.arrivals.iter().position(|a| a.ticket_id == "t06").expect("recorded");
    let outcome = sim.results[loner].as_ref().map(|r| r.outcome);
    assert_eq!(outcome, Some(simulator::Outcome::TimedOut));
    Ok(())
}

/// `GET path` on the stack, the body as JSON.
async fn get_json(stack: &matchgate_gateway::stack::Stack, path: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(stack.addr).await?;
    socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no body: {response}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok(serde_json::from_str(body)?)
}

/// Polls `GET /lab/shadow` until `done` holds (the follower reads both engines every second).
async fn shadow_until(
    stack: &matchgate_gateway::stack::Stack,
    done: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    for _ in 0..600 {
        let view = get_json(stack, "/lab/shadow").await?;
        if done(&view) {
            return Ok(view);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the shadow view never got there: {}", get_json(stack, "/lab/shadow").await?)
}

#[tokio::test]
async fn a_shadow_rule_set_sees_the_live_traffic_and_changes_nothing_for_players() -> anyhow::Result<()> {
    // Live: duels. Shadow: 2v2, so two players are not enough for it.
    let config = matchgate_gateway::stack::StackConfig {
        rule_set_body: matchgate_tests::teams_rule_set(1),
        shadow_rule_set: Some(matchgate_tests::teams_rule_set(2)),
        matchmaking_interval: std::time::Duration::from_millis(100),
        ..matchgate_tests::quiet_config()
    };
    let stack = matchgate_tests::start_stack_with(config).await?;
    let gl = gamelift_client(&stack);
    let start = |i: usize| {
        gl.start_matchmaking()
            .configuration_name(&stack.configuration.name)
            .ticket_id(format!("s{i}"))
            .players(Player::builder().player_id(format!("p{i}")).build())
            .send()
    };
    start(0).await?;
    start(1).await?;
    let view = shadow_until(&stack, |v| v["live"]["matched"] == 2).await?;
    assert_eq!(view["shadow"]["matched"], 0, "{view}");
    assert_eq!(view["shadow"]["searching"], 2, "{view}");
    // The players got their duel, exactly as without a shadow.
    let described = stack.engine.describe(&["s0".into(), "s1".into()])?;
    assert!(described.iter().all(|t| t.status == matchgate_protocol::TicketStatus::Completed), "{described:?}");
    start(2).await?;
    start(3).await?;
    let view = shadow_until(&stack, |v| v["live"]["matched"] == 4 && v["shadow"]["matched"] == 4).await?;
    assert_eq!(view["live"]["tickets"], 4, "{view}");
    assert_eq!(view["shadow"]["searching"], 0, "{view}");
    stack.shutdown().await;
    Ok(())
}
