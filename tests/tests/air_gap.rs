//! The air gap in the dependency graph: the offline binary links no HTTP client and no async
//! runtime, and the online binary never links cryptoki.

use std::process::Command;

fn normal_deps(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--quiet",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--package",
            package,
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn crates(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn offline_links_no_network_stack_or_async_runtime() {
    let tree = normal_deps("byok-offline");
    let names = crates(&tree);
    assert!(names.contains(&"cryptoki"), "the tree was not read: {tree}");
    for banned in [
        "reqwest",
        "hyper",
        "tokio",
        "mio",
        "h2",
        "rustls",
        "azure_core",
        "async-trait",
    ] {
        assert!(!names.contains(&banned), "byok-offline links {banned}");
    }
}

#[test]
fn online_never_links_cryptoki() {
    let tree = normal_deps("byok-online");
    let names = crates(&tree);
    assert!(
        names.contains(&"azure_core"),
        "the tree was not read: {tree}"
    );
    for banned in ["cryptoki", "cryptoki-sys"] {
        assert!(!names.contains(&banned), "byok-online links {banned}");
    }
}
