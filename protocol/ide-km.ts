/**
 * PCI IDE-KM messages (PCIe r6.0 §6.33.3 IDE_KM; layouts as libspdm 1e16c60f
 * include/industry_standard/pci_idekm.h), the bytes after the PCI-SIG Protocol ID 00h
 * (protocol/pcisig-vdm.ts). Byte 0 is the Object ID; every message is exactly its fields.
 *
 * QUERY_RESP carries the port's IDE Extended Capability from the IDE Capability register on (PCIe
 * r6.0 §7.9.26): IDE Capability, IDE Control, one Link IDE Stream block (Control, Status) per TC
 * when Link IDE is supported, then one Selective IDE Stream block per stream when Selective IDE is
 * supported (Capability, Control, Status, RID Association 1 and 2, and as many Address Association
 * blocks of 3 registers as the block's Capability register says). DWs after those are kept as
 * `trailingRegisters`: spdm-emu 85436d53 always sends 74 DWs, all zero.
 */
import { DecodeError } from "./errors.js";
import {
  asBuffer,
  decodeFields,
  encodeFields,
  type Field,
  Need,
  Reader,
  schema,
  structElem,
  u32Elem,
  Writer,
} from "./spdm/schema.js";

export const IdeKmObject = {
  QUERY: 0x00,
  QUERY_RESP: 0x01,
  KEY_PROG: 0x02,
  KP_ACK: 0x03,
  K_SET_GO: 0x04,
  K_SET_STOP: 0x05,
  K_GOSTOP_ACK: 0x06,
} as const;
export type IdeKmObjectName = keyof typeof IdeKmObject;

export const KpAckStatus = {
  SUCCESS: 0x00,
  INCORRECT_LENGTH: 0x01,
  UNSUPPORTED_PORT_INDEX: 0x02,
  UNSUPPORTED_VALUE: 0x03,
  UNSPECIFIED_FAILURE: 0x04,
} as const;

/** The KeySubStream byte: bit 0 key set, bit 1 direction, bits 7:4 sub-stream (bits 3:2 reserved). */
export const KeySet = { K0: 0, K1: 1 } as const;
export const IdeDirection = { RX: 0, TX: 1 } as const;
export const IdeSubStream = { PR: 0, NPR: 1, CPL: 2 } as const;

/** AES-GCM-256 key, 8 DW, and the IFV (invocation field of the IV), 2 DW, as on the wire. */
export const IDE_KM_KEY_BYTES = 32;
export const IDE_KM_IFV_BYTES = 8;

/** IDE Capability register bits (PCIe r6.0 §7.9.26.2) that decide which blocks QUERY_RESP carries. */
export const IdeCapability = {
  LINK_IDE_SUPPORTED: 0x1,
  SELECTIVE_IDE_SUPPORTED: 0x2,
  IDE_KM_SUPPORTED: 0x40,
} as const;

/** Link IDE Stream blocks: [15:13] Number of TCs Supported for Link IDE, plus one. */
export const linkStreamCount = (ideCapability: number): number =>
  ideCapability & IdeCapability.LINK_IDE_SUPPORTED ? ((ideCapability >>> 13) & 0x7) + 1 : 0;
/** Selective IDE Stream blocks: [23:16] Number of Selective IDE Streams Supported, plus one. */
export const selectiveStreamCount = (ideCapability: number): number =>
  ideCapability & IdeCapability.SELECTIVE_IDE_SUPPORTED ? ((ideCapability >>> 16) & 0xff) + 1 : 0;
/** Address Association blocks of a Selective IDE Stream: its Capability register [3:0]. */
export const addressAssociationCount = (selectiveCapability: number): number => selectiveCapability & 0xf;

// ---- messages -----------------------------------------------------------------------------------

interface Obj<N extends IdeKmObjectName> {
  object: N;
}

/** The fields of KEY_PROG, KP_ACK and the K_SET messages that name one key. */
export interface KeyTarget {
  streamId: number;
  /** KeySet.K0 or K1. */
  keySet: number;
  /** IdeDirection.RX or TX. */
  direction: number;
  /** IdeSubStream.PR, NPR or CPL. */
  subStream: number;
  portIndex: number;
}

export interface LinkIdeStreamRegisters {
  control: number;
  status: number;
}

export interface AddressAssociationRegisters {
  register1: number;
  register2: number;
  register3: number;
}

export interface SelectiveIdeStreamRegisters {
  /** [3:0] = addressAssociations.length. */
  capability: number;
  control: number;
  status: number;
  ridAssociation1: number;
  ridAssociation2: number;
  addressAssociations: AddressAssociationRegisters[];
}

export interface IdeKmQuery extends Obj<"QUERY"> {
  portIndex: number;
}

export interface IdeKmQueryResp extends Obj<"QUERY_RESP"> {
  portIndex: number;
  devFuncNum: number;
  busNum: number;
  segment: number;
  maxPortIndex: number;
  ideCapability: number;
  ideControl: number;
  /** linkStreamCount(ideCapability) blocks. */
  linkStreams: LinkIdeStreamRegisters[];
  /** selectiveStreamCount(ideCapability) blocks. */
  selectiveStreams: SelectiveIdeStreamRegisters[];
  /** DWs after the blocks the capability registers account for. */
  trailingRegisters: number[];
}

export interface IdeKmKeyProg extends Obj<"KEY_PROG">, KeyTarget {
  key: Buffer;
  ifv: Buffer;
}

export interface IdeKmKpAck extends Obj<"KP_ACK">, KeyTarget {
  /** KpAckStatus */
  status: number;
}

export interface IdeKmKSetGo extends Obj<"K_SET_GO">, KeyTarget {}
export interface IdeKmKSetStop extends Obj<"K_SET_STOP">, KeyTarget {}
export interface IdeKmKGoStopAck extends Obj<"K_GOSTOP_ACK">, KeyTarget {}

export type IdeKmMessage =
  | IdeKmQuery
  | IdeKmQueryResp
  | IdeKmKeyProg
  | IdeKmKpAck
  | IdeKmKSetGo
  | IdeKmKSetStop
  | IdeKmKGoStopAck;
export type IdeKmMessageOf<N extends IdeKmObjectName> = Extract<IdeKmMessage, { object: N }>;

// ---- field lists --------------------------------------------------------------------------------

/** Checks that `v` fits `bits` bits, for the parts of a packed byte. */
export function bitsOf(v: number, bits: number, field: string): number {
  if (!Number.isInteger(v) || v < 0 || v >= 1 << bits)
    throw new RangeError(`${field}: ${v} does not fit in ${bits} bits`);
  return v;
}

/** KeySubStream, one byte holding three fields. */
const keySubStream: Field<KeyTarget> = {
  keys: ["keySet", "direction", "subStream"],
  dec(r, m, n) {
    const b = r.uint(1, `${n.where}.keySubStream`);
    m["keySet"] = b & 1;
    m["direction"] = (b >> 1) & 1;
    m["subStream"] = b >> 4;
  },
  enc(w, m, e) {
    const at = `${e.where}.keySubStream`;
    const b = bitsOf(m.keySet, 1, at) | (bitsOf(m.direction, 1, at) << 1) | (bitsOf(m.subStream, 4, at) << 4);
    w.uint(b, 1, at);
  },
};

/** The fields around KeySubStream that both IDE-KMs (PCIe's and CXL's) name a key with. */
interface KeyBytes {
  streamId: number;
  portIndex: number;
  status?: number;
}

/**
 * Reserved 2, StreamID, reserved or KP_ACK's Status, KeySubStream, PortIndex: the same 6 bytes in
 * PCIe and CXL IDE-KM, whose KeySubStream bits differ.
 */
export const keyTargetFields = <T extends KeyBytes>(subStream: Field<T>, withStatus: boolean): Field<T>[] =>
  schema<KeyBytes>((f) => [
    f.reserved(2),
    f.u8("streamId"),
    withStatus ? f.u8("status") : f.reserved(1),
    subStream as unknown as Field<KeyBytes>,
    f.u8("portIndex"),
  ]) as unknown as Field<T>[];

const keyTarget = (withStatus: boolean) => keyTargetFields<KeyTarget & KeyBytes>(keySubStream, withStatus);

const linkElem = structElem(
  schema<LinkIdeStreamRegisters>((f) => [f.u32("control"), f.u32("status")]),
  8,
);
const addressElem = structElem(
  schema<AddressAssociationRegisters>((f) => [f.u32("register1"), f.u32("register2"), f.u32("register3")]),
  12,
);
const selectiveElem = structElem(
  schema<SelectiveIdeStreamRegisters>((f) => [
    f.u32("capability"),
    f.u32("control"),
    f.u32("status"),
    f.u32("ridAssociation1"),
    f.u32("ridAssociation2"),
    f.list("addressAssociations", (m) => addressAssociationCount(m.capability), addressElem),
  ]),
);

/** QUERY, in PCIe and CXL IDE-KM alike. */
export const queryFields = schema<IdeKmQuery>((f) => [f.reserved(1), f.u8("portIndex")]);

/** The fields QUERY_RESP opens with, in PCIe and CXL IDE-KM alike. */
export const queryRespHeadFields = schema<
  Pick<IdeKmQueryResp, "portIndex" | "devFuncNum" | "busNum" | "segment" | "maxPortIndex">
>((f) => [
  f.reserved(1),
  f.u8("portIndex"),
  f.u8("devFuncNum"),
  f.u8("busNum"),
  f.u8("segment"),
  f.u8("maxPortIndex"),
]);

type Schemas = { [K in IdeKmObjectName]: readonly Field<IdeKmMessageOf<K>>[] };

const SCHEMAS: Schemas = {
  QUERY: queryFields,
  QUERY_RESP: schema<IdeKmQueryResp>((f) => [
    ...queryRespHeadFields,
    f.u32("ideCapability"),
    f.u32("ideControl"),
    f.list("linkStreams", (m) => linkStreamCount(m.ideCapability), linkElem),
    f.list("selectiveStreams", (m) => selectiveStreamCount(m.ideCapability), selectiveElem),
    f.check((_m, n) => {
      if (n.r.remaining % 4 !== 0)
        throw new DecodeError(
          `${n.where}.trailingRegisters`,
          n.r.off,
          `${n.r.remaining} bytes is not whole DWs`,
        );
    }),
    f.list("trailingRegisters", (_m, n) => n.r.remaining / 4, u32Elem),
  ]),
  KEY_PROG: [
    ...keyTarget(false),
    ...schema<IdeKmKeyProg>((f) => [f.bytes("key", IDE_KM_KEY_BYTES), f.bytes("ifv", IDE_KM_IFV_BYTES)]),
  ],
  KP_ACK: keyTarget(true),
  K_SET_GO: keyTarget(false),
  K_SET_STOP: keyTarget(false),
  K_GOSTOP_ACK: keyTarget(false),
};

// ---- API ----------------------------------------------------------------------------------------

/**
 * Decoder and encoder of a protocol whose messages are an Object ID byte, then exactly the fields
 * of that object (PCIe and CXL IDE-KM). `where` prefixes every field name in errors.
 */
export function objectCodec<M extends { object: string }>(
  where: string,
  ids: Readonly<Record<M["object"], number>>,
  schemas: { readonly [K in M["object"]]: readonly Field<Extract<M, { object: K }>>[] },
): { decode(input: Uint8Array): M; encode(msg: M): Buffer } {
  const names = new Map(Object.entries<number>(ids).map(([k, v]) => [v, k as M["object"]]));
  return {
    decode(input) {
      const r = new Reader(asBuffer(input));
      const id = r.uint(1, `${where}.objectId`);
      const name = names.get(id);
      if (name === undefined) throw new DecodeError(`${where}.objectId`, 0, `unknown Object ID ${id}`);
      const at = `${where}.${name}`;
      const m = decodeFields(schemas[name] as readonly Field<unknown>[], r, new Need({}, r, at), {
        object: name,
      });
      r.end(`${at}.trailing`);
      return m as unknown as M;
    },
    encode(msg) {
      const at = `${where}.${msg.object}`;
      const w = new Writer();
      w.uint(ids[msg.object as M["object"]], 1, `${at}.objectId`);
      encodeFields(schemas[msg.object as M["object"]] as readonly Field<M>[], w, msg, at);
      return w.finish();
    },
  };
}

const codec = objectCodec<IdeKmMessage>("ide_km", IdeKmObject, SCHEMAS);

/** Decodes one IDE-KM message, which must fill `input` exactly. */
export const decodeIdeKm = codec.decode;

/**
 * `fields` right after the Object ID byte, whatever follows them; DecodeError (named
 * `protocol.name.…`) when they are not all there.
 */
export function decodeAfterObjectId<T>(
  input: Uint8Array,
  fields: readonly Field<T>[],
  protocol: string,
  name: string,
): T {
  const r = new Reader(asBuffer(input));
  r.uint(1, `${protocol}.objectId`);
  const where = `${protocol}.${name}`;
  return decodeFields(fields as readonly Field<unknown>[], r, new Need({}, r, where)) as unknown as T;
}

/**
 * The key-naming fields at the start of a KEY_PROG or K_SET message whatever its length, so that a
 * KEY_PROG of the wrong length can still get its KP_ACK (Status Incorrect Length). DecodeError when
 * even those 7 bytes are not there.
 */
export const decodeKeyTarget = (input: Uint8Array): KeyTarget =>
  decodeAfterObjectId(input, keyTarget(false), "ide_km", "keyTarget");

/** Exact bytes of `msg`; RangeError when a field is missing, out of range or inconsistent. */
export function encodeIdeKm(msg: IdeKmMessage): Buffer {
  if (msg.object === "QUERY_RESP") checkBlockCounts(msg, "ide_km.QUERY_RESP");
  return codec.encode(msg);
}

/** The capability registers decide the block counts; a message that disagrees would not decode back. */
function checkBlockCounts(m: IdeKmQueryResp, where: string): void {
  const counts: [string, number, number][] = [
    ["linkStreams", m.linkStreams.length, linkStreamCount(m.ideCapability)],
    ["selectiveStreams", m.selectiveStreams.length, selectiveStreamCount(m.ideCapability)],
    ...m.selectiveStreams.map((s, i): [string, number, number] => [
      `selectiveStreams[${i}].addressAssociations`,
      s.addressAssociations.length,
      addressAssociationCount(s.capability),
    ]),
  ];
  for (const [field, have, want] of counts) {
    if (have !== want)
      throw new RangeError(`${where}.${field}: ${have} blocks, the capability register says ${want}`);
  }
}
