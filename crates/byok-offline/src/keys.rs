//! Key objects on the token: listing, finding the target, generating it (the mapping from
//! Key Vault operations to PKCS#11 usage flags), reading its public key, and decrypting the
//! AES proof's challenge.

use crate::error::{OfflineError, Result, ckr_name};
use crate::index::TokenIndex;
use crate::token::{SessionObject, TokenSession};
use byok_core::target::{Curve, KeyKind};
use byok_core::{KeyOp, TargetPublicKey};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use der::Decode;
use serde::Serialize;

/// One key object as `byok-offline keys` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyObject {
    #[serde(skip)]
    pub handle: ObjectHandle,
    pub label: String,
    /// `CKA_ID` in hex.
    pub id: String,
    pub class: String,
    pub key_type: String,
    /// `RSA 3072`, `EC P-256`, `AES 256`, or what the token reports for other kinds.
    pub kind: String,
    #[serde(skip)]
    pub key_kind: Option<KeyKind>,
    pub extractable: Option<bool>,
    pub sensitive: Option<bool>,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub kind: KeyKind,
    pub label: String,
    /// `CKA_ID`; random 16 bytes when empty.
    pub id: Vec<u8>,
    /// What the key may do in the HSM (its `CKA_SIGN`, `CKA_DECRYPT`, ... flags).
    pub ops: Vec<KeyOp>,
}

/// A generated or found target key.
#[derive(Debug, Clone)]
pub struct Target {
    pub private: ObjectHandle,
    pub label: String,
    pub id: Vec<u8>,
    pub kind: KeyKind,
    /// `None` for AES keys.
    pub public_key: Option<TargetPublicKey>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lists private, secret and public key objects.
pub fn list_keys(token: &TokenSession) -> Result<Vec<KeyObject>> {
    let mut out = Vec::new();
    for class in [
        ObjectClass::PRIVATE_KEY,
        ObjectClass::SECRET_KEY,
        ObjectClass::PUBLIC_KEY,
    ] {
        for handle in token.session.find_objects(&[Attribute::Class(class)])? {
            out.push(describe(token, handle)?);
        }
    }
    Ok(out)
}

/// The attributes that say what kind of key an object is.
#[derive(Default)]
struct KindAttributes {
    key_type: Option<KeyType>,
    modulus: Option<Vec<u8>>,
    ec_params: Option<Vec<u8>>,
    value_len: Option<u64>,
}

impl KindAttributes {
    /// The kind, when it is one this tool names (RSA, a known curve, AES).
    fn kind(&self) -> Option<KeyKind> {
        match self.key_type? {
            KeyType::RSA => self.modulus.as_deref().map(|m| KeyKind::Rsa {
                bits: bit_length(m),
            }),
            KeyType::EC => self
                .ec_params
                .as_deref()
                .and_then(curve_from_params)
                .map(|curve| KeyKind::Ec { curve }),
            KeyType::AES => self.value_len.map(|len| KeyKind::Oct {
                bits: len as u32 * 8,
            }),
            _ => None,
        }
    }
}

/// Reads what a key object is.
fn describe(token: &TokenSession, handle: ObjectHandle) -> Result<KeyObject> {
    let attrs = token.session.get_attributes(
        handle,
        &[
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::Class,
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::EcParams,
            AttributeType::ValueLen,
            AttributeType::Extractable,
            AttributeType::Sensitive,
        ],
    )?;
    let mut key = KeyObject {
        handle,
        label: String::new(),
        id: String::new(),
        class: String::new(),
        key_type: String::new(),
        kind: String::new(),
        key_kind: None,
        extractable: None,
        sensitive: None,
    };
    let mut k = KindAttributes::default();
    for attr in attrs {
        match attr {
            Attribute::Label(l) => key.label = text(&l),
            Attribute::Id(id) => key.id = hex::encode(id),
            Attribute::Class(c) => key.class = c.to_string(),
            Attribute::KeyType(t) => k.key_type = Some(t),
            Attribute::Modulus(m) => k.modulus = Some(m),
            Attribute::EcParams(p) => k.ec_params = Some(p),
            Attribute::ValueLen(v) => k.value_len = Some(u64::from(v)),
            Attribute::Extractable(e) => key.extractable = Some(e),
            Attribute::Sensitive(s) => key.sensitive = Some(s),
            _ => {}
        }
    }
    key.key_type = k.key_type.map(|t| t.to_string()).unwrap_or_default();
    key.key_kind = k.kind();
    key.kind = match key.key_kind {
        Some(kind) => kind.to_string(),
        None => format!("{} (not importable)", key.key_type),
    };
    Ok(key)
}

fn bit_length(be: &[u8]) -> u32 {
    let be = &be[be.iter().position(|b| *b != 0).unwrap_or(be.len())..];
    match be.first() {
        None => 0,
        Some(top) => (be.len() * 8) as u32 - top.leading_zeros(),
    }
}

fn curve_from_params(params: &[u8]) -> Option<Curve> {
    // CKA_EC_PARAMS holds the named curve's OID in DER.
    Curve::ALL.into_iter().find(|c| c.oid_der() == params)
}

/// Finds the target key (private or secret) by label or id, searching the token.
pub fn find_target(token: &TokenSession, label: Option<&str>, id: Option<&[u8]>) -> Result<Target> {
    let handle = find_one_private(token, label, id)?;
    target_at(token, handle, PublicAt::Search)
}

/// Finds the target key labelled `label` in `index` (a batch's): no search of the token.
pub fn find_target_in(token: &TokenSession, index: &TokenIndex, label: &str) -> Result<Target> {
    let handle = index.target(label)?;
    target_at(token, handle, PublicAt::Index(index))
}

/// The target key at `handle`, checked importable, extractable and sensitive, with its
/// public key.
fn target_at(token: &TokenSession, handle: ObjectHandle, public: PublicAt<'_>) -> Result<Target> {
    let object = describe(token, handle)?;
    let kind = object
        .key_kind
        .ok_or_else(|| OfflineError::UnsupportedTarget {
            label: object.label.clone(),
            found: object.kind.clone(),
            reason: "Key Vault takes RSA, EC P-256/P-384/P-521/P-256K and AES keys".into(),
        })?;
    kind.check_importable()
        .map_err(|e| OfflineError::UnsupportedTarget {
            label: object.label.clone(),
            found: kind.to_string(),
            reason: e.to_string(),
        })?;
    if object.extractable != Some(true) {
        return Err(OfflineError::NotExtractable(object.label));
    }
    if object.sensitive != Some(true) {
        return Err(OfflineError::NotSensitive(object.label));
    }
    let id = hex::decode(&object.id).unwrap_or_default();
    let public_key = public_key_of(token, handle, kind, &object.label, &id, public)?;
    tracing::info!(label = %object.label, id = %object.id, %kind, "target key found");
    Ok(Target {
        private: handle,
        label: object.label,
        id,
        kind,
        public_key,
    })
}

/// Where an EC key's public key object is: found by a search for its `CKA_ID`, in a batch's
/// index, or known (the key was just generated).
#[derive(Clone, Copy)]
enum PublicAt<'a> {
    Search,
    Index(&'a TokenIndex),
    Handle(Option<ObjectHandle>),
}

/// The one private or secret key with this label and/or id.
fn find_one_private(
    token: &TokenSession,
    label: Option<&str>,
    id: Option<&[u8]>,
) -> Result<ObjectHandle> {
    let mut template = Vec::new();
    if let Some(l) = label {
        template.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    let what = match (label, id) {
        (Some(l), _) => format!("label `{l}`"),
        (None, Some(id)) => format!("id {}", hex::encode(id)),
        (None, None) => {
            return Err(OfflineError::NoTarget);
        }
    };
    let mut found = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
        let mut t = template.clone();
        t.push(Attribute::Class(class));
        found.extend(token.session.find_objects(&t)?);
    }
    match found.as_slice() {
        [] => Err(match label {
            Some(l) => OfflineError::NoSuchLabel(l.into()),
            None => OfflineError::NoSuchId(hex::encode(id.unwrap_or_default())),
        }),
        [one] => Ok(*one),
        many => Err(OfflineError::AmbiguousKey {
            what,
            count: many.len(),
        }),
    }
}

/// The public key of an RSA or EC target: from the private key's public attributes (RSA) or
/// from the public key object with the same `CKA_ID` (EC).
fn public_key_of(
    token: &TokenSession,
    private: ObjectHandle,
    kind: KeyKind,
    label: &str,
    id: &[u8],
    public: PublicAt<'_>,
) -> Result<Option<TargetPublicKey>> {
    let unreadable = |reason: String| OfflineError::PublicKeyUnreadable {
        label: label.into(),
        reason,
    };
    match kind {
        KeyKind::Oct { .. } => Ok(None),
        KeyKind::Rsa { .. } => {
            let attrs = token.session.get_attributes(
                private,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(m),
                    Attribute::PublicExponent(x) => e = Some(x),
                    _ => {}
                }
            }
            match (n, e) {
                (Some(n), Some(e)) => Ok(Some(TargetPublicKey::from_rsa_components(&n, &e)?)),
                _ => Err(unreadable(
                    "the RSA private key does not show its modulus and public exponent".into(),
                )),
            }
        }
        KeyKind::Ec { curve } => {
            let handle = match public {
                PublicAt::Search => token
                    .session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PUBLIC_KEY),
                        Attribute::Id(id.to_vec()),
                    ])?
                    .first()
                    .copied(),
                PublicAt::Index(index) => index.public_by_id(id),
                PublicAt::Handle(handle) => handle,
            };
            let handle = handle.ok_or_else(|| {
                unreadable(format!(
                    "no EC public key object with CKA_ID {} beside the private key",
                    hex::encode(id)
                ))
            })?;
            let attrs = token
                .session
                .get_attributes(handle, &[AttributeType::EcPoint])?;
            let point = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(|| unreadable("the EC public key has no CKA_EC_POINT".into()))?;
            Ok(Some(
                ec_point_to_public_key(curve, &point).map_err(unreadable)?,
            ))
        }
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed point (some tokens give the
/// raw point); both are read.
fn ec_point_to_public_key(
    curve: Curve,
    point: &[u8],
) -> std::result::Result<TargetPublicKey, String> {
    let len = curve.coordinate_len();
    let raw = match der::asn1::OctetString::from_der(point) {
        Ok(os) if os.as_bytes().len() == 1 + 2 * len => os.as_bytes().to_vec(),
        _ => point.to_vec(),
    };
    if raw.len() != 1 + 2 * len || raw[0] != 0x04 {
        return Err(format!(
            "the {curve} public point is {} bytes, expected an uncompressed point of {}",
            raw.len(),
            1 + 2 * len
        ));
    }
    TargetPublicKey::from_ec_coordinates(curve, &raw[1..1 + len], &raw[1 + len..])
        .map_err(|e| e.to_string())
}

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
    index: &TokenIndex,
    spec: &GenerateSpec,
    beside_lone_public: bool,
) -> Result<Target> {
    let kind = spec.kind.check_importable()?;
    KeyOp::check_for_target(kind.kty(), &spec.ops)?;
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
    };
    Ok((target, public))
}

/// The label of `check`'s throwaway keys.
pub const THROWAWAY_LABEL: &str = "byok-check-throwaway";

/// A throwaway target for `byok-offline check`: made with the production templates (sensitive,
/// extractable, the kind's default operations) but as session objects, which are destroyed
/// when this is dropped or [`Throwaway::destroy`]ed.
pub struct Throwaway<'s> {
    pub target: Target,
    objects: Vec<SessionObject<'s>>,
}

impl Target {
    /// One of `check`'s throwaway keys.
    fn throwaway(
        private: ObjectHandle,
        id: Vec<u8>,
        kind: KeyKind,
        public_key: Option<TargetPublicKey>,
    ) -> Self {
        Self {
            private,
            label: THROWAWAY_LABEL.into(),
            id,
            kind,
            public_key,
        }
    }
}

impl Throwaway<'_> {
    /// Destroys the throwaway's objects now, reporting a failure.
    pub fn destroy(self) -> Result<()> {
        for object in self.objects {
            object.destroy()?;
        }
        Ok(())
    }
}

/// Generates a throwaway target of `kind` as session objects (`CKA_TOKEN=false`).
pub fn generate_throwaway(token: &TokenSession, kind: KeyKind) -> Result<Throwaway<'_>> {
    let id = token.session.generate_random_vec(16)?;
    let templates = Templates::throwaway(&id, kind);
    let (private, public) = generate_objects(token, kind, &templates)?;
    let mut objects = vec![SessionObject::new(&token.session, private)];
    objects.extend(public.map(|p| SessionObject::new(&token.session, p)));
    let at = PublicAt::Handle(public);
    let public_key = public_key_of(token, private, kind, THROWAWAY_LABEL, &id, at)?;
    Ok(Throwaway {
        target: Target::throwaway(private, id, kind, public_key),
        objects,
    })
}

/// Imports a throwaway private key made in software (`check`'s encoding edge cases) as a
/// session object: the production template of the private half (sensitive, extractable, the
/// kind's default operations) plus `material`, its `CKA_EC_PARAMS` and `CKA_VALUE` or its RSA
/// components. `public_key` is the software key's. A token that refuses `C_CreateObject`
/// fails with [`OfflineError::Pkcs11`] naming it.
pub fn import_throwaway(
    token: &TokenSession,
    kind: KeyKind,
    material: Vec<Attribute>,
    public_key: TargetPublicKey,
) -> Result<Throwaway<'_>> {
    let id = token.session.generate_random_vec(16)?;
    let templates = Templates::throwaway(&id, kind);
    let (key_type, private) = match kind {
        KeyKind::Rsa { bits } => (KeyType::RSA, templates.rsa(bits).1),
        KeyKind::Ec { curve } => (KeyType::EC, templates.ec(curve).1),
        KeyKind::Oct { .. } => {
            return Err(OfflineError::Usage(
                "AES throwaway keys are generated in the token, not imported".into(),
            ));
        }
    };
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
    ];
    template.extend(private);
    template.extend(material);
    let private = token.session.create_object(&template)?;
    Ok(Throwaway {
        target: Target::throwaway(private, id, kind, Some(public_key)),
        objects: vec![SessionObject::new(&token.session, private)],
    })
}

/// Makes the key objects of `kind` from `templates`: the private or secret key, and the
/// public key of a pair. A token that cannot make the kind is named as such.
fn generate_objects(
    token: &TokenSession,
    kind: KeyKind,
    templates: &Templates<'_>,
) -> Result<(ObjectHandle, Option<ObjectHandle>)> {
    let session = &token.session;
    let refused = |e: CkError| generation_error(kind, e);
    let pair = |mechanism: Mechanism<'_>, (public, private): (Vec<Attribute>, Vec<Attribute>)| {
        let (public, private) = session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(refused)?;
        Ok((private, Some(public)))
    };
    match kind {
        KeyKind::Rsa { bits } => pair(Mechanism::RsaPkcsKeyPairGen, templates.rsa(bits)),
        KeyKind::Ec { curve } => pair(Mechanism::EccKeyPairGen, templates.ec(curve)),
        KeyKind::Oct { bits } => {
            let secret = session
                .generate_key(&Mechanism::AesKeyGen, &templates.aes(bits))
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

/// The PKCS#11 templates of a target key: the one mapping from Key Vault operations to
/// `CKA_SIGN`, `CKA_DECRYPT`, ... flags.
struct Templates<'a> {
    label: &'a str,
    id: &'a [u8],
    ops: &'a [KeyOp],
    /// `CKA_TOKEN`: true for a target, false for `check`'s throwaway keys.
    persistent: bool,
}

impl<'a> Templates<'a> {
    /// `check`'s throwaway keys: session objects with the kind's default operations.
    fn throwaway(id: &'a [u8], kind: KeyKind) -> Self {
        Self {
            label: THROWAWAY_LABEL,
            id,
            ops: KeyOp::defaults(kind.kty()),
            persistent: false,
        }
    }

    fn has(&self, op: KeyOp) -> bool {
        self.ops.contains(&op)
    }

    fn common(&self, private: bool) -> Vec<Attribute> {
        vec![
            Attribute::Token(self.persistent),
            Attribute::Label(self.label.as_bytes().to_vec()),
            Attribute::Id(self.id.to_vec()),
            Attribute::Private(private),
        ]
    }

    /// The secret half: sensitive (never readable in the clear), extractable (the wrap needs it).
    fn secret(&self) -> Vec<Attribute> {
        let mut t = self.common(true);
        t.extend([Attribute::Sensitive(true), Attribute::Extractable(true)]);
        t
    }

    fn rsa(&self, bits: u32) -> (Vec<Attribute>, Vec<Attribute>) {
        let mut public = self.common(false);
        public.extend([
            Attribute::ModulusBits((bits as u64).into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Verify(self.has(KeyOp::Verify)),
            Attribute::Encrypt(self.has(KeyOp::Encrypt)),
            Attribute::Wrap(self.has(KeyOp::WrapKey)),
        ]);
        let mut private = self.secret();
        private.extend([
            Attribute::Sign(self.has(KeyOp::Sign)),
            Attribute::Decrypt(self.has(KeyOp::Decrypt)),
            Attribute::Unwrap(self.has(KeyOp::UnwrapKey)),
        ]);
        (public, private)
    }

    fn ec(&self, curve: Curve) -> (Vec<Attribute>, Vec<Attribute>) {
        let mut public = self.common(false);
        public.extend([
            Attribute::EcParams(curve.oid_der()),
            Attribute::Verify(self.has(KeyOp::Verify)),
        ]);
        let mut private = self.secret();
        private.push(Attribute::Sign(self.has(KeyOp::Sign)));
        (public, private)
    }

    fn aes(&self, bits: u32) -> Vec<Attribute> {
        let mut t = self.secret();
        t.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen((bits as u64 / 8).into()),
            Attribute::Encrypt(self.has(KeyOp::Encrypt)),
            Attribute::Decrypt(self.has(KeyOp::Decrypt)),
            Attribute::Wrap(self.has(KeyOp::WrapKey)),
            Attribute::Unwrap(self.has(KeyOp::UnwrapKey)),
        ]);
        t
    }
}

/// Finds an AES key by label.
pub fn find_secret(token: &TokenSession, label: &str) -> Result<ObjectHandle> {
    let found = token.session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(OfflineError::NoSuchLabel(label.into())),
        many => Err(OfflineError::AmbiguousKey {
            what: format!("label `{label}`"),
            count: many.len(),
        }),
    }
}

/// AES-GCM decryption of the vault's challenge inside the token, with the key labelled
/// `label`; the plaintext is zeroized on drop. A tag that does not verify means the key is
/// not the vault's: [`OfflineError::ProofMismatch`].
pub fn decrypt_gcm(
    token: &TokenSession,
    key: ObjectHandle,
    label: &str,
    challenge: &byok_core::challenge::AesChallenge,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut iv = challenge.iv.clone();
    let params = cryptoki::mechanism::aead::GcmParams::new(
        &mut iv,
        &[],
        (challenge.tag.len() as u64 * 8).into(),
    )?;
    let mut input = challenge.ciphertext.clone();
    input.extend_from_slice(&challenge.tag);
    let plain = token
        .session
        .decrypt(&Mechanism::AesGcm(params), key, &input)
        .map_err(|e| {
            if tag_refused(&e) {
                OfflineError::ProofMismatch {
                    label: label.into(),
                }
            } else {
                OfflineError::ChallengeDecrypt {
                    label: label.into(),
                    reason: e.to_string(),
                }
            }
        })?;
    Ok(zeroize::Zeroizing::new(plain))
}

/// `CKR_AEAD_DECRYPT_FAILED` (PKCS#11 3.0), which cryptoki cannot name.
const CKR_AEAD_DECRYPT_FAILED: u64 = 0x35;

/// Whether a GCM decryption failed on its tag, i.e. the key is not the one that encrypted:
/// PKCS#11 2.40 says `CKR_ENCRYPTED_DATA_INVALID`, 3.0 `CKR_AEAD_DECRYPT_FAILED`, and
/// SoftHSM 2.6 `CKR_GENERAL_ERROR`. A key without `CKA_DECRYPT` or a token without GCM
/// fails with other codes, before any tag is checked.
fn tag_refused(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::EncryptedDataInvalid
                | RvError::GeneralError
                | RvError::UnknownErrorCode(CKR_AEAD_DECRYPT_FAILED),
            _
        )
    )
}
