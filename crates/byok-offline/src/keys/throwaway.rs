//! `check`'s throwaway keys: made with the production templates (sensitive, extractable, the
//! kind's default operations) as session objects, generated in the token or imported from
//! software, and destroyed when dropped.

use super::find::{PublicAt, public_key_of};
use super::generate::generate_objects;
use super::templates::Templates;
use super::{Origin, Target};
use crate::error::{OfflineError, Result};
use crate::token::{SessionObject, TokenSession};
use byok_core::target::KeyKind;
use byok_core::{KeyOp, TargetPublicKey};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};

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
            origin: Origin::Generated,
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

/// The templates of a throwaway key: session objects with the kind's default operations.
fn templates(id: &[u8], kind: KeyKind) -> Templates<'_> {
    Templates {
        label: THROWAWAY_LABEL,
        id,
        ops: KeyOp::defaults(kind.kty()),
        persistent: false,
    }
}

/// Generates a throwaway target of `kind` as session objects (`CKA_TOKEN=false`).
pub fn generate_throwaway(token: &TokenSession, kind: KeyKind) -> Result<Throwaway<'_>> {
    let id = token.session.generate_random_vec(16)?;
    let (private, public) = generate_objects(token, kind, &templates(&id, kind))?;
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
    let private = private_template(&id, kind)?;
    let mut template = private;
    template.extend(material);
    let private = token.session.create_object(&template)?;
    Ok(Throwaway {
        target: Target::throwaway(private, id, kind, Some(public_key)),
        objects: vec![SessionObject::new(&token.session, private)],
    })
}

/// The template of an imported throwaway private key, before its key material: class, key
/// type, and the private half of the production templates.
fn private_template(id: &[u8], kind: KeyKind) -> Result<Vec<Attribute>> {
    let templates = templates(id, kind);
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
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::Curve;

    #[test]
    fn throwaway_keys_are_session_objects_with_the_kind_s_default_operations() {
        let ec = templates(&[7], KeyKind::Ec { curve: Curve::P256 });
        assert_eq!(ec.label, THROWAWAY_LABEL);
        assert_eq!(ec.id, &[7]);
        assert!(!ec.persistent);
        assert_eq!(ec.ops, &[KeyOp::Sign, KeyOp::Verify]);
        let rsa = templates(&[], KeyKind::Rsa { bits: 2048 });
        assert_eq!(rsa.ops.len(), 6, "{:?}", rsa.ops);
    }

    #[test]
    fn an_imported_throwaway_is_a_private_key_of_its_type_held_in_the_session() {
        let template = private_template(&[1, 2], KeyKind::Ec { curve: Curve::P384 }).unwrap();
        assert_eq!(template[0], Attribute::Class(ObjectClass::PRIVATE_KEY));
        assert_eq!(template[1], Attribute::KeyType(KeyType::EC));
        for expected in [
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Sign(true),
            Attribute::Id(vec![1, 2]),
            Attribute::Label(THROWAWAY_LABEL.as_bytes().to_vec()),
        ] {
            assert!(template.contains(&expected), "{expected:?} in {template:?}");
        }
        let rsa = private_template(&[], KeyKind::Rsa { bits: 3072 }).unwrap();
        assert_eq!(rsa[1], Attribute::KeyType(KeyType::RSA));
        assert!(rsa.contains(&Attribute::Decrypt(true)), "{rsa:?}");
        let aes = private_template(&[], KeyKind::Oct { bits: 256 });
        assert!(matches!(aes, Err(OfflineError::Usage(_))));
    }
}
