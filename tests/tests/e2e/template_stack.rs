//! The local stack runs what infra/template.yaml deploys: its matchmaking configuration (with
//! parameter overrides, as `sam deploy --parameter-overrides` takes them) and its rule set.

use std::collections::BTreeMap;

use matchgate_gateway::now_ms;
use matchgate_gateway::stack::{LOCAL_PARAMETER_DEFAULTS, StackConfig};
use matchgate_protocol::Push;
use matchgate_tests::{Client, quiet_config, start_stack_with};
use serde_json::json;

fn template_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")
}

async fn stack_from_template(overrides: &[(&str, &str)]) -> anyhow::Result<matchgate_gateway::stack::Stack> {
    stack_from(&template_path(), overrides).await
}

async fn stack_from(
    path: &std::path::Path,
    overrides: &[(&str, &str)],
) -> anyhow::Result<matchgate_gateway::stack::Stack> {
    let mut parameters: BTreeMap<String, String> =
        LOCAL_PARAMETER_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    parameters.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let template = matchgate_gateway::template::load(path, &parameters)?;
    // Boxed: the stack's start is a large future.
    Box::pin(start_stack_with(quiet_config().with_template(&template)?)).await
}

#[tokio::test]
async fn the_configuration_and_rule_set_come_from_the_template() -> anyhow::Result<()> {
    // A copy of the template whose rule set differs from every built-in one: the stack can only
    // serve it if it loaded it from the template.
    let yaml = std::fs::read_to_string(template_path())?;
    let original = r#"          "name": "matchgate-default","#;
    assert_eq!(yaml.matches(original).count(), 1, "the rule set's name in RuleSetBody");
    let edited = yaml
        .replace(original, r#"          "name": "edited-in-a-copy","#)
        .replace(r#"              "default": 10"#, r#"              "default": 17"#);
    let dir = std::env::temp_dir().join(format!("matchgate-template-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("template.yaml");
    std::fs::write(&path, edited)?;
    let stack = stack_from(&path, &[("RequestTimeoutSeconds", "45")]).await?;
    assert_eq!(stack.configuration.request_timeout_seconds, 45);
    assert_eq!(stack.configuration.name, "matchgate-default");
    assert!(stack.configuration.rule_set_name.contains("-rules-"), "{}", stack.configuration.rule_set_name);

    // What a designer sees through the GameLift API.
    let gamelift = matchgate_tests::gamelift_client(&stack);
    let configurations = gamelift.describe_matchmaking_configurations().names("matchgate-default").send().await?;
    let rule_set_name = configurations.configurations()[0].rule_set_name().unwrap_or_default().to_owned();
    assert_eq!(rule_set_name, stack.configuration.rule_set_name);
    let rule_sets = gamelift.describe_matchmaking_rule_sets().names(&rule_set_name).send().await?;
    let deployed: serde_json::Value =
        serde_json::from_str(rule_sets.rule_sets()[0].rule_set_body().unwrap_or_default())?;
    assert_eq!(deployed["name"], "edited-in-a-copy", "{deployed}");
    assert_eq!(deployed["playerAttributes"][0]["default"], 17, "{deployed}");
    let built_in: serde_json::Value = serde_json::from_str(matchgate_gateway::stack::DEFAULT_RULE_SET)?;
    assert_ne!(deployed, built_in);
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn acceptance_switched_on_by_a_parameter_is_what_players_get() -> anyhow::Result<()> {
    let stack = stack_from_template(&[("AcceptanceRequired", "true"), ("AcceptanceTimeoutSeconds", "30")]).await?;
    assert!(stack.configuration.acceptance_required);
    let mut alice = Client::connect(&stack, "alice").await?;
    let mut bob = Client::connect(&stack, "bob").await?;
    let mut tickets = Vec::new();
    for c in [&mut alice, &mut bob] {
        // The template's rule set has a latency rule: `matchmake` reports us-east-1.
        let ticket_id = c.matchmake().await?;
        c.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
        tickets.push(ticket_id);
    }
    stack.engine.cycle(now_ms());
    for (c, ticket) in [(&mut alice, &tickets[0]), (&mut bob, &tickets[1])] {
        let proposed = c.expect("proposed", |p| matches!(p, Push::PotentialMatchCreated { .. })).await?;
        assert!(matches!(
            proposed,
            Push::PotentialMatchCreated { acceptance_required: true, acceptance_timeout: Some(30), .. }
        ));
        c.send(json!({"action": "accept", "ticketId": ticket, "accept": true})).await?;
    }
    for c in [&mut alice, &mut bob] {
        let done = c.expect("succeeded", |p| matches!(p, Push::MatchmakingSucceeded { .. })).await?;
        assert!(matches!(done, Push::MatchmakingSucceeded { port: Some(_), player_session_id: Some(_), .. }));
    }
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_rejected_match_cancels_the_rejecter_and_returns_the_other_to_searching() -> anyhow::Result<()> {
    let stack = stack_from_template(&[("AcceptanceRequired", "true"), ("AcceptanceTimeoutSeconds", "30")]).await?;
    let mut alice = Client::connect(&stack, "alice").await?;
    let mut bob = Client::connect(&stack, "bob").await?;
    let mut tickets = Vec::new();
    for c in [&mut alice, &mut bob] {
        let ticket_id = c.matchmake().await?;
        c.expect("searching", |p| matches!(p, Push::MatchmakingSearching { .. })).await?;
        tickets.push(ticket_id);
    }
    stack.engine.cycle(now_ms());
    alice.expect("proposed", |p| matches!(p, Push::PotentialMatchCreated { .. })).await?;
    bob.expect("proposed", |p| matches!(p, Push::PotentialMatchCreated { .. })).await?;
    // Bob accepts; then Alice rejects. As AcceptMatch documents, a ticket whose players all
    // accepted returns to searching, and one with a player who rejected (or never answered) is
    // cancelled.
    bob.send(json!({"action": "accept", "ticketId": tickets[1], "accept": true})).await?;
    bob.expect("his acceptance", |p| matches!(p, Push::AcceptMatch { accepted_count: 1, .. })).await?;
    alice.send(json!({"action": "accept", "ticketId": tickets[0], "accept": false})).await?;
    let ended = alice.expect("cancelled", |p| matches!(p, Push::MatchmakingCancelled { .. })).await?;
    assert!(matches!(ended, Push::MatchmakingCancelled { ticket_id, .. } if ticket_id == tickets[0]));
    let completed = bob.expect("completed", |p| matches!(p, Push::AcceptMatchCompleted { .. })).await?;
    assert!(matches!(completed, Push::AcceptMatchCompleted { acceptance, .. } if acceptance == "Rejected"));
    // Bob is searching again, and Alice's cancelled ticket cannot be accepted any more.
    assert!(matches!(
        bob.status(Some(&tickets[1])).await?,
        Push::AcceptMatchCompleted { .. } | Push::MatchmakingSearching { .. }
    ));
    assert_eq!(stack.engine.ticket_status(&tickets[1]).map(|s| s.as_str()), Some("SEARCHING"));
    stack.shutdown().await;
    Ok(())
}

#[test]
fn local_defaults_place_on_the_simulated_fleet() {
    let config = StackConfig::default();
    assert!(LOCAL_PARAMETER_DEFAULTS.iter().any(|(k, v)| *k == "FlexMatchMode" && *v == "WITH_QUEUE"));
    assert_eq!(config.configuration.flex_match_mode, matchgate_gateway::gamelift::FlexMatchMode::WithQueue);
}
