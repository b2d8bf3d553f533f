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
  createDiffieHellman,
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
import {
  AeadCipherSuite,
  BaseAsymAlgo,
  BaseHashAlgo,
  DHE_EXCHANGE_SIZE,
  DheNamedGroup,
  HASH_SIZE,
  SIGNATURE_SIZE,
} from "../../protocol/spdm/codes.js";
import { FFDHE_GENERATOR, FFDHE_PRIME } from "./ffdhe.js";

// ---- hash, HMAC, HKDF (RFC 5869) -------------------------------------------------------------

/** An algorithm's bit in its SPDM field and its size from the codec's table: one source for both. */
function coded<N extends string>(
  codes: Readonly<Record<N, number>>,
  name: N,
  sizes: Readonly<Record<number, number>>,
) {
  const bit: number = codes[name];
  const size = sizes[bit];
  if (size === undefined) throw new Error(`no size for ${name}`);
  return { bit, size };
}

const hashSuite = (name: keyof typeof BaseHashAlgo, node: string) => ({
  ...coded(BaseHashAlgo, name, HASH_SIZE),
  node,
});

export const HASH = {
  SHA_256: hashSuite("SHA_256", "sha256"),
  SHA_384: hashSuite("SHA_384", "sha384"),
  SHA_512: hashSuite("SHA_512", "sha512"),
  SHA3_256: hashSuite("SHA3_256", "sha3-256"),
  SHA3_384: hashSuite("SHA3_384", "sha3-384"),
  SHA3_512: hashSuite("SHA3_512", "sha3-512"),
};
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
  kind: "rsassa" | "rsapss" | "ecdsa" | "eddsa";
  sigSize: number;
  /** RSA modulus bits, or the node curve name for ECDSA, or the node key type for EdDSA. */
  size: number | string;
}

const asymSuite = (
  name: keyof typeof BaseAsymAlgo,
  kind: AsymInfo["kind"],
  size: number | string,
): AsymInfo => {
  const { bit, size: sigSize } = coded(BaseAsymAlgo, name, SIGNATURE_SIZE);
  return { bit, kind, sigSize, size };
};

export const ASYM = {
  RSASSA_2048: asymSuite("RSASSA_2048", "rsassa", 2048),
  RSAPSS_2048: asymSuite("RSAPSS_2048", "rsapss", 2048),
  RSASSA_3072: asymSuite("RSASSA_3072", "rsassa", 3072),
  RSAPSS_3072: asymSuite("RSAPSS_3072", "rsapss", 3072),
  ECDSA_P256: asymSuite("ECDSA_P256", "ecdsa", "prime256v1"),
  RSASSA_4096: asymSuite("RSASSA_4096", "rsassa", 4096),
  RSAPSS_4096: asymSuite("RSAPSS_4096", "rsapss", 4096),
  ECDSA_P384: asymSuite("ECDSA_P384", "ecdsa", "secp384r1"),
  ECDSA_P521: asymSuite("ECDSA_P521", "ecdsa", "secp521r1"),
  EDDSA_25519: asymSuite("EDDSA_25519", "eddsa", "ed25519"),
  EDDSA_448: asymSuite("EDDSA_448", "eddsa", "ed448"),
};
export type AsymAlgo = keyof typeof ASYM;

/** Whether `key` (public or private) is of the type and size `alg` names. */
export function keyFits(alg: AsymAlgo, key: KeyObject): boolean {
  const a: AsymInfo = ASYM[alg];
  const d = key.asymmetricKeyDetails;
  if (a.kind === "ecdsa") return key.asymmetricKeyType === "ec" && d?.namedCurve === a.size;
  if (a.kind === "eddsa") return key.asymmetricKeyType === a.size;
  const types = a.kind === "rsapss" ? ["rsa", "rsa-pss"] : ["rsa"];
  return types.includes(key.asymmetricKeyType ?? "") && d?.modulusLength === a.size;
}

// SPDM ECDSA signatures are raw r||s (not DER); libspdm 1e16c60f's RSA-PSS uses salt length = hash length.
function signOptions(alg: AsymAlgo, h: HashAlgo, key: KeyObject) {
  const kind = ASYM[alg].kind;
  if (kind === "ecdsa") return { key, dsaEncoding: "ieee-p1363" as const };
  if (kind === "eddsa") return { key };
  if (kind === "rsapss") return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: HASH[h].size };
  return { key, padding: constants.RSA_PKCS1_PADDING };
}

/** Node's digest argument: none for EdDSA, which signs the message itself. */
const digestFor = (alg: AsymAlgo, h: HashAlgo) => (ASYM[alg].kind === "eddsa" ? null : HASH[h].node);

/**
 * Signs `data`, which RSA and ECDSA hash with `h` first (SPDM never signs a bare digest here) and
 * EdDSA (pure Ed25519/Ed448) signs as it is. libspdm 1e16c60f gives Ed448 the SPDM signing context
 * string as its EdDSA context from 1.2 on; node 20's sign has no Ed448 context, so our Ed448
 * signatures at 1.2+ carry none (they verify between our roles only).
 */
export function asymSign(alg: AsymAlgo, h: HashAlgo, key: KeyObject, data: Uint8Array): Buffer {
  if (key.type !== "private" || !keyFits(alg, key)) throw new TypeError(`key does not fit ${alg}`);
  return sign(digestFor(alg, h), data, signOptions(alg, h, key));
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
  return verify(digestFor(alg, h), data, signOptions(alg, h, key), signature);
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

/** The DER SubjectPublicKeyInfo of a public key, or of a private key's public half. */
export function publicKeyDer(key: KeyObject): Buffer {
  return (key.type === "public" ? key : createPublicKey(key)).export({ type: "spki", format: "der" });
}

// ---- DHE: ECDHE and FFDHE ----------------------------------------------------------------------

/** `group`: the node curve name (ECDHE), or the RFC 7919 prime's bits (FFDHE). */
const dheSuite = (name: keyof typeof DheNamedGroup, group: string | keyof typeof FFDHE_PRIME) => {
  const { bit, size: exchangeSize } = coded(DheNamedGroup, name, DHE_EXCHANGE_SIZE);
  return { bit, group, exchangeSize };
};

export const DHE = {
  FFDHE_2048: dheSuite("FFDHE_2048", 2048),
  FFDHE_3072: dheSuite("FFDHE_3072", 3072),
  FFDHE_4096: dheSuite("FFDHE_4096", 4096),
  SECP_256_R1: dheSuite("SECP_256_R1", "prime256v1"),
  SECP_384_R1: dheSuite("SECP_384_R1", "secp384r1"),
  SECP_521_R1: dheSuite("SECP_521_R1", "secp521r1"),
};
export type DheAlgo = keyof typeof DHE;

export interface DheKeyPair {
  /**
   * Our ExchangeData. ECDHE: X||Y, each big-endian at the curve size, without the 0x04 point
   * prefix. FFDHE: Y = g^x mod p, big-endian, left-padded to the prime's size.
   */
  readonly exchangeData: Buffer;
  /**
   * ECDHE: the X coordinate of the shared point (32/48/66 bytes). FFDHE: the shared value,
   * left-padded to the prime's size (as libspdm). DecodeError if the peer's value is bad.
   */
  sharedSecret(peerExchangeData: Uint8Array): Buffer;
}

/** Big-endian `b` left-padded with zeros to `size` bytes. */
const leftPad = (b: Buffer, size: number) => Buffer.concat([Buffer.alloc(size - b.length), b]);

function checkSize(alg: DheAlgo, peer: Uint8Array): void {
  const { exchangeSize } = DHE[alg];
  if (peer.length !== exchangeSize)
    throw new DecodeError("ExchangeData", 0, `${peer.length} bytes, ${alg} needs ${exchangeSize}`);
}

/** An FFDHE key pair; the peer's Y must lie in 2..p-2 (RFC 7919 §5.1). */
function ffdheKeyPair(alg: DheAlgo, bits: keyof typeof FFDHE_PRIME, privateKey?: Uint8Array): DheKeyPair {
  const p = FFDHE_PRIME[bits];
  const dh = createDiffieHellman(p, FFDHE_GENERATOR);
  // With a private value set, generateKeys only computes g^x.
  if (privateKey) dh.setPrivateKey(Buffer.from(privateKey));
  dh.generateKeys();
  return {
    exchangeData: leftPad(dh.getPublicKey(), p.length),
    sharedSecret(peer) {
      checkSize(alg, peer);
      const y = BigInt(`0x${Buffer.from(peer).toString("hex")}`);
      const prime = BigInt(`0x${p.toString("hex")}`);
      if (y < 2n || y > prime - 2n) throw new DecodeError("ExchangeData", 0, `not a valid ${alg} value`);
      return leftPad(dh.computeSecret(Buffer.from(peer)), p.length);
    },
  };
}

/** A fresh ephemeral key pair, or the one for a given private value (for tests). */
export function dheKeyPair(alg: DheAlgo, privateKey?: Uint8Array): DheKeyPair {
  const { group } = DHE[alg];
  if (typeof group === "number") return ffdheKeyPair(alg, group, privateKey);
  const ecdh = createECDH(group);
  if (privateKey) ecdh.setPrivateKey(privateKey);
  else ecdh.generateKeys();
  return {
    exchangeData: ecdh.getPublicKey().subarray(1),
    sharedSecret(peer) {
      checkSize(alg, peer);
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
  AES_128_GCM: { bit: AeadCipherSuite.AES_128_GCM, keySize: 16, node: "aes-128-gcm" },
  AES_256_GCM: { bit: AeadCipherSuite.AES_256_GCM, keySize: 32, node: "aes-256-gcm" },
  CHACHA20_POLY1305: { bit: AeadCipherSuite.CHACHA20_POLY1305, keySize: 32, node: "chacha20-poly1305" },
};
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
