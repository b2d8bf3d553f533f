/**
 * PKCS#10 certificate signing requests (GET_CSR) and the certificates a CA issues for them, built
 * with @peculiar/x509 on the keys of src/crypto/suites.ts: a CSR is signed by the key pair it names,
 * and an issued leaf carries the same SPDM leaf profile as generated chains (certgen.ts).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject, randomBytes, webcrypto } from "node:crypto";
import { certSignatureHash, keyParams, OID } from "./certgen.js";
import { ASYM, type AsymAlgo, publicKeyDer } from "./suites.js";
import { loadX509 } from "./x509.js";

/** WebCrypto key pair for `privateKey` (whose type `asym` names), for signing with @peculiar/x509. */
async function webKeys(asym: AsymAlgo, privateKey: KeyObject) {
  const { keyAlg, signAlg } = keyParams(asym, certSignatureHash(asym));
  const subtle = webcrypto.subtle;
  // PSS keys are imported as plain RSA: certificates and CSRs use PKCS#1 v1.5 signatures, as certgen.ts.
  const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
  const spki = publicKeyDer(privateKey);
  return {
    signAlg,
    privateKey: await subtle.importKey("pkcs8", pkcs8, keyAlg, false, ["sign"]),
    publicKey: await subtle.importKey("spki", spki, keyAlg, true, ["verify"]),
  };
}

/** A DER PKCS#10 request for `commonName`, signed by `privateKey`. */
export async function createCsr(asym: AsymAlgo, privateKey: KeyObject, commonName: string): Promise<Buffer> {
  const x509 = await loadX509();
  const keys = await webKeys(asym, privateKey);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([{ CN: [{ utf8String: commonName }] }]),
    keys: { privateKey: keys.privateKey, publicKey: keys.publicKey },
    signingAlgorithm: keys.signAlg,
  });
  return Buffer.from(csr.rawData);
}

/** A new private key of `asym`'s type (GET_CSR for a new key pair, SET_KEY_PAIR_INFO generate). */
export function generateKey(asym: AsymAlgo): KeyObject {
  const size = ASYM[asym].size;
  const pair =
    typeof size === "string"
      ? generateKeyPairSync("ec", { namedCurve: size })
      : generateKeyPairSync("rsa", { modulusLength: size });
  return pair.privateKey;
}

export interface IssuingCa {
  asym: AsymAlgo;
  /** DER of the CA's certificate. */
  certDer: Buffer;
  privateKey: KeyObject;
}

/**
 * A leaf for the CSR's subject and public key, issued by `ca` (after checking the CSR's own
 * signature): what a test CA or provisioning tool does with GET_CSR's answer.
 */
export async function issueFromCsr(ca: IssuingCa, csrDer: Uint8Array, leafAsym: AsymAlgo): Promise<Buffer> {
  const x509 = await loadX509();
  const csr = new x509.Pkcs10CertificateRequest(csrDer);
  if (!(await csr.verify())) throw new Error("the CSR's signature does not verify");
  const caCert = new x509.X509Certificate(ca.certDer);
  const caKeys = await webKeys(ca.asym, ca.privateKey);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  // digitalSignature | nonRepudiation (+ keyEncipherment for RSA), as certgen.ts's leaves.
  const ku = (ASYM[leafAsym].kind === "ecdsa" ? 0x03 : 0x07) as number as InstanceType<
    typeof x509.KeyUsagesExtension
  >["usages"];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString("hex"),
    subject: csr.subjectName,
    issuer: caCert.subjectName,
    notBefore: caCert.notBefore,
    notAfter: caCert.notAfter,
    publicKey: csr.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: caKeys.signAlg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(ku, true),
      new x509.ExtendedKeyUsageExtension([OID.serverAuth, OID.clientAuth, OID.dmtfEkuResponderAuth], true),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return Buffer.from(cert.rawData);
}

/** `der` private key bytes (PKCS#8) back into a key: what a state directory stores. */
export const privateKeyFromPkcs8 = (der: Uint8Array): KeyObject =>
  createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" });
