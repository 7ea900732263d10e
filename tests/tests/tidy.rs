//! The tidy test: docs that cannot drift from the code (every JSON schema the binaries print is
//! described in docs/format.md; every path a doc or comment cites exists) and the house rules
//! (files and functions of one job, unsafe blocks that say why they are sound, no unused
//! workspace dependency). The rules themselves are byok_tests::tidy, each shown there to fail
//! on a made-up input.

use byok_tests::tidy;
use std::collections::BTreeSet;
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

/// Files over [`tidy::MAX_FILE_LINES`] that are known and waiting to be split, with the length
/// each may not pass. A file leaves this list when it is split (the test says so when one is
/// short enough); none joins it.
const LONG_FILES: [(&str, usize); 0] = [];

/// Functions over [`tidy::MAX_FN_LINES`] known and waiting to be split, as for [`LONG_FILES`].
const LONG_FUNCTIONS: [(&str, &str, usize); 0] = [];

fn rust_sources() -> Vec<String> {
    byok_tests::tidy::repository_files(&byok_tests::workspace())
        .into_iter()
        .filter(|f| f.ends_with(".rs"))
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(byok_tests::workspace().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn no_source_file_outside_the_tests_passes_600_lines() {
    let mut problems = Vec::new();
    for path in rust_sources().iter().filter(|p| !tidy::is_test_code(p)) {
        let lines = tidy::code_part(&read(path)).len();
        match LONG_FILES.iter().find(|(p, _)| p == path) {
            Some((_, ceiling)) if lines > *ceiling => problems.push(format!(
                "{path}: {lines} lines, more than the {ceiling} it had when it was listed as \
                 too long: split it instead of growing it"
            )),
            Some(_) if lines <= tidy::MAX_FILE_LINES => problems.push(format!(
                "{path}: {lines} lines now: take it off LONG_FILES in tests/tests/tidy.rs"
            )),
            None if lines > tidy::MAX_FILE_LINES => problems.push(format!(
                "{path}: {lines} lines (its test module not counted), over {}: split it by job",
                tidy::MAX_FILE_LINES
            )),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_function_outside_the_tests_passes_80_lines() {
    let mut problems = Vec::new();
    for path in rust_sources().iter().filter(|p| !tidy::is_test_code(p)) {
        for (name, lines) in tidy::long_functions(&read(path), tidy::MAX_FN_LINES) {
            match LONG_FUNCTIONS
                .iter()
                .find(|(p, n, _)| p == path && *n == name)
            {
                Some((_, _, ceiling)) if lines <= *ceiling => {}
                _ => problems.push(format!(
                    "{path}: fn {name} has {lines} lines, over {}: split it",
                    tidy::MAX_FN_LINES
                )),
            }
        }
    }
    for (path, name, _) in LONG_FUNCTIONS {
        let still_long = tidy::long_functions(&read(path), tidy::MAX_FN_LINES)
            .iter()
            .any(|(n, _)| n == name);
        if !still_long {
            problems.push(format!(
                "{path}: fn {name} is short enough now: take it off LONG_FUNCTIONS"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_unsafe_block_says_why_it_is_sound() {
    let mut problems = Vec::new();
    for path in rust_sources() {
        for line in tidy::undocumented_unsafe(&read(&path)) {
            problems.push(format!(
                "{path}:{line}: an unsafe block with no `// SAFETY:` comment above it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_lock_is_taken_through_its_binarys_sync_lock() {
    let mut problems = Vec::new();
    for path in rust_sources() {
        if tidy::is_test_code(&path) || path.ends_with("/sync.rs") {
            continue;
        }
        for line in tidy::direct_locks(&read(&path)) {
            problems.push(format!(
                "{path}:{line}: a lock unwrapped in place: take it with `byok_cli_common::sync::lock` \
                 (the workstation binaries) or `kv_emulator::sync::lock` (the emulator), which say \
                 what a poisoned lock means"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_path_a_doc_or_comment_cites_is_in_the_repository() {
    let files = tidy::repository_files(&byok_tests::workspace());
    let set: BTreeSet<String> = files.iter().cloned().collect();
    let mut problems = Vec::new();
    let mut cited = 0;
    for path in &files {
        let rust = path.ends_with(".rs");
        if !(rust || path.ends_with(".md") || path.ends_with(".toml") || path == ".ci/run") {
            continue;
        }
        for (line, target) in tidy::cited_paths(&read(path), rust) {
            cited += 1;
            if !tidy::path_exists(&target, path, &set) {
                problems.push(format!(
                    "{path}:{line}: cites {target}, which does not exist"
                ));
            }
        }
    }
    assert!(
        cited > 100,
        "only {cited} citations found: the scanner is broken"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_module_reaches_back_to_itself() {
    let files = tidy::repository_files(&byok_tests::workspace());
    let roots: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.find("/src/").map(|at| &f[..at + "/src/".len()]))
        .collect();
    assert!(roots.len() >= 7, "found only {roots:?}");
    let mut problems = Vec::new();
    for root in roots {
        let mut modules: Vec<(String, String)> = Vec::new();
        for path in files
            .iter()
            .filter(|f| f.starts_with(root) && f.ends_with(".rs"))
        {
            let rel = &path[root.len()..];
            let name = rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs");
            if matches!(name, "lib" | "main") || tidy::is_test_code(path) {
                continue;
            }
            let code = tidy::code_part(&read(path)).join("\n");
            match modules.iter_mut().find(|(n, _)| n == name) {
                Some((_, text)) => text.push_str(&code),
                None => modules.push((name.to_string(), code)),
            }
        }
        for cycle in tidy::module_cycles(&modules) {
            problems.push(format!(
                "{root}: {} -> {}: move what they share into a module below both",
                cycle.join(" -> "),
                cycle[0]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_workspace_dependency_is_used_by_a_member() {
    let root = byok_tests::workspace();
    let members: Vec<String> = tidy::repository_files(&root)
        .into_iter()
        .filter(|f| f.ends_with("/Cargo.toml"))
        .map(|f| read(&f))
        .collect();
    assert!(
        members.len() >= 7,
        "found {} member manifests",
        members.len()
    );
    let unused = tidy::unused_workspace_dependencies(&read("Cargo.toml"), &members);
    assert!(
        unused.is_empty(),
        "declared in [workspace.dependencies] but used by no member: {unused:?}; remove them"
    );
}
