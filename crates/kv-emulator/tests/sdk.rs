//! The official Azure SDK for Rust against the emulator: KeyClient with ClientSecretCredential
//! pointed at the emulator's token endpoint, over HTTPS trusting the emulator's CA, with the
//! SDK's default options: challenge-resource verification on. The vault URL is
//! `https://emulator.vault.azure.net:PORT`; the transport resolves that host to the emulator's
//! address (connection.json's `vault_address`).

mod common;

use azure_core::http::RequestContent;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, ImportKeyParameters, JsonWebKey, KeyClientSignOptions,
    KeyOperation, KeyType, SignParameters, SignatureAlgorithm,
};
use byok_core::package::Generator;
use byok_core::target::{Curve, KeyKind};
use byok_core::{KekPublicKey, KeyId, KeyTransferPackage, TargetKey, wrap};
use kv_emulator::Flavor;
use p256::ecdsa::signature::hazmat::PrehashVerifier;

#[tokio::test]
async fn official_sdk_creates_imports_byok_and_signs() {
    let emu = common::Emu::start(Flavor::Vault).await;
    let client = common::sdk_client(&emu, &emu.conn.vault_url);

    let params = CreateKeyParameters {
        kty: Some(KeyType::RsaHsm),
        key_size: Some(2048),
        key_ops: Some(vec![KeyOperation::Import]),
        ..Default::default()
    };
    let kek = client
        .create_key(
            "KEKforBYOK",
            RequestContent::try_from(params).unwrap(),
            None,
        )
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let jwk = kek.key.unwrap();
    let kid = KeyId::parse_versioned(jwk.kid.as_deref().unwrap()).unwrap();
    let kek_public =
        KekPublicKey::from_components(jwk.n.as_deref().unwrap(), jwk.e.as_deref().unwrap())
            .unwrap();

    let fetched = client
        .get_key("KEKforBYOK", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        fetched.key.unwrap().kid.as_deref(),
        Some(kid.to_string().as_str())
    );

    // A .byok made with byok-core, imported through the SDK's key_hsm.
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let ct = wrap::wrap(target.plaintext(), &kek_public).unwrap();
    let file = KeyTransferPackage::new(kid, ct, &Generator::this_tool("test", "software", "0"))
        .unwrap()
        .to_json_bytes();
    let params = ImportKeyParameters {
        hsm: Some(true),
        key: Some(JsonWebKey {
            kty: Some(KeyType::EcHsm),
            crv: Some(CurveName::P256),
            key_ops: Some(vec!["sign".into(), "verify".into()]),
            t: Some(file),
            ..Default::default()
        }),
        ..Default::default()
    };
    let imported = client
        .import_key("target", RequestContent::try_from(params).unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let key = imported.key.unwrap();
    assert_eq!(key.kty, Some(KeyType::EcHsm));
    assert!(key.d.is_none());
    let (x, y) = target.public_key().unwrap().components();
    assert_eq!(key.x.as_deref(), Some(x.as_slice()));
    assert_eq!(key.y.as_deref(), Some(y.as_slice()));

    // The vault signs; the signature verifies with the key we made.
    let digest = [0x42u8; 32];
    let params = SignParameters {
        algorithm: Some(SignatureAlgorithm::Es256),
        value: Some(digest.to_vec()),
    };
    let version = key
        .kid
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let sig = client
        .sign(
            "target",
            RequestContent::try_from(params).unwrap(),
            Some(KeyClientSignOptions {
                key_version: Some(version),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .result
        .unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend(x);
    sec1.extend(y);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
}

#[tokio::test]
async fn official_sdk_reports_a_wrong_secret() {
    let mut emu = common::Emu::start(Flavor::Vault).await;
    emu.conn.client_secret = "not-the-secret".into();
    let err = common::sdk_client(&emu, &emu.conn.vault_url)
        .get_key("anything", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("7000215") || format!("{err:?}").contains("7000215"),
        "{err:?}"
    );
}
