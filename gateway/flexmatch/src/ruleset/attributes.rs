//! `playerAttributes`: each attribute's name, type and default.

use super::*;

pub(super) fn parse_attributes(v: Option<&Json>, errs: &mut Errors) -> Vec<AttributeDef> {
    let mut out: Vec<AttributeDef> = Vec::new();
    let Some(v) = v else { return out };
    let Some(items) = v.as_array() else {
        errs.push("$.playerAttributes", "must be an array");
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.playerAttributes[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        check_keys(obj, &["name", "type", "default"], &path, errs);
        let name = match obj.get("name").and_then(Json::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                errs.push(format!("{path}.name"), "is required (a non-empty string)");
                continue;
            }
        };
        if out.iter().any(|a| a.name == name) {
            errs.push(format!("{path}.name"), format!("duplicate player attribute {name:?}"));
            continue;
        }
        let kind = match obj.get("type") {
            Some(Json::String(t)) => match AttributeType::parse(t) {
                Some(k) => k,
                None => {
                    errs.push(
                        format!("{path}.type"),
                        format!("must be one of string, number, string_list, string_number_map, found {t:?}"),
                    );
                    continue;
                }
            },
            _ => {
                errs.push(format!("{path}.type"), "is required");
                continue;
            }
        };
        let default = match obj.get("default") {
            None => None,
            Some(d) => match default_value(kind, d) {
                Some(v) => Some(v),
                None => {
                    errs.push(format!("{path}.default"), format!("{d} is not a {} value", kind.as_str()));
                    None
                }
            },
        };
        out.push(AttributeDef { name, kind, default });
    }
    out
}
