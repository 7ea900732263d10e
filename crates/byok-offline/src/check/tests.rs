//! The check's verdicts and the gate, on findings made here (the tokens' own runs are in
//! `tests/check.rs`).

use super::gate::Held;
use super::report::{Generated, Imported, Judged, KindReport, Verdict};
use super::run::{Finding, ZERO_PADDED, default_tries, non_conformant, zero_top_byte_bound};
use super::{Overrides, edge};
use crate::keys::Origin;
use crate::wrap_path::{KwpMechanism, WrapPath};
use byok_core::target::{Curve, KeyKind};

const P256: KeyKind = KeyKind::Ec { curve: Curve::P256 };
const KWP: WrapPath = WrapPath::TwoStep(KwpMechanism::Kwp);
const IMPORTED: Held = Held::Existing(Origin::Imported);

fn finding(text: &str, zeros: bool) -> Finding {
    Finding {
        trailing_zeros: zeros,
        ..Finding::other(text)
    }
}

fn short(one_in: u32, edge_case: Option<&str>) -> Finding {
    Finding {
        value_dependent: true,
        one_in,
        edge_case: edge_case.map(str::to_string),
        ..Finding::other("31-byte P-256 scalar; RFC 5915 requires 32 bytes")
    }
}

fn generated(judged: Judged, tries: usize) -> Generated {
    Generated {
        judged,
        tries,
        defective: 0,
        zero_top_byte: Some(1),
    }
}

fn imported(judged: Judged) -> Imported {
    Imported {
        judged,
        tried: 4,
        ..Imported::none_needed()
    }
}

fn report(generated_: Judged, imported_: Judged) -> KindReport {
    KindReport {
        kind: P256,
        generated: generated(generated_, 300),
        imported: imported(imported_),
    }
}

fn ok() -> Judged {
    Judged::ok(String::new())
}

#[test]
fn tries_and_bounds_catch_what_they_claim() {
    let ec = default_tries(P256);
    assert!(0.5f64.powi(ec as i32) <= 2f64.powi(-20));
    assert_eq!(default_tries(KeyKind::Rsa { bits: 4096 }), 2);
    // P-521: half the keys have a zero top byte; the others 1 in 256.
    let miss = |curve| {
        let p = 1.0 / f64::from(edge::top_byte_zero_one_in(curve));
        (1.0 - p).powi(zero_top_byte_bound(curve) as i32)
    };
    assert!(miss(Curve::P521) <= 2f64.powi(-40));
    assert!(miss(Curve::P256) < 1e-3 && miss(Curve::P384) < 1e-3);
}

#[test]
fn verdict_lines_name_the_defect_the_count_and_the_share() {
    let zeros = "6 trailing zero bytes after the DER key";
    let j = non_conformant(&[finding(zeros, true), finding(zeros, true)], 20);
    assert_eq!(j.one_in, Some(1));
    let r = report(j, ok());
    assert_eq!(
        r.generated.to_string(),
        format!("non-conformant for every key ({zeros}, in 2 of 20 throwaway keys)")
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["kind"], "EC P-256");
    assert_eq!(json["generated"]["verdict"], "non-conformant");
    assert_eq!(json["generated"]["one_in"], 1);
    assert_eq!(json["generated"]["zero_top_byte"], 1);
    assert_eq!(json["imported"]["verdict"], "ok");
    assert!(json["generated"].get("only_trailing_zeros").is_none());
    assert_eq!(
        generated(ok(), 300).to_string(),
        "ok (300 throwaway keys, 1 with a zero top byte)"
    );
    let many = ["a", "b", "a", "c", "d", "e"].map(|t| finding(t, false));
    assert_eq!(
        non_conformant(&many, 6).detail,
        "a, in 2 of 6 throwaway keys; b, in 1 of 6 throwaway keys; \
         c, in 1 of 6 throwaway keys; and 2 more"
    );
}

#[test]
fn a_defect_of_awkward_values_is_stated_as_their_share() {
    let top = "a scalar whose top byte is zero (CKA_VALUE of 31 bytes)";
    let j = non_conformant(&[short(256, Some(top)), short(65536, Some("x"))], 0);
    assert_eq!(j.one_in, Some(256), "the likeliest value counts");
    let r = report(ok(), j);
    assert_eq!(
        r.lines()[1],
        format!(
            "EC P-256 imported: non-conformant for 1 key in 256 (31-byte P-256 scalar; RFC 5915 \
             requires 32 bytes, for 2 edge cases)"
        )
    );
    assert_eq!(serde_json::to_value(&r).unwrap()["imported"]["one_in"], 256);
}

#[test]
fn new_keys_and_the_token_s_own_keys_are_held_to_the_generated_verdict() {
    let rare = non_conformant(&[short(256, None)], 300);
    // kryoptic: its generator writes 1 key in 256 short. A new key is refused before it is
    // made; an existing one it generated is packaged with a warning (it cannot be made again).
    let r = report(rare.clone(), ok());
    let err = r.admit(Held::New, KWP, Overrides::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("non-conformant for 1 key in 256"), "{text}");
    assert!(text.contains("--allow-nonconformant"), "{text}");
    let own = Held::Existing(Origin::Generated);
    assert!(r.admit(own, KWP, Overrides::default()).is_ok());
    // Its imported-key verdict is not what a new key is held to.
    let r = report(ok(), rare);
    assert!(r.admit(Held::New, KWP, Overrides::default()).is_ok());
}

#[test]
fn imported_keys_are_held_to_the_imported_verdict() {
    let rare = non_conformant(&[short(256, Some("x"))], 0);
    let every = non_conformant(&[finding("7 trailing zero bytes", true)], 0);
    let none = Overrides::default();
    // openCryptoki: generated keys right, imported ones short 1 time in 256: a new key passes,
    // an imported one is packaged with a warning, whatever origin the token does not say.
    let r = report(ok(), rare);
    assert!(r.admit(Held::New, KWP, none).is_ok());
    assert!(r.admit(IMPORTED, KWP, none).is_ok());
    assert!(r.admit(Held::Existing(Origin::Unknown), KWP, none).is_ok());
    // A defect of every imported key refuses it, naming what was found for which keys.
    let r = report(ok(), every);
    let err = r.admit(IMPORTED, KWP, none).unwrap_err().to_string();
    assert!(
        err.contains("existing key imported into the token"),
        "{err}"
    );
    assert!(err.contains("for every key"), "{err}");
    // Untested (a token that refuses imports): packaged, with the gap said.
    let untested = Judged::other(Verdict::Untested, "CKR_TEMPLATE_INCONSISTENT".into());
    let r = report(ok(), untested);
    assert!(r.admit(IMPORTED, KWP, none).is_ok());
}

#[test]
fn an_aes_key_is_held_to_the_generated_verdict_whatever_its_origin() {
    let aes = KindReport {
        kind: KeyKind::Oct { bits: 256 },
        generated: generated(non_conformant(&[finding("x", false)], 4), 4),
        imported: Imported::none_needed(),
    };
    assert!(aes.admit(IMPORTED, KWP, Overrides::default()).is_err());
}

#[test]
fn overrides_cover_only_what_they_name() {
    let zeros = report(
        non_conformant(&[finding("7 trailing zero bytes", true)], 20),
        ok(),
    );
    let scalar = report(
        non_conformant(&[finding("65-byte scalar", false)], 20),
        ok(),
    );
    let unsupported = report(
        Judged::other(Verdict::NotSupported, "CKR_GENERAL_ERROR".into()),
        ok(),
    );
    let none = Overrides::default();
    let padded = Overrides {
        zero_padded_kwp: true,
        ..none
    };
    let any = Overrides {
        nonconformant: true,
        ..none
    };
    let new = Held::New;
    let err = zeros.admit(new, ZERO_PADDED, none).unwrap_err().to_string();
    assert!(err.contains("--allow-zero-padded-kwp"), "{err}");
    assert!(err.contains("run `byok-offline check`"), "{err}");
    assert!(zeros.admit(new, ZERO_PADDED, padded).is_ok());
    // The zero-padding override is for the zero-padding 0x210A only, and trailing zeros only.
    assert!(zeros.admit(new, KWP, padded).is_err());
    let err = scalar
        .admit(new, ZERO_PADDED, padded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--allow-nonconformant"), "{err}");
    assert!(!err.contains("--allow-zero-padded-kwp"), "{err}");
    assert!(unsupported.admit(new, KWP, padded).is_err());
    for r in [&zeros, &scalar, &unsupported] {
        assert!(r.admit(new, KWP, any).is_ok());
    }
    assert!(report(ok(), ok()).admit(new, KWP, none).is_ok());
}
