//! What each token is known to do with each key kind when no leniency flag is given: the
//! expectations `cargo xtask e2e`, its batch and its matrix hold every run against.

use byok_core::target::{Curve, KeyKind};
use byok_tests::ModuleKind;

/// What a token is known to do with a kind when no leniency flag is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Conformant: packaged, imported and proven.
    Proven,
    /// A recorded defect: the tool must refuse it before generating anything.
    Refused,
}

/// What each token does with each kind ("RSA 2048", "EC P-521", "AES 256") for a key it
/// generates (`package --generate`, what the matrix runs), as docs/ceremony.md's HSM table
/// records and this matrix measured. `check`'s generated-key verdict decides each of these on
/// every run: for EC it generates until it has seen a key whose scalar's top byte is zero (1
/// key in 256; P-521 1 in 2), so a generator that writes such a scalar short is found every
/// time, not once in a while.
/// - SoftHSM 2.6.1 zero-pads to a multiple of 8 before RFC 5649: P-256 and P-521 PKCS#8
///   always; RSA depending on the key, which `check` counts as non-conformant even when its
///   throwaway keys happened to need no padding. P-384 and P-256K (a fixed PKCS#8 length that
///   is a multiple of 8) and AES (16/24/32 bytes) are never padded; OpenSSL writes every
///   edge case right.
/// - kryoptic 1.5.4: P-256K generation fails (CKR_GENERAL_ERROR). Its generator holds an EC
///   scalar without its leading zero bytes, so a scalar whose top byte is zero is written
///   short: P-521 on half the keys, P-256 and P-384 on 1 in 256. RSA and AES are conformant.
/// - NSS softokn: conformant, no secp256k1 (CKR_DOMAIN_PARAMS_INVALID). Its generator keeps
///   the leading zero bytes, so the keys it makes come out at full length.
/// - openCryptoki 3.27 soft token: the native CKM_RSA_AES_KEY_WRAP, exact for every kind,
///   P-256K and AES 192 included; its generator keeps EC scalars at full length (only an
///   imported value loses its leading zeros, which the imported-key verdict states and the
///   matrix, generating every key, does not meet).
pub(crate) fn expected(token: ModuleKind, kind: KeyKind) -> Expect {
    let refused = match token {
        ModuleKind::SoftHsm => matches!(
            kind,
            KeyKind::Rsa { .. }
                | KeyKind::Ec {
                    curve: Curve::P256 | Curve::P521
                }
        ),
        ModuleKind::Kryoptic => matches!(kind, KeyKind::Ec { .. }),
        ModuleKind::OpenCryptoki => false,
        ModuleKind::Nss => {
            kind == KeyKind::Ec {
                curve: Curve::P256K,
            }
        }
        _ => false,
    };
    if refused {
        Expect::Refused
    } else {
        Expect::Proven
    }
}
