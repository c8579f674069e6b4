//! API Gateway's side of a Lambda `REQUEST` authorizer on `$connect`: what it makes of the
//! function's answer, as AWS documents it ("Output from an API Gateway Lambda authorizer" and the
//! example authorizer of the developer guide):
//!
//! - an IAM policy whose statements allow `execute-api:Invoke` on the `methodArn` (and none deny
//!   it) accepts the connection, and the policy's `context` map (flat; string, number and boolean
//!   values, which the integrations receive as strings) plus `principalId` becomes
//!   `requestContext.authorizer` of every later event of the connection;
//! - an explicit `Deny` on the `methodArn`, or no statement allowing it (an implicit deny): 403;
//!   an `Allow` with a `Condition` is not evaluated and does not count as allowing;
//! - the function failing with the error message `Unauthorized`: 401;
//! - any other failure: another error, a crash, a timeout, an answer that is not a valid policy
//!   (no `principalId`, no `policyDocument`, a nested `context` value): 500.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::IntegrationError;

/// The integration target of the `$connect` authorizer function. Route keys that begin with `$`
/// are reserved by API Gateway, so no route can be called this.
pub const AUTHORIZER_TARGET: &str = "$authorizer";

/// The action a WebSocket authorizer's policy must allow.
const INVOKE_ACTION: &str = "execute-api:Invoke";

/// The error message with which an authorizer function makes API Gateway answer 401.
const UNAUTHORIZED: &str = "Unauthorized";

/// Why a handshake is refused: the status, and for the logs what the authorizer did.
pub(crate) type Refused = (StatusCode, String);

/// The `methodArn` of a WebSocket API's `$connect`.
pub(crate) fn method_arn(api_id: &str, stage: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:000000000000:{api_id}/{stage}/$connect")
}

/// What API Gateway does with the result of invoking the authorizer function for `method_arn`:
/// the connection's `requestContext.authorizer`, or the refusal.
pub(crate) fn outcome(
    result: Result<Value, IntegrationError>,
    method_arn: &str,
) -> Result<Map<String, Value>, Refused> {
    let response = match result {
        Ok(response) => response,
        Err(IntegrationError::FunctionError(error)) if error_message(&error).as_deref() == Some(UNAUTHORIZED) => {
            return Err((StatusCode::UNAUTHORIZED, "the authorizer answered Unauthorized".to_owned()));
        }
        Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("the authorizer failed: {e}"))),
    };
    let invalid = |why: &str| (StatusCode::INTERNAL_SERVER_ERROR, format!("the authorizer's answer is invalid: {why}"));
    let principal_id = response.get("principalId").and_then(Value::as_str).ok_or_else(|| invalid("no principalId"))?;
    let statements = match response.get("policyDocument").and_then(|p| p.get("Statement")) {
        Some(Value::Array(statements)) => statements.iter().collect(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => return Err(invalid("no policyDocument.Statement")),
    };
    let mut allowed = false;
    for statement in statements {
        let applies = applies(statement, method_arn).map_err(|why| invalid(&why))?;
        match statement.get("Effect").and_then(Value::as_str) {
            Some("Deny") if applies => {
                return Err((StatusCode::FORBIDDEN, "the authorizer's policy denies $connect".to_owned()));
            }
            // IAM condition keys are not evaluated here: a conditional Allow does not admit, so a
            // policy that means "only if" never admits more locally than it would in AWS.
            Some("Allow") => allowed |= applies && statement.get("Condition").is_none(),
            Some("Deny") => {}
            _ => return Err(invalid("a statement's Effect is neither Allow nor Deny")),
        }
    }
    if !allowed {
        return Err((StatusCode::FORBIDDEN, "the authorizer's policy does not allow $connect".to_owned()));
    }
    let mut authorizer = Map::new();
    match response.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(context)) => {
            for (key, value) in context {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => continue,
                    Value::Array(_) | Value::Object(_) => {
                        return Err(invalid(&format!("context.{key} is not a string, number or boolean")));
                    }
                };
                authorizer.insert(key.clone(), Value::String(value));
            }
        }
        Some(_) => return Err(invalid("context is not an object")),
    }
    authorizer.insert("principalId".to_owned(), Value::String(principal_id.to_owned()));
    Ok(authorizer)
}

/// The `errorMessage` of a function error's payload (`{"errorType", "errorMessage"}`, as the
/// Runtime API and the Invoke API carry it).
fn error_message(payload: &str) -> Option<String> {
    let payload: Value = serde_json::from_str(payload).ok()?;
    payload.get("errorMessage").and_then(Value::as_str).map(str::to_owned)
}

/// Whether a policy statement covers invoking `method_arn`: its `Action` (or `NotAction`) and its
/// `Resource` (or `NotResource`), with IAM's `*` and `?` wildcards. A statement without either
/// is not a valid policy.
fn applies(statement: &Value, method_arn: &str) -> Result<bool, String> {
    let action = covers(statement, "Action", INVOKE_ACTION, true)?;
    let resource = covers(statement, "Resource", method_arn, false)?;
    Ok(action && resource)
}

fn covers(statement: &Value, element: &str, value: &str, ignore_case: bool) -> Result<bool, String> {
    let patterns = |v: &Value| -> Result<Vec<String>, String> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(all) => all
                .iter()
                .map(|p| p.as_str().map(str::to_owned).ok_or_else(|| format!("{element} holds a non-string")))
                .collect(),
            _ => Err(format!("{element} is not a string or a list of strings")),
        }
    };
    let matches = |pattern: &str| {
        if ignore_case {
            wildcard_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
        } else {
            wildcard_match(pattern, value)
        }
    };
    if let Some(v) = statement.get(element) {
        Ok(patterns(v)?.iter().any(|p| matches(p)))
    } else if let Some(v) = statement.get(format!("Not{element}")) {
        Ok(!patterns(v)?.iter().any(|p| matches(p)))
    } else {
        Err(format!("a statement has no {element}"))
    }
}

/// IAM's wildcards: `*` any run of characters (`/` included), `?` any one character.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    // The last `*` seen and the value position it is tried from.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ARN: &str = "arn:aws:execute-api:us-east-1:000000000000:local/local/$connect";

    fn policy(effect: &str, resource: Value) -> Value {
        json!({
            "principalId": "alice",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
            ]},
            "context": {"playerId": "alice", "role": "player"}
        })
    }

    fn status(result: Result<Value, IntegrationError>) -> StatusCode {
        outcome(result, ARN).expect_err("refused").0
    }

    #[test]
    fn an_allow_passes_the_context_and_principal_id_on() {
        let authorizer = outcome(Ok(policy("Allow", json!(ARN))), ARN).expect("allowed");
        assert_eq!(Value::Object(authorizer), json!({"playerId": "alice", "role": "player", "principalId": "alice"}));
    }

    #[test]
    fn context_values_arrive_as_strings_and_nested_ones_are_invalid() {
        let mut answer = policy("Allow", json!(ARN));
        answer["context"] = json!({"n": 7, "b": true, "s": "x"});
        let authorizer = outcome(Ok(answer.clone()), ARN).expect("allowed");
        assert_eq!((authorizer["n"].clone(), authorizer["b"].clone()), (json!("7"), json!("true")));
        answer["context"] = json!({"nested": {"a": 1}});
        assert_eq!(status(Ok(answer.clone())), StatusCode::INTERNAL_SERVER_ERROR);
        answer["context"] = json!({"list": [1]});
        assert_eq!(status(Ok(answer)), StatusCode::INTERNAL_SERVER_ERROR);
        let mut no_context = policy("Allow", json!(ARN));
        no_context.as_object_mut().unwrap().remove("context");
        assert!(outcome(Ok(no_context), ARN).is_ok(), "context is optional");
    }

    #[test]
    fn wildcards_match_like_iam() {
        for resource in [
            json!("*"),
            json!("arn:aws:execute-api:*:*:local/*"),
            json!(["x", "arn:aws:execute-api:us-east-1:000000000000:local/local/$conn?ct"]),
        ] {
            assert!(outcome(Ok(policy("Allow", resource.clone())), ARN).is_ok(), "{resource}");
        }
        let mut answer = policy("Allow", json!(ARN));
        answer["policyDocument"]["Statement"][0]["Action"] = json!("execute-api:*");
        assert!(outcome(Ok(answer), ARN).is_ok());
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b?c", "abc"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn deny_is_403_and_so_is_an_allow_for_something_else() {
        assert_eq!(status(Ok(policy("Deny", json!(ARN)))), StatusCode::FORBIDDEN);
        let other = "arn:aws:execute-api:us-east-1:000000000000:other/local/$connect";
        assert_eq!(status(Ok(policy("Allow", json!(other)))), StatusCode::FORBIDDEN);
        // An explicit deny wins over an allow.
        let mut both = policy("Allow", json!("*"));
        both["policyDocument"]["Statement"] = json!([
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN},
        ]);
        assert_eq!(status(Ok(both)), StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_conditional_allow_does_not_admit() {
        let mut answer = policy("Allow", json!(ARN));
        answer["policyDocument"]["Statement"][0]["Condition"] =
            json!({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}});
        assert_eq!(status(Ok(answer)), StatusCode::FORBIDDEN);
    }

    #[test]
    fn unauthorized_is_401_and_every_other_failure_500() {
        let error = |payload: &str| Err(IntegrationError::FunctionError(payload.to_owned()));
        assert_eq!(
            status(error(r#"{"errorType":"Unauthorized","errorMessage":"Unauthorized"}"#)),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(error(r#"{"errorType":"X","errorMessage":"unauthorized"}"#)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(status(error(r#"{"errorType":"X","errorMessage":"boom"}"#)), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(error("Unauthorized")), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(Err(IntegrationError::Unavailable("timed out".into()))), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(Ok(Value::Null)), StatusCode::INTERNAL_SERVER_ERROR);
        let mut no_principal = policy("Allow", json!(ARN));
        no_principal.as_object_mut().unwrap().remove("principalId");
        assert_eq!(status(Ok(no_principal)), StatusCode::INTERNAL_SERVER_ERROR);
        let mut bad_effect = policy("Allow", json!(ARN));
        bad_effect["policyDocument"]["Statement"][0]["Effect"] = json!("allow");
        assert_eq!(status(Ok(bad_effect)), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
