//! The repository's house rules as plain functions over text, which tests/tests/tidy.rs runs on
//! every file: each takes what it judges and returns what breaks the rule, so each rule can be
//! shown to fail on a made-up input as well as to pass on the tree.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// A source file outside the tests longer than this (its test module not counted) does more
/// than one job.
pub const MAX_FILE_LINES: usize = 600;
/// A function longer than this does more than one thing.
pub const MAX_FN_LINES: usize = 80;

/// Every file git tracks or would (untracked but not ignored), relative to `root`, sorted.
pub fn repository_files(root: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("git ls-files: {e}; install git (apt-get install git)"));
    assert!(out.status.success(), "git ls-files failed in {root:?}");
    let mut files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| root.join(n).exists())
        .collect();
    files.sort();
    files
}

/// Whether `path` (repository-relative) is test code: the test kit, a crate's `tests/`, or a
/// `tests.rs` module.
pub fn is_test_code(path: &str) -> bool {
    path.starts_with("tests/") || path.contains("/tests/") || path.ends_with("/tests.rs")
}

/// The lines of `text` before its first column-0 `#[cfg(test)]`: the code, without the unit
/// tests kept beside it.
pub fn code_part(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .collect()
}

/// Each function in `text`'s code part with more than `max` lines (signature to closing brace),
/// as (name, lines). Relies on rustfmt's layout: a body closes on a line that is the
/// signature's indentation and `}`.
pub fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines = code_part(text);
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_signature(line) else {
            continue;
        };
        // The signature may run over several lines; a `;` ends a body-less declaration.
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';') || l.ends_with('}')
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) {
            let length = end - i + 1;
            if length > max {
                found.push((name.to_string(), length));
            }
        }
    }
    found
}

/// `(indentation, name)` when `line` starts a function item.
fn fn_signature(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let mut rest = trimmed;
    for qualifier in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    rest = rest.strip_prefix("extern \"C\" ").unwrap_or(rest);
    let name = rest.strip_prefix("fn ")?;
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    (end > 0).then(|| (indent, &name[..end]))
}

/// The 1-based lines of `text` that open an `unsafe` block or impl without a `// SAFETY:`
/// comment directly above the statement holding it.
pub fn undocumented_unsafe(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = without_strings(line.split("//").next().unwrap_or(""));
        if !(code.contains("unsafe {") || code.trim_start().starts_with("unsafe impl")) {
            continue;
        }
        if !safety_comment_above(&lines, i) {
            found.push(i + 1);
        }
    }
    found
}

/// The 1-based lines of `text`'s code part that take a lock and unwrap or expect it
/// themselves (`.lock().unwrap()`, `.lock()` then `.expect(` on the next line): each binary
/// takes its locks one way, through its `sync::lock`.
pub fn direct_locks(text: &str) -> Vec<usize> {
    let lines = code_part(text);
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = without_strings(line.split("//").next().unwrap_or(""));
        let Some(at) = code.find(".lock()") else {
            continue;
        };
        let after = code[at + ".lock()".len()..].trim_start();
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        let unwraps = |s: &str| s.starts_with(".unwrap()") || s.starts_with(".expect(");
        if unwraps(after) || (after.is_empty() && unwraps(next)) {
            found.push(i + 1);
        }
    }
    found
}

/// `line` with what its string literals hold removed (a literal may mention `unsafe {`).
fn without_strings(line: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut escaped = false;
    for c in line.chars() {
        match (inside, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, true, _) => escaped = false,
            (_, false, '"') => inside = !inside,
            (false, _, c) => out.push(c),
            (true, false, _) => {}
        }
    }
    out
}

/// Walks up from line `at` over the statement's earlier lines (those not ending a statement or
/// block) to the comment block above it, and looks for `SAFETY:` in that block.
fn safety_comment_above(lines: &[&str], at: usize) -> bool {
    let mut i = at;
    while i > 0 {
        i -= 1;
        let line = lines[i].trim();
        if line.starts_with("//") {
            if line.contains("SAFETY:") {
                return true;
            }
            continue;
        }
        if line.starts_with("#[") {
            continue;
        }
        let ends_statement =
            line.is_empty() || line.ends_with(';') || line.ends_with('{') || line.ends_with('}');
        if ends_statement {
            return false;
        }
    }
    false
}

/// The repository paths `text` cites, with their 1-based lines: words starting `crates/`,
/// `xtask/`, `tests/`, `docs/` or `.ci/`. In Rust, only comments are read; in Markdown and
/// TOML, everything. Paths with `{`, `*` or `<` are patterns, not citations, and are skipped.
pub fn cited_paths(text: &str, rust: bool) -> Vec<(usize, String)> {
    const ROOTS: [&str; 5] = ["crates/", "xtask/", "tests/", "docs/", ".ci/"];
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let part = match (rust, line.find("//")) {
            (false, _) => line,
            (true, Some(at)) => &line[at..],
            (true, None) => continue,
        };
        for (start, _) in part.char_indices() {
            let before = part[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "_./-".contains(c)) {
                continue;
            }
            let rest = &part[start..];
            if !ROOTS.iter().any(|r| rest.starts_with(r)) {
                continue;
            }
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || "_./-{}*<>".contains(*c))
                .collect();
            if word.contains(['{', '*', '<', '>']) {
                continue;
            }
            let path = word.trim_end_matches(['.', '/']);
            found.push((n + 1, path.to_string()));
        }
    }
    found
}

/// Whether `cited`, written in the file `citing`, names something in `files`: from the
/// repository root, or from a directory above the citing file (a crate names its own tests
/// from its own root). An upper-case word of two or more letters (`BIN`, `VERSION`) stands for
/// any name.
pub fn path_exists(cited: &str, citing: &str, files: &BTreeSet<String>) -> bool {
    let mut bases = vec![String::new()];
    let mut dir = citing;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        bases.push(format!("{parent}/"));
        dir = parent;
    }
    bases.iter().any(|base| {
        let want = format!("{base}{cited}");
        files
            .iter()
            .any(|f| matches_path(&want, f) || (f.len() > want.len() && matches_dir(&want, f)))
    })
}

/// `want` names `file`, placeholders standing for any one segment's part.
fn matches_path(want: &str, file: &str) -> bool {
    let (w, f): (Vec<&str>, Vec<&str>) = (want.split('/').collect(), file.split('/').collect());
    w.len() == f.len() && w.iter().zip(&f).all(|(w, f)| matches_segment(w, f))
}

/// `want` names a directory holding `file`.
fn matches_dir(want: &str, file: &str) -> bool {
    let w: Vec<&str> = want.split('/').collect();
    let f: Vec<&str> = file.split('/').collect();
    w.len() < f.len() && w.iter().zip(&f).all(|(w, f)| matches_segment(w, f))
}

fn matches_segment(want: &str, have: &str) -> bool {
    if want == have {
        return true;
    }
    // A placeholder: split `want` at upper-case words and match the literal parts in order.
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let chars: Vec<char> = want.chars().collect();
    let mut i = 0;
    let mut placeholder = false;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_uppercase())
            .count();
        if run >= 2 {
            pieces.push(std::mem::take(&mut literal));
            placeholder = true;
            i += run;
        } else {
            literal.push(chars[i]);
            i += 1;
        }
    }
    pieces.push(literal);
    if !placeholder {
        return false;
    }
    let mut rest = have;
    for (k, piece) in pieces.iter().enumerate() {
        if k == 0 {
            let Some(r) = rest.strip_prefix(piece.as_str()) else {
                return false;
            };
            rest = r;
        } else if k == pieces.len() - 1 {
            return rest.ends_with(piece.as_str()) && rest.len() > piece.len();
        } else {
            let Some(at) = rest[1.min(rest.len())..].find(piece.as_str()) else {
                return false;
            };
            rest = &rest[1 + at + piece.len()..];
        }
    }
    true
}

/// The names in the root manifest's `[workspace.dependencies]` that no member manifest takes
/// with `workspace = true`.
pub fn unused_workspace_dependencies(root_manifest: &str, members: &[String]) -> Vec<String> {
    let mut in_table = false;
    let mut declared = Vec::new();
    for line in root_manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[workspace.dependencies]";
            continue;
        }
        if in_table
            && !line.starts_with('#')
            && let Some((name, _)) = line.split_once('=')
        {
            declared.push(name.trim().to_string());
        }
    }
    declared
        .into_iter()
        .filter(|name| !members.iter().any(|m| takes_from_workspace(m, name)))
        .collect()
}

fn takes_from_workspace(manifest: &str, name: &str) -> bool {
    manifest.lines().any(|line| {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(name) else {
            return false;
        };
        let rest = rest.trim_start();
        rest.starts_with(".workspace")
            || (rest.starts_with('=') && rest.contains("workspace") && rest.contains("true"))
    })
}

/// The top-level modules of one crate's `src` that reach back to themselves through `crate::`
/// paths, each cycle once (as the modules on it, starting from the least by name). `modules`
/// holds each top-level module's name with the code of all its files (its submodules
/// included), test modules and comments left out by the caller or by [`code_part`].
pub fn module_cycles(modules: &[(String, String)]) -> Vec<Vec<String>> {
    let names: BTreeSet<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    let edges: Vec<(&str, BTreeSet<&str>)> = modules
        .iter()
        .map(|(name, text)| {
            let used = crate_paths(text)
                .into_iter()
                .filter_map(|m| names.get(m.as_str()).copied())
                .filter(|m| m != name)
                .collect();
            (name.as_str(), used)
        })
        .collect();
    let next = |m: &str| -> Vec<&str> {
        edges
            .iter()
            .find(|(n, _)| *n == m)
            .map(|(_, used)| used.iter().copied().collect())
            .unwrap_or_default()
    };
    let mut cycles = BTreeSet::new();
    for (start, _) in &edges {
        let mut stack = vec![vec![*start]];
        while let Some(path) = stack.pop() {
            for n in next(path[path.len() - 1]) {
                if n == *start {
                    let least = (0..path.len()).min_by_key(|&i| path[i]).unwrap_or(0);
                    let cycle: Vec<String> = path[least..]
                        .iter()
                        .chain(&path[..least])
                        .map(|m| m.to_string())
                        .collect();
                    cycles.insert(cycle);
                } else if !path.contains(&n) && path.len() < 8 {
                    let mut longer = path.clone();
                    longer.push(n);
                    stack.push(longer);
                }
            }
        }
    }
    cycles.into_iter().collect()
}

/// The first segment of every `crate::` path in `text`'s code (comments skipped), including
/// those inside `use crate::{a, b::c}` groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code_part(text) {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let head = item.trim().split("::").next().unwrap_or("");
                    found.insert(head.trim().to_string());
                }
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(head);
            }
        }
    }
    found.remove("");
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_function_is_found_and_a_short_one_and_a_declaration_are_not() {
        let body = "    x();\n".repeat(90);
        let text = format!(
            "fn short() {{\n    x();\n}}\n\npub(crate) fn long(\n    a: u8,\n) -> u8 {{\n{body}}}\n\
             trait T {{\n    fn declared(&self);\n    fn given(&self) {{}}\n}}\n"
        );
        assert_eq!(long_functions(&text, 80), vec![("long".to_string(), 94)]);
        assert!(long_functions(&text, 100).is_empty());
    }

    #[test]
    fn test_modules_do_not_count() {
        let text = format!(
            "fn a() {{}}\n#[cfg(test)]\nmod tests {{\n{}}}\n",
            "\n".repeat(50)
        );
        assert_eq!(code_part(&text).len(), 1);
    }

    #[test]
    fn an_unsafe_block_needs_a_safety_comment_above_its_statement() {
        // Spelt in capitals so that this file's own lines hold no such block.
        let text = "fn f() {\n    // SAFETY: the pointer is valid.\n    let a = UNSAFE { *p };\n\
                    \n    let b: Symbol<\n        T,\n    > = UNSAFE { get() };\n    // why\n    \
                    let c = UNSAFE { *q };\n    // SAFETY: x\n    let d: Symbol<\n        T,\n    \
                    > = UNSAFE { get() };\n    let e = \"UNSAFE { in a string }\";\n}\n"
            .replace("UNSAFE", "unsafe");
        assert_eq!(undocumented_unsafe(&text), vec![7, 9]);
    }

    #[test]
    fn a_lock_unwrapped_in_place_is_found_and_one_through_sync_lock_is_not() {
        let text = "fn f() {\n    let a = m.lock().unwrap();\n    let b = m\n        .lock()\n        \
                    .expect(\"x\");\n    let c = lock(&m, \"m\");\n    let d = \".lock().unwrap()\";\n    \
                    let e = m.lock().await;\n}\n#[cfg(test)]\nmod tests {\n    fn t() { m.lock().unwrap(); }\n}\n";
        assert_eq!(direct_locks(text), vec![2, 4]);
    }

    #[test]
    fn cited_paths_are_read_from_comments_in_rust_and_everywhere_in_docs() {
        let rust =
            "let a = \"crates/x.rs\";\n// see crates/byok-core/src/kid.rs, and docs/{a,b}.md\n";
        assert_eq!(
            cited_paths(rust, true),
            vec![(2, "crates/byok-core/src/kid.rs".to_string())]
        );
        let md = "Run `tests/tests/tidy.rs`. Not a/tests/x.rs.";
        assert_eq!(
            cited_paths(md, false),
            vec![(1, "tests/tests/tidy.rs".into())]
        );
    }

    #[test]
    fn a_cited_path_resolves_from_the_root_the_crate_or_a_placeholder() {
        let files: BTreeSet<String> = [
            "crates/a/tests/vectors.rs",
            "crates/a/src/lib.rs",
            "xtask/dist/byok-offline.control",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(path_exists("crates/a/src/lib.rs", "docs/x.md", &files));
        assert!(path_exists("crates/a/src", "docs/x.md", &files));
        assert!(path_exists(
            "tests/vectors.rs",
            "crates/a/src/lib.rs",
            &files
        ));
        assert!(path_exists(
            "xtask/dist/BIN.control",
            "xtask/src/d.rs",
            &files
        ));
        assert!(!path_exists("crates/a/src/gone.rs", "docs/x.md", &files));
        assert!(!path_exists(
            "xtask/dist/BIN.toml",
            "xtask/src/d.rs",
            &files
        ));
    }

    #[test]
    fn a_workspace_dependency_no_member_takes_is_found() {
        let root =
            "[workspace.dependencies]\nserde = \"1\"\nsecrecy = \"0.10\"\n[profile.dev]\nx = 1\n";
        let member = "[dependencies]\nserde.workspace = true\n".to_string();
        assert_eq!(
            unused_workspace_dependencies(root, &[member]),
            vec!["secrecy".to_string()]
        );
        let both = "[dependencies]\nserde = { workspace = true }\nsecrecy.workspace = true\n";
        assert!(unused_workspace_dependencies(root, &[both.to_string()]).is_empty());
    }

    #[test]
    fn a_module_cycle_is_found_once_and_a_chain_is_not_one() {
        let module = |name: &str, text: &str| (name.to_string(), text.to_string());
        let cycle = [
            module("a", "use crate::b::X;\n"),
            module("b", "use crate::{c::Y, d};\n// crate::a in a comment\n"),
            module("c", "fn f() { crate::a::g() }\n"),
            module("d", "use std::fmt;\n"),
        ];
        assert_eq!(module_cycles(&cycle), vec![vec!["a", "b", "c"]]);
        let chain = [
            module("a", "use crate::b::X;\n"),
            module(
                "b",
                "use crate::c;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
            ),
            module("c", ""),
        ];
        assert!(module_cycles(&chain).is_empty());
    }
}
