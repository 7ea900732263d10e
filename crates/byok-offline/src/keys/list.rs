//! `byok-offline keys`: the token's private, secret and public key objects.

use super::KeyObject;
use super::describe::describe;
use crate::error::Result;
use crate::token::TokenSession;
use cryptoki::object::{Attribute, ObjectClass};

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
