/**
 * Certificate chain and private key files: reading DMTF's samples and our own, writing what
 * `doe-emu certs generate` produces. A chain file is PEM (several CERTIFICATE blocks), DER
 * certificates concatenated (DMTF's bundle_*.certchain.der), or an SPDM certificate chain blob
 * (DSP0274 certificate chain format: Length, reserved, RootHash, certificates); always root first.
 */
import { type KeyObject, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { HASH, type HashAlgo, hash, importPrivateKey, importPublicKey, publicKeyDer } from "./suites.js";
import {
  CertChainError,
  checkChainSignatures,
  derHeader,
  describeKey,
  parseCertificates,
} from "./verify-chain.js";

/** A file that cannot be read or does not hold what it should. `path` names it, `reason` says why. */
export class CertFileError extends Error {
  override readonly name = "CertFileError";
  constructor(
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${reason}`, options);
  }
}

function readFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why: Record<string, string> = {
      ENOENT: "no such file",
      EISDIR: "is a directory, not a file",
      EACCES: "permission denied",
    };
    throw new CertFileError(path, `cannot read: ${why[err.code ?? ""] ?? err.message}`, { cause: e });
  }
}

// ---- PEM ------------------------------------------------------------------------------------------

const isPemText = (data: Uint8Array) =>
  Buffer.from(data.subarray(0, 4096)).toString("latin1").includes("-----BEGIN ");

interface PemBlock {
  label: string;
  der: Buffer;
}

function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const begin = /-----BEGIN ([A-Z0-9 ]+)-----/g;
  for (let m = begin.exec(text); m; m = begin.exec(text)) {
    const label = m[1]!;
    const endMarker = `-----END ${label}-----`;
    const end = text.indexOf(endMarker, m.index);
    if (end < 0)
      throw new CertChainError(`PEM block ${blocks.length + 1} (${label}) has no "${endMarker}" line`);
    const body = text.slice(m.index + m[0].length, end);
    // RFC 7468 permits headers only in legacy encrypted blocks; anything but base64 is an error.
    if (/[^A-Za-z0-9+/=\s]/.test(body)) {
      throw new CertChainError(`PEM block ${blocks.length + 1} (${label}) is not valid base64`);
    }
    blocks.push({ label, der: Buffer.from(body.replace(/\s+/g, ""), "base64") });
    begin.lastIndex = end + endMarker.length;
  }
  return blocks;
}

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// ---- DER ------------------------------------------------------------------------------------------

/** Splits concatenated DER certificates by each outer SEQUENCE's length. */
export function splitDerCertificates(buf: Uint8Array, baseOffset = 0): Buffer[] {
  const data = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; ) {
    const i = out.length;
    const h = derHeader(data, off);
    if (!h) {
      throw new CertChainError(
        `certificate #${i} at byte ${baseOffset + off} is truncated: its DER header needs more than the ${data.length - off} bytes left`,
        i,
      );
    }
    if (h.tag !== 0x30) {
      throw new CertChainError(
        `certificate #${i} at byte ${baseOffset + off} is not a DER SEQUENCE (tag 0x${h.tag.toString(16).padStart(2, "0")})`,
        i,
      );
    }
    const total = h.header + h.length;
    if (off + total > data.length) {
      throw new CertChainError(
        `certificate #${i} at byte ${baseOffset + off} is truncated: its DER says ${total} bytes, ${data.length - off} are left`,
        i,
      );
    }
    out.push(Buffer.from(data.subarray(off, off + total)));
    off += total;
  }
  if (out.length === 0) throw new CertChainError("holds no certificate");
  return out;
}

/** The certificates of an SPDM chain blob, if `buf` is one (Length matches, a RootHash size fits). */
function spdmChainBlob(buf: Buffer): Buffer[] | undefined {
  if (buf.length < 4 + 32 + 2 || buf[0] === 0x30) return undefined;
  const length16 = buf.readUInt16LE(0) === buf.length && buf.readUInt16LE(2) === 0;
  const length32 = buf.readUInt32LE(0) === buf.length;
  if (!length16 && !length32) return undefined;
  for (const size of [32, 48, 64]) {
    if (buf[4 + size] !== 0x30) continue;
    let certs: Buffer[];
    try {
      certs = splitDerCertificates(buf.subarray(4 + size), 4 + size);
    } catch {
      continue;
    }
    const rootHash = buf.subarray(4, 4 + size);
    const algs = (Object.keys(HASH) as HashAlgo[]).filter((a) => HASH[a].size === size);
    if (algs.some((a) => hash(a, certs[0]!).equals(rootHash))) return certs;
    throw new CertChainError(
      `is an SPDM certificate chain whose RootHash is not the hash of its root certificate`,
    );
  }
  throw new CertChainError(
    `starts like an SPDM certificate chain (Length matches) but holds no certificates after a RootHash`,
  );
}

export interface ParseChainOptions {
  /** Check that each certificate is signed by the previous one (default true). */
  checkChain?: boolean;
}

/** The DER certificates, root first, of PEM text, concatenated DER, or an SPDM chain blob. CertChainError if bad. */
export function parseCertChainData(data: Uint8Array, opts: ParseChainOptions = {}): Buffer[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length === 0) throw new CertChainError("is empty");
  let certsDer: Buffer[];
  if (isPemText(buf)) {
    const blocks = pemBlocks(buf.toString("latin1"));
    const certBlocks = blocks.filter((b) => b.label === "CERTIFICATE" || b.label === "X509 CERTIFICATE");
    if (certBlocks.length === 0) {
      const found = blocks.map((b) => b.label).join(", ");
      throw new CertChainError(`holds no PEM CERTIFICATE block${found ? ` (found: ${found})` : ""}`);
    }
    certsDer = certBlocks.map((b, i) => {
      const h = derHeader(b.der, 0);
      if (h?.tag !== 0x30 || h.header + h.length !== b.der.length) {
        throw new CertChainError(
          `PEM CERTIFICATE block ${i + 1} does not hold exactly one DER certificate`,
          i,
        );
      }
      return b.der;
    });
  } else {
    certsDer = spdmChainBlob(buf) ?? splitDerCertificates(buf);
  }
  if (opts.checkChain ?? true) checkChainSignatures(certsDer);
  else parseCertificates(certsDer);
  return certsDer;
}

/** Reads a chain file (PEM, concatenated DER or SPDM chain blob), root first. CertFileError naming the file. */
export function loadCertChainFile(path: string, opts: ParseChainOptions = {}): Buffer[] {
  const data = readFile(path);
  try {
    return parseCertChainData(data, opts);
  } catch (e) {
    if (e instanceof CertChainError) throw new CertFileError(path, e.message, { cause: e });
    throw e;
  }
}

/** Reads a private key: PEM, or DER PKCS#8 / SEC1 / PKCS#1. CertFileError naming the file. */
export function loadPrivateKeyFile(path: string): KeyObject {
  const data = readFile(path);
  if (data.length === 0) throw new CertFileError(path, "is empty");
  if (isPemText(data)) {
    const text = data.toString("latin1");
    if (text.includes("-----BEGIN ENCRYPTED PRIVATE KEY-----") || /Proc-Type:\s*4,ENCRYPTED/.test(text)) {
      throw new CertFileError(path, "holds an encrypted private key; give an unencrypted one");
    }
    const labels = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1]);
    if (!labels.some((l) => l?.endsWith("PRIVATE KEY"))) {
      throw new CertFileError(
        path,
        `holds no PEM PRIVATE KEY block (found: ${labels.join(", ") || "nothing"})`,
      );
    }
  }
  try {
    return importPrivateKey(data);
  } catch (e) {
    throw new CertFileError(path, "is not a private key (PEM, or DER PKCS#8, SEC1 or PKCS#1)", { cause: e });
  }
}

/** Reads a public key: PEM, or DER SubjectPublicKeyInfo / PKCS#1 (spdm-emu's `*.key.pub.der`). CertFileError naming the file. */
export function loadPublicKeyFile(path: string): KeyObject {
  const data = readFile(path);
  try {
    return importPublicKey(data);
  } catch (e) {
    throw new CertFileError(path, "is not a public key (PEM, or DER SubjectPublicKeyInfo or PKCS#1)", {
      cause: e,
    });
  }
}

/** Throws CertChainError unless `privateKey` is the private half of the leaf certificate's key. */
export function checkKeyMatchesLeaf(privateKey: KeyObject, leaf: Uint8Array | X509Certificate): void {
  let cert: X509Certificate;
  try {
    cert = leaf instanceof X509Certificate ? leaf : new X509Certificate(leaf);
  } catch (e) {
    throw new CertChainError(`the leaf is not a DER X.509 certificate (${(e as Error).message})`);
  }
  if (!publicKeyDer(privateKey).equals(publicKeyDer(cert.publicKey))) {
    throw new CertChainError(
      `the private key (${describeKey(privateKey)}) does not match the leaf certificate's public key ` +
        `(${describeKey(cert.publicKey)}, ${cert.subject.replace(/\n/g, ", ")})`,
    );
  }
}

export interface CertIdentity {
  /** DER certificates, root first. */
  certsDer: Buffer[];
  /** The leaf's private key. */
  privateKey: KeyObject;
}

/** A chain file and its leaf's key file, checked to belong together. CertFileError naming the bad file. */
export function loadChainAndKey(chainPath: string, keyPath: string): CertIdentity {
  const certsDer = loadCertChainFile(chainPath);
  const privateKey = loadPrivateKeyFile(keyPath);
  try {
    checkKeyMatchesLeaf(privateKey, certsDer.at(-1)!);
  } catch (e) {
    if (e instanceof CertChainError)
      throw new CertFileError(keyPath, `${e.message} in ${chainPath}`, { cause: e });
    throw e;
  }
  return { certsDer, privateKey };
}

export interface WrittenChainFiles {
  /** `<name>.certchain.der`: the certificates' DER concatenated, root first (DMTF's bundle format). */
  certchainDer: string;
  /** `<name>.certchain.pem`: the same as PEM CERTIFICATE blocks. */
  certchainPem: string;
  /** `<name>.key.pem`: the leaf's private key, unencrypted PKCS#8 PEM (mode 0600). */
  keyPem: string;
  /** `<name>.root.der` / `.root.pem`: the root certificate, the trust anchor a requester provisions. */
  rootDer: string;
  rootPem: string;
}

/** Writes a chain and its leaf key into `dir` (created if missing) as the five files above. */
export function writeChainFiles(dir: string, name: string, identity: CertIdentity): WrittenChainFiles {
  if (!name || basename(name) !== name || name === "." || name === "..") {
    throw new RangeError(`file name stem must be a plain name, got ${JSON.stringify(name)}`);
  }
  const root = identity.certsDer[0];
  if (!root) throw new RangeError("a certificate chain needs at least one certificate");
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new CertFileError(dir, `cannot create directory: ${(e as Error).message}`, { cause: e });
  }
  const files: WrittenChainFiles = {
    certchainDer: join(dir, `${name}.certchain.der`),
    certchainPem: join(dir, `${name}.certchain.pem`),
    keyPem: join(dir, `${name}.key.pem`),
    rootDer: join(dir, `${name}.root.der`),
    rootPem: join(dir, `${name}.root.pem`),
  };
  const write = (path: string, data: string | Uint8Array, mode = 0o644) => {
    try {
      writeFileSync(path, data, { mode });
    } catch (e) {
      throw new CertFileError(path, `cannot write: ${(e as Error).message}`, { cause: e });
    }
  };
  write(files.certchainDer, Buffer.concat(identity.certsDer));
  write(files.certchainPem, identity.certsDer.map((d) => toPem("CERTIFICATE", d)).join(""));
  write(files.keyPem, identity.privateKey.export({ type: "pkcs8", format: "pem" }), 0o600);
  write(files.rootDer, root);
  write(files.rootPem, toPem("CERTIFICATE", root));
  return files;
}
