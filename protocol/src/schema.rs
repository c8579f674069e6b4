//! JSON Schema of the client protocol, generated from the types in [`crate::action`] and
//! [`crate::push`], for client developers in any language. The committed copies live in
//! `protocol/schema/`; `tests/schema.rs` fails when they are stale.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

use crate::{ClientAction, Push};

/// One committed schema file: its name under `protocol/schema/` and how to generate it.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFile {
    pub name: &'static str,
    pub generate: fn() -> serde_json::Value,
}

/// Every schema file the protocol publishes.
pub const SCHEMA_FILES: [SchemaFile; 2] = [
    SchemaFile { name: "client-action.schema.json", generate: client_action_schema },
    SchemaFile { name: "push.schema.json", generate: push_schema },
];

/// Every frame a game client may send, tagged by `action`.
pub fn client_action_schema() -> serde_json::Value {
    document::<ClientAction>(
        "matchgate client action",
        "A JSON text frame a game client sends; API Gateway routes it on `action`.",
    )
}

/// Every frame the server pushes to a game client, tagged by `type`.
pub fn push_schema() -> serde_json::Value {
    document::<Push>(
        "matchgate push",
        "A JSON text frame the server pushes to a game client, tagged by `type` and named after FlexMatch's \
         events. Clients should ignore fields they do not know and treat an unknown `type` as a push from a \
         newer server.",
    )
}

fn document<T: JsonSchema>(title: &str, description: &str) -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema: Schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    without_null(&mut value);
    if let Some(object) = value.as_object_mut() {
        object.insert("title".into(), title.into());
        object.insert("description".into(), description.into());
    }
    value
}

/// Optional fields are omitted, never `null` (`skip_serializing_if`): an optional field's
/// `"type": [T, "null"]` becomes `"type": T`.
fn without_null(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if let Some(serde_json::Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    object.insert("type".into(), only);
                }
            }
            object.values_mut().for_each(without_null);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
}

/// The text of a committed schema file: pretty JSON and a final newline.
pub fn file_text(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
