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

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use matchgate_protocol::gamelift::{FlexMatchMode, MatchmakingConfiguration};
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Value as Json};

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

// ------------------------------------------------------------------------------------------------
// YAML -> JSON, with CloudFormation's short forms (`!Ref x`) turned into long forms
// (`{"Ref": "x"}`), so the evaluator handles one shape. JSON templates pass through unchanged.
// ------------------------------------------------------------------------------------------------

fn to_document(yaml: &str) -> Result<Map<String, Json>> {
    let docs = Yaml::load_from_str(yaml).map_err(|e| TemplateError::Yaml(e.to_string()))?;
    let [doc] = docs.as_slice() else {
        return Err(TemplateError::Yaml(format!("expected one YAML document, found {}", docs.len())));
    };
    match to_json(doc, "")? {
        Json::Object(map) => Ok(map),
        _ => Err(TemplateError::Yaml("the template is not a mapping".into())),
    }
}

fn to_json(node: &Yaml, at: &str) -> Result<Json> {
    Ok(match node {
        Yaml::Value(Scalar::Null) => Json::Null,
        Yaml::Value(Scalar::Boolean(b)) => Json::Bool(*b),
        Yaml::Value(Scalar::Integer(i)) => Json::from(*i),
        Yaml::Value(Scalar::FloatingPoint(f)) => {
            serde_json::Number::from_f64(f.into_inner()).map_or_else(|| Json::String(f.to_string()), Json::Number)
        }
        Yaml::Value(Scalar::String(s)) | Yaml::Representation(s, _, _) => Json::String(s.to_string()),
        Yaml::Sequence(items) => Json::Array(
            items.iter().enumerate().map(|(i, item)| to_json(item, &format!("{at}[{i}]"))).collect::<Result<_>>()?,
        ),
        Yaml::Mapping(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                // Keys are strings to CloudFormation; `1:` and `"1":` are the same key.
                let key = match key {
                    Yaml::Value(Scalar::Null) | Yaml::Sequence(_) | Yaml::Mapping(_) | Yaml::Tagged(_, _) => {
                        return Err(invalid(at, "a mapping key must be a string"));
                    }
                    _ => scalar_string(&to_json(key, at)?, at)?,
                };
                let value = to_json(value, &join(at, &key))?;
                if map.insert(key.clone(), value).is_some() {
                    return Err(invalid(at, format!("duplicate key {key}")));
                }
            }
            Json::Object(map)
        }
        Yaml::Tagged(tag, inner) => {
            if tag.handle != "!" {
                return Err(unsupported(at, format!("the YAML tag {}{}", tag.handle, tag.suffix)));
            }
            let name = match tag.suffix.as_str() {
                "Ref" | "Condition" => tag.suffix.clone(),
                other => format!("Fn::{other}"),
            };
            Json::Object(Map::from_iter([(name, to_json(inner, at)?)]))
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err(invalid(at, "a YAML value that does not resolve")),
    })
}

// ------------------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------------------

enum Param {
    Value(Json),
    /// No Default and no override: CloudFormation would ask for one.
    Missing,
    /// A type whose value lives elsewhere (SSM).
    Unsupported(String),
}

struct Template<'d> {
    doc: &'d Map<String, Json>,
    /// `Resources`, with `Globals.Function` merged into every `AWS::Serverless::Function`.
    resources: Map<String, Json>,
    parameters: BTreeMap<String, Param>,
    /// Nesting of the evaluation in progress, to turn reference cycles into errors.
    depth: Cell<u32>,
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") }
}

/// A single-key mapping whose key names an intrinsic function.
fn intrinsic(map: &Map<String, Json>) -> Option<(&str, &Json)> {
    let (name, arg) = map.iter().next().filter(|_| map.len() == 1)?;
    (name == "Ref" || name == "Condition" || name.starts_with("Fn::")).then_some((name.as_str(), arg))
}

fn scalar_string(value: &Json, at: &str) -> Result<String> {
    match value {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        Json::Bool(b) => Ok(b.to_string()),
        other => Err(invalid(at, format!("expected a string, found {other}"))),
    }
}

fn section<'d>(doc: &'d Map<String, Json>, name: &str) -> Result<Option<&'d Map<String, Json>>> {
    match doc.get(name) {
        None => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map)),
        Some(_) => Err(invalid(name, "must be a mapping")),
    }
}

fn args<'a, const N: usize>(arg: &'a Json, at: &str) -> Result<&'a [Json; N]> {
    arg.as_array()
        .and_then(|items| <&[Json; N]>::try_from(items.as_slice()).ok())
        .ok_or_else(|| invalid(at, format!("expects a list of {N} arguments")))
}

/// SAM merges `Globals` into each function: mappings merge (the function wins), lists
/// concatenate (globals first), anything else is the function's own.
fn merge_globals(local: &mut Json, global: &Json) {
    match (local, global) {
        (Json::Object(l), Json::Object(g)) if intrinsic(l).is_none() && intrinsic(g).is_none() => {
            for (key, g_value) in g {
                match l.get_mut(key) {
                    Some(l_value) => merge_globals(l_value, g_value),
                    None => {
                        l.insert(key.clone(), g_value.clone());
                    }
                }
            }
        }
        (Json::Array(l), Json::Array(g)) => {
            let own = std::mem::replace(l, g.clone());
            l.extend(own);
        }
        _ => {}
    }
}

/// Warns about every intrinsic the evaluator does not know. One that a needed value uses fails
/// the load anyway; this catches the ones in values the local stack never evaluates.
fn scan_intrinsics(value: &Json, at: &str, warnings: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            if let Some((name, _)) = intrinsic(map)
                && !SUPPORTED_INTRINSICS.contains(&name)
            {
                warnings.push(format!("{}; the local stack does not use this value", unsupported(at, name)));
            }
            for (key, value) in map {
                scan_intrinsics(value, &join(at, key), warnings);
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                scan_intrinsics(item, &format!("{at}[{i}]"), warnings);
            }
        }
        _ => {}
    }
}

/// The property whose value `Ref` returns (or that names the resource in its ARN).
fn name_property(resource_type: &str) -> Option<&'static str> {
    Some(match resource_type {
        "AWS::DynamoDB::Table" => "TableName",
        "AWS::Serverless::Function" | "AWS::Lambda::Function" => "FunctionName",
        "AWS::GameLift::MatchmakingRuleSet" | "AWS::GameLift::MatchmakingConfiguration" => "Name",
        "AWS::SNS::Topic" => "TopicName",
        "AWS::SQS::Queue" => "QueueName",
        "AWS::Logs::LogGroup" => "LogGroupName",
        "AWS::IAM::Role" => "RoleName",
        "AWS::IAM::ManagedPolicy" => "ManagedPolicyName",
        _ => return None,
    })
}

impl<'d> Template<'d> {
    fn new(
        doc: &'d Map<String, Json>,
        overrides: &BTreeMap<String, String>,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        let transforms = match doc.get("Transform") {
            None => Vec::new(),
            Some(Json::Array(items)) => items.iter().map(|t| scalar_string(t, "Transform")).collect::<Result<_>>()?,
            Some(t) => vec![scalar_string(t, "Transform")?],
        };
        for transform in transforms.iter().filter(|t| *t != SAM_TRANSFORM) {
            warnings.push(format!("Transform: {transform} is not applied by the local stack"));
        }
        let mut resources = section(doc, "Resources")?.ok_or_else(|| invalid("Resources", "missing"))?.clone();
        let globals = section(doc, "Globals")?.and_then(|g| g.get("Function"));
        if let Some(globals) = globals {
            for resource in resources.values_mut() {
                if resource.get("Type").and_then(Json::as_str) == Some("AWS::Serverless::Function")
                    && let Some(resource) = resource.as_object_mut()
                {
                    let properties = resource.entry("Properties").or_insert_with(|| Json::Object(Map::new()));
                    merge_globals(properties, globals);
                }
            }
        }
        let parameters = parameters(doc, overrides, warnings)?;
        Ok(Self { doc, resources, parameters, depth: Cell::new(0) })
    }

    fn eval(&self, value: &Json, at: &str) -> Result<Option<Json>> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(invalid(at, format!("a circular reference (or nesting deeper than {MAX_DEPTH})")));
        }
        self.depth.set(depth + 1);
        let result = self.eval_nested(value, at);
        self.depth.set(depth);
        result
    }

    /// `None` is `AWS::NoValue`: the property, or the list item, is not there.
    fn eval_nested(&self, value: &Json, at: &str) -> Result<Option<Json>> {
        match value {
            Json::Object(map) => {
                if let Some((name, arg)) = intrinsic(map) {
                    return self.intrinsic(name, arg, at);
                }
                let mut out = Map::new();
                for (key, value) in map {
                    if let Some(value) = self.eval(value, &join(at, key))? {
                        out.insert(key.clone(), value);
                    }
                }
                Ok(Some(Json::Object(out)))
            }
            Json::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.extend(self.eval(item, &format!("{at}[{i}]"))?);
                }
                Ok(Some(Json::Array(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    fn value(&self, value: &Json, at: &str) -> Result<Json> {
        self.eval(value, at)?.ok_or_else(|| invalid(at, "AWS::NoValue where a value is required"))
    }

    fn string(&self, value: &Json, at: &str) -> Result<String> {
        scalar_string(&self.value(value, at)?, at)
    }

    fn boolean(&self, value: &Json, at: &str) -> Result<bool> {
        match self.value(value, at)? {
            Json::Bool(b) => Ok(b),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(invalid(at, format!("expected a boolean, found {other}"))),
        }
    }

    fn list(&self, value: &Json, at: &str) -> Result<Vec<Json>> {
        match self.value(value, at)? {
            Json::Array(items) => Ok(items),
            other => Err(invalid(at, format!("expected a list, found {other}"))),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Json, outer: &str) -> Result<Option<Json>> {
        let at = &join(outer, name);
        let string = |s: String| Ok(Some(Json::String(s)));
        match name {
            "Ref" => self.reference(arg.as_str().ok_or_else(|| invalid(at, "expects a name"))?, at),
            "Condition" => {
                Ok(Some(Json::Bool(self.condition(arg.as_str().ok_or_else(|| invalid(at, "expects a name"))?, at)?)))
            }
            "Fn::GetAtt" => {
                let (id, attribute) = match arg {
                    Json::String(s) => {
                        let (id, attribute) =
                            s.split_once('.').ok_or_else(|| invalid(at, "expects LogicalId.Attribute"))?;
                        (id, attribute.to_owned())
                    }
                    _ => {
                        let [id, attribute] = args(arg, at)?;
                        (id.as_str().ok_or_else(|| invalid(at, "expects a logical ID"))?, self.string(attribute, at)?)
                    }
                };
                self.get_att(id, &attribute, at).map(Some)
            }
            "Fn::Sub" => match arg {
                Json::String(text) => string(self.sub(text, None, at)?),
                _ => match args(arg, at)? {
                    [Json::String(text), Json::Object(vars)] => string(self.sub(text, Some(vars), at)?),
                    _ => Err(invalid(at, "expects a string or [string, {variables}]")),
                },
            },
            "Fn::Join" => {
                let [delimiter, items] = args(arg, at)?;
                let delimiter = self.string(delimiter, at)?;
                let parts = self.list(items, at)?.iter().map(|v| scalar_string(v, at)).collect::<Result<Vec<_>>>()?;
                string(parts.join(&delimiter))
            }
            "Fn::Select" => {
                let [index, items] = args(arg, at)?;
                let index = self.string(index, at)?;
                let index = index.parse::<usize>().map_err(|_| invalid(at, format!("{index} is not an index")))?;
                let items = self.list(items, at)?;
                let len = items.len();
                items
                    .into_iter()
                    .nth(index)
                    .map(Some)
                    .ok_or_else(|| invalid(at, format!("index {index} of {len} items")))
            }
            "Fn::Split" => {
                let [delimiter, text] = args(arg, at)?;
                let delimiter = self.string(delimiter, at)?;
                let text = self.string(text, at)?;
                Ok(Some(Json::Array(text.split(delimiter.as_str()).map(|s| Json::String(s.to_owned())).collect())))
            }
            "Fn::If" => {
                let [condition, then, otherwise] = args(arg, at)?;
                let condition = condition.as_str().ok_or_else(|| invalid(at, "expects a condition name first"))?;
                if self.condition(condition, at)? {
                    self.eval(then, &format!("{at}[1]"))
                } else {
                    self.eval(otherwise, &format!("{at}[2]"))
                }
            }
            "Fn::Equals" => {
                let [a, b] = args(arg, at)?;
                let (a, b) = (self.value(a, at)?, self.value(b, at)?);
                // CloudFormation compares scalars as strings: "1" equals 1.
                let equal = match (scalar_string(&a, at), scalar_string(&b, at)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => a == b,
                };
                Ok(Some(Json::Bool(equal)))
            }
            "Fn::Not" => {
                let [condition] = args(arg, at)?;
                Ok(Some(Json::Bool(!self.boolean(condition, at)?)))
            }
            "Fn::And" | "Fn::Or" => {
                let items = arg.as_array().ok_or_else(|| invalid(at, "expects a list of conditions"))?;
                let values = items.iter().map(|c| self.boolean(c, at)).collect::<Result<Vec<_>>>()?;
                let all = name == "Fn::And";
                Ok(Some(Json::Bool(if all { values.iter().all(|v| *v) } else { values.iter().any(|v| *v) })))
            }
            "Fn::FindInMap" => {
                let [map, top, second] = args(arg, at)?;
                let (map, top, second) = (self.string(map, at)?, self.string(top, at)?, self.string(second, at)?);
                let found = section(self.doc, "Mappings")?
                    .and_then(|m| m.get(&map))
                    .and_then(|m| m.get(&top))
                    .and_then(|m| m.get(&second))
                    .ok_or_else(|| invalid(at, format!("Mappings.{map}.{top}.{second} does not exist")))?;
                self.eval(found, &format!("Mappings.{map}.{top}.{second}"))
            }
            _ => Err(unsupported(outer, name)),
        }
    }

    fn condition(&self, name: &str, at: &str) -> Result<bool> {
        let expression = section(self.doc, "Conditions")?
            .and_then(|c| c.get(name))
            .ok_or_else(|| invalid(at, format!("{name} is not a condition of the template")))?;
        self.boolean(expression, &format!("Conditions.{name}"))
    }

    fn reference(&self, name: &str, at: &str) -> Result<Option<Json>> {
        let pseudo = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::NotificationARNs" => return Ok(Some(Json::Array(Vec::new()))),
            "AWS::StackName" => STACK_NAME.to_owned(),
            "AWS::Region" => REGION.to_owned(),
            "AWS::AccountId" => ACCOUNT_ID.to_owned(),
            "AWS::Partition" => PARTITION.to_owned(),
            "AWS::URLSuffix" => URL_SUFFIX.to_owned(),
            "AWS::StackId" => format!(
                "arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/00000000-0000-0000-0000-000000000000"
            ),
            _ => match self.parameters.get(name) {
                Some(Param::Value(value)) => return Ok(Some(value.clone())),
                Some(Param::Missing) => {
                    return Err(invalid(at, format!("parameter {name} has no Default; give it an override")));
                }
                Some(Param::Unsupported(ty)) => return Err(unsupported(at, format!("the parameter type {ty}"))),
                None if name.starts_with("AWS::") => {
                    return Err(unsupported(at, format!("the pseudo parameter {name}")));
                }
                None => {
                    let (ty, resource) = self.resource(name, at)?;
                    self.ref_value(name, ty, resource)?
                }
            },
        };
        Ok(Some(Json::String(pseudo)))
    }

    /// The resource `id` if the template creates it (its `Condition`, if any, holds).
    fn resource(&self, id: &str, at: &str) -> Result<(&str, &Map<String, Json>)> {
        let resource = self
            .resources
            .get(id)
            .and_then(Json::as_object)
            .ok_or_else(|| invalid(at, format!("{id} is not a resource of the template")))?;
        let ty =
            resource.get("Type").and_then(Json::as_str).ok_or_else(|| invalid(&join("Resources", id), "no Type"))?;
        if !self.is_created(id, resource)? {
            return Err(invalid(at, format!("{id} is not created: its Condition is false")));
        }
        Ok((ty, resource))
    }

    fn is_created(&self, id: &str, resource: &Map<String, Json>) -> Result<bool> {
        let Some(condition) = resource.get("Condition") else { return Ok(true) };
        let at = format!("Resources.{id}.Condition");
        self.condition(condition.as_str().ok_or_else(|| invalid(&at, "expects a condition name"))?, &at)
    }

    /// Every resource of type `ty` the template creates, by logical ID.
    fn created(&self, ty: &str) -> Result<Vec<(&str, &Map<String, Json>)>> {
        let mut out = Vec::new();
        for (id, resource) in &self.resources {
            if let Some(resource) = resource.as_object()
                && resource.get("Type").and_then(Json::as_str) == Some(ty)
                && self.is_created(id, resource)?
            {
                out.push((id.as_str(), resource));
            }
        }
        Ok(out)
    }

    fn physical_name(&self, id: &str, ty: &str, resource: &Map<String, Json>) -> Result<String> {
        let property = name_property(ty)
            .and_then(|p| resource.get("Properties").and_then(|props| props.get(p)).map(|value| (p, value)));
        match property {
            Some((p, value)) => self.string(value, &format!("Resources.{id}.Properties.{p}")),
            None => Ok(id.to_owned()),
        }
    }

    fn ref_value(&self, id: &str, ty: &str, resource: &Map<String, Json>) -> Result<String> {
        Ok(match ty {
            "AWS::SNS::Topic" | "AWS::IAM::ManagedPolicy" => self.arn(id, ty, resource)?,
            "AWS::SQS::Queue" => {
                format!("https://sqs.{REGION}.{URL_SUFFIX}/{ACCOUNT_ID}/{}", self.physical_name(id, ty, resource)?)
            }
            // Names where the type has a name property, IDs (the logical ID here) otherwise.
            _ => self.physical_name(id, ty, resource)?,
        })
    }

    fn arn(&self, id: &str, ty: &str, resource: &Map<String, Json>) -> Result<String> {
        let name = self.physical_name(id, ty, resource)?;
        let (p, r, a) = (PARTITION, REGION, ACCOUNT_ID);
        Ok(match ty {
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => format!("arn:{p}:lambda:{r}:{a}:function:{name}"),
            "AWS::DynamoDB::Table" => format!("arn:{p}:dynamodb:{r}:{a}:table/{name}"),
            "AWS::SNS::Topic" => format!("arn:{p}:sns:{r}:{a}:{name}"),
            "AWS::SQS::Queue" => format!("arn:{p}:sqs:{r}:{a}:{name}"),
            "AWS::Logs::LogGroup" => format!("arn:{p}:logs:{r}:{a}:log-group:{name}:*"),
            "AWS::IAM::Role" => format!("arn:{p}:iam::{a}:role/{name}"),
            "AWS::IAM::ManagedPolicy" => format!("arn:{p}:iam::{a}:policy/{name}"),
            _ => {
                // AWS::Service::Kind -> arn:aws:service:region:account:kind/name
                let mut parts = ty.split("::").skip(1).map(str::to_ascii_lowercase);
                let (service, kind) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                format!("arn:{p}:{service}:{r}:{a}:{kind}/{name}")
            }
        })
    }

    fn get_att(&self, id: &str, attribute: &str, at: &str) -> Result<Json> {
        let (ty, resource) = self.resource(id, at)?;
        let value = match (ty, attribute) {
            (_, "Arn") | ("AWS::SNS::Topic", "TopicArn") => self.arn(id, ty, resource)?,
            (_, "Name") | ("AWS::SQS::Queue", "QueueName") | ("AWS::SNS::Topic", "TopicName") => {
                self.physical_name(id, ty, resource)?
            }
            ("AWS::SQS::Queue", "QueueUrl") => self.ref_value(id, ty, resource)?,
            ("AWS::ApiGatewayV2::Api", "ApiId") => id.to_owned(),
            ("AWS::ApiGatewayV2::Api", "ApiEndpoint") => format!("wss://{id}.execute-api.{REGION}.{URL_SUFFIX}"),
            _ => return Err(unsupported(at, format!("Fn::GetAtt {id}.{attribute}"))),
        };
        Ok(Json::String(value))
    }

    fn sub(&self, text: &str, variables: Option<&Map<String, Json>>, at: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let end = after.find('}').ok_or_else(|| invalid(at, "an unterminated ${"))?;
            let name = after[..end].trim();
            let value = match (variables.and_then(|v| v.get(name)), name.split_once('.')) {
                (Some(value), _) => self.string(value, &join(at, name))?,
                (None, Some((id, attribute))) => scalar_string(&self.get_att(id, attribute, at)?, at)?,
                (None, None) => {
                    let value = self.reference(name, at)?.ok_or_else(|| invalid(at, "${AWS::NoValue} in Fn::Sub"))?;
                    scalar_string(&value, at)?
                }
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `Rules` that do not hold make CloudFormation refuse the parameters, so they fail the load
    /// too; one the evaluator cannot check is a warning.
    fn check_rules(&self, warnings: &mut Vec<String>) -> Result<()> {
        for (name, rule) in section(self.doc, "Rules")?.into_iter().flatten() {
            let at = join("Rules", name);
            let check = || -> Result<Option<String>> {
                if let Some(condition) = rule.get("RuleCondition")
                    && !self.boolean(condition, &join(&at, "RuleCondition"))?
                {
                    return Ok(None);
                }
                let assertions = rule.get("Assertions").and_then(Json::as_array).into_iter().flatten();
                for (i, assertion) in assertions.enumerate() {
                    let assert_at = format!("{at}.Assertions[{i}]");
                    let assert = assertion.get("Assert").ok_or_else(|| invalid(&assert_at, "no Assert"))?;
                    if !self.boolean(assert, &join(&assert_at, "Assert"))? {
                        let description = assertion.get("AssertDescription").and_then(Json::as_str);
                        return Ok(Some(description.unwrap_or("the assertion does not hold").to_owned()));
                    }
                }
                Ok(None)
            };
            match check() {
                Ok(None) => {}
                Ok(Some(description)) => return Err(invalid(&at, description)),
                Err(e) => warnings.push(format!("{e}; the rule is not checked locally")),
            }
        }
        Ok(())
    }

    // --------------------------------------------------------------------------------------------
    // What the local stack takes: each piece is needed, so every error propagates.
    // --------------------------------------------------------------------------------------------

    fn build(&self, warnings: &mut Vec<String>) -> Result<LocalTemplate> {
        let apis = self
            .created("AWS::ApiGatewayV2::Api")?
            .into_iter()
            .map(|(id, res)| {
                let protocol = self.property(id, res, "ProtocolType")?;
                Ok((id, res, protocol))
            })
            .collect::<Result<Vec<_>>>()?;
        let websocket: Vec<_> = apis.iter().filter(|(_, _, p)| p.as_deref() == Some("WEBSOCKET")).collect();
        let [(api_id, api, _)] = websocket.as_slice() else {
            return Err(invalid("Resources", format!("expected one WebSocket API, found {}", websocket.len())));
        };
        let route_selection_expression = self.required(api_id, api, "RouteSelectionExpression")?;

        let functions = self.functions(warnings)?;
        let mut routes = Vec::new();
        for (id, route) in self.created("AWS::ApiGatewayV2::Route")? {
            if self.property(id, route, "ApiId")?.as_deref() != Some(*api_id) {
                continue;
            }
            let route_key = self.required(id, route, "RouteKey")?;
            if routes.iter().any(|r: &Route| r.route_key == route_key) {
                return Err(invalid(&join("Resources", id), format!("a second route for {route_key}")));
            }
            if self.properties(route).contains_key("RouteResponseSelectionExpression") {
                warnings.push(format!("Resources.{id}: two-way routes are not emulated; the local routes are one-way"));
            }
            let target = self.required(id, route, "Target")?;
            let integration_id = target.strip_prefix("integrations/").ok_or_else(|| {
                invalid(&format!("Resources.{id}.Properties.Target"), format!("{target} is not integrations/ID"))
            })?;
            let function_logical_id = self.integration_function(integration_id, &functions, id)?;
            let authorizer = match self.property(id, route, "AuthorizationType")?.as_deref().unwrap_or("NONE") {
                "NONE" => None,
                "CUSTOM" => {
                    let authorizer_id = self.required(id, route, "AuthorizerId")?;
                    Some(self.authorizer(&authorizer_id, &functions, id)?)
                }
                other => {
                    return Err(unsupported(
                        &format!("Resources.{id}.Properties.AuthorizationType"),
                        format!("AuthorizationType {other}"),
                    ));
                }
            };
            if authorizer.is_some() && route_key != "$connect" {
                warnings.push(format!("Resources.{id}: API Gateway allows an authorizer only on $connect"));
            }
            let binary = functions[&function_logical_id].binary.clone();
            routes.push(Route { route_key, function_logical_id, binary, authorizer });
        }
        routes.sort_by(|a, b| a.route_key.cmp(&b.route_key));
        let authorizer = routes.iter().find(|r| r.route_key == "$connect").and_then(|r| r.authorizer.clone());

        let stages: Vec<_> = self
            .created("AWS::ApiGatewayV2::Stage")?
            .into_iter()
            .filter_map(|(id, stage)| match self.property(id, stage, "ApiId") {
                Ok(api) if api.as_deref() == Some(*api_id) => Some(self.required(id, stage, "StageName")),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_>>()?;
        let [stage_name] = <[String; 1]>::try_from(stages).map_err(|stages| {
            invalid("Resources", format!("expected one stage of {api_id}, found {}", stages.len()))
        })?;

        let (configuration, rule_set_name, rule_set_body) = self.configuration(warnings)?;
        let tables = self
            .created("AWS::DynamoDB::Table")?
            .into_iter()
            .map(|(id, table)| Ok((id.to_owned(), self.table(id, table)?)))
            .collect::<Result<_>>()?;
        let parameters = self
            .parameters
            .iter()
            .filter_map(|(name, p)| match p {
                Param::Value(Json::Array(items)) => {
                    Some((name.clone(), items.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(",")))
                }
                Param::Value(value) => Some((name.clone(), scalar_string(value, name).ok()?)),
                _ => None,
            })
            .collect();
        Ok(LocalTemplate {
            route_selection_expression,
            routes,
            authorizer,
            functions,
            configuration,
            rule_set_body,
            rule_set_name,
            stage_name,
            tables,
            parameters,
            warnings: Vec::new(),
        })
    }

    fn properties<'r>(&self, resource: &'r Map<String, Json>) -> &'r Map<String, Json> {
        static EMPTY: std::sync::OnceLock<Map<String, Json>> = std::sync::OnceLock::new();
        resource.get("Properties").and_then(Json::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// A property's value, evaluated; `None` when absent or `AWS::NoValue`.
    fn optional(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Option<Json>> {
        match self.properties(resource).get(key) {
            Some(value) => self.eval(value, &format!("Resources.{id}.Properties.{key}")),
            None => Ok(None),
        }
    }

    fn property(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Option<String>> {
        let at = format!("Resources.{id}.Properties.{key}");
        self.optional(id, resource, key)?.map(|v| scalar_string(&v, &at)).transpose()
    }

    fn required(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<String> {
        self.property(id, resource, key)?
            .ok_or_else(|| invalid(&format!("Resources.{id}.Properties.{key}"), "missing; the local stack needs it"))
    }

    fn number(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Option<u32>> {
        let at = format!("Resources.{id}.Properties.{key}");
        self.property(id, resource, key)?
            .map(|v| {
                v.parse::<u32>().map_err(|_| invalid(&at, format!("{v} is not a whole number of seconds/players")))
            })
            .transpose()
    }

    fn strings(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Vec<String>> {
        let at = format!("Resources.{id}.Properties.{key}");
        match self.optional(id, resource, key)? {
            None => Ok(Vec::new()),
            Some(Json::Array(items)) => items.iter().map(|v| scalar_string(v, &at)).collect(),
            Some(value) => Ok(vec![scalar_string(&value, &at)?]),
        }
    }

    fn functions(&self, warnings: &mut Vec<String>) -> Result<BTreeMap<String, FunctionInfo>> {
        for (id, _) in self.created("AWS::Lambda::Function")? {
            warnings.push(format!(
                "Resources.{id}: AWS::Lambda::Function is not run locally; only AWS::Serverless::Function with \
                 Metadata.BuildProperties.Binary is"
            ));
        }
        let mut functions = BTreeMap::new();
        for (id, function) in self.created("AWS::Serverless::Function")? {
            let metadata = function.get("Metadata");
            let at = format!("Resources.{id}.Metadata");
            let build_method = metadata.and_then(|m| m.get("BuildMethod")).map(|v| self.string(v, &at)).transpose()?;
            if build_method.as_deref() != Some("rust-cargolambda") {
                return Err(unsupported(
                    &join(&at, "BuildMethod"),
                    format!("{build_method:?} (only rust-cargolambda)"),
                ));
            }
            let binary = metadata
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .ok_or_else(|| {
                    invalid(&format!("{at}.BuildProperties.Binary"), "missing; it names the workspace binary")
                })
                .and_then(|b| self.string(b, &format!("{at}.BuildProperties.Binary")))?;
            let mut environment = BTreeMap::new();
            let variables_at = format!("Resources.{id}.Properties.Environment.Variables");
            let variables = match self.properties(function).get("Environment").and_then(|e| e.get("Variables")) {
                // `Variables: !If [...]` as a whole: evaluate it first, then each variable.
                Some(whole @ Json::Object(map)) if intrinsic(map).is_some() => {
                    self.eval(whole, &variables_at).unwrap_or_else(|e| {
                        warnings.push(format!("{e}; {id} runs locally without its environment"));
                        None
                    })
                }
                other => other.cloned(),
            };
            for (name, value) in variables.as_ref().and_then(Json::as_object).into_iter().flatten() {
                let at = join(&variables_at, name);
                match self.eval(value, &at).and_then(|v| v.map(|v| scalar_string(&v, &at)).transpose()) {
                    Ok(Some(value)) => {
                        environment.insert(name.clone(), value);
                    }
                    Ok(None) => {}
                    Err(e) => warnings.push(format!("{e}; {id} runs locally without {name}")),
                }
            }
            let mut events = Vec::new();
            for (name, event) in self.properties(function).get("Events").and_then(Json::as_object).into_iter().flatten()
            {
                let ty = event
                    .get("Type")
                    .ok_or_else(|| invalid(&format!("Resources.{id}.Properties.Events.{name}"), "no Type"))?;
                events.push(self.string(ty, &format!("Resources.{id}.Properties.Events.{name}.Type"))?);
            }
            // Globals are merged into the function's properties already.
            let timeout_seconds = self.number(id, function, "Timeout")?.unwrap_or(SAM_DEFAULT_TIMEOUT_SECONDS);
            if timeout_seconds == 0 || timeout_seconds > 900 {
                return Err(invalid(&format!("Resources.{id}.Properties.Timeout"), "Lambda allows 1 to 900 seconds"));
            }
            let reserved_concurrency = self.number(id, function, "ReservedConcurrentExecutions")?;
            functions.insert(
                id.to_owned(),
                FunctionInfo { binary, environment, timeout_seconds, reserved_concurrency, events },
            );
        }
        Ok(functions)
    }

    /// The function a Lambda proxy URI invokes:
    /// `arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations`.
    fn uri_function(&self, uri: &str, functions: &BTreeMap<String, FunctionInfo>, at: &str) -> Result<String> {
        let function_arn = uri
            .split_once("/functions/")
            .and_then(|(_, rest)| rest.strip_suffix("/invocations"))
            .ok_or_else(|| invalid(at, format!("{uri} is not a Lambda invocation URI")))?;
        // FUNCTION_ARN is arn:...:function:NAME[:QUALIFIER], or a bare name.
        let name = function_arn.split_once(":function:").map_or(function_arn, |(_, rest)| rest);
        let name = name.split(':').next().unwrap_or(name);
        for id in functions.keys() {
            let (ty, resource) = self.resource(id, at)?;
            if self.physical_name(id, ty, resource)? == name {
                return Ok(id.clone());
            }
        }
        Err(invalid(at, format!("{function_arn} is not an AWS::Serverless::Function of the template")))
    }

    fn integration_function(
        &self,
        integration_id: &str,
        functions: &BTreeMap<String, FunctionInfo>,
        route_id: &str,
    ) -> Result<String> {
        let (ty, integration) = self.resource(integration_id, &format!("Resources.{route_id}.Properties.Target"))?;
        let at = join("Resources", integration_id);
        if ty != "AWS::ApiGatewayV2::Integration" {
            return Err(invalid(&at, format!("the target of {route_id} is a {ty}, not an integration")));
        }
        let integration_type = self.required(integration_id, integration, "IntegrationType")?;
        if integration_type != "AWS_PROXY" {
            return Err(unsupported(&join(&at, "Properties.IntegrationType"), integration_type));
        }
        let uri = self.required(integration_id, integration, "IntegrationUri")?;
        self.uri_function(&uri, functions, &join(&at, "Properties.IntegrationUri"))
    }

    fn authorizer(
        &self,
        authorizer_id: &str,
        functions: &BTreeMap<String, FunctionInfo>,
        route_id: &str,
    ) -> Result<AuthorizerInfo> {
        let (ty, authorizer) =
            self.resource(authorizer_id, &format!("Resources.{route_id}.Properties.AuthorizerId"))?;
        let at = join("Resources", authorizer_id);
        if ty != "AWS::ApiGatewayV2::Authorizer" {
            return Err(invalid(&at, format!("the authorizer of {route_id} is a {ty}")));
        }
        let authorizer_type = self.required(authorizer_id, authorizer, "AuthorizerType")?;
        if authorizer_type != "REQUEST" {
            return Err(unsupported(&join(&at, "Properties.AuthorizerType"), authorizer_type));
        }
        let uri = self.required(authorizer_id, authorizer, "AuthorizerUri")?;
        let function_logical_id = self.uri_function(&uri, functions, &join(&at, "Properties.AuthorizerUri"))?;
        Ok(AuthorizerInfo {
            binary: functions[&function_logical_id].binary.clone(),
            function_logical_id,
            identity_sources: self.strings(authorizer_id, authorizer, "IdentitySource")?,
        })
    }

    fn configuration(&self, warnings: &mut Vec<String>) -> Result<(MatchmakingConfiguration, String, String)> {
        let configurations = self.created("AWS::GameLift::MatchmakingConfiguration")?;
        let [(id, config)] = configurations.as_slice() else {
            return Err(invalid(
                "Resources",
                format!("expected one AWS::GameLift::MatchmakingConfiguration, found {}", configurations.len()),
            ));
        };
        let at = |key: &str| format!("Resources.{id}.Properties.{key}");
        let one_of = |key: &str, value: Option<String>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v.as_str()) => {
                Err(invalid(&at(key), format!("{v} is not one of {allowed:?}")))
            }
            v => Ok(v),
        };
        let acceptance = self.required(id, config, "AcceptanceRequired")?;
        let configuration = MatchmakingConfiguration {
            name: self.required(id, config, "Name")?,
            description: self.property(id, config, "Description")?,
            rule_set_name: self.required(id, config, "RuleSetName")?,
            request_timeout_seconds: self
                .number(id, config, "RequestTimeoutSeconds")?
                .ok_or_else(|| invalid(&at("RequestTimeoutSeconds"), "missing; the local stack needs it"))?,
            acceptance_required: match acceptance.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(&at("AcceptanceRequired"), format!("{acceptance} is not a boolean"))),
            },
            acceptance_timeout_seconds: self.number(id, config, "AcceptanceTimeoutSeconds")?,
            flex_match_mode: one_of(
                "FlexMatchMode",
                self.property(id, config, "FlexMatchMode")?,
                &["WITH_QUEUE", "STANDALONE"],
            )?
            .and_then(|mode| FlexMatchMode::parse(&mode))
            .unwrap_or_default(),
            game_session_queue_arns: self.strings(id, config, "GameSessionQueueArns")?,
            notification_target: self.property(id, config, "NotificationTarget")?,
            backfill_mode: one_of(
                "BackfillMode",
                self.property(id, config, "BackfillMode")?,
                &["MANUAL", "AUTOMATIC"],
            )?,
            additional_player_count: self.number(id, config, "AdditionalPlayerCount")?.unwrap_or(0),
            custom_event_data: self.property(id, config, "CustomEventData")?,
            creation_time_ms: 0,
        };
        if configuration.flex_match_mode == FlexMatchMode::WithQueue && configuration.game_session_queue_arns.is_empty()
        {
            warnings.push(format!(
                "Resources.{id}: WITH_QUEUE without GameSessionQueueArns, which AWS refuses; the local stack places \
                 matches on its simulated fleets"
            ));
        }
        // The configuration names its rule set by name or ARN; the body must be in this template.
        let wanted = &configuration.rule_set_name;
        for (rule_set_id, rule_set) in self.created("AWS::GameLift::MatchmakingRuleSet")? {
            let name = self.required(rule_set_id, rule_set, "Name")?;
            if *wanted == name || wanted.ends_with(&format!(":matchmakingruleset/{name}")) {
                let body = self.required(rule_set_id, rule_set, "RuleSetBody")?;
                return Ok((configuration, name, body));
            }
        }
        Err(invalid(&at("RuleSetName"), format!("{wanted} names no AWS::GameLift::MatchmakingRuleSet of the template")))
    }

    fn table(&self, id: &str, table: &Map<String, Json>) -> Result<TableInfo> {
        let at = |key: &str| format!("Resources.{id}.Properties.{key}");
        let field = |item: &Json, key: &str, at: &str| -> Result<String> {
            scalar_string(item.get(key).ok_or_else(|| invalid(at, format!("no {key}")))?, at)
        };
        // (hash, range) of a KeySchema.
        let keys = |schema: Option<&Json>, at: &str| -> Result<(String, Option<String>)> {
            let (mut hash, mut range) = (None, None);
            for element in schema.and_then(Json::as_array).into_iter().flatten() {
                let name = field(element, "AttributeName", at)?;
                match field(element, "KeyType", at)?.as_str() {
                    "HASH" => hash = Some(name),
                    "RANGE" => range = Some(name),
                    other => return Err(invalid(at, format!("KeyType {other}"))),
                }
            }
            Ok((hash.ok_or_else(|| invalid(at, "no HASH key"))?, range))
        };
        let mut attribute_definitions = BTreeMap::new();
        for definition in
            self.optional(id, table, "AttributeDefinitions")?.as_ref().and_then(Json::as_array).into_iter().flatten()
        {
            let name = field(definition, "AttributeName", &at("AttributeDefinitions"))?;
            attribute_definitions.insert(name, field(definition, "AttributeType", &at("AttributeDefinitions"))?);
        }
        let (hash_key, range_key) = keys(self.optional(id, table, "KeySchema")?.as_ref(), &at("KeySchema"))?;
        let mut indexes = Vec::new();
        let gsis = self.optional(id, table, "GlobalSecondaryIndexes")?;
        for (i, index) in gsis.as_ref().and_then(Json::as_array).into_iter().flatten().enumerate() {
            let index_at = format!("{}[{i}]", at("GlobalSecondaryIndexes"));
            let (hash_key, range_key) = keys(index.get("KeySchema"), &index_at)?;
            let projection = index.get("Projection").and_then(|p| p.get("ProjectionType"));
            indexes.push(IndexInfo {
                name: field(index, "IndexName", &index_at)?,
                hash_key,
                range_key,
                projection_type: projection.and_then(Json::as_str).unwrap_or("KEYS_ONLY").to_owned(),
            });
        }
        let ttl = self.optional(id, table, "TimeToLiveSpecification")?;
        let enabled = |value: Option<&Json>| {
            matches!(value, Some(Json::Bool(true))) || value.and_then(Json::as_str) == Some("true")
        };
        let pitr = self.optional(id, table, "PointInTimeRecoverySpecification")?;
        Ok(TableInfo {
            table_name: self.physical_name(id, "AWS::DynamoDB::Table", table)?,
            attribute_definitions,
            hash_key,
            range_key,
            indexes,
            ttl_attribute: match &ttl {
                Some(ttl) if enabled(ttl.get("Enabled")) => {
                    Some(field(ttl, "AttributeName", &at("TimeToLiveSpecification"))?)
                }
                _ => None,
            },
            billing_mode: self.property(id, table, "BillingMode")?.unwrap_or_else(|| "PROVISIONED".into()),
            point_in_time_recovery: enabled(pitr.as_ref().and_then(|p| p.get("PointInTimeRecoveryEnabled"))),
        })
    }
}

/// Parameter values: the override, else the Default, checked as CloudFormation checks them.
fn parameters(
    doc: &Map<String, Json>,
    overrides: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, Param>> {
    let declarations = section(doc, "Parameters")?;
    if let Some(unknown) = overrides.keys().find(|name| !declarations.is_some_and(|d| d.contains_key(*name))) {
        return Err(invalid("parameter overrides", format!("{unknown} is not a parameter of the template")));
    }
    let mut parameters = BTreeMap::new();
    for (name, declaration) in declarations.into_iter().flatten() {
        let at = join("Parameters", name);
        let get = |key: &str| declaration.get(key);
        let ty = get("Type").and_then(Json::as_str).ok_or_else(|| invalid(&at, "no Type"))?;
        let value = match overrides.get(name) {
            Some(value) => value.clone(),
            None => match get("Default") {
                Some(default) => scalar_string(default, &join(&at, "Default"))?,
                None => {
                    warnings.push(format!("{at}: no Default and no override; values that use it do not resolve"));
                    parameters.insert(name.clone(), Param::Missing);
                    continue;
                }
            },
        };
        if ty.starts_with("AWS::SSM::Parameter::") {
            warnings.push(format!("{at}: the type {ty} is not resolved locally"));
            parameters.insert(name.clone(), Param::Unsupported(ty.to_owned()));
            continue;
        }
        let list = ty == "CommaDelimitedList" || ty.starts_with("List<");
        let items: Vec<&str> = if list { value.split(',').collect() } else { vec![value.as_str()] };
        let allowed = get("AllowedValues")
            .and_then(Json::as_array)
            .map(|a| a.iter().map(|v| scalar_string(v, &at)).collect::<Result<BTreeSet<_>>>())
            .transpose()?;
        let bound = |key: &str| get(key).and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()));
        for item in &items {
            let fail = |why: String| Err(invalid(&at, format!("the value {item:?} {why}")));
            if let Some(allowed) = &allowed
                && !allowed.contains(*item)
            {
                return fail(format!("is not one of the AllowedValues {allowed:?}"));
            }
            if ty == "Number" || ty == "List<Number>" {
                let Ok(n) = item.trim().parse::<f64>() else { return fail("is not a Number".into()) };
                if bound("MinValue").is_some_and(|min| n < min) || bound("MaxValue").is_some_and(|max| n > max) {
                    return fail("is outside MinValue..MaxValue".into());
                }
            } else if bound("MinLength").is_some_and(|min| (item.chars().count() as f64) < min)
                || bound("MaxLength").is_some_and(|max| (item.chars().count() as f64) > max)
            {
                return fail("is outside MinLength..MaxLength".into());
            }
        }
        if get("AllowedPattern").is_some() && overrides.contains_key(name) {
            warnings.push(format!("{at}: AllowedPattern is not checked locally; AWS checks it on deploy"));
        }
        let value = if list {
            Json::Array(items.into_iter().map(|s| Json::String(s.to_owned())).collect())
        } else {
            Json::String(value)
        };
        parameters.insert(name.clone(), Param::Value(value));
    }
    Ok(parameters)
}

#[cfg(test)]
mod tests {
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
        assert!(
            message.contains("Config.Properties.Name") && message.contains("QueuedOnlyFn is not created"),
            "{message}"
        );
        // Conditions that refer to each other.
        let cyclic = MINIMAL
            .replace("Conditions:\n", "Conditions:\n  A: !Condition B\n  B: !Condition A\n")
            .replace("AcceptanceRequired: false", "AcceptanceRequired: !If [A, true, false]");
        assert!(error(&cyclic).contains("circular"), "{}", error(&cyclic));
        // A route to a function the template does not have.
        let foreign =
            MINIMAL.replace("Target: !GetAtt HandlerFn.Arn", "Target: arn:aws:lambda:us-east-1:1:function:other");
        assert!(error(&foreign).contains("not an AWS::Serverless::Function of the template"), "{}", error(&foreign));
        // A route key twice.
        let twice = MINIMAL.replace("RouteKey: ping", "RouteKey: $connect");
        assert!(error(&twice).contains("a second route for $connect"), "{}", error(&twice));
        // A function the local stack cannot run.
        let no_binary = MINIMAL.replace("BuildProperties: { Binary: mg-auth }", "BuildProperties: {}");
        assert!(
            error(&no_binary).contains("Resources.AuthFn.Metadata.BuildProperties.Binary"),
            "{}",
            error(&no_binary)
        );
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
            [
                "Outputs.Cidr.Value: Fn::Cidr is not supported by the local stack; the local stack does not use this value"
            ]
        );
        let needed = MINIMAL.replace("StageName: dev", "StageName: !Base64 dev");
        assert_eq!(
            error(&needed),
            "Resources.Stage.Properties.StageName: Fn::Base64 is not supported by the local stack"
        );
    }
}
