//! The mode of every file byok-offline writes is the one `byok_cli_common::FileKind` states
//! (docs/security.md lists them).

mod common;

use byok_cli_common::FileKind;
use common::{Hsm, PIN, kek_pair};
use std::os::unix::fs::PermissionsExt;

/// Runs byok-offline under `umask`, so a mode that depends on the umask shows.
fn run_under(hsm: &Hsm, umask: &str, args: &[&str]) {
    let out = hsm
        .command("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_byok-offline"))
        .args(args)
        .env(byok_tests::PIN_ENV, PIN)
        .output()
        .unwrap();
    common::ok(&out);
}

#[test]
fn every_file_written_has_the_mode_its_kind_states() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    // Packages, sidecars and public keys get their mode whatever the umask.
    run_under(
        &hsm,
        "077",
        &[
            "package",
            "--kek",
            transfer,
            "--generate",
            "--label",
            "single",
            "--kty",
            "EC",
            "--allow-zero-padded-kwp",
        ],
    );
    std::fs::write(
        hsm.path("keys.toml"),
        "[[key]]\nname = \"b1\"\nkty = \"EC\"\ncurve = \"P-256\"\n\n\
         [[key]]\nname = \"b2\"\nkty = \"EC\"\ncurve = \"P-256\"\n",
    )
    .unwrap();
    // The batch's evidence log too: a mode given to open(2) would be masked by this umask.
    run_under(
        &hsm,
        "077",
        &[
            "batch",
            "--manifest",
            "keys.toml",
            "--kek",
            transfer,
            "--out",
            "out",
            "--allow-zero-padded-kwp",
        ],
    );
    let mut expected = vec![
        ("KeyTransferPackage-single.byok", FileKind::Package),
        (
            "KeyTransferPackage-single.byok.sidecar.json",
            FileKind::Sidecar,
        ),
        ("single.public.pem", FileKind::PublicKey),
        ("out/ceremony-log.jsonl", FileKind::EvidenceLog),
    ];
    let batch_files: Vec<(String, FileKind)> = ["b1", "b2"]
        .iter()
        .flat_map(|k| {
            [
                (
                    format!("out/KeyTransferPackage-{k}.byok"),
                    FileKind::Package,
                ),
                (
                    format!("out/KeyTransferPackage-{k}.byok.sidecar.json"),
                    FileKind::Sidecar,
                ),
                (format!("out/{k}.public.pem"), FileKind::PublicKey),
            ]
        })
        .collect();
    expected.extend(batch_files.iter().map(|(p, k)| (p.as_str(), *k)));
    for (name, kind) in &expected {
        let mode = std::fs::metadata(hsm.path(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, kind.mode(), "{name} is {mode:o}");
        assert_eq!(mode, 0o644, "{name}");
    }
    // Nothing else was written: no temporary file is left behind.
    let written = std::fs::read_dir(hsm.path("out")).unwrap().count();
    assert_eq!(written, 7);
}
