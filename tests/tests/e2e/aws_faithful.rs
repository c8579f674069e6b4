//! AWS-faithful mode end to end: the very Lambda binaries that deploy to AWS handle every route
//! and FlexMatch's events, behind a local Lambda Runtime API, with their state in DynamoDB
//! Local; then the same scenario with the handlers in-process over the same DynamoDB adapters.
//! With JWT auth, the authorizer binary (`mg-authorizer`) authorizes every `$connect`, and its
//! answer is acted on as API Gateway acts on it.
//!
//! The binaries are built by `scripts/test.sh` (`cargo test --workspace --all-targets` builds
//! every bin); run `cargo build -p matchgate-lambdas --bins` first when running these tests alone.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use matchgate_gateway::apigw::AuthMode;
use matchgate_gateway::issuer::{DEV_CLIENT_ID, DEV_ISSUER, DevIssuer};
use matchgate_gateway::now_ms;
use matchgate_gateway::stack::{Functions, LOCAL_PARAMETER_DEFAULTS, Stack, StackConfig};
use matchgate_lambdas::ports::SystemClock;
use matchgate_protocol::Push;
use matchgate_tests::dynamodb_local::DynamoDbLocal;
use matchgate_tests::{Client, handshake_status, quiet_config, start_stack_with, teams_rule_set};

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
    stack_with(functions, prefix, AuthMode::None, None).await
}

async fn stack_with(
    functions: Functions,
    prefix: &str,
    auth: AuthMode,
    jwks: Option<serde_json::Value>,
) -> anyhow::Result<(Stack, &'static DynamoDbLocal)> {
    let dynamodb = DynamoDbLocal::shared().await?;
    let config = StackConfig {
        rule_set_body: teams_rule_set(2),
        dynamodb_endpoint: Some(dynamodb.endpoint.clone()),
        table_prefix: prefix.to_owned(),
        functions,
        auth,
        jwks,
        ..quiet_config()
    };
    Ok((start_stack_with(config).await?, dynamodb))
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("matchgate-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Four players connect (with `--auth none`, or with a token from `issuer`) and are matched.
async fn four_players_are_matched(
    stack: &Stack,
    dynamodb: &DynamoDbLocal,
    prefix: &str,
    issuer: Option<&DevIssuer>,
) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    let mut tickets = Vec::new();
    for name in ["ana", "bo", "cy", "di"] {
        let mut c = match issuer {
            None => Client::connect(stack, name).await?,
            Some(issuer) => {
                Client::connect_with_token(stack, name, &issuer.mint(name, "player", Duration::from_secs(600))?).await?
            }
        };
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
    four_players_are_matched(&stack, dynamodb, &prefix, None).await?;
    // `--auth none` has no authorizer: its function is not even started.
    assert_eq!(stack.function_invocations("mg-authorizer"), None);
    assert_eq!(stack.function_invocations("mg-connect"), Some(4), "the binaries ran");
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn in_process_handlers_over_the_dynamodb_adapters_match_four_players() -> anyhow::Result<()> {
    let prefix = format!("inproc{}", std::process::id());
    let (stack, dynamodb) = stack(Functions::Embedded, &prefix).await?;
    four_players_are_matched(&stack, dynamodb, &prefix, None).await?;
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
        // Short for the stuck mg-ping to overrun, long enough for a fresh instance's first
        // DynamoDB Local calls (each function starts on its first invocation, as in Lambda).
        function_timeout: std::time::Duration::from_secs(3),
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
os.umask(0o077)  # what it records includes the environment: readable by this user only
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
        assert_eq!(env["PARTIES_TABLE"], format!("{prefix}Parties"));
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

/// JWT auth with the dev issuer's keys, as `matchgate up` runs it.
fn jwt_auth(issuer: &DevIssuer) -> AuthMode {
    AuthMode::Jwt(Arc::new(issuer.verifier(Arc::new(SystemClock))))
}

#[tokio::test]
async fn the_authorizer_binary_admits_minted_tokens_and_refuses_bad_ones() -> anyhow::Result<()> {
    let dir = TempDir::new("authorizer-bin")?;
    let issuer = DevIssuer::load_or_create(&dir.0.join("state"))?;
    let prefix = format!("authbin{}", std::process::id());
    let (stack, dynamodb) =
        stack_with(Functions::Binaries(lambda_dir()), &prefix, jwt_auth(&issuer), Some(issuer.jwks())).await?;
    // Four players with minted tokens connect and are matched, each `$connect` authorized by one
    // invocation of mg-authorizer.
    four_players_are_matched(&stack, dynamodb, &prefix, Some(&issuer)).await?;
    assert_eq!(stack.function_invocations("mg-authorizer"), Some(4));

    // Bad tokens: refused before the upgrade with the status the binary's answer makes API
    // Gateway give (the error `Unauthorized` → 401, a Deny policy → 403), each by one invocation.
    let forger = DevIssuer::load_or_create(&dir.0.join("forger"))?;
    let now = crate::auth::chrono_now();
    let url = |token: &str| format!("{}?token={token}", stack.websocket_url());
    let wrong_audience =
        crate::auth::signed_with_dev_key(&issuer, crate::auth::claims(serde_json::json!({"aud": "another-app"})));
    let cases = [
        ("forged (another key)", url(&forger.mint("ana", "player", Duration::from_secs(600))?), 401),
        ("expired", url(&issuer.mint_at("ana", "player", Duration::from_secs(60), now - 3600)?), 401),
        ("no token", stack.websocket_url(), 401),
        ("wrong audience", url(&wrong_audience), 403),
    ];
    for (n, (what, url, status)) in cases.iter().enumerate() {
        assert_eq!(handshake_status(url).await?, *status, "{what}");
        assert_eq!(stack.function_invocations("mg-authorizer"), Some(5 + n as u64), "{what}: decided by the binary");
    }
    // The server is up, and the binary's context (`playerId` from the token's `sub`) is what the
    // handlers see.
    let token = issuer.mint("eve", "player", Duration::from_secs(600))?;
    let mut eve = Client::connect_with_token(&stack, "eve", &token).await?;
    eve.send(serde_json::json!({"action": "ping"})).await?;
    eve.expect("Pong", |p| matches!(p, Push::Pong { player_id, .. } if player_id == "eve")).await?;
    assert_eq!(stack.function_invocations("mg-authorizer"), Some(9));
    stack.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_authorizer_functions_answer_decides_as_in_api_gateway() -> anyhow::Result<()> {
    // An authorizer that answers by the `token` it is given, and records the first event it got,
    // its environment and the JWKS its JWKS_URL serves.
    const AUTHORIZER: &str = r#"#!/usr/bin/env python3
import json, os, sys, time, urllib.request
os.umask(0o077)  # what it records includes the environment: readable by this user only
here = os.path.dirname(os.path.abspath(sys.argv[0]))
api = os.environ['AWS_LAMBDA_RUNTIME_API']
def post(path, value):
    url = f'http://{api}/2018-06-01/runtime/invocation/{path}'
    urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(value).encode(), method='POST')).read()
def policy(effect, resource, context):
    statement = {'Action': 'execute-api:Invoke', 'Effect': effect, 'Resource': resource}
    return {'principalId': 'someone', 'policyDocument': {'Version': '2012-10-17', 'Statement': [statement]},
            'context': context}
try:
    while True:
        with urllib.request.urlopen(f'http://{api}/2018-06-01/runtime/invocation/next') as r:
            request_id = r.headers['lambda-runtime-aws-request-id']
            event = json.loads(r.read())
        token = (event.get('queryStringParameters') or {}).get('token', '')
        with open(os.path.join(here, 'invoked'), 'a') as f:
            f.write(token + '\n')
        if not os.path.exists(os.path.join(here, 'first.json')):
            with urllib.request.urlopen(os.environ['JWKS_URL']) as r:
                jwks = json.loads(r.read())
            with open(os.path.join(here, 'first.tmp'), 'w') as f:
                json.dump({'event': event, 'env': dict(os.environ), 'jwks': jwks}, f)
            os.rename(os.path.join(here, 'first.tmp'), os.path.join(here, 'first.json'))
        arn = event['methodArn']
        if token.startswith('allow-'):
            context = {'playerId': 'ctx-' + token[len('allow-'):], 'role': 'player', 'level': 7}
            post(f'{request_id}/response', policy('Allow', arn, context))
        elif token == 'deny':
            post(f'{request_id}/response', policy('Deny', arn, {}))
        elif token == 'elsewhere':
            post(f'{request_id}/response', policy('Allow', arn.replace('/$connect', '/$disconnect'), {}))
        elif token == 'nested':
            post(f'{request_id}/response', policy('Allow', arn, {'playerId': {'id': 'x'}}))
        elif token == 'unauthorized':
            post(f'{request_id}/error', {'errorType': 'Unauthorized', 'errorMessage': 'Unauthorized'})
        elif token == 'crash':
            sys.exit(3)
        elif token == 'hang':
            time.sleep(3600)
        else:
            post(f'{request_id}/error', {'errorType': 'Boom', 'errorMessage': 'something broke'})
except OSError:
    sys.exit(0)  # the stack shut down
"#;
    let functions = functions_with("authorizer-answers", &[("mg-authorizer", AUTHORIZER.to_owned())])?;
    let _cleanup = TempDir(functions.clone());
    let state = TempDir::new("authorizer-answers-state")?;
    let issuer = DevIssuer::load_or_create(&state.0)?;
    // The deployed template: its $connect authorizer is AuthorizerFunction, binary mg-authorizer.
    let template_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let parameters = LOCAL_PARAMETER_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let template = matchgate_gateway::template::load(&template_path, &parameters)?;
    assert_eq!(template.authorizer.as_ref().map(|a| a.binary.as_str()), Some("mg-authorizer"));
    let dynamodb = DynamoDbLocal::shared().await?;
    let mut config = StackConfig {
        dynamodb_endpoint: Some(dynamodb.endpoint.clone()),
        table_prefix: format!("authans{}", std::process::id()),
        functions: Functions::Binaries(functions.clone()),
        auth: jwt_auth(&issuer),
        jwks: Some(issuer.jwks()),
        ..quiet_config().with_template(&template)?
    };
    // A short deadline for the authorizer alone, so that the hanging case ends soon.
    config.template_functions.get_mut("mg-authorizer").expect("the template's authorizer").timeout_seconds = 1;
    let stack = start_stack_with(config).await?;
    let url = |token: &str| format!("{}?token={token}", stack.websocket_url());

    // An Allow: the function's context is what every handler sees (mg-ping answers for the
    // player the context names, not for anything the client sent).
    let mut ana = Client::connect_with_token(&stack, "ctx-ana", "allow-ana").await?;
    ana.send(serde_json::json!({"action": "ping"})).await?;
    ana.expect("Pong", |p| matches!(p, Push::Pong { player_id, .. } if player_id == "ctx-ana")).await?;

    for (token, status) in [
        ("deny", 403),
        ("elsewhere", 403),
        ("unauthorized", 401),
        ("error", 500),
        ("nested", 500),
        ("crash", 500),
        ("hang", 500),
    ] {
        assert_eq!(handshake_status(&url(token)).await?, status, "{token}");
    }
    // The restarted authorizer admits the next player, and the first connection carries on.
    let mut bo = Client::connect_with_token(&stack, "ctx-bo", "allow-bo").await?;
    bo.send(serde_json::json!({"action": "ping"})).await?;
    bo.expect("Pong", |p| matches!(p, Push::Pong { player_id, .. } if player_id == "ctx-bo")).await?;
    ana.send(serde_json::json!({"action": "ping"})).await?;
    ana.expect("Pong", |p| matches!(p, Push::Pong { player_id, .. } if player_id == "ctx-ana")).await?;
    let invoked = std::fs::read_to_string(functions.join("invoked"))?;
    assert_eq!(
        invoked.lines().collect::<Vec<_>>(),
        ["allow-ana", "deny", "elsewhere", "unauthorized", "error", "nested", "crash", "hang", "allow-bo"],
        "every handshake invoked the function once"
    );

    // What the function got: API Gateway's REQUEST authorizer event, and an environment that
    // points it at this stack's dev issuer.
    let first: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(functions.join("first.json"))?)?;
    let event = &first["event"];
    assert_eq!(event["type"], "REQUEST", "{event}");
    assert!(event["methodArn"].as_str().unwrap_or_default().ends_with("/local/$connect"), "{event}");
    assert_eq!(event["queryStringParameters"]["token"], "allow-ana");
    assert_eq!(event["requestContext"]["routeKey"], "$connect");
    assert_eq!(event["requestContext"]["eventType"], "CONNECT");
    assert!(event["requestContext"]["connectionId"].is_string(), "{event}");
    let env = &first["env"];
    assert_eq!(env["TOKEN_ISSUER"], DEV_ISSUER);
    assert_eq!(env["TOKEN_AUDIENCE"], DEV_CLIENT_ID);
    assert_eq!(env["TOKEN_USE"], "id");
    let jwks_url = env["JWKS_URL"].as_str().unwrap_or_default();
    assert!(jwks_url.starts_with("http://127.0.0.1:") && jwks_url.ends_with("/.well-known/jwks.json"), "{jwks_url}");
    assert_eq!(first["jwks"], issuer.jwks(), "the JWKS_URL serves the dev issuer's keys");
    stack.shutdown().await;
    Ok(())
}
