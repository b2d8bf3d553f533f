/**
 * The SPDM certificate chain (DSP0274 "Certificate chain format"): Length, RootHash (H bytes), then
 * DER X.509 certificates, root first, leaf last. Length is a u16 and a reserved u16 in 1.0–1.3;
 * 1.4 makes it a u32 (libspdm's spdm_cert_chain_t), the same bytes for a chain under 64 KiB, so
 * only a larger chain (1.4 LargeCertChain) reads it as 32 bits.
 */
import { X509Certificate } from "node:crypto";
import { DecodeError, requireBytes } from "../../protocol/errors.js";
import { HASH, type HashAlgo, hash } from "./suites.js";

export interface CertChain {
  rootHash: Buffer;
  /** The DER of each certificate, root first. */
  certsDer: Buffer[];
  certs: X509Certificate[];
}

/** Builds the chain from DER certificates (root first); RootHash is computed. */
export function encodeCertChain(h: HashAlgo, certsDer: readonly Uint8Array[]): Buffer {
  const root = certsDer[0];
  if (!root) throw new RangeError("a certificate chain needs at least one certificate");
  const body = Buffer.concat([hash(h, root), ...certsDer]);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length + 4, 0);
  return Buffer.concat([head, body]);
}

/** Length of the DER TLV at `off` (header included); short and long length forms. */
function derLength(buf: Buffer, off: number): number {
  requireBytes(buf, off, 2, "certificate");
  if (buf[off] !== 0x30) throw new DecodeError("certificate", off, "not a DER SEQUENCE");
  const first = buf[off + 1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n === 0 || n > 3)
    throw new DecodeError("certificate", off + 1, `unsupported DER length form 0x${first.toString(16)}`);
  requireBytes(buf, off + 2, n, "certificate");
  return 2 + n + buf.readUIntBE(off + 2, n);
}

/** Splits and parses a chain; checks Length and RootHash. DecodeError on any malformed part. */
export function decodeCertChain(h: HashAlgo, chain: Uint8Array): CertChain {
  const buf = Buffer.from(chain.buffer, chain.byteOffset, chain.byteLength);
  const hs = HASH[h].size;
  requireBytes(buf, 0, 4 + hs, "certChain");
  const length = buf.length > 0xffff ? buf.readUInt32LE(0) : buf.readUInt16LE(0);
  if (length !== buf.length)
    throw new DecodeError("certChain.length", 0, `says ${length}, chain is ${buf.length} bytes`);
  const rootHash = buf.subarray(4, 4 + hs);
  const certsDer: Buffer[] = [];
  const certs: X509Certificate[] = [];
  for (let off = 4 + hs; off < buf.length; ) {
    const len = derLength(buf, off);
    requireBytes(buf, off, len, "certificate");
    const der = buf.subarray(off, off + len);
    try {
      certs.push(new X509Certificate(der));
    } catch {
      throw new DecodeError("certificate", off, "is not an X.509 certificate");
    }
    certsDer.push(der);
    off += len;
  }
  if (certsDer.length === 0) throw new DecodeError("certChain", 4 + hs, "holds no certificate");
  if (!hash(h, certsDer[0]!).equals(rootHash))
    throw new DecodeError("certChain.rootHash", 4, "is not the root's hash");
  return { rootHash, certsDer, certs };
}

/** The leaf certificate's public key, which signs the slot's CHALLENGE_AUTH, MEASUREMENTS and KEY_EXCHANGE_RSP. */
export function leafPublicKey(h: HashAlgo, chain: Uint8Array) {
  return decodeCertChain(h, chain).certs.at(-1)!.publicKey;
}
