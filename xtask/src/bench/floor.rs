//! The module's own floors, which the bench measures byok-offline against: children of
//! `cargo xtask bench` that make a token's PKCS#11 calls in a loop and nothing else.
//!
//! Every template and attribute list is byok-offline's own (`keys::templates`,
//! `keys::DESCRIBE`, `package::kek_template` and `session_aes_template`), so a floor sends
//! what the tool sends and cannot drift from it.
//!
//! - `__keygen`: SoftHSM key generation alone;
//! - `__login`: load the module and log in;
//! - `__floor`: the calls `byok-offline batch` makes per key, with no file, check or log
//!   ([`FloorMode`]), by the wrap path and the look-up the tool takes ([`FloorCalls`]); the
//!   C_WrapKey calls go through byok-offline's `RawModule`, as the tool's do, since cryptoki
//!   cannot name `CKM_AES_KEY_WRAP_KWP` or `CKM_RSA_AES_KEY_WRAP`, and the path is chosen
//!   by byok-offline's own `Capabilities::choose`;
//! - `__populate`: fills a token with AES keys, so that the floors and the tool can be
//!   measured at a token size.

use super::PIN;
use byok_core::KeyOp;
use byok_core::target::KeyKind;
use byok_offline::keys::templates::{Generation, Templates};
use byok_offline::package::{kek_template, session_aes_template};
use byok_offline::wrap_path::{Capabilities, WrapChoice, WrapPath};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// What `__floor` does per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorMode {
    /// Generate a token key pair of --kind (random CKA_ID), read its public key, wrap it.
    Generate,
    /// Per key of PREFIX-0..COUNT: find it (--lookup), read it and wrap it.
    Existing,
}

/// `__floor`'s wrap, chosen as byok-offline's `--wrap-mechanism` chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorWrap {
    /// Native CKM_RSA_AES_KEY_WRAP when the token lists it, else the two-step (the tool's
    /// default).
    Auto,
    /// One C_WrapKey with CKM_RSA_AES_KEY_WRAP (0x1054).
    Native,
    /// A session AES-256 key, RFC 5649 of the target under it, RSA-OAEP of it under the KEK.
    TwoStep,
}

impl FloorWrap {
    /// The flag's value (the same words as byok-offline's `--wrap-mechanism`).
    pub fn as_str(self) -> &'static str {
        match self {
            FloorWrap::Auto => "auto",
            FloorWrap::Native => "native",
            FloorWrap::TwoStep => "two-step",
        }
    }
}

/// How `__floor` finds each key: as a batch does, by the `lookup` its report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lookup {
    /// For existing keys, the token's objects read once before the clock starts (one search,
    /// then each object's class, label and id), each key then found in that index; for new
    /// keys no call (the tool checks the label against its index, read once per batch).
    Index,
    /// Per key, inside the timed loop: for an existing key C_FindObjects [CKA_LABEL] and the
    /// CKA_CLASS of each object found, then C_FindObjects [CKA_CLASS = public key, CKA_ID]
    /// for its EC public key; for a new key C_FindObjects [CKA_LABEL], which must find
    /// nothing, before it is generated.
    Search,
}

impl Lookup {
    /// The flag's value, and the word a batch's report gives.
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Index => "index",
            Lookup::Search => "search",
        }
    }
}

/// `__floor`'s wrap path and look-up: the tool's `--wrap-mechanism` and its report's `lookup`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FloorCalls {
    /// The wrap path, chosen from the token's mechanisms as byok-offline chooses it.
    #[arg(long, value_enum, default_value_t = FloorWrap::Auto)]
    pub wrap: FloorWrap,
    /// How each key is found.
    #[arg(long, value_enum, default_value_t = Lookup::Index)]
    pub lookup: Lookup,
}

/// `__floor`'s and `__populate`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// The PKCS#11 module (its token's variables come from the environment).
    #[arg(long)]
    pub module: PathBuf,
    /// The token's label.
    #[arg(long)]
    pub token: String,
    /// The KEK's transfer file (`__floor`).
    #[arg(long)]
    pub kek: Option<PathBuf>,
    /// Keys are PREFIX-0, PREFIX-1, ...
    #[arg(long)]
    pub prefix: String,
    #[arg(long)]
    pub count: usize,
    /// `generate`'s kind: "EC P-256" or "RSA <bits>".
    #[arg(long, default_value = "EC P-256")]
    pub kind: String,
}

/// A logged-in session on the token, with the module's raw function list.
struct Floor {
    module: byok_offline::token::Module,
    token: byok_offline::token::TokenSession,
}

impl Floor {
    fn open(args: &FloorArgs) -> Result<Self, String> {
        let err = |e: byok_offline::OfflineError| e.to_string();
        let init = std::env::var("PKCS11_INIT_ARGS").ok();
        let module =
            byok_offline::token::Module::load(&args.module, init.as_deref()).map_err(err)?;
        let selector = byok_offline::token::TokenSelector::Label(args.token.clone());
        let token = module
            .open_with_pin(&selector, &PIN.to_string().into())
            .map_err(err)?;
        Ok(Self { module, token })
    }

    fn session(&self) -> &Session {
        &self.token.session
    }

    /// The wrap path byok-offline's `Capabilities::choose` picks from the token's mechanism
    /// list: native 0x1054, or the two-step with 0x210B, else 0x210A (SoftHSM 2.6.1).
    fn wrap_path(&self, wrap: FloorWrap) -> Result<WrapPath, String> {
        let list = self
            .module
            .raw()
            .mechanism_list(self.token.slot.id())
            .map_err(|e| e.to_string())?;
        let choice = match wrap {
            FloorWrap::Auto => WrapChoice::Auto,
            FloorWrap::Native => WrapChoice::Native,
            FloorWrap::TwoStep => WrapChoice::TwoStep,
        };
        Capabilities::from_list(&list)
            .choose(choice)
            .map_err(|e| e.to_string())
    }

    /// The KEK as a session public key object, made once per session as the tool does.
    fn kek_object(&self, kek: &byok_core::KekPublicKey) -> Result<ObjectHandle, String> {
        self.session()
            .create_object(&kek_template(kek))
            .map_err(|e| e.to_string())
    }

    /// The wrap by `path`: one C_WrapKey with CKM_RSA_AES_KEY_WRAP, or the two-step (a
    /// session AES-256 key, RFC 5649 of the target under it, RSA-OAEP of it under the KEK, the
    /// AES key destroyed), as the tool's `SessionKek::wrap`.
    fn wrap(
        &self,
        path: WrapPath,
        kek: ObjectHandle,
        target: ObjectHandle,
    ) -> Result<usize, String> {
        let s = self.session();
        let err = |e: byok_offline::OfflineError| e.to_string();
        let raw = self.module.raw();
        let kwp = match path {
            WrapPath::Native => {
                let wrapped = raw.wrap_rsa_aes(s.handle(), kek.handle(), target.handle());
                return wrapped.map(|w| w.len()).map_err(err);
            }
            WrapPath::TwoStep(kwp) => kwp.number(),
        };
        let aes = s
            .generate_key(&Mechanism::AesKeyGen, &session_aes_template())
            .map_err(|e| e.to_string())?;
        let kwp_part = raw
            .wrap_aes_kwp(s.handle(), kwp, aes.handle(), target.handle())
            .map_err(err)?;
        let rsa_part = raw
            .wrap_rsa_oaep_sha1(s.handle(), kek.handle(), aes.handle())
            .map_err(err)?;
        s.destroy_object(aes).map_err(|e| e.to_string())?;
        Ok(kwp_part.len() + rsa_part.len())
    }

    /// What the tool reads of a key it finds first: its description (`keys::DESCRIBE`), whose
    /// CKA_ID is returned.
    fn describe(&self, private: ObjectHandle) -> Result<Vec<u8>, String> {
        let attrs = self
            .session()
            .get_attributes(private, &byok_offline::keys::DESCRIBE)
            .map_err(|e| e.to_string())?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Id(id) => Some(id),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// An existing key found by searching, as the tool's search mode finds it: C_FindObjects
    /// [CKA_LABEL] and each object's CKA_CLASS, the private key's description, C_FindObjects
    /// [CKA_CLASS = public key, CKA_ID] and that public key's point. The private key.
    fn search_target(&self, label: &str) -> Result<ObjectHandle, String> {
        let s = self.session();
        let err = |e: cryptoki::error::Error| e.to_string();
        let mut private = None;
        for h in s
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(err)?
        {
            let class = s.get_attributes(h, &[AttributeType::Class]).map_err(err)?;
            let is_private = class.iter().any(|a| {
                matches!(a, Attribute::Class(c) if *c == ObjectClass::PRIVATE_KEY || *c == ObjectClass::SECRET_KEY)
            });
            if is_private {
                private = Some(h);
            }
        }
        let private = private.ok_or_else(|| format!("no private key labelled {label}"))?;
        let id = self.describe(private)?;
        let public = s
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(id)])
            .map_err(err)?;
        let public = *public
            .first()
            .ok_or_else(|| format!("no public key beside {label}"))?;
        self.read_point(public)?;
        Ok(private)
    }

    /// A new key's label searched for, as the tool's search mode does before generating: the
    /// search must find nothing.
    fn label_is_free(&self, label: &str) -> Result<(), String> {
        let found = self
            .session()
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| e.to_string())?;
        if found.is_empty() {
            return Ok(());
        }
        Err(format!("label {label} is already on the token"))
    }

    /// `generate`'s timed loop: per label, the label searched for (`search`), the key pair,
    /// its public key read, the wrap. Seconds.
    fn generate_loop(
        &self,
        labels: &[String],
        kind: KeyKind,
        calls: (WrapPath, Lookup),
        kek: ObjectHandle,
    ) -> Result<f64, String> {
        let (path, lookup) = calls;
        let started = Instant::now();
        for label in labels {
            if lookup == Lookup::Search {
                self.label_is_free(label)?;
            }
            let (private, public) = generate_pair(self.session(), label, kind)?;
            self.read_public(public, kind)?;
            self.wrap(path, kek, private)?;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// `existing`'s timed loop (the index, with `index`, read before the clock starts): per
    /// label, the key found, read and wrapped. Seconds.
    fn existing_loop(
        &self,
        labels: &[String],
        calls: (WrapPath, Lookup),
        kek: ObjectHandle,
    ) -> Result<f64, String> {
        let (path, lookup) = calls;
        let index = match lookup {
            Lookup::Index => Some(index(self.session())?),
            Lookup::Search => None,
        };
        let started = Instant::now();
        for label in labels {
            let private = match &index {
                Some(index) => {
                    let (private, public) = index
                        .get(label)
                        .copied()
                        .ok_or_else(|| format!("no key pair labelled {label}"))?;
                    self.describe(private)?;
                    self.read_point(public)?;
                    private
                }
                None => self.search_target(label)?,
            };
            self.wrap(path, kek, private)?;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// An EC public key's point (all the tool reads of a key pair it has just generated).
    fn read_point(&self, public: ObjectHandle) -> Result<(), String> {
        self.session()
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| e.to_string())
            .map(drop)
    }

    /// The new public key as the tool reads it: an EC point, or an RSA modulus and exponent.
    fn read_public(&self, public: ObjectHandle, kind: KeyKind) -> Result<(), String> {
        if let KeyKind::Ec { .. } = kind {
            return self.read_point(public);
        }
        self.session()
            .get_attributes(
                public,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(|e| e.to_string())
            .map(drop)
    }
}

/// `__floor`: prints `{"count", "seconds", "wrap", "lookup"}`, the per-key loop's wall time
/// and the path and look-up it made (the session, the KEK object and, for existing keys with
/// `--lookup index`, the index are made before the clock starts, as the tool makes them once
/// per batch).
pub fn floor(mode: FloorMode, args: &FloorArgs, calls: FloorCalls) -> Result<(), String> {
    let f = Floor::open(args)?;
    let kek_path = args.kek.as_ref().ok_or("__floor needs --kek")?;
    let text = std::fs::read_to_string(kek_path).map_err(|e| e.to_string())?;
    let kek = byok_core::KekTransfer::parse(&text).map_err(|e| e.to_string())?;
    let path = f.wrap_path(calls.wrap)?;
    let kind = kind_of(&args.kind)?;
    let kek_object = f.kek_object(&kek.key)?;
    let labels: Vec<String> = (0..args.count)
        .map(|i| format!("{}-{i:03}", args.prefix))
        .collect();
    let how = (path, calls.lookup);
    let seconds = match mode {
        FloorMode::Generate => f.generate_loop(&labels, kind, how, kek_object)?,
        FloorMode::Existing => f.existing_loop(&labels, how, kek_object)?,
    };
    f.session()
        .destroy_object(kek_object)
        .map_err(|e| e.to_string())?;
    let wrap = match path {
        WrapPath::Native => "native",
        WrapPath::TwoStep(_) => "two-step",
    };
    let lookup = calls.lookup.as_str();
    let out = json!({"count": args.count, "seconds": seconds, "wrap": wrap, "lookup": lookup});
    println!("{out}");
    Ok(())
}

/// A token key pair of `kind` with the tool's templates (the kind's default operations, as a
/// manifest without `ops` gives them; sensitive, extractable) and a random 16-byte CKA_ID.
fn generate_pair(
    s: &Session,
    label: &str,
    kind: KeyKind,
) -> Result<(ObjectHandle, ObjectHandle), String> {
    let id = s.generate_random_vec(16).map_err(|e| e.to_string())?;
    let (mechanism, public, private) = key_pair_template(kind, label, &id)?;
    let (public, private) = s
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| e.to_string())?;
    Ok((private, public))
}

/// The token's objects read once, as the tool's index does: one search, then each object's
/// class, label and id. Key pairs by label: (private, public).
fn index(s: &Session) -> Result<HashMap<String, (ObjectHandle, ObjectHandle)>, String> {
    let mut by_label: HashMap<String, (Option<ObjectHandle>, Option<ObjectHandle>)> =
        HashMap::new();
    let err = |e: cryptoki::error::Error| e.to_string();
    for h in s.find_objects(&[Attribute::Token(true)]).map_err(err)? {
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::Class,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(err)?;
        let (mut class, mut label) = (None, String::new());
        for a in attrs {
            match a {
                Attribute::Class(c) => class = Some(c),
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                _ => {}
            }
        }
        let slot = by_label.entry(label).or_default();
        match class {
            Some(ObjectClass::PRIVATE_KEY) => slot.0 = Some(h),
            Some(ObjectClass::PUBLIC_KEY) => slot.1 = Some(h),
            _ => {}
        }
    }
    Ok(by_label
        .into_iter()
        .filter_map(|(label, pair)| Some((label, (pair.0?, pair.1?))))
        .collect())
}

/// `__populate`: COUNT AES-256 token keys labelled PREFIX-N (a token's size for the bench).
/// Prints `{"made"}`, with `"error"` when the token refused a key: a token that cannot hold
/// COUNT keys says how many it took (they stay) and why it stopped.
pub fn populate(args: &FloorArgs) -> Result<(), String> {
    let f = Floor::open(args)?;
    let mut made = 0;
    let mut error = None;
    for i in 0..args.count {
        let made_now = f.session().generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(format!("{}-{i:03}", args.prefix).into_bytes()),
            ],
        );
        if let Err(e) = made_now {
            error = Some(e.to_string());
            break;
        }
        made += 1;
    }
    println!("{}", json!({"made": made, "error": error}));
    Ok(())
}

/// The child side of `keygen_floor`.
pub fn keygen_loop(kind: &str, count: usize) -> Result<(), String> {
    let key_kind = kind_of(kind)?;
    let s = logged_in_session()?;
    let mut times = Vec::new();
    for i in 0..count {
        let label = format!("floor-{kind}-{i}");
        // No CKA_ID (an empty one, PKCS#11's default): key generation alone, no C_GenerateRandom.
        let (mechanism, public, private) = key_pair_template(key_kind, &label, &[])?;
        let t = Instant::now();
        s.generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64());
    }
    println!("{}", serde_json::to_string(&times).expect("numbers"));
    Ok(())
}

/// The kind named by `kind`: "EC <curve>" or "RSA <bits>" (the bench's labels).
fn kind_of(kind: &str) -> Result<KeyKind, String> {
    let bad = || format!("bad kind `{kind}`: EC <curve> or RSA <bits>");
    if let Some(curve) = kind.strip_prefix("EC ") {
        let curve = curve.parse().map_err(|_| bad())?;
        return Ok(KeyKind::Ec { curve });
    }
    let bits = kind.strip_prefix("RSA ").ok_or_else(bad)?;
    Ok(KeyKind::Rsa {
        bits: bits.parse().map_err(|_| bad())?,
    })
}

/// The mechanism and the public and private templates byok-offline generates a token key
/// pair of `kind` with, labelled `label`, with the kind's default operations.
fn key_pair_template(
    kind: KeyKind,
    label: &str,
    id: &[u8],
) -> Result<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>), String> {
    let templates = Templates {
        label,
        id,
        ops: KeyOp::defaults(kind.kty()),
        persistent: true,
    };
    match templates.generation(kind) {
        Generation::Pair {
            mechanism,
            public,
            private,
        } => Ok((mechanism, public, private)),
        Generation::Secret { .. } => Err(format!("{kind} is not a key pair")),
    }
}

/// The child that only loads the module and logs in: the cold-start floor.
pub fn login_only() -> Result<(), String> {
    logged_in_session().map(drop)
}

/// Loads the SoftHSM module (the kit's path; SOFTHSM2_CONF from the parent) and logs in to
/// the first token as the user.
fn logged_in_session() -> Result<Session, String> {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    let err = |e: cryptoki::error::Error| e.to_string();
    let p = Pkcs11::new(byok_tests::softhsm_module()).map_err(err)?;
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(err)?;
    let slot = *p
        .get_slots_with_initialized_token()
        .map_err(err)?
        .first()
        .ok_or("no token")?;
    let s = p.open_rw_session(slot).map_err(err)?;
    s.login(UserType::User, Some(&PIN.to_string().into()))
        .map_err(err)?;
    Ok(s)
}
