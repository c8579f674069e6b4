//! YAML → JSON, with CloudFormation's short forms (`!Ref x`) turned into long forms
//! (`{"Ref": "x"}`), so the evaluator handles one shape. JSON templates pass through unchanged.

use saphyr::{LoadableYamlNode, Scalar, Yaml};

use super::*;

pub(super) fn to_document(yaml: &str) -> Result<Map<String, Json>> {
    let docs = Yaml::load_from_str(yaml).map_err(|e| TemplateError::Yaml(e.to_string()))?;
    let [doc] = docs.as_slice() else {
        return Err(TemplateError::Yaml(format!("expected one YAML document, found {}", docs.len())));
    };
    match to_json(doc, "")? {
        Json::Object(map) => Ok(map),
        _ => Err(TemplateError::Yaml("the template is not a mapping".into())),
    }
}

pub(super) fn to_json(node: &Yaml, at: &str) -> Result<Json> {
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
