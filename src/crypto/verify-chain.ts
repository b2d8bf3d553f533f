/**
 * Certificate chain verification as an SPDM requester needs it, following the rules of libspdm
 * 1e16c60f (library/spdm_crypt_lib/libspdm_crypt_cert.c, mbedtls backend
 * os_stub/cryptlib_mbedtls/pk/x509.c):
 *
 * - every certificate is signed by its predecessor, whose subject is its issuer, and that
 *   predecessor is a CA (basicConstraints cA=TRUE, keyUsage keyCertSign when keyUsage is present);
 * - the first certificate equals the trust root, or is signed by it (libspdm
 *   libspdm_verify_peer_cert_chain_buffer_authority); without a trust root a self-issued first
 *   certificate must verify its own signature — the chain is then only consistent, not trusted;
 * - every certificate (and the trust root) is inside its validity period at `now`, is signed with
 *   SHA-256/384/512 (mbedtls' default X.509 profile);
 * - the leaf is X.509 v3, not a CA, has keyUsage with digitalSignature, does not carry only the
 *   other role's DMTF EKU OID, and (if `asym` is given) its key is of the negotiated algorithm.
 */
import { type KeyObject, X509Certificate } from "node:crypto";
import { ASYM, type AsymAlgo, keyFits } from "./suites.js";
import { loadX509, type X509 } from "./x509.js";

export class CertChainError extends Error {
  override readonly name = "CertChainError";
  /**
   * @param reason what is wrong, in words
   * @param index the certificate it concerns (0 = root, first in the chain), if one
   */
  constructor(
    readonly reason: string,
    readonly index?: number,
  ) {
    super(reason);
  }
}

// ---- small helpers shared with cert-files.ts ------------------------------------------------------

/** Header size and content length of the DER TLV at `off`, or undefined if the header is cut short. */
export function derHeader(
  buf: Uint8Array,
  off: number,
): { tag: number; header: number; length: number } | undefined {
  if (off + 2 > buf.length) return undefined;
  const tag = buf[off]!;
  const first = buf[off + 1]!;
  if (first < 0x80) return { tag, header: 2, length: first };
  const n = first & 0x7f;
  if (n === 0 || n > 4 || off + 2 + n > buf.length) return undefined;
  let length = 0;
  for (let i = 0; i < n; i++) length = length * 256 + buf[off + 2 + i]!;
  return { tag, header: 2 + n, length };
}

/** X.509 version (1, 2 or 3) read from the DER: TBSCertificate's optional [0] EXPLICIT INTEGER. */
export function certVersion(der: Uint8Array): number {
  const cert = derHeader(der, 0);
  const tbs = cert && derHeader(der, cert.header);
  if (!cert || !tbs) return 0;
  const off = cert.header + tbs.header;
  if (der[off] !== 0xa0) return 1;
  const explicit = derHeader(der, off);
  const int = explicit && derHeader(der, off + explicit.header);
  if (!explicit || !int || int.tag !== 0x02 || int.length !== 1) return 0;
  return der[off + explicit.header + int.header]! + 1;
}

/** "EC P-384", "RSA 3072", "RSA-PSS 2048", "Ed25519", … */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case "ec": {
      const curve = d?.namedCurve;
      const nist: Record<string, string> = { prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" };
      return `EC ${(curve && nist[curve]) ?? curve ?? "?"}`;
    }
    case "rsa":
      return `RSA ${d?.modulusLength ?? "?"}`;
    case "rsa-pss":
      return `RSA-PSS ${d?.modulusLength ?? "?"}`;
    case "ed25519":
      return "Ed25519";
    case "ed448":
      return "Ed448";
    default:
      return key.asymmetricKeyType ?? "unknown key";
  }
}

/** The key type the negotiated algorithm needs, in describeKey's words. */
export function describeAsymKey(asym: AsymAlgo): string {
  const a = ASYM[asym];
  if (typeof a.size === "number") return `RSA ${a.size}`;
  return `EC ${{ prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" }[a.size]}`;
}

const roleName = (i: number, n: number) =>
  i === n - 1 && n > 1 ? "leaf" : i === 0 ? "root" : "intermediate";

/** `certificate #i (role, subject)` for messages. */
export function certLabel(certs: readonly X509Certificate[], i: number): string {
  const c = certs[i];
  const subject = c ? c.subject.replace(/\n/g, ", ") : "?";
  return `certificate #${i} (${roleName(i, certs.length)}, ${subject})`;
}

/** Parses each DER certificate; CertChainError naming the first one that is not X.509. */
export function parseCertificates(certsDer: readonly Uint8Array[]): X509Certificate[] {
  return certsDer.map((der, i) => {
    try {
      return new X509Certificate(der);
    } catch (e) {
      throw new CertChainError(
        `certificate #${i} is not a DER X.509 certificate (${(e as Error).message})`,
        i,
      );
    }
  });
}

// ---- extension views ----------------------------------------------------------------------------------

interface CertInfo {
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints present, and its cA. */
  basicConstraints?: { ca: boolean };
  /** keyUsage bits (RFC 5280 order: digitalSignature = 1, nonRepudiation = 2, …, keyCertSign = 32). */
  keyUsage?: number;
  extKeyUsage?: string[];
  signatureHash?: string;
}

const KU_DIGITAL_SIGNATURE = 0x01;
const KU_KEY_CERT_SIGN = 0x20;
const EKU_RESPONDER_AUTH = "1.3.6.1.4.1.412.274.3";
const EKU_REQUESTER_AUTH = "1.3.6.1.4.1.412.274.4";
/** "EdDSA": Ed25519/Ed448 signatures hash nothing separately (libspdm's OpenSSL build takes them). */
const ALLOWED_SIGNATURE_HASHES = new Set(["SHA-256", "SHA-384", "SHA-512", "EdDSA"]);
const EDDSA_SIGNATURES = new Set(["Ed25519", "Ed448", "EdDSA"]);

function certInfo(x509: X509, der: Uint8Array, what: string, index?: number): CertInfo {
  let cert: InstanceType<X509["X509Certificate"]>;
  try {
    cert = new x509.X509Certificate(Uint8Array.from(der));
  } catch (e) {
    throw new CertChainError(`${what} cannot be parsed (${(e as Error).message})`, index);
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  let signatureHash: string | undefined;
  try {
    const alg = cert.signatureAlgorithm as { name?: string; hash?: { name?: string } | string };
    signatureHash = EDDSA_SIGNATURES.has(alg.name ?? "")
      ? "EdDSA"
      : typeof alg.hash === "string"
        ? alg.hash
        : alg.hash?.name;
  } catch {
    signatureHash = undefined;
  }
  return {
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    basicConstraints: bc ? { ca: bc.ca } : undefined,
    keyUsage: ku ? ku.usages : undefined,
    extKeyUsage: eku ? eku.usages.map(String) : undefined,
    signatureHash,
  };
}

// ---- the checks -------------------------------------------------------------------------------------

/** Whether `cert` is issued by `issuer`: names chain and the signature verifies with the issuer's key. */
function checkIssuedBy(
  cert: X509Certificate,
  issuer: X509Certificate,
  what: string,
  issuerWhat: string,
  index: number,
): void {
  if (cert.issuer !== issuer.subject) {
    throw new CertChainError(
      `${what}: issuer "${cert.issuer.replace(/\n/g, ", ")}" is not the subject of ${issuerWhat} ` +
        `("${issuer.subject.replace(/\n/g, ", ")}")`,
      index,
    );
  }
  let ok = false;
  try {
    ok = cert.verify(issuer.publicKey);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new CertChainError(
      `${what}: signature does not verify with the public key of ${issuerWhat}`,
      index,
    );
  }
}

/** OpenSSL's X509_check_issued on top of checkIssuedBy: authority key identifier, issuer key usage. */
function checkIssuedStrict(
  cert: X509Certificate,
  issuer: X509Certificate,
  what: string,
  issuerWhat: string,
  index: number,
): void {
  if (!cert.checkIssued(issuer)) {
    throw new CertChainError(
      `${what}: not issued by ${issuerWhat} (authority key identifier or issuer key usage do not match)`,
      index,
    );
  }
}

function checkIsCa(ext: CertInfo, what: string, index: number): void {
  if (!ext.basicConstraints?.ca) {
    throw new CertChainError(
      `${what} issues a certificate but is not a CA (basicConstraints cA is not TRUE)`,
      index,
    );
  }
  if (ext.keyUsage !== undefined && (ext.keyUsage & KU_KEY_CERT_SIGN) === 0) {
    throw new CertChainError(`${what} issues a certificate but its keyUsage lacks keyCertSign`, index);
  }
}

function checkValidity(info: CertInfo, what: string, now: Date, index?: number): void {
  if (now < info.notBefore) {
    throw new CertChainError(`${what} is not valid before ${info.notBefore.toISOString()}`, index);
  }
  if (now > info.notAfter) throw new CertChainError(`${what} expired ${info.notAfter.toISOString()}`, index);
}

/**
 * Each certificate is signed by the one before it (names chain, signature verifies); the first, if
 * self-issued, verifies its own signature. No CA, validity or leaf checks: see verifyCertChain.
 */
export function checkChainSignatures(certsDer: readonly Uint8Array[]): X509Certificate[] {
  const certs = parseCertificates(certsDer);
  const first = certs[0];
  if (!first) throw new CertChainError("the certificate chain is empty");
  if (first.issuer === first.subject) checkIssuedBy(first, first, certLabel(certs, 0), "itself", 0);
  for (let i = 1; i < certs.length; i++) {
    checkIssuedBy(certs[i]!, certs[i - 1]!, certLabel(certs, i), certLabel(certs, i - 1), i);
  }
  return certs;
}

export interface VerifyChainOptions {
  /** The negotiated asymmetric algorithm the leaf key must be of. */
  asym?: AsymAlgo;
  /** Time the validity periods are checked at; default now. */
  now?: Date;
  /** The peer's role; its leaf must not carry only the other role's DMTF EKU OID. Default "responder". */
  role?: "responder" | "requester";
}

/** Throws CertChainError saying exactly what is wrong with the chain (root first), or returns. */
export async function verifyCertChain(
  certsDer: readonly Uint8Array[],
  trustRootDer?: Uint8Array,
  opts: VerifyChainOptions = {},
): Promise<void> {
  const x509 = await loadX509();
  const now = opts.now ?? new Date();
  const role = opts.role ?? "responder";
  const certs = parseCertificates(certsDer);
  const n = certs.length;
  if (n === 0) throw new CertChainError("the certificate chain is empty");
  const exts = certsDer.map((der, i) => certInfo(x509, der, certLabel(certs, i), i));

  for (let i = 0; i < n; i++) {
    const what = certLabel(certs, i);
    checkValidity(exts[i]!, what, now, i);
    const h = exts[i]!.signatureHash;
    if (!h || !ALLOWED_SIGNATURE_HASHES.has(h)) {
      throw new CertChainError(
        `${what} is signed with ${h ?? "an unknown hash"}; libspdm accepts SHA-256/384/512`,
        i,
      );
    }
  }

  // the trust anchor
  const root = certs[0]!;
  const rootWhat = certLabel(certs, 0);
  if (trustRootDer) {
    let trust: X509Certificate;
    try {
      trust = new X509Certificate(trustRootDer);
    } catch (e) {
      throw new CertChainError(`the trust root is not a DER X.509 certificate (${(e as Error).message})`);
    }
    if (!Buffer.from(trustRootDer).equals(Buffer.from(certsDer[0]!))) {
      const trustWhat = `the trust root (${trust.subject.replace(/\n/g, ", ")})`;
      if (root.issuer === root.subject) {
        throw new CertChainError(
          `${rootWhat} is a self-signed root other than ${trustWhat}: fingerprints ` +
            `${root.fingerprint256} and ${trust.fingerprint256}`,
          0,
        );
      }
      const trustInfo = certInfo(x509, trustRootDer, trustWhat);
      checkValidity(trustInfo, trustWhat, now);
      checkIssuedBy(root, trust, rootWhat, trustWhat, 0);
      checkIsCa(trustInfo, trustWhat, 0);
      checkIssuedStrict(root, trust, rootWhat, trustWhat, 0);
    }
  }
  if (root.issuer === root.subject) checkIssuedBy(root, root, rootWhat, "itself", 0);

  // each link
  for (let i = 1; i < n; i++) {
    const [what, issuerWhat] = [certLabel(certs, i), certLabel(certs, i - 1)];
    checkIssuedBy(certs[i]!, certs[i - 1]!, what, issuerWhat, i);
    checkIsCa(exts[i - 1]!, issuerWhat, i - 1);
    checkIssuedStrict(certs[i]!, certs[i - 1]!, what, issuerWhat, i);
  }

  // the leaf (libspdm_x509_certificate_check)
  const li = n - 1;
  const leaf = certs[li]!;
  const leafExt = exts[li]!;
  const leafWhat = certLabel(certs, li);
  const version = certVersion(certsDer[li]!);
  if (version !== 3) throw new CertChainError(`${leafWhat} is X.509 v${version}; SPDM needs v3`, li);
  if (leafExt.basicConstraints?.ca) {
    throw new CertChainError(`${leafWhat} is a CA (basicConstraints cA=TRUE); an SPDM leaf must not be`, li);
  }
  if (leafExt.keyUsage === undefined || leafExt.keyUsage === 0) {
    throw new CertChainError(`${leafWhat} has no keyUsage; SPDM needs digitalSignature`, li);
  }
  if ((leafExt.keyUsage & KU_DIGITAL_SIGNATURE) === 0) {
    throw new CertChainError(`${leafWhat} keyUsage lacks digitalSignature`, li);
  }
  const eku = leafExt.extKeyUsage ?? [];
  const [mine, other] =
    role === "responder"
      ? [EKU_RESPONDER_AUTH, EKU_REQUESTER_AUTH]
      : [EKU_REQUESTER_AUTH, EKU_RESPONDER_AUTH];
  if (eku.includes(other) && !eku.includes(mine)) {
    throw new CertChainError(
      `${leafWhat} extendedKeyUsage names only the SPDM ${role === "responder" ? "requester" : "responder"}-auth ` +
        `OID ${other}, but it is the ${role}'s certificate`,
      li,
    );
  }
  if (opts.asym && !keyFits(opts.asym, leaf.publicKey)) {
    throw new CertChainError(
      `${leafWhat} key is ${describeKey(leaf.publicKey)}; ${opts.asym} needs ${describeAsymKey(opts.asym)}`,
      li,
    );
  }
}
