//! Bad input through the real binary: each gets its own message, a non-zero exit, and no
//! output file.

mod common;

use common::{Hsm, kek_pair, stderr};
use std::process::Output;

fn assert_fails(out: &Output, needle: &str) {
    assert!(!out.status.success(), "succeeded, expected `{needle}`");
    let err = stderr(out);
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(
        !err.contains(common::PIN) || needle.contains(common::PIN),
        "PIN leaked: {err}"
    );
}

fn no_package(hsm: &Hsm) {
    let leftovers: Vec<_> = std::fs::read_dir(hsm.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".byok") || n.contains("sidecar") || n.starts_with(".byok-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn each_bad_input_gets_its_own_error_and_leaves_no_file() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    let pkg = |extra: &[&str]| {
        let mut args = vec!["package", "--kek", transfer, "--allow-zero-padded-kwp"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| hsm.run(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Wrong PIN.
    let out = hsm.run_env(
        &[
            "package",
            "--kek",
            transfer,
            "--label",
            "x",
            "--allow-zero-padded-kwp",
        ],
        &[("BYOK_PKCS11_PIN", "9999")],
    );
    assert_fails(&out, "PIN was refused");
    // No PIN at all (no terminal to prompt on).
    let out = hsm.run_env(&["keys"], &[]);
    assert_fails(&out, "no PIN: set BYOK_PKCS11_PIN");
    // PIN from a file works; an empty one is named.
    std::fs::write(hsm.path("pin.txt"), format!("{}\n", common::PIN)).unwrap();
    assert!(
        hsm.run_env(&["--pin-file", "pin.txt", "keys"], &[])
            .status
            .success()
    );
    std::fs::write(hsm.path("empty.txt"), "\n").unwrap();
    assert_fails(
        &hsm.run_env(&["--pin-file", "empty.txt", "keys"], &[]),
        "is empty",
    );
    // No such module, no module named.
    assert_fails(
        &hsm.run(&["--module", "/nonexistent/libpkcs11.so", "keys"]),
        "cannot load the PKCS#11 module",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_byok-offline"))
        .arg("tokens")
        .env_remove("PKCS11_MODULE")
        .output()
        .unwrap();
    assert_fails(&out, "no PKCS#11 module given");
    // No such token, no such slot.
    assert_fails(
        &hsm.run(&["--token", "nope", "keys"]),
        "no token labelled `nope`",
    );
    assert_fails(&hsm.run(&["--slot", "4242", "keys"]), "no slot 4242");
    // No such key, by label and by id; a bad id.
    assert_fails(
        &run(pkg(&["--label", "missing"])),
        "no key labelled `missing`",
    );
    assert_fails(&run(pkg(&["--id", "abcd"])), "no key with id abcd");
    assert_fails(&run(pkg(&["--id", "xyz"])), "invalid --id");
    // KEK of 1024 bits and an EC KEK, as PEM with a kid.
    let small = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
    let small_pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &small.to_public_key(),
        rsa::pkcs8::LineEnding::LF,
    )
    .unwrap();
    std::fs::write(hsm.path("small.pem"), small_pem).unwrap();
    let ec = byok_core::TargetKey::generate(byok_core::KeyKind::Ec {
        curve: byok_core::Curve::P256,
    })
    .unwrap();
    std::fs::write(hsm.path("ec.pem"), ec.public_key().unwrap().to_pem()).unwrap();
    for (pem, needle) in [("small.pem", "1024-bit modulus"), ("ec.pem", "is an EC")] {
        let out = hsm.run(&[
            "package",
            "--kek-pem",
            pem,
            "--kid",
            common::KID,
            "--generate",
            "--label",
            "k",
            "--kty",
            "oct",
        ]);
        assert_fails(&out, needle);
    }
    // Unversioned kid.
    std::fs::write(hsm.path("kek.pem"), kek.to_pem()).unwrap();
    let out = hsm.run(&[
        "package",
        "--kek-pem",
        "kek.pem",
        "--kid",
        "https://contoso.vault.azure.net/keys/KEKforBYOK",
        "--label",
        "k",
    ]);
    assert_fails(&out, "has no version");
    // A transfer file that is not one.
    std::fs::write(hsm.path("junk.transfer"), "hello\n").unwrap();
    assert_fails(
        &hsm.run(&["package", "--kek", "junk.transfer", "--label", "k"]),
        "not a KEK transfer file",
    );
    no_package(&hsm);

    // A key that is not extractable: generated here without CKA_EXTRACTABLE.
    assert!(
        hsm.run(&["generate", "--label", "good", "--kty", "EC"])
            .status
            .success()
    );
    // Existing output: nothing is overwritten, and no key is generated.
    std::fs::write(hsm.path("KeyTransferPackage-good.byok"), "keep me").unwrap();
    assert_fails(&run(pkg(&["--label", "good"])), "already exists");
    assert_eq!(
        std::fs::read_to_string(hsm.path("KeyTransferPackage-good.byok")).unwrap(),
        "keep me"
    );
    std::fs::remove_file(hsm.path("KeyTransferPackage-good.byok")).unwrap();
    // A label already in use is refused by generate.
    assert_fails(
        &hsm.run(&[
            "generate",
            "--label",
            "good",
            "--kty",
            "EC",
            "--public-key-out",
            "other.pem",
        ]),
        "already exists on the token",
    );
    no_package(&hsm);
}
