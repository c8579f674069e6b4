//! Evaluating the template's values: `Ref`, the `Fn::*` intrinsics, conditions, SAM's
//! `Globals` and the `Rules` assertions.
//!
//! Hand-written on purpose: no maintained Rust crate evaluates CloudFormation intrinsics, and the
//! local stack needs only the values it uses, each failure naming the property path it came
//! from, with placeholders for what only a deployment knows (resource ARNs, physical names).

use super::parameters::parameters;
use super::*;

/// SAM merges `Globals` into each function: mappings merge (the function wins), lists
/// concatenate (globals first), anything else is the function's own.
pub(super) fn merge_globals(local: &mut Json, global: &Json) {
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
pub(super) fn scan_intrinsics(value: &Json, at: &str, warnings: &mut Vec<String>) {
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
pub(super) fn name_property(resource_type: &str) -> Option<&'static str> {
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
    pub(super) fn new(
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

    pub(super) fn eval(&self, value: &Json, at: &str) -> Result<Option<Json>> {
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
    pub(super) fn eval_nested(&self, value: &Json, at: &str) -> Result<Option<Json>> {
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

    pub(super) fn value(&self, value: &Json, at: &str) -> Result<Json> {
        self.eval(value, at)?.ok_or_else(|| invalid(at, "AWS::NoValue where a value is required"))
    }

    pub(super) fn string(&self, value: &Json, at: &str) -> Result<String> {
        scalar_string(&self.value(value, at)?, at)
    }

    pub(super) fn boolean(&self, value: &Json, at: &str) -> Result<bool> {
        match self.value(value, at)? {
            Json::Bool(b) => Ok(b),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(invalid(at, format!("expected a boolean, found {other}"))),
        }
    }

    pub(super) fn list(&self, value: &Json, at: &str) -> Result<Vec<Json>> {
        match self.value(value, at)? {
            Json::Array(items) => Ok(items),
            other => Err(invalid(at, format!("expected a list, found {other}"))),
        }
    }

    pub(super) fn intrinsic(&self, name: &str, arg: &Json, outer: &str) -> Result<Option<Json>> {
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

    pub(super) fn condition(&self, name: &str, at: &str) -> Result<bool> {
        let expression = section(self.doc, "Conditions")?
            .and_then(|c| c.get(name))
            .ok_or_else(|| invalid(at, format!("{name} is not a condition of the template")))?;
        self.boolean(expression, &format!("Conditions.{name}"))
    }

    pub(super) fn reference(&self, name: &str, at: &str) -> Result<Option<Json>> {
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
    pub(super) fn resource(&self, id: &str, at: &str) -> Result<(&str, &Map<String, Json>)> {
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

    pub(super) fn is_created(&self, id: &str, resource: &Map<String, Json>) -> Result<bool> {
        let Some(condition) = resource.get("Condition") else { return Ok(true) };
        let at = format!("Resources.{id}.Condition");
        self.condition(condition.as_str().ok_or_else(|| invalid(&at, "expects a condition name"))?, &at)
    }

    /// Every resource of type `ty` the template creates, by logical ID.
    pub(super) fn created(&self, ty: &str) -> Result<Vec<(&str, &Map<String, Json>)>> {
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

    pub(super) fn physical_name(&self, id: &str, ty: &str, resource: &Map<String, Json>) -> Result<String> {
        let property = name_property(ty)
            .and_then(|p| resource.get("Properties").and_then(|props| props.get(p)).map(|value| (p, value)));
        match property {
            Some((p, value)) => self.string(value, &format!("Resources.{id}.Properties.{p}")),
            None => Ok(id.to_owned()),
        }
    }

    pub(super) fn ref_value(&self, id: &str, ty: &str, resource: &Map<String, Json>) -> Result<String> {
        Ok(match ty {
            "AWS::SNS::Topic" | "AWS::IAM::ManagedPolicy" => self.arn(id, ty, resource)?,
            "AWS::SQS::Queue" => {
                format!("https://sqs.{REGION}.{URL_SUFFIX}/{ACCOUNT_ID}/{}", self.physical_name(id, ty, resource)?)
            }
            // Names where the type has a name property, IDs (the logical ID here) otherwise.
            _ => self.physical_name(id, ty, resource)?,
        })
    }

    pub(super) fn arn(&self, id: &str, ty: &str, resource: &Map<String, Json>) -> Result<String> {
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

    pub(super) fn get_att(&self, id: &str, attribute: &str, at: &str) -> Result<Json> {
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

    pub(super) fn sub(&self, text: &str, variables: Option<&Map<String, Json>>, at: &str) -> Result<String> {
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
    pub(super) fn check_rules(&self, warnings: &mut Vec<String>) -> Result<()> {
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
}
