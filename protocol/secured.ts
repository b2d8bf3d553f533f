/**
 * DSP0277 secured-message record inside a DOE type-2 payload (PROTOCOL-FACTS 5.1), encrypt+MAC form:
 *   u32 SessionID | u16 Length | Length bytes: encrypted (u16 ApplicationDataLength | message) | 16-byte MAC
 * then 0–3 bytes of DOE padding. Over DOE the sequence-number field is 0 bytes and libspdm adds no
 * random padding. The 6 header bytes are the AEAD's additional data. Pure codec, no crypto.
 */
import { DecodeError, requireBytes } from "./errors.js";

export const SECURED_HEADER_BYTES = 6;
export const SECURED_MAC_BYTES = 16;
export const APP_LENGTH_BYTES = 2;

export interface SecuredRecord {
  sessionId: number;
  /** SessionID || Length exactly as received: the AEAD additional data. */
  header: Buffer;
  /** The Length bytes after the header: ciphertext || MAC. */
  sealed: Buffer;
  /** DOE zero padding that followed the record. */
  padding: number;
}

/** The 6-byte record header, also the AEAD additional data. */
export function encodeSecuredHeader(sessionId: number, length: number): Buffer {
  if (length > 0xffff) throw new RangeError(`secured record Length ${length} exceeds 0xFFFF`);
  const out = Buffer.alloc(SECURED_HEADER_BYTES);
  out.writeUInt32LE(sessionId >>> 0, 0);
  out.writeUInt16LE(length, 4);
  return out;
}

/** Splits a DOE type-2 payload. The record must fill it except for at most 3 bytes of DW padding. */
export function decodeSecuredRecord(payload: Uint8Array): SecuredRecord {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  requireBytes(buf, 0, SECURED_HEADER_BYTES, "secured.header");
  const length = buf.readUInt16LE(4);
  if (length < SECURED_MAC_BYTES)
    throw new DecodeError("secured.length", 4, `${length} is shorter than the MAC`);
  requireBytes(buf, SECURED_HEADER_BYTES, length, "secured.length");
  const end = SECURED_HEADER_BYTES + length;
  const padding = buf.length - end;
  if (padding > 3)
    throw new DecodeError("secured.length", 4, `record ends ${padding} bytes before the payload`);
  return {
    sessionId: buf.readUInt32LE(0),
    header: buf.subarray(0, SECURED_HEADER_BYTES),
    sealed: buf.subarray(SECURED_HEADER_BYTES, end),
    padding,
  };
}

/** The plaintext that gets encrypted: u16 ApplicationDataLength || message. */
export function encodeAppData(message: Uint8Array): Buffer {
  if (message.length > 0xffff)
    throw new RangeError(`application data of ${message.length} bytes exceeds 0xFFFF`);
  const head = Buffer.alloc(APP_LENGTH_BYTES);
  head.writeUInt16LE(message.length, 0);
  return Buffer.concat([head, message]);
}

/** The message inside decrypted application data; bytes after it (random padding) are ignored. */
export function decodeAppData(plain: Uint8Array): Buffer {
  const buf = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  requireBytes(buf, 0, APP_LENGTH_BYTES, "secured.appLength");
  const n = buf.readUInt16LE(0);
  requireBytes(buf, APP_LENGTH_BYTES, n, "secured.appData");
  return buf.subarray(APP_LENGTH_BYTES, APP_LENGTH_BYTES + n);
}
