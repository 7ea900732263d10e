//! The test tokens made possible: what each needs from Debian's packages, kryoptic built and
//! openCryptoki's root made, then the module where the kit looks for it.

use crate::packages::{ensure, on_path};
use byok_tests::ModuleKind;

/// Each token's initialising tool and the Debian packages holding it and its module.
fn needs(kind: ModuleKind) -> (&'static str, &'static [&'static str]) {
    match kind {
        ModuleKind::SoftHsm => ("softhsm2-util", &["softhsm2"]),
        ModuleKind::Kryoptic => ("pkcs11-tool", &["opensc"]),
        ModuleKind::Nss => ("certutil", &["libnss3", "libnss3-tools"]),
        // The tools run inside the sid root; the host only needs mmdebstrap to make it.
        ModuleKind::OpenCryptoki => ("mmdebstrap", &["mmdebstrap"]),
        _ => ("true", &[]),
    }
}

/// Makes a token of `kind` possible: its packages installed, for kryoptic the module built
/// (`cargo xtask kryoptic`), for openCryptoki mmdebstrap installed and the sid root made
/// (`cargo xtask opencryptoki`); then the module is where the kit looks for it.
pub fn ensure_token(kind: ModuleKind) -> Result<(), String> {
    let (tool, packages) = needs(kind);
    if kind == ModuleKind::OpenCryptoki {
        ensure(packages, "to make the openCryptoki token's Debian sid root")?;
        crate::opencryptoki::ensure()?;
        return kind.present_module().map(drop);
    }
    let module_missing = kind != ModuleKind::Kryoptic && !kind.module().exists();
    if module_missing || !on_path(tool) {
        ensure(packages, &format!("for the {kind} token"))?;
    }
    if kind == ModuleKind::Kryoptic {
        crate::kryoptic::ensure()?;
    }
    kind.present_module().map(drop)
}
