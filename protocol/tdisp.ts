/**
 * TDISP messages (PCIe r6.1 chapter 11, TEE Device Interface Security Protocol; layouts as libspdm
 * 1e16c60f include/industry_standard/pci_tdisp.h), the bytes after the PCI-SIG Protocol ID 01h
 * (protocol/pcisig-vdm.ts), and the device interface report that DEVICE_INTERFACE_REPORT portions
 * carry. Every message starts with the 16-byte TDISP header (version, message type, 2 reserved,
 * INTERFACE_ID = FunctionID u32 + 8 reserved) and is exactly its fields, except that TDISP_ERROR's
 * extended error data runs to the end.
 *
 * VDM_REQUEST and VDM_RESPONSE have codes but no codec: their body layout is in neither libspdm nor
 * spdm-emu, so they decode as an unsupported message type.
 */
import {
  codedCodec,
  decodeWhole,
  encodeWhole,
  type Field,
  schema,
  structElem,
  u8Elem,
} from "./spdm/schema.js";

export const TDISP_VERSION_1_0 = 0x10;
export const TDISP_HEADER_BYTES = 16;
export const START_INTERFACE_NONCE_BYTES = 32;
/** TDISP_CAPABILITIES REQ_MSGS_SUPPORTED: a bit per request code. */
export const REQ_MSGS_SUPPORTED_BYTES = 16;

export const TdispCode = {
  GET_TDISP_VERSION: 0x81,
  TDISP_VERSION: 0x01,
  GET_TDISP_CAPABILITIES: 0x82,
  TDISP_CAPABILITIES: 0x02,
  LOCK_INTERFACE_REQUEST: 0x83,
  LOCK_INTERFACE_RESPONSE: 0x03,
  GET_DEVICE_INTERFACE_REPORT: 0x84,
  DEVICE_INTERFACE_REPORT: 0x04,
  GET_DEVICE_INTERFACE_STATE: 0x85,
  DEVICE_INTERFACE_STATE: 0x05,
  START_INTERFACE_REQUEST: 0x86,
  START_INTERFACE_RESPONSE: 0x06,
  STOP_INTERFACE_REQUEST: 0x87,
  STOP_INTERFACE_RESPONSE: 0x07,
  BIND_P2P_STREAM_REQUEST: 0x88,
  BIND_P2P_STREAM_RESPONSE: 0x08,
  UNBIND_P2P_STREAM_REQUEST: 0x89,
  UNBIND_P2P_STREAM_RESPONSE: 0x09,
  SET_MMIO_ATTRIBUTE_REQUEST: 0x8a,
  SET_MMIO_ATTRIBUTE_RESPONSE: 0x0a,
  VDM_REQUEST: 0x8b,
  VDM_RESPONSE: 0x0b,
  TDISP_ERROR: 0x7f,
} as const;
export type TdispCodeName = keyof typeof TdispCode;

export const TdiState = { CONFIG_UNLOCKED: 0, CONFIG_LOCKED: 1, RUN: 2, ERROR: 3 } as const;

export const TdispErrorCode = {
  InvalidRequest: 0x0001,
  Busy: 0x0003,
  InvalidInterfaceState: 0x0004,
  Unspecified: 0x0005,
  /** ErrorData = the request code. */
  UnsupportedRequest: 0x0007,
  VersionMismatch: 0x0041,
  /** In the TDISP error table, not in libspdm 1e16c60f's pci_tdisp.h; extended data names the vendor. */
  VendorSpecificError: 0x00ff,
  InvalidInterface: 0x0101,
  InvalidNonce: 0x0102,
  InsufficientEntropy: 0x0103,
  InvalidDeviceConfiguration: 0x0104,
} as const;

/** LOCK_INTERFACE_REQUEST Flags and TDISP_CAPABILITIES LOCK_INTERFACE_FLAGS_SUPPORTED. */
export const LockInterfaceFlag = {
  NO_FW_UPDATE: 0x01,
  /** 0 = 64-byte, 1 = 128-byte system cache lines. */
  SYSTEM_CACHE_LINE_SIZE: 0x02,
  LOCK_MSIX: 0x04,
  BIND_P2P: 0x08,
  ALL_REQUEST_REDIRECT: 0x10,
} as const;

/** Device interface report INTERFACE_INFO. */
export const InterfaceInfo = {
  NO_FW_UPDATE: 0x01,
  DMA_WITHOUT_PASID: 0x02,
  DMA_WITH_PASID: 0x04,
  ATS_SUPPORTED: 0x08,
  PRS_SUPPORTED: 0x10,
} as const;

export const MmioRangeAttribute = {
  MSIX_TABLE: 0x1,
  MSIX_PBA: 0x2,
  IS_NON_TEE_MEM: 0x4,
  IS_MEM_ATTR_UPDATABLE: 0x8,
} as const;

// ---- messages -----------------------------------------------------------------------------------

export interface TdispHeader {
  /** TDISPVersion, major << 4 | minor: 0x10 for 1.0. */
  version: number;
  messageType: number;
  /** INTERFACE_ID FunctionID: [15:0] requester ID, [23:16] segment, bit 24 segment valid. */
  functionId: number;
}

/** Reserved header bytes are not kept: decoders ignore them, encoders write zeros. */
interface Msg<C extends TdispCodeName> {
  code: C;
  version: number;
  functionId: number;
}

/** One MMIO range of the report, also SET_MMIO_ATTRIBUTE_REQUEST's body. */
export interface MmioRange {
  /** First 4 KiB page (page number, not address). */
  firstPage: bigint;
  numberOfPages: number;
  /** MmioRangeAttribute bits. */
  rangeAttributes: number;
  rangeId: number;
}

export interface GetTdispVersion extends Msg<"GET_TDISP_VERSION"> {}
export interface TdispVersion extends Msg<"TDISP_VERSION"> {
  versions: number[];
}
export interface GetTdispCapabilities extends Msg<"GET_TDISP_CAPABILITIES"> {
  tsmCaps: number;
}
export interface TdispCapabilities extends Msg<"TDISP_CAPABILITIES"> {
  dsmCaps: number;
  /** 16 bytes; bit n of the 128 set when request code 0x80 + n is supported. */
  reqMsgsSupported: Buffer;
  /** LockInterfaceFlag bits. */
  lockInterfaceFlagsSupported: number;
  devAddrWidth: number;
  numReqThis: number;
  numReqAll: number;
}
export interface LockInterfaceRequest extends Msg<"LOCK_INTERFACE_REQUEST"> {
  /** LockInterfaceFlag bits. */
  flags: number;
  defaultStreamId: number;
  mmioReportingOffset: bigint;
  bindP2pAddressMask: bigint;
}
export interface LockInterfaceResponse extends Msg<"LOCK_INTERFACE_RESPONSE"> {
  startInterfaceNonce: Buffer;
}
export interface GetDeviceInterfaceReport extends Msg<"GET_DEVICE_INTERFACE_REPORT"> {
  offset: number;
  length: number;
}
export interface DeviceInterfaceReportPortion extends Msg<"DEVICE_INTERFACE_REPORT"> {
  /** PORTION_LENGTH bytes of the report. */
  portion: Buffer;
  remainderLength: number;
}
export interface GetDeviceInterfaceState extends Msg<"GET_DEVICE_INTERFACE_STATE"> {}
export interface DeviceInterfaceState extends Msg<"DEVICE_INTERFACE_STATE"> {
  /** TdiState */
  tdiState: number;
}
export interface StartInterfaceRequest extends Msg<"START_INTERFACE_REQUEST"> {
  startInterfaceNonce: Buffer;
}
export interface StartInterfaceResponse extends Msg<"START_INTERFACE_RESPONSE"> {}
export interface StopInterfaceRequest extends Msg<"STOP_INTERFACE_REQUEST"> {}
export interface StopInterfaceResponse extends Msg<"STOP_INTERFACE_RESPONSE"> {}
export interface BindP2pStreamRequest extends Msg<"BIND_P2P_STREAM_REQUEST"> {
  p2pStreamId: number;
}
export interface BindP2pStreamResponse extends Msg<"BIND_P2P_STREAM_RESPONSE"> {}
export interface UnbindP2pStreamRequest extends Msg<"UNBIND_P2P_STREAM_REQUEST"> {
  p2pStreamId: number;
}
export interface UnbindP2pStreamResponse extends Msg<"UNBIND_P2P_STREAM_RESPONSE"> {}
export interface SetMmioAttributeRequest extends Msg<"SET_MMIO_ATTRIBUTE_REQUEST"> {
  mmioRange: MmioRange;
}
export interface SetMmioAttributeResponse extends Msg<"SET_MMIO_ATTRIBUTE_RESPONSE"> {}
export interface TdispError extends Msg<"TDISP_ERROR"> {
  /** TdispErrorCode */
  errorCode: number;
  errorData: number;
  /** Bytes after ErrorData, if any (VendorSpecificError: registry ID, vendor ID length, vendor ID, data). */
  extendedErrorData?: Buffer;
}

export type TdispMessage =
  | GetTdispVersion
  | TdispVersion
  | GetTdispCapabilities
  | TdispCapabilities
  | LockInterfaceRequest
  | LockInterfaceResponse
  | GetDeviceInterfaceReport
  | DeviceInterfaceReportPortion
  | GetDeviceInterfaceState
  | DeviceInterfaceState
  | StartInterfaceRequest
  | StartInterfaceResponse
  | StopInterfaceRequest
  | StopInterfaceResponse
  | BindP2pStreamRequest
  | BindP2pStreamResponse
  | UnbindP2pStreamRequest
  | UnbindP2pStreamResponse
  | SetMmioAttributeRequest
  | SetMmioAttributeResponse
  | TdispError;
export type TdispMessageName = TdispMessage["code"];
export type TdispMessageOf<N extends TdispMessageName> = Extract<TdispMessage, { code: N }>;

/** The bytes DEVICE_INTERFACE_REPORT portions carry, concatenated. */
export interface DeviceInterfaceReport {
  /** InterfaceInfo bits. */
  interfaceInfo: number;
  /** MSI-X Message Control; 0 when MSI-X is absent or its table not locked. */
  msixMessageControl: number;
  /** LNR Control; 0 when absent. */
  lnrControl: number;
  /** TPH Requester Control; 0 when absent or not locked. */
  tphControl: number;
  mmioRanges: MmioRange[];
  deviceSpecificInfo: Buffer;
}

// ---- field lists --------------------------------------------------------------------------------

const headerFields = schema<TdispHeader>((f) => [
  f.u8("version"),
  f.u8("messageType"),
  f.reserved(2),
  f.u32("functionId"),
  f.reserved(8), // INTERFACE_ID reserved
]);

const mmioRangeFields = schema<MmioRange>((f) => [
  f.u64("firstPage"),
  f.u32("numberOfPages"),
  f.u16("rangeAttributes"),
  f.u16("rangeId"),
]);
const mmioRangeElem = structElem(mmioRangeFields, 16);

const none: readonly Field<unknown>[] = [];
const nonce = schema<{ startInterfaceNonce: Buffer }>((f) => [
  f.bytes("startInterfaceNonce", START_INTERFACE_NONCE_BYTES),
]);
const p2pStream = schema<{ p2pStreamId: number }>((f) => [f.u8("p2pStreamId")]);

type Schemas = { [K in TdispMessageName]: readonly Field<TdispMessageOf<K>>[] };

const SCHEMAS: Schemas = {
  GET_TDISP_VERSION: none,
  TDISP_VERSION: schema<TdispVersion>((f) => [f.len8("versions"), f.list("versions", "prefixed", u8Elem)]),
  GET_TDISP_CAPABILITIES: schema<GetTdispCapabilities>((f) => [f.u32("tsmCaps")]),
  TDISP_CAPABILITIES: schema<TdispCapabilities>((f) => [
    f.u32("dsmCaps"),
    f.bytes("reqMsgsSupported", REQ_MSGS_SUPPORTED_BYTES),
    f.u16("lockInterfaceFlagsSupported"),
    f.reserved(3),
    f.u8("devAddrWidth"),
    f.u8("numReqThis"),
    f.u8("numReqAll"),
  ]),
  LOCK_INTERFACE_REQUEST: schema<LockInterfaceRequest>((f) => [
    f.u16("flags"),
    f.u8("defaultStreamId"),
    f.reserved(1),
    f.u64("mmioReportingOffset"),
    f.u64("bindP2pAddressMask"),
  ]),
  LOCK_INTERFACE_RESPONSE: nonce,
  GET_DEVICE_INTERFACE_REPORT: schema<GetDeviceInterfaceReport>((f) => [f.u16("offset"), f.u16("length")]),
  DEVICE_INTERFACE_REPORT: schema<DeviceInterfaceReportPortion>((f) => [
    f.len16("portion"),
    f.u16("remainderLength"),
    f.data("portion"),
  ]),
  GET_DEVICE_INTERFACE_STATE: none,
  DEVICE_INTERFACE_STATE: schema<DeviceInterfaceState>((f) => [f.u8("tdiState")]),
  START_INTERFACE_REQUEST: nonce,
  START_INTERFACE_RESPONSE: none,
  STOP_INTERFACE_REQUEST: none,
  STOP_INTERFACE_RESPONSE: none,
  BIND_P2P_STREAM_REQUEST: p2pStream,
  BIND_P2P_STREAM_RESPONSE: none,
  UNBIND_P2P_STREAM_REQUEST: p2pStream,
  UNBIND_P2P_STREAM_RESPONSE: none,
  SET_MMIO_ATTRIBUTE_REQUEST: schema<SetMmioAttributeRequest>((f) => [
    f.struct("mmioRange", mmioRangeFields),
  ]),
  SET_MMIO_ATTRIBUTE_RESPONSE: none,
  TDISP_ERROR: schema<TdispError>((f) => [
    f.u32("errorCode"),
    f.u32("errorData"),
    f.rest("extendedErrorData"),
  ]),
};

const reportFields = schema<DeviceInterfaceReport>((f) => [
  f.u16("interfaceInfo"),
  f.reserved(2),
  f.u16("msixMessageControl"),
  f.u16("lnrControl"),
  f.u32("tphControl"),
  f.len32("mmioRanges"), // MMIO_RANGE_COUNT
  f.list("mmioRanges", "prefixed", mmioRangeElem),
  f.len32("deviceSpecificInfo"),
  f.data("deviceSpecificInfo"),
]);

// ---- API ----------------------------------------------------------------------------------------

const codec = codedCodec<TdispHeader, TdispMessage>({
  where: "tdisp",
  header: headerFields,
  codeField: "messageType",
  codes: TdispCode,
  schemas: SCHEMAS,
  headerOf: (m, messageType) => ({ version: m.version, messageType, functionId: m.functionId }),
});

/** The header alone, e.g. to answer a message whose body does not decode. */
export const decodeTdispHeader = codec.decodeHeader;
/** Decodes one TDISP message, which must fill `input` exactly. */
export const decodeTdisp = codec.decode;
/** Exact bytes of `msg`; RangeError when a field is missing or out of range. */
export const encodeTdisp = codec.encode;

/** Decodes a whole device interface report; it must end with its device-specific info. */
export function decodeDeviceInterfaceReport(input: Uint8Array): DeviceInterfaceReport {
  return decodeWhole(reportFields, input, "tdisp.report");
}

export function encodeDeviceInterfaceReport(report: DeviceInterfaceReport): Buffer {
  return encodeWhole(reportFields, report, "tdisp.report");
}
