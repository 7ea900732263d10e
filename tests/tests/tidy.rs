//! Docs that cannot drift from the code: every JSON document's schema the binaries print is
//! described in docs/format.md.

use std::path::Path;

/// The `const SCHEMA: &'static str = "..."` values in a crate's sources.
fn schemas_in(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            schemas_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                if let Some(rest) = line.trim().strip_prefix("const SCHEMA: &'static str = \"") {
                    found.push(rest.split('"').next().unwrap().to_string());
                }
            }
        }
    }
}

#[test]
fn every_json_schema_is_documented() {
    let root = byok_tests::workspace();
    let mut schemas = Vec::new();
    for krate in ["byok-offline", "byok-online"] {
        schemas_in(&root.join("crates").join(krate).join("src"), &mut schemas);
    }
    assert!(
        schemas.len() >= 15,
        "expected a schema per command of both binaries, found {schemas:?}"
    );
    let format = std::fs::read_to_string(root.join("docs/format.md")).unwrap();
    let missing: Vec<&String> = schemas
        .iter()
        .filter(|s| !format.contains(&format!("`{s}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/format.md does not describe {missing:?}: add a row to its JSON output tables"
    );
    // byok-cli-common's `output::ERROR_SCHEMA`, which every failing command prints.
    assert!(format.contains("byok.error/1"));
}
