//! Generating the target inside the token: persistent, private, sensitive, extractable, with
//! the usage flags of its Key Vault operations ([`super::templates`]).

use super::describe::KindAttributes;
use super::find::{PublicAt, public_key_of};
use super::templates::{Generation, Templates};
use super::{GenerateSpec, Origin, Target};
use crate::error::{OfflineError, Result, ckr_name};
use crate::index::TokenIndex;
use crate::raw::RawModule;
use crate::token::TokenSession;
use byok_core::KeyOp;
use byok_core::target::KeyKind;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

/// Generates the target key inside the token: persistent, private, sensitive, extractable
/// (the wrap needs it), with usage flags for `spec.ops`. Refused when any object has the
/// label (a search of the token).
pub fn generate(token: &TokenSession, spec: &GenerateSpec) -> Result<Target> {
    let kind = spec.kind.check_importable()?;
    KeyOp::check_for_target(kind.kty(), &spec.ops)?;
    if !token
        .session
        .find_objects(&[Attribute::Label(spec.label.as_bytes().to_vec())])?
        .is_empty()
    {
        return Err(OfflineError::LabelInUse(spec.label.clone()));
    }
    let (target, _) = generate_unchecked(token, kind, spec)?;
    Ok(target)
}

/// [`generate`] for a batch: the label is checked in `index` (and claimed there, so two
/// sessions never generate under one label), and the new objects join it. With
/// `beside_lone_public`, a public key of the same kind that is alone under the label (what a
/// generation killed between its two objects leaves: SoftHSM writes the public one first) is
/// left as it is, named in a warning, and the key is generated beside it with its own
/// `CKA_ID`; without, such a key makes the label in use.
pub fn generate_in(
    token: &TokenSession,
    raw: &RawModule,
    index: &TokenIndex,
    spec: &GenerateSpec,
    beside_lone_public: bool,
) -> Result<Target> {
    let kind = spec.kind.check_importable()?;
    KeyOp::check_for_target(kind.kty(), &spec.ops)?;
    index.learn_label(token, raw, &spec.label)?;
    let mut beside = Vec::new();
    if beside_lone_public {
        for public in index.lone_public_keys(&spec.label) {
            if let Some(id) = public_key_of_kind(token, public, kind)? {
                tracing::warn!(
                    label = %spec.label,
                    id = %hex::encode(&id),
                    "a public key without its private key, as a generation killed half-way \
                     leaves it: generating the key beside it (delete it when convenient, e.g. \
                     pkcs11-tool --login --delete-object --type pubkey --id <id>)"
                );
                beside.push(public);
            }
        }
    }
    let claim = index.reserve(&spec.label, &beside)?;
    let (target, public) = generate_unchecked(token, kind, spec)?;
    let class = match kind {
        KeyKind::Oct { .. } => ObjectClass::SECRET_KEY,
        _ => ObjectClass::PRIVATE_KEY,
    };
    let public = public.map(|p| (p, ObjectClass::PUBLIC_KEY));
    claim.record(
        [(target.private, class)].into_iter().chain(public),
        &target.id,
    );
    Ok(target)
}

/// The `CKA_ID` of the public key object `public` when it is of `kind` (same curve, or same
/// modulus size); `None` for another kind.
fn public_key_of_kind(
    token: &TokenSession,
    public: ObjectHandle,
    kind: KeyKind,
) -> Result<Option<Vec<u8>>> {
    let attrs = token.session.get_attributes(
        public,
        &[
            AttributeType::Id,
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::EcParams,
        ],
    )?;
    let mut k = KindAttributes::default();
    let mut id = Vec::new();
    for attr in attrs {
        match attr {
            Attribute::Id(i) => id = i,
            Attribute::KeyType(t) => k.key_type = Some(t),
            Attribute::Modulus(m) => k.modulus = Some(m),
            Attribute::EcParams(p) => k.ec_params = Some(p),
            _ => {}
        }
    }
    Ok((k.kind() == Some(kind)).then_some(id))
}

/// Generates the key of `spec` (its label checked by the caller): the target and the handle
/// of its public key object, if a pair.
fn generate_unchecked(
    token: &TokenSession,
    kind: KeyKind,
    spec: &GenerateSpec,
) -> Result<(Target, Option<ObjectHandle>)> {
    let id = if spec.id.is_empty() {
        token.session.generate_random_vec(16)?
    } else {
        spec.id.clone()
    };
    let templates = Templates {
        label: &spec.label,
        id: &id,
        ops: &spec.ops,
        persistent: true,
    };
    let (private, public) = generate_objects(token, kind, &templates)?;
    tracing::info!(label = %spec.label, id = %hex::encode(&id), %kind, "target key generated");
    let at = PublicAt::Handle(public);
    let public_key = public_key_of(token, private, kind, &spec.label, &id, at)?;
    let target = Target {
        private,
        label: spec.label.clone(),
        id,
        kind,
        public_key,
        origin: Origin::Generated,
    };
    Ok((target, public))
}

/// Makes the key objects of `kind` from `templates`: the private or secret key, and the
/// public key of a pair. A token that cannot make the kind is named as such.
pub(super) fn generate_objects(
    token: &TokenSession,
    kind: KeyKind,
    templates: &Templates<'_>,
) -> Result<(ObjectHandle, Option<ObjectHandle>)> {
    let session = &token.session;
    let refused = |e: CkError| generation_error(kind, e);
    match templates.generation(kind) {
        Generation::Pair {
            mechanism,
            public,
            private,
        } => {
            let (public, private) = session
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(refused)?;
            Ok((private, Some(public)))
        }
        Generation::Secret {
            mechanism,
            template,
        } => {
            let secret = session
                .generate_key(&mechanism, &template)
                .map_err(refused)?;
            Ok((secret, None))
        }
    }
}

/// A generation refused with a code that means "this token cannot make this kind" becomes
/// [`OfflineError::GenerationRefused`]; other failures (a session or login problem) stay as
/// they are.
fn generation_error(kind: KeyKind, e: CkError) -> OfflineError {
    match e {
        CkError::Pkcs11(
            rv @ (RvError::GeneralError
            | RvError::FunctionFailed
            | RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::KeySizeRange
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent),
            _,
        ) => OfflineError::GenerationRefused {
            kind,
            rv: ckr_name(rv),
        },
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::Curve;
    use cryptoki::context::Function;

    #[test]
    fn a_code_that_means_the_kind_is_unsupported_names_the_kind() {
        let p384 = KeyKind::Ec { curve: Curve::P384 };
        for (rv, name) in [
            (RvError::CurveNotSupported, "CKR_CURVE_NOT_SUPPORTED"),
            (RvError::KeySizeRange, "CKR_KEY_SIZE_RANGE"),
            (RvError::MechanismInvalid, "CKR_MECHANISM_INVALID"),
            (RvError::TemplateInconsistent, "CKR_TEMPLATE_INCONSISTENT"),
            (RvError::GeneralError, "CKR_GENERAL_ERROR"),
        ] {
            let err = generation_error(p384, CkError::Pkcs11(rv, Function::GenerateKeyPair));
            match &err {
                OfflineError::GenerationRefused { kind, rv } => {
                    assert_eq!(*kind, p384);
                    assert_eq!(rv, name);
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(
                err.to_string().contains("run `byok-offline check`"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_session_or_login_failure_stays_what_it_is() {
        let aes = KeyKind::Oct { bits: 256 };
        for (rv, name) in [
            (RvError::UserNotLoggedIn, "CKR_USER_NOT_LOGGED_IN"),
            (RvError::SessionHandleInvalid, "CKR_SESSION_HANDLE_INVALID"),
            (RvError::DeviceRemoved, "CKR_DEVICE_REMOVED"),
        ] {
            match generation_error(aes, CkError::Pkcs11(rv, Function::GenerateKey)) {
                OfflineError::Pkcs11 { function, rv, .. } => {
                    assert_eq!(function, "C_GenerateKey");
                    assert_eq!(rv, name);
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let not_pkcs11 = generation_error(aes, CkError::NullFunctionPointer);
        assert!(
            matches!(not_pkcs11, OfflineError::Cryptoki(_)),
            "{not_pkcs11:?}"
        );
    }
}
