import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import {
  BaseHashAlgo,
  bitNames,
  CODEC_CODES,
  type DecodeContext,
  decodeMeasurementRecord,
  decodeSpdm,
  decodeSpdmHeader,
  decodeSpdmWithLength,
  dmtfMeasurementBlock,
  encodeMeasurementRecord,
  encodeSpdm,
  negotiatedContext,
  ResponderCapability,
  responseCodeFor,
  type SpdmMessage,
  SpdmRequestCode,
  spdmCodeLabel,
  spdmCodeName,
  spdmErrorName,
  spdmMessageLength,
  versionFromEntry,
} from "../../protocol/spdm/index.js";
import type {
  Algorithms,
  Capabilities,
  GetCapabilities,
  MessageOf,
  NegotiateAlgorithms,
} from "../../protocol/spdm/messages.js";
import {
  CAPTURES,
  type MessageFrame,
  RAW_CAPTURES,
  rawMessages,
  readDecoded,
  requestContext,
} from "../vectors.js";

/** Hex with spaces allowed; `x(n, b)` is n copies of byte b, for long fields. */
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const x = (n: number, b: number) => Buffer.alloc(n, b);
const cat = (...parts: (string | Buffer)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? hex(p) : p)));

function decodeError(fn: () => unknown): DecodeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DecodeError) return e;
    throw e;
  }
  throw new Error("expected a DecodeError");
}

interface Case {
  title: string;
  bytes: Buffer;
  ctx?: DecodeContext;
  msg: SpdmMessage;
}

// Vectors written from the DSP0274 message tables, independent of the encoders.
const SHA256: DecodeContext = { hashSize: 32, asymSignatureSize: 64, dheExchangeSize: 64 };
const CASES: Case[] = [
  { title: "GET_VERSION", bytes: hex("10840000"), msg: { code: "GET_VERSION", version: 0x10 } },
  {
    title: "VERSION with 1.0 and 1.2 entries",
    bytes: hex("10040000 00 02 0010 0012"),
    msg: { code: "VERSION", version: 0x10, versionNumberEntries: [0x1000, 0x1200] },
  },
  {
    title: "GET_CAPABILITIES 1.0 (header only)",
    bytes: hex("10e10000"),
    msg: { code: "GET_CAPABILITIES", version: 0x10, attributes: 0 },
  },
  {
    title: "GET_CAPABILITIES 1.1 (12 bytes)",
    bytes: hex("11e10000 00 0c 0000 c6f70000"),
    msg: {
      code: "GET_CAPABILITIES",
      version: 0x11,
      attributes: 0,
      ctExponent: 12,
      extFlags: 0,
      flags: 0xf7c6,
    },
  },
  {
    title: "GET_CAPABILITIES 1.2 (20 bytes)",
    bytes: hex("12e10000 00 00 0000 c6f70200 00120000 00800200"),
    msg: {
      code: "GET_CAPABILITIES",
      version: 0x12,
      attributes: 0,
      ctExponent: 0,
      extFlags: 0,
      flags: 0x2f7c6,
      dataTransferSize: 0x1200,
      maxSpdmMsgSize: 0x28000,
    },
  },
  {
    title: "CAPABILITIES 1.0 (12 bytes)",
    bytes: hex("10610000 00 0a 0000 17000000"),
    msg: { code: "CAPABILITIES", version: 0x10, attributes: 0, ctExponent: 10, extFlags: 0, flags: 0x17 },
  },
  {
    title: "CAPABILITIES 1.3 with the Supported Algorithms block",
    bytes: hex(
      "13610100 00 0c 0000 f7fb9a39 00120000 00800200" +
        // block (30 fixed bytes, no version/code): Param1 1 table, Param2, Length 34, MeasSpec,
        // OtherParams, BaseAsym, BaseHash, 12 reserved, ExtAsymCount, ExtHashCount, reserved, MEL, DHE
        "01 00 2200 01 02 80000000 02000000 000000000000000000000000 00 00 00 01 02201000",
    ),
    msg: {
      code: "CAPABILITIES",
      version: 0x13,
      attributes: 1,
      ctExponent: 12,
      extFlags: 0,
      flags: 0x399afbf7,
      dataTransferSize: 0x1200,
      maxSpdmMsgSize: 0x28000,
      supportedAlgorithms: {
        measurementSpecification: 1,
        otherParamsSupport: 2,
        baseAsymAlgo: 0x80,
        baseHashAlgo: 0x2,
        melSpecification: 1,
        extAsym: [],
        extHash: [],
        algStructs: [{ algType: 2, algSupported: 0x10, extAlgs: [] }],
      },
    },
  },
  {
    title: "NEGOTIATE_ALGORITHMS 1.2 with an extended asym and an AEAD table with an external entry",
    bytes: hex(
      "12e30200 3000 01 02 90000000 03000000 000000000000000000000000 01 00 00 00" +
        "03000100" + // ExtAsym: registry PCI-SIG, reserved, alg 1
        "02201800" + // DHE: secp256r1 | secp384r1
        "03210200 04003412", // AEAD: AES-256-GCM, one AlgExternal (IANA, 0x1234)
    ),
    msg: {
      code: "NEGOTIATE_ALGORITHMS",
      version: 0x12,
      measurementSpecification: 1,
      otherParamsSupport: 2,
      baseAsymAlgo: 0x90,
      baseHashAlgo: 0x3,
      melSpecification: 0,
      extAsym: [{ registryId: 3, algorithmId: 1 }],
      extHash: [],
      algStructs: [
        { algType: 2, algSupported: 0x18, extAlgs: [] },
        { algType: 3, algSupported: 0x2, extAlgs: [{ registryId: 4, algorithmId: 0x1234 }] },
      ],
    },
  },
  {
    title: "ALGORITHMS 1.1 with four struct tables",
    bytes: hex(
      "11630400 3400 01 00 08000000 80000000 02000000 00000000 00000000000000 00 00 00 0000" +
        "02201000 03200200 04200800 05200100",
    ),
    msg: {
      code: "ALGORITHMS",
      version: 0x11,
      measurementSpecificationSel: 1,
      otherParamsSelection: 0,
      measurementHashAlgo: 0x8,
      baseAsymSel: 0x80,
      baseHashSel: 0x2,
      melSpecificationSel: 0,
      extAsymSel: [],
      extHashSel: [],
      algStructs: [
        { algType: 2, algSupported: 0x10, extAlgs: [] },
        { algType: 3, algSupported: 0x2, extAlgs: [] },
        { algType: 4, algSupported: 0x8, extAlgs: [] },
        { algType: 5, algSupported: 0x1, extAlgs: [] },
      ],
    },
  },
  { title: "GET_DIGESTS", bytes: hex("12810000"), msg: { code: "GET_DIGESTS", version: 0x12 } },
  {
    title: "DIGESTS 1.2, slots 0 and 2, SHA-256",
    bytes: cat("12010005", x(32, 0xaa), x(32, 0xbb)),
    ctx: SHA256,
    msg: {
      code: "DIGESTS",
      version: 0x12,
      supportedSlotMask: 0,
      provisionedSlotMask: 5,
      digests: [x(32, 0xaa), x(32, 0xbb)],
    },
  },
  {
    title: "DIGESTS 1.3 with MULTI_KEY_CONN arrays",
    bytes: cat("13010301", x(32, 0xcc), "01", "01", "0f00"),
    ctx: { ...SHA256, multiKeyConn: true },
    msg: {
      code: "DIGESTS",
      version: 0x13,
      supportedSlotMask: 3,
      provisionedSlotMask: 1,
      digests: [x(32, 0xcc)],
      keyPairIds: [1],
      certificateInfos: [1],
      keyUsageMasks: [0xf],
    },
  },
  {
    title: "GET_CERTIFICATE",
    bytes: hex("13820201 0004 0002"),
    msg: { code: "GET_CERTIFICATE", version: 0x13, slotId: 2, attributes: 1, offset: 0x400, length: 0x200 },
  },
  {
    title: "CERTIFICATE",
    bytes: hex("12020100 0300 0500 a1a2a3"),
    msg: {
      code: "CERTIFICATE",
      version: 0x12,
      slotId: 1,
      attributes: 0,
      remainderLength: 5,
      certChain: hex("a1a2a3"),
    },
  },
  {
    title: "CHALLENGE 1.2 (36 bytes)",
    bytes: cat("128300ff", x(32, 0x11)),
    msg: {
      code: "CHALLENGE",
      version: 0x12,
      slotId: 0,
      measurementSummaryHashType: 0xff,
      nonce: x(32, 0x11),
    },
  },
  {
    title: "CHALLENGE 1.3 with RequesterContext (44 bytes)",
    bytes: cat("13830401", x(32, 0x11), "0102030405060708"),
    msg: {
      code: "CHALLENGE",
      version: 0x13,
      slotId: 4,
      measurementSummaryHashType: 1,
      nonce: x(32, 0x11),
      requesterContext: hex("0102030405060708"),
    },
  },
  {
    title: "CHALLENGE_AUTH 1.3 with summary hash, opaque data and context",
    bytes: cat("13030001", x(32, 0xa0), x(32, 0xb0), x(32, 0xc0), "0200 dead", x(8, 0x0e), x(64, 0x5a)),
    ctx: { ...SHA256, measurementSummaryHashType: 0xff },
    msg: {
      code: "CHALLENGE_AUTH",
      version: 0x13,
      attributes: 0,
      slotMask: 1,
      certChainHash: x(32, 0xa0),
      nonce: x(32, 0xb0),
      measurementSummaryHash: x(32, 0xc0),
      opaqueData: hex("dead"),
      requesterContext: x(8, 0x0e),
      signature: x(64, 0x5a),
    },
  },
  {
    title: "CHALLENGE_AUTH 1.2 without summary hash",
    bytes: cat("12030001", x(32, 0xa0), x(32, 0xb0), "0000", x(64, 0x5a)),
    ctx: { ...SHA256, measurementSummaryHashType: 0 },
    msg: {
      code: "CHALLENGE_AUTH",
      version: 0x12,
      attributes: 0,
      slotMask: 1,
      certChainHash: x(32, 0xa0),
      nonce: x(32, 0xb0),
      measurementSummaryHash: Buffer.alloc(0),
      opaqueData: Buffer.alloc(0),
      signature: x(64, 0x5a),
    },
  },
  {
    title: "GET_MEASUREMENTS 1.0 signed (no SlotIDParam)",
    bytes: cat("10e00101", x(32, 0x33)),
    msg: { code: "GET_MEASUREMENTS", version: 0x10, attributes: 1, operation: 1, nonce: x(32, 0x33) },
  },
  {
    title: "GET_MEASUREMENTS 1.2 signed, slot 3",
    bytes: cat("12e001ff", x(32, 0x33), "03"),
    msg: {
      code: "GET_MEASUREMENTS",
      version: 0x12,
      attributes: 1,
      operation: 0xff,
      nonce: x(32, 0x33),
      slotIdParam: 3,
    },
  },
  {
    title: "GET_MEASUREMENTS 1.3 unsigned (RequesterContext only)",
    bytes: hex("13e00000 aabbccddeeff0000"),
    msg: {
      code: "GET_MEASUREMENTS",
      version: 0x13,
      attributes: 0,
      operation: 0,
      requesterContext: hex("aabbccddeeff0000"),
    },
  },
  {
    title: "MEASUREMENTS 1.2 unsigned, one DMTF raw block",
    bytes: cat("12600020 01 0b0000", "01 01 0700 82 0400 01020304", x(32, 0x77), "0000"),
    ctx: { measurementSignatureRequested: false },
    msg: {
      code: "MEASUREMENTS",
      version: 0x12,
      totalMeasurementIndices: 0,
      slotIdParam: 0x20,
      numberOfBlocks: 1,
      measurementRecord: hex("01 01 0700 82 0400 01020304"),
      nonce: x(32, 0x77),
      opaqueData: Buffer.alloc(0),
      signature: Buffer.alloc(0),
    },
  },
  {
    title: "MEASUREMENTS 1.3 count only, signed",
    bytes: cat("13600802 00 000000", x(32, 0x77), "0100 ee", "1122334455667788", x(64, 0x99)),
    ctx: { ...SHA256, measurementSignatureRequested: true },
    msg: {
      code: "MEASUREMENTS",
      version: 0x13,
      totalMeasurementIndices: 8,
      slotIdParam: 2,
      numberOfBlocks: 0,
      measurementRecord: Buffer.alloc(0),
      nonce: x(32, 0x77),
      opaqueData: hex("ee"),
      requesterContext: hex("1122334455667788"),
      signature: x(64, 0x99),
    },
  },
  {
    title: "ERROR InvalidRequest",
    bytes: hex("127f0100"),
    msg: { code: "ERROR", version: 0x12, errorCode: 1, errorData: 0 },
  },
  {
    title: "ERROR UnsupportedRequest names the request code",
    bytes: hex("117f07e9"),
    msg: { code: "ERROR", version: 0x11, errorCode: 7, errorData: 0xe9 },
  },
  {
    title: "ERROR ResponseNotReady with extended data",
    bytes: hex("127f4200 0c e4 07 02"),
    msg: {
      code: "ERROR",
      version: 0x12,
      errorCode: 0x42,
      errorData: 0,
      responseNotReady: { rdtExponent: 12, requestCode: 0xe4, token: 7, rdtm: 2 },
    },
  },
  {
    title: "ERROR LargeResponse with its handle",
    bytes: hex("127f0f00 05"),
    msg: { code: "ERROR", version: 0x12, errorCode: 0x0f, errorData: 0, largeResponseHandle: 5 },
  },
  {
    title: "ERROR vendor-defined keeps its extended data",
    bytes: hex("127fff00 00 00 abcd"),
    msg: { code: "ERROR", version: 0x12, errorCode: 0xff, errorData: 0, extendedErrorData: hex("0000abcd") },
  },
  {
    title: "RESPOND_IF_READY",
    bytes: hex("12ffe407"),
    msg: { code: "RESPOND_IF_READY", version: 0x12, requestCode: 0xe4, token: 7 },
  },
  {
    title: "CHUNK_SEND chunk 0 carries LargeMessageSize",
    bytes: hex("12850103 0000 0000 04000000 00010000 aabbccdd"),
    msg: {
      code: "CHUNK_SEND",
      version: 0x12,
      attributes: 1,
      handle: 3,
      chunkSeqNo: 0,
      largeMessageSize: 0x100,
      chunk: hex("aabbccdd"),
    },
  },
  {
    title: "CHUNK_SEND chunk 1",
    bytes: hex("12850003 0100 0000 02000000 eeff"),
    msg: { code: "CHUNK_SEND", version: 0x12, attributes: 0, handle: 3, chunkSeqNo: 1, chunk: hex("eeff") },
  },
  {
    title: "CHUNK_SEND_ACK without a response",
    bytes: hex("12050003 0100"),
    msg: { code: "CHUNK_SEND_ACK", version: 0x12, attributes: 0, handle: 3, chunkSeqNo: 1 },
  },
  {
    title: "CHUNK_SEND_ACK carrying the response to the large request",
    bytes: hex("12050003 0200 127f0100"),
    msg: {
      code: "CHUNK_SEND_ACK",
      version: 0x12,
      attributes: 0,
      handle: 3,
      chunkSeqNo: 2,
      response: hex("127f0100"),
    },
  },
  {
    title: "CHUNK_GET",
    bytes: hex("12860003 0200"),
    msg: { code: "CHUNK_GET", version: 0x12, handle: 3, chunkSeqNo: 2 },
  },
  {
    title: "CHUNK_RESPONSE chunk 0, last",
    bytes: hex("12060103 0000 0000 03000000 20000000 010203"),
    msg: {
      code: "CHUNK_RESPONSE",
      version: 0x12,
      attributes: 1,
      handle: 3,
      chunkSeqNo: 0,
      largeMessageSize: 0x20,
      chunk: hex("010203"),
    },
  },
  {
    title: "KEY_EXCHANGE (P-256 exchange data)",
    bytes: cat("12e4ff00 3412 01 00", x(32, 0x21), x(64, 0xe1), "0400 00112233"),
    ctx: SHA256,
    msg: {
      code: "KEY_EXCHANGE",
      version: 0x12,
      measurementSummaryHashType: 0xff,
      slotId: 0,
      reqSessionId: 0x1234,
      sessionPolicy: 1,
      randomData: x(32, 0x21),
      exchangeData: x(64, 0xe1),
      opaqueData: hex("00112233"),
    },
  },
  {
    title: "KEY_EXCHANGE_RSP with summary hash and ResponderVerifyData",
    bytes: cat(
      "1264f000 7856 00 00",
      x(32, 0x22),
      x(64, 0xe2),
      x(32, 0x5e),
      "0000",
      x(64, 0x51),
      x(32, 0x7d),
    ),
    ctx: { ...SHA256, measurementSummaryHashType: 1, handshakeInTheClear: false },
    msg: {
      code: "KEY_EXCHANGE_RSP",
      version: 0x12,
      heartbeatPeriod: 0xf0,
      rspSessionId: 0x5678,
      mutAuthRequested: 0,
      reqSlotIdParam: 0,
      randomData: x(32, 0x22),
      exchangeData: x(64, 0xe2),
      measurementSummaryHash: x(32, 0x5e),
      opaqueData: Buffer.alloc(0),
      signature: x(64, 0x51),
      responderVerifyData: x(32, 0x7d),
    },
  },
  {
    title: "FINISH with a requester signature",
    bytes: cat("12e50102", x(96, 0x5f), x(32, 0x7e)),
    ctx: { ...SHA256, reqAsymSignatureSize: 96 },
    msg: {
      code: "FINISH",
      version: 0x12,
      attributes: 1,
      reqSlotId: 2,
      signature: x(96, 0x5f),
      requesterVerifyData: x(32, 0x7e),
    },
  },
  {
    title: "FINISH_RSP in the clear carries ResponderVerifyData",
    bytes: cat("12650000", x(32, 0x7f)),
    ctx: { ...SHA256, handshakeInTheClear: true },
    msg: { code: "FINISH_RSP", version: 0x12, responderVerifyData: x(32, 0x7f) },
  },
  {
    title: "FINISH_RSP in a session is the header only",
    bytes: hex("12650000"),
    ctx: { ...SHA256, handshakeInTheClear: false },
    msg: { code: "FINISH_RSP", version: 0x12, responderVerifyData: Buffer.alloc(0) },
  },
  {
    title: "PSK_EXCHANGE",
    bytes: hex("12e6ff01 ffff 0300 0400 0200 414243 01020304 a1a2"),
    msg: {
      code: "PSK_EXCHANGE",
      version: 0x12,
      measurementSummaryHashType: 0xff,
      sessionPolicy: 1,
      reqSessionId: 0xffff,
      pskHint: hex("414243"),
      requesterContext: hex("01020304"),
      opaqueData: hex("a1a2"),
    },
  },
  {
    title: "PSK_EXCHANGE_RSP without summary hash",
    bytes: cat("1266f000 feff 0000 0200 0100 c1c2 09", x(32, 0x7c)),
    ctx: { ...SHA256, measurementSummaryHashType: 0 },
    msg: {
      code: "PSK_EXCHANGE_RSP",
      version: 0x12,
      heartbeatPeriod: 0xf0,
      rspSessionId: 0xfffe,
      measurementSummaryHash: Buffer.alloc(0),
      responderContext: hex("c1c2"),
      opaqueData: hex("09"),
      responderVerifyData: x(32, 0x7c),
    },
  },
  {
    title: "PSK_FINISH",
    bytes: cat("12e70000", x(32, 0x7b)),
    ctx: SHA256,
    msg: { code: "PSK_FINISH", version: 0x12, requesterVerifyData: x(32, 0x7b) },
  },
  { title: "PSK_FINISH_RSP", bytes: hex("12670000"), msg: { code: "PSK_FINISH_RSP", version: 0x12 } },
  { title: "HEARTBEAT", bytes: hex("12e80000"), msg: { code: "HEARTBEAT", version: 0x12 } },
  { title: "HEARTBEAT_ACK", bytes: hex("12680000"), msg: { code: "HEARTBEAT_ACK", version: 0x12 } },
  {
    title: "KEY_UPDATE UpdateKey",
    bytes: hex("12e90188"),
    msg: { code: "KEY_UPDATE", version: 0x12, operation: 1, tag: 0x88 },
  },
  {
    title: "KEY_UPDATE_ACK",
    bytes: hex("12690188"),
    msg: { code: "KEY_UPDATE_ACK", version: 0x12, operation: 1, tag: 0x88 },
  },
  {
    title: "END_SESSION",
    bytes: hex("12ec0100"),
    msg: { code: "END_SESSION", version: 0x12, attributes: 1 },
  },
  { title: "END_SESSION_ACK", bytes: hex("126c0000"), msg: { code: "END_SESSION_ACK", version: 0x12 } },
  {
    title: "VENDOR_DEFINED_REQUEST (PCI-SIG)",
    bytes: hex("13fe0000 0300 02 0100 0500 0001020304"),
    msg: {
      code: "VENDOR_DEFINED_REQUEST",
      version: 0x13,
      standardId: 3,
      vendorId: hex("0100"),
      payload: hex("0001020304"),
    },
  },
  {
    title: "VENDOR_DEFINED_RESPONSE (CXL)",
    bytes: hex("137e0000 0700 02 981e 0100 ff"),
    msg: {
      code: "VENDOR_DEFINED_RESPONSE",
      version: 0x13,
      standardId: 7,
      vendorId: hex("981e"),
      payload: hex("ff"),
    },
  },
  // 1.4 layouts (libspdm 1e16c60f, spdm.h and the SPDM_MESSAGE_VERSION_14 paths).
  {
    title: "FINISH 1.4: OpaqueLength before the signature and verify data",
    bytes: cat("14e50000 0000", x(32, 0xaa)),
    ctx: SHA256,
    msg: {
      code: "FINISH",
      version: 0x14,
      attributes: 0,
      reqSlotId: 0,
      opaqueData: Buffer.alloc(0),
      signature: Buffer.alloc(0),
      requesterVerifyData: x(32, 0xaa),
    },
  },
  {
    title: "FINISH_RSP 1.4 with opaque data",
    bytes: hex("14650000 0200 abcd"),
    ctx: { ...SHA256, handshakeInTheClear: false },
    msg: { code: "FINISH_RSP", version: 0x14, opaqueData: hex("abcd"), responderVerifyData: Buffer.alloc(0) },
  },
  {
    title: "PSK_FINISH 1.4",
    bytes: cat("14e70000 0000", x(32, 0xbb)),
    ctx: SHA256,
    msg: { code: "PSK_FINISH", version: 0x14, opaqueData: Buffer.alloc(0), requesterVerifyData: x(32, 0xbb) },
  },
  {
    title: "PSK_FINISH_RSP 1.4",
    bytes: hex("14670000 0000"),
    msg: { code: "PSK_FINISH_RSP", version: 0x14, opaqueData: Buffer.alloc(0) },
  },
  {
    title: "CHUNK_SEND 1.4: 32-bit ChunkSeqNo, no reserved bytes",
    bytes: hex("14850005 00000000 03000000 10000000 aabbcc"),
    msg: {
      code: "CHUNK_SEND",
      version: 0x14,
      attributes: 0,
      handle: 5,
      chunkSeqNo: 0,
      largeMessageSize: 16,
      chunk: hex("aabbcc"),
    },
  },
  {
    title: "CHUNK_SEND_ACK 1.4",
    bytes: hex("14050005 02000000"),
    msg: { code: "CHUNK_SEND_ACK", version: 0x14, attributes: 0, handle: 5, chunkSeqNo: 2 },
  },
  {
    title: "CHUNK_GET 1.4",
    bytes: hex("14860005 01000100"),
    msg: { code: "CHUNK_GET", version: 0x14, handle: 5, chunkSeqNo: 0x10001 },
  },
  {
    title: "CHUNK_RESPONSE 1.4, last chunk",
    bytes: hex("14060105 07000000 02000000 eeff"),
    msg: {
      code: "CHUNK_RESPONSE",
      version: 0x14,
      attributes: 1,
      handle: 5,
      chunkSeqNo: 7,
      chunk: hex("eeff"),
    },
  },
  {
    title: "VENDOR_DEFINED_REQUEST 1.4 LargeReq: reserved u16, u32 length",
    bytes: hex("14fe8000 0300 02 0100 0000 05000000 0001020304"),
    msg: {
      code: "VENDOR_DEFINED_REQUEST",
      version: 0x14,
      large: true,
      standardId: 3,
      vendorId: hex("0100"),
      payload: hex("0001020304"),
    },
  },
  {
    title: "VENDOR_DEFINED_RESPONSE 1.4 in the 16-bit form",
    bytes: hex("147e0000 0300 02 0100 0100 ff"),
    msg: {
      code: "VENDOR_DEFINED_RESPONSE",
      version: 0x14,
      standardId: 3,
      vendorId: hex("0100"),
      payload: hex("ff"),
    },
  },
  {
    title: "GET_CERTIFICATE 1.4 LargeCertChain: 32-bit offset and length after the 16-bit ones",
    bytes: hex("14828200 0000 0000 00040000 00100000"),
    msg: {
      code: "GET_CERTIFICATE",
      version: 0x14,
      slotId: 0x82,
      attributes: 0,
      offset: 0,
      length: 0,
      largeOffset: 0x400,
      largeLength: 0x1000,
    },
  },
  {
    title: "CERTIFICATE 1.4 LargeCertChain: 32-bit portion and remainder",
    bytes: hex("14028101 0000 0000 03000000 05000000 aabbcc"),
    msg: {
      code: "CERTIFICATE",
      version: 0x14,
      slotId: 0x81,
      attributes: 1,
      remainderLength: 5,
      certChain: hex("aabbcc"),
    },
  },
  {
    title: "a code without a codec (GET_SUPPORTED_EVENT_TYPES) is kept raw",
    bytes: hex("13e20102 0304"),
    msg: {
      code: "UNKNOWN",
      version: 0x13,
      requestResponseCode: 0xe2,
      param1: 1,
      param2: 2,
      payload: hex("0304"),
    },
  },
];

describe("SPDM codec: hand-written vectors (DSP0274 message tables)", () => {
  it.each(CASES)("$title", ({ bytes, ctx, msg }) => {
    expect(decodeSpdm(bytes, ctx)).toEqual(msg);
    expect(encodeSpdm(msg)).toEqual(bytes);
  });

  it.each(
    CASES.filter((c) => c.msg.code !== "UNKNOWN" && !(c.msg.code === "ERROR" && c.msg.errorCode === 0xff)),
  )("$title: the exact length survives 1–3 bytes of DOE padding", ({ bytes, ctx }) => {
    for (const pad of [1, 2, 3]) {
      const padded = Buffer.concat([bytes, Buffer.alloc(pad)]);
      expect(spdmMessageLength(padded, ctx)).toBe(bytes.length);
    }
  });
});

describe("SPDM codec: malformed input and missing context", () => {
  it("rejects a short header", () => {
    const e = decodeError(() => decodeSpdm(hex("1284")));
    expect([e.field, e.offset]).toEqual(["spdm.header", 0]);
    expect(() => decodeSpdmHeader(hex("12"))).toThrow(DecodeError);
  });

  it("names the truncated field and its offset", () => {
    const e = decodeError(() => decodeSpdm(cat("128300ff", x(31, 0x11))));
    expect([e.field, e.offset]).toEqual(["CHALLENGE.nonce", 4]);
    const e2 = decodeError(() => decodeSpdm(hex("12020100 0300 0500 a1a2")));
    expect([e2.field, e2.offset]).toEqual(["CERTIFICATE.certChain", 8]);
  });

  it("asks for the context a layout depends on", () => {
    const digests = cat("12010001", x(32, 0xaa));
    expect(decodeError(() => decodeSpdm(digests)).field).toBe("context.hashSize");
    expect(decodeError(() => decodeSpdm(cat("13010101", x(32, 0xaa)), SHA256)).field).toBe(
      "context.multiKeyConn",
    );
    const rsp = cat("12650000", x(32, 1));
    expect(decodeError(() => decodeSpdm(rsp, SHA256)).field).toBe("context.handshakeInTheClear");
    const auth = cat("12030001", x(32, 0), x(32, 0), "0000", x(64, 0));
    expect(decodeError(() => decodeSpdm(auth, SHA256)).field).toBe("context.measurementSummaryHashType");
  });

  it("tolerates zero padding but not other trailing bytes, unless told", () => {
    const e = decodeError(() => decodeSpdm(hex("12e80000 0001")));
    expect([e.field, e.offset]).toEqual(["spdm.trailing", 5]);
    expect(decodeSpdmWithLength(hex("12e80000 0001"), { trailing: "any" }).byteLength).toBe(4);
    expect(decodeError(() => decodeSpdm(hex("12e80000 00"), { trailing: "none" })).field).toBe(
      "spdm.trailing",
    );
  });

  it("checks NEGOTIATE_ALGORITHMS Length against its fields", () => {
    const e = decodeError(() =>
      decodeSpdm(hex("12e30100 2000 01 02 90000000 03000000 000000000000000000000000 00 00 00 00 02201800")),
    );
    expect([e.field, e.offset, e.reason]).toEqual([
      "NEGOTIATE_ALGORITHMS.length",
      4,
      "says 32 bytes, the fields take 36",
    ]);
  });

  it("rejects an algorithm struct with a fixed byte count other than 2", () => {
    const e = decodeError(() =>
      decodeSpdm(hex("12e30100 2400 01 02 90000000 03000000 000000000000000000000000 00 00 00 00 02301800")),
    );
    expect([e.field, e.offset]).toEqual(["NEGOTIATE_ALGORITHMS.algStructs[0].algCount", 33]);
  });

  it("checks the measurement record against NumberOfBlocks and the measurement hash size", () => {
    const record = "01 01 0700 82 0400 01020304";
    const twoBlocks = cat("12600000 02 0b0000", record, x(32, 0x77), "0000");
    const e = decodeError(() => decodeSpdm(twoBlocks, { measurementSignatureRequested: false }));
    expect(e.field).toBe("MEASUREMENTS.numberOfBlocks");
    const digest = cat("12600000 01 0b0000", "01 01 0700 02 0400 01020304", x(32, 0x77), "0000");
    const e2 = decodeError(() =>
      decodeSpdm(digest, { measurementSignatureRequested: false, measurementHashSize: 64 }),
    );
    expect([e2.field, e2.offset]).toEqual(["MEASUREMENTS.measurement.value", 15]);
  });

  it("refuses to encode inconsistent messages", () => {
    const challenge = {
      code: "CHALLENGE",
      version: 0x13,
      slotId: 0,
      measurementSummaryHashType: 0,
      nonce: x(32, 1),
    };
    expect(() => encodeSpdm(challenge as SpdmMessage)).toThrow(RangeError);
    expect(() =>
      encodeSpdm({ ...challenge, version: 0x12, requesterContext: x(8, 1) } as SpdmMessage),
    ).toThrow(RangeError);
    expect(() => encodeSpdm({ ...challenge, version: 0x12, nonce: x(31, 1) } as SpdmMessage)).toThrow(
      RangeError,
    );
    expect(() => encodeSpdm({ code: "KEY_UPDATE", version: 0x12, operation: 256, tag: 0 })).toThrow(
      RangeError,
    );
  });
});

describe("SPDM measurement records", () => {
  it("decodes DMTF blocks and builds them", () => {
    const rec = hex("01 01 0700 82 0400 01020304  fe 01 0300 05 0000  10 02 0200 abcd");
    const blocks = decodeMeasurementRecord(rec, { numberOfBlocks: 3 });
    expect(
      blocks.map((b) => [b.index, b.measurementSpecification, b.dmtf?.type, b.dmtf?.rawBitStream]),
    ).toEqual([
      [1, 1, 2, true],
      [0xfe, 1, 5, false],
      [0x10, 2, undefined, undefined],
    ]);
    expect(blocks[0]?.dmtf?.value).toEqual(hex("01020304"));
    expect(encodeMeasurementRecord(blocks)).toEqual(rec);
    expect(dmtfMeasurementBlock(1, 0x82, hex("01020304"))).toEqual(blocks[0]);
  });

  it("rejects a DMTF ValueSize that disagrees with MeasurementSize", () => {
    const e = decodeError(() => decodeMeasurementRecord(hex("01 01 0700 82 0500 01020304")));
    expect([e.field, e.offset]).toEqual(["measurement.valueSize", 5]);
  });
});

describe("SPDM code registry", () => {
  it("maps codes and names both ways", () => {
    expect(spdmCodeName(0xe4)).toBe("KEY_EXCHANGE");
    expect(spdmCodeName(0x7f)).toBe("ERROR");
    expect(spdmCodeLabel(0x42)).toBe("0x42");
    expect(spdmErrorName(0x42)).toBe("ResponseNotReady");
    expect(spdmErrorName(0x07)).toBe("UnsupportedRequest");
    expect(responseCodeFor(SpdmRequestCode.GET_MEASUREMENTS)).toBe(0x60);
    expect(responseCodeFor(SpdmRequestCode.RESPOND_IF_READY)).toBeUndefined();
    expect(versionFromEntry(0x1200)).toBe(0x12);
    expect(bitNames(ResponderCapability, 0x8003)).toEqual([
      "CACHE_CAP",
      "CERT_CAP",
      "HANDSHAKE_IN_THE_CLEAR_CAP",
    ]);
    expect(bitNames(BaseHashAlgo, 0x82)).toEqual(["SHA_384", "0x80"]);
  });
});

// ---- known answers: every SPDM message DMTF's spdm-emu sent in the recordings --------------------

const SIZES: Record<string, number> = { SHA_256: 32, SHA_384: 48, ECDSA_P256: 64, ECDSA_P384: 96 };

/** Per-request context a response decoder needs, from the request it answers. */
function replay(capture: (typeof CAPTURES)[number], counts: Map<string, number>) {
  const { messages, negotiated } = readDecoded(capture);
  const vca: Partial<{
    getCapabilities: GetCapabilities;
    capabilities: Capabilities;
    negotiateAlgorithms: NegotiateAlgorithms;
    algorithms: Algorithms;
  }> = {};
  let ctx: DecodeContext = {};
  let lastRequest: SpdmMessage | undefined;
  const check = (frame: MessageFrame) => {
    const isRequest = (frame.plain[1]! & 0x80) !== 0;
    const full = { ...ctx, ...(isRequest ? {} : requestContext(lastRequest)) };
    const { message, byteLength } = decodeSpdmWithLength(frame.plain, full);
    expect(message.code, `frame ${frame.index}`).toBe(frame.name);
    expect(byteLength).toBe(frame.plain.length);
    expect(encodeSpdm(message), `frame ${frame.index} ${frame.name}`).toEqual(frame.plain);
    // Cleartext frames: the DOE body is the message plus zero padding; the decoder finds the end.
    if (frame.doeType === 1 && frame.wire) {
      const body = frame.wire.subarray(8);
      expect(body.length - frame.plain.length).toBe(frame.pad);
      expect(decodeSpdmWithLength(body, full).byteLength).toBe(frame.plain.length);
    }
    if (message.code === "MEASUREMENTS") {
      const blocks = decodeMeasurementRecord(message.measurementRecord, {
        numberOfBlocks: message.numberOfBlocks,
        measurementHashSize: ctx.measurementHashSize,
      });
      expect(encodeMeasurementRecord(blocks)).toEqual(message.measurementRecord);
    }
    counts.set(frame.name, (counts.get(frame.name) ?? 0) + 1);
    if (isRequest) lastRequest = message;
    return message;
  };
  for (const frame of messages) {
    const m = check(frame);
    if (m.code === "GET_CAPABILITIES") vca.getCapabilities = m;
    if (m.code === "CAPABILITIES") vca.capabilities = m;
    if (m.code === "NEGOTIATE_ALGORITHMS") vca.negotiateAlgorithms = m;
    if (m.code === "ALGORITHMS") {
      ctx = negotiatedContext({ ...vca, algorithms: m });
      // The context derived from the messages agrees with the capture's header line.
      expect(ctx.hashSize).toBe(SIZES[negotiated.hash]);
      expect(ctx.asymSignatureSize).toBe(SIZES[negotiated.asym]);
      expect(ctx.measurementHashSize).toBe(64);
      expect(ctx.dheExchangeSize).toBe(96);
      expect(ctx.handshakeInTheClear).toBe(true);
      expect(ctx.multiKeyConn).toBe(negotiated.multiKey);
    }
  }
  return messages.length;
}

describe("SPDM codec: DMTF spdm-emu recordings (test/fixtures/vectors)", () => {
  const counts = new Map<string, number>();
  let total = 0;

  it.each(CAPTURES)("%s: every message decodes and re-encodes to the same bytes", (capture) => {
    total += replay(capture, counts);
  });

  it("covered every message the recordings hold", () => {
    const summary = Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));
    console.log("SPDM messages per name across all captures:", summary);
    expect(total).toBe(4050);
    expect(summary).toEqual({
      ALGORITHMS: 6,
      CAPABILITIES: 6,
      CERTIFICATE: 12,
      CHALLENGE: 3,
      CHALLENGE_AUTH: 3,
      DIGESTS: 12,
      END_SESSION: 9,
      END_SESSION_ACK: 9,
      ERROR: 1722,
      FINISH: 6,
      FINISH_RSP: 6,
      GET_CAPABILITIES: 6,
      GET_CERTIFICATE: 12,
      GET_DIGESTS: 12,
      GET_MEASUREMENTS: 1841,
      GET_VERSION: 6,
      HEARTBEAT: 6,
      HEARTBEAT_ACK: 6,
      KEY_EXCHANGE: 6,
      KEY_EXCHANGE_RSP: 6,
      KEY_UPDATE: 12,
      KEY_UPDATE_ACK: 12,
      MEASUREMENTS: 119,
      NEGOTIATE_ALGORITHMS: 6,
      PSK_EXCHANGE: 3,
      PSK_EXCHANGE_RSP: 3,
      PSK_FINISH: 3,
      PSK_FINISH_RSP: 3,
      VENDOR_DEFINED_REQUEST: 94,
      VENDOR_DEFINED_RESPONSE: 94,
      VERSION: 6,
    });
  });

  it("decodes the 1.3 MULTI_KEY_CONN DIGESTS (slots 0, 1, 4)", () => {
    const frame = readDecoded("spdm13_keyex").messages.find((m) => m.name === "DIGESTS")!;
    const m = decodeSpdm(frame.plain, { hashSize: 48, multiKeyConn: true }) as MessageOf<"DIGESTS">;
    expect(frame.plain.length).toBe(160);
    expect([m.supportedSlotMask, m.provisionedSlotMask, m.digests.length]).toEqual([0x13, 0x13, 3]);
    expect(m.keyUsageMasks).toEqual([0xf, 0xf, 0xf]);
  });
});

// ---- properties ---------------------------------------------------------------------------------

const contextArb: fc.Arbitrary<DecodeContext> = fc.oneof(
  fc.constant({}),
  fc.record({
    hashSize: fc.constantFrom(32, 48, 64),
    asymSignatureSize: fc.constantFrom(64, 96, 132, 384),
    reqAsymSignatureSize: fc.constantFrom(64, 96, 384),
    dheExchangeSize: fc.constantFrom(64, 96, 256),
    measurementHashSize: fc.constantFrom(0, 32, 64),
    multiKeyConn: fc.boolean(),
    handshakeInTheClear: fc.boolean(),
    measurementSummaryHashType: fc.constantFrom(0, 1, 0xff),
    measurementSignatureRequested: fc.boolean(),
    trailing: fc.constantFrom("zeros" as const, "none" as const, "any" as const),
  }),
);

/** Random bodies behind a plausible header, so that every codec's deeper paths get exercised. */
const messageArb = fc
  .tuple(
    fc.constantFrom(0x10, 0x11, 0x12, 0x13, 0x00, 0x20),
    fc.constantFrom(...CODEC_CODES, 0xed),
    fc.uint8Array({ maxLength: 2 }),
    fc.uint8Array({ maxLength: 400 }),
  )
  .map(([v, c, params, body]) => Buffer.concat([Buffer.from([v, c]), params, body]));

function decodeOrDecodeError(bytes: Uint8Array, ctx: DecodeContext) {
  try {
    return decodeSpdmWithLength(bytes, ctx);
  } catch (e) {
    if (e instanceof DecodeError) return undefined;
    throw e;
  }
}

describe("SPDM codec properties", () => {
  it("random bytes either decode or throw DecodeError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), contextArb, (bytes, ctx) => {
        decodeOrDecodeError(bytes, ctx);
      }),
      { numRuns: 3000 },
    );
  });

  it("random bodies behind known codes either decode or throw DecodeError, and decoding is stable", () => {
    fc.assert(
      fc.property(messageArb, contextArb, (bytes, ctx) => {
        const first = decodeOrDecodeError(bytes, ctx);
        if (!first) return;
        // Reserved bytes come back as zero, so compare the decoded values, then the bytes.
        const again = encodeSpdm(first.message);
        const second = decodeSpdmWithLength(again, ctx);
        expect(second.message).toEqual(first.message);
        expect(second.byteLength).toBe(again.length);
        expect(encodeSpdm(second.message)).toEqual(again);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("SPDM codec: DMTF's pair at SPDM 1.4 (raw recordings in test/fixtures/vectors)", () => {
  it.each(RAW_CAPTURES)("%s: every SPDM message decodes and re-encodes to the same bytes", (capture) => {
    const counts = new Map<string, number>();
    for (const { frame, message, byteLength } of rawMessages(capture)) {
      const where = `frame ${frame.index} ${message.code}`;
      // What follows the message is DOE padding: fewer than 4 zero bytes.
      expect(frame.body.length - byteLength, where).toBeLessThan(4);
      expect(encodeSpdm(message), where).toEqual(frame.body.subarray(0, byteLength));
      if (message.code !== "GET_VERSION" && message.code !== "VERSION")
        expect(message.version, where).toBe(0x14);
      counts.set(message.code, (counts.get(message.code) ?? 0) + 1);
    }
    // MEAS asks for every index 1..254 in turn: the ERRORs are InvalidRequest for those the device lacks.
    expect(Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)))).toEqual({
      ALGORITHMS: 1,
      CAPABILITIES: 1,
      CERTIFICATE: 3,
      CHALLENGE: 1,
      CHALLENGE_AUTH: 1,
      DIGESTS: 3,
      ERROR: 246,
      GET_CAPABILITIES: 1,
      GET_CERTIFICATE: 3,
      GET_DIGESTS: 3,
      GET_MEASUREMENTS: 263,
      GET_VERSION: 1,
      MEASUREMENTS: 17,
      NEGOTIATE_ALGORITHMS: 1,
      VERSION: 1,
    });
  });
});
