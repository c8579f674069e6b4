//! `infra/template.yaml` as the local stack reads it: routes, route selection, the function
//! behind each route, the `$connect` authorizer, the FlexMatch configuration and rule set, the
//! tables and the stage, so that `matchgate up` runs what `sam deploy` deploys.
//!
//! This is not CloudFormation. It evaluates the few values the local stack uses, with the
//! parameters' defaults or overrides and fixed pseudo parameters ([`STACK_NAME`], [`REGION`],
//! [`ACCOUNT_ID`], [`PARTITION`], [`URL_SUFFIX`]). A `Ref`/`Fn::GetAtt` of a resource becomes a
//! placeholder built from its logical ID (or its name property), e.g. `!Ref TicketsTable` is
//! `TicketsTable` and `!GetAtt ConnectFunction.Arn` is
//! `arn:aws:lambda:us-east-1:000000000000:function:ConnectFunction`.
//!
//! Supported: `Ref` (parameters, pseudo parameters, resources, `AWS::NoValue`), `Fn::GetAtt`
//! (dotted and list forms), `Fn::Sub` (both forms, `${!Literal}`), `Fn::Join`, `Fn::Select`,
//! `Fn::Split`, `Fn::If`, `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`,
//! `Fn::FindInMap`, resource `Condition`s, SAM `Globals.Function`, and `Rules` assertions built
//! from those. Parameters are checked against `AllowedValues`, `Number`, `Min/MaxValue` and
//! `Min/MaxLength` like CloudFormation does (not `AllowedPattern`: no regex engine here).
//!
//! Nothing is silently ignored: a construct the local stack cannot evaluate is an error when the
//! local stack needs the value (a route, `RequestTimeoutSeconds`, ...) and a warning in
//! [`LocalTemplate::warnings`] otherwise (an alarm threshold, an output, an environment variable).
//!
//! YAML is read as YAML 1.2 (saphyr): an unquoted `yes`/`no`/`on`/`off` is a string here but a
//! boolean to CloudFormation's YAML 1.1 reader, so templates quote them (as ours does).
//!
//! - [`yaml`]: YAML 1.2 to JSON, with CloudFormation's short forms in their long forms;
//! - [`parameters`]: parameter values, checked as CloudFormation checks them;
//! - [`intrinsics`]: evaluating `Ref`, `Fn::*`, conditions and rules;
//! - [`resources`]: what the local stack takes from the evaluated resources.

mod intrinsics;
mod parameters;
mod resources;
#[cfg(test)]
mod tests;
mod yaml;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration};
use serde_json::{Map, Value as Json};

use self::intrinsics::scan_intrinsics;
use self::parameters::Param;
use self::yaml::to_document;

/// `AWS::StackName` locally.
pub const STACK_NAME: &str = "matchgate-local";
/// `AWS::Region` locally.
pub const REGION: &str = "us-east-1";
/// `AWS::AccountId` locally.
pub const ACCOUNT_ID: &str = "000000000000";
/// `AWS::Partition` locally.
pub const PARTITION: &str = "aws";
/// `AWS::URLSuffix` locally.
pub const URL_SUFFIX: &str = "amazonaws.com";
/// How deep intrinsics and condition references may nest; deeper means a cycle.
pub const MAX_DEPTH: u32 = 64;
/// A function's `Timeout` when neither it nor `Globals.Function` sets one (SAM's default).
pub const SAM_DEFAULT_TIMEOUT_SECONDS: u32 = 3;

const SAM_TRANSFORM: &str = "AWS::Serverless-2016-10-31";
const SUPPORTED_INTRINSICS: &[&str] = &[
    "Ref",
    "Condition",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::Select",
    "Fn::Split",
    "Fn::If",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
    "Fn::FindInMap",
];

/// What the local stack takes from the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTemplate {
    /// The WebSocket API's `RouteSelectionExpression`.
    pub route_selection_expression: String,
    /// Every route of the WebSocket API, sorted by route key.
    pub routes: Vec<Route>,
    /// The authorizer of the `$connect` route.
    pub authorizer: Option<AuthorizerInfo>,
    /// Every `AWS::Serverless::Function` the template creates, by logical ID.
    pub functions: BTreeMap<String, FunctionInfo>,
    pub configuration: MatchmakingConfiguration,
    /// The `RuleSetBody` of the rule set the configuration names, verbatim.
    pub rule_set_body: String,
    /// That rule set's `Name` (also `configuration.rule_set_name` when the configuration names it).
    pub rule_set_name: String,
    /// The WebSocket API's stage.
    pub stage_name: String,
    /// Every `AWS::DynamoDB::Table`, by logical ID.
    pub tables: BTreeMap<String, TableInfo>,
    /// Every parameter's value (list parameters joined with commas); absent when it has none.
    pub parameters: BTreeMap<String, String>,
    /// What the local stack could not evaluate but does not need, and other findings.
    pub warnings: Vec<String>,
}

impl LocalTemplate {
    pub fn route(&self, route_key: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.route_key == route_key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub route_key: String,
    pub function_logical_id: String,
    /// The workspace binary behind the route (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub authorizer: Option<AuthorizerInfo>,
}

/// A `REQUEST` authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerInfo {
    pub function_logical_id: String,
    pub binary: String,
    /// API Gateway refuses the handshake with 401 when one of these is missing, without
    /// invoking the authorizer. Empty: the authorizer runs for every handshake.
    pub identity_sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    pub binary: String,
    /// `Environment.Variables` after `Globals`, where they resolve (see the warnings otherwise).
    /// `matchgate up --lambdas` starts each function from these, pointed at the local stack.
    pub environment: BTreeMap<String, String>,
    /// `Timeout` in seconds: the function's, else `Globals.Function`'s, else SAM's default
    /// ([`SAM_DEFAULT_TIMEOUT_SECONDS`]).
    pub timeout_seconds: u32,
    /// `ReservedConcurrentExecutions`: the most instances of the function that run at once.
    pub reserved_concurrency: Option<u32>,
    /// The SAM event source types (`SNS`, `Schedule`, ...), by event name.
    pub events: Vec<String>,
}

/// An `AWS::DynamoDB::Table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// What `Ref` gives: `TableName`, or the logical ID.
    pub table_name: String,
    /// `AttributeDefinitions`: name -> `S` | `N` | `B`.
    pub attribute_definitions: BTreeMap<String, String>,
    pub hash_key: String,
    pub range_key: Option<String>,
    pub indexes: Vec<IndexInfo>,
    /// The TTL attribute when TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// `PROVISIONED` when unset, as in CloudFormation.
    pub billing_mode: String,
    pub point_in_time_recovery: bool,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    pub name: String,
    pub hash_key: String,
    pub range_key: Option<String>,
    pub projection_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the template is not valid YAML: {0}")]
    Yaml(String),
    /// `at` is the property path, e.g. `Resources.X.Properties.RequestTimeoutSeconds`.
    #[error("{at}: {construct} is not supported by the local stack")]
    Unsupported { at: String, construct: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

type Result<T, E = TemplateError> = std::result::Result<T, E>;

fn invalid(at: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid { at: at.to_owned(), message: message.into() }
}

fn unsupported(at: &str, construct: impl Into<String>) -> TemplateError {
    TemplateError::Unsupported { at: at.to_owned(), construct: construct.into() }
}

/// Reads and evaluates the template at `path`; `parameter_overrides` as `sam deploy
/// --parameter-overrides` takes them.
pub fn load(path: &Path, parameter_overrides: &BTreeMap<String, String>) -> Result<LocalTemplate> {
    let yaml = std::fs::read_to_string(path).map_err(|source| TemplateError::Read { path: path.to_owned(), source })?;
    parse(&yaml, parameter_overrides)
}

/// Evaluates a template given as YAML (or JSON, a subset of YAML).
pub fn parse(yaml: &str, parameter_overrides: &BTreeMap<String, String>) -> Result<LocalTemplate> {
    let doc = to_document(yaml)?;
    let mut warnings = Vec::new();
    let template = Template::new(&doc, parameter_overrides, &mut warnings)?;
    for section in ["Globals", "Resources", "Outputs", "Conditions"] {
        if let Some(value) = doc.get(section) {
            scan_intrinsics(value, section, &mut warnings);
        }
    }
    template.check_rules(&mut warnings)?;
    let mut local = template.build(&mut warnings)?;
    warnings.dedup();
    local.warnings = warnings;
    Ok(local)
}

struct Template<'d> {
    doc: &'d Map<String, Json>,
    /// `Resources`, with `Globals.Function` merged into every `AWS::Serverless::Function`.
    resources: Map<String, Json>,
    parameters: BTreeMap<String, Param>,
    /// Nesting of the evaluation in progress, to turn reference cycles into errors.
    depth: Cell<u32>,
}

pub(super) fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") }
}

/// A single-key mapping whose key names an intrinsic function.
pub(super) fn intrinsic(map: &Map<String, Json>) -> Option<(&str, &Json)> {
    let (name, arg) = map.iter().next().filter(|_| map.len() == 1)?;
    (name == "Ref" || name == "Condition" || name.starts_with("Fn::")).then_some((name.as_str(), arg))
}

pub(super) fn scalar_string(value: &Json, at: &str) -> Result<String> {
    match value {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        Json::Bool(b) => Ok(b.to_string()),
        other => Err(invalid(at, format!("expected a string, found {other}"))),
    }
}

pub(super) fn section<'d>(doc: &'d Map<String, Json>, name: &str) -> Result<Option<&'d Map<String, Json>>> {
    match doc.get(name) {
        None => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map)),
        Some(_) => Err(invalid(name, "must be a mapping")),
    }
}

pub(super) fn args<'a, const N: usize>(arg: &'a Json, at: &str) -> Result<&'a [Json; N]> {
    arg.as_array()
        .and_then(|items| <&[Json; N]>::try_from(items.as_slice()).ok())
        .ok_or_else(|| invalid(at, format!("expects a list of {N} arguments")))
}
