"""MSAL Python (the `msal` package azure-identity depends on) against kv-emulator's Entra ID side,
as a confidential client: it reads the tenant's discovery document, gets a token by client
credentials, and the token's signature is then checked (with pyca/cryptography) with the key
the document's jwks_uri names by the token's `kid`.

Usage: python3 msal_client_credentials.py STATE_DIR/connection.json
"""
import base64
import json
import sys

import msal
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main() -> None:
    conn = json.load(open(sys.argv[1]))
    ca = conn["ca_cert"]
    authority = f"{conn['authority_host']}/{conn['tenant_id']}"
    # MSAL's HTTP client: a requests session trusting the emulator's CA (and not the
    # environment's REQUESTS_CA_BUNDLE, which would replace it).
    http = requests.Session()
    http.trust_env = False
    http.verify = ca
    app = msal.ConfidentialClientApplication(
        conn["client_id"],
        client_credential=conn["client_secret"],
        authority=authority,
        # The emulator's host is not one of Microsoft's clouds.
        instance_discovery=False,
        http_client=http,
    )
    result = app.acquire_token_for_client(scopes=[f"{conn['resource']}/.default"])
    assert "access_token" in result, result
    token = result["access_token"]

    discovery = http.get(f"{authority}/v2.0/.well-known/openid-configuration").json()
    for member in ("jwks_uri", "end_session_endpoint", "issuer", "response_modes_supported",
                   "subject_types_supported", "id_token_signing_alg_values_supported"):
        assert member in discovery, member
    jwks = http.get(discovery["jwks_uri"]).json()

    header_part, payload_part, signature_part = token.split(".")
    header = json.loads(b64url_decode(header_part))
    claims = json.loads(b64url_decode(payload_part))
    assert header["alg"] == "RS256", header
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(jwk["e"]), "big"), int.from_bytes(b64url_decode(jwk["n"]), "big")
    ).public_key()
    public.verify(
        b64url_decode(signature_part),
        f"{header_part}.{payload_part}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert claims["aud"] == conn["resource"], claims
    assert claims["appid"] == conn["client_id"], claims
    assert claims["tid"] == conn["tenant_id"], claims
    print(f"msal-python: token by client credentials, signature verified with JWKS kid {header['kid']}: ok")


if __name__ == "__main__":
    main()
