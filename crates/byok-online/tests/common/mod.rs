//! Helpers shared by byok-online's integration tests.
#![allow(dead_code)]

use byok_core::package::Generator;
use byok_core::sidecar::{Sidecar, Source};
use byok_core::{Fingerprint, KeyId, KeyTransferPackage, TargetKey, wrap};
use std::path::{Path, PathBuf};

/// Writes a `.byok` for `target` under `kek` at `path`, and its sidecar when asked.
pub fn package_for(
    kid: &KeyId,
    kek: &byok_core::KekPublicKey,
    target: &TargetKey,
    path: &Path,
    sidecar: bool,
) -> PathBuf {
    let ct = wrap::wrap(target.plaintext(), kek).unwrap();
    let bytes = KeyTransferPackage::new(
        kid.clone(),
        ct,
        &Generator::this_tool("test", "software", "0"),
    )
    .unwrap()
    .to_json_bytes();
    std::fs::write(path, &bytes).unwrap();
    if sidecar {
        let s = Sidecar {
            byok_sha256: Fingerprint::of_bytes(&bytes),
            kek_kid: kid.to_string(),
            kind: target.kind(),
            public_key: target.public_key().cloned(),
            source: Source::default(),
        };
        std::fs::write(
            format!("{}.sidecar.json", path.display()),
            s.to_json_bytes(),
        )
        .unwrap();
    }
    path.to_path_buf()
}
