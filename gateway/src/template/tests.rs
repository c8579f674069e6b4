//! The template reader on small templates: what it resolves, and the errors and warnings it gives.

use super::*;

/// Every construct the evaluator supports, in a template small enough to read at once.
const MINIMAL: &str = r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Mode: { Type: String, Default: STANDALONE, AllowedValues: [STANDALONE, WITH_QUEUE] }
  Names: { Type: CommaDelimitedList, Default: "a,b,c" }
Conditions:
  Standalone: !Equals [!Ref Mode, STANDALONE]
  Queued: !Not [!Condition Standalone]
  Either: !Or [!Condition Standalone, !Condition Queued]
  Both: !And [!Condition Standalone, !Condition Queued]
Mappings:
  Timeouts:
    STANDALONE: { Request: 45 }
    WITH_QUEUE: { Request: 90 }
Globals:
  Function:
    Timeout: 7
    Tags: { App: test }
    Environment:
      Variables: { SHARED: shared, OVERRIDDEN: global }
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: { ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action }
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: { ApiId: !Ref Api, StageName: dev }
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      AuthorizerType: REQUEST
      AuthorizerUri: !Join ["", ["arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/", !GetAtt [AuthFn, Arn], /invocations]]
      IdentitySource: !If [Standalone, [route.request.querystring.token], !Ref AWS::NoValue]
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub
        - arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Target}/invocations
        - Target: !GetAtt HandlerFn.Arn
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: $connect, AuthorizationType: CUSTOM, AuthorizerId: !Ref Auth, Target: !Sub "integrations/${Integration}" }
  PingRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: ping, Target: !Join [/, [integrations, !Ref Integration]] }
  HandlerFn:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: mg-handler } }
    Properties:
      FunctionName: !Sub ${AWS::StackName}-handler
      Timeout: !FindInMap [Timeouts, !Ref Mode, Request]
      Environment:
        Variables:
          OVERRIDDEN: own
          LITERAL: !Sub "${!NotAVariable}-${AWS::AccountId}"
          SECOND: !Select [1, !Ref Names]
          SPLIT: !Select ["2", !Split [",", "x,y,z"]]
          MAPPED: !FindInMap [Timeouts, !Ref Mode, Request]
          GONE: !If [Queued, here, !Ref AWS::NoValue]
          EITHER: !If [Either, yes-either, no-either]
          BOTH: !If [Both, yes-both, no-both]
          TOPIC: !Ref Topic
          QUEUE: !GetAtt Queue.QueueUrl
          TABLE: !GetAtt Table.Arn
  AuthFn:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: mg-auth } }
    Properties:
      Events:
        Tick: { Type: Schedule, Properties: { Schedule: rate(1 minute) } }
  QueuedOnlyFn:
    Type: AWS::Serverless::Function
    Condition: Queued
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: mg-queued } }
  Topic: { Type: AWS::SNS::Topic }
  Queue:
    Type: AWS::SQS::Queue
    Properties: { QueueName: dlq }
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: things
      AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
      KeySchema: [{ AttributeName: id, KeyType: HASH }]
  RuleSet:
    Type: AWS::GameLift::MatchmakingRuleSet
    Properties:
      Name: !Sub ${AWS::StackName}-rules
      RuleSetBody: '{"name":"r"}'
  Config:
    Type: AWS::GameLift::MatchmakingConfiguration
    Properties:
      Name: cfg
      RuleSetName: !GetAtt RuleSet.Arn
      RequestTimeoutSeconds: !FindInMap [Timeouts, !Ref Mode, Request]
      AcceptanceRequired: false
      FlexMatchMode: !Ref Mode
      NotificationTarget: !Ref Topic
"#;

fn parse_with(yaml: &str, pairs: &[(&str, &str)]) -> Result<LocalTemplate> {
    parse(yaml, &pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

fn minimal(pairs: &[(&str, &str)]) -> LocalTemplate {
    parse_with(MINIMAL, pairs).unwrap_or_else(|e| panic!("{e}"))
}

fn error(yaml: &str) -> String {
    parse_with(yaml, &[]).expect_err("the template should be refused").to_string()
}

#[test]
fn template_resolves_routes_authorizer_and_configuration() {
    let t = minimal(&[]);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(t.route_selection_expression, "$request.body.action");
    assert_eq!(t.stage_name, "dev");
    let keys: Vec<_> = t.routes.iter().map(|r| (r.route_key.as_str(), r.binary.as_str())).collect();
    assert_eq!(keys, [("$connect", "mg-handler"), ("ping", "mg-handler")]);
    let authorizer = t.authorizer.as_ref().expect("authorizer");
    assert_eq!((authorizer.function_logical_id.as_str(), authorizer.binary.as_str()), ("AuthFn", "mg-auth"));
    assert_eq!(authorizer.identity_sources, ["route.request.querystring.token"]);
    assert_eq!(t.functions["AuthFn"].events, ["Schedule"]);
    let c = &t.configuration;
    assert_eq!(c.rule_set_name, "arn:aws:gamelift:us-east-1:000000000000:matchmakingruleset/matchgate-local-rules");
    assert_eq!((t.rule_set_name.as_str(), t.rule_set_body.as_str()), ("matchgate-local-rules", r#"{"name":"r"}"#));
    assert_eq!((c.request_timeout_seconds, c.acceptance_required, c.acceptance_timeout_seconds), (45, false, None));
    assert_eq!((c.flex_match_mode.as_str(), c.backfill_mode.as_deref()), ("STANDALONE", None));
    assert_eq!(c.notification_target.as_deref(), Some("arn:aws:sns:us-east-1:000000000000:Topic"));
    assert_eq!(t.tables["Table"].table_name, "things");
    assert_eq!(t.parameters["Names"], "a,b,c");
}

#[test]
fn template_intrinsics_and_globals_resolve_in_the_environment() {
    let t = minimal(&[]);
    let env: Vec<(&str, &str)> =
        t.functions["HandlerFn"].environment.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env,
        [
            ("BOTH", "no-both"),
            ("EITHER", "yes-either"),
            ("LITERAL", "${NotAVariable}-000000000000"),
            ("MAPPED", "45"),
            ("OVERRIDDEN", "own"),
            ("QUEUE", "https://sqs.us-east-1.amazonaws.com/000000000000/dlq"),
            ("SECOND", "b"),
            ("SHARED", "shared"),
            ("SPLIT", "z"),
            ("TABLE", "arn:aws:dynamodb:us-east-1:000000000000:table/things"),
            ("TOPIC", "arn:aws:sns:us-east-1:000000000000:Topic"),
        ]
    );
    assert_eq!(t.functions["AuthFn"].environment.len(), 2, "globals reach every function");
}

#[test]
fn template_timeouts_are_the_functions_else_the_globals_else_sams_default() {
    let t = minimal(&[]);
    assert_eq!(t.functions["HandlerFn"].timeout_seconds, 45, "its own, through an intrinsic");
    assert_eq!(t.functions["AuthFn"].timeout_seconds, 7, "Globals.Function");
    let no_globals = parse_with(&MINIMAL.replace("    Timeout: 7\n", ""), &[]).expect("valid");
    assert_eq!(no_globals.functions["HandlerFn"].timeout_seconds, 45);
    assert_eq!(no_globals.functions["AuthFn"].timeout_seconds, SAM_DEFAULT_TIMEOUT_SECONDS);
    let message = error(&MINIMAL.replace("    Timeout: 7\n", "    Timeout: 0\n"));
    assert!(message.contains("Resources.AuthFn.Properties.Timeout"), "{message}");
}

#[test]
fn template_conditions_follow_parameter_overrides() {
    let t = minimal(&[("Mode", "WITH_QUEUE")]);
    assert!(t.functions.contains_key("QueuedOnlyFn"));
    assert_eq!(t.functions["HandlerFn"].environment["GONE"], "here");
    assert_eq!(t.configuration.request_timeout_seconds, 90);
    assert!(t.authorizer.expect("authorizer").identity_sources.is_empty());
    assert!(t.warnings.iter().any(|w| w.contains("WITH_QUEUE without GameSessionQueueArns")), "{:?}", t.warnings);
    assert!(!minimal(&[]).functions.contains_key("QueuedOnlyFn"));
    let refused = parse_with(MINIMAL, &[("Mode", "QUEUE")]).expect_err("not an allowed value").to_string();
    assert!(refused.contains("Parameters.Mode") && refused.contains("AllowedValues"), "{refused}");
}

#[test]
fn template_errors_name_what_and_where() {
    // A needed value referring to a resource whose condition is false.
    let message = error(&MINIMAL.replace("Name: cfg", "Name: !Ref QueuedOnlyFn"));
    assert!(message.contains("Config.Properties.Name") && message.contains("QueuedOnlyFn is not created"), "{message}");
    // Conditions that refer to each other.
    let cyclic = MINIMAL
        .replace("Conditions:\n", "Conditions:\n  A: !Condition B\n  B: !Condition A\n")
        .replace("AcceptanceRequired: false", "AcceptanceRequired: !If [A, true, false]");
    assert!(error(&cyclic).contains("circular"), "{}", error(&cyclic));
    // A route to a function the template does not have.
    let foreign = MINIMAL.replace("Target: !GetAtt HandlerFn.Arn", "Target: arn:aws:lambda:us-east-1:1:function:other");
    assert!(error(&foreign).contains("not an AWS::Serverless::Function of the template"), "{}", error(&foreign));
    // A route key twice.
    let twice = MINIMAL.replace("RouteKey: ping", "RouteKey: $connect");
    assert!(error(&twice).contains("a second route for $connect"), "{}", error(&twice));
    // A function the local stack cannot run.
    let no_binary = MINIMAL.replace("BuildProperties: { Binary: mg-auth }", "BuildProperties: {}");
    assert!(error(&no_binary).contains("Resources.AuthFn.Metadata.BuildProperties.Binary"), "{}", error(&no_binary));
    // YAML and document shape.
    assert!(error("a: [1\nb: 2").contains("line 2"), "{}", error("a: [1\nb: 2"));
    assert!(error("a: 1\n---\nb: 2").contains("one YAML document"));
    assert!(error("Resources:\n  X: !Ref\n    a: 1\n  X: 2\n").contains("duplicated key"));
}

#[test]
fn template_parameters_without_a_value_are_reported() {
    let with_required = MINIMAL.replace("Parameters:\n", "Parameters:\n  Required: { Type: String }\n");
    let t = parse_with(&with_required, &[]).expect("unused: a warning");
    assert_eq!(t.warnings, ["Parameters.Required: no Default and no override; values that use it do not resolve"]);
    let used = with_required.replace("Name: cfg", "Name: !Ref Required");
    assert!(error(&used).contains("parameter Required has no Default"), "{}", error(&used));
    assert_eq!(parse_with(&used, &[("Required", "x")]).expect("overridden").configuration.name, "x");
}

#[test]
fn template_unsupported_constructs_warn_where_unused() {
    let yaml = format!("{MINIMAL}Outputs:\n  Cidr:\n    Value: !Cidr [10.0.0.0/16, 2, 8]\n");
    let t = parse_with(&yaml, &[]).expect("outputs are not needed");
    assert_eq!(
        t.warnings,
        ["Outputs.Cidr.Value: Fn::Cidr is not supported by the local stack; the local stack does not use this value"]
    );
    let needed = MINIMAL.replace("StageName: dev", "StageName: !Base64 dev");
    assert_eq!(error(&needed), "Resources.Stage.Properties.StageName: Fn::Base64 is not supported by the local stack");
}
