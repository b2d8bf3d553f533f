/**
 * The provisioning and inventory messages (DSP0274 1.2–1.3; layouts of libspdm 7199f344 spdm.h):
 * GET_MEASUREMENT_EXTENSION_LOG / MEASUREMENT_EXTENSION_LOG (1.3), GET_CSR / CSR (1.2; KeyPairID and
 * attributes 1.3), SET_CERTIFICATE / SET_CERTIFICATE_RSP (1.2; model, erase and KeyPairID 1.3),
 * GET_KEY_PAIR_INFO / KEY_PAIR_INFO and SET_KEY_PAIR_INFO / SET_KEY_PAIR_INFO_ACK (1.3, with the
 * 1.4 PQC fields when the header says 1.4), GET_ENDPOINT_INFO / ENDPOINT_INFO (1.3). codec.ts
 * registers these schemas beside its own; the value types join SpdmMessage in messages.ts.
 */
import { requireBytes } from "../errors.js";
import { NONCE_SIZE } from "./codes.js";
import { type Field, type Need, schema } from "./schema.js";

interface Msg<C extends string> {
  code: C;
  version: number;
}

export interface GetMeasurementExtensionLog extends Msg<"GET_MEASUREMENT_EXTENSION_LOG"> {
  offset: number;
  length: number;
}

export interface MeasurementExtensionLog extends Msg<"MEASUREMENT_EXTENSION_LOG"> {
  remainderLength: number;
  /** This portion of the log; PortionLength is its length. */
  mel: Buffer;
}

export interface GetCsr extends Msg<"GET_CSR"> {
  /** Param1: KeyPairID (1.3; reserved before). */
  keyPairId: number;
  /** Param2 (1.3): bits 2:0 certificate model, 5:3 CSRTrackingTag, bit 7 Overwrite. */
  attributes: number;
  /** DER of a PKCS#10 CertificationRequestInfo template (or empty). */
  requesterInfo: Buffer;
  opaqueData: Buffer;
}

export interface Csr extends Msg<"CSR"> {
  /** DER of the PKCS#10 CertificationRequest. */
  csr: Buffer;
}

export interface SetCertificate extends Msg<"SET_CERTIFICATE"> {
  /** Param1: slot bits 3:0; 1.3: certificate model bits 6:4, bit 7 Erase. */
  attributes: number;
  /** Param2: KeyPairID (1.3; reserved before). */
  keyPairId: number;
  /** The SPDM certificate chain (its Length field says where it ends); absent when erasing. */
  certChain?: Buffer;
}

export interface SetCertificateRsp extends Msg<"SET_CERTIFICATE_RSP"> {
  /** Param1 bits 3:0. */
  slotId: number;
}

export interface GetKeyPairInfo extends Msg<"GET_KEY_PAIR_INFO"> {
  keyPairId: number;
}

export interface KeyPairInfo extends Msg<"KEY_PAIR_INFO"> {
  totalKeyPairs: number;
  keyPairId: number;
  /** KeyPairCapability bits. */
  capabilities: number;
  keyUsageCapabilities: number;
  currentKeyUsage: number;
  /** KeyPairAsymAlgo bits. */
  asymAlgoCapabilities: number;
  currentAsymAlgo: number;
  assocCertSlotMask: number;
  /** DER SubjectPublicKeyInfo. */
  publicKeyInfo: Buffer;
  /** 1.4 */
  pqcAsymAlgoCapabilities?: Buffer;
  /** 1.4 */
  currentPqcAsymAlgo?: Buffer;
}

export interface SetKeyPairInfo extends Msg<"SET_KEY_PAIR_INFO"> {
  /** Param1: KeyPairOperation. */
  operation: number;
  keyPairId: number;
  /** Absent for the erase operation, present for the others. */
  desiredKeyUsage?: number;
  desiredAsymAlgo?: number;
  desiredAssocCertSlotMask?: number;
  /** 1.4, not for erase. */
  desiredPqcAsymAlgo?: Buffer;
}

export interface SetKeyPairInfoAck extends Msg<"SET_KEY_PAIR_INFO_ACK"> {}

export interface GetEndpointInfo extends Msg<"GET_ENDPOINT_INFO"> {
  /** Param1: sub-code (1 = device class identifier). */
  subCode: number;
  /** Param2 bits 3:0. */
  slotId: number;
  /** Bit 0: signature requested. */
  attributes: number;
  /** When a signature is requested. */
  nonce?: Buffer;
}

export interface EndpointInfo extends Msg<"ENDPOINT_INFO"> {
  /** Param2 bits 3:0. */
  slotId: number;
  /** When the request asked for a signature (the context says). */
  nonce?: Buffer;
  epInfo: Buffer;
  /** S bytes when signed, else empty. */
  signature: Buffer;
}

export type ProvisionMessage =
  | GetMeasurementExtensionLog
  | MeasurementExtensionLog
  | GetCsr
  | Csr
  | SetCertificate
  | SetCertificateRsp
  | GetKeyPairInfo
  | KeyPairInfo
  | SetKeyPairInfo
  | SetKeyPairInfoAck
  | GetEndpointInfo
  | EndpointInfo;

/** SET_CERTIFICATE Param1 bit 7 (1.3): erase the slot; no chain follows. */
export const SET_CERTIFICATE_ERASE = 0x80;
/** SET_CERTIFICATE Param1 bits 6:4 and GET_CSR Param2 bits 2:0: the certificate model (CertificateModel). */
export const SET_CERTIFICATE_MODEL_SHIFT = 4;
export const GetCsrAttribute = {
  MODEL_MASK: 0x07,
  TRACKING_TAG_MASK: 0x38,
  TRACKING_TAG_SHIFT: 3,
  OVERWRITE: 0x80,
} as const;
/** SET_KEY_PAIR_INFO Param1. */
export const KeyPairOperation = { Change: 0, Erase: 1, Generate: 2 } as const;
/** KEY_PAIR_INFO Capabilities. */
export const KeyPairCapability = {
  GEN_KEY_CAP: 0x1,
  ERASABLE_CAP: 0x2,
  CERT_ASSOC_CAP: 0x4,
  KEY_USAGE_CAP: 0x8,
  ASYM_ALGO_CAP: 0x10,
  SHAREABLE_CAP: 0x20,
} as const;
/** KEY_PAIR_INFO AsymAlgoCapabilities / CurrentAsymAlgo. */
export const KeyPairAsymAlgo = {
  RSA2048: 0x1,
  RSA3072: 0x2,
  RSA4096: 0x4,
  ECC256: 0x8,
  ECC384: 0x10,
  ECC521: 0x20,
  SM2: 0x40,
  ED25519: 0x80,
  ED448: 0x100,
} as const;
export const ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER = 0x01;
export const ENDPOINT_INFO_SIGNATURE_REQUESTED = 0x1;
/**
 * libspdm's sample EPInfo (libspdm_generate_device_endpoint_info, both roles): one device class
 * identifier, DMTF registry, one sub-ID 12 34 56.
 */
export const SAMPLE_ENDPOINT_INFO = Buffer.from("010000000700000103123456", "hex");
/** DMTF MEL (DSP0274 1.3 "Measurement extension log"): the header, then one entry per extension. */
export const MEL_HEADER_SIZE = 16;

const since = (version: number) => (m: { version: number }) => m.version >= version;
const signed = (m: { attributes: number }) => (m.attributes & ENDPOINT_INFO_SIGNATURE_REQUESTED) !== 0;
const headerOnly: Field<unknown>[] = schema<unknown>((f) => [f.reserved(2)]);

/** SET_CERTIFICATE's chain ends where its own u16 Length says (1.2/1.3 chain form). */
function chainLength(tail: Buffer, n: Need): number {
  requireBytes(n.r.buf, n.r.off, 2, `${n.where}.certChain.length`);
  return tail.readUInt16LE(0);
}

type Schemas = { [K in ProvisionMessage["code"]]: readonly Field<Extract<ProvisionMessage, { code: K }>>[] };

export const PROVISION_SCHEMAS: Schemas = {
  GET_MEASUREMENT_EXTENSION_LOG: schema<GetMeasurementExtensionLog>((f) => [
    f.reserved(2),
    f.u32("offset"),
    f.u32("length"),
  ]),
  MEASUREMENT_EXTENSION_LOG: schema<MeasurementExtensionLog>((f) => [
    f.reserved(2),
    f.len32("mel"),
    f.u32("remainderLength"),
    f.data("mel"),
  ]),
  GET_CSR: schema<GetCsr>((f) => [
    f.u8("keyPairId"),
    f.u8("attributes"),
    f.len16("requesterInfo"),
    f.len16("opaqueData"),
    f.data("requesterInfo"),
    f.data("opaqueData"),
  ]),
  CSR: schema<Csr>((f) => [f.reserved(2), f.len16("csr"), f.reserved(2), f.data("csr")]),
  SET_CERTIFICATE: schema<SetCertificate>((f) => [
    f.u8("attributes"),
    f.u8("keyPairId"),
    f.when(
      (m) => m.version < 0x13 || (m.attributes & SET_CERTIFICATE_ERASE) === 0,
      f.rest("certChain", chainLength),
    ),
  ]),
  SET_CERTIFICATE_RSP: schema<SetCertificateRsp>((f) => [f.u8("slotId"), f.reserved(1)]),
  GET_KEY_PAIR_INFO: schema<GetKeyPairInfo>((f) => [f.reserved(2), f.u8("keyPairId")]),
  KEY_PAIR_INFO: schema<KeyPairInfo>((f) => [
    f.reserved(2),
    f.u8("totalKeyPairs"),
    f.u8("keyPairId"),
    f.u16("capabilities"),
    f.u16("keyUsageCapabilities"),
    f.u16("currentKeyUsage"),
    f.u32("asymAlgoCapabilities"),
    f.u32("currentAsymAlgo"),
    f.len16("publicKeyInfo"),
    f.u8("assocCertSlotMask"),
    f.data("publicKeyInfo"),
    f.when(
      since(0x14),
      f.len8("pqcAsymAlgoCapabilities"),
      f.data("pqcAsymAlgoCapabilities"),
      f.len8("currentPqcAsymAlgo"),
      f.data("currentPqcAsymAlgo"),
    ),
  ]),
  SET_KEY_PAIR_INFO: schema<SetKeyPairInfo>((f) => [
    f.u8("operation"),
    f.reserved(1),
    f.u8("keyPairId"),
    f.when(
      (m) => m.operation !== KeyPairOperation.Erase,
      f.reserved(1),
      f.u16("desiredKeyUsage"),
      f.u32("desiredAsymAlgo"),
      f.u8("desiredAssocCertSlotMask"),
    ),
    f.when(
      (m) => m.version >= 0x14 && m.operation !== KeyPairOperation.Erase,
      f.len8("desiredPqcAsymAlgo"),
      f.data("desiredPqcAsymAlgo"),
    ),
  ]),
  SET_KEY_PAIR_INFO_ACK: headerOnly,
  GET_ENDPOINT_INFO: schema<GetEndpointInfo>((f) => [
    f.u8("subCode"),
    f.u8("slotId"),
    f.u8("attributes"),
    f.reserved(3),
    f.when(signed, f.bytes("nonce", NONCE_SIZE)),
  ]),
  ENDPOINT_INFO: schema<EndpointInfo>((f) => [
    f.reserved(1),
    f.u8("slotId"),
    f.reserved(4),
    f.ctxWhen((_m, n) => n.flag("endpointInfoSignatureRequested"), f.bytes("nonce", NONCE_SIZE)),
    f.len32("epInfo"),
    f.data("epInfo"),
    f.bytes("signature", (_m, n: Need) =>
      n.flag("endpointInfoSignatureRequested") ? n.num("asymSignatureSize") : 0,
    ),
  ]),
};

// ---- the DMTF measurement extension log ---------------------------------------------------------

export interface MelEntry {
  /** MEL index (the position in the log, from 0). */
  melIndex: number;
  /** The measurement index the entry extends. */
  measurementIndex: number;
  /** DMTF value type (bit 7: raw bit stream). */
  valueType: number;
  value: Buffer;
}

/** DMTF MEL: NumberOfEntries u32, MELEntriesLen u32, reserved u64, then the entries (spdm_mel_entry_dmtf_t). */
export function encodeDmtfMel(entries: readonly MelEntry[]): Buffer {
  const body = entries.map((e) => {
    const b = Buffer.alloc(11 + e.value.length);
    b.writeUInt32LE(e.melIndex, 0);
    b.writeUInt8(e.measurementIndex, 4);
    b.writeUInt8(e.valueType, 8);
    b.writeUInt16LE(e.value.length, 9);
    e.value.copy(b, 11);
    return b;
  });
  const entriesLen = body.reduce((n, b) => n + b.length, 0);
  const head = Buffer.alloc(MEL_HEADER_SIZE);
  head.writeUInt32LE(entries.length, 0);
  head.writeUInt32LE(entriesLen, 4);
  return Buffer.concat([head, ...body]);
}
