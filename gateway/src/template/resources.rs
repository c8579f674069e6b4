//! What the local stack takes from the evaluated resources: routes and the function behind
//! each, the `$connect` authorizer, the functions, the FlexMatch configuration and rule set, and
//! the tables. Each piece is needed, so every error propagates.

use super::*;

impl Template<'_> {
    pub(super) fn build(&self, warnings: &mut Vec<String>) -> Result<LocalTemplate> {
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

    pub(super) fn properties<'r>(&self, resource: &'r Map<String, Json>) -> &'r Map<String, Json> {
        static EMPTY: std::sync::OnceLock<Map<String, Json>> = std::sync::OnceLock::new();
        resource.get("Properties").and_then(Json::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// A property's value, evaluated; `None` when absent or `AWS::NoValue`.
    pub(super) fn optional(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Option<Json>> {
        match self.properties(resource).get(key) {
            Some(value) => self.eval(value, &format!("Resources.{id}.Properties.{key}")),
            None => Ok(None),
        }
    }

    pub(super) fn property(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Option<String>> {
        let at = format!("Resources.{id}.Properties.{key}");
        self.optional(id, resource, key)?.map(|v| scalar_string(&v, &at)).transpose()
    }

    pub(super) fn required(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<String> {
        self.property(id, resource, key)?
            .ok_or_else(|| invalid(&format!("Resources.{id}.Properties.{key}"), "missing; the local stack needs it"))
    }

    pub(super) fn number(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Option<u32>> {
        let at = format!("Resources.{id}.Properties.{key}");
        self.property(id, resource, key)?
            .map(|v| {
                v.parse::<u32>().map_err(|_| invalid(&at, format!("{v} is not a whole number of seconds/players")))
            })
            .transpose()
    }

    pub(super) fn strings(&self, id: &str, resource: &Map<String, Json>, key: &str) -> Result<Vec<String>> {
        let at = format!("Resources.{id}.Properties.{key}");
        match self.optional(id, resource, key)? {
            None => Ok(Vec::new()),
            Some(Json::Array(items)) => items.iter().map(|v| scalar_string(v, &at)).collect(),
            Some(value) => Ok(vec![scalar_string(&value, &at)?]),
        }
    }

    pub(super) fn functions(&self, warnings: &mut Vec<String>) -> Result<BTreeMap<String, FunctionInfo>> {
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
    pub(super) fn uri_function(
        &self,
        uri: &str,
        functions: &BTreeMap<String, FunctionInfo>,
        at: &str,
    ) -> Result<String> {
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

    pub(super) fn integration_function(
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

    pub(super) fn authorizer(
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

    pub(super) fn configuration(
        &self,
        warnings: &mut Vec<String>,
    ) -> Result<(MatchmakingConfiguration, String, String)> {
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

    pub(super) fn table(&self, id: &str, table: &Map<String, Json>) -> Result<TableInfo> {
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
