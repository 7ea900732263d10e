// MSAL Node (@azure/msal-node, the version @azure/identity locks) against kv-emulator's
// Entra ID side, as a confidential client: it reads the tenant's discovery document (which it
// refuses without authorization_endpoint, token_endpoint, issuer and jwks_uri), gets a token
// by client credentials, and the token's signature is then checked with the key the
// document's jwks_uri names by the token's `kid`.
//
// Usage: node msal_node.mjs STATE_DIR/connection.json
import crypto from "node:crypto";
import { assert, connection, requireInstalled } from "./common.mjs";

const msal = requireInstalled("@azure/msal-node");

async function getJson(url) {
  const response = await fetch(url);
  assert(response.ok, `GET ${url}: ${response.status}`);
  return response.json();
}

const conn = connection(process.argv[2]);
const authority = `${conn.authority_host}/${conn.tenant_id}`;
const app = new msal.ConfidentialClientApplication({
  auth: {
    clientId: conn.client_id,
    clientSecret: conn.client_secret,
    authority,
    // The emulator's host is not one of Microsoft's clouds: trust it without instance
    // discovery (which would ask login.microsoftonline.com).
    knownAuthorities: [new URL(conn.authority_host).host],
  },
});
const result = await app.acquireTokenByClientCredential({
  scopes: [`${conn.resource}/.default`],
});
assert(result && result.accessToken, "MSAL Node returned no token");

const discovery = await getJson(`${authority}/v2.0/.well-known/openid-configuration`);
const jwks = await getJson(discovery.jwks_uri);
const [headerPart, payloadPart, signaturePart] = result.accessToken.split(".");
const header = JSON.parse(Buffer.from(headerPart, "base64url"));
const claims = JSON.parse(Buffer.from(payloadPart, "base64url"));
assert(header.alg === "RS256", `alg ${header.alg}`);
const jwk = jwks.keys.find((k) => k.kid === header.kid);
assert(jwk, `the JWKS names no key ${header.kid}`);
const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
const verified = crypto.verify(
  "RSA-SHA256",
  Buffer.from(`${headerPart}.${payloadPart}`),
  key,
  Buffer.from(signaturePart, "base64url"),
);
assert(verified, "the token's signature does not verify with the JWKS key");
assert(claims.aud === conn.resource, `aud ${claims.aud}`);
assert(claims.tid === conn.tenant_id, `tid ${claims.tid}`);
assert(claims.appid === conn.client_id, `appid ${claims.appid}`);
console.log(`msal-node: token by client credentials, signature verified with JWKS kid ${header.kid}: ok`);
