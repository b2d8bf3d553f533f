/**
 * AEAD protection of DSP0277 records over DOE (secured CMA/SPDM, PCIe r6.0 §6.31). Nonce = IV XOR
 * the 64-bit sequence number, little-endian in IV bytes 0–7; each key has its own per-direction
 * counter from 0.
 */
import {
  decodeAppData,
  decodeSecuredRecord,
  encodeAppData,
  encodeSecuredHeader,
  SECURED_MAC_BYTES,
} from "../../protocol/secured.js";
import { type AeadAlgo, aeadOpen, aeadSeal } from "../crypto/suites.js";

/** A record that does not authenticate under the given key, IV and sequence number. */
export class AuthError extends Error {
  override readonly name = "AuthError";
}

export interface RecordKeys {
  aead: AeadAlgo;
  key: Uint8Array;
  iv: Uint8Array;
}

const SEQ_MAX = (1n << 64n) - 1n;

export function recordNonce(iv: Uint8Array, seq: number | bigint): Buffer {
  const s = BigInt(seq);
  if (s < 0n || s > SEQ_MAX) throw new RangeError(`sequence number ${s} is not a u64`);
  const nonce = Buffer.from(iv);
  const le = Buffer.alloc(8);
  le.writeBigUInt64LE(s, 0);
  for (let i = 0; i < 8; i++) nonce[i]! ^= le[i]!;
  return nonce;
}

/** The record for `message` (without DOE padding; the DOE layer adds it). */
export function encryptRecord(
  keys: RecordKeys,
  sessionId: number,
  seq: number | bigint,
  message: Uint8Array,
): Buffer {
  const plain = encodeAppData(message);
  const header = encodeSecuredHeader(sessionId, plain.length + SECURED_MAC_BYTES);
  const sealed = aeadSeal(keys.aead, keys.key, recordNonce(keys.iv, seq), header, plain);
  return Buffer.concat([header, sealed]);
}

/**
 * Decrypts a DOE type-2 payload. DecodeError when the record is malformed (before or after
 * decryption), AuthError when it does not authenticate. Look the session up with
 * decodeSecuredRecord(payload).sessionId first when the keys depend on it.
 */
export function decryptRecord(
  keys: RecordKeys,
  seq: number | bigint,
  payload: Uint8Array,
): { sessionId: number; message: Buffer } {
  const rec = decodeSecuredRecord(payload);
  const plain = aeadOpen(keys.aead, keys.key, recordNonce(keys.iv, seq), rec.header, rec.sealed);
  if (!plain) {
    throw new AuthError(
      `record of session 0x${rec.sessionId.toString(16)} fails authentication at seq ${seq}`,
    );
  }
  return { sessionId: rec.sessionId, message: decodeAppData(plain) };
}
