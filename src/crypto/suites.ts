/**
 * SPDM algorithm suites over node:crypto (DSP0274 NEGOTIATE_ALGORITHMS, §12 key schedule, 1.2 §15
 * signature generation): hashes, HMAC/HKDF, asymmetric signatures, ECDHE and AEAD, each looked up
 * by its SPDM name. `bit` is the algorithm's bit in the NEGOTIATE_ALGORITHMS/ALGORITHMS field it
 * belongs to.
 */
import {
  type CipherGCMTypes,
  constants,
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  verify,
  X509Certificate,
} from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";

// ---- hash, HMAC, HKDF (RFC 5869) -------------------------------------------------------------

export const HASH = {
  "SHA-256": { bit: 0x01, size: 32, node: "sha256" },
  "SHA-384": { bit: 0x02, size: 48, node: "sha384" },
  "SHA-512": { bit: 0x04, size: 64, node: "sha512" },
  "SHA3-256": { bit: 0x08, size: 32, node: "sha3-256" },
  "SHA3-384": { bit: 0x10, size: 48, node: "sha3-384" },
  "SHA3-512": { bit: 0x20, size: 64, node: "sha3-512" },
} as const;
export type HashAlgo = keyof typeof HASH;

export function hash(alg: HashAlgo, ...parts: Uint8Array[]): Buffer {
  const h = createHash(HASH[alg].node);
  for (const p of parts) h.update(p);
  return h.digest();
}

export function hmac(alg: HashAlgo, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(HASH[alg].node, key);
  for (const p of parts) h.update(p);
  return h.digest();
}

export function hkdfExtract(alg: HashAlgo, salt: Uint8Array, ikm: Uint8Array): Buffer {
  return hmac(alg, salt, ikm);
}

/** HKDF-Expand from a raw PRK; crypto.hkdfSync always runs Extract first, so it cannot do this. */
export function hkdfExpand(alg: HashAlgo, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const blocks: Buffer[] = [];
  let t: Buffer = Buffer.alloc(0);
  for (let i = 1, got = 0; got < length; i++, got += t.length) {
    if (i > 255) throw new RangeError(`HKDF-Expand cannot give ${length} bytes`);
    t = hmac(alg, prk, t, info, Uint8Array.of(i));
    blocks.push(t);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

// ---- signatures ------------------------------------------------------------------------------

interface AsymInfo {
  bit: number;
  kind: "rsassa" | "rsapss" | "ecdsa";
  sigSize: number;
  /** RSA modulus bits, or the node curve name for ECDSA. */
  size: number | string;
}

export const ASYM = {
  "RSASSA-2048": { bit: 0x001, kind: "rsassa", sigSize: 256, size: 2048 },
  "RSAPSS-2048": { bit: 0x002, kind: "rsapss", sigSize: 256, size: 2048 },
  "RSASSA-3072": { bit: 0x004, kind: "rsassa", sigSize: 384, size: 3072 },
  "RSAPSS-3072": { bit: 0x008, kind: "rsapss", sigSize: 384, size: 3072 },
  "ECDSA-P256": { bit: 0x010, kind: "ecdsa", sigSize: 64, size: "prime256v1" },
  "RSASSA-4096": { bit: 0x020, kind: "rsassa", sigSize: 512, size: 4096 },
  "RSAPSS-4096": { bit: 0x040, kind: "rsapss", sigSize: 512, size: 4096 },
  "ECDSA-P384": { bit: 0x080, kind: "ecdsa", sigSize: 96, size: "secp384r1" },
  "ECDSA-P521": { bit: 0x100, kind: "ecdsa", sigSize: 132, size: "secp521r1" },
} as const satisfies Record<string, AsymInfo>;
export type AsymAlgo = keyof typeof ASYM;

/** Whether `key` (public or private) is of the type and size `alg` names. */
export function keyFits(alg: AsymAlgo, key: KeyObject): boolean {
  const a: AsymInfo = ASYM[alg];
  const d = key.asymmetricKeyDetails;
  if (a.kind === "ecdsa") return key.asymmetricKeyType === "ec" && d?.namedCurve === a.size;
  const types = a.kind === "rsapss" ? ["rsa", "rsa-pss"] : ["rsa"];
  return types.includes(key.asymmetricKeyType ?? "") && d?.modulusLength === a.size;
}

// SPDM ECDSA signatures are raw r||s (not DER); libspdm 1e16c60f's RSA-PSS uses salt length = hash length.
function signOptions(alg: AsymAlgo, h: HashAlgo, key: KeyObject) {
  const kind = ASYM[alg].kind;
  if (kind === "ecdsa") return { key, dsaEncoding: "ieee-p1363" as const };
  if (kind === "rsapss") return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: HASH[h].size };
  return { key, padding: constants.RSA_PKCS1_PADDING };
}

/** Signs `data`, which the algorithm hashes with `h` first (SPDM never signs a bare digest here). */
export function asymSign(alg: AsymAlgo, h: HashAlgo, key: KeyObject, data: Uint8Array): Buffer {
  if (key.type !== "private" || !keyFits(alg, key)) throw new TypeError(`key does not fit ${alg}`);
  return sign(HASH[h].node, data, signOptions(alg, h, key));
}

/** False for a wrong signature, a wrong-sized one, or a key that is not of `alg`'s type. */
export function asymVerify(
  alg: AsymAlgo,
  h: HashAlgo,
  key: KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (signature.length !== ASYM[alg].sigSize || !keyFits(alg, key)) return false;
  return verify(HASH[h].node, data, signOptions(alg, h, key), signature);
}

// ---- key import ------------------------------------------------------------------------------

const isPem = (data: string | Uint8Array) =>
  typeof data === "string" || Buffer.from(data.subarray(0, 11)).toString("latin1") === "-----BEGIN ";

function firstThatParses<T>(attempts: (() => T)[], what: string): T {
  for (const attempt of attempts) {
    try {
      return attempt();
    } catch {
      // try the next encoding
    }
  }
  throw new TypeError(`not a ${what} in any supported encoding`);
}

/** A private key from PEM (any header node knows) or DER (PKCS#8, SEC1 or PKCS#1). */
export function importPrivateKey(data: string | Uint8Array): KeyObject {
  if (isPem(data)) return createPrivateKey({ key: Buffer.from(data), format: "pem" });
  const key = Buffer.from(data);
  return firstThatParses(
    (["pkcs8", "sec1", "pkcs1"] as const).map((type) => () => createPrivateKey({ key, format: "der", type })),
    "private key",
  );
}

/** A public key from PEM or DER: SubjectPublicKeyInfo, PKCS#1 RSA key, or an X.509 certificate. */
export function importPublicKey(data: string | Uint8Array): KeyObject {
  const key = Buffer.from(data);
  const pem = isPem(data);
  return firstThatParses(
    [
      () => createPublicKey(pem ? { key, format: "pem" } : { key, format: "der", type: "spki" }),
      () => new X509Certificate(key).publicKey,
      () => createPublicKey({ key, format: "der", type: "pkcs1" }),
    ],
    "public key",
  );
}

// ---- ECDHE -----------------------------------------------------------------------------------

export const DHE = {
  secp256r1: { bit: 0x08, curve: "prime256v1", exchangeSize: 64 },
  secp384r1: { bit: 0x10, curve: "secp384r1", exchangeSize: 96 },
  secp521r1: { bit: 0x20, curve: "secp521r1", exchangeSize: 132 },
} as const;
export type DheAlgo = keyof typeof DHE;

export interface DheKeyPair {
  /** Our ExchangeData: X||Y, each big-endian at the curve size, without the 0x04 point prefix. */
  readonly exchangeData: Buffer;
  /** The X coordinate of the shared point (32/48/66 bytes). DecodeError if the peer's point is bad. */
  sharedSecret(peerExchangeData: Uint8Array): Buffer;
}

/** A fresh ephemeral key pair, or the one for a given private scalar (for tests). */
export function dheKeyPair(alg: DheAlgo, privateKey?: Uint8Array): DheKeyPair {
  const { curve, exchangeSize } = DHE[alg];
  const ecdh = createECDH(curve);
  if (privateKey) ecdh.setPrivateKey(privateKey);
  else ecdh.generateKeys();
  return {
    exchangeData: ecdh.getPublicKey().subarray(1),
    sharedSecret(peer) {
      if (peer.length !== exchangeSize) {
        throw new DecodeError("ExchangeData", 0, `${peer.length} bytes, ${alg} needs ${exchangeSize}`);
      }
      try {
        return ecdh.computeSecret(Buffer.concat([Uint8Array.of(4), peer]));
      } catch {
        throw new DecodeError("ExchangeData", 0, `not a point on ${alg}`);
      }
    },
  };
}

// ---- AEAD ------------------------------------------------------------------------------------

export const AEAD = {
  "AES-128-GCM": { bit: 0x1, keySize: 16, node: "aes-128-gcm" },
  "AES-256-GCM": { bit: 0x2, keySize: 32, node: "aes-256-gcm" },
  "CHACHA20-POLY1305": { bit: 0x4, keySize: 32, node: "chacha20-poly1305" },
} as const;
export type AeadAlgo = keyof typeof AEAD;
export const AEAD_IV_SIZE = 12;
export const AEAD_TAG_SIZE = 16;

// All three expose the same setAAD/authTag API; node's typings only split them by name.
const aeadMode = (alg: AeadAlgo) => AEAD[alg].node as CipherGCMTypes;
const tagOptions = { authTagLength: AEAD_TAG_SIZE };

/** Returns ciphertext || 16-byte tag. */
export function aeadSeal(
  alg: AeadAlgo,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Buffer {
  const c = createCipheriv(aeadMode(alg), key, nonce, tagOptions);
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** Opens ciphertext || tag; undefined when authentication fails. */
export function aeadOpen(
  alg: AeadAlgo,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
): Buffer | undefined {
  if (sealed.length < AEAD_TAG_SIZE) return undefined;
  const cut = sealed.length - AEAD_TAG_SIZE;
  const d = createDecipheriv(aeadMode(alg), key, nonce, tagOptions);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(cut));
  const out = d.update(sealed.subarray(0, cut));
  try {
    return Buffer.concat([out, d.final()]);
  } catch {
    return undefined;
  }
}
