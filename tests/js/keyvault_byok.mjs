// The JavaScript SDK (@azure/keyvault-keys with @azure/identity, as tests/js/package-lock.json
// pins them) through a whole BYOK import against kv-emulator, unchanged but for where the
// vault's host resolves: ClientSecretCredential (MSAL Node, through the emulator's discovery
// document and token endpoint; no token written by hand), the SDK's challenge-resource
// verification left at its default (on), the real-looking vault URL.
//
// Usage:
//   node keyvault_byok.mjs kek CONNECTION.json NAME OUT_DIR
//     createRsaKey (an import-only RSA-HSM KEK), getKey; writes OUT_DIR/NAME.pem (the public
//     key) and OUT_DIR/NAME.kid (its versioned id) for byok-offline.
//   node keyvault_byok.mjs import CONNECTION.json PLAN.json
//     PLAN: {"packages": [{"name", "file", "sidecar", "kty", "crv"?, "ops"}], "page_size": N}.
//     importKey of each .byok (key_hsm), the vault's public key compared with the sidecar's
//     (the token's); listPropertiesOfKeys page by page; beginDeleteKey, getDeletedKey,
//     beginRecoverDeletedKey, getKey.
import crypto from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { assert, b64url, connection, requireInstalled, vaultAgent } from "./common.mjs";

const { ClientSecretCredential } = requireInstalled("@azure/identity");
const { KeyClient } = requireInstalled("@azure/keyvault-keys");

/** A KeyClient for `url` (default: the vault URL), with the SDK's default options. */
function client(conn, url = conn.vault_url) {
  const credential = new ClientSecretCredential(conn.tenant_id, conn.client_id, conn.client_secret, {
    authorityHost: conn.authority_host,
    disableInstanceDiscovery: true,
  });
  // No disableChallengeResourceVerification: the check stays on.
  return new KeyClient(url, credential, {
    agent: vaultAgent(conn.vault_url, conn.vault_address),
  });
}

/** The SPKI PEM of a KeyVaultKey's public JWK (RSA or EC). */
function publicPem(key) {
  const jwk = key.key;
  const members =
    jwk.n !== undefined
      ? { kty: "RSA", n: b64url(jwk.n), e: b64url(jwk.e) }
      : { kty: "EC", crv: jwk.crv, x: b64url(jwk.x), y: b64url(jwk.y) };
  return crypto.createPublicKey({ key: members, format: "jwk" }).export({ type: "spki", format: "pem" });
}

/** The same public key, whatever the PEM's line breaks. */
function samePem(a, b) {
  const der = (pem) => crypto.createPublicKey(pem).export({ type: "spki", format: "der" });
  return der(a).equals(der(b));
}

async function kek(conn, name, outDir) {
  const keys = client(conn);
  const created = await keys.createRsaKey(name, { hsm: true, keySize: 2048, keyOps: ["import"] });
  assert(created.keyType === "RSA-HSM", `kty ${created.keyType}`);
  assert(JSON.stringify(created.keyOperations) === '["import"]', `ops ${created.keyOperations}`);
  const got = await keys.getKey(name);
  assert(got.id === created.id, `getKey: ${got.id} is not ${created.id}`);
  // The check is really on: the same server reached by its address fails it.
  let refused = "";
  try {
    await client(conn, `https://${conn.vault_address}`).getKey(name);
  } catch (e) {
    refused = String(e.message);
  }
  assert(/challenge resource/i.test(refused), `reached by address: ${refused || "no error"}`);
  writeFileSync(path.join(outDir, `${name}.pem`), publicPem(got));
  writeFileSync(path.join(outDir, `${name}.kid`), got.id);
  console.log(`js-sdk: createRsaKey (import-only KEK) and getKey ${got.id}: ok`);
}

async function importAll(conn, planFile) {
  const plan = JSON.parse(readFileSync(planFile, "utf8"));
  const keys = client(conn);
  for (const p of plan.packages) {
    const jwk = { kty: p.kty, keyOps: p.ops, t: new Uint8Array(readFileSync(p.file)) };
    if (p.crv) {
      jwk.crv = p.crv;
    }
    const imported = await keys.importKey(p.name, jwk, { hardwareProtected: true });
    assert(imported.keyType === p.kty, `${p.name}: kty ${imported.keyType}`);
    const sidecar = JSON.parse(readFileSync(p.sidecar, "utf8"));
    if (sidecar.public_key_pem) {
      assert(samePem(publicPem(imported), sidecar.public_key_pem), `${p.name}: public keys differ`);
      console.log(`js-sdk: importKey ${p.name} (${p.kty}): the vault's public key is the token's`);
    } else {
      assert(imported.key.k === undefined, `${p.name}: the vault returned key material`);
      console.log(`js-sdk: importKey ${p.name} (${p.kty}): imported`);
    }
  }

  // Every key, page by page (the emulator's first page of a long list is empty, as the
  // service's sometimes are: the SDK must follow nextLink through it).
  const names = [];
  let pages = 0;
  for await (const page of keys.listPropertiesOfKeys().byPage({ maxPageSize: plan.page_size })) {
    pages += 1;
    for (const properties of page) {
      names.push(properties.name);
    }
  }
  for (const p of plan.packages) {
    assert(names.includes(p.name), `listPropertiesOfKeys lacks ${p.name}: ${names}`);
  }
  assert(pages > 1, `one page only (${pages})`);
  console.log(`js-sdk: listPropertiesOfKeys: ${names.length} keys on ${pages} pages: ok`);

  const name = plan.packages[0].name;
  const deleting = await keys.beginDeleteKey(name, { intervalInMs: 50 });
  const deleted = await deleting.pollUntilDone();
  const recoveryId = deleted.properties.recoveryId;
  assert(deleted.name === name && recoveryId.endsWith(`/deletedkeys/${name}`), `recoveryId ${recoveryId}`);
  assert((await keys.getDeletedKey(name)).name === name, "getDeletedKey");
  const recovering = await keys.beginRecoverDeletedKey(name, { intervalInMs: 50 });
  const recovered = await recovering.pollUntilDone();
  assert(recovered.name === name, `recovered ${recovered.name}`);
  assert((await keys.getKey(name)).id === recovered.id, "getKey after recovery");
  console.log(`js-sdk: beginDeleteKey, getDeletedKey, beginRecoverDeletedKey ${name}: ok`);
}

const [command, connFile, ...rest] = process.argv.slice(2);
const conn = connection(connFile);
if (command === "kek") {
  await kek(conn, rest[0], rest[1]);
} else if (command === "import") {
  await importAll(conn, rest[0]);
} else {
  throw new Error(`unknown command ${command}: use kek or import`);
}
