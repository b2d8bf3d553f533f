/** A certificate authority for provisioning tests: it signs a device's CSR. */
import { KeyObject, webcrypto } from "node:crypto";
import { loadX509 } from "../../src/crypto/x509.js";

/** A self-signed P-384 CA. */
export async function testCa() {
  const x509 = await loadX509();
  const alg = { name: "ECDSA", namedCurve: "P-384" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=doe-emu test provisioning CA",
    notBefore: new Date("2020-01-01T00:00:00Z"),
    notAfter: new Date("2099-12-31T23:59:59Z"),
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-384" },
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    asym: "ECDSA_P384" as const,
    certDer: Buffer.from(cert.rawData),
    privateKey: KeyObject.from(keys.privateKey),
  };
}
