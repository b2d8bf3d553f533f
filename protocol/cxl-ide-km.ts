/**
 * CXL IDE-KM messages (CXL 3.0 chapter 11, CXL IDE key management; layouts as libspdm 1e16c60f
 * include/industry_standard/cxl_idekm.h), the bytes after CXL's Protocol ID 00h (VendorID 0x1E98,
 * protocol/pcisig-vdm.ts). They are PCIe IDE-KM's (protocol/ide-km.ts) with these differences:
 * QUERY_RESP adds a Caps byte and carries the CXL IDE Capability Structure's registers; KEY_PROG
 * carries a 3-DW initial IV instead of a 2-DW IFV; GET_KEY / GET_KEY_ACK let the device supply key
 * and IV; KeySubStream has no key set, only the direction (bit 1), a mode (bit 3) and the
 * sub-stream (bits 7:4, 1000b for CXL). Every message is exactly its fields.
 */

import { DecodeError } from "./errors.js";
import {
  bitsOf,
  decodeAfterObjectId,
  IdeKmObject,
  keyTargetFields,
  objectCodec,
  queryFields,
  queryRespHeadFields,
} from "./ide-km.js";
import { type Field, schema, u32Elem } from "./spdm/schema.js";

/** PCIe IDE-KM's Object IDs, and two new ones. */
export const CxlIdeKmObject = {
  ...IdeKmObject,
  GET_KEY: 0x07,
  GET_KEY_ACK: 0x08,
} as const;
export type CxlIdeKmObjectName = keyof typeof CxlIdeKmObject;

export const CxlKpAckStatus = { SUCCESS: 0x00, INVALID: 0x01 } as const;

/** QUERY_RESP Caps: [3:0] version, then what the device can do. */
export const CxlIdeKmCaps = {
  VERSION_MASK: 0x0f,
  VERSION_1: 0x01,
  /** The device generates the IV: GET_KEY_ACK carries it. */
  IV_GEN: 0x10,
  /** The device generates the key: GET_KEY_ACK carries it. */
  KEY_GEN: 0x20,
  /** The device accepts K_SET_STOP. */
  K_SET_STOP: 0x40,
} as const;

export const CxlDirection = { RX: 0, TX: 1 } as const;
/** KeySubStream [7:4] of every CXL key. */
export const CXL_SUB_STREAM = 0x8;
/** KeySubStream bit 3 in KEY_PROG (and its KP_ACK): DEFAULT = ignore the IV field, use the default IV. */
export const CxlIvMode = { INITIAL: 0, DEFAULT: 1 } as const;
/** KeySubStream bit 3 in K_SET_GO (and its K_GOSTOP_ACK). */
export const CxlKeyMode = { SKID: 0, CONTAINMENT: 1 } as const;

/** AES-GCM-256 key, 8 DW, and the IV, 3 DW, each DW little-endian as on the wire. */
export const CXL_IDE_KM_KEY_BYTES = 32;
export const CXL_IDE_KM_IV_BYTES = 12;
/**
 * DW0 0x80000000, DW1 0, DW2 1: the IV DMTF's requester programs when the device does not generate
 * one (spdm-emu 85436d53), and the one our device takes for a KEY_PROG with IV_DEFAULT.
 */
export const CXL_DEFAULT_IV = Buffer.from("000000800000000001000000", "hex");
/** The CXL IDE Capability Structure (CXL 3.1 §8.2.4.22) is 9 registers: QUERY_RESP carries at most those. */
export const CXL_IDE_REGISTERS = 9;

// ---- messages -----------------------------------------------------------------------------------

interface Obj<N extends CxlIdeKmObjectName> {
  object: N;
}

/** The fields of every message but QUERY and QUERY_RESP that name one key. */
export interface CxlKeyTarget {
  streamId: number;
  /** CxlDirection.RX or TX. */
  direction: number;
  /** KeySubStream bit 3: CxlIvMode in KEY_PROG / KP_ACK, CxlKeyMode in K_SET_GO / K_GOSTOP_ACK, else 0. */
  mode: number;
  /** KeySubStream [7:4]: CXL_SUB_STREAM. */
  subStream: number;
  portIndex: number;
}

export interface CxlIdeKmQuery extends Obj<"QUERY"> {
  portIndex: number;
}

export interface CxlIdeKmQueryResp extends Obj<"QUERY_RESP"> {
  portIndex: number;
  devFuncNum: number;
  busNum: number;
  segment: number;
  maxPortIndex: number;
  /** CxlIdeKmCaps bits. */
  caps: number;
  /** The CXL IDE Capability Structure's registers, at most CXL_IDE_REGISTERS DWs. */
  ideRegisters: number[];
}

interface KeyAndIv {
  key: Buffer;
  iv: Buffer;
}

/** `iv` is ignored by the device when `mode` is CxlIvMode.DEFAULT. */
export interface CxlIdeKmKeyProg extends Obj<"KEY_PROG">, CxlKeyTarget, KeyAndIv {}
export interface CxlIdeKmKpAck extends Obj<"KP_ACK">, CxlKeyTarget {
  /** CxlKpAckStatus */
  status: number;
}
export interface CxlIdeKmKSetGo extends Obj<"K_SET_GO">, CxlKeyTarget {}
export interface CxlIdeKmKSetStop extends Obj<"K_SET_STOP">, CxlKeyTarget {}
export interface CxlIdeKmKGoStopAck extends Obj<"K_GOSTOP_ACK">, CxlKeyTarget {}
export interface CxlIdeKmGetKey extends Obj<"GET_KEY">, CxlKeyTarget {}
/** The key is meaningless unless the device has KEY_GEN, the IV unless it has IV_GEN. */
export interface CxlIdeKmGetKeyAck extends Obj<"GET_KEY_ACK">, CxlKeyTarget, KeyAndIv {}

export type CxlIdeKmMessage =
  | CxlIdeKmQuery
  | CxlIdeKmQueryResp
  | CxlIdeKmKeyProg
  | CxlIdeKmKpAck
  | CxlIdeKmKSetGo
  | CxlIdeKmKSetStop
  | CxlIdeKmKGoStopAck
  | CxlIdeKmGetKey
  | CxlIdeKmGetKeyAck;
export type CxlIdeKmMessageOf<N extends CxlIdeKmObjectName> = Extract<CxlIdeKmMessage, { object: N }>;

// ---- field lists --------------------------------------------------------------------------------

/** KeySubStream: direction bit 1, mode bit 3, sub-stream bits 7:4 (bits 0 and 2 reserved). */
const keySubStream: Field<CxlKeyTarget> = {
  keys: ["direction", "mode", "subStream"],
  dec(r, m, n) {
    const b = r.uint(1, `${n.where}.keySubStream`);
    m["direction"] = (b >> 1) & 1;
    m["mode"] = (b >> 3) & 1;
    m["subStream"] = b >> 4;
  },
  enc(w, m, e) {
    const at = `${e.where}.keySubStream`;
    const b =
      (bitsOf(m.direction, 1, at) << 1) | (bitsOf(m.mode, 1, at) << 3) | (bitsOf(m.subStream, 4, at) << 4);
    w.uint(b, 1, at);
  },
};

const keyTarget = (withStatus: boolean) => keyTargetFields<CxlKeyTarget>(keySubStream, withStatus);
const keyAndIv = schema<KeyAndIv>((f) => [
  f.bytes("key", CXL_IDE_KM_KEY_BYTES),
  f.bytes("iv", CXL_IDE_KM_IV_BYTES),
]);

type Schemas = { [K in CxlIdeKmObjectName]: readonly Field<CxlIdeKmMessageOf<K>>[] };

const SCHEMAS: Schemas = {
  QUERY: queryFields as readonly Field<CxlIdeKmQuery>[],
  QUERY_RESP: schema<CxlIdeKmQueryResp>((f) => [
    ...queryRespHeadFields,
    f.u8("caps"),
    f.check((_m, n) => {
      const where = `${n.where}.ideRegisters`;
      if (n.r.remaining % 4 !== 0)
        throw new DecodeError(where, n.r.off, `${n.r.remaining} bytes is not whole DWs`);
      if (n.r.remaining > CXL_IDE_REGISTERS * 4)
        throw new DecodeError(where, n.r.off, `${n.r.remaining / 4} DWs, at most ${CXL_IDE_REGISTERS}`);
    }),
    f.list("ideRegisters", (_m, n) => n.r.remaining / 4, u32Elem),
  ]),
  KEY_PROG: [...keyTarget(false), ...keyAndIv],
  KP_ACK: keyTarget(true),
  K_SET_GO: keyTarget(false),
  K_SET_STOP: keyTarget(false),
  K_GOSTOP_ACK: keyTarget(false),
  GET_KEY: keyTarget(false),
  GET_KEY_ACK: [...keyTarget(false), ...keyAndIv],
};

const codec = objectCodec<CxlIdeKmMessage>("cxl_ide_km", CxlIdeKmObject, SCHEMAS);

// ---- API ----------------------------------------------------------------------------------------

/** Decodes one CXL IDE-KM message, which must fill `input` exactly. */
export const decodeCxlIdeKm = codec.decode;

/** Exact bytes of `msg`; RangeError when a field is missing or out of range. */
export function encodeCxlIdeKm(msg: CxlIdeKmMessage): Buffer {
  if (msg.object === "QUERY_RESP" && msg.ideRegisters.length > CXL_IDE_REGISTERS)
    throw new RangeError(
      `cxl_ide_km.QUERY_RESP.ideRegisters: ${msg.ideRegisters.length} DWs, at most ${CXL_IDE_REGISTERS}`,
    );
  return codec.encode(msg);
}

/**
 * The key-naming fields at the start of a KEY_PROG (or any keyed message) whatever its length, so
 * that a KEY_PROG of the wrong length can still get its KP_ACK. DecodeError when even those 7 bytes
 * are not there.
 */
export const decodeCxlKeyTarget = (input: Uint8Array): CxlKeyTarget =>
  decodeAfterObjectId(input, keyTarget(false), "cxl_ide_km", "keyTarget");
