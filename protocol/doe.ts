/**
 * PCIe DOE data objects (PCIe r6.0 §6.30.1; discovery §6.30.1.1). A data object is a 2-DW header
 * followed by the payload, every DW little-endian. Pure codecs: bytes in, typed values out,
 * DecodeError on bad input.
 */
// Imported: Node 20's global Buffer is an accessor, paid on every use on the per-object path.
import { Buffer } from "node:buffer";
import { DecodeError, requireBytes } from "./errors.js";
import { hexDigits } from "./hex.js";

export const PCI_SIG_VENDOR_ID = 0x0001;

/** Data object types of vendor PCI-SIG. */
export const DoeType = {
  DISCOVERY: 0x00,
  CMA_SPDM: 0x01,
  SECURED_CMA_SPDM: 0x02,
} as const;

export const DOE_HEADER_BYTES = 8;
/** 2^18 DW, the largest object; its Length field is written as 0. */
export const DOE_MAX_DW = 1 << 18;
export const DOE_MAX_BYTES = DOE_MAX_DW * 4;

/** A protocol a mailbox speaks: the (vendor ID, data object type) pair discovery reports. */
export interface DoeProtocol {
  vendorId: number;
  type: number;
}

export interface DoeObject extends DoeProtocol {
  /** Payload bytes after the header, including any zero padding up to a DW multiple. */
  payload: Buffer;
}

export interface DoeHeader extends DoeProtocol {
  /** Object length in DW including the header, 0 already expanded to 2^18. */
  lengthDw: number;
}

const PROTOCOL_NAMES: Record<string, string> = {
  "0001:00": "DOE Discovery",
  "0001:01": "CMA/SPDM",
  "0001:02": "Secured CMA/SPDM",
  "0001:03": "SPDM_CONN_ID",
  "0001:04": "SECURED_SPDM_CONN_ID",
  "1e98:00": "CXL Compliance",
  "1e98:02": "CXL Table Access (CDAT)",
};

/** "VVVV:TT", the form Linux uses in sysfs doe_features. */
export function protocolId(p: DoeProtocol): string {
  return `${hexDigits(p.vendorId, 4)}:${hexDigits(p.type, 2)}`;
}

export function protocolName(p: DoeProtocol): string {
  return PROTOCOL_NAMES[protocolId(p)] ?? "unknown";
}

/** Parses "VVVV:TT" (hex). Returns undefined when the text is not of that form. */
export function parseProtocolId(text: string): DoeProtocol | undefined {
  const m = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{2})$/.exec(text);
  if (!m) return undefined;
  return { vendorId: Number.parseInt(m[1]!, 16), type: Number.parseInt(m[2]!, 16) };
}

/**
 * Decodes the 8-byte header at the start of `buf`; the rest of `buf` is not looked at. Read byte by
 * byte rather than with binary-parser or a DataView: it runs for every object, and this allocates
 * nothing but the result.
 */
export function decodeDoeHeader(buf: Uint8Array): DoeHeader {
  requireBytes(buf, 0, DOE_HEADER_BYTES, "doe.header");
  const reserved0 = buf[3]!;
  if (reserved0 !== 0) throw new DecodeError("doe.reserved", 3, `must be 0, is 0x${hexDigits(reserved0, 2)}`);
  const lengthField = (buf[4]! | (buf[5]! << 8) | (buf[6]! << 16) | (buf[7]! << 24)) >>> 0;
  if (lengthField >>> 18 !== 0) {
    throw new DecodeError("doe.length", 4, `reserved bits [31:18] set (0x${hexDigits(lengthField, 8)})`);
  }
  const lengthDw = lengthField === 0 ? DOE_MAX_DW : lengthField;
  if (lengthDw < 2) throw new DecodeError("doe.length", 4, `${lengthDw} DW is shorter than the 2-DW header`);
  return { vendorId: buf[0]! | (buf[1]! << 8), type: buf[2]!, lengthDw };
}

/** Decodes one whole data object. Its Length must account for exactly the bytes given; the payload is a view. */
export function decodeDoeObject(buf: Uint8Array): DoeObject {
  const h = decodeDoeHeader(buf);
  if (h.lengthDw * 4 !== buf.length) {
    throw new DecodeError(
      "doe.length",
      4,
      `header says ${h.lengthDw} DW (${h.lengthDw * 4} bytes), got ${buf.length} bytes`,
    );
  }
  const bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { vendorId: h.vendorId, type: h.type, payload: bytes.subarray(DOE_HEADER_BYTES) };
}

/**
 * Encodes a data object, zero-padding the payload to a DW multiple. Throws RangeError above 1 MiB.
 * Every byte is written, so the buffer comes from Node's pool (no allocation of its own when small).
 */
export function encodeDoeObject(obj: DoeObject): Buffer {
  const payloadDw = Math.ceil(obj.payload.length / 4);
  const lengthDw = 2 + payloadDw;
  if (lengthDw > DOE_MAX_DW) throw new RangeError(`DOE object of ${lengthDw} DW exceeds 2^18 DW`);
  const out = Buffer.allocUnsafe(lengthDw * 4);
  out.writeUInt16LE(obj.vendorId, 0);
  out.writeUInt8(obj.type, 2);
  out[3] = 0;
  out.writeUInt32LE(lengthDw === DOE_MAX_DW ? 0 : lengthDw, 4);
  // TypedArray set and a loop for the at most 3 padding bytes: Buffer's copy and fill each cross into C++.
  out.set(obj.payload, DOE_HEADER_BYTES);
  for (let i = DOE_HEADER_BYTES + obj.payload.length; i < out.length; i++) out[i] = 0;
  return out;
}

// ---- DOE Discovery (type 0), one DW each way -------------------------------------------------

export interface DiscoveryRequest {
  index: number;
  version: number;
}

export interface DiscoveryResponse extends DoeProtocol {
  nextIndex: number;
}

export function encodeDiscoveryRequest(req: DiscoveryRequest): Buffer {
  return Buffer.from([req.index, req.version, 0, 0]);
}

/** Decodes a discovery request payload (the 4 bytes after the DOE header). */
export function decodeDiscoveryRequest(payload: Uint8Array): DiscoveryRequest {
  if (payload.length !== 4)
    throw new DecodeError("discovery.request", 0, `payload is ${payload.length} bytes, not 4`);
  return { index: payload[0]!, version: payload[1]! };
}

export function encodeDiscoveryResponse(rsp: DiscoveryResponse): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt16LE(rsp.vendorId, 0);
  out.writeUInt8(rsp.type, 2);
  out.writeUInt8(rsp.nextIndex, 3);
  return out;
}

/** Decodes a discovery response payload; like Linux, it must be exactly 4 bytes. */
export function decodeDiscoveryResponse(payload: Uint8Array): DiscoveryResponse {
  if (payload.length !== 4)
    throw new DecodeError("discovery.response", 0, `payload is ${payload.length} bytes, not 4`);
  return { vendorId: payload[0]! | (payload[1]! << 8), type: payload[2]!, nextIndex: payload[3]! };
}
