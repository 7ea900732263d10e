//! Known-answer tests: RFC 5649 section 6, NIST SP 800-38F KWP (AES-256), and the Wycheproof
//! AES-KWP and RSA-OAEP (SHA-1, MGF1-SHA-1) files, run in full.

mod common;

use byok_core::wrap::{self, WrapError};
use common::unhex;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, PrivateKey as RsaPrivateKey};
use serde_json::Value;
use sha1::Sha1;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

#[test]
fn rfc5649_section6() {
    let kek = unhex("5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8");
    let cases = [
        (
            "c37b7e6492584340 bed1220780894115 5068f738",
            "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a",
        ),
        ("466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"),
    ];
    for (key, wrapped) in cases {
        let (key, wrapped) = (unhex(key), unhex(wrapped));
        assert_eq!(wrap::kwp_wrap(&kek, &key).unwrap(), wrapped);
        assert_eq!(*wrap::kwp_unwrap(&kek, &wrapped).unwrap(), key);
    }
}

/// Reads a NIST CAVP response file into records of `name -> value` (a bare FAIL line as
/// `FAIL -> ""`).
fn nist_records(file: &str) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(format!("{VECTORS}/nist/{file}")).unwrap();
    let mut records = Vec::new();
    let mut current = std::collections::HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') || line.starts_with('#') {
            continue;
        }
        if line.starts_with("COUNT") && !current.is_empty() {
            records.push(std::mem::take(&mut current));
        }
        if let Some((k, v)) = line.split_once(" = ") {
            current.insert(k.to_string(), v.to_string());
        } else if line == "FAIL" {
            current.insert("FAIL".into(), String::new());
        }
    }
    records.push(current);
    records
}

#[test]
fn nist_kwp_ae_256() {
    let records = nist_records("KWP_AE_256.txt");
    assert_eq!(records.len(), 500);
    for r in &records {
        let (k, p, c) = (unhex(&r["K"]), unhex(&r["P"]), unhex(&r["C"]));
        assert_eq!(wrap::kwp_wrap(&k, &p).unwrap(), c, "COUNT {}", r["COUNT"]);
    }
}

#[test]
fn nist_kwp_ad_256() {
    let records = nist_records("KWP_AD_256.txt");
    assert_eq!(records.len(), 500);
    let mut fails = 0;
    for r in &records {
        let (k, c) = (unhex(&r["K"]), unhex(&r["C"]));
        let result = wrap::kwp_unwrap(&k, &c);
        if r.contains_key("FAIL") {
            fails += 1;
            assert_eq!(
                result.unwrap_err(),
                WrapError::Integrity,
                "COUNT {}",
                r["COUNT"]
            );
        } else {
            assert_eq!(*result.unwrap(), unhex(&r["P"]), "COUNT {}", r["COUNT"]);
        }
    }
    assert_eq!(fails, 100);
}

fn wycheproof(file: &str) -> Value {
    let text = std::fs::read_to_string(format!("{VECTORS}/wycheproof/{file}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn wycheproof_aes_kwp() {
    let doc = wycheproof("aes_kwp_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        for t in group["tests"].as_array().unwrap() {
            let id = &t["tcId"];
            let key = unhex(t["key"].as_str().unwrap());
            let msg = unhex(t["msg"].as_str().unwrap());
            let ct = unhex(t["ct"].as_str().unwrap());
            match t["result"].as_str().unwrap() {
                "valid" => {
                    valid += 1;
                    assert_eq!(wrap::kwp_wrap(&key, &msg).unwrap(), ct, "tcId {id}");
                    assert_eq!(*wrap::kwp_unwrap(&key, &ct).unwrap(), msg, "tcId {id}");
                }
                "invalid" => {
                    invalid += 1;
                    assert!(wrap::kwp_unwrap(&key, &ct).is_err(), "tcId {id} unwrapped");
                }
                other => panic!("tcId {id}: unexpected result {other}"),
            }
        }
    }
    assert_eq!((valid, invalid), (77, 177));
}

#[test]
fn wycheproof_rsa_oaep_2048_sha1_mgf1sha1() {
    let doc = wycheproof("rsa_oaep_2048_sha1_mgf1sha1_test.json");
    let mut count = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(group["sha"], "SHA-1");
        assert_eq!(group["mgfSha"], "SHA-1");
        let der = unhex(group["privateKeyPkcs8"].as_str().unwrap());
        let key = RsaPrivateKey::from_pkcs8_der(&der).unwrap();
        for t in group["tests"].as_array().unwrap() {
            count += 1;
            let id = &t["tcId"];
            let ct = unhex(t["ct"].as_str().unwrap());
            let label = unhex(t["label"].as_str().unwrap());
            // The empty-label cases go through the exact function the unwrap uses; the
            // labelled ones check the same OAEP configuration with the label set.
            let result = if label.is_empty() {
                wrap::oaep_sha1_decrypt(&key, &ct).map(|m| m.to_vec())
            } else {
                key.decrypt(Oaep::<Sha1>::new_with_label(label), &ct)
                    .map_err(|_| WrapError::OaepDecrypt)
            };
            match t["result"].as_str().unwrap() {
                "valid" => assert_eq!(
                    result.unwrap(),
                    unhex(t["msg"].as_str().unwrap()),
                    "tcId {id}"
                ),
                "invalid" => assert!(result.is_err(), "tcId {id} decrypted"),
                other => panic!("tcId {id}: unexpected result {other}"),
            }
        }
    }
    assert_eq!(count, 36);
}
