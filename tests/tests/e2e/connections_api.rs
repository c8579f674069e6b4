//! The @connections Management API, driven by the real `aws-sdk-apigatewaymanagement`.

use aws_sdk_apigatewaymanagement::primitives::Blob;
use matchgate_gateway::apigw::Limits;
use matchgate_gateway::stack::StackConfig;
use matchgate_protocol::Push;
use matchgate_tests::{Client, management_client, quiet_config, start_stack, start_stack_with, teams_rule_set};

#[tokio::test]
async fn post_get_delete_and_gone_through_the_aws_sdk() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let sdk = management_client(&stack);
    let mut alice = Client::connect(&stack, "alice").await?;
    let connection_id = alice.connection_id().await?;
    // API Gateway's IDs end in '=', which the SDK URL-encodes: the path must still resolve.
    assert!(connection_id.ends_with('='));

    sdk.post_to_connection()
        .connection_id(&connection_id)
        .data(Blob::new(r#"{"type":"Pong","connectionId":"x","playerId":"from-the-sdk"}"#))
        .send()
        .await?;
    assert!(matches!(alice.next_push().await?, Push::Pong { player_id, .. } if player_id == "from-the-sdk"));

    let info = sdk.get_connection().connection_id(&connection_id).send().await?;
    assert!(info.connected_at().is_some());
    assert!(info.last_active_at().is_some());
    assert_eq!(info.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));

    sdk.delete_connection().connection_id(&connection_id).send().await?;
    assert_eq!(alice.closed().await?, Some(1000), "DELETE closes the socket");

    let gone = sdk.post_to_connection().connection_id(&connection_id).data(Blob::new("late")).send().await;
    let err = gone.expect_err("a closed connection is gone");
    assert!(err.as_service_error().is_some_and(|e| e.is_gone_exception()), "{err:?}");
    let unknown = sdk.get_connection().connection_id("NoSuchConnecti=").send().await.expect_err("unknown");
    assert!(unknown.as_service_error().is_some_and(|e| e.is_gone_exception()), "{unknown:?}");
    let raw = unknown.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(410));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn post_over_128_kb_is_refused_with_413() -> anyhow::Result<()> {
    let stack = start_stack(&teams_rule_set(1)).await?;
    let sdk = management_client(&stack);
    let mut alice = Client::connect(&stack, "alice").await?;
    let connection_id = alice.connection_id().await?;
    let big = "x".repeat(128 * 1024 + 1);
    let err =
        sdk.post_to_connection().connection_id(&connection_id).data(Blob::new(big)).send().await.expect_err("413");
    assert!(err.as_service_error().is_some_and(|e| e.is_payload_too_large_exception()), "{err:?}");
    // The connection is unaffected.
    assert_eq!(alice.connection_id().await?, connection_id);
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn post_above_2_mb_follows_the_configured_message_limit() -> anyhow::Result<()> {
    // A limit past axum's default body limit of 2 MB: the configured one decides, both ways.
    let limits = Limits { max_message_bytes: 3 * 1024 * 1024, ..Limits::default() };
    let stack = start_stack_with(StackConfig { limits, rule_set_body: teams_rule_set(1), ..quiet_config() }).await?;
    let sdk = management_client(&stack);
    let mut alice = Client::connect(&stack, "alice").await?;
    let connection_id = alice.connection_id().await?;
    let fits = "y".repeat(5 * 512 * 1024);
    sdk.post_to_connection().connection_id(&connection_id).data(Blob::new(fits.clone())).send().await?;
    assert_eq!(alice.next_text().await?, fits);
    let big = "z".repeat(3 * 1024 * 1024 + 1);
    let err =
        sdk.post_to_connection().connection_id(&connection_id).data(Blob::new(big)).send().await.expect_err("413");
    assert!(err.as_service_error().is_some_and(|e| e.is_payload_too_large_exception()), "{err:?}");
    assert_eq!(alice.connection_id().await?, connection_id);
    stack.shutdown().await;
    Ok(())
}
