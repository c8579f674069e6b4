//! The committed JSON Schema files match the protocol's types. When they do not, regenerate them:
//!
//! ```sh
//! MATCHGATE_BLESS=1 cargo test -p matchgate-protocol --test schema
//! ```

use std::path::PathBuf;

use matchgate_protocol::schema::{SCHEMA_FILES, file_text};

#[test]
fn the_committed_schema_files_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
    let bless = std::env::var_os("MATCHGATE_BLESS").is_some();
    for file in SCHEMA_FILES {
        let path = dir.join(file.name);
        let generated = file_text(&(file.generate)());
        if bless {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "protocol/schema/{} is stale (the protocol's types changed); regenerate it with \
             `MATCHGATE_BLESS=1 cargo test -p matchgate-protocol --test schema` and commit it",
            file.name
        );
    }
}
