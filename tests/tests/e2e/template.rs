//! infra/template.yaml is what `sam deploy` deploys and what `matchgate up` reads: these tests
//! hold it to the workspace (routes the gateway serves, binaries the workspace builds, the rule
//! set the local stack loads, the DynamoDB adapter's table schema) and check that the local
//! reading of it follows parameter overrides and reports what it cannot evaluate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use matchgate_gateway::template::{self, LocalTemplate, TemplateError};
use matchgate_lambdas::adapters::dynamodb::{KeyAttribute, KeyAttributeType, SCHEMAS};
use matchgate_lambdas::routes::{self, ROUTES};

/// Route keys the template routes but the route table does not have yet, with the function the
/// template integrates them with. DESIGN.md lists `watch` as the observers' action, but
/// `matchgate_lambdas::routes::ROUTES` lacks it. Running from the template, the local gateway
/// selects the `watch` route as API Gateway does (it routes on the template's route keys, see
/// template_routes.rs), and mg-ping gets `routeKey: watch` and serves it as `$default`: no handler
/// parses a `watch` action yet. Take `watch` out of this list when ROUTES gains it (the test
/// below fails then, as a reminder).
const ROUTED_AHEAD_OF_PROTOCOL: &[(&str, &str)] = &[("watch", "mg-ping")];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template_path() -> PathBuf {
    repo().join("infra/template.yaml")
}

fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<LocalTemplate, TemplateError> {
    template::load(&template_path(), &overrides(pairs))
}

fn deployed() -> LocalTemplate {
    load(&[]).unwrap_or_else(|e| panic!("infra/template.yaml does not load: {e}"))
}

/// The template's text with `from` (which must occur exactly once) replaced by `to`.
fn edited(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(template_path()).expect("read infra/template.yaml");
    assert_eq!(text.matches(from).count(), 1, "{from:?} should occur once in infra/template.yaml");
    text.replace(from, to)
}

/// The binaries of the lambdas crate: src/bin/NAME.rs, src/bin/NAME/main.rs and `[[bin]]`
/// names in its Cargo.toml, as cargo discovers them.
fn workspace_lambda_binaries() -> BTreeSet<String> {
    let lambdas = repo().join("lambdas");
    let mut binaries = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(lambdas.join("src/bin")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs") {
                binaries.extend(path.file_stem().map(|s| s.to_string_lossy().into_owned()));
            } else if path.join("main.rs").is_file() {
                binaries.extend(path.file_name().map(|s| s.to_string_lossy().into_owned()));
            }
        }
    }
    let manifest = std::fs::read_to_string(lambdas.join("Cargo.toml")).expect("read lambdas/Cargo.toml");
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(name) = line.strip_prefix("name").and_then(|r| r.trim().strip_prefix('=')) {
            binaries.insert(name.trim().trim_matches('"').to_owned());
        }
    }
    binaries
}

#[test]
fn the_deployed_template_is_read_without_warnings() {
    let template = deployed();
    assert!(
        template.warnings.is_empty(),
        "the local stack could not evaluate parts of infra/template.yaml:\n{}",
        template.warnings.join("\n")
    );
    // DESIGN.md's contract: route selection is $request.body.action.
    assert_eq!(template.route_selection_expression, "$request.body.action");
    assert_eq!(template.stage_name, "prod");
    assert_eq!(load(&[("StageName", "local")]).expect("load").stage_name, "local");
}

#[test]
fn every_route_of_the_template_is_one_the_gateway_serves() {
    let template = deployed();
    let served: BTreeSet<&str> = routes::route_keys().collect();
    let ahead: BTreeSet<&str> = ROUTED_AHEAD_OF_PROTOCOL.iter().map(|(key, _)| *key).collect();
    let unserved: Vec<&str> = template
        .routes
        .iter()
        .map(|r| r.route_key.as_str())
        .filter(|key| !served.contains(key) && !ahead.contains(key))
        .collect();
    assert!(unserved.is_empty(), "the template routes {unserved:?}, which the gateway does not serve");
    let routed: BTreeSet<&str> = template.routes.iter().map(|r| r.route_key.as_str()).collect();
    let missing: Vec<&&str> = served.iter().filter(|key| !routed.contains(**key)).collect();
    assert!(missing.is_empty(), "the gateway serves {missing:?}, which the template does not route");
}

#[test]
fn watch_is_routed_in_the_template_ahead_of_the_protocol() {
    let template = deployed();
    let binaries = workspace_lambda_binaries();
    for (key, _) in ROUTED_AHEAD_OF_PROTOCOL {
        assert!(
            routes::route(key).is_none(),
            "ROUTES now has {key:?}: remove it from ROUTED_AHEAD_OF_PROTOCOL in tests/tests/e2e/template.rs"
        );
        let Some(route) = template.route(key) else { continue };
        eprintln!(
            "note: infra/template.yaml routes {key:?} to {} ({}), but matchgate_lambdas::routes::ROUTES \
             has no {key:?}: the route is selected, but no handler parses the action yet",
            route.function_logical_id, route.binary
        );
        assert!(
            binaries.contains(&route.binary),
            "{key:?} is routed to {}, whose binary {} is not in lambdas/src/bin ({binaries:?})",
            route.function_logical_id,
            route.binary
        );
    }
}

#[test]
fn each_route_reaches_its_handler_binary() {
    let template = deployed();
    let actual: Vec<(&str, &str)> = template.routes.iter().map(|r| (r.route_key.as_str(), r.binary.as_str())).collect();
    let mut expected: Vec<(&str, &str)> =
        ROUTES.iter().map(|r| (r.key, r.function)).chain(ROUTED_AHEAD_OF_PROTOCOL.iter().copied()).collect();
    expected.sort();
    assert_eq!(actual, expected);
    for route in &template.routes {
        assert_eq!(template.functions[&route.function_logical_id].binary, route.binary);
    }
}

#[test]
fn connect_has_the_request_authorizer_and_no_other_route_has_one() {
    let template = deployed();
    let authorizer = template.authorizer.as_ref().expect("$connect has an authorizer");
    assert_eq!(authorizer.binary, routes::AUTHORIZER_FUNCTION);
    assert_eq!(authorizer.function_logical_id, "AuthorizerFunction");
    // No identity source by default: browsers send the token in Sec-WebSocket-Protocol.
    assert!(authorizer.identity_sources.is_empty(), "{:?}", authorizer.identity_sources);
    assert_eq!(template.route("$connect").and_then(|r| r.authorizer.as_ref()), Some(authorizer));
    let others: Vec<&str> = template
        .routes
        .iter()
        .filter(|r| r.route_key != "$connect" && r.authorizer.is_some())
        .map(|r| r.route_key.as_str())
        .collect();
    assert!(others.is_empty(), "authorizers on {others:?}");

    let query_only = load(&[("TokenIdentitySource", "querystring")]).expect("load");
    let authorizer = query_only.authorizer.expect("$connect has an authorizer");
    assert_eq!(authorizer.identity_sources, ["route.request.querystring.token"]);
}

#[test]
fn every_function_is_a_binary_the_workspace_builds() {
    let template = deployed();
    let binaries = workspace_lambda_binaries();
    let deployed: BTreeMap<&str, &str> =
        template.functions.iter().map(|(id, f)| (f.binary.as_str(), id.as_str())).collect();
    let unbuilt: Vec<String> = deployed
        .iter()
        .filter(|(binary, _)| !binaries.contains(**binary))
        .map(|(binary, id)| format!("{id} -> {binary}"))
        .collect();
    assert!(
        unbuilt.is_empty(),
        "functions of infra/template.yaml whose binary lambdas/ does not build: {unbuilt:?} (lambdas builds {binaries:?})"
    );
    let undeployed: Vec<&String> = binaries.iter().filter(|b| !deployed.contains_key(b.as_str())).collect();
    assert!(undeployed.is_empty(), "lambdas/ builds {undeployed:?}, which infra/template.yaml does not deploy");
    assert_eq!(template.functions.len(), deployed.len(), "two functions share a binary");
}

#[test]
fn the_events_and_backstop_functions_have_their_triggers() {
    let template = deployed();
    let by_binary =
        |binary: &str| template.functions.values().find(|f| f.binary == binary).unwrap_or_else(|| panic!("{binary}"));
    assert_eq!(by_binary(routes::EVENTS_FUNCTION).events, ["SNS"]);
    assert_eq!(by_binary(routes::BACKSTOP_FUNCTION).events, ["Schedule"]);
    let triggered: Vec<&str> =
        template.functions.values().filter(|f| !f.events.is_empty()).map(|f| f.binary.as_str()).collect();
    assert_eq!(triggered.len(), 2, "{triggered:?}");
}

#[test]
fn functions_get_the_environment_the_lambdas_read() {
    let template = deployed();
    let tables = &template.tables;
    for (id, function) in &template.functions {
        let env = &function.environment;
        let var = |name: &str| env.get(name).map(String::as_str).unwrap_or_else(|| panic!("{id} has no {name}"));
        // The Lambdas call StartMatchmaking with this name: it must be the configuration's.
        assert_eq!(var("MATCHMAKING_CONFIGURATION_NAME"), template.configuration.name, "{id}");
        assert_eq!(var("CONNECTIONS_TABLE"), tables["ConnectionsTable"].table_name, "{id}");
        assert_eq!(var("PLAYERS_TABLE"), tables["PlayersTable"].table_name, "{id}");
        assert_eq!(var("TICKETS_TABLE"), tables["TicketsTable"].table_name, "{id}");
        assert_eq!(var("PARTIES_TABLE"), tables["PartiesTable"].table_name, "{id}");
        // Parties are held to the deployed rule set's largest team.
        let max = matchgate_gateway::stack::max_party_members_of(&template.rule_set_body);
        assert_eq!(var("MAX_PARTY_MEMBERS"), max.to_string(), "{id}");
        assert_eq!(var("RUST_LOG"), "info", "{id}");
        assert_eq!(
            var("CONNECTIONS_ENDPOINT"),
            format!("https://WebSocketApi.execute-api.{}.amazonaws.com/prod", template::REGION),
            "{id}"
        );
    }
    let authorizer = &template.functions["AuthorizerFunction"].environment;
    // With no JwksUrl the stack creates a user pool and derives the issuer from it.
    assert_eq!(authorizer["TOKEN_ISSUER"], format!("https://cognito-idp.{}.amazonaws.com/UserPool", template::REGION));
    let external = load(&[
        ("JwksUrl", "https://issuer.example/.well-known/jwks.json"),
        ("TokenIssuer", "https://issuer.example"),
        ("TokenAudience", "game"),
    ])
    .expect("load");
    let authorizer = &external.functions["AuthorizerFunction"].environment;
    assert_eq!(authorizer["JWKS_URL"], "https://issuer.example/.well-known/jwks.json");
    assert_eq!(authorizer["TOKEN_ISSUER"], "https://issuer.example");
    assert_eq!(authorizer["TOKEN_AUDIENCE"], "game");
}

#[test]
fn the_deployed_rule_set_is_the_one_the_local_stack_loads() {
    let template = deployed();
    let file = std::fs::read_to_string(repo().join("infra/flexmatch/ruleset.json")).expect("read ruleset.json");
    let parse = |text: &str, what: &str| -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
    };
    assert_eq!(
        parse(&template.rule_set_body, "the template's RuleSetBody"),
        parse(&file, "infra/flexmatch/ruleset.json"),
        "RuleSetBody in infra/template.yaml differs from infra/flexmatch/ruleset.json"
    );
    assert_eq!(template.rule_set_body, file, "same JSON, different text: paste ruleset.json verbatim");
    assert_eq!(matchgate_gateway::stack::DEFAULT_RULE_SET, file, "the local stack loads another rule set");
    // GameLift names the rule set after the resource's Name, not the body's "name".
    assert_eq!(template.rule_set_name, format!("{}-rules-1", template::STACK_NAME));
    assert_eq!(template.configuration.rule_set_name, template.rule_set_name);
}

#[test]
fn the_tables_match_the_dynamodb_adapter_schema() {
    let template = deployed();
    let type_name = |t: KeyAttributeType| match t {
        KeyAttributeType::S => "S",
        KeyAttributeType::N => "N",
    };
    let key = |k: KeyAttribute| k.name.to_owned();
    for schema in &SCHEMAS {
        let id = schema.logical_id;
        let table = template.tables.get(id).unwrap_or_else(|| panic!("infra/template.yaml has no table {id}"));
        assert_eq!(table.hash_key, schema.hash_key.name, "{id} partition key");
        assert_eq!(table.range_key, None, "{id} has a sort key the adapter does not use");
        let definitions: BTreeMap<String, String> = schema
            .attribute_definitions()
            .into_iter()
            .map(|k| (key(k), type_name(k.attribute_type).to_owned()))
            .collect();
        assert_eq!(table.attribute_definitions, definitions, "{id} AttributeDefinitions");
        let indexes: Vec<(String, String, Option<String>)> =
            table.indexes.iter().map(|i| (i.name.clone(), i.hash_key.clone(), i.range_key.clone())).collect();
        let expected: Vec<(String, String, Option<String>)> =
            schema.indexes.iter().map(|i| (i.name.to_owned(), key(i.hash_key), i.range_key.map(key))).collect();
        assert_eq!(indexes, expected, "{id} GlobalSecondaryIndexes");
        // Readers fetch the row with a consistent GetItem: the indexes carry keys only.
        assert!(table.indexes.iter().all(|i| i.projection_type == "KEYS_ONLY"), "{id}: {:?}", table.indexes);
        assert_eq!(table.ttl_attribute.as_deref(), Some(schema.ttl_attribute), "{id} TTL");
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST", "{id}");
        assert!(table.point_in_time_recovery, "{id} point-in-time recovery");
    }
    let known: BTreeSet<&str> = SCHEMAS.iter().map(|s| s.logical_id).collect();
    let extra: Vec<&String> = template.tables.keys().filter(|id| !known.contains(id.as_str())).collect();
    assert!(extra.is_empty(), "tables the DynamoDB adapter does not know: {extra:?}");
}

#[test]
fn the_default_configuration_is_standalone_without_acceptance() {
    let configuration = deployed().configuration;
    assert_eq!(configuration.name, "matchgate-default");
    assert_eq!(configuration.request_timeout_seconds, 60);
    assert!(!configuration.acceptance_required);
    assert_eq!(configuration.acceptance_timeout_seconds, Some(30));
    assert_eq!(configuration.flex_match_mode, "STANDALONE");
    assert!(configuration.game_session_queue_arns.is_empty());
    assert_eq!(configuration.backfill_mode.as_deref(), Some("MANUAL"));
    assert_eq!(configuration.additional_player_count, 0);
    assert_eq!(configuration.custom_event_data, None);
    let topic = format!("arn:aws:sns:{}:{}:MatchmakingEventsTopic", template::REGION, template::ACCOUNT_ID);
    assert_eq!(configuration.notification_target, Some(topic));
}

#[test]
fn parameter_overrides_change_the_configuration() {
    let queue = "arn:aws:gamelift:us-east-1:000000000000:gamesessionqueue/matchgate";
    let template = load(&[
        ("AcceptanceRequired", "true"),
        ("AcceptanceTimeoutSeconds", "45"),
        ("RequestTimeoutSeconds", "120"),
        ("FlexMatchMode", "WITH_QUEUE"),
        ("GameSessionQueueArn", queue),
        ("BackfillMode", "AUTOMATIC"),
        ("MatchmakingConfigurationName", "ranked"),
        ("RuleSetRevision", "7"),
    ])
    .expect("load");
    let configuration = &template.configuration;
    assert!(configuration.acceptance_required);
    assert_eq!(configuration.acceptance_timeout_seconds, Some(45));
    assert_eq!(configuration.request_timeout_seconds, 120);
    assert_eq!(configuration.flex_match_mode, "WITH_QUEUE");
    assert_eq!(configuration.game_session_queue_arns, [queue]);
    assert_eq!(configuration.backfill_mode.as_deref(), Some("AUTOMATIC"));
    assert_eq!(configuration.name, "ranked");
    assert_eq!(template.rule_set_name, format!("{}-rules-7", template::STACK_NAME));
    assert_eq!(template.functions["MatchmakeFunction"].environment["MATCHMAKING_CONFIGURATION_NAME"], "ranked");
    // Both names have an AllowedPattern, which the local reading leaves to AWS and says so.
    assert_eq!(
        template.warnings,
        [
            "Parameters.MatchmakingConfigurationName: AllowedPattern is not checked locally; AWS checks it on deploy",
            "Parameters.RuleSetRevision: AllowedPattern is not checked locally; AWS checks it on deploy",
        ]
    );
}

#[test]
fn parameters_are_checked_as_cloudformation_checks_them() {
    let refused = |pairs: &[(&str, &str)], expected: &str| {
        let err = load(pairs).expect_err(&format!("{pairs:?} should be refused")).to_string();
        assert!(err.contains(expected), "{pairs:?}: {err}");
    };
    // The template's Rules.
    refused(&[("FlexMatchMode", "WITH_QUEUE")], "GameSessionQueueArn is required when FlexMatchMode is WITH_QUEUE");
    refused(&[("BackfillMode", "AUTOMATIC")], "STANDALONE matchmaking supports only BackfillMode MANUAL");
    refused(&[("JwksUrl", "https://issuer.example/jwks.json")], "TokenIssuer is required");
    // AllowedValues, Number bounds, unknown names.
    refused(&[("FlexMatchMode", "QUEUED")], "Parameters.FlexMatchMode");
    refused(&[("AcceptanceRequired", "yes")], "AllowedValues");
    refused(&[("RequestTimeoutSeconds", "0")], "MinValue");
    refused(&[("RequestTimeoutSeconds", "sixty")], "is not a Number");
    refused(&[("RequestTimeout", "60")], "RequestTimeout is not a parameter of the template");
}

#[test]
fn an_unsupported_intrinsic_in_a_needed_value_is_an_error_naming_it() {
    let yaml = edited(
        "RequestTimeoutSeconds: !Ref RequestTimeoutSeconds",
        "RequestTimeoutSeconds: !ImportValue shared-request-timeout",
    );
    let err = template::parse(&yaml, &BTreeMap::new()).expect_err("RequestTimeoutSeconds is needed");
    let message = err.to_string();
    assert!(matches!(err, TemplateError::Unsupported { .. }), "{message}");
    assert!(message.contains("Fn::ImportValue"), "{message}");
    assert!(message.contains("Resources.MatchmakingConfiguration.Properties.RequestTimeoutSeconds"), "{message}");

    // The same in a route's integration.
    let yaml = edited(
        "IntegrationUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${StatusFunction.Arn}/invocations",
        "IntegrationUri: !GetAZs ''",
    );
    let message = template::parse(&yaml, &BTreeMap::new()).expect_err("the status route is needed").to_string();
    assert!(message.contains("Fn::GetAZs") && message.contains("StatusIntegration"), "{message}");
}

#[test]
fn an_unsupported_intrinsic_elsewhere_is_a_warning() {
    let yaml = edited("Threshold: !Ref IntegrationErrorThreshold", "Threshold: !ImportValue shared-threshold");
    let template = template::parse(&yaml, &BTreeMap::new()).expect("an alarm threshold is not needed locally");
    assert_eq!(template.warnings.len(), 1, "{:?}", template.warnings);
    let warning = &template.warnings[0];
    assert!(
        warning.contains("Fn::ImportValue")
            && warning.contains("Resources.ApiIntegrationErrorAlarm.Properties.Threshold"),
        "{warning}"
    );

    // An environment variable the local stack cannot resolve is left out, and said so.
    let yaml = edited("RUST_LOG: !Ref LogLevel", "RUST_LOG: !ImportValue shared-log-level");
    let template = template::parse(&yaml, &BTreeMap::new()).expect("environment is resolved where possible");
    assert!(template.functions.values().all(|f| !f.environment.contains_key("RUST_LOG")));
    assert!(
        template.warnings.iter().any(|w| w.contains("MatchmakeFunction runs locally without RUST_LOG")),
        "{:?}",
        template.warnings
    );
}
