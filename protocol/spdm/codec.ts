/**
 * encodeSpdm / decodeSpdm: one field list per message (DSP0274 1.0–1.4, the clause of each message
 * pair), shared by both directions. Layouts that depend on negotiated algorithms or on the request
 * take a DecodeContext.
 *
 * Length: a decoder derives the message's exact length from its own fields, because DOE pads the
 * message with 0–3 zero bytes and transcripts hash the exact message. By default only zero bytes
 * may follow (see DecodeContext.trailing). Messages whose end no field marks (UNKNOWN codes, ERROR
 * with vendor or unknown extended data, a response inside CHUNK_SEND_ACK that is itself such a
 * message) run to the end of the buffer.
 *
 * 1.4 layouts (libspdm's SPDM_MESSAGE_VERSION_14 paths): FINISH, FINISH_RSP, PSK_FINISH and
 * PSK_FINISH_RSP carry opaque data; chunk sequence numbers are 32-bit; VENDOR_DEFINED and
 * GET_CERTIFICATE/CERTIFICATE have large forms (Param1 bit 7); the algorithm messages carry
 * PqcAsymAlgo/PqcAsymSel (kept, though we offer and select no PQC algorithm).
 */
import { DecodeError, requireBytes } from "../errors.js";
import {
  CERTIFICATE_LARGE_CHAIN,
  NONCE_SIZE,
  RANDOM_DATA_SIZE,
  REQUESTER_CONTEXT_SIZE,
  SpdmCode,
  SpdmErrorCode,
  SpdmResponseCode,
  VENDOR_DEFINED_LARGE,
} from "./codes.js";
import type { DecodeContext } from "./context.js";
import { ENCAP_SCHEMAS } from "./encap.js";
import { decodeMeasurementRecord } from "./measurements.js";
import type {
  AlgorithmsRequestFields,
  AlgStruct,
  ChunkSend,
  ExtendedAlgorithm,
  GetCapabilities,
  KeyUpdate,
  KnownMessageName,
  MessageOf,
  ResponseNotReadyData,
  SpdmMessage,
  UnknownMessage,
  VendorDefinedRequest,
} from "./messages.js";
import { PROVISION_SCHEMAS } from "./provision.js";
import {
  asBuffer,
  bytesElem,
  decodeFields,
  type Elem,
  encodeFields,
  type Field,
  Need,
  Reader,
  schema,
  structElem,
  u8Elem,
  u16Elem,
  Writer,
} from "./schema.js";

type Versioned = { version: number };
const since = (version: number) => (m: Versioned) => m.version >= version;
const H = (_m: unknown, n: Need) => n.num("hashSize");
const S = (_m: unknown, n: Need) => n.num("asymSignatureSize");
const D = (_m: unknown, n: Need) => n.num("dheExchangeSize");
const summaryHash = (_m: unknown, n: Need) => n.summaryHashSize();
const popcount = (x: number) => x.toString(2).replaceAll("0", "").length;

// ---- shared parts -------------------------------------------------------------------------------

const extAlgElem = structElem(
  schema<ExtendedAlgorithm>((f) => [f.u8("registryId"), f.reserved(1), f.u16("algorithmId")]),
);

/** AlgType | AlgCount ([7:4] fixed byte count, always 2 in 1.1–1.3; [3:0] ext count) | AlgSupported u16 | ext. */
const algStructElem: Elem<AlgStruct> = {
  dec(r, n, field) {
    const algType = r.uint(1, `${field}.algType`);
    const at = r.off;
    const count = r.uint(1, `${field}.algCount`);
    if (count >> 4 !== 2)
      throw new DecodeError(`${field}.algCount`, at, `fixed byte count ${count >> 4}, not 2`);
    const algSupported = r.uint(2, `${field}.algSupported`);
    const extAlgs: ExtendedAlgorithm[] = [];
    for (let i = 0; i < (count & 0xf); i++) extAlgs.push(extAlgElem.dec(r, n, `${field}.extAlgs[${i}]`));
    return { algType, algSupported, extAlgs };
  },
  enc(w, v, field) {
    w.uint(v.algType, 1, `${field}.algType`);
    if (v.extAlgs.length > 0xf)
      throw new RangeError(`${field}.extAlgs: ${v.extAlgs.length} entries, at most 15`);
    w.uint(0x20 | v.extAlgs.length, 1, `${field}.algCount`);
    w.uint(v.algSupported, 2, `${field}.algSupported`);
    for (const [i, x] of v.extAlgs.entries()) extAlgElem.enc(w, x, `${field}.extAlgs[${i}]`);
  },
};

/**
 * NEGOTIATE_ALGORITHMS from Param1 on, which is also the 1.3 Supported Algorithms block. `lengthAt`
 * is the Length field's offset from the structure's start (4 in the message, 2 in the block).
 */
const algorithmsRequestBody = (lengthAt: number) =>
  schema<AlgorithmsRequestFields>((f) => [
    f.len8("algStructs"), // Param1
    f.reserved(1),
    f.lengthStart(lengthAt),
    f.u8("measurementSpecification"),
    f.u8("otherParamsSupport"),
    f.u32("baseAsymAlgo"),
    f.u32("baseHashAlgo"),
    f.u32IfSet("pqcAsymAlgo"),
    f.reserved(8),
    f.len8("extAsym"),
    f.len8("extHash"),
    f.reserved(1),
    f.u8("melSpecification"),
    f.list("extAsym", "prefixed", extAlgElem),
    f.list("extHash", "prefixed", extAlgElem),
    f.list("algStructs", "prefixed", algStructElem),
    f.lengthEnd(),
  ]);

type CapabilityFields = Omit<GetCapabilities, "code" | "attributes">;
const capabilityFields = schema<CapabilityFields>((f) => [
  f.reserved(1),
  f.u8("ctExponent"),
  f.u16("extFlags"),
  f.u32("flags"),
]);
const transferSizes = schema<CapabilityFields>((f) => [
  f.when(since(0x12), f.u32("dataTransferSize"), f.u32("maxSpdmMsgSize")),
]);

const responseNotReady = schema<ResponseNotReadyData>((f) => [
  f.u8("rdtExponent"),
  f.u8("requestCode"),
  f.u8("token"),
  f.u8("rdtm"),
]);
const KNOWN_ERROR_CODES = new Set<number>(Object.values(SpdmErrorCode));
/** Codes whose extended data is not defined by this registry, so it runs to the end. */
const hasRawErrorData = (code: number) =>
  code === SpdmErrorCode.VendorDefined || !KNOWN_ERROR_CODES.has(code);

/** ChunkSeqNo: u16 and 2 reserved bytes before 1.4, u32 from 1.4. */
const chunkSeqNo = (padded: boolean) =>
  schema<Versioned & { chunkSeqNo: number }>((f) => [
    f.either(since(0x14), [f.u32("chunkSeqNo")], [f.u16("chunkSeqNo"), ...(padded ? [f.reserved(2)] : [])]),
  ]);

const chunkFields = schema<Omit<ChunkSend, "code">>((f) => [
  f.u8("attributes"),
  f.u8("handle"),
  ...chunkSeqNo(true),
  f.len32("chunk"),
  f.when((m) => m.chunkSeqNo === 0, f.u32("largeMessageSize")),
  f.data("chunk"),
]);

const keyUpdateFields = schema<Omit<KeyUpdate, "code" | "version">>((f) => [f.u8("operation"), f.u8("tag")]);

const vendorFields = schema<Omit<VendorDefinedRequest, "code">>((f) => [
  f.flagByte("large", VENDOR_DEFINED_LARGE, since(0x14)),
  f.reserved(1),
  f.u16("standardId"),
  f.len8("vendorId"),
  f.data("vendorId"),
  f.either((m) => m.large === true, [f.reserved(2), f.len32("payload")], [f.len16("payload")]),
  f.data("payload"),
]);
/** Param1 bit 7 of GET_CERTIFICATE/CERTIFICATE at 1.4: the 32-bit fields follow. */
const largeChain = (m: { version: number; slotId: number }) =>
  m.version >= 0x14 && (m.slotId & CERTIFICATE_LARGE_CHAIN) !== 0;
/** 1.4 opaque data at the start of the FINISH/PSK_FINISH messages' bodies. */
const finishOpaqueField = () =>
  schema<Versioned & { opaqueData?: Buffer }>((f) => [f.when(since(0x14), f.lp16("opaqueData"))]);

const headerOnly: Field<unknown>[] = schema<unknown>((f) => [f.reserved(2)]);

/** The response after the last CHUNK_SEND, measured by decoding it; zeros alone are padding. */
function chunkAckResponseLength(tail: Buffer, n: Need): number {
  if (tail.every((b) => b === 0)) return 0;
  const base = n.r.off;
  if (tail.length >= 2 && tail[1] === SpdmResponseCode.CHUNK_SEND_ACK) {
    throw new DecodeError(
      `${n.where}.response`,
      base + 1,
      "CHUNK_SEND_ACK cannot carry another CHUNK_SEND_ACK",
    );
  }
  try {
    return decodeSpdmWithLength(tail, { ...n.ctx, trailing: "any" }).byteLength;
  } catch (e) {
    if (e instanceof DecodeError)
      throw new DecodeError(`${n.where}.response.${e.field}`, base + e.offset, e.reason);
    throw e;
  }
}

/** The record must split into NumberOfBlocks blocks; offsets are moved to the message. */
function checkMeasurementRecord(m: { measurementRecord: Buffer; numberOfBlocks: number }, n: Need): void {
  const base = n.r.off - m.measurementRecord.length;
  try {
    decodeMeasurementRecord(m.measurementRecord, {
      numberOfBlocks: m.numberOfBlocks,
      measurementHashSize: n.ctx.measurementHashSize,
    });
  } catch (e) {
    if (e instanceof DecodeError) throw new DecodeError(`${n.where}.${e.field}`, base + e.offset, e.reason);
    throw e;
  }
}

// ---- the table ----------------------------------------------------------------------------------

type Schemas = { [K in KnownMessageName]: readonly Field<MessageOf<K>>[] };

const SCHEMAS: Schemas = {
  GET_VERSION: headerOnly,
  VERSION: schema<MessageOf<"VERSION">>((f) => [
    f.reserved(3),
    f.len8("versionNumberEntries"),
    f.list("versionNumberEntries", "prefixed", u16Elem),
  ]),
  GET_CAPABILITIES: schema<MessageOf<"GET_CAPABILITIES">>((f) => [
    f.u8("attributes"),
    f.reserved(1),
    f.when(since(0x11), ...capabilityFields), // 1.0 requests are the bare header
    ...transferSizes,
  ]),
  CAPABILITIES: schema<MessageOf<"CAPABILITIES">>((f) => [
    f.u8("attributes"),
    f.reserved(1),
    ...capabilityFields,
    ...transferSizes,
    f.when(
      (m) => m.version >= 0x13 && (m.attributes & 1) !== 0,
      f.struct("supportedAlgorithms", algorithmsRequestBody(2)),
    ),
  ]),
  NEGOTIATE_ALGORITHMS: algorithmsRequestBody(4),
  ALGORITHMS: schema<MessageOf<"ALGORITHMS">>((f) => [
    f.len8("algStructs"),
    f.reserved(1),
    f.lengthStart(4),
    f.u8("measurementSpecificationSel"),
    f.u8("otherParamsSelection"),
    f.u32("measurementHashAlgo"),
    f.u32("baseAsymSel"),
    f.u32("baseHashSel"),
    f.u32IfSet("pqcAsymSel"),
    f.reserved(7),
    f.u8("melSpecificationSel"),
    f.len8("extAsymSel"),
    f.len8("extHashSel"),
    f.reserved(2),
    f.list("extAsymSel", "prefixed", extAlgElem),
    f.list("extHashSel", "prefixed", extAlgElem),
    f.list("algStructs", "prefixed", algStructElem),
    f.lengthEnd(),
  ]),
  GET_DIGESTS: headerOnly,
  DIGESTS: schema<MessageOf<"DIGESTS">>((f) => [
    f.u8("supportedSlotMask"),
    f.u8("provisionedSlotMask"),
    f.list(
      "digests",
      (m) => popcount(m.provisionedSlotMask),
      bytesElem((n) => n.num("hashSize")),
    ),
    f.ctxWhen(
      (m, n) => m.version >= 0x13 && n.flag("multiKeyConn"),
      f.list("keyPairIds", (m) => m.digests.length, u8Elem),
      f.list("certificateInfos", (m) => m.digests.length, u8Elem),
      f.list("keyUsageMasks", (m) => m.digests.length, u16Elem),
    ),
  ]),
  GET_CERTIFICATE: schema<MessageOf<"GET_CERTIFICATE">>((f) => [
    f.u8("slotId"),
    f.u8("attributes"),
    f.u16("offset"),
    f.u16("length"),
    f.when(largeChain, f.u32("largeOffset"), f.u32("largeLength")),
  ]),
  CERTIFICATE: schema<MessageOf<"CERTIFICATE">>((f) => [
    f.u8("slotId"),
    f.u8("attributes"),
    f.either(
      largeChain,
      [f.reserved(4), f.len32("certChain"), f.u32("remainderLength")],
      [f.len16("certChain"), f.u16("remainderLength")],
    ),
    f.data("certChain"),
  ]),
  CHALLENGE: schema<MessageOf<"CHALLENGE">>((f) => [
    f.u8("slotId"),
    f.u8("measurementSummaryHashType"),
    f.bytes("nonce", NONCE_SIZE),
    f.when(since(0x13), f.bytes("requesterContext", REQUESTER_CONTEXT_SIZE)),
  ]),
  CHALLENGE_AUTH: schema<MessageOf<"CHALLENGE_AUTH">>((f) => [
    f.u8("attributes"),
    f.u8("slotMask"),
    f.bytes("certChainHash", H),
    f.bytes("nonce", NONCE_SIZE),
    f.bytes("measurementSummaryHash", summaryHash),
    f.lp16("opaqueData"),
    f.when(since(0x13), f.bytes("requesterContext", REQUESTER_CONTEXT_SIZE)),
    f.bytes("signature", S),
  ]),
  GET_MEASUREMENTS: schema<MessageOf<"GET_MEASUREMENTS">>((f) => [
    f.u8("attributes"),
    f.u8("operation"),
    f.when((m) => (m.attributes & 1) !== 0, f.bytes("nonce", NONCE_SIZE)),
    f.when((m) => (m.attributes & 1) !== 0 && m.version >= 0x11, f.u8("slotIdParam")),
    f.when(since(0x13), f.bytes("requesterContext", REQUESTER_CONTEXT_SIZE)),
  ]),
  MEASUREMENTS: schema<MessageOf<"MEASUREMENTS">>((f) => [
    f.u8("totalMeasurementIndices"),
    f.u8("slotIdParam"),
    f.u8("numberOfBlocks"),
    f.len24("measurementRecord"),
    f.data("measurementRecord"),
    f.check(checkMeasurementRecord),
    f.bytes("nonce", NONCE_SIZE),
    f.lp16("opaqueData"),
    f.when(since(0x13), f.bytes("requesterContext", REQUESTER_CONTEXT_SIZE)),
    f.bytes("signature", (_m, n) =>
      n.flag("measurementSignatureRequested") ? n.num("asymSignatureSize") : 0,
    ),
  ]),
  ERROR: schema<MessageOf<"ERROR">>((f) => [
    f.u8("errorCode"),
    f.u8("errorData"),
    f.when(
      (m) => m.errorCode === SpdmErrorCode.ResponseNotReady,
      f.struct("responseNotReady", responseNotReady),
    ),
    f.when((m) => m.errorCode === SpdmErrorCode.LargeResponse, f.u8("largeResponseHandle")),
    f.when((m) => m.errorCode === SpdmErrorCode.DataTooLarge, f.u32("dataSize")),
    f.when((m) => hasRawErrorData(m.errorCode), f.rest("extendedErrorData")),
  ]),
  RESPOND_IF_READY: schema<MessageOf<"RESPOND_IF_READY">>((f) => [f.u8("requestCode"), f.u8("token")]),
  CHUNK_SEND: chunkFields,
  CHUNK_SEND_ACK: schema<MessageOf<"CHUNK_SEND_ACK">>((f) => [
    f.u8("attributes"),
    f.u8("handle"),
    ...chunkSeqNo(false),
    f.rest("response", chunkAckResponseLength),
  ]),
  CHUNK_GET: schema<MessageOf<"CHUNK_GET">>((f) => [f.reserved(1), f.u8("handle"), ...chunkSeqNo(false)]),
  CHUNK_RESPONSE: chunkFields,
  KEY_EXCHANGE: schema<MessageOf<"KEY_EXCHANGE">>((f) => [
    f.u8("measurementSummaryHashType"),
    f.u8("slotId"),
    f.u16("reqSessionId"),
    f.u8("sessionPolicy"),
    f.reserved(1),
    f.bytes("randomData", RANDOM_DATA_SIZE),
    f.bytes("exchangeData", D),
    f.lp16("opaqueData"),
  ]),
  KEY_EXCHANGE_RSP: schema<MessageOf<"KEY_EXCHANGE_RSP">>((f) => [
    f.u8("heartbeatPeriod"),
    f.reserved(1),
    f.u16("rspSessionId"),
    f.u8("mutAuthRequested"),
    f.u8("reqSlotIdParam"),
    f.bytes("randomData", RANDOM_DATA_SIZE),
    f.bytes("exchangeData", D),
    f.bytes("measurementSummaryHash", summaryHash),
    f.lp16("opaqueData"),
    f.bytes("signature", S),
    f.bytes("responderVerifyData", (m, n) => (n.flag("handshakeInTheClear") ? 0 : H(m, n))),
  ]),
  FINISH: schema<MessageOf<"FINISH">>((f) => [
    f.u8("attributes"),
    f.u8("reqSlotId"),
    ...finishOpaqueField(),
    f.bytes("signature", (m, n) => ((m.attributes & 1) !== 0 ? n.num("reqAsymSignatureSize") : 0)),
    f.bytes("requesterVerifyData", H),
  ]),
  FINISH_RSP: schema<MessageOf<"FINISH_RSP">>((f) => [
    f.reserved(2),
    ...finishOpaqueField(),
    f.bytes("responderVerifyData", (m, n) => (n.flag("handshakeInTheClear") ? H(m, n) : 0)),
  ]),
  PSK_EXCHANGE: schema<MessageOf<"PSK_EXCHANGE">>((f) => [
    f.u8("measurementSummaryHashType"),
    f.u8("sessionPolicy"),
    f.u16("reqSessionId"),
    f.len16("pskHint"),
    f.len16("requesterContext"),
    f.len16("opaqueData"),
    f.data("pskHint"),
    f.data("requesterContext"),
    f.data("opaqueData"),
  ]),
  PSK_EXCHANGE_RSP: schema<MessageOf<"PSK_EXCHANGE_RSP">>((f) => [
    f.u8("heartbeatPeriod"),
    f.reserved(1),
    f.u16("rspSessionId"),
    f.reserved(2),
    f.len16("responderContext"),
    f.len16("opaqueData"),
    f.bytes("measurementSummaryHash", summaryHash),
    f.data("responderContext"),
    f.data("opaqueData"),
    f.bytes("responderVerifyData", H),
  ]),
  PSK_FINISH: schema<MessageOf<"PSK_FINISH">>((f) => [
    f.reserved(2),
    ...finishOpaqueField(),
    f.bytes("requesterVerifyData", H),
  ]),
  PSK_FINISH_RSP: schema<MessageOf<"PSK_FINISH_RSP">>((f) => [f.reserved(2), ...finishOpaqueField()]),
  HEARTBEAT: headerOnly,
  HEARTBEAT_ACK: headerOnly,
  KEY_UPDATE: keyUpdateFields,
  KEY_UPDATE_ACK: keyUpdateFields,
  END_SESSION: schema<MessageOf<"END_SESSION">>((f) => [f.u8("attributes"), f.reserved(1)]),
  END_SESSION_ACK: headerOnly,
  VENDOR_DEFINED_REQUEST: vendorFields,
  VENDOR_DEFINED_RESPONSE: vendorFields,
  ...PROVISION_SCHEMAS,
  ...ENCAP_SCHEMAS,
};

const UNKNOWN_FIELDS = schema<UnknownMessage>((f) => [
  f.u8("param1"),
  f.u8("param2"),
  f.bytes("payload", (_m, n) => n.r.remaining),
]);

const BY_CODE = new Map<number, [KnownMessageName, readonly Field<unknown>[]]>(
  (Object.keys(SCHEMAS) as KnownMessageName[]).map((name) => [
    SpdmCode[name],
    [name, SCHEMAS[name] as readonly Field<unknown>[]],
  ]),
);

// ---- API ----------------------------------------------------------------------------------------

export interface SpdmHeader {
  version: number;
  requestResponseCode: number;
  param1: number;
  param2: number;
}

export interface DecodedSpdm {
  message: SpdmMessage;
  /** The exact message length, without trailing DOE padding: what transcripts hash. */
  byteLength: number;
}

/** The 4-byte header alone, e.g. to answer VersionMismatch before looking at the body. */
export function decodeSpdmHeader(buf: Uint8Array): SpdmHeader {
  requireBytes(buf, 0, 4, "spdm.header");
  return { version: buf[0]!, requestResponseCode: buf[1]!, param1: buf[2]!, param2: buf[3]! };
}

/** Decodes one message from the start of `buf` (which may carry padding) and reports its length. */
export function decodeSpdmWithLength(input: Uint8Array, ctx: DecodeContext = {}): DecodedSpdm {
  const buf = asBuffer(input);
  requireBytes(buf, 0, 4, "spdm.header");
  const r = new Reader(buf);
  const version = r.uint(1, "spdm.version");
  const code = r.uint(1, "spdm.requestResponseCode");
  const known = BY_CODE.get(code);
  const name = known?.[0] ?? "UNKNOWN";
  const m: Record<string, unknown> = { code: name, version };
  if (!known) m["requestResponseCode"] = code;
  decodeFields(known?.[1] ?? (UNKNOWN_FIELDS as readonly Field<unknown>[]), r, new Need(ctx, r, name), m);
  checkTrailing(buf, r.off, name, ctx.trailing ?? "zeros");
  return { message: m as unknown as SpdmMessage, byteLength: r.off };
}

export function decodeSpdm(buf: Uint8Array, ctx: DecodeContext = {}): SpdmMessage {
  return decodeSpdmWithLength(buf, ctx).message;
}

/** The exact length of the message at the start of `buf` (it is decoded and checked in full). */
export function spdmMessageLength(buf: Uint8Array, ctx: DecodeContext = {}): number {
  return decodeSpdmWithLength(buf, ctx).byteLength;
}

/** Exact bytes of `msg`; throws RangeError when fields are missing, out of range or inconsistent. */
export function encodeSpdm(msg: SpdmMessage): Buffer {
  const w = new Writer();
  w.uint(msg.version, 1, `${msg.code}.version`);
  if (msg.code === "UNKNOWN") {
    w.uint(msg.requestResponseCode, 1, "UNKNOWN.requestResponseCode");
    encodeFields(UNKNOWN_FIELDS, w, msg, "UNKNOWN");
  } else {
    w.uint(SpdmCode[msg.code], 1, `${msg.code}.code`);
    encodeFields(SCHEMAS[msg.code] as readonly Field<SpdmMessage>[], w, msg, msg.code);
  }
  return w.finish();
}

function checkTrailing(buf: Buffer, end: number, name: string, policy: "zeros" | "none" | "any"): void {
  if (policy === "any" || end === buf.length) return;
  if (policy === "none") {
    throw new DecodeError("spdm.trailing", end, `${buf.length - end} bytes after the ${end}-byte ${name}`);
  }
  for (let i = end; i < buf.length; i++) {
    if (buf[i] !== 0)
      throw new DecodeError("spdm.trailing", i, `non-zero byte after the ${end}-byte ${name}`);
  }
}

/** The OpaqueData of a FINISH-family message that carries none: empty from 1.4 on, absent before. */
export const finishOpaque = (version: number): Buffer | undefined =>
  version >= 0x14 ? Buffer.alloc(0) : undefined;

/** The request/response codes that have a codec here (others decode as UNKNOWN). */
export const CODEC_CODES: readonly number[] = [...BY_CODE.keys()];
