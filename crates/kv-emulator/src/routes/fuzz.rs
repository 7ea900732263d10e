//! The fuzzing entry: every request body the emulator reads, decoded as its handlers do.

use super::parse;
use crate::auth::TokenRequest;
use crate::service::{CreateRequest, ImportRequest, OperationRequest, UpdateRequest};
use axum::body::Bytes;

/// Decodes `body` as every request body the emulator reads, and a `key_hsm` as a package:
/// the entry point for fuzzing. Never panics.
pub fn decode_any_request(body: &[u8]) {
    let bytes = Bytes::copy_from_slice(body);
    let _ = parse::<CreateRequest>(&bytes);
    let _ = parse::<UpdateRequest>(&bytes);
    let _ = parse::<OperationRequest>(&bytes);
    if let Ok(import) = parse::<ImportRequest>(&bytes)
        && let Some(blob) = import.key.key_hsm
        && let Ok(file) = byok_core::b64::decode("key_hsm", &blob)
    {
        let _ = byok_core::KeyTransferPackage::parse(&file);
    }
    let _ = std::str::from_utf8(body).map(token_form);
}

/// The token form, read as the handler's extractor does.
fn token_form(text: &str) -> Option<TokenRequest> {
    axum::extract::Query::<TokenRequest>::try_from_uri(&format!("/?{text}").parse().ok()?)
        .ok()
        .map(|q| q.0)
}
