//! What the conformance check lets through is what a strict vault imports: an AES key
//! packaged on Debian's SoftHSM 2.6.1 with no leniency flag (its 0x210A zero-pads, but AES keys
//! are 16/24/32 bytes and never padded) imports into a Managed HSM emulator started without
//! `--accept-zero-padded-kwp`, and the vault then holds the token's key (`prove-aes`).

use byok_tests::{Emulator, TestToken, bins};
use std::path::Path;
use std::process::{Command, Output};

const PIN: &str = "conformance-PIN-3317";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeds(out: Output, args: &[&str]) -> String {
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

#[test]
fn an_aes_package_from_softhsm_without_flags_imports_into_a_strict_managed_hsm() {
    let bin = bins();
    let dir = tempfile::tempdir().unwrap();
    let (online_dir, state) = (dir.path().join("online"), dir.path().join("emulator"));
    std::fs::create_dir_all(&online_dir).unwrap();
    let token = TestToken::softhsm_in(&dir.path().join("offline"), "conformance", PIN)
        .unwrap_or_else(|e| panic!("{e}"));
    // Strict: no --accept-zero-padded-kwp (the kit's `emulator()` shortcut would add it).
    let emu = Emulator::start(
        &bin.join("kv-emulator"),
        &state,
        &["--flavor", "managedhsm"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Each step must succeed; its output (stdout and stderr) is returned.
    let online = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("byok-online"));
        cmd.arg("--emulator")
            .arg(emu.state())
            .current_dir(&online_dir);
        succeeds(cmd.args(args).output().unwrap(), args)
    };
    let offline = |args: &[&str]| {
        let mut cmd = token.command_with_pin(bin.join("byok-offline"));
        succeeds(cmd.args(args).output().unwrap(), args)
    };
    let carry = |from: &Path, to: &Path, name: &str| {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    };

    online(&["kek", "create", "--name", "KEK", "--size", "2048"]);
    online(&["kek", "download", "--name", "KEK", "--out", "kek.transfer"]);
    carry(&online_dir, token.dir(), "kek.transfer");
    // No leniency flag: the check proves AES keys on this token before one is made.
    let packaged = offline(&[
        "package",
        "--kek",
        "kek.transfer",
        "--generate",
        "--label",
        "aes",
        "--kty",
        "oct",
    ]);
    assert!(packaged.contains("0x210A"), "{packaged}");
    for name in [
        "KeyTransferPackage-aes.byok",
        "KeyTransferPackage-aes.byok.sidecar.json",
    ] {
        carry(token.dir(), &online_dir, name);
    }
    online(&[
        "import",
        "--name",
        "aes",
        "--byok-file",
        "KeyTransferPackage-aes.byok",
    ]);
    // The vault holds the token's key: its AES-GCM ciphertext decrypts in the HSM.
    online(&["prove-aes", "--name", "aes", "--out", "aes.challenge.json"]);
    carry(&online_dir, token.dir(), "aes.challenge.json");
    let proof = offline(&[
        "prove-aes",
        "--label",
        "aes",
        "--challenge",
        "aes.challenge.json",
    ]);
    assert!(
        proof.contains("the vault holds the same AES key"),
        "{proof}"
    );
}
