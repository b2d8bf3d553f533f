/**
 * PCI IDE-KM codec (PCIe r6.0 §6.33.3): hand-built messages against the spec's byte layouts,
 * truncation, malformed input and round-trip properties. The recorded messages are checked in
 * pcisig-vdm-codec.test.ts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeIdeKm,
  encodeIdeKm,
  IdeCapability,
  IdeDirection,
  type IdeKmMessage,
  type IdeKmQueryResp,
  IdeSubStream,
  KeySet,
  KpAckStatus,
} from "../../protocol/ide-km.js";
import {
  bytesArb,
  decodeError,
  expectTruncationsRejected,
  hex,
  objectCodecProperties,
  queryRespHeadArb,
} from "../support/codec.js";

const dw = (...values: number[]) =>
  Buffer.concat(values.map((v) => Buffer.from(Uint32Array.of(v).buffer))).toString("hex");
const KEY = Buffer.from([...Array(32).keys()].map((i) => 0xa0 + i));
const IFV = hex("00000000 01000000");
/** Stream 5, key set K1, TX, CPL, port 2: KeySubStream 0x23. */
const TARGET = {
  streamId: 5,
  keySet: KeySet.K1,
  direction: IdeDirection.TX,
  subStream: IdeSubStream.CPL,
  portIndex: 2,
};

/** Link IDE with 2 TCs, Selective IDE with 2 streams, IDE_KM: the blocks QUERY_RESP then carries. */
const CAPABILITY =
  IdeCapability.LINK_IDE_SUPPORTED |
  IdeCapability.SELECTIVE_IDE_SUPPORTED |
  IdeCapability.IDE_KM_SUPPORTED |
  (1 << 13) |
  (1 << 16);
const QUERY_RESP: IdeKmQueryResp = {
  object: "QUERY_RESP",
  portIndex: 2,
  devFuncNum: 0x08,
  busNum: 0x3a,
  segment: 1,
  maxPortIndex: 3,
  ideCapability: CAPABILITY,
  ideControl: 0x4,
  linkStreams: [
    { control: 0x11, status: 0x12 },
    { control: 0x21, status: 0x22 },
  ],
  selectiveStreams: [
    {
      capability: 1,
      control: 0x0500_0001,
      status: 0x2,
      ridAssociation1: 0x00ff_ff00,
      ridAssociation2: 0x0000_0001,
      addressAssociations: [{ register1: 0xfff0_0001, register2: 0x1, register3: 0x2 }],
    },
    {
      capability: 0,
      control: 0x33,
      status: 0x34,
      ridAssociation1: 0x35,
      ridAssociation2: 0x36,
      addressAssociations: [],
    },
  ],
  trailingRegisters: [],
};

const CASES: { title: string; bytes: Buffer; msg: IdeKmMessage }[] = [
  { title: "QUERY", bytes: hex("00 00 02"), msg: { object: "QUERY", portIndex: 2 } },
  {
    title: "QUERY_RESP with link and selective stream blocks",
    bytes: hex(
      `01 00 02 08 3a 01 03 ${dw(CAPABILITY, 0x4, 0x11, 0x12, 0x21, 0x22)}` +
        dw(1, 0x0500_0001, 0x2, 0x00ff_ff00, 1, 0xfff0_0001, 1, 2) +
        dw(0, 0x33, 0x34, 0x35, 0x36),
    ),
    msg: QUERY_RESP,
  },
  {
    title: "KEY_PROG",
    bytes: Buffer.concat([hex("02 0000 05 00 23 02"), KEY, IFV]),
    msg: { object: "KEY_PROG", ...TARGET, key: KEY, ifv: IFV },
  },
  {
    title: "KP_ACK",
    bytes: hex("03 0000 05 02 23 02"),
    msg: { object: "KP_ACK", ...TARGET, status: KpAckStatus.UNSUPPORTED_PORT_INDEX },
  },
  { title: "K_SET_GO", bytes: hex("04 0000 05 00 23 02"), msg: { object: "K_SET_GO", ...TARGET } },
  { title: "K_SET_STOP", bytes: hex("05 0000 05 00 23 02"), msg: { object: "K_SET_STOP", ...TARGET } },
  { title: "K_GOSTOP_ACK", bytes: hex("06 0000 05 00 23 02"), msg: { object: "K_GOSTOP_ACK", ...TARGET } },
];

describe("IDE-KM codec: hand-built messages", () => {
  it.each(CASES)("$title decodes and encodes byte for byte", ({ bytes, msg }) => {
    expect(decodeIdeKm(bytes)).toEqual(msg);
    expect(encodeIdeKm(msg)).toEqual(bytes);
  });

  it.each(CASES)("$title: every truncation is a DecodeError", ({ bytes }) => {
    expectTruncationsRejected(bytes, decodeIdeKm, "ide_km.");
  });

  it.each(CASES)(
    "$title: a byte more is a DecodeError, except whole DWs after QUERY_RESP",
    ({ bytes, msg }) => {
      const e = decodeError(() => decodeIdeKm(Buffer.concat([bytes, hex("00")])));
      const field = msg.object === "QUERY_RESP" ? "trailingRegisters" : "trailing";
      expect([e.field, e.offset]).toEqual([`ide_km.${msg.object}.${field}`, bytes.length]);
    },
  );

  it("keeps DWs the capability registers do not account for, as spdm-emu sends them", () => {
    const m = decodeIdeKm(hex(`01 00 01 00 00 00 07 ${dw(0, 0, 7, 9)}`)) as IdeKmQueryResp;
    expect([m.linkStreams, m.selectiveStreams, m.trailingRegisters]).toEqual([[], [], [7, 9]]);
  });

  it("reads the key set, direction and sub-stream out of KeySubStream, ignoring reserved bits 3:2", () => {
    const m = decodeIdeKm(hex("04 0000 00 00 1d 00"));
    expect(m).toMatchObject({ keySet: KeySet.K1, direction: IdeDirection.RX, subStream: IdeSubStream.NPR });
  });

  it("rejects an unknown Object ID", () => {
    const e = decodeError(() => decodeIdeKm(hex("07 0000 00 00 00 00")));
    expect([e.field, e.offset]).toEqual(["ide_km.objectId", 0]);
  });

  it("names the missing block when the capability register promises more than is there", () => {
    const e = decodeError(() => decodeIdeKm(hex(`01 00 01 00 00 00 07 ${dw(0x1, 0, 0x11)}`)));
    expect([e.field, e.offset]).toEqual(["ide_km.QUERY_RESP.linkStreams", 15]);
  });

  it("refuses to encode blocks the capability register does not describe", () => {
    expect(() => encodeIdeKm({ ...QUERY_RESP, linkStreams: [] })).toThrow(/linkStreams: 0 blocks/);
    const [first, second] = QUERY_RESP.selectiveStreams;
    const noAddress = { ...first!, addressAssociations: [] };
    expect(() => encodeIdeKm({ ...QUERY_RESP, selectiveStreams: [noAddress, second!] })).toThrow(
      /selectiveStreams\[0\]\.addressAssociations/,
    );
  });

  it("refuses out-of-range KeySubStream parts and keys of the wrong size", () => {
    expect(() => encodeIdeKm({ object: "K_SET_GO", ...TARGET, direction: 2 })).toThrow(RangeError);
    expect(() => encodeIdeKm({ object: "K_SET_GO", ...TARGET, subStream: 16 })).toThrow(RangeError);
    expect(() => encodeIdeKm({ object: "KEY_PROG", ...TARGET, key: KEY.subarray(1), ifv: IFV })).toThrow(
      RangeError,
    );
  });

  it("copies the key and IFV instead of aliasing the input", () => {
    const bytes = Buffer.from(CASES[2]!.bytes);
    const m = decodeIdeKm(bytes);
    bytes.fill(0xee);
    expect(m).toEqual(CASES[2]!.msg);
  });
});

// ---- properties ---------------------------------------------------------------------------------

const u8 = fc.integer({ min: 0, max: 0xff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const targetArb = fc.record({
  streamId: u8,
  keySet: fc.integer({ min: 0, max: 1 }),
  direction: fc.integer({ min: 0, max: 1 }),
  subStream: fc.integer({ min: 0, max: 15 }),
  portIndex: u8,
});
const selectiveArb = fc
  .record({
    capability: u32,
    control: u32,
    status: u32,
    ridAssociation1: u32,
    ridAssociation2: u32,
    addressAssociations: fc.array(fc.record({ register1: u32, register2: u32, register3: u32 }), {
      maxLength: 15,
    }),
  })
  .map((s) => ({ ...s, capability: ((s.capability & ~0xf) | s.addressAssociations.length) >>> 0 }));
/** The capability register's supported bits and counts follow the blocks generated. */
const queryRespArb = fc
  .record({
    ...queryRespHeadArb,
    ideCapability: u32,
    ideControl: u32,
    linkStreams: fc.array(fc.record({ control: u32, status: u32 }), { maxLength: 8 }),
    selectiveStreams: fc.array(selectiveArb, { maxLength: 3 }),
    trailingRegisters: fc.array(u32, { maxLength: 4 }),
  })
  .map((m): IdeKmQueryResp => {
    let cap = m.ideCapability & ~(0x3 | (0x7 << 13) | (0xff << 16));
    if (m.linkStreams.length > 0) cap |= 0x1 | ((m.linkStreams.length - 1) << 13);
    if (m.selectiveStreams.length > 0) cap |= 0x2 | ((m.selectiveStreams.length - 1) << 16);
    return { object: "QUERY_RESP", ...m, ideCapability: cap >>> 0 };
  });
const messageArb: fc.Arbitrary<IdeKmMessage> = fc.oneof(
  u8.map((portIndex): IdeKmMessage => ({ object: "QUERY", portIndex })),
  queryRespArb,
  fc
    .tuple(targetArb, bytesArb(32), bytesArb(8))
    .map(([t, key, ifv]): IdeKmMessage => ({ object: "KEY_PROG", ...t, key, ifv })),
  fc.tuple(targetArb, u8).map(([t, status]): IdeKmMessage => ({ object: "KP_ACK", ...t, status })),
  fc
    .tuple(targetArb, fc.constantFrom("K_SET_GO" as const, "K_SET_STOP" as const, "K_GOSTOP_ACK" as const))
    .map(([t, object]): IdeKmMessage => ({ object, ...t })),
);

objectCodecProperties("IDE-KM codec properties", messageArb, decodeIdeKm, encodeIdeKm, 8, 200);
