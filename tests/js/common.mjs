// What the scripts share: the npm packages (installed by `cargo xtask ci` from this
// directory's package-lock.json into the directory BYOK_NODE_MODULES names), the emulator's
// connection.json, and an https.Agent whose `lookup` resolves the vault's real-looking host
// (NAME.vault.azure.net) to the emulator's address, so no system file is edited and the SDK's
// challenge-resource verification stays on. The emulator's CA comes in through
// NODE_EXTRA_CA_CERTS, which the driving test sets.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import dns from "node:dns";
import https from "node:https";
import path from "node:path";

const modules = process.env.BYOK_NODE_MODULES;
if (!modules) {
  throw new Error(
    "BYOK_NODE_MODULES is not set: run `cargo xtask ci`, which installs tests/js/package-lock.json " +
      "into target/js/node_modules, or point it at a node_modules with those packages",
  );
}

/** `require` from the installed node_modules. */
export const requireInstalled = createRequire(path.join(modules, "byok-tests.cjs"));

/** connection.json of an emulator's state directory. */
export function connection(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

/** An https.Agent resolving `vaultUrl`'s host to `address` (IP:PORT); other hosts as usual. */
export function vaultAgent(vaultUrl, address) {
  const host = new URL(vaultUrl).hostname.toLowerCase();
  const ip = address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const family = ip.includes(":") ? 6 : 4;
  const lookup = (hostname, options, callback) => {
    if (typeof options === "function") {
      callback = options;
      options = {};
    }
    if (hostname.toLowerCase() !== host) {
      return dns.lookup(hostname, options, callback);
    }
    if (options && options.all) {
      return callback(null, [{ address: ip, family }]);
    }
    return callback(null, ip, family);
  };
  return new https.Agent({ lookup, keepAlive: true });
}

/** base64url without padding. */
export function b64url(bytes) {
  return Buffer.from(bytes).toString("base64url");
}

export function assert(condition, message) {
  if (!condition) {
    throw new Error(`assertion failed: ${message}`);
  }
}
