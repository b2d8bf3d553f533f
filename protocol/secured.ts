/**
 * DSP0277 secured-message record inside a DOE type-2 payload (secured CMA/SPDM, PCIe r6.0 §6.31),
 * encrypt+MAC form:
 *   u32 SessionID | u16 Length | Length bytes: encrypted (u16 ApplicationDataLength | message) | 16-byte MAC
 * then 0–3 bytes of DOE padding. Over DOE the sequence-number field is 0 bytes and libspdm 1e16c60f
 * adds no random padding. The 6 header bytes are the AEAD's additional data. Also the opaque data
 * that negotiates the secured-message version in KEY_EXCHANGE/PSK_EXCHANGE (DSP0277 elements in
 * DSP0274 1.2 §14 general opaque data). Pure codecs, no crypto.
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

// ---- secured-message version negotiation in KEY_EXCHANGE / PSK_EXCHANGE opaque data -----------

/**
 * DSP0277 versions as the SPDM version byte style (0x12 = 1.2); on the wire a u16 major<<12 | minor<<8.
 * libspdm offers 1.0, 1.1 and 1.2 and selects the highest common one.
 */
export const SecuredMessageVersion = { V1_0: 0x10, V1_1: 0x11, V1_2: 0x12, V1_3: 0x13 } as const;

/** SMDataID of a DMTF secured-message opaque element. */
export const SmDataId = { VersionSelection: 0, SupportedVersions: 1, AeadLimit: 2 } as const;

/** One element of general opaque data: a registry ID (0 = DMTF), an optional vendor ID, its data. */
export interface OpaqueElement {
  id: number;
  vendorId: Buffer;
  data: Buffer;
}

/** SPDM 1.1 opaque data starts with a DSP0277 header: SpecID "DMTF" (u32 0x444D5446), version 1. */
const DSP0277_SPEC_ID = 0x444d5446;
const DSP0277_OPAQUE_VERSION = 1;
const REGISTRY_ID_MAX = 0x0b;
const SM_DATA_VERSION = 1;
const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Header size before the elements: 1.2+ opaque format 1 has 4 bytes, 1.1's DSP0277 header 8. */
const tableHeaderBytes = (spdmVersion: number) => (spdmVersion >= 0x12 ? 4 : 8);

/** General opaque data (1.2+ format 1; the DSP0277 header form at 1.1), each element padded to 4 bytes. */
export function encodeOpaqueData(spdmVersion: number, elements: readonly OpaqueElement[]): Buffer {
  if (elements.length > 0xff) throw new RangeError(`${elements.length} opaque elements, at most 255`);
  const head = Buffer.alloc(tableHeaderBytes(spdmVersion));
  if (spdmVersion >= 0x12) head.writeUInt8(elements.length, 0);
  else {
    head.writeUInt32LE(DSP0277_SPEC_ID, 0);
    head.writeUInt8(DSP0277_OPAQUE_VERSION, 4);
    head.writeUInt8(elements.length, 5);
  }
  const parts = elements.map((e) => {
    if (e.vendorId.length > 0xff || e.data.length > 0xffff)
      throw new RangeError(`opaque element ${e.id}: vendor ID or data too long`);
    const b = Buffer.alloc(4 + e.vendorId.length + e.data.length);
    b.writeUInt8(e.id, 0);
    b.writeUInt8(e.vendorId.length, 1);
    e.vendorId.copy(b, 2);
    b.writeUInt16LE(e.data.length, 2 + e.vendorId.length);
    e.data.copy(b, 4 + e.vendorId.length);
    return Buffer.concat([b, Buffer.alloc(pad4(b.length))]);
  });
  return Buffer.concat([head, ...parts]);
}

/**
 * Splits general opaque data into its elements, with libspdm's checks: 4-byte alignment (1.2+), at
 * least one element, known registry IDs, zero padding, and elements that fill the data exactly.
 */
export function decodeOpaqueData(spdmVersion: number, opaque: Uint8Array): OpaqueElement[] {
  const buf = Buffer.from(opaque.buffer, opaque.byteOffset, opaque.byteLength);
  const headBytes = tableHeaderBytes(spdmVersion);
  requireBytes(buf, 0, headBytes, "opaque.header");
  if (spdmVersion >= 0x12 && buf.length % 4 !== 0)
    throw new DecodeError("opaque.length", 0, `${buf.length} bytes is not a multiple of 4`);
  if (spdmVersion < 0x12) {
    if (buf.readUInt32LE(0) !== DSP0277_SPEC_ID || buf[4] !== DSP0277_OPAQUE_VERSION)
      throw new DecodeError("opaque.specId", 0, "not a DSP0277 version 1 opaque data header");
  }
  const count = buf[spdmVersion >= 0x12 ? 0 : 5]!;
  if (count === 0) throw new DecodeError("opaque.totalElements", 0, "no elements");
  const out: OpaqueElement[] = [];
  let at = headBytes;
  for (let i = 0; i < count; i++) {
    const field = `opaque.element[${i}]`;
    requireBytes(buf, at, 2, field);
    const id = buf[at]!;
    const vendorLen = buf[at + 1]!;
    if (id > REGISTRY_ID_MAX) throw new DecodeError(`${field}.id`, at, `registry ID ${id} is unknown`);
    requireBytes(buf, at + 2, vendorLen + 2, field);
    const dataLen = buf.readUInt16LE(at + 2 + vendorLen);
    const start = at + 4 + vendorLen;
    requireBytes(buf, start, dataLen, `${field}.data`);
    const end = start + dataLen;
    const padded = end + pad4(end - at);
    requireBytes(buf, end, padded - end, `${field}.padding`);
    if (buf.subarray(end, padded).some((b) => b !== 0))
      throw new DecodeError(`${field}.padding`, end, "padding is not zero");
    out.push({ id, vendorId: buf.subarray(at + 2, at + 2 + vendorLen), data: buf.subarray(start, end) });
    at = padded;
  }
  if (at !== buf.length)
    throw new DecodeError("opaque.totalElements", at, `${buf.length - at} bytes after ${count} elements`);
  return out;
}

/** What the DMTF secured-message elements of opaque data say (either may be absent). */
export interface SecuredMessageOpaque {
  /** SMDataID 1 (KEY_EXCHANGE / PSK_EXCHANGE): the versions the requester supports. */
  supported?: number[];
  /** SMDataID 0 (the responses): the version the responder selected. */
  selected?: number;
}

const wireVersion = (v: number) => (v & 0xff) << 8;
const fromWire = (u16: number) => (u16 >> 8) & 0xff;

/** One DMTF element (no vendor ID) with SMDataVersion 1, the SMDataID and its body. */
function smElement(smDataId: number, body: Buffer): OpaqueElement {
  return {
    id: 0,
    vendorId: Buffer.alloc(0),
    data: Buffer.concat([Uint8Array.of(SM_DATA_VERSION, smDataId), body]),
  };
}

/** The requester's opaque data: the supported-versions element. */
export function encodeSupportedVersions(spdmVersion: number, versions: readonly number[]): Buffer {
  if (versions.length === 0 || versions.length > 0xff) throw new RangeError("1–255 secured-message versions");
  const body = Buffer.alloc(1 + 2 * versions.length);
  body.writeUInt8(versions.length, 0);
  for (const [i, v] of versions.entries()) body.writeUInt16LE(wireVersion(v), 1 + 2 * i);
  return encodeOpaqueData(spdmVersion, [smElement(SmDataId.SupportedVersions, body)]);
}

/** The responder's opaque data: the version-selection element. */
export function encodeVersionSelection(spdmVersion: number, version: number): Buffer {
  const body = Buffer.alloc(2);
  body.writeUInt16LE(wireVersion(version), 0);
  return encodeOpaqueData(spdmVersion, [smElement(SmDataId.VersionSelection, body)]);
}

/** Reads the secured-message elements of opaque data; other elements are skipped, as libspdm does. */
export function decodeSecuredMessageOpaque(spdmVersion: number, opaque: Uint8Array): SecuredMessageOpaque {
  const out: SecuredMessageOpaque = {};
  for (const [i, e] of decodeOpaqueData(spdmVersion, opaque).entries()) {
    if (e.id !== 0 || e.vendorId.length !== 0 || e.data.length < 2 || e.data[0] !== SM_DATA_VERSION) continue;
    const field = `opaque.element[${i}]`;
    const body = e.data.subarray(2);
    if (e.data[1] === SmDataId.VersionSelection) {
      if (body.length !== 2)
        throw new DecodeError(`${field}.selectedVersion`, 0, `${body.length} bytes, not 2`);
      out.selected = fromWire(body.readUInt16LE(0));
    } else if (e.data[1] === SmDataId.SupportedVersions) {
      const n = body[0] ?? 0;
      if (n === 0 || body.length !== 1 + 2 * n)
        throw new DecodeError(`${field}.versions`, 0, `count ${n} does not fit ${body.length} bytes`);
      out.supported = [...Array(n).keys()].map((k) => fromWire(body.readUInt16LE(1 + 2 * k)));
    }
  }
  return out;
}

/** DSP0277 session ID: RspSessionID in the high 16 bits, ReqSessionID in the low. */
export function composeSessionId(reqSessionId: number, rspSessionId: number): number {
  return (((rspSessionId & 0xffff) << 16) | (reqSessionId & 0xffff)) >>> 0;
}
