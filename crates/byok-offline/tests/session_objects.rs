//! No session object (imported KEK, one-time AES key, self-test keys, `check`'s throwaway keys)
//! outlives a package or a check, on success or on a failure in the middle of the wrap; a
//! batch session's KEK lives for its session's keys and no longer, whether the session ends
//! well, on an error or in a panic. This binary holds one test: it sets SOFTHSM2_CONF for the
//! module it loads in-process.

mod common;

use byok_core::KekTransfer;
use byok_core::KeyOp;
use byok_core::target::Kty;
use byok_core::target::{Curve, KeyKind};
use byok_offline::check::{self, Overrides, Verdict};
use byok_offline::index::TokenIndex;
use byok_offline::keys::{self, GenerateSpec, Target};
use byok_offline::package::{SessionKek, wrap_in_token};
use byok_offline::pin::PinSource;
use byok_offline::raw::ClassLabelId;
use byok_offline::token::{Module, TokenSelector};
use byok_offline::wrap_path::{self, KwpMechanism, PadBehaviour, WrapChoice, WrapPath};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

#[test]
#[allow(unsafe_code)]
fn no_session_object_survives_success_or_failure() {
    let hsm = common::Hsm::new();
    // SAFETY: this test binary holds this one test, so no other thread reads or writes the
    // environment while it is changed.
    unsafe {
        for (name, value) in hsm.env() {
            std::env::set_var(name, value);
        }
        std::env::set_var("BYOK_TEST_PIN", common::PIN);
    }
    let module = Module::load(hsm.module(), None).unwrap();
    let raw = module.raw();
    let token = module
        .open(
            &TokenSelector::Label("byok-test".into()),
            &PinSource::Env("BYOK_TEST_PIN".into()),
        )
        .unwrap();
    let (_, kek) = common::kek_pair(2048);
    let kek = KekTransfer::new(byok_core::KeyId::parse(common::KID).unwrap(), kek).unwrap();
    assert_eq!(token.session_object_count().unwrap(), 0);

    // The self-test measures SoftHSM 2.6.1's 0x210A and leaves nothing behind.
    assert_eq!(
        wrap_path::pad_behaviour(&token.session, raw).unwrap(),
        PadBehaviour::ZeroPaddedRfc5649
    );
    assert_eq!(token.session_object_count().unwrap(), 0);
    let path = wrap_path::choose(&token, raw, WrapChoice::Auto).unwrap();
    assert_eq!(path, WrapPath::TwoStep(KwpMechanism::PadZeroPadded));
    assert_eq!(token.session_object_count().unwrap(), 0);

    // The check: throwaway keys on the defective path (EC: trailing zeros) and the good one
    // (AES, compared with the token's key by AES-GCM), then the gate refusing EC.
    let before = token.object_count().unwrap();
    let p256 = KeyKind::Ec { curve: Curve::P256 };
    let aes = KeyKind::Oct { bits: 128 };
    let report = check::check(&token, raw, WrapChoice::Auto, &[p256, aes], Some(3)).unwrap();
    let verdicts: Vec<_> = report
        .kinds
        .iter()
        .map(|k| k.generated.judged.verdict)
        .collect();
    assert_eq!(
        verdicts,
        [Verdict::NonConformant, Verdict::Ok],
        "{report:?}"
    );
    assert_eq!(report.throwaway_keys, 6);
    // P-256's four edge cases were imported too (AES has none), and destroyed.
    assert_eq!(report.edge_case_imports, 4);
    assert_eq!(token.session_object_count().unwrap(), 0);
    assert_eq!(token.object_count().unwrap(), before);
    let err = check::require(
        &token,
        raw,
        path,
        &[(p256, check::Held::New)],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("trailing zero byte"), "{err}");
    assert_eq!(token.session_object_count().unwrap(), 0);
    assert_eq!(token.object_count().unwrap(), before);

    // Success.
    let target = keys::generate(
        &token,
        &GenerateSpec {
            kind: KeyKind::Oct { bits: 256 },
            label: "ok".into(),
            id: vec![1],
            ops: KeyOp::defaults(Kty::Oct).to_vec(),
        },
    )
    .unwrap();
    let before = token.object_count().unwrap();
    let ct = wrap_in_token(&token, raw, &kek.key, &target, path).unwrap();
    assert_eq!(ct.len(), 256 + 40);
    assert_eq!(token.session_object_count().unwrap(), 0);
    assert_eq!(token.object_count().unwrap(), before);

    // Failure in the middle: the KEK is imported and the AES key made, then the token refuses
    // to wrap a non-extractable key.
    let locked = token
        .session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::ValueLen(32.into()),
                Attribute::Label(b"locked".to_vec()),
            ],
        )
        .unwrap();
    let forced = Target {
        private: locked,
        label: "locked".into(),
        id: vec![],
        kind: KeyKind::Oct { bits: 256 },
        public_key: None,
        origin: keys::Origin::Generated,
    };
    let before = token.object_count().unwrap();
    let err = wrap_in_token(&token, raw, &kek.key, &forced, path).unwrap_err();
    assert!(err.to_string().contains("WrapKey"), "{err}");
    assert_eq!(token.session_object_count().unwrap(), 0);
    assert_eq!(token.object_count().unwrap(), before);

    // The library's own check names the problem before any object is made.
    let err = keys::find_target(&token, Some("locked"), None).unwrap_err();
    assert!(err.to_string().contains("not extractable"), "{err}");

    // A batch session: one KEK object for all its keys (targets found through the index, as
    // a batch finds them), the wrap's AES key gone after each, through a failure too.
    let index = TokenIndex::read(&token, raw).unwrap();
    let ok_target = keys::find_target_in(&token, raw, &index, "ok").unwrap();
    // Searched for per key instead (`--lookup search`), the same key.
    let searching = TokenIndex::searching();
    let searched = keys::find_target_in(&token, raw, &searching, "ok").unwrap();
    assert_eq!(
        (
            searched.private,
            &searched.label,
            &searched.id,
            searched.kind
        ),
        (
            ok_target.private,
            &ok_target.label,
            &ok_target.id,
            ok_target.kind
        )
    );
    assert_eq!(searched.public_key, ok_target.public_key);
    let session_kek = SessionKek::import(&token, &kek.key).unwrap();
    assert_eq!(token.session_object_count().unwrap(), 1);
    for _ in 0..3 {
        let ct = session_kek.wrap(&token, raw, &ok_target, path).unwrap();
        assert_eq!(ct.len(), 256 + 40);
        assert_eq!(token.session_object_count().unwrap(), 1, "the KEK only");
    }
    let err = session_kek.wrap(&token, raw, &forced, path).unwrap_err();
    assert!(err.to_string().contains("WrapKey"), "{err}");
    assert_eq!(token.session_object_count().unwrap(), 1, "the KEK only");
    session_kek.destroy().unwrap();
    assert_eq!(token.session_object_count().unwrap(), 0);
    // A session that stops on an error drops its KEK, and one that panics unwinds it away.
    drop(SessionKek::import(&token, &kek.key).unwrap());
    assert_eq!(token.session_object_count().unwrap(), 0);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _session_kek = SessionKek::import(&token, &kek.key).unwrap();
        assert_eq!(token.session_object_count().unwrap(), 1);
        panic!("a worker panics mid-batch");
    }));
    assert!(panicked.is_err());
    assert_eq!(token.session_object_count().unwrap(), 0);
    assert_eq!(token.object_count().unwrap(), before);
    index_reads_what_cryptoki_reads(&token, raw);
}

/// The index's one raw `C_GetAttributeValue` per object reads what cryptoki's two read, for
/// every object on the token; a label longer than its buffer is read through cryptoki, and
/// the object is still found by it.
fn index_reads_what_cryptoki_reads(
    token: &byok_offline::token::TokenSession,
    raw: &byok_offline::raw::RawModule,
) {
    let long = "l".repeat(300);
    token
        .session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(long.clone().into_bytes()),
            ],
        )
        .unwrap();
    let handles = token
        .session
        .find_objects(&[Attribute::Token(true)])
        .unwrap();
    assert!(handles.len() >= 3, "{handles:?}");
    let mut fell_back = 0;
    for handle in handles {
        let wanted = [
            AttributeType::Class,
            AttributeType::Label,
            AttributeType::Id,
        ];
        let mut expected = ClassLabelId {
            class: None,
            label: None,
            id: None,
        };
        for a in token.session.get_attributes(handle, &wanted).unwrap() {
            match a {
                Attribute::Class(c) => expected.class = Some(*c),
                Attribute::Label(l) => expected.label = Some(l),
                Attribute::Id(i) => expected.id = Some(i),
                _ => {}
            }
        }
        let read = raw
            .class_label_id(token.session.handle(), handle.handle())
            .unwrap();
        match read {
            Some(read) => assert_eq!(read, expected, "{handle:?}"),
            None => {
                assert_eq!(expected.label.as_deref(), Some(long.as_bytes()));
                fell_back += 1;
            }
        }
    }
    assert_eq!(fell_back, 1, "the long label only");
    let index = TokenIndex::read(token, raw).unwrap();
    assert!(index.target(&long).is_ok());
}
