/**
 * The SPDM messages as values: one interface per message, all in the tagged union SpdmMessage
 * (discriminated by `code`, the message name). Every message carries the header `version` byte.
 *
 * Conventions:
 * - Param bytes that carry bit fields are kept whole (e.g. `attributes`); the bits are in codes.ts.
 * - Reserved bytes are not kept: decoders ignore them, encoders write zeros.
 * - Counts and lengths that follow from an array or a Buffer are not kept either.
 * - Fields that a version or an earlier field gates are optional (`?`).
 * - Fields sized by the negotiated context are always Buffers, empty when the context says the
 *   field is absent (e.g. `measurementSummaryHash` when the request asked for none).
 */

import type { EncapMessage } from "./encap.js";
import type { ProvisionMessage } from "./provision.js";

interface Msg<C extends string> {
  code: C;
  /** SPDMVersion header byte, e.g. 0x12 for 1.2. */
  version: number;
}

export interface GetVersion extends Msg<"GET_VERSION"> {}

export interface Version extends Msg<"VERSION"> {
  /** VersionNumberEntry values, e.g. 0x1200 for 1.2 (versionFromEntry turns one into 0x12). */
  versionNumberEntries: number[];
}

/** GET_CAPABILITIES: 4 bytes at 1.0, 12 at 1.1, 20 from 1.2. */
export interface GetCapabilities extends Msg<"GET_CAPABILITIES"> {
  /** Param1; 1.3 bit 0 asks for the Supported Algorithms block. */
  attributes: number;
  /** 1.1+ */
  ctExponent?: number;
  /** 1.1+ (reserved before 1.4) */
  extFlags?: number;
  /** 1.1+; RequesterCapability bits */
  flags?: number;
  /** 1.2+ */
  dataTransferSize?: number;
  /** 1.2+ */
  maxSpdmMsgSize?: number;
}

/** CAPABILITIES: 12 bytes at 1.0/1.1, 20 from 1.2, plus the Supported Algorithms block at 1.3. */
export interface Capabilities extends Msg<"CAPABILITIES"> {
  /** Param1; 1.3 bit 0 = the Supported Algorithms block follows. */
  attributes: number;
  ctExponent: number;
  /** Reserved before 1.4. */
  extFlags: number;
  /** ResponderCapability bits */
  flags: number;
  /** 1.2+ */
  dataTransferSize?: number;
  /** 1.2+ */
  maxSpdmMsgSize?: number;
  /** 1.3, when attributes bit 0 is set. */
  supportedAlgorithms?: AlgorithmsRequestFields;
}

/** Extended algorithm entry (4 bytes): registry, reserved, algorithm ID. */
export interface ExtendedAlgorithm {
  registryId: number;
  algorithmId: number;
}

/** ReqAlgStruct / RespAlgStruct table (1.1+): DHE, AEAD, ReqBaseAsymAlg, KeySchedule. */
export interface AlgStruct {
  /** AlgType (2 DHE, 3 AEAD, 4 ReqBaseAsymAlg, 5 KeySchedule). */
  algType: number;
  /** AlgSupported (request: offered bits; response: the one selected bit). */
  algSupported: number;
  /** AlgExternal entries. */
  extAlgs: ExtendedAlgorithm[];
}

/** The body NEGOTIATE_ALGORITHMS shares with the 1.3 Supported Algorithms block of CAPABILITIES. */
export interface AlgorithmsRequestFields {
  measurementSpecification: number;
  /** 1.2+: opaque data format bits, 1.3 bit 4 MULTI_KEY_CONN. */
  otherParamsSupport: number;
  baseAsymAlgo: number;
  baseHashAlgo: number;
  /** 1.4 PqcAsymAlgo (ML-DSA, SLH-DSA bits); absent when zero. */
  pqcAsymAlgo?: number;
  /** 1.3 */
  melSpecification: number;
  extAsym: ExtendedAlgorithm[];
  extHash: ExtendedAlgorithm[];
  algStructs: AlgStruct[];
}

export interface NegotiateAlgorithms extends Msg<"NEGOTIATE_ALGORITHMS">, AlgorithmsRequestFields {}

export interface Algorithms extends Msg<"ALGORITHMS"> {
  measurementSpecificationSel: number;
  otherParamsSelection: number;
  measurementHashAlgo: number;
  baseAsymSel: number;
  baseHashSel: number;
  /** 1.4 PqcAsymSel; absent when zero. */
  pqcAsymSel?: number;
  melSpecificationSel: number;
  extAsymSel: ExtendedAlgorithm[];
  extHashSel: ExtendedAlgorithm[];
  algStructs: AlgStruct[];
}

export interface GetDigests extends Msg<"GET_DIGESTS"> {}

/** DIGESTS: one H-byte digest per bit of provisionedSlotMask, lowest slot first. */
export interface Digests extends Msg<"DIGESTS"> {
  /** Param1: SupportedSlotMask (1.3; reserved before). */
  supportedSlotMask: number;
  /** Param2: ProvisionedSlotMask (the slot mask before 1.3). */
  provisionedSlotMask: number;
  digests: Buffer[];
  /** 1.3 with MULTI_KEY_CONN: one entry per digest each. */
  keyPairIds?: number[];
  certificateInfos?: number[];
  keyUsageMasks?: number[];
}

export interface GetCertificate extends Msg<"GET_CERTIFICATE"> {
  /** Param1: SlotID in bits 3:0. */
  slotId: number;
  /** Param2 (1.3: bit 0 SlotSizeRequested). */
  attributes: number;
  offset: number;
  length: number;
  /** 1.4 with LargeCertChain (slotId bit 7): the 32-bit offset and length that apply instead. */
  largeOffset?: number;
  largeLength?: number;
}

export interface Certificate extends Msg<"CERTIFICATE"> {
  slotId: number;
  /** Param2 (1.3: bits 2:0 certificate model). */
  attributes: number;
  /** 32-bit (LargePortionLength/LargeRemainderLength) with 1.4 LargeCertChain (slotId bit 7). */
  remainderLength: number;
  /** This portion of the chain; PortionLength is its length. */
  certChain: Buffer;
}

export interface Challenge extends Msg<"CHALLENGE"> {
  slotId: number;
  measurementSummaryHashType: number;
  nonce: Buffer;
  /** 1.3 */
  requesterContext?: Buffer;
}

export interface ChallengeAuth extends Msg<"CHALLENGE_AUTH"> {
  /** Param1: slot ID in bits 3:0, bit 7 BasicMutAuthReq (deprecated in 1.2). */
  attributes: number;
  slotMask: number;
  certChainHash: Buffer;
  nonce: Buffer;
  /** H bytes, or empty when CHALLENGE asked for no summary hash. */
  measurementSummaryHash: Buffer;
  opaqueData: Buffer;
  /** 1.3 */
  requesterContext?: Buffer;
  signature: Buffer;
}

export interface GetMeasurements extends Msg<"GET_MEASUREMENTS"> {
  /** Param1: MeasurementAttribute bits. */
  attributes: number;
  /** Param2: 0 = count, 1..0xFE = one index, 0xFF = all. */
  operation: number;
  /** When a signature is requested. */
  nonce?: Buffer;
  /** When a signature is requested, 1.1+. */
  slotIdParam?: number;
  /** 1.3 */
  requesterContext?: Buffer;
}

export interface Measurements extends Msg<"MEASUREMENTS"> {
  /** Param1: total number of measurement indices when the request's operation was 0, else reserved. */
  totalMeasurementIndices: number;
  /** Param2: slot ID bits 3:0, content-changed bits 5:4. */
  slotIdParam: number;
  numberOfBlocks: number;
  /** The measurement blocks as sent; decodeMeasurementRecord splits them. */
  measurementRecord: Buffer;
  nonce: Buffer;
  opaqueData: Buffer;
  /** 1.3 */
  requesterContext?: Buffer;
  /** S bytes when the request asked for a signature, else empty. */
  signature: Buffer;
}

export interface ResponseNotReadyData {
  rdtExponent: number;
  requestCode: number;
  token: number;
  rdtm: number;
}

export interface ErrorMessage extends Msg<"ERROR"> {
  errorCode: number;
  errorData: number;
  /** errorCode ResponseNotReady (0x42). */
  responseNotReady?: ResponseNotReadyData;
  /** errorCode LargeResponse (0x0F). */
  largeResponseHandle?: number;
  /** errorCode DataTooLarge (0x12, 1.4): the size of what was asked for (libspdm: CertChainTooLarge's chain length). */
  dataSize?: number;
  /**
   * Extended data of VendorDefined (0xFF) and of codes this registry doesn't know. It is not
   * self-delimiting, so it runs to the end of the buffer (padding included).
   */
  extendedErrorData?: Buffer;
}

export interface RespondIfReady extends Msg<"RESPOND_IF_READY"> {
  requestCode: number;
  token: number;
}

interface ChunkFields {
  /** Param1: bit 0 LastChunk. */
  attributes: number;
  handle: number;
  /** u16 before 1.4, u32 from 1.4 (also in CHUNK_SEND_ACK and CHUNK_GET). */
  chunkSeqNo: number;
  /** Only in chunk 0. */
  largeMessageSize?: number;
  chunk: Buffer;
}

export interface ChunkSend extends Msg<"CHUNK_SEND">, ChunkFields {}
export interface ChunkResponse extends Msg<"CHUNK_RESPONSE">, ChunkFields {}

export interface ChunkSendAck extends Msg<"CHUNK_SEND_ACK"> {
  /** Param1: bit 0 EarlyErrorDetected. */
  attributes: number;
  handle: number;
  chunkSeqNo: number;
  /** After the last chunk: the exact response to the large request. */
  response?: Buffer;
}

export interface ChunkGet extends Msg<"CHUNK_GET"> {
  handle: number;
  chunkSeqNo: number;
}

export interface KeyExchange extends Msg<"KEY_EXCHANGE"> {
  measurementSummaryHashType: number;
  slotId: number;
  reqSessionId: number;
  /** 1.2+ (reserved at 1.1). */
  sessionPolicy: number;
  randomData: Buffer;
  /** D bytes. */
  exchangeData: Buffer;
  opaqueData: Buffer;
}

export interface KeyExchangeRsp extends Msg<"KEY_EXCHANGE_RSP"> {
  heartbeatPeriod: number;
  rspSessionId: number;
  mutAuthRequested: number;
  reqSlotIdParam: number;
  randomData: Buffer;
  exchangeData: Buffer;
  /** H bytes, or empty when KEY_EXCHANGE asked for none. */
  measurementSummaryHash: Buffer;
  opaqueData: Buffer;
  signature: Buffer;
  /** H bytes, empty when the handshake is in the clear. */
  responderVerifyData: Buffer;
}

export interface Finish extends Msg<"FINISH"> {
  /** Param1: bit 0 = signature included. */
  attributes: number;
  reqSlotId: number;
  /** 1.4+ */
  opaqueData?: Buffer;
  /** ReqBaseAsym signature when attributes bit 0 is set, else empty. */
  signature: Buffer;
  requesterVerifyData: Buffer;
}

export interface FinishRsp extends Msg<"FINISH_RSP"> {
  /** 1.4+ */
  opaqueData?: Buffer;
  /** H bytes only when the handshake is in the clear, else empty. */
  responderVerifyData: Buffer;
}

export interface PskExchange extends Msg<"PSK_EXCHANGE"> {
  measurementSummaryHashType: number;
  /** Param2 (1.2+). */
  sessionPolicy: number;
  reqSessionId: number;
  pskHint: Buffer;
  requesterContext: Buffer;
  opaqueData: Buffer;
}

export interface PskExchangeRsp extends Msg<"PSK_EXCHANGE_RSP"> {
  heartbeatPeriod: number;
  rspSessionId: number;
  measurementSummaryHash: Buffer;
  responderContext: Buffer;
  opaqueData: Buffer;
  responderVerifyData: Buffer;
}

export interface PskFinish extends Msg<"PSK_FINISH"> {
  /** 1.4+ */
  opaqueData?: Buffer;
  requesterVerifyData: Buffer;
}

export interface PskFinishRsp extends Msg<"PSK_FINISH_RSP"> {
  /** 1.4+ */
  opaqueData?: Buffer;
}
export interface Heartbeat extends Msg<"HEARTBEAT"> {}
export interface HeartbeatAck extends Msg<"HEARTBEAT_ACK"> {}

interface KeyUpdateFields {
  /** KeyUpdateOperation */
  operation: number;
  tag: number;
}
export interface KeyUpdate extends Msg<"KEY_UPDATE">, KeyUpdateFields {}
export interface KeyUpdateAck extends Msg<"KEY_UPDATE_ACK">, KeyUpdateFields {}

export interface EndSession extends Msg<"END_SESSION"> {
  /** Param1: bit 0 = clear the negotiated state. */
  attributes: number;
}
export interface EndSessionAck extends Msg<"END_SESSION_ACK"> {}

/** Generic vendor-defined form: a 16-bit payload length, or 32-bit in the 1.4 large form. */
export interface VendorFields {
  /** 1.4 Param1 bit 7 (LargeReq/LargeResp): the payload length is a u32 after 2 reserved bytes. */
  large?: boolean;
  /** Registry (RegistryId), e.g. 3 = PCI-SIG. */
  standardId: number;
  vendorId: Buffer;
  payload: Buffer;
}
export interface VendorDefinedRequest extends Msg<"VENDOR_DEFINED_REQUEST">, VendorFields {}
export interface VendorDefinedResponse extends Msg<"VENDOR_DEFINED_RESPONSE">, VendorFields {}

/** Any code without a codec here; the body runs to the end of the buffer (padding included). */
export interface UnknownMessage extends Msg<"UNKNOWN"> {
  requestResponseCode: number;
  param1: number;
  param2: number;
  payload: Buffer;
}

export type SpdmMessage =
  | GetVersion
  | Version
  | GetCapabilities
  | Capabilities
  | NegotiateAlgorithms
  | Algorithms
  | GetDigests
  | Digests
  | GetCertificate
  | Certificate
  | Challenge
  | ChallengeAuth
  | GetMeasurements
  | Measurements
  | ErrorMessage
  | RespondIfReady
  | ChunkSend
  | ChunkSendAck
  | ChunkGet
  | ChunkResponse
  | KeyExchange
  | KeyExchangeRsp
  | Finish
  | FinishRsp
  | PskExchange
  | PskExchangeRsp
  | PskFinish
  | PskFinishRsp
  | Heartbeat
  | HeartbeatAck
  | KeyUpdate
  | KeyUpdateAck
  | EndSession
  | EndSessionAck
  | VendorDefinedRequest
  | VendorDefinedResponse
  | ProvisionMessage
  | EncapMessage
  | UnknownMessage;

/** Names of the messages with their own codec. */
export type KnownMessageName = Exclude<SpdmMessage["code"], "UNKNOWN">;
export type MessageOf<N extends SpdmMessage["code"]> = Extract<SpdmMessage, { code: N }>;
