/**
 * Certificate chains: generation with the profile libspdm accepts (the extension bytes libspdm and
 * mbedtls look at), verification and its errors, chain/key files in PEM, DER and SPDM-blob form,
 * the `certs` CLI. With SPDM_EMU_BIN (spdm-emu's build/bin) DMTF's sample chains load and verify, and
 * spdm_responder_emu serves our generated chain to spdm_requester_emu (libspdm verifies it on both
 * sides). With `openssl` on PATH, `openssl verify -x509_strict` accepts our chains.
 */
import { spawnSync } from "node:child_process";
import { createPublicKey, type KeyObject, webcrypto, X509Certificate } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import yargs from "yargs";
import { certsCommand } from "../../src/cli/certs.js";
import { encodeCertChain } from "../../src/crypto/cert-chain.js";
import {
  CertFileError,
  checkKeyMatchesLeaf,
  loadCertChainFile,
  loadChainAndKey,
  loadPrivateKeyFile,
  parseCertChainData,
  toPem,
  writeChainFiles,
} from "../../src/crypto/cert-files.js";
import { type GeneratedCertChain, generateCertChain, OID } from "../../src/crypto/certgen.js";
import { ASYM, type AsymAlgo, asymSign, asymVerify, keyFits } from "../../src/crypto/suites.js";
import { CertChainError, certVersion, verifyCertChain } from "../../src/crypto/verify-chain.js";
import { loadX509 } from "../../src/crypto/x509.js";
import { startResponder, stopResponders } from "../../src/fixture/spdm-emu-responder.js";

const x509 = await loadX509();

const EMU_BIN = process.env.SPDM_EMU_BIN;
const HAS_OPENSSL = spawnSync("openssl", ["version"]).status === 0;

// Every algorithm but the 4096-bit RSA ones is generated up front; RSA 4096 once, in its own test.
const FAST: AsymAlgo[] = (Object.keys(ASYM) as AsymAlgo[]).filter((a) => ASYM[a].size !== 4096);
const chains = new Map<AsymAlgo, GeneratedCertChain>();
const chain = (a: AsymAlgo) => chains.get(a)!;

let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "doe-emu-certs-"));
  const made = await Promise.all(FAST.map((asym) => generateCertChain({ asym })));
  for (const [i, a] of FAST.entries()) chains.set(a, made[i]!);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const parsed = (der: Uint8Array) => new x509.X509Certificate(Uint8Array.from(der));
const hex = (b: ArrayBuffer | Uint8Array) =>
  Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString("hex");
const spki = (k: KeyObject) =>
  (k.type === "private" ? createPublicKey(k) : k).export({ type: "spki", format: "der" });

async function expectThrow(
  fn: () => unknown,
  type: new (...a: never[]) => Error,
  pattern: RegExp,
): Promise<Error> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${type.name} matching ${pattern}`).toBeInstanceOf(type);
  expect((caught as Error).message).toMatch(pattern);
  return caught as Error;
}

/** Checks everything node's own X.509 code says about a generated chain, and a sign/verify round trip. */
function checkWithNode(asym: AsymAlgo, c: GeneratedCertChain): void {
  const certs = c.certsDer.map((d) => new X509Certificate(d));
  expect(certs).toHaveLength(3);
  expect(c.rootDer.equals(c.certsDer[0]!)).toBe(true);
  expect(certs[0]!.verify(certs[0]!.publicKey)).toBe(true);
  expect(certs[0]!.checkIssued(certs[0]!)).toBe(true);
  for (let i = 1; i < certs.length; i++) {
    expect(certs[i]!.checkIssued(certs[i - 1]!)).toBe(true);
    expect(certs[i]!.verify(certs[i - 1]!.publicKey)).toBe(true);
  }
  expect(certs.map((x) => x.ca)).toEqual([true, true, false]);
  const leafKey = certs[2]!.publicKey;
  for (const x of certs) expect(keyFits(asym, x.publicKey)).toBe(true);
  expect(keyFits(asym, c.privateKey)).toBe(true);
  const h = ASYM[asym].kind === "ecdsa" ? "SHA_384" : "SHA_256";
  const data = Buffer.from(`transcript for ${asym}`);
  const sig = asymSign(asym, h, c.privateKey, data);
  expect(sig).toHaveLength(ASYM[asym].sigSize);
  expect(asymVerify(asym, h, leafKey, data, sig)).toBe(true);
  expect(asymVerify(asym, h, leafKey, Buffer.from("other data"), sig)).toBe(false);
}

describe("generateCertChain", () => {
  it.each(FAST)("%s: root → intermediate → leaf verifies (ours and node's), leaf key signs", async (asym) => {
    const c = chain(asym);
    await verifyCertChain(c.certsDer, c.rootDer, { asym });
    checkWithNode(asym, c);
  });

  it("RSASSA-4096 (once: slow key generation)", async () => {
    const c = await generateCertChain({ asym: "RSASSA_4096" });
    await verifyCertChain(c.certsDer, c.rootDer, { asym: "RSASSA_4096" });
    await verifyCertChain(c.certsDer, c.rootDer, { asym: "RSAPSS_4096" });
    checkWithNode("RSASSA_4096", c);
    expect(parsed(c.certsDer[2]!).signatureAlgorithm).toMatchObject({ hash: { name: "SHA-512" } });
  }, 120_000);

  it("follows --intermediates: 0 gives root → leaf, 2 gives four certificates", async () => {
    const [none, two] = await Promise.all([
      generateCertChain({ asym: "ECDSA_P256", intermediates: 0 }),
      generateCertChain({ asym: "ECDSA_P256", intermediates: 2, commonName: "Acme, Inc. = widget" }),
    ]);
    expect(none.certsDer).toHaveLength(2);
    expect(two.certsDer).toHaveLength(4);
    await verifyCertChain(none.certsDer, none.rootDer, { asym: "ECDSA_P256" });
    await verifyCertChain(two.certsDer, two.rootDer, { asym: "ECDSA_P256" });
    expect(new X509Certificate(two.certsDer[3]!).subject).toBe("CN=Acme\\, Inc. = widget responder");
    await expect(generateCertChain({ asym: "ECDSA_P256", intermediates: -1 })).rejects.toThrow(RangeError);
  });

  it("signs with the key size's SHA-2 by default, the given hash otherwise (SHA3 → SHA-2 of its size)", async () => {
    const hashOf = (c: GeneratedCertChain) =>
      c.certsDer.map((d) => (parsed(d).signatureAlgorithm as { hash: { name: string } }).hash.name);
    expect(hashOf(chain("ECDSA_P256"))).toEqual(["SHA-256", "SHA-256", "SHA-256"]);
    expect(hashOf(chain("ECDSA_P384"))).toEqual(["SHA-384", "SHA-384", "SHA-384"]);
    expect(hashOf(chain("ECDSA_P521"))).toEqual(["SHA-512", "SHA-512", "SHA-512"]);
    expect(hashOf(chain("RSAPSS_3072"))).toEqual(["SHA-384", "SHA-384", "SHA-384"]);
    const [sha3, sha512] = await Promise.all([
      generateCertChain({ asym: "ECDSA_P256", hash: "SHA3_256" }),
      generateCertChain({ asym: "ECDSA_P256", hash: "SHA_512" }),
    ]);
    expect(hashOf(sha3)).toEqual(["SHA-256", "SHA-256", "SHA-256"]);
    expect(hashOf(sha512)).toEqual(["SHA-512", "SHA-512", "SHA-512"]);
  });
});

/**
 * What libspdm 1e16c60f (library/spdm_crypt_lib/libspdm_crypt_cert.c) and its mbedtls backend
 * check, asserted on the bytes we produce.
 */
describe("the profile libspdm accepts", () => {
  const ext = (der: Uint8Array, oid: string) => parsed(der).getExtension(oid);

  it.each(["ECDSA_P384", "RSAPSS_2048"] as AsymAlgo[])(
    "%s: version, serials, names, validity",
    async (asym) => {
      for (const der of chain(asym).certsDer) {
        const c = parsed(der);
        expect(certVersion(der)).toBe(3); // libspdm_x509_common_certificate_check step 1: version field 2
        expect(c.serialNumber).toMatch(/^[0-7][0-9a-f]{31}$/); // positive, present
        expect(/^0+$/.test(c.serialNumber)).toBe(false);
        expect(c.subject).not.toBe("");
        expect(c.issuer).not.toBe("");
        // libspdm: 1970 <= notBefore, notAfter <= 9999; mbedtls: now inside.
        expect(c.notBefore.toISOString()).toBe("2020-01-01T00:00:00.000Z");
        expect(c.notAfter.toISOString()).toBe("2099-12-31T23:59:59.000Z");
        // mbedtls rejects a certificate with a critical extension it does not know.
        const critical = c.extensions.filter((e) => e.critical).map((e) => e.type);
        for (const t of critical) expect(["2.5.29.19", "2.5.29.15", "2.5.29.37"]).toContain(t);
      }
    },
  );

  it("CAs: basicConstraints cA=TRUE critical, keyUsage keyCertSign|cRLSign (mbedtls x509_crt_check_parent)", async () => {
    for (const der of chain("ECDSA_P384").certsDer.slice(0, 2)) {
      const bc = ext(der, "2.5.29.19")!;
      expect(bc.critical).toBe(true);
      expect(hex(bc.value)).toBe("30030101ff"); // libspdm BASIC_CONSTRAINTS_CA_TRUE, no pathLen
      const ku = parsed(der).getExtension(x509.KeyUsagesExtension)!;
      expect(ku.critical).toBe(true);
      expect(ku.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    }
  });

  it("leaf: basicConstraints exactly 30 00, keyUsage with digitalSignature, DMTF EKU, SAN, SPDM extension", async () => {
    const leafEc = chain("ECDSA_P384").certsDer[2]!;
    const leafRsa = chain("RSASSA_3072").certsDer[2]!;
    for (const leaf of [leafEc, leafRsa]) {
      const bc = ext(leaf, "2.5.29.19")!;
      expect(bc.critical).toBe(true);
      expect(hex(bc.value)).toBe("3000"); // libspdm BASIC_CONSTRAINTS_CA_FALSE (mandatory from SPDM 1.3)
      const eku = parsed(leaf).getExtension(x509.ExtendedKeyUsageExtension)!;
      expect(eku.usages).toEqual([OID.serverAuth, OID.clientAuth, OID.dmtfEkuResponderAuth]);
      expect(eku.usages).not.toContain(OID.dmtfEkuRequesterAuth);
      const san = ext(leaf, OID.subjectAltName)!;
      expect(san.critical).toBe(false);
      // GeneralNames { otherName [0] { OID id-DMTF-device-info, [0] EXPLICIT UTF8String } }, as DMTF's sample
      const info = leaf === leafEc ? "doe-emu:ECDSA_P384:0001" : "doe-emu:RSASSA_3072:0001";
      const n = info.length;
      const len = (x: number) => x.toString(16).padStart(2, "0");
      const oid = "060a2b06010401831c821201";
      expect(hex(san.value)).toBe(
        `30${len(n + 18)}a0${len(n + 16)}${oid}a0${len(n + 2)}0c${len(n)}${hex(Buffer.from(info))}`,
      );
      const spdm = ext(leaf, OID.dmtfSpdmExtension)!;
      expect(spdm.critical).toBe(false);
      // id-spdm-cert-oids: SEQUENCE { SEQUENCE { OID id-DMTF-hardware-identity } }, as DMTF's sample
      expect(hex(spdm.value)).toBe("300e300c060a2b06010401831c821202");
    }
    const kuEc = parsed(leafEc).getExtension(x509.KeyUsagesExtension)!;
    const kuRsa = parsed(leafRsa).getExtension(x509.KeyUsagesExtension)!;
    const F = x509.KeyUsageFlags;
    expect(kuEc.usages).toBe(F.digitalSignature | F.nonRepudiation); // RFC 5480: no keyEncipherment for EC
    expect(kuRsa.usages).toBe(F.digitalSignature | F.nonRepudiation | F.keyEncipherment); // as DMTF's v3_end
  });

  it("key identifiers: each AKI is the issuer's SKI", async () => {
    const certs = chain("ECDSA_P521").certsDer.map(parsed);
    const ski = certs.map((c) => c.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
    const aki = certs.map((c) => c.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId);
    expect(aki).toEqual([ski[0], ski[0], ski[1]]);
    expect(new Set(ski).size).toBe(3);
  });

  it("SubjectPublicKeyInfo is what libspdm_get_public_key_oid expects for the negotiated asym", async () => {
    // RSA (SSA and PSS alike): rsaEncryption key, modulus INTEGER header 02 82 01 01 (2048) / 01 81 (3072)
    for (const [asym, header] of [
      ["RSAPSS_2048", "02820101"],
      ["RSASSA_3072", "02820181"],
    ] as const) {
      const key = new X509Certificate(chain(asym).certsDer[2]!).publicKey;
      expect(key.asymmetricKeyType).toBe("rsa");
      const pkcs1 = key.export({ type: "pkcs1", format: "der" });
      expect(hex(pkcs1.subarray(4, 8))).toBe(header);
    }
    // EC: id-ecPublicKey with the curve's OID
    const curves = {
      ECDSA_P256: "prime256v1",
      ECDSA_P384: "secp384r1",
      ECDSA_P521: "secp521r1",
    } as const;
    for (const [asym, curve] of Object.entries(curves)) {
      const key = new X509Certificate(chain(asym as AsymAlgo).certsDer[2]!).publicKey;
      expect(key.asymmetricKeyDetails?.namedCurve).toBe(curve);
    }
  });

  it("role requester puts the requester-auth OID on the leaf", async () => {
    const c = await generateCertChain({ asym: "ECDSA_P256", role: "requester", deviceInfo: false });
    const leaf = parsed(c.certsDer[2]!);
    expect(leaf.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toContain(OID.dmtfEkuRequesterAuth);
    expect(leaf.getExtension(OID.subjectAltName)).toBeNull();
    await verifyCertChain(c.certsDer, c.rootDer, { role: "requester" });
    await expectThrow(
      () => verifyCertChain(c.certsDer, c.rootDer),
      CertChainError,
      /requester-auth OID .* responder's/,
    );
  });
});

describe("verifyCertChain errors", () => {
  const p256 = () => chain("ECDSA_P256");
  const other = () => chain("ECDSA_P384");

  it("a chain that does not chain: intermediate signed by another root", async () => {
    const b = await generateCertChain({ asym: "ECDSA_P256" }); // same subject names as p256()
    const mixed = [p256().certsDer[0]!, b.certsDer[1]!, b.certsDer[2]!];
    const e = await expectThrow(
      () => verifyCertChain(mixed, p256().rootDer),
      CertChainError,
      /certificate #1 \(intermediate, CN=doe-emu ECDSA_P256 intermediate CA\): signature does not verify with the public key of certificate #0 \(root/,
    );
    expect((e as CertChainError).index).toBe(1);
    const foreign = [p256().certsDer[0]!, other().certsDer[1]!, other().certsDer[2]!];
    await expectThrow(
      () => verifyCertChain(foreign),
      CertChainError,
      /certificate #1 .*issuer .* is not the subject of/,
    );
  });

  it("a wrong trust root", async () => {
    const c = p256();
    await expectThrow(
      () => verifyCertChain(c.certsDer, other().rootDer),
      CertChainError,
      /certificate #0 \(root, .*\) is a self-signed root other than the trust root .*fingerprints/,
    );
    // a chain starting at the intermediate is fine when the trust root signed it (libspdm's authority rule)
    await verifyCertChain(c.certsDer.slice(1), c.rootDer, { asym: "ECDSA_P256" });
    await expectThrow(
      () => verifyCertChain(c.certsDer.slice(1), other().rootDer),
      CertChainError,
      /certificate #0 \(root, .*intermediate CA\): issuer .* is not the subject of the trust root/,
    );
    await expectThrow(
      () => verifyCertChain(c.certsDer, Buffer.from("junk")),
      CertChainError,
      /trust root is not a DER/,
    );
  });

  it("validity periods", async () => {
    const c = p256();
    await expectThrow(
      () => verifyCertChain(c.certsDer, c.rootDer, { now: new Date("2100-01-01") }),
      CertChainError,
      /certificate #0 .* expired 2099-12-31T23:59:59.000Z/,
    );
    await expectThrow(
      () => verifyCertChain(c.certsDer, c.rootDer, { now: new Date("2019-06-01") }),
      CertChainError,
      /is not valid before 2020-01-01/,
    );
  });

  it("leaf key not of the negotiated algorithm", async () => {
    const c = p256();
    await expectThrow(
      () => verifyCertChain(c.certsDer, c.rootDer, { asym: "ECDSA_P384" }),
      CertChainError,
      /certificate #2 \(leaf, .*\) key is EC P-256; ECDSA_P384 needs EC P-384/,
    );
    await expectThrow(
      () => verifyCertChain(chain("RSASSA_2048").certsDer, undefined, { asym: "RSASSA_3072" }),
      CertChainError,
      /key is RSA 2048; RSASSA_3072 needs RSA 3072/,
    );
  });

  it("a CA as leaf, an empty chain, junk, a reversed chain, a SHA-1 signature", async () => {
    const c = p256();
    await expectThrow(() => verifyCertChain(c.certsDer.slice(0, 2)), CertChainError, /leaf.* is a CA/);
    await expectThrow(() => verifyCertChain([]), CertChainError, /empty/);
    await expectThrow(
      () => verifyCertChain([c.certsDer[0]!, Buffer.from("junk")]),
      CertChainError,
      /#1 is not a DER X.509/,
    );
    await expectThrow(
      () => verifyCertChain([...c.certsDer].reverse()),
      CertChainError,
      /certificate #1 .*issuer/,
    );
    const keys = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ]);
    const sha1 = await x509.X509CertificateGenerator.createSelfSigned({
      name: "CN=sha1",
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-1" },
      notBefore: new Date("2020-01-01"),
      notAfter: new Date("2099-01-01"),
    });
    await expectThrow(
      () => verifyCertChain([Buffer.from(sha1.rawData)]),
      CertChainError,
      /signed with SHA-1/,
    );
    // a certificate issued by the (non-CA) leaf
    const leafKey = await webcrypto.subtle.importKey(
      "pkcs8",
      c.privateKey.export({ type: "pkcs8", format: "der" }),
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["sign"],
    );
    const byLeaf = await x509.X509CertificateGenerator.create({
      subject: "CN=by leaf",
      issuer: parsed(c.certsDer[2]!).subjectName,
      publicKey: keys.publicKey,
      signingKey: leafKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      notBefore: new Date("2020-01-01"),
      notAfter: new Date("2099-01-01"),
    });
    await expectThrow(
      () => verifyCertChain([...c.certsDer, Buffer.from(byLeaf.rawData)], c.rootDer),
      CertChainError,
      /certificate #2 \(intermediate, CN=doe-emu ECDSA_P256 responder\) issues a certificate but is not a CA/,
    );
  });
});

describe("chain and key files", () => {
  it("writes the five files and reads them back (DER, PEM, root, PKCS#8 key)", async () => {
    const c = chain("ECDSA_P384");
    const files = writeChainFiles(join(tmp, "out", "nested"), "responder", c);
    expect(Object.values(files).map((f) => f.replace(/.*\//, ""))).toEqual([
      "responder.certchain.der",
      "responder.certchain.pem",
      "responder.key.pem",
      "responder.root.der",
      "responder.root.pem",
    ]);
    expect(readFileSync(files.certchainDer).equals(Buffer.concat(c.certsDer))).toBe(true);
    expect(loadCertChainFile(files.certchainDer)).toEqual(c.certsDer);
    expect(loadCertChainFile(files.certchainPem)).toEqual(c.certsDer);
    expect(readFileSync(files.certchainPem, "latin1").match(/BEGIN CERTIFICATE/g)).toHaveLength(3);
    expect(loadCertChainFile(files.rootDer)).toEqual([c.rootDer]);
    expect(loadCertChainFile(files.rootPem)).toEqual([c.rootDer]);
    expect(readFileSync(files.keyPem, "latin1")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(statSync(files.keyPem).mode & 0o777).toBe(0o600);
    const key = loadPrivateKeyFile(files.keyPem);
    expect(spki(key).equals(spki(c.privateKey))).toBe(true);
    checkKeyMatchesLeaf(key, c.certsDer[2]!);
    const id = loadChainAndKey(files.certchainPem, files.keyPem);
    expect(id.certsDer).toEqual(c.certsDer);
    expect(() => writeChainFiles(tmp, "../x", c)).toThrow(RangeError);
  });

  it("reads DER keys (PKCS#8, SEC1, PKCS#1) and PEM SEC1", async () => {
    const dir = join(tmp, "keys");
    mkdirSync(dir, { recursive: true });
    const ec = chain("ECDSA_P256").privateKey;
    const rsa = chain("RSASSA_2048").privateKey;
    const cases: [string, Buffer | string, KeyObject][] = [
      ["ec.p8.der", ec.export({ type: "pkcs8", format: "der" }), ec],
      ["ec.sec1.der", ec.export({ type: "sec1", format: "der" }), ec],
      ["ec.sec1.pem", ec.export({ type: "sec1", format: "pem" }), ec],
      ["rsa.pkcs1.der", rsa.export({ type: "pkcs1", format: "der" }), rsa],
      ["rsa.p8.pem", rsa.export({ type: "pkcs8", format: "pem" }), rsa],
    ];
    for (const [name, data, want] of cases) {
      writeFileSync(join(dir, name), data);
      expect(spki(loadPrivateKeyFile(join(dir, name))).equals(spki(want)), name).toBe(true);
    }
  });

  it("reads an SPDM certificate chain blob (Length, reserved, RootHash, certificates)", async () => {
    const c = chain("ECDSA_P384");
    const blob = encodeCertChain("SHA_384", c.certsDer);
    writeFileSync(join(tmp, "chain.spdm"), blob);
    expect(loadCertChainFile(join(tmp, "chain.spdm"))).toEqual(c.certsDer);
    expect(parseCertChainData(encodeCertChain("SHA_256", c.certsDer))).toEqual(c.certsDer);
    const bad = Buffer.from(blob);
    bad[4]! ^= 1;
    await expectThrow(() => parseCertChainData(bad), CertChainError, /RootHash is not the hash of its root/);
  });

  it("clear errors naming the file", async () => {
    const c = chain("ECDSA_P256");
    const put = (name: string, data: string | Uint8Array) => {
      const p = join(tmp, name);
      writeFileSync(p, data);
      return p;
    };
    const missing = join(tmp, "nope.der");
    const e = await expectThrow(
      () => loadCertChainFile(missing),
      CertFileError,
      /nope\.der: cannot read: no such file/,
    );
    expect((e as CertFileError).path).toBe(missing);
    await expectThrow(() => loadCertChainFile(tmp), CertFileError, /is a directory/);
    await expectThrow(() => loadCertChainFile(put("empty.der", "")), CertFileError, /empty\.der: is empty/);

    const all = Buffer.concat(c.certsDer);
    const truncated = put("truncated.der", all.subarray(0, all.length - 10));
    await expectThrow(
      () => loadCertChainFile(truncated),
      CertFileError,
      /truncated\.der: certificate #2 at byte \d+ is truncated: its DER says \d+ bytes, \d+ are left/,
    );
    await expectThrow(
      () => loadCertChainFile(put("text.der", "hello world")),
      CertFileError,
      /not a DER SEQUENCE/,
    );
    const badB64 = put("bad.pem", "-----BEGIN CERTIFICATE-----\nMII*&^\n-----END CERTIFICATE-----\n");
    await expectThrow(
      () => loadCertChainFile(badB64),
      CertFileError,
      /bad\.pem: PEM block 1 \(CERTIFICATE\) is not valid base64/,
    );
    const unterminated = put("unterminated.pem", toPem("CERTIFICATE", c.rootDer).replace(/-----END.*\n/, ""));
    await expectThrow(
      () => loadCertChainFile(unterminated),
      CertFileError,
      /has no "-----END CERTIFICATE-----" line/,
    );
    const keyOnly = put("keyonly.pem", c.privateKey.export({ type: "pkcs8", format: "pem" }));
    await expectThrow(
      () => loadCertChainFile(keyOnly),
      CertFileError,
      /no PEM CERTIFICATE block \(found: PRIVATE KEY\)/,
    );
    const notCert = put("notcert.pem", toPem("CERTIFICATE", Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])));
    await expectThrow(
      () => loadCertChainFile(notCert),
      CertFileError,
      /certificate #0 is not a DER X\.509 certificate/,
    );

    // a chain that does not chain
    const broken = put(
      "broken.pem",
      [c.certsDer[0]!, chain("ECDSA_P384").certsDer[1]!].map((d) => toPem("CERTIFICATE", d)).join(""),
    );
    await expectThrow(
      () => loadCertChainFile(broken),
      CertFileError,
      /broken\.pem: certificate #1 .*is not the subject of certificate #0/,
    );
    expect(loadCertChainFile(broken, { checkChain: false })).toHaveLength(2);

    // keys
    await expectThrow(
      () => loadPrivateKeyFile(put("cert-as-key.pem", toPem("CERTIFICATE", c.rootDer))),
      CertFileError,
      /no PEM PRIVATE KEY block \(found: CERTIFICATE\)/,
    );
    await expectThrow(
      () => loadPrivateKeyFile(put("junk.key", Buffer.from([1, 2, 3]))),
      CertFileError,
      /junk\.key: is not a private key/,
    );
    const enc = put(
      "enc.pem",
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    await expectThrow(() => loadPrivateKeyFile(enc), CertFileError, /encrypted private key/);
  });

  it("a private key that does not match the leaf", async () => {
    const c = chain("ECDSA_P256");
    await expectThrow(
      () => checkKeyMatchesLeaf(chain("ECDSA_P384").privateKey, c.certsDer[2]!),
      CertChainError,
      /private key \(EC P-384\) does not match the leaf certificate's public key \(EC P-256, CN=doe-emu ECDSA_P256 responder\)/,
    );
    const d = join(tmp, "mismatch");
    const files = writeChainFiles(d, "a", c);
    const wrong = writeChainFiles(d, "b", chain("RSASSA_2048"));
    const e = await expectThrow(
      () => loadChainAndKey(files.certchainDer, wrong.keyPem),
      CertFileError,
      /b\.key\.pem: the private key \(RSA 2048\) does not match .* in .*a\.certchain\.der/,
    );
    expect((e as CertFileError).path).toBe(wrong.keyPem);
  });
});

describe("certs CLI", () => {
  async function cli(args: string[]): Promise<string> {
    const lines: string[] = [];
    const spy = vi
      .spyOn(console, "log")
      .mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    try {
      await yargs(args)
        .command(certsCommand)
        .strict()
        .fail((msg, err) => {
          throw err ?? new Error(msg);
        })
        .parseAsync();
    } finally {
      spy.mockRestore();
    }
    return lines.join("\n");
  }

  it("generate writes the files and prints the root fingerprint; show prints each certificate", async () => {
    const out = join(tmp, "cli");
    const gen = await cli([
      "certs",
      "generate",
      "--asym",
      "ECDSA_P256",
      "--hash",
      "SHA_384",
      "--out",
      out,
      "--name",
      "dev",
    ]);
    expect(gen).toMatch(/wrote .*dev\.certchain\.der/);
    expect(gen).toMatch(/wrote .*dev\.key\.pem/);
    const root = new X509Certificate(readFileSync(join(out, "dev.root.der")));
    expect(gen).toContain(`root SHA-256 fingerprint ${root.fingerprint256}`);
    expect(
      (parsed(readFileSync(join(out, "dev.root.der"))).signatureAlgorithm as { hash: { name: string } }).hash
        .name,
    ).toBe("SHA-384");

    const shown = await cli([
      "certs",
      "show",
      join(out, "dev.certchain.pem"),
      "--root",
      join(out, "dev.root.pem"),
      "--asym",
      "ecdsa-p256",
    ]);
    expect(shown).toMatch(/3 certificates, root first/);
    expect(shown).toMatch(/certificate #0 \(root, CN=doe-emu ECDSA_P256 root CA\)/);
    expect(shown).toMatch(
      /certificate #2 \(leaf, CN=doe-emu ECDSA_P256 responder\)\n {2}subject {4}CN=doe-emu ECDSA_P256 responder\n {2}issuer {5}CN=doe-emu ECDSA_P256 intermediate CA/,
    );
    expect(shown).toMatch(/key {8}EC P-256 \(CA\)/);
    expect(shown).toMatch(/signature {2}ECDSA with SHA-384/);
    expect(shown).toMatch(/validity {3}2020-01-01T00:00:00.000Z .. 2099-12-31T23:59:59.000Z/);
    expect(shown).toMatch(/verify: OK against/);
    await expect(cli(["certs", "generate", "--asym", "DSA_1024", "--out", out])).rejects.toThrow(
      /Invalid values/,
    );
  });
});

describe.skipIf(!HAS_OPENSSL)("openssl verify", () => {
  it.each(["ECDSA_P384", "RSASSA_2048", "RSAPSS_3072", "ECDSA_P521"] as AsymAlgo[])(
    "%s chain passes -x509_strict",
    async (asym) => {
      const dir = join(tmp, `openssl-${asym}`);
      mkdirSync(dir, { recursive: true });
      const [root, inter, leaf] = chain(asym).certsDer.map((d, i) => {
        const p = join(dir, `${["root", "inter", "leaf"][i]}.pem`);
        writeFileSync(p, toPem("CERTIFICATE", d));
        return p;
      });
      const r = spawnSync(
        "openssl",
        ["verify", "-x509_strict", "-CAfile", root!, "-untrusted", inter!, leaf!],
        {
          encoding: "utf8",
        },
      );
      expect(`${r.stdout}${r.stderr}`.trim()).toBe(`${leaf}: OK`);
      const wrongRoot = join(dir, "other-root.pem");
      writeFileSync(wrongRoot, toPem("CERTIFICATE", chain("ECDSA_P256").rootDer));
      expect(
        spawnSync("openssl", ["verify", "-CAfile", wrongRoot, "-untrusted", inter!, leaf!]).status,
      ).not.toBe(0);
    },
  );
});

// ---- DMTF's samples and libspdm itself (SPDM_EMU_BIN = spdm-emu's build/bin) --------------------------

const SAMPLES: [string, AsymAlgo][] = [
  ["ecp256", "ECDSA_P256"],
  ["ecp384", "ECDSA_P384"],
  ["ecp521", "ECDSA_P521"],
  ["rsa2048", "RSASSA_2048"],
  ["rsa3072", "RSAPSS_3072"],
  ["rsa4096", "RSASSA_4096"],
];

describe.skipIf(!EMU_BIN)("DMTF sample certificates (SPDM_EMU_BIN)", () => {
  it.each(SAMPLES)(
    "%s: bundle_responder.certchain.der loads, verifies against ca.cert.der, key matches",
    async (dir, asym) => {
      const d = join(EMU_BIN!, dir);
      const certs = loadCertChainFile(join(d, "bundle_responder.certchain.der"));
      const parts = ["ca.cert.der", "inter.cert.der", "end_responder.cert.der"].map((f) =>
        readFileSync(join(d, f)),
      );
      expect(certs).toEqual(parts);
      await verifyCertChain(certs, readFileSync(join(d, "ca.cert.der")), { asym });
      // PEM twins of the DER files (ca.cert etc.) read the same
      expect(loadCertChainFile(join(d, "ca.cert"))).toEqual([parts[0]]);
      const key = loadPrivateKeyFile(join(d, "end_responder.key"));
      checkKeyMatchesLeaf(key, certs[2]!);
      checkKeyMatchesLeaf(loadPrivateKeyFile(join(d, "end_responder.key.der")), certs[2]!);
      await expectThrow(() => checkKeyMatchesLeaf(key, certs[1]!), CertChainError, /does not match/);
      // DMTF's requester leaf must not pass as a responder's if it carries only the requester OID
      const reqOnly = join(d, "end_responder_with_spdm_req_eku.cert.der");
      if (existsSync(reqOnly)) {
        await expectThrow(
          () => verifyCertChain([parts[0]!, parts[1]!, readFileSync(reqOnly)], parts[0]),
          CertChainError,
          /requester-auth OID/,
        );
      }
    },
  );

  let emuDir: string;
  beforeAll(() => {
    emuDir = join(tmp, "emu");
    cpSync(EMU_BIN!, emuDir, { recursive: true });
  });

  /** Installs a chain as spdm-emu's sample for `dir`, runs responder + requester, returns the requester's exit. */
  async function emuRun(dir: string, flag: string, hashFlag: string, c: GeneratedCertChain) {
    const d = join(emuDir, dir);
    writeFileSync(join(d, "bundle_responder.certchain.der"), Buffer.concat(c.certsDer));
    writeFileSync(join(d, "ca.cert.der"), c.rootDer);
    writeFileSync(join(d, "end_responder.key"), c.privateKey.export({ type: "pkcs8", format: "pem" }));
    const suite = ["--trans", "PCI_DOE", "--asym", flag, "--hash", hashFlag];
    const responder = await startResponder([], suite, emuDir);
    try {
      const req = spawnSync(
        join(emuDir, "spdm_requester_emu"),
        [
          ...suite,
          "--port",
          String(responder.port),
          "--exe_conn",
          "DIGEST,CERT,CHAL",
          "--exe_session",
          "KEY_EX",
          "--mut_auth",
          "NO",
        ],
        { cwd: emuDir, encoding: "utf8", timeout: 20_000 },
      );
      return { status: req.status, stderr: req.stderr };
    } finally {
      responder.child.kill();
      await stopResponders();
    }
  }

  it.each([
    ["ecp384", "ECDSA_P384", "ECDSA_P384", "SHA_384"],
    ["ecp256", "ECDSA_P256", "ECDSA_P256", "SHA_256"],
    ["rsa2048", "RSAPSS_2048", "RSAPSS_2048", "SHA_256"],
  ] as [string, AsymAlgo, string, string][])(
    "libspdm (spdm_responder_emu → spdm_requester_emu) accepts our %s chain: GET_CERTIFICATE + CHALLENGE + KEY_EXCHANGE",
    async (dir, asym, flag, hashFlag) => {
      const r = await emuRun(dir, flag, hashFlag, chain(asym));
      expect(r.stderr).not.toMatch(/ERROR/);
      expect(r.status).toBe(0);
    },
    30_000,
  );

  it("libspdm rejects a responder leaf that carries only the requester-auth EKU (our verifier agrees)", async () => {
    const c = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
    await expectThrow(() => verifyCertChain(c.certsDer, c.rootDer), CertChainError, /requester-auth OID/);
    const r = await emuRun("ecp384", "ECDSA_P384", "SHA_384", c);
    expect(r.status).not.toBe(0);
  }, 30_000);
});
