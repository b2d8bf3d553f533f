/**
 * Generates SPDM certificate chains (root CA → intermediate CA(s) → device leaf, root first) with
 * the profile libspdm's requester accepts (libspdm 1e16c60f
 * library/spdm_crypt_lib/libspdm_crypt_cert.c, mbedtls backend as spdm-emu builds it), modelled on
 * DMTF's sample certificates (libspdm 1e16c60f unit_test/sample_key/openssl.cnf, v3_inter /
 * v3_end):
 *
 * - every certificate X.509 v3, random positive serial, non-empty issuer and subject, validity
 *   2020-01-01 … 2099-12-31 (libspdm only requires 1970 ≤ notBefore and notAfter ≤ 9999; mbedtls
 *   checks that "now" lies inside it for every certificate of the chain);
 * - CAs: basicConstraints cA=TRUE (critical, no pathLen), keyUsage keyCertSign|cRLSign (critical) —
 *   mbedtls wants both on every issuer;
 * - leaf: basicConstraints present with cA=FALSE, DER `30 00` (mandatory from SPDM 1.3), keyUsage
 *   with digitalSignature (+ nonRepudiation, + keyEncipherment for RSA; RFC 5480 forbids it for EC),
 *   extendedKeyUsage serverAuth, clientAuth and the DMTF responder-auth (or requester-auth) OID,
 *   subjectAltName otherName id-DMTF-device-info, and the non-critical id-DMTF-SPDM-extension
 *   holding id-DMTF-hardware-identity (device certificate model, as DMTF's sample);
 * - subject/authority key identifiers on all.
 *
 * Keys are all of the negotiated asym algorithm's type; EdDSA chains (Ed25519, Ed448) are signed
 * with EdDSA throughout (RFC 8410), and their leaves get the EC key usages. RSASSA and RSAPSS names both give plain
 * rsaEncryption keys and sha*WithRSAEncryption (PKCS#1 v1.5) certificate signatures, like DMTF's
 * samples: mbedtls cannot parse an id-RSASSA-PSS SubjectPublicKeyInfo, and libspdm only checks the
 * RSA modulus size. Certificate signatures use SHA-256/384/512 (the only hashes mbedtls' default
 * X.509 profile accepts): by default the one matching the key size, as DMTF does; a SHA3 `hash`
 * maps to the SHA-2 hash of the same size.
 */
import { createPrivateKey, type KeyObject, randomBytes, webcrypto } from "node:crypto";
import { ASYM, type AsymAlgo, type HashAlgo } from "./suites.js";
import { loadX509, type X509 } from "./x509.js";

// ---- OIDs and small DER pieces ----------------------------------------------------------------

export const OID = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  subjectAltName: "2.5.29.17",
  /** id-DMTF-device-info, the otherName type of the leaf's subjectAltName. */
  dmtfDeviceInfo: "1.3.6.1.4.1.412.274.1",
  dmtfHardwareIdentity: "1.3.6.1.4.1.412.274.2",
  dmtfEkuResponderAuth: "1.3.6.1.4.1.412.274.3",
  dmtfEkuRequesterAuth: "1.3.6.1.4.1.412.274.4",
  dmtfSpdmExtension: "1.3.6.1.4.1.412.274.6",
  /** A private extension (the 2.999 example arc) that only pads the leaf; requesters ignore it. */
  padding: "2.999.1",
} as const;

function derTlv(tag: number, ...body: Uint8Array[]): Buffer {
  const content = Buffer.concat(body);
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.of(n);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.of(tag), len, content]);
}

function derOid(oid: string): Buffer {
  const arcs = oid.split(".").map(Number);
  const out = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return derTlv(0x06, Buffer.from(out));
}

/** GeneralNames with one otherName { id-DMTF-device-info, [0] UTF8String } (DSP0274 "manufacturer:product:serial"). */
function deviceInfoSan(info: string): Buffer {
  return derTlv(
    0x30,
    derTlv(0xa0, derOid(OID.dmtfDeviceInfo), derTlv(0xa0, derTlv(0x0c, Buffer.from(info, "utf8")))),
  );
}

/** id-spdm-cert-oids ::= SEQUENCE OF SEQUENCE { id-DMTF-hardware-identity } */
function hardwareIdentityExtension(): Buffer {
  return derTlv(0x30, derTlv(0x30, derOid(OID.dmtfHardwareIdentity)));
}

// ---- key and signature parameters ---------------------------------------------------------------

type ShaHash = "SHA-256" | "SHA-384" | "SHA-512";

const WEB_CURVE: Record<string, string> = { prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" };

/** The hash certificates are signed with: `hash` (SHA3 → SHA-2 of its size) or the key's natural one. */
export function certSignatureHash(asym: AsymAlgo, hash?: HashAlgo): ShaHash {
  if (hash) return `SHA-${hash.replace(/^SHA3?_/, "")}` as ShaHash;
  const size = ASYM[asym].size;
  if (size === "prime256v1" || size === 2048 || size === "ed25519") return "SHA-256";
  if (size === "secp384r1" || size === 3072) return "SHA-384";
  return "SHA-512";
}

export function keyParams(
  asym: AsymAlgo,
  h: ShaHash,
): {
  keyAlg: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.Algorithm;
  signAlg: { name: string; hash?: ShaHash };
} {
  const { kind, size } = ASYM[asym];
  // EdDSA certificates are signed with the key's own algorithm (RFC 8410): no separate hash.
  if (kind === "eddsa") {
    const name = size === "ed25519" ? "Ed25519" : "Ed448";
    return { keyAlg: { name }, signAlg: { name } };
  }
  if (typeof size === "string") {
    return { keyAlg: { name: "ECDSA", namedCurve: WEB_CURVE[size]! }, signAlg: { name: "ECDSA", hash: h } };
  }
  const rsa = {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: size,
    publicExponent: Uint8Array.of(1, 0, 1),
    hash: h,
  };
  return { keyAlg: rsa, signAlg: { name: "RSASSA-PKCS1-v1_5", hash: h } };
}

/**
 * @peculiar/x509 2.2 names Ed448 certificate signatures only as WebCrypto's draft
 * `{ name: "EdDSA", namedCurve: "Ed448" }`, which node's WebCrypto does not sign with (it wants
 * `Ed448`), and it takes the signing key's own algorithm over the one given. So an Ed448 issuer key
 * goes in wrapped, with the draft name, and the generator gets a WebCrypto whose sign unwraps it.
 */
interface WrappedEd448Key {
  algorithm: { name: "EdDSA"; namedCurve: "Ed448" };
  key: webcrypto.CryptoKey;
}
const isWrapped = (k: unknown): k is WrappedEd448Key =>
  typeof k === "object" && k !== null && "key" in k && (k as WrappedEd448Key).algorithm?.name === "EdDSA";
const ed448Crypto = {
  getRandomValues: <T extends ArrayBufferView>(a: T) => webcrypto.getRandomValues(a as never) as T,
  subtle: new Proxy(webcrypto.subtle, {
    get(target, prop) {
      if (prop === "sign") {
        return (alg: webcrypto.Algorithm, key: unknown, data: Uint8Array) =>
          isWrapped(key)
            ? target.sign({ name: "Ed448" }, key.key, data)
            : target.sign(alg, key as never, data);
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? v.bind(target) : v;
    },
  }),
};
const signingKeyFor = (asym: AsymAlgo, key: webcrypto.CryptoKey) =>
  asym === "EDDSA_448"
    ? ({ algorithm: { name: "EdDSA", namedCurve: "Ed448" }, key } as unknown as webcrypto.CryptoKey)
    : key;

/** A random positive serial number (16 bytes, leading byte 0x01–0x7F), as hex. */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString("hex");
}

// ---- the chain ------------------------------------------------------------------------------------

export interface CertChainOptions {
  asym: AsymAlgo;
  /** Hash the certificates are signed with; default by key size (P-256/RSA 2048 → SHA-256, …). */
  hash?: HashAlgo;
  /** Prefix of every subject's CN; default `doe-emu <asym>`. */
  commonName?: string;
  /** Intermediate CAs between root and leaf; default 1. */
  intermediates?: number;
  /** Which DMTF EKU OID the leaf carries; default "responder". */
  role?: "responder" | "requester";
  /** subjectAltName otherName id-DMTF-device-info value; false to leave the SAN out. */
  deviceInfo?: string | false;
  /** id-DMTF-SPDM-extension with id-DMTF-hardware-identity (device certificate model); default true. */
  hardwareIdentity?: boolean;
  /** Bytes of a non-critical padding extension in the leaf: a large chain (SPDM 1.4 LargeCertChain). */
  padding?: number;
  notBefore?: Date;
  notAfter?: Date;
}

export interface GeneratedCertChain {
  /** DER of each certificate, root first, leaf last. */
  certsDer: Buffer[];
  /** The leaf's private key. */
  privateKey: KeyObject;
  /** certsDer[0], the trust anchor a requester provisions. */
  rootDer: Buffer;
}

export const DEFAULT_NOT_BEFORE = new Date("2020-01-01T00:00:00Z");
export const DEFAULT_NOT_AFTER = new Date("2099-12-31T23:59:59Z");

const KU = {
  ca: 0x20 | 0x40, // keyCertSign | cRLSign
  leafEc: 0x01 | 0x02, // digitalSignature | nonRepudiation
  leafRsa: 0x01 | 0x02 | 0x04, // + keyEncipherment
};

export async function generateCertChain(opts: CertChainOptions): Promise<GeneratedCertChain> {
  const { asym } = opts;
  if (!(asym in ASYM)) throw new RangeError(`unknown asym algorithm ${String(asym)}`);
  const intermediates = opts.intermediates ?? 1;
  if (!Number.isInteger(intermediates) || intermediates < 0 || intermediates > 8) {
    throw new RangeError(`intermediates must be an integer 0..8, got ${intermediates}`);
  }
  const role = opts.role ?? "responder";
  const cn = opts.commonName ?? `doe-emu ${asym}`;
  const notBefore = opts.notBefore ?? DEFAULT_NOT_BEFORE;
  const notAfter = opts.notAfter ?? DEFAULT_NOT_AFTER;
  const h = certSignatureHash(asym, opts.hash);
  const { keyAlg, signAlg } = keyParams(asym, h);
  const subtle = webcrypto.subtle;
  const x509 = await loadX509();

  const count = intermediates + 2;
  const keys = await Promise.all(
    Array.from(
      { length: count },
      () => subtle.generateKey(keyAlg, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>,
    ),
  );
  const names = [
    `${cn} root CA`,
    ...Array.from(
      { length: intermediates },
      (_, i) => `${cn} intermediate CA${intermediates > 1 ? ` ${i + 1}` : ""}`,
    ),
    `${cn} ${role}`,
  ];

  const certs: InstanceType<X509["X509Certificate"]>[] = [];
  for (let i = 0; i < count; i++) {
    const isLeaf = i === count - 1;
    const own = keys[i]!;
    const issuerKeys = keys[i === 0 ? 0 : i - 1]!;
    const extensions: InstanceType<X509["Extension"]>[] = [
      new x509.BasicConstraintsExtension(!isLeaf, undefined, true),
      new x509.KeyUsagesExtension(
        isLeaf ? (ASYM[asym].kind.startsWith("rsa") ? KU.leafRsa : KU.leafEc) : KU.ca,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(own.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuerKeys.publicKey),
    ];
    if (isLeaf) {
      const spdmEku = role === "responder" ? OID.dmtfEkuResponderAuth : OID.dmtfEkuRequesterAuth;
      extensions.push(new x509.ExtendedKeyUsageExtension([OID.serverAuth, OID.clientAuth, spdmEku], true));
      const info = opts.deviceInfo ?? `doe-emu:${asym}:0001`;
      if (info !== false) extensions.push(new x509.Extension(OID.subjectAltName, false, deviceInfoSan(info)));
      if (opts.hardwareIdentity ?? true) {
        extensions.push(new x509.Extension(OID.dmtfSpdmExtension, false, hardwareIdentityExtension()));
      }
      if (opts.padding)
        extensions.push(new x509.Extension(OID.padding, false, derTlv(0x04, Buffer.alloc(opts.padding))));
    }
    const subject = new x509.Name([{ CN: [{ utf8String: names[i]! }] }]);
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serialNumber(),
        subject,
        issuer: i === 0 ? subject : certs[i - 1]!.subjectName,
        notBefore,
        notAfter,
        publicKey: own.publicKey,
        signingKey: signingKeyFor(asym, issuerKeys.privateKey),
        signingAlgorithm: signAlg,
        extensions,
      },
      ed448Crypto as unknown as Parameters<X509["X509CertificateGenerator"]["create"]>[1],
    );
    certs.push(cert);
  }

  const pkcs8 = await subtle.exportKey("pkcs8", keys[count - 1]!.privateKey);
  const certsDer = certs.map((c) => Buffer.from(c.rawData));
  return {
    certsDer,
    privateKey: createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }),
    rootDer: certsDer[0]!,
  };
}
