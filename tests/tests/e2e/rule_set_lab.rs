//! The rule-set lab against the running stack: traffic recorded by `up --record` and replayed
//! by the simulator forms the same matches as the stack did.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_gamelift::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_gamelift::types::{AttributeValue, Player};
use matchgate_gateway::lab::recording::{Recorder, replay};
use matchgate_gateway::lab::simulator::{self, AcceptanceModel, SimulationSetup};
use matchgate_gateway::now_ms;
use matchgate_tests::start_stack;

/// 2v2 within 10 skill points: three skill groups of four can only match within themselves.
const RULE_SET: &str = r#"{
    "name": "lab-replay", "ruleLanguageVersion": "1.0",
    "playerAttributes": [{ "name": "skill", "type": "number", "default": 10 }],
    "teams": [{ "name": "red", "minPlayers": 2, "maxPlayers": 2 }, { "name": "blue", "minPlayers": 2, "maxPlayers": 2 }],
    "rules": [{ "name": "FairSkill", "type": "batchDistance", "batchAttribute": "skill", "maxDistance": 10 }]
}"#;

fn sdk(stack: &matchgate_gateway::stack::Stack) -> aws_sdk_gamelift::Client {
    let config = aws_sdk_gamelift::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", stack.addr))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "matchgate-tests"))
        .build();
    aws_sdk_gamelift::Client::from_conf(config)
}

#[tokio::test]
async fn a_replayed_recording_forms_the_matches_the_stack_formed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let recording = dir.path().join("traffic.jsonl");
    let stack = start_stack(RULE_SET).await?;
    stack.engine.observe(Arc::new(Recorder::create(&recording)?));
    let gl = sdk(&stack);
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
            if let Some(session) = t.game_session {
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
