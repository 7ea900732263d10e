//! Each key followed across the gap, in three passes: the HSM side (the KEK, the tokens,
//! the keys and their packages), the imports (by the package's SHA-256, else by name), and
//! the proofs (by the vault's key id, else by name, else by the public key's fingerprint).

use super::model::{At, Ceremony, Check, Download, Kek, Key, Token, push_new};
use byok_core::evidence::{Entry, Imported, KeyRecord, Packaged, TokenRecord};

/// The KEK, the tokens, and the keys as the HSM side recorded them.
pub(super) fn hsm_side(c: &mut Ceremony, at: At, entry: &Entry) {
    match entry {
        Entry::KekCreated(k) => {
            let kek = kek(&mut c.keks, &k.kek.kid, &k.kek.sha256);
            kek.vault = Some(k.vault.clone());
            kek.size = Some(k.size);
            kek.key_ops = k.key_ops.clone();
            kek.created = Some(at);
        }
        Entry::KekDownloaded(k) => {
            let kek = kek(&mut c.keks, &k.kek.kid, &k.kek.sha256);
            kek.vault.get_or_insert_with(|| k.vault.clone());
            kek.downloads.push(Download {
                at,
                file: k.transfer_file.clone(),
                sha256: k.transfer_sha256.clone(),
            });
        }
        Entry::TokensListed(t) => {
            for listed in &t.tokens {
                token(&mut c.tokens, &listed.token);
            }
        }
        Entry::TokenChecked(t) => token(&mut c.tokens, &t.token).checks.push(Check {
            at,
            wrap_path: t.wrap_path.clone(),
            kinds: t.kinds.clone(),
            throwaway_keys: t.throwaway_keys,
            edge_case_imports: t.edge_case_imports,
        }),
        Entry::KeyGenerated(g) => {
            let name = token(&mut c.tokens, &g.token).name();
            let key = hsm_key(&mut c.keys, &g.key.hsm_label, &g.key, None);
            key.fill_key(&g.key);
            key.generated = Some(true);
            key.token.get_or_insert(name);
            key.generated_at.get_or_insert(at);
        }
        Entry::Packaged(p) | Entry::PackageConfirmed(p) => packaged(c, at, p),
        Entry::AesProved(p) => {
            token(&mut c.tokens, &p.token);
        }
        _ => {}
    }
}

fn packaged(c: &mut Ceremony, at: At, p: &Packaged) {
    let token_name = token(&mut c.tokens, &p.token).name();
    let kek_name = p.kek.kid.clone();
    if !kek_name.is_empty() {
        kek(&mut c.keks, &p.kek.kid, &p.kek.sha256).packages += 1;
    }
    let key = hsm_key(&mut c.keys, &p.key_name, &p.key, Some(&p.byok_sha256));
    // The ceremony's name wins over a name `generate` gave (the HSM label).
    if key.name != p.key_name && key.packaged.is_empty() {
        let label = std::mem::replace(&mut key.name, p.key_name.clone());
        key.add_name(&label);
    }
    key.fill_key(&p.key);
    let notes = &mut key.notes;
    Key::fill(notes, &mut key.kek_kid, "KEK", &kek_name);
    let wrap = p.wrap_path.as_deref().unwrap_or_default();
    Key::fill(notes, &mut key.wrap_path, "wrap path", wrap);
    let verdict = crate::minutes::doc::cited_verdict(p);
    Key::fill(notes, &mut key.check_verdict, "check verdict", &verdict);
    if let Some(g) = p.generated {
        key.generated.get_or_insert(g);
    }
    push_new(&mut key.packages, &p.byok_sha256);
    if let Some(file) = &p.package_file {
        push_new(&mut key.package_files, file);
    }
    key.token.get_or_insert(token_name);
    key.packaged.push(at);
}

/// The key an HSM-side entry is about: the one with its package, else one it may be (same
/// name or label, no differing id or fingerprint), else a new one.
fn hsm_key<'k>(
    keys: &'k mut Vec<Key>,
    name: &str,
    k: &KeyRecord,
    package: Option<&str>,
) -> &'k mut Key {
    let found = package
        .and_then(|sha| {
            keys.iter()
                .position(|key| key.packages.iter().any(|p| p == sha))
        })
        .or_else(|| keys.iter().position(|key| key.may_be(name, k)));
    match found {
        Some(i) => &mut keys[i],
        None => {
            keys.push(Key {
                name: name.into(),
                ..Key::default()
            });
            keys.last_mut().expect("just pushed")
        }
    }
}

/// `imported`, `import confirmed`: joined by the package's SHA-256, else by name.
pub(super) fn import(keys: &mut Vec<Key>, at: At, i: &Imported) {
    let by_package = keys
        .iter()
        .position(|k| k.packages.iter().any(|p| p == &i.byok_sha256));
    let index = match by_package.or_else(|| keys.iter().position(|k| k.named(&i.key_name))) {
        Some(index) => index,
        None => {
            keys.push(Key {
                name: i.key_name.clone(),
                ..Key::default()
            });
            keys.len() - 1
        }
    };
    let key = &mut keys[index];
    key.add_name(&i.key_name);
    if by_package.is_none() && !key.packages.is_empty() {
        key.notes.push(format!(
            "imported by name from a package with SHA-256 {}, which no packaging entry here \
             records",
            i.byok_sha256
        ));
    }
    push_new(&mut key.packages, &i.byok_sha256);
    push_new(&mut key.vault_kids, &i.vault_kid);
    let fp = i.public_key_sha256.as_deref().unwrap_or_default();
    Key::fill(
        &mut key.notes,
        &mut key.public_key_sha256,
        "public key SHA-256",
        fp,
    );
    Key::fill(&mut key.notes, &mut key.kek_kid, "KEK", &i.kek_kid);
    key.imports.push((at, i.verification.clone()));
}

/// `verified`, `aes challenge made`, `aes proved`: joined by the vault's key id, else by
/// name, else (`verified`) by the public key's fingerprint.
pub(super) fn proof(keys: &mut Vec<Key>, at: At, entry: &Entry) {
    let (name, kid, fp) = match entry {
        Entry::Verified(v) => (&v.key_name, &v.vault_kid, Some(&v.public_key_sha256)),
        Entry::AesChallengeMade(a) => (&a.key_name, &a.vault_kid, None),
        Entry::AesProved(a) => (&a.hsm_label, &a.vault_kid, None),
        _ => return,
    };
    let found = keys
        .iter()
        .position(|k| k.of_vault_kid(kid))
        .or_else(|| keys.iter().position(|k| k.named(name)))
        .or_else(|| {
            let fp = fp?;
            keys.iter()
                .position(|k| k.public_key_sha256.as_ref() == Some(fp))
        });
    let index = found.unwrap_or_else(|| {
        keys.push(Key {
            name: name.clone(),
            ..Key::default()
        });
        keys.len() - 1
    });
    let key = &mut keys[index];
    push_new(&mut key.vault_kids, kid);
    match entry {
        Entry::Verified(v) => {
            key.add_name(&v.key_name);
            Key::fill(
                &mut key.notes,
                &mut key.public_key_sha256,
                "public key SHA-256",
                &v.public_key_sha256,
            );
            key.proofs
                .push((at, format!("{} ({})", v.outcome, v.algorithm)));
        }
        Entry::AesChallengeMade(a) => {
            key.add_name(&a.key_name);
            key.challenges.push(at);
        }
        Entry::AesProved(a) => key.proofs.push((
            at,
            format!(
                "the HSM's AES key decrypted the vault's challenge (SHA-256 {}): {}",
                a.challenge_sha256, a.outcome
            ),
        )),
        _ => {}
    }
}

fn kek<'k>(keks: &'k mut Vec<Kek>, kid: &str, sha256: &str) -> &'k mut Kek {
    match keks.iter().position(|k| k.kid == kid && k.sha256 == sha256) {
        Some(i) => &mut keks[i],
        None => {
            keks.push(Kek {
                kid: kid.into(),
                sha256: sha256.into(),
                ..Kek::default()
            });
            keks.last_mut().expect("just pushed")
        }
    }
}

/// The token a record names (by manufacturer, model and serial), with what the record adds.
fn token<'t>(tokens: &'t mut Vec<Token>, r: &TokenRecord) -> &'t mut Token {
    let i = match tokens.iter().position(|t| {
        t.manufacturer == r.manufacturer && t.model == r.model && t.serial == r.serial
    }) {
        Some(i) => i,
        None => {
            tokens.push(Token {
                label: r.label.clone(),
                manufacturer: r.manufacturer.clone(),
                model: r.model.clone(),
                serial: r.serial.clone(),
                firmware: r.firmware.clone(),
                ..Token::default()
            });
            tokens.len() - 1
        }
    };
    let t = &mut tokens[i];
    if let Some(module) = &r.module {
        let module = (module.clone(), r.module_sha256.clone().unwrap_or_default());
        if !t.modules.contains(&module) {
            t.modules.push(module);
        }
    }
    t
}
