/**
 * The one registry of SPDM (DSP0274 1.0–1.4) numbers: request/response codes, error codes,
 * versions, capability flags, algorithm bits and the small enums the messages carry
 * (DSP0274 message clauses). Names follow spdm.h of libspdm 1e16c60f without its prefixes.
 */

/** Request codes (bit 7 set). 1.4 codes are listed only so that they get a name in logs. */
export const SpdmRequestCode = {
  GET_DIGESTS: 0x81,
  GET_CERTIFICATE: 0x82,
  CHALLENGE: 0x83,
  GET_VERSION: 0x84,
  CHUNK_SEND: 0x85,
  CHUNK_GET: 0x86,
  GET_ENDPOINT_INFO: 0x87,
  SLOT_MANAGEMENT: 0x88,
  GET_MEASUREMENTS: 0xe0,
  GET_CAPABILITIES: 0xe1,
  GET_SUPPORTED_EVENT_TYPES: 0xe2,
  NEGOTIATE_ALGORITHMS: 0xe3,
  KEY_EXCHANGE: 0xe4,
  FINISH: 0xe5,
  PSK_EXCHANGE: 0xe6,
  PSK_FINISH: 0xe7,
  HEARTBEAT: 0xe8,
  KEY_UPDATE: 0xe9,
  GET_ENCAPSULATED_REQUEST: 0xea,
  DELIVER_ENCAPSULATED_RESPONSE: 0xeb,
  END_SESSION: 0xec,
  GET_CSR: 0xed,
  SET_CERTIFICATE: 0xee,
  GET_MEASUREMENT_EXTENSION_LOG: 0xef,
  SUBSCRIBE_EVENT_TYPES: 0xf0,
  SEND_EVENT: 0xf1,
  GET_KEY_PAIR_INFO: 0xfc,
  SET_KEY_PAIR_INFO: 0xfd,
  VENDOR_DEFINED_REQUEST: 0xfe,
  RESPOND_IF_READY: 0xff,
} as const;

/** Response codes (bit 7 clear). */
export const SpdmResponseCode = {
  DIGESTS: 0x01,
  CERTIFICATE: 0x02,
  CHALLENGE_AUTH: 0x03,
  VERSION: 0x04,
  CHUNK_SEND_ACK: 0x05,
  CHUNK_RESPONSE: 0x06,
  ENDPOINT_INFO: 0x07,
  SLOT_MANAGEMENT_RESP: 0x08,
  MEASUREMENTS: 0x60,
  CAPABILITIES: 0x61,
  SUPPORTED_EVENT_TYPES: 0x62,
  ALGORITHMS: 0x63,
  KEY_EXCHANGE_RSP: 0x64,
  FINISH_RSP: 0x65,
  PSK_EXCHANGE_RSP: 0x66,
  PSK_FINISH_RSP: 0x67,
  HEARTBEAT_ACK: 0x68,
  KEY_UPDATE_ACK: 0x69,
  ENCAPSULATED_REQUEST: 0x6a,
  ENCAPSULATED_RESPONSE_ACK: 0x6b,
  END_SESSION_ACK: 0x6c,
  CSR: 0x6d,
  SET_CERTIFICATE_RSP: 0x6e,
  MEASUREMENT_EXTENSION_LOG: 0x6f,
  SUBSCRIBE_EVENT_TYPES_ACK: 0x70,
  EVENT_ACK: 0x71,
  KEY_PAIR_INFO: 0x7c,
  SET_KEY_PAIR_INFO_ACK: 0x7d,
  VENDOR_DEFINED_RESPONSE: 0x7e,
  ERROR: 0x7f,
} as const;

export const SpdmCode = { ...SpdmRequestCode, ...SpdmResponseCode } as const;
export type SpdmCodeName = keyof typeof SpdmCode;

/** Error codes carried in ERROR Param1. */
export const SpdmErrorCode = {
  InvalidRequest: 0x01,
  /** libspdm's secured-message layer uses it; reserved in DSP0274. */
  InvalidSession: 0x02,
  Busy: 0x03,
  UnexpectedRequest: 0x04,
  Unspecified: 0x05,
  DecryptError: 0x06,
  /** Param2 = the request code that is not supported. */
  UnsupportedRequest: 0x07,
  RequestInFlight: 0x08,
  InvalidResponseCode: 0x09,
  SessionLimitExceeded: 0x0a,
  SessionRequired: 0x0b,
  ResetRequired: 0x0c,
  ResponseTooLarge: 0x0d,
  RequestTooLarge: 0x0e,
  /** Extended data: Handle (u8) for CHUNK_GET. */
  LargeResponse: 0x0f,
  MessageLost: 0x10,
  InvalidPolicy: 0x11,
  DataTooLarge: 0x12,
  VersionMismatch: 0x41,
  /** Extended data: RDTExponent, RequestCode, Token, RDTM (u8 each). */
  ResponseNotReady: 0x42,
  RequestResynch: 0x43,
  OperationFailed: 0x44,
  NoPendingRequests: 0x45,
  RequestSessionTerminated: 0x46,
  InvalidState: 0x47,
  /** Extended data: registry ID, vendor ID length, vendor ID, opaque data — not self-delimiting. */
  VendorDefined: 0xff,
} as const;
export type SpdmErrorName = keyof typeof SpdmErrorCode;

/** SPDMVersion header byte: major << 4 | minor. GET_VERSION and VERSION always carry 1.0. */
export const SpdmVersion = { V1_0: 0x10, V1_1: 0x11, V1_2: 0x12, V1_3: 0x13, V1_4: 0x14 } as const;

/** VERSION entry (u16: major, minor, update, alpha nibbles) ↔ header version byte. */
export const versionFromEntry = (entry: number): number => (entry >> 8) & 0xff;
export const versionEntry = (version: number, update = 0, alpha = 0): number =>
  ((version & 0xff) << 8) | ((update & 0xf) << 4) | (alpha & 0xf);
/** 0x12 → "1.2". */
export const versionName = (version: number): string => `${version >> 4}.${version & 0xf}`;

/** GET_CAPABILITIES Flags. Two-bit fields are listed per value; the masks are in CapabilityField. */
export const RequesterCapability = {
  CERT_CAP: 1 << 1,
  CHAL_CAP: 1 << 2,
  ENCRYPT_CAP: 1 << 6,
  MAC_CAP: 1 << 7,
  MUT_AUTH_CAP: 1 << 8,
  KEY_EX_CAP: 1 << 9,
  PSK_CAP: 1 << 10,
  ENCAP_CAP: 1 << 12,
  HBEAT_CAP: 1 << 13,
  KEY_UPD_CAP: 1 << 14,
  HANDSHAKE_IN_THE_CLEAR_CAP: 1 << 15,
  PUB_KEY_ID_CAP: 1 << 16,
  CHUNK_CAP: 1 << 17,
  EP_INFO_CAP_NO_SIG: 1 << 22,
  EP_INFO_CAP_SIG: 1 << 23,
  EVENT_CAP: 1 << 25,
  MULTI_KEY_CAP_ONLY: 1 << 26,
  MULTI_KEY_CAP_NEG: 1 << 27,
  LARGE_RESP_CAP: 2 ** 31,
} as const;

/** CAPABILITIES Flags. */
export const ResponderCapability = {
  CACHE_CAP: 1 << 0,
  CERT_CAP: 1 << 1,
  CHAL_CAP: 1 << 2,
  MEAS_CAP_NO_SIG: 1 << 3,
  MEAS_CAP_SIG: 1 << 4,
  MEAS_FRESH_CAP: 1 << 5,
  ENCRYPT_CAP: 1 << 6,
  MAC_CAP: 1 << 7,
  MUT_AUTH_CAP: 1 << 8,
  KEY_EX_CAP: 1 << 9,
  PSK_CAP_RESPONDER: 1 << 10,
  PSK_CAP_RESPONDER_WITH_CONTEXT: 1 << 11,
  ENCAP_CAP: 1 << 12,
  HBEAT_CAP: 1 << 13,
  KEY_UPD_CAP: 1 << 14,
  HANDSHAKE_IN_THE_CLEAR_CAP: 1 << 15,
  PUB_KEY_ID_CAP: 1 << 16,
  CHUNK_CAP: 1 << 17,
  ALIAS_CERT_CAP: 1 << 18,
  SET_CERT_CAP: 1 << 19,
  CSR_CAP: 1 << 20,
  CERT_INSTALL_RESET_CAP: 1 << 21,
  EP_INFO_CAP_NO_SIG: 1 << 22,
  EP_INFO_CAP_SIG: 1 << 23,
  MEL_CAP: 1 << 24,
  EVENT_CAP: 1 << 25,
  MULTI_KEY_CAP_ONLY: 1 << 26,
  MULTI_KEY_CAP_NEG: 1 << 27,
  GET_KEY_PAIR_INFO_CAP: 1 << 28,
  SET_KEY_PAIR_INFO_CAP: 1 << 29,
  SET_KEY_PAIR_RESET_CAP: 1 << 30,
  LARGE_RESP_CAP: 2 ** 31,
} as const;

/** Masks of the multi-bit capability fields (same position for requester and responder). */
export const CapabilityField = {
  MEAS_CAP: 0x18,
  PSK_CAP: 0xc00,
  EP_INFO_CAP: 0xc0_0000,
  MULTI_KEY_CAP: 0xc00_0000,
} as const;

/** GET_CAPABILITIES/CAPABILITIES Param1 bit 0 (1.3): the Supported Algorithms block is requested/present. */
export const CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS = 0x01;

export const MeasurementSpecification = { DMTF: 0x01 } as const;
export const MelSpecification = { DMTF: 0x01 } as const;

export const BaseAsymAlgo = {
  RSASSA_2048: 0x1,
  RSAPSS_2048: 0x2,
  RSASSA_3072: 0x4,
  RSAPSS_3072: 0x8,
  ECDSA_P256: 0x10,
  RSASSA_4096: 0x20,
  RSAPSS_4096: 0x40,
  ECDSA_P384: 0x80,
  ECDSA_P521: 0x100,
  SM2_P256: 0x200,
  EDDSA_25519: 0x400,
  EDDSA_448: 0x800,
} as const;
/** ReqBaseAsymAlg (struct table type 4) uses the BaseAsymAlgo bits. */
export const ReqBaseAsymAlg = BaseAsymAlgo;

export const BaseHashAlgo = {
  SHA_256: 0x1,
  SHA_384: 0x2,
  SHA_512: 0x4,
  SHA3_256: 0x8,
  SHA3_384: 0x10,
  SHA3_512: 0x20,
  SM3_256: 0x40,
} as const;

export const MeasurementHashAlgo = {
  RAW_BIT_STREAM_ONLY: 0x1,
  SHA_256: 0x2,
  SHA_384: 0x4,
  SHA_512: 0x8,
  SHA3_256: 0x10,
  SHA3_384: 0x20,
  SHA3_512: 0x40,
  SM3_256: 0x80,
} as const;

export const DheNamedGroup = {
  FFDHE_2048: 0x1,
  FFDHE_3072: 0x2,
  FFDHE_4096: 0x4,
  SECP_256_R1: 0x8,
  SECP_384_R1: 0x10,
  SECP_521_R1: 0x20,
  SM2_P256: 0x40,
} as const;

export const AeadCipherSuite = {
  AES_128_GCM: 0x1,
  AES_256_GCM: 0x2,
  CHACHA20_POLY1305: 0x4,
  SM4_GCM: 0x8,
} as const;

export const KeyScheduleAlgo = { SPDM: 0x1 } as const;

/** AlgType of the ReqAlgStruct/RespAlgStruct tables. */
export const AlgType = {
  DHE: 2,
  AEAD: 3,
  REQ_BASE_ASYM_ALG: 4,
  KEY_SCHEDULE: 5,
  REQ_PQC_ASYM_ALG: 6,
  KEM_ALG: 7,
} as const;

/** OtherParamsSupport / OtherParamsSelection bits (1.2+). */
export const OtherParams = {
  OPAQUE_DATA_FMT_0: 0x1,
  OPAQUE_DATA_FMT_1: 0x2,
  MULTI_KEY_CONN: 0x10,
} as const;
export const OPAQUE_DATA_FMT_MASK = 0x0f;

// Byte sizes the negotiated algorithms imply (DSP0274 NEGOTIATE_ALGORITHMS: H, S, D).
export const HASH_SIZE: Readonly<Record<number, number>> = {
  [BaseHashAlgo.SHA_256]: 32,
  [BaseHashAlgo.SHA_384]: 48,
  [BaseHashAlgo.SHA_512]: 64,
  [BaseHashAlgo.SHA3_256]: 32,
  [BaseHashAlgo.SHA3_384]: 48,
  [BaseHashAlgo.SHA3_512]: 64,
  [BaseHashAlgo.SM3_256]: 32,
};
export const SIGNATURE_SIZE: Readonly<Record<number, number>> = {
  [BaseAsymAlgo.RSASSA_2048]: 256,
  [BaseAsymAlgo.RSAPSS_2048]: 256,
  [BaseAsymAlgo.RSASSA_3072]: 384,
  [BaseAsymAlgo.RSAPSS_3072]: 384,
  [BaseAsymAlgo.ECDSA_P256]: 64,
  [BaseAsymAlgo.RSASSA_4096]: 512,
  [BaseAsymAlgo.RSAPSS_4096]: 512,
  [BaseAsymAlgo.ECDSA_P384]: 96,
  [BaseAsymAlgo.ECDSA_P521]: 132,
  [BaseAsymAlgo.SM2_P256]: 64,
  [BaseAsymAlgo.EDDSA_25519]: 64,
  [BaseAsymAlgo.EDDSA_448]: 114,
};
export const DHE_EXCHANGE_SIZE: Readonly<Record<number, number>> = {
  [DheNamedGroup.FFDHE_2048]: 256,
  [DheNamedGroup.FFDHE_3072]: 384,
  [DheNamedGroup.FFDHE_4096]: 512,
  [DheNamedGroup.SECP_256_R1]: 64,
  [DheNamedGroup.SECP_384_R1]: 96,
  [DheNamedGroup.SECP_521_R1]: 132,
  [DheNamedGroup.SM2_P256]: 64,
};
/** Raw-bit-stream-only means measurement values carry no digest: size 0. */
export const MEASUREMENT_HASH_SIZE: Readonly<Record<number, number>> = {
  [MeasurementHashAlgo.RAW_BIT_STREAM_ONLY]: 0,
  [MeasurementHashAlgo.SHA_256]: 32,
  [MeasurementHashAlgo.SHA_384]: 48,
  [MeasurementHashAlgo.SHA_512]: 64,
  [MeasurementHashAlgo.SHA3_256]: 32,
  [MeasurementHashAlgo.SHA3_384]: 48,
  [MeasurementHashAlgo.SHA3_512]: 64,
  [MeasurementHashAlgo.SM3_256]: 32,
};

/** MeasurementSummaryHashType in CHALLENGE Param2, KEY_EXCHANGE/PSK_EXCHANGE Param1. */
export const MeasurementSummaryHashType = { None: 0x00, Tcb: 0x01, All: 0xff } as const;

/** GET_MEASUREMENTS Param1 bits and Param2 special operations. */
export const MeasurementAttribute = {
  SIGNATURE_REQUESTED: 0x1,
  RAW_BIT_STREAM_REQUESTED: 0x2,
  NEW_MEASUREMENT_REQUESTED: 0x4,
} as const;
export const MeasurementOperation = { TotalNumber: 0x00, All: 0xff } as const;

/** DMTF measurement value types (ValueType bits 6:0); bit 7 marks a raw bit stream. */
export const DmtfMeasurementType = {
  ImmutableRom: 0,
  MutableFirmware: 1,
  HardwareConfig: 2,
  FirmwareConfig: 3,
  Manifest: 4,
  DeviceMode: 5,
  Version: 6,
  SecureVersionNumber: 7,
  HashExtend: 8,
  Informational: 9,
  StructuredManifest: 10,
} as const;
export const DMTF_VALUE_TYPE_RAW_BIT_STREAM = 0x80;
export const MeasurementIndex = { Manifest: 0xfd, DeviceMode: 0xfe } as const;

/** Bits of the MEASUREMENTS Param2 "content changed" field (1.2). */
export const MeasurementContentChange = {
  Mask: 0x30,
  NoDetection: 0x00,
  Changed: 0x10,
  NoChange: 0x20,
} as const;

export const KeyUpdateOperation = { UpdateKey: 1, UpdateAllKeys: 2, VerifyNewKey: 3 } as const;

/** KEY_EXCHANGE_RSP MutAuthRequested bits. */
export const MutAuthRequested = { REQUESTED: 0x1, WITH_ENCAP_REQUEST: 0x2, WITH_GET_DIGESTS: 0x4 } as const;
/** KEY_EXCHANGE / PSK_EXCHANGE SessionPolicy bits. */
export const SessionPolicy = { TERMINATION_RUNTIME_UPDATE: 0x1, EVENT_ALL: 0x2 } as const;
export const END_SESSION_PRESERVE_NEGOTIATED_STATE_CLEAR = 0x1;
export const FINISH_SIGNATURE_INCLUDED = 0x1;
/** CHUNK_SEND / CHUNK_RESPONSE Param1 bit 0; CHUNK_SEND_ACK Param1 bit 0 is EarlyErrorDetected. */
export const CHUNK_LAST = 0x1;
export const CHUNK_EARLY_ERROR_DETECTED = 0x1;
/** VENDOR_DEFINED_REQUEST/RESPONSE Param1 bit 7 (1.4): LargeReq/LargeResp, a 32-bit payload length. */
export const VENDOR_DEFINED_LARGE = 0x80;
/** GET_CERTIFICATE/CERTIFICATE Param1 bit 7 (1.4): LargeCertChain, 32-bit offset and lengths. */
export const CERTIFICATE_LARGE_CHAIN = 0x80;

/** 1.3 DIGESTS CertificateInfo (bits 2:0 = certificate model) and KeyUsageMask bits. */
export const CertificateModel = { None: 0, DeviceCert: 1, AliasCert: 2, GenericCert: 3 } as const;
export const KeyUsage = {
  KEY_EX_USE: 0x1,
  CHALLENGE_USE: 0x2,
  MEASUREMENT_USE: 0x4,
  ENDPOINT_INFO_USE: 0x8,
  STANDARDS_KEY_USE: 0x4000,
  VENDOR_KEY_USE: 0x8000,
} as const;

/** StandardID of VENDOR_DEFINED messages and registry ID of extended algorithms. */
export const RegistryId = {
  DMTF: 0x0,
  TCG: 0x1,
  USB: 0x2,
  PCISIG: 0x3,
  IANA: 0x4,
  HDBASET: 0x5,
  MIPI: 0x6,
  CXL: 0x7,
  JEDEC: 0x8,
  VESA: 0x9,
  IANA_CBOR: 0xa,
  DMTF_DSP: 0xb,
} as const;

export const NONCE_SIZE = 32;
export const RANDOM_DATA_SIZE = 32;
export const REQUESTER_CONTEXT_SIZE = 8;

// ---- name helpers -------------------------------------------------------------------------------

type Table = Readonly<Record<string, number>>;
const reverse = <T extends Table>(t: T) =>
  new Map(Object.entries(t).map(([k, v]) => [v, k as keyof T & string]));

/** The key of `table` whose value is `value`, if any. */
export function nameOf<T extends Table>(table: T, value: number): (keyof T & string) | undefined {
  for (const [k, v] of Object.entries(table)) if (v === value) return k as keyof T & string;
  return undefined;
}

/** Names of the single-bit entries of `table` set in `value`, then any unnamed bits as hex. */
export function bitNames(table: Table, value: number): string[] {
  const out: string[] = [];
  let rest = value >>> 0;
  for (const [k, v] of Object.entries(table)) {
    if (v !== 0 && (v & (v - 1)) === 0 && (value >>> 0) % (v * 2) >= v) {
      out.push(k);
      rest -= v;
    }
  }
  if (rest !== 0) out.push(`0x${rest.toString(16)}`);
  return out;
}

const CODE_NAMES = reverse(SpdmCode);
const ERROR_NAMES = reverse(SpdmErrorCode);

export const spdmCodeName = (code: number): SpdmCodeName | undefined => CODE_NAMES.get(code);
/** Name, or "0x.." for a code no version defines. */
export const spdmCodeLabel = (code: number): string => CODE_NAMES.get(code) ?? `0x${hex2(code)}`;
export const spdmErrorName = (code: number): SpdmErrorName | undefined => ERROR_NAMES.get(code);
export const spdmErrorLabel = (code: number): string => ERROR_NAMES.get(code) ?? `0x${hex2(code)}`;
export const isRequestCode = (code: number): boolean => (code & 0x80) !== 0;

/** The response code that answers `request` (bit 7 cleared); RESPOND_IF_READY has none of its own. */
export function responseCodeFor(request: number): number | undefined {
  if (!isRequestCode(request) || request === SpdmRequestCode.RESPOND_IF_READY) return undefined;
  return request & 0x7f;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
