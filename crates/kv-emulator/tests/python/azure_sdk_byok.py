"""The official Python SDK (azure-keyvault-keys, azure-identity) against kv-emulator, unchanged
but for the emulator's CA; the SDK's challenge-resource verification stays at its default (on).

The vault URL is https://emulator.vault.azure.net:PORT, which no DNS resolves, and the SDK has
no resolve option: this process patches `socket.getaddrinfo` so that the vault host resolves to
connection.json's `vault_address`. The challenge's resource carries the port
(`https://vault.azure.net:PORT`), since the SDK compares netlocs port included.

It also builds the .byok with an implementation of the spec independent of this project
(the `cryptography` package: RSA-OAEP-SHA1, RFC 5649, PKCS#8), imports it with key_hsm, and
checks a signature made in the emulator with the key it made.

Usage: python3 azure_sdk_byok.py STATE_DIR/connection.json
"""
import base64
import hashlib
import json
import os
import socket
import sys
from urllib.parse import urlparse

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyType
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resolve_vault_host(vault_url: str, address: str) -> None:
    """Makes `getaddrinfo` answer the vault's host with the emulator's address."""
    host = urlparse(vault_url).hostname
    ip = address.rsplit(":", 1)[0].strip("[]")
    real = socket.getaddrinfo

    def getaddrinfo(name, port, *args, **kwargs):
        if isinstance(name, (bytes, bytearray)):
            name = name.decode()
        if name is not None and name.lower() == host:
            name = ip
        return real(name, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def main() -> None:
    conn = json.load(open(sys.argv[1]))
    ca = conn["ca_cert"]
    resolve_vault_host(conn["vault_url"], conn["vault_address"])
    cred = ClientSecretCredential(
        conn["tenant_id"],
        conn["client_id"],
        conn["client_secret"],
        authority=conn["authority_host"],
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    client = KeyClient(conn["vault_url"], cred, connection_verify=ca)

    kek = client.create_rsa_key("PyKEK", size=2048, hardware_protected=True, key_operations=["import"])
    assert kek.key_type == KeyType.rsa_hsm, kek.key_type
    assert client.get_key("PyKEK").id == kek.id

    public = rsa.RSAPublicNumbers(int.from_bytes(kek.key.e, "big"), int.from_bytes(kek.key.n, "big")).public_key()
    target = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = target.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    aes_key = os.urandom(32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    ciphertext = public.encrypt(aes_key, oaep) + keywrap.aes_key_wrap_with_padding(aes_key, pkcs8)
    package = {
        "schema_version": "1.0.0",
        "header": {"kid": kek.id, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64url(ciphertext),
        "generator": "python cryptography test",
    }
    byok = json.dumps(package).encode()
    jwk = JsonWebKey(kty=KeyType.ec_hsm, crv="P-256", key_ops=["sign", "verify"], t=byok)
    imported = client.import_key("PyTarget", jwk, hardware_protected=True)
    numbers = target.public_key().public_numbers()
    assert int.from_bytes(imported.key.x, "big") == numbers.x
    assert int.from_bytes(imported.key.y, "big") == numbers.y

    crypto = CryptographyClient(imported, cred, connection_verify=ca)
    digest = hashlib.sha256(b"proof").digest()
    signature = crypto.sign(SignatureAlgorithm.es256, digest).signature
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    target.public_key().verify(encode_dss_signature(r, s), b"proof", ec.ECDSA(hashes.SHA256()))
    # The client with no role on the vault: RBAC's 403.
    reader = ClientSecretCredential(
        conn["tenant_id"],
        conn["reader_client_id"],
        conn["reader_client_secret"],
        authority=conn["authority_host"],
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    try:
        KeyClient(conn["vault_url"], reader, connection_verify=ca).get_key("PyKEK")
        raise AssertionError("the reader read a key")
    except HttpResponseError as e:
        assert e.status_code == 403, e.status_code
        body = e.response.json()
        assert body["error"]["innererror"]["code"] == "ForbiddenByRbac", body
        assert "Microsoft.KeyVault/vaults/keys/read" in body["error"]["message"], body
    print("python-sdk: create, get, import key_hsm, sign: ok")


if __name__ == "__main__":
    main()
