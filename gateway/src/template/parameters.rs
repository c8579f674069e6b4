//! Parameter values: the override, else the `Default`, checked as CloudFormation checks them.

use super::*;

pub(super) enum Param {
    Value(Json),
    /// No Default and no override: CloudFormation would ask for one.
    Missing,
    /// A type whose value lives elsewhere (SSM).
    Unsupported(String),
}

/// Parameter values: the override, else the Default, checked as CloudFormation checks them.
pub(super) fn parameters(
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
