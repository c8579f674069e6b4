//! The local GameLift API, driven by the real `aws-sdk-gamelift`: rule sets, configurations,
//! tickets, acceptance and placement, with AWS's shapes and errors.

use aws_sdk_gamelift::types::{AcceptanceType, AttributeValue, FlexMatchMode, Player};
use matchgate_gateway::now_ms;
use matchgate_tests::{gamelift_client, start_stack, teams_rule_set};

fn player(id: &str, skill: f64) -> Player {
    Player::builder()
        .player_id(id)
        .player_attributes("skill", AttributeValue::builder().n(skill).build())
        .latency_in_ms("us-west-2", 40)
        .latency_in_ms("eu-west-1", 90)
        .build()
}

#[tokio::test]
async fn what_up_loaded_from_infra_shows_in_the_api() -> anyhow::Result<()> {
    let stack = start_stack(matchgate_gateway::stack::DEFAULT_RULE_SET).await?;
    let gl = gamelift_client(&stack);
    let configurations = gl.describe_matchmaking_configurations().send().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let c = &configurations.configurations()[0];
    assert_eq!(c.name(), Some("matchgate-default"));
    assert_eq!(c.rule_set_name(), Some("matchgate-default"));
    assert_eq!(c.request_timeout_seconds(), Some(60));
    let rule_sets = gl.describe_matchmaking_rule_sets().names("matchgate-default").send().await?;
    let body: serde_json::Value = serde_json::from_str(rule_sets.rule_sets()[0].rule_set_body().unwrap_or_default())?;
    let file: serde_json::Value = serde_json::from_str(matchgate_gateway::stack::DEFAULT_RULE_SET)?;
    assert_eq!(body, file);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn validate_reports_the_path_and_the_reason() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let gl = gamelift_client(&stack);
    let valid = gl.validate_matchmaking_rule_set().rule_set_body(teams_rule_set(2)).send().await?;
    assert_eq!(valid.valid(), Some(true));
    let bad = serde_json::json!({
        "name": "bad", "ruleLanguageVersion": "1.0",
        "teams": [{"name": "red", "minPlayers": 3, "maxPlayers": 2}]
    });
    let err = gl.validate_matchmaking_rule_set().rule_set_body(bad.to_string()).send().await.expect_err("invalid");
    let service = err.as_service_error().expect("a service error");
    assert!(service.is_invalid_request_exception(), "{err:?}");
    let message = service.meta().message().unwrap_or_default();
    assert!(message.contains("$.teams[0]"), "names where: {message}");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_designer_can_try_a_rule_set_with_acceptance_without_restarting() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let gl = gamelift_client(&stack);
    gl.create_matchmaking_rule_set().name("duel").rule_set_body(teams_rule_set(1)).send().await?;
    let created = gl
        .create_matchmaking_configuration()
        .name("duel-ranked")
        .rule_set_name("duel")
        .request_timeout_seconds(120)
        .acceptance_required(true)
        .acceptance_timeout_seconds(20)
        .flex_match_mode(FlexMatchMode::WithQueue)
        .game_session_queue_arns("arn:aws:gamelift:us-east-1:000000000000:gamesessionqueue/local")
        .send()
        .await?;
    let c = created.configuration().unwrap();
    assert_eq!(c.acceptance_timeout_seconds(), Some(20));
    assert!(c.configuration_arn().unwrap_or_default().ends_with("matchmakingconfiguration/duel-ranked"));

    for (ticket, who, skill) in [("t-ann", "ann", 20.0), ("t-ben", "ben", 25.0)] {
        let started = gl
            .start_matchmaking()
            .configuration_name("duel-ranked")
            .ticket_id(ticket)
            .players(player(who, skill))
            .send()
            .await?;
        assert_eq!(started.matchmaking_ticket().and_then(|t| t.status()).map(|s| s.as_str()), Some("SEARCHING"));
    }
    stack.engine.cycle(now_ms());
    let described = gl.describe_matchmaking().ticket_ids("t-ann").ticket_ids("t-ben").send().await?;
    for t in described.ticket_list() {
        assert_eq!(t.status().map(|s| s.as_str()), Some("REQUIRES_ACCEPTANCE"));
    }
    for (ticket, who) in [("t-ann", "ann"), ("t-ben", "ben")] {
        gl.accept_match().ticket_id(ticket).player_ids(who).acceptance_type(AcceptanceType::Accept).send().await?;
    }
    let described = gl.describe_matchmaking().ticket_ids("t-ann").ticket_ids("t-ben").send().await?;
    let mut sessions = Vec::new();
    for t in described.ticket_list() {
        assert_eq!(t.status().map(|s| s.as_str()), Some("COMPLETED"));
        let info = t.game_session_connection_info().expect("placed");
        assert_eq!(info.ip_address(), Some("127.0.0.1"));
        assert!(info.port().is_some_and(|p| p > 0));
        assert!(info.game_session_arn().unwrap_or_default().contains(":gamesession/"));
        // Both players were closest to us-west-2: the queue placed the session there.
        assert!(info.game_session_arn().unwrap_or_default().contains("/us-west-2/"));
        sessions.extend(info.matched_player_sessions().iter().filter_map(|s| s.player_session_id().map(str::to_owned)));
    }
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 2);

    // Accepting again is refused: the ticket is no longer waiting.
    let again =
        gl.accept_match().ticket_id("t-ann").player_ids("ann").acceptance_type(AcceptanceType::Accept).send().await;
    assert!(again.expect_err("completed").as_service_error().is_some_and(|e| e.is_invalid_request_exception()));

    // A rule set in use cannot be deleted; after its configuration is gone it can.
    let in_use = gl.delete_matchmaking_rule_set().name("duel").send().await.expect_err("in use");
    assert!(in_use.as_service_error().is_some_and(|e| e.is_invalid_request_exception()));
    let updated = gl.update_matchmaking_configuration().name("duel-ranked").request_timeout_seconds(30).send().await?;
    assert_eq!(updated.configuration().and_then(|c| c.request_timeout_seconds()), Some(30));
    gl.delete_matchmaking_configuration().name("duel-ranked").send().await?;
    gl.delete_matchmaking_rule_set().name("duel").send().await?;
    let gone = gl.describe_matchmaking_rule_sets().names("duel").send().await.expect_err("deleted");
    assert!(gone.as_service_error().is_some_and(|e| e.is_not_found_exception()), "{gone:?}");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rejected_and_unknown_requests_get_aws_errors() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let gl = gamelift_client(&stack);
    let unknown = gl.start_matchmaking().configuration_name("nope").players(player("a", 1.0)).send().await;
    assert!(unknown.expect_err("unknown configuration").as_service_error().is_some_and(|e| e.is_not_found_exception()));
    let wrong_type = gl
        .start_matchmaking()
        .configuration_name("matchgate-default")
        .players(
            Player::builder()
                .player_id("a")
                .player_attributes("skill", AttributeValue::builder().s("high").build())
                .build(),
        )
        .send()
        .await;
    let err = wrong_type.expect_err("skill must be a number");
    assert!(err.as_service_error().is_some_and(|e| e.is_invalid_request_exception()), "{err:?}");
    gl.start_matchmaking()
        .configuration_name("matchgate-default")
        .ticket_id("dup")
        .players(player("a", 1.0))
        .send()
        .await?;
    let dup = gl
        .start_matchmaking()
        .configuration_name("matchgate-default")
        .ticket_id("dup")
        .players(player("b", 1.0))
        .send()
        .await;
    assert!(dup.expect_err("duplicate ticket").as_service_error().is_some_and(|e| e.is_invalid_request_exception()));
    gl.stop_matchmaking().ticket_id("dup").send().await?;
    let described = gl.describe_matchmaking().ticket_ids("dup").ticket_ids("never-existed").send().await?;
    assert_eq!(described.ticket_list().len(), 1, "unknown tickets are left out");
    assert_eq!(described.ticket_list()[0].status().map(|s| s.as_str()), Some("CANCELLED"));
    stack.shutdown().await;
    Ok(())
}

/// Older SDKs and the AWS CLI speak awsJson1.1 to GameLift: `POST /` with `X-Amz-Target`.
async fn aws_json(stack: &matchgate_gateway::stack::Stack, target: &str, body: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(stack.addr).await?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: GameLift.{target}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await?;
    let status = response.get(9..12).unwrap_or_default().parse()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

#[tokio::test]
async fn aws_json_1_1_is_served_too() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let (status, body) = aws_json(&stack, "DescribeMatchmakingConfigurations", "{}").await?;
    assert_eq!(status, 200);
    let value: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(value["Configurations"][0]["Name"], "matchgate-default");
    let (status, body) = aws_json(&stack, "StopMatchmaking", r#"{"TicketId":"nope"}"#).await?;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body)?["__type"], "NotFoundException");
    let (status, body) = aws_json(&stack, "StartMatchmaking", "{not json").await?;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body)?["__type"], "SerializationException");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unanswered_match_times_out_on_the_matchmakers_clock() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let gl = gamelift_client(&stack);
    gl.create_matchmaking_configuration()
        .name("needs-accept")
        .rule_set_name("matchgate-default")
        .request_timeout_seconds(300)
        .acceptance_required(true)
        .acceptance_timeout_seconds(20)
        .send()
        .await?;
    for (ticket, who) in [("t-yes", "yes"), ("t-silent", "silent")] {
        gl.start_matchmaking()
            .configuration_name("needs-accept")
            .ticket_id(ticket)
            .players(player(who, 10.0))
            .send()
            .await?;
    }
    let t0 = now_ms();
    stack.engine.cycle(t0);
    gl.accept_match().ticket_id("t-yes").player_ids("yes").acceptance_type(AcceptanceType::Accept).send().await?;
    // Just before the acceptance timeout nothing changes; at it, the silent ticket is cancelled
    // and the one that accepted searches again.
    stack.engine.cycle(t0 + 19_000);
    assert_eq!(stack.engine.ticket_status("t-silent").map(|s| s.as_str()), Some("REQUIRES_ACCEPTANCE"));
    stack.engine.cycle(t0 + 20_000);
    let described = gl.describe_matchmaking().ticket_ids("t-yes").ticket_ids("t-silent").send().await?;
    let status = |id: &str| {
        described
            .ticket_list()
            .iter()
            .find(|t| t.ticket_id() == Some(id))
            .and_then(|t| t.status())
            .map(|s| s.as_str().to_owned())
    };
    assert_eq!(status("t-yes").as_deref(), Some("SEARCHING"));
    assert_eq!(status("t-silent").as_deref(), Some("CANCELLED"));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn standalone_matches_report_teams_but_place_nothing() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let gl = gamelift_client(&stack);
    gl.create_matchmaking_configuration()
        .name("standalone")
        .rule_set_name("matchgate-default")
        .request_timeout_seconds(300)
        .acceptance_required(false)
        .flex_match_mode(FlexMatchMode::Standalone)
        .send()
        .await?;
    for (ticket, who) in [("s-1", "one"), ("s-2", "two")] {
        gl.start_matchmaking()
            .configuration_name("standalone")
            .ticket_id(ticket)
            .players(player(who, 10.0))
            .send()
            .await?;
    }
    stack.engine.cycle(now_ms());
    let described = gl.describe_matchmaking().ticket_ids("s-1").ticket_ids("s-2").send().await?;
    for t in described.ticket_list() {
        assert_eq!(t.status().map(|s| s.as_str()), Some("COMPLETED"));
        assert!(t.game_session_connection_info().is_none(), "STANDALONE places no game session");
        assert!(t.players().iter().all(|p| p.team().is_some()), "but says who is on which team");
    }
    stack.shutdown().await;
    Ok(())
}

/// A ticket holder asks DescribeMatchmaking about their own ticket: AWS lists that ticket's own
/// players' sessions only, so no one learns another ticket's seat credentials from it.
#[tokio::test]
async fn describe_matchmaking_lists_only_the_tickets_own_player_sessions() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let gl = gamelift_client(&stack);
    for (ticket, who) in [("t-red", "red"), ("t-blue", "blue")] {
        gl.start_matchmaking()
            .configuration_name("matchgate-default")
            .ticket_id(ticket)
            .players(player(who, 10.0))
            .send()
            .await?;
    }
    stack.engine.cycle(now_ms());
    let mut seats = Vec::new();
    for (ticket, who, other) in [("t-red", "red", "blue"), ("t-blue", "blue", "red")] {
        let described = gl.describe_matchmaking().ticket_ids(ticket).send().await?;
        let info = described.ticket_list()[0].game_session_connection_info().expect("placed");
        let listed: Vec<(&str, &str)> = info
            .matched_player_sessions()
            .iter()
            .filter_map(|s| Some((s.player_id()?, s.player_session_id()?)))
            .collect();
        assert_eq!(listed.len(), 1, "{ticket}: only its own player: {listed:?}");
        assert_eq!(listed[0].0, who, "{ticket}");
        seats.push((other, listed[0].1.to_owned()));
        // awsJson1.1 answers the same.
        let (status, body) =
            aws_json(&stack, "DescribeMatchmaking", &format!(r#"{{"TicketIds":["{ticket}"]}}"#)).await?;
        assert_eq!(status, 200);
        assert!(!body.contains(&format!(r#""PlayerId":"{other}""#)), "{ticket} names {other}: {body}");
    }
    // The other ticket's answer never holds this player's session ID.
    for (other, seat) in seats {
        let ticket = format!("t-{other}");
        let (_, body) = aws_json(&stack, "DescribeMatchmaking", &format!(r#"{{"TicketIds":["{ticket}"]}}"#)).await?;
        assert!(body.contains("PlayerSessionId"), "{body}");
        assert!(!body.contains(&seat), "{ticket} hands out another ticket's seat: {body}");
    }
    stack.shutdown().await;
    Ok(())
}
