//! The PKCS#11 templates of a new key: the one mapping from Key Vault operations to
//! `CKA_SIGN`, `CKA_DECRYPT`, ... flags, and the mechanism that generates each kind. The
//! target's generation, `check`'s throwaway keys and the bench's floor (`xtask/src/bench/floor.rs`)
//! all send these.

use byok_core::KeyOp;
use byok_core::target::{Curve, KeyKind};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};

/// The templates of one key.
#[derive(Debug, Clone, Copy)]
pub struct Templates<'a> {
    pub label: &'a str,
    /// `CKA_ID`, the same on both halves of a pair.
    pub id: &'a [u8],
    /// What the key may do in the HSM.
    pub ops: &'a [KeyOp],
    /// `CKA_TOKEN`: true for a target, false for `check`'s throwaway keys.
    pub persistent: bool,
}

/// What generating a key of one kind sends: the mechanism and its template(s).
#[derive(Debug)]
pub enum Generation {
    /// `C_GenerateKeyPair` (RSA, EC).
    Pair {
        mechanism: Mechanism<'static>,
        public: Vec<Attribute>,
        private: Vec<Attribute>,
    },
    /// `C_GenerateKey` (AES).
    Secret {
        mechanism: Mechanism<'static>,
        template: Vec<Attribute>,
    },
}

impl Templates<'_> {
    /// The mechanism and templates that generate a key of `kind`.
    pub fn generation(&self, kind: KeyKind) -> Generation {
        let pair = |mechanism, (public, private)| Generation::Pair {
            mechanism,
            public,
            private,
        };
        match kind {
            KeyKind::Rsa { bits } => pair(Mechanism::RsaPkcsKeyPairGen, self.rsa(bits)),
            KeyKind::Ec { curve } => pair(Mechanism::EccKeyPairGen, self.ec(curve)),
            KeyKind::Oct { bits } => Generation::Secret {
                mechanism: Mechanism::AesKeyGen,
                template: self.aes(bits),
            },
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

    /// An RSA pair's (public, private) templates: public exponent 65537.
    pub fn rsa(&self, bits: u32) -> (Vec<Attribute>, Vec<Attribute>) {
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

    /// An EC pair's (public, private) templates: the curve's OID in `CKA_EC_PARAMS`.
    pub fn ec(&self, curve: Curve) -> (Vec<Attribute>, Vec<Attribute>) {
        let mut public = self.common(false);
        public.extend([
            Attribute::EcParams(curve.oid_der()),
            Attribute::Verify(self.has(KeyOp::Verify)),
        ]);
        let mut private = self.secret();
        private.push(Attribute::Sign(self.has(KeyOp::Sign)));
        (public, private)
    }

    /// An AES key's template.
    pub fn aes(&self, bits: u32) -> Vec<Attribute> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::mechanism::MechanismType;
    use cryptoki::object::AttributeType;

    const TARGET: Templates<'static> = Templates {
        label: "k",
        id: &[0xab, 0xcd],
        ops: &[KeyOp::Sign, KeyOp::Verify],
        persistent: true,
    };

    /// The value of the one attribute of `ty` in `template` (each appears exactly once).
    fn one(template: &[Attribute], ty: AttributeType) -> &Attribute {
        let found: Vec<_> = template
            .iter()
            .filter(|a| a.attribute_type() == ty)
            .collect();
        assert_eq!(found.len(), 1, "{ty:?} in {template:?}");
        found[0]
    }

    fn flag(template: &[Attribute], ty: AttributeType) -> bool {
        match one(template, ty) {
            Attribute::Token(b)
            | Attribute::Private(b)
            | Attribute::Sensitive(b)
            | Attribute::Extractable(b)
            | Attribute::Sign(b)
            | Attribute::Verify(b)
            | Attribute::Encrypt(b)
            | Attribute::Decrypt(b)
            | Attribute::Wrap(b)
            | Attribute::Unwrap(b) => *b,
            other => panic!("{other:?} is not a flag"),
        }
    }

    /// Label, id, `CKA_TOKEN` and `CKA_PRIVATE` of either half.
    fn assert_common(template: &[Attribute], t: &Templates<'_>, private: bool) {
        assert!(
            matches!(one(template, AttributeType::Label), Attribute::Label(l) if l == t.label.as_bytes())
        );
        assert!(matches!(one(template, AttributeType::Id), Attribute::Id(id) if id == t.id));
        assert_eq!(flag(template, AttributeType::Token), t.persistent);
        assert_eq!(flag(template, AttributeType::Private), private);
    }

    /// The secret half: sensitive and extractable, always.
    fn assert_secret(template: &[Attribute], t: &Templates<'_>) {
        assert_common(template, t, true);
        assert!(flag(template, AttributeType::Sensitive));
        assert!(flag(template, AttributeType::Extractable));
    }

    #[test]
    fn an_ec_pair_names_its_curve_and_its_operations() {
        let expected_oid: [(Curve, &[u8]); 4] = [
            (
                Curve::P256,
                &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            ),
            (Curve::P384, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
            (Curve::P521, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]),
            (Curve::P256K, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]),
        ];
        for (curve, oid) in expected_oid {
            let (public, private) = TARGET.ec(curve);
            assert_common(&public, &TARGET, false);
            assert!(
                matches!(one(&public, AttributeType::EcParams), Attribute::EcParams(p) if p == oid)
            );
            assert!(flag(&public, AttributeType::Verify));
            assert_eq!(public.len(), 6, "{public:?}");
            assert_secret(&private, &TARGET);
            assert!(flag(&private, AttributeType::Sign));
            assert_eq!(private.len(), 7, "{private:?}");
        }
        let verify_only = Templates {
            ops: &[KeyOp::Verify],
            ..TARGET
        };
        let (public, private) = verify_only.ec(Curve::P256);
        assert!(flag(&public, AttributeType::Verify));
        assert!(!flag(&private, AttributeType::Sign));
    }

    #[test]
    fn an_rsa_pair_has_its_size_65537_and_a_flag_per_operation() {
        let ops = [KeyOp::Decrypt, KeyOp::WrapKey];
        let t = Templates {
            ops: &ops,
            ..TARGET
        };
        let (public, private) = t.rsa(3072);
        assert_common(&public, &t, false);
        assert!(
            matches!(one(&public, AttributeType::ModulusBits), Attribute::ModulusBits(b) if u64::from(*b) == 3072)
        );
        assert!(
            matches!(one(&public, AttributeType::PublicExponent), Attribute::PublicExponent(e) if e == &[1, 0, 1])
        );
        assert!(!flag(&public, AttributeType::Verify));
        assert!(!flag(&public, AttributeType::Encrypt));
        assert!(flag(&public, AttributeType::Wrap));
        assert_secret(&private, &t);
        assert!(!flag(&private, AttributeType::Sign));
        assert!(flag(&private, AttributeType::Decrypt));
        assert!(!flag(&private, AttributeType::Unwrap));
    }

    #[test]
    fn an_aes_key_is_a_sensitive_extractable_secret_of_its_length() {
        let ops = KeyOp::defaults(byok_core::target::Kty::Oct);
        let t = Templates {
            ops,
            persistent: false,
            ..TARGET
        };
        let template = t.aes(192);
        assert_secret(&template, &t);
        assert!(!flag(&template, AttributeType::Token));
        assert!(
            matches!(one(&template, AttributeType::Class), Attribute::Class(c) if *c == ObjectClass::SECRET_KEY)
        );
        assert!(
            matches!(one(&template, AttributeType::KeyType), Attribute::KeyType(k) if *k == KeyType::AES)
        );
        assert!(
            matches!(one(&template, AttributeType::ValueLen), Attribute::ValueLen(l) if u64::from(*l) == 24)
        );
        for ty in [
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Wrap,
            AttributeType::Unwrap,
        ] {
            assert!(flag(&template, ty), "{ty:?}");
        }
    }

    #[test]
    fn each_kind_is_generated_by_its_mechanism() {
        let mechanism_of = |kind| match TARGET.generation(kind) {
            Generation::Pair {
                mechanism,
                public,
                private,
            } => {
                assert_eq!(
                    (public, private),
                    match kind {
                        KeyKind::Rsa { bits } => TARGET.rsa(bits),
                        KeyKind::Ec { curve } => TARGET.ec(curve),
                        KeyKind::Oct { .. } => unreachable!("AES is no pair"),
                    }
                );
                mechanism.mechanism_type()
            }
            Generation::Secret {
                mechanism,
                template,
            } => {
                assert_eq!(template, TARGET.aes(kind.bits()));
                mechanism.mechanism_type()
            }
        };
        assert_eq!(
            mechanism_of(KeyKind::Rsa { bits: 2048 }),
            MechanismType::RSA_PKCS_KEY_PAIR_GEN
        );
        assert_eq!(
            mechanism_of(KeyKind::Ec { curve: Curve::P521 }),
            MechanismType::ECC_KEY_PAIR_GEN
        );
        assert_eq!(
            mechanism_of(KeyKind::Oct { bits: 128 }),
            MechanismType::AES_KEY_GEN
        );
    }
}
