//! A CycloneDX 1.5 SBOM per binary, `BIN.cdx.json`: the crates linked into it, as the build
//! itself reported them ([`Built::linked`]), with their versions, licences and (for crates.io
//! crates) Cargo.lock's SHA-256 of the `.crate` file.
//!
//! `cargo metadata` supplies names, versions, licences and the dependency edges, but not the
//! set: its resolve unifies features over the whole workspace and so lists optional crates
//! (h2, quinn, ring...) that `cargo build -p byok-online` never compiles.
//!
//! Deterministic: sorted, the only time is `SOURCE_DATE_EPOCH`'s, and the serial number is
//! derived from the content.

use super::compile::Built;
use super::{Source, TARGET};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the SBOM says of one package.
struct Package {
    name: String,
    version: String,
    license: Option<String>,
    /// `None` for the workspace's own crates.
    source: Option<String>,
    /// Normal (linked) dependencies on the target platform, by package id.
    deps: BTreeSet<String>,
}

/// `cargo metadata` and Cargo.lock's checksums for a tree.
pub struct Metadata {
    packages: BTreeMap<String, Package>,
    checksums: BTreeMap<(String, String), String>,
}

impl Metadata {
    pub fn load(root: &Path) -> Result<Self, String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .current_dir(root)
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", TARGET])
            .output()
            .map_err(|e| format!("could not run {cargo} metadata: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let meta: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("cargo metadata's output is not JSON: {e}"))?;
        let mut packages = BTreeMap::new();
        for p in meta["packages"].as_array().into_iter().flatten() {
            let package = Package {
                name: text(&p["name"]),
                version: text(&p["version"]),
                license: p["license"].as_str().map(spdx),
                source: p["source"].as_str().map(str::to_string),
                deps: BTreeSet::new(),
            };
            packages.insert(text(&p["id"]), package);
        }
        for node in meta["resolve"]["nodes"].as_array().into_iter().flatten() {
            let deps = normal_deps(node);
            if let Some(p) = packages.get_mut(&text(&node["id"])) {
                p.deps = deps;
            }
        }
        let checksums = lock_checksums(&root.join("Cargo.lock"))?;
        Ok(Metadata {
            packages,
            checksums,
        })
    }

    fn package(&self, id: &str) -> Result<&Package, String> {
        self.packages.get(id).ok_or_else(|| {
            format!("cargo build linked {id}, which cargo metadata does not list; run again")
        })
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The dependencies of a resolve node that are linked: kind normal (null), not build or dev.
fn normal_deps(node: &Value) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    for dep in node["deps"].as_array().into_iter().flatten() {
        let kinds = dep["dep_kinds"].as_array().cloned().unwrap_or_default();
        if kinds.iter().any(|k| k["kind"].is_null()) {
            deps.insert(text(&dep["pkg"]));
        }
    }
    deps
}

/// Old-style `MIT/Apache-2.0` as the SPDX expression it means.
fn spdx(license: &str) -> String {
    license.replace(" / ", " OR ").replace('/', " OR ")
}

/// (name, version) -> checksum of every crates.io package in Cargo.lock.
fn lock_checksums(lock: &Path) -> Result<BTreeMap<(String, String), String>, String> {
    let text = std::fs::read_to_string(lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not TOML: {e}", lock.display()))?;
    let mut sums = BTreeMap::new();
    for p in table
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            sums.insert((n, v), c);
        }
    }
    Ok(sums)
}

/// The workspace version (`[workspace.package] version` in the root Cargo.toml).
pub fn workspace_version(root: &Path) -> Result<String, String> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not TOML: {e}", path.display()))?;
    table
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no [workspace.package] version", path.display()))
}

fn purl(p: &Package) -> String {
    format!("pkg:cargo/{}@{}", p.name, p.version)
}

/// One component: name, version, licence, purl, and the crate's hash or that it is ours.
fn component(meta: &Metadata, p: &Package, kind: &str) -> Value {
    let mut c = json!({
        "type": kind,
        "bom-ref": purl(p),
        "name": p.name,
        "version": p.version,
    });
    if let Some(license) = &p.license {
        c["licenses"] = json!([{ "expression": license }]);
    }
    c["purl"] = json!(purl(p));
    let key = (p.name.clone(), p.version.clone());
    match (&p.source, meta.checksums.get(&key)) {
        (Some(_), Some(sum)) => c["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]),
        (None, _) => {
            c["properties"] = json!([{ "name": "byok-toolkit:source", "value": "workspace" }])
        }
        (Some(_), None) => {}
    }
    c
}

/// Writes `out/BIN.cdx.json` for `built`.
pub fn write(
    meta: &Metadata,
    built: &Built,
    source: &Source,
    out: &Path,
) -> Result<PathBuf, String> {
    let root = meta.package(&built.package)?;
    let mut linked: Vec<&Package> = Vec::new();
    for id in &built.linked {
        if *id != built.package {
            linked.push(meta.package(id)?);
        }
    }
    linked.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let components: Vec<Value> = linked
        .iter()
        .map(|p| component(meta, p, "library"))
        .collect();
    let mut app = component(meta, root, "application");
    app["properties"] = json!([
        { "name": "byok-toolkit:git-commit", "value": source.commit },
        { "name": "byok-toolkit:git-dirty", "value": source.dirty.to_string() },
        { "name": "byok-toolkit:target", "value": TARGET },
        { "name": "byok-toolkit:rustc", "value": rustc_version()? },
    ]);
    let body = json!({
        "metadata": {
            "timestamp": timestamp(source.epoch)?,
            "tools": { "components": [{ "type": "application", "name": "cargo xtask dist" }] },
            "component": app,
        },
        "components": components,
        "dependencies": dependencies(meta, built)?,
    });
    let digest = super::sha256_hex(body.to_string().as_bytes());
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": uuid_from(&digest),
        "version": 1,
        "metadata": body["metadata"],
        "components": body["components"],
        "dependencies": body["dependencies"],
    });
    let mut text = serde_json::to_string_pretty(&bom).map_err(|e| e.to_string())?;
    text.push('\n');
    let path = out.join(format!("{}.cdx.json", built.bin));
    super::write_file(&path, text.as_bytes(), 0o644)?;
    Ok(path)
}

/// Each linked package's linked dependencies, by bom-ref, sorted.
fn dependencies(meta: &Metadata, built: &Built) -> Result<Vec<Value>, String> {
    let mut entries = BTreeMap::new();
    for id in &built.linked {
        let p = meta.package(id)?;
        let mut on = BTreeSet::new();
        for dep in p.deps.iter().filter(|d| built.linked.contains(*d)) {
            on.insert(purl(meta.package(dep)?));
        }
        entries.insert(purl(p), on);
    }
    Ok(entries
        .into_iter()
        .map(|(r, on)| json!({ "ref": r, "dependsOn": on }))
        .collect())
}

/// `SOURCE_DATE_EPOCH` in RFC 3339 (UTC).
fn timestamp(epoch: i64) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_err(|e| format!("SOURCE_DATE_EPOCH {epoch}: {e}"))?
        .format(&Rfc3339)
        .map_err(|e| e.to_string())
}

/// An RFC 9562 version 8 (custom) UUID from a hex digest: the same content, the same serial.
fn uuid_from(hex_digest: &str) -> String {
    let mut b = hex::decode(&hex_digest[..32]).unwrap_or_else(|_| vec![0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn rustc_version() -> Result<String, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-V")
        .output()
        .map_err(|e| format!("could not run {rustc} -V: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_style_licences_become_spdx_expressions() {
        assert_eq!(spdx("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(spdx("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
    }

    #[test]
    fn the_serial_number_is_a_version_8_uuid() {
        let u = uuid_from(&"ab".repeat(32));
        assert_eq!(u, "urn:uuid:abababab-abab-8bab-abab-abababababab");
    }
}
