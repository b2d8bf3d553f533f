/**
 * CXL TSP messages (CXL 3.1 §11.5, TEE Security Protocol; layouts as libspdm 1e16c60f
 * include/industry_standard/cxl_tsp.h), the bytes after the CXL Protocol ID 01h of the PCI-SIG
 * vendor-defined carrier with VendorID 0x1E98 (protocol/pcisig-vdm.ts), and the configuration
 * report GET_TARGET_CONFIGURATION_REPORT pages through. Every message starts with the 2-byte TSP
 * header (version, opcode) and is exactly its fields, except that ERROR_RSP's extended error data
 * runs to the end. Counts are bounded by their fields: at most 255 version entries and memory
 * ranges, at most 0xFFFF report bytes per portion.
 */
import { DecodeError } from "./errors.js";
import {
  asBuffer,
  codedCodec,
  decodeWhole,
  encodeWhole,
  type Field,
  type Need,
  type Reader,
  schema,
  structElem,
  u8Elem,
  type Writer,
} from "./spdm/schema.js";

export const TSP_VERSION_1_0 = 0x10;

export const TspCode = {
  GET_TARGET_TSP_VERSION: 0x81,
  GET_TARGET_TSP_VERSION_RSP: 0x01,
  GET_TARGET_CAPABILITIES: 0x82,
  GET_TARGET_CAPABILITIES_RSP: 0x02,
  SET_TARGET_CONFIGURATION: 0x83,
  SET_TARGET_CONFIGURATION_RSP: 0x03,
  GET_TARGET_CONFIGURATION: 0x84,
  GET_TARGET_CONFIGURATION_RSP: 0x04,
  GET_TARGET_CONFIGURATION_REPORT: 0x85,
  GET_TARGET_CONFIGURATION_REPORT_RSP: 0x05,
  LOCK_TARGET_CONFIGURATION: 0x86,
  LOCK_TARGET_CONFIGURATION_RSP: 0x06,
  SET_TARGET_CKID_SPECIFIC_KEY: 0x87,
  SET_TARGET_CKID_SPECIFIC_KEY_RSP: 0x07,
  SET_TARGET_CKID_RANDOM_KEY: 0x88,
  SET_TARGET_CKID_RANDOM_KEY_RSP: 0x08,
  CLEAR_TARGET_CKID_KEY: 0x89,
  CLEAR_TARGET_CKID_KEY_RSP: 0x09,
  SET_TARGET_RANGE_SPECIFIC_KEY: 0x8a,
  SET_TARGET_RANGE_SPECIFIC_KEY_RSP: 0x0a,
  SET_TARGET_RANGE_RANDOM_KEY: 0x8b,
  SET_TARGET_RANGE_RANDOM_KEY_RSP: 0x0b,
  CLEAR_TARGET_RANGE_KEY: 0x8c,
  CLEAR_TARGET_RANGE_KEY_RSP: 0x0c,
  SET_TARGET_TE_STATE: 0x8d,
  SET_TARGET_TE_STATE_RSP: 0x0d,
  CHECK_TARGET_DELAYED_COMPLETION: 0x8e,
  CHECK_TARGET_DELAYED_COMPLETION_RSP: 0x0e,
  DELAYED_RSP: 0x7e,
  ERROR_RSP: 0x7f,
} as const;
export type TspCodeName = keyof typeof TspCode;

/** CurrentTSPState of GET_TARGET_CONFIGURATION_RSP. */
export const TspState = { CONFIG_UNLOCKED: 0, CONFIG_LOCKED: 1, ERROR: 2 } as const;

export const TspErrorCode = {
  INVALID_REQUEST: 0x01,
  BUSY: 0x02,
  UNSPECIFIED: 0x03,
  UNSUPPORTED_REQUEST: 0x04,
  VERSION_MISMATCH: 0x05,
  VENDOR_SPECIFIC_ERROR: 0x06,
  NO_PRIVILEGE: 0x07,
  NO_ENTROPY: 0x08,
  INVALID_CKID: 0x09,
  INVALID_SECURITY_CONFIGURATION: 0x0a,
  INVALID_SECURITY_STATE: 0x0b,
  LONG_EXECUTION_TIME: 0x0c,
  ALREADY_LOCKED: 0x0d,
} as const;

/** MemoryEncryptionFeaturesSupported (capabilities). */
export const MemoryEncryptionSupported = {
  ENCRYPTION: 0x1,
  CKID_BASED: 0x2,
  RANGE_BASED: 0x4,
  INITIATOR_SUPPLIED_ENTROPY: 0x8,
  CKID_BASED_REQUIRED: 0x10,
} as const;
/** MemoryEncryptionFeaturesEnable (set/get configuration): CKID-required moves to bit 3. */
export const MemoryEncryptionEnable = {
  ENCRYPTION: 0x1,
  CKID_BASED: 0x2,
  RANGE_BASED: 0x4,
  CKID_BASED_REQUIRED: 0x8,
} as const;
export const MemoryEncryptionAlgorithm = {
  AES_XTS_128: 0x1,
  AES_XTS_256: 0x2,
  VENDOR_SPECIFIC: 0x8000_0000,
} as const;
export const TeStateFeature = {
  WRITE_ACCESS_CONTROL: 0x1,
  READ_ACCESS_CONTROL: 0x2,
  IMPLICIT_TE_STATE_CHANGE: 0x4,
  EXPLICIT_OOB_TE_STATE_CHANGE: 0x8,
  EXPLICIT_IB_TE_STATE_CHANGE: 0x10,
  EXPLICIT_TE_STATE_CHANGE_SANITIZE: 0x20,
} as const;
/** Explicit in-band TE state granularity: bit n = 64 B << n for n = 0..10; bit 31 the entire memory. */
export const IB_GRANULARITY_ENTIRE_MEMORY = 0x8000_0000;
export const ConfigurationFeature = {
  LOCKED_TARGET_FW_UPDATE: 0x1,
  /** Capabilities only: the target takes secondary SPDM sessions. */
  ADDITIONAL_SPDM_SESSIONS: 0x2,
} as const;

/** Secondary sessions a configuration can key (CXL_TSP_2ND_SESSION_COUNT) and their key material. */
export const MAX_SECONDARY_SESSIONS = 4;
export const SECONDARY_SESSION_KEY_BYTES = 32;
export const IB_GRANULARITY_ENTRIES = 8;
/** LengthIndex of an unused in-band granularity entry. */
export const LENGTH_INDEX_UNUSED = 0xff;
export const TSP_KEY_BYTES = 32;

// ---- messages -----------------------------------------------------------------------------------

interface Msg<C extends TspCodeName> {
  code: C;
  /** TSPVersion, major << 4 | minor: 0x10 for 1.0. */
  version: number;
}

export interface IbGranularityEntry {
  /** Bytes per TE state unit (a power of two from 64). */
  granularity: bigint;
  /** 0..7, or LENGTH_INDEX_UNUSED. */
  lengthIndex: number;
}

/** What SET_TARGET_CONFIGURATION sets and GET_TARGET_CONFIGURATION_RSP reports. */
export interface TspConfiguration {
  /** MemoryEncryptionEnable bits. */
  memoryEncryptionFeaturesEnable: number;
  /** One MemoryEncryptionAlgorithm bit (or none). */
  memoryEncryptionAlgorithmSelect: number;
  /** TeStateFeature bits. */
  teStateChangeAndAccessControlFeaturesEnable: number;
  explicitOobTeStateGranularity: number;
  configurationFeaturesEnable: number;
  ckidBase: number;
  numberOfCkids: number;
  /** IB_GRANULARITY_ENTRIES entries. */
  explicitIbTeStateGranularityEntries: IbGranularityEntry[];
}

export interface MemoryRange {
  startingAddress: bigint;
  length: bigint;
}

export interface TspCapabilities {
  memoryEncryptionFeaturesSupported: number;
  memoryEncryptionAlgorithmsSupported: number;
  numberOfRangeBasedKeys: number;
  teStateChangeAndAccessControlFeaturesSupported: number;
  supportedExplicitOobTeStateGranularity: number;
  supportedExplicitIbTeStateGranularity: number;
  configurationFeaturesSupported: number;
  numberOfCkids: number;
  numberOfSecondarySessions: number;
}

interface KeyMaterial {
  /** Bit 0 DataEncryptionKey valid, bit 1 TweakKey valid. */
  validityFlags: number;
  dataEncryptionKey: Buffer;
  tweakKey: Buffer;
}
interface RangeKey extends KeyMaterial {
  rangeId: number;
  rangeStart: bigint;
  rangeEnd: bigint;
}

export interface GetTargetTspVersion extends Msg<"GET_TARGET_TSP_VERSION"> {}
export interface GetTargetTspVersionRsp extends Msg<"GET_TARGET_TSP_VERSION_RSP"> {
  versions: number[];
}
export interface GetTargetCapabilities extends Msg<"GET_TARGET_CAPABILITIES"> {}
export interface GetTargetCapabilitiesRsp extends Msg<"GET_TARGET_CAPABILITIES_RSP">, TspCapabilities {}
export interface SetTargetConfiguration extends Msg<"SET_TARGET_CONFIGURATION">, TspConfiguration {
  /** Bit i: secondarySessionPskKeyMaterial[i] is valid. */
  configurationValidityFlags: number;
  secondarySessionCkidType: number;
  /** MAX_SECONDARY_SESSIONS × 32 bytes, each the PSK of secondary session i. */
  secondarySessionPskKeyMaterial: Buffer[];
}
export interface SetTargetConfigurationRsp extends Msg<"SET_TARGET_CONFIGURATION_RSP"> {}
export interface GetTargetConfiguration extends Msg<"GET_TARGET_CONFIGURATION"> {}
export interface GetTargetConfigurationRsp extends Msg<"GET_TARGET_CONFIGURATION_RSP">, TspConfiguration {
  /** TspState */
  currentTspState: number;
}
export interface GetTargetConfigurationReport extends Msg<"GET_TARGET_CONFIGURATION_REPORT"> {
  offset: number;
  length: number;
}
export interface GetTargetConfigurationReportRsp extends Msg<"GET_TARGET_CONFIGURATION_REPORT_RSP"> {
  portion: Buffer;
  remainderLength: number;
}
export interface LockTargetConfiguration extends Msg<"LOCK_TARGET_CONFIGURATION"> {}
export interface LockTargetConfigurationRsp extends Msg<"LOCK_TARGET_CONFIGURATION_RSP"> {}
export interface SetTargetCkidSpecificKey extends Msg<"SET_TARGET_CKID_SPECIFIC_KEY">, KeyMaterial {
  ckid: number;
  /** 1 TVM, 2 OS. */
  ckidType: number;
}
export interface SetTargetCkidSpecificKeyRsp extends Msg<"SET_TARGET_CKID_SPECIFIC_KEY_RSP"> {}
export interface SetTargetCkidRandomKey extends Msg<"SET_TARGET_CKID_RANDOM_KEY">, KeyMaterial {
  ckid: number;
  /** Bit 0: 1 TVM, 0 OS. */
  attributes: number;
}
export interface SetTargetCkidRandomKeyRsp extends Msg<"SET_TARGET_CKID_RANDOM_KEY_RSP"> {}
export interface ClearTargetCkidKey extends Msg<"CLEAR_TARGET_CKID_KEY"> {
  ckid: number;
}
export interface ClearTargetCkidKeyRsp extends Msg<"CLEAR_TARGET_CKID_KEY_RSP"> {}
export interface SetTargetRangeSpecificKey extends Msg<"SET_TARGET_RANGE_SPECIFIC_KEY">, RangeKey {}
export interface SetTargetRangeSpecificKeyRsp extends Msg<"SET_TARGET_RANGE_SPECIFIC_KEY_RSP"> {}
export interface SetTargetRangeRandomKey extends Msg<"SET_TARGET_RANGE_RANDOM_KEY">, RangeKey {}
export interface SetTargetRangeRandomKeyRsp extends Msg<"SET_TARGET_RANGE_RANDOM_KEY_RSP"> {}
export interface ClearTargetRangeKey extends Msg<"CLEAR_TARGET_RANGE_KEY"> {
  rangeId: number;
}
export interface ClearTargetRangeKeyRsp extends Msg<"CLEAR_TARGET_RANGE_KEY_RSP"> {}
export interface SetTargetTeState extends Msg<"SET_TARGET_TE_STATE"> {
  teState: number;
  memoryRanges: MemoryRange[];
}
export interface SetTargetTeStateRsp extends Msg<"SET_TARGET_TE_STATE_RSP"> {}
export interface CheckTargetDelayedCompletion extends Msg<"CHECK_TARGET_DELAYED_COMPLETION"> {}
export interface CheckTargetDelayedCompletionRsp extends Msg<"CHECK_TARGET_DELAYED_COMPLETION_RSP"> {}
export interface DelayedRsp extends Msg<"DELAYED_RSP"> {
  delayTime: number;
}
export interface ErrorRsp extends Msg<"ERROR_RSP"> {
  /** TspErrorCode */
  errorCode: number;
  errorData: number;
  extendedErrorData?: Buffer;
}

export type TspMessage =
  | GetTargetTspVersion
  | GetTargetTspVersionRsp
  | GetTargetCapabilities
  | GetTargetCapabilitiesRsp
  | SetTargetConfiguration
  | SetTargetConfigurationRsp
  | GetTargetConfiguration
  | GetTargetConfigurationRsp
  | GetTargetConfigurationReport
  | GetTargetConfigurationReportRsp
  | LockTargetConfiguration
  | LockTargetConfigurationRsp
  | SetTargetCkidSpecificKey
  | SetTargetCkidSpecificKeyRsp
  | SetTargetCkidRandomKey
  | SetTargetCkidRandomKeyRsp
  | ClearTargetCkidKey
  | ClearTargetCkidKeyRsp
  | SetTargetRangeSpecificKey
  | SetTargetRangeSpecificKeyRsp
  | SetTargetRangeRandomKey
  | SetTargetRangeRandomKeyRsp
  | ClearTargetRangeKey
  | ClearTargetRangeKeyRsp
  | SetTargetTeState
  | SetTargetTeStateRsp
  | CheckTargetDelayedCompletion
  | CheckTargetDelayedCompletionRsp
  | DelayedRsp
  | ErrorRsp;
export type TspMessageName = TspMessage["code"];
export type TspMessageOf<N extends TspMessageName> = Extract<TspMessage, { code: N }>;

/**
 * The configuration report (cxl_tsp.h; spdm-emu 85436d53 cxl_tsp_device_get_configuration_report.c):
 * which fields are valid, then copies of the device's CXL registers. The HDM decoders' layout per
 * decoder is not in libspdm, so they stay bytes: whatever lies between the HDM Decoder Capability
 * and the trailing CXL IDE Capability structure.
 */
export interface TspConfigurationReport {
  validTspReportFields: number;
  pcieDvsecForCxlDevices: Buffer;
  flexBusPortDvsec: Buffer;
  cxlLinkCapability: Buffer;
  cxlTimeoutAndIsolationCapability: Buffer;
  cxlHdmDecoderCapability: Buffer;
  hdmDecoders: Buffer;
  cxlIdeCapability: Buffer;
}
export const REPORT_PART_BYTES = {
  pcieDvsecForCxlDevices: 0x3c,
  flexBusPortDvsec: 0x20,
  cxlLinkCapability: 0x38,
  cxlTimeoutAndIsolationCapability: 0x10,
  cxlHdmDecoderCapability: 0x10,
  cxlIdeCapability: 0x24,
} as const;

// ---- field lists --------------------------------------------------------------------------------

const headerFields = schema<{ version: number; opcode: number }>((f) => [f.u8("version"), f.u8("opcode")]);

const none = schema<unknown>((f) => [f.reserved(2)]);

const ibEntryElem = structElem(
  schema<IbGranularityEntry>((f) => [f.u64("granularity"), f.u8("lengthIndex"), f.reserved(7)]),
  16,
);
const memoryRangeElem = structElem(
  schema<MemoryRange>((f) => [f.u64("startingAddress"), f.u64("length")]),
  16,
);
const keyElem = {
  dec: (r: Reader, _n: Need, field: string) => r.take(SECONDARY_SESSION_KEY_BYTES, field),
  enc: (w: Writer, v: Buffer, field: string) => {
    if (!Buffer.isBuffer(v) || v.length !== SECONDARY_SESSION_KEY_BYTES)
      throw new RangeError(`${field}: must be ${SECONDARY_SESSION_KEY_BYTES} bytes`);
    w.bytes(v);
  },
  size: SECONDARY_SESSION_KEY_BYTES,
};

/**
 * Bytes 2–191 of SET_TARGET_CONFIGURATION and GET_TARGET_CONFIGURATION_RSP; `at36` the 12 bytes at
 * offset 36 where they differ, fields of the message type rather than TspConfiguration (hence `never`).
 */
const configuration = (at36: Field<never>[]) =>
  schema<TspConfiguration>((f) => [
    f.u16("memoryEncryptionFeaturesEnable"),
    f.u32("memoryEncryptionAlgorithmSelect"),
    f.reserved(4),
    f.u16("teStateChangeAndAccessControlFeaturesEnable"),
    f.reserved(2),
    f.u32("explicitOobTeStateGranularity"),
    f.reserved(4),
    f.u16("configurationFeaturesEnable"),
    f.reserved(2),
    f.u32("ckidBase"),
    f.u32("numberOfCkids"),
    ...(at36 as Field<TspConfiguration>[]),
    f.list("explicitIbTeStateGranularityEntries", () => IB_GRANULARITY_ENTRIES, ibEntryElem),
    f.reserved(16),
  ]);

const keyMaterial = schema<KeyMaterial>((f) => [
  f.u8("validityFlags"),
  f.bytes("dataEncryptionKey", TSP_KEY_BYTES),
  f.bytes("tweakKey", TSP_KEY_BYTES),
]);
const rangeKey = schema<RangeKey>((f) => [
  f.reserved(2),
  f.u32("rangeId"),
  f.u64("rangeStart"),
  f.u64("rangeEnd"),
  f.reserved(7),
  ...keyMaterial,
]);

type Schemas = { [K in TspMessageName]: readonly Field<TspMessageOf<K>>[] };

const SCHEMAS: Schemas = {
  GET_TARGET_TSP_VERSION: none,
  GET_TARGET_TSP_VERSION_RSP: schema<GetTargetTspVersionRsp>((f) => [
    f.reserved(2),
    f.len8("versions"),
    f.list("versions", "prefixed", u8Elem),
  ]),
  GET_TARGET_CAPABILITIES: none,
  GET_TARGET_CAPABILITIES_RSP: schema<GetTargetCapabilitiesRsp>((f) => [
    f.u16("memoryEncryptionFeaturesSupported"),
    f.u32("memoryEncryptionAlgorithmsSupported"),
    f.u16("numberOfRangeBasedKeys"),
    f.reserved(2),
    f.u16("teStateChangeAndAccessControlFeaturesSupported"),
    f.reserved(2),
    f.u32("supportedExplicitOobTeStateGranularity"),
    f.u32("supportedExplicitIbTeStateGranularity"),
    f.u16("configurationFeaturesSupported"),
    f.reserved(2),
    f.u32("numberOfCkids"),
    f.u8("numberOfSecondarySessions"),
    f.reserved(19),
  ]),
  SET_TARGET_CONFIGURATION: [
    ...configuration(schema((f) => [f.reserved(12)])),
    ...schema<SetTargetConfiguration>((f) => [
      f.u16("configurationValidityFlags"),
      f.reserved(14),
      f.u8("secondarySessionCkidType"),
      f.reserved(15),
      f.list("secondarySessionPskKeyMaterial", () => MAX_SECONDARY_SESSIONS, keyElem),
    ]),
  ],
  SET_TARGET_CONFIGURATION_RSP: none,
  GET_TARGET_CONFIGURATION: none,
  GET_TARGET_CONFIGURATION_RSP: configuration(
    schema<GetTargetConfigurationRsp>((f) => [f.u8("currentTspState"), f.reserved(11)]),
  ),
  GET_TARGET_CONFIGURATION_REPORT: schema<GetTargetConfigurationReport>((f) => [
    f.reserved(2),
    f.u16("offset"),
    f.u16("length"),
  ]),
  GET_TARGET_CONFIGURATION_REPORT_RSP: schema<GetTargetConfigurationReportRsp>((f) => [
    f.reserved(2),
    f.len16("portion"),
    f.u16("remainderLength"),
    f.data("portion"),
  ]),
  LOCK_TARGET_CONFIGURATION: none,
  LOCK_TARGET_CONFIGURATION_RSP: none,
  SET_TARGET_CKID_SPECIFIC_KEY: schema<SetTargetCkidSpecificKey>((f) => [
    f.reserved(2),
    f.u32("ckid"),
    f.u8("ckidType"),
    f.reserved(6),
    ...keyMaterial,
  ]),
  SET_TARGET_CKID_SPECIFIC_KEY_RSP: none,
  SET_TARGET_CKID_RANDOM_KEY: schema<SetTargetCkidRandomKey>((f) => [
    f.reserved(2),
    f.u32("ckid"),
    f.u8("attributes"),
    f.reserved(6),
    ...keyMaterial,
  ]),
  SET_TARGET_CKID_RANDOM_KEY_RSP: none,
  CLEAR_TARGET_CKID_KEY: schema<ClearTargetCkidKey>((f) => [f.reserved(2), f.u32("ckid")]),
  CLEAR_TARGET_CKID_KEY_RSP: none,
  SET_TARGET_RANGE_SPECIFIC_KEY: rangeKey,
  SET_TARGET_RANGE_SPECIFIC_KEY_RSP: none,
  SET_TARGET_RANGE_RANDOM_KEY: rangeKey,
  SET_TARGET_RANGE_RANDOM_KEY_RSP: none,
  CLEAR_TARGET_RANGE_KEY: schema<ClearTargetRangeKey>((f) => [f.reserved(2), f.u32("rangeId")]),
  CLEAR_TARGET_RANGE_KEY_RSP: none,
  SET_TARGET_TE_STATE: schema<SetTargetTeState>((f) => [
    f.u8("teState"),
    f.len8("memoryRanges"),
    f.reserved(12),
    f.list("memoryRanges", "prefixed", memoryRangeElem),
  ]),
  SET_TARGET_TE_STATE_RSP: none,
  CHECK_TARGET_DELAYED_COMPLETION: none,
  CHECK_TARGET_DELAYED_COMPLETION_RSP: none,
  DELAYED_RSP: schema<DelayedRsp>((f) => [f.reserved(2), f.u32("delayTime")]),
  ERROR_RSP: schema<ErrorRsp>((f) => [
    f.reserved(2),
    f.u32("errorCode"),
    f.u32("errorData"),
    f.rest("extendedErrorData"),
  ]),
};

const P = REPORT_PART_BYTES;
const reportFields = schema<TspConfigurationReport>((f) => [
  f.u8("validTspReportFields"),
  f.reserved(3),
  f.bytes("pcieDvsecForCxlDevices", P.pcieDvsecForCxlDevices),
  f.bytes("flexBusPortDvsec", P.flexBusPortDvsec),
  f.bytes("cxlLinkCapability", P.cxlLinkCapability),
  f.bytes("cxlTimeoutAndIsolationCapability", P.cxlTimeoutAndIsolationCapability),
  f.bytes("cxlHdmDecoderCapability", P.cxlHdmDecoderCapability),
  f.bytes("hdmDecoders", (_m, n) => n.r.remaining - P.cxlIdeCapability),
  f.bytes("cxlIdeCapability", P.cxlIdeCapability),
]);

export interface TspHeader {
  version: number;
  opcode: number;
}

const codec = codedCodec<TspHeader, TspMessage>({
  where: "tsp",
  header: headerFields,
  codeField: "opcode",
  codes: TspCode,
  schemas: SCHEMAS,
  headerOf: (m, opcode) => ({ version: m.version, opcode }),
});

/** The header alone, e.g. to answer a message whose body does not decode. */
export const decodeTspHeader = codec.decodeHeader;
/** The message name of an opcode, undefined for an unknown one. */
export const tspCodeName = codec.nameOf as (opcode: number) => TspCodeName | undefined;
/** Decodes one CXL TSP message, which must fill `input` exactly. */
export const decodeTsp = codec.decode;
/** Exact bytes of `msg`; RangeError when a field is missing or out of range. */
export const encodeTsp = codec.encode;

/** The smallest report: its fixed parts with no HDM decoder. */
export const MIN_REPORT_BYTES = 4 + Object.values(P).reduce((a, b) => a + b, 0);

export function decodeTspConfigurationReport(input: Uint8Array): TspConfigurationReport {
  const buf = asBuffer(input);
  if (buf.length < MIN_REPORT_BYTES)
    throw new DecodeError("tsp.report", buf.length, `${buf.length} bytes, at least ${MIN_REPORT_BYTES}`);
  return decodeWhole(reportFields, buf, "tsp.report");
}

export function encodeTspConfigurationReport(report: TspConfigurationReport): Buffer {
  return encodeWhole(reportFields, report, "tsp.report");
}

/** The configuration fields alone, of a SET_TARGET_CONFIGURATION or GET_TARGET_CONFIGURATION_RSP. */
export function configurationOf(m: TspConfiguration): TspConfiguration {
  return {
    memoryEncryptionFeaturesEnable: m.memoryEncryptionFeaturesEnable,
    memoryEncryptionAlgorithmSelect: m.memoryEncryptionAlgorithmSelect,
    teStateChangeAndAccessControlFeaturesEnable: m.teStateChangeAndAccessControlFeaturesEnable,
    explicitOobTeStateGranularity: m.explicitOobTeStateGranularity,
    configurationFeaturesEnable: m.configurationFeaturesEnable,
    ckidBase: m.ckidBase,
    numberOfCkids: m.numberOfCkids,
    explicitIbTeStateGranularityEntries: m.explicitIbTeStateGranularityEntries.map((e) => ({ ...e })),
  };
}

// ---- rules --------------------------------------------------------------------------------------

/** The PSK hint of secondary session `index`, NUL included (libspdm 1e16c60f cxl_tsp.h). */
export const secondarySessionPskHint = (index: number): Buffer =>
  Buffer.from(`SECONDARY_SESSION_${index}_PSK\0`, "latin1");

/** ConfigurationValidityFlags keying the first `count` secondary sessions: one bit each, from bit 0. */
export const validityFlagsFor = (count: number): number => (1 << count) - 1;

const oneBitOrNone = (v: number) => (v & (v - 1)) === 0;
const IB_GRANULARITY_BITS = 0x7ff | IB_GRANULARITY_ENTIRE_MEMORY;

/** What makes TE-state features inconsistent (C.9.1 #4–#6), for capabilities and configurations alike. */
function teStateIssues(te: number, oob: number, ib: number | undefined): string[] {
  const T = TeStateFeature;
  const has = (bit: number) => (te & bit) !== 0;
  const explicit = has(T.EXPLICIT_OOB_TE_STATE_CHANGE) || has(T.EXPLICIT_IB_TE_STATE_CHANGE);
  const issues: string[] = [];
  if (has(T.WRITE_ACCESS_CONTROL) && !explicit)
    issues.push("write access control needs an explicit TE state change");
  if (has(T.READ_ACCESS_CONTROL) && !explicit && !has(T.IMPLICIT_TE_STATE_CHANGE))
    issues.push("read access control needs an implicit or explicit TE state change");
  if (has(T.EXPLICIT_TE_STATE_CHANGE_SANITIZE) && !explicit)
    issues.push("sanitize needs an explicit TE state change");
  if (has(T.EXPLICIT_OOB_TE_STATE_CHANGE) !== (oob !== 0))
    issues.push("the out-of-band granularity must be set exactly when explicit out-of-band change is");
  if (ib !== undefined) {
    if (has(T.IMPLICIT_TE_STATE_CHANGE) && !(has(T.EXPLICIT_IB_TE_STATE_CHANGE) && ib & 0x1))
      issues.push("implicit TE state change needs explicit in-band change with 64-byte granularity");
    if (has(T.EXPLICIT_IB_TE_STATE_CHANGE) !== ((ib & IB_GRANULARITY_BITS) !== 0))
      issues.push("the in-band granularity must be set exactly when explicit in-band change is");
  }
  return issues;
}

/** What DMTF's requester refuses in GET_TARGET_CAPABILITIES_RSP (spdm-emu 85436d53 cxl_tsp_req_get_capabilities.c). */
export function capabilityIssues(c: TspCapabilities): string[] {
  const E = MemoryEncryptionSupported;
  const f = c.memoryEncryptionFeaturesSupported;
  const issues = teStateIssues(
    c.teStateChangeAndAccessControlFeaturesSupported,
    c.supportedExplicitOobTeStateGranularity,
    c.supportedExplicitIbTeStateGranularity,
  );
  if (!(f & E.ENCRYPTION) && f & (E.CKID_BASED | E.RANGE_BASED | E.CKID_BASED_REQUIRED))
    issues.push("CKID- or range-based encryption without encryption");
  if (f & E.ENCRYPTION && f & E.CKID_BASED_REQUIRED && !(f & E.CKID_BASED))
    issues.push("CKID-based encryption required but not supported");
  const A = MemoryEncryptionAlgorithm;
  if (
    f & E.ENCRYPTION &&
    !(c.memoryEncryptionAlgorithmsSupported & (A.AES_XTS_128 | A.AES_XTS_256 | A.VENDOR_SPECIFIC))
  )
    issues.push("encryption without an algorithm");
  if (((f & E.RANGE_BASED) !== 0) !== (c.numberOfRangeBasedKeys !== 0))
    issues.push("range-based keys must be counted exactly when range-based encryption is supported");
  if (f & E.CKID_BASED && !(c.numberOfCkids >= 2 && c.numberOfCkids < 0x2000))
    issues.push("CKID-based encryption needs 2 to 0x1FFF CKIDs");
  const sessions = c.numberOfSecondarySessions;
  if (c.configurationFeaturesSupported & ConfigurationFeature.ADDITIONAL_SPDM_SESSIONS) {
    if (sessions < 1 || sessions > MAX_SECONDARY_SESSIONS)
      issues.push("additional SPDM sessions need 1 to 4 of them");
  } else if (sessions !== 0) issues.push("secondary sessions without additional SPDM sessions");
  return issues;
}

/** What DMTF's requester refuses in a GET_TARGET_CONFIGURATION_RSP, and its responder in SET (C.9.2). */
export function configurationIssues(c: TspConfiguration): string[] {
  const E = MemoryEncryptionEnable;
  const f = c.memoryEncryptionFeaturesEnable;
  const issues = teStateIssues(
    c.teStateChangeAndAccessControlFeaturesEnable,
    c.explicitOobTeStateGranularity,
    undefined,
  );
  if (!(f & E.ENCRYPTION)) {
    if (f & (E.CKID_BASED | E.RANGE_BASED | E.CKID_BASED_REQUIRED) || c.memoryEncryptionAlgorithmSelect !== 0)
      issues.push("encryption features or an algorithm without encryption");
  } else {
    if (f & E.CKID_BASED && f & E.RANGE_BASED) issues.push("both CKID- and range-based encryption");
    if (((f & E.CKID_BASED) !== 0) !== ((f & E.CKID_BASED_REQUIRED) !== 0))
      issues.push("CKID-based encryption and CKID-based required go together");
    if (!oneBitOrNone(c.memoryEncryptionAlgorithmSelect)) issues.push("more than one algorithm");
  }
  if (!oneBitOrNone(c.explicitOobTeStateGranularity)) issues.push("more than one out-of-band granularity");
  if (f & E.CKID_BASED_REQUIRED && !(c.ckidBase < 0x2000 && c.ckidBase + c.numberOfCkids < 0x2000))
    issues.push("CKIDs beyond 0x1FFF");
  if (c.teStateChangeAndAccessControlFeaturesEnable & TeStateFeature.EXPLICIT_IB_TE_STATE_CHANGE) {
    const used = c.explicitIbTeStateGranularityEntries
      .map((e) => e.lengthIndex)
      .filter((i) => i !== LENGTH_INDEX_UNUSED);
    if (used.some((i) => i > 7) || new Set(used).size !== used.length)
      issues.push("in-band granularity LengthIndex not unique in 0..7");
  }
  return issues;
}
