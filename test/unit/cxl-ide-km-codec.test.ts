/**
 * CXL IDE-KM codec: hand-built messages against libspdm 1e16c60f cxl_idekm.h's byte layouts,
 * truncation at every offset (of those and of the 32 messages of the spdm13_app recording), malformed
 * input and round-trip properties. The recorded messages' decoding and re-encoding through SPDM and
 * the carrier is checked in pcisig-vdm-codec.test.ts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CXL_DEFAULT_IV,
  CXL_SUB_STREAM,
  CxlDirection,
  CxlIdeKmCaps,
  type CxlIdeKmMessage,
  CxlIdeKmObject,
  CxlIvMode,
  CxlKeyMode,
  CxlKpAckStatus,
  decodeCxlIdeKm,
  decodeCxlKeyTarget,
  encodeCxlIdeKm,
} from "../../protocol/cxl-ide-km.js";
import { decodePciSigVdm } from "../../protocol/pcisig-vdm.js";
import { decodeSpdm } from "../../protocol/spdm/index.js";
import {
  bytesArb,
  decodeError,
  expectTruncationsRejected,
  hex,
  objectCodecProperties,
  queryRespHeadArb,
} from "../support/codec.js";
import { readDecoded } from "../vectors.js";

const KEY = Buffer.from([...Array(32).keys()].map((i) => 0xc0 + i));
const IV = hex("00000000 01000000 02000000");
/** Stream 3, TX, mode bit set, CXL sub-stream, port 2: KeySubStream 0x8a. */
const TARGET = { streamId: 3, direction: CxlDirection.TX, mode: 1, subStream: CXL_SUB_STREAM, portIndex: 2 };
const HEAD = "0000 03 00 8a 02";

/**
 * Every proper prefix of `bytes` is a DecodeError, except that QUERY_RESP cut after whole registers
 * is a QUERY_RESP with fewer (8 + 4n bytes, n ≤ 9, is every size it may have).
 */
function expectCutsRejected(bytes: Buffer): void {
  if (bytes[0] !== CxlIdeKmObject.QUERY_RESP) {
    expectTruncationsRejected(bytes, decodeCxlIdeKm, "cxl_ide_km.");
    return;
  }
  for (let n = 0; n < bytes.length; n++) {
    const cut = bytes.subarray(0, n);
    if (n >= 8 && n % 4 === 0)
      expect(decodeCxlIdeKm(cut)).toMatchObject({ ideRegisters: { length: (n - 8) / 4 } });
    else expect(decodeError(() => decodeCxlIdeKm(cut)).field).toMatch(/^cxl_ide_km\./);
  }
}

const CASES: { title: string; bytes: Buffer; msg: CxlIdeKmMessage }[] = [
  { title: "QUERY", bytes: hex("00 00 02"), msg: { object: "QUERY", portIndex: 2 } },
  {
    title: "QUERY_RESP with the 9 CXL IDE registers",
    bytes: hex(`01 00 02 08 3a 01 07 71 07000000 ${"00000000".repeat(7)} 2a000000`),
    msg: {
      object: "QUERY_RESP",
      portIndex: 2,
      devFuncNum: 0x08,
      busNum: 0x3a,
      segment: 1,
      maxPortIndex: 7,
      caps: CxlIdeKmCaps.VERSION_1 | CxlIdeKmCaps.IV_GEN | CxlIdeKmCaps.KEY_GEN | CxlIdeKmCaps.K_SET_STOP,
      ideRegisters: [7, 0, 0, 0, 0, 0, 0, 0, 0x2a],
    },
  },
  {
    title: "QUERY_RESP without registers",
    bytes: hex("01 00 00 00 00 00 00 01"),
    msg: {
      object: "QUERY_RESP",
      portIndex: 0,
      devFuncNum: 0,
      busNum: 0,
      segment: 0,
      maxPortIndex: 0,
      caps: 1,
      ideRegisters: [],
    },
  },
  {
    title: "KEY_PROG (IV_DEFAULT)",
    bytes: Buffer.concat([hex(`02 ${HEAD}`), KEY, IV]),
    msg: { object: "KEY_PROG", ...TARGET, mode: CxlIvMode.DEFAULT, key: KEY, iv: IV },
  },
  {
    title: "KP_ACK",
    bytes: hex("03 0000 03 01 8a 02"),
    msg: { object: "KP_ACK", ...TARGET, status: CxlKpAckStatus.INVALID },
  },
  {
    title: "K_SET_GO (CONTAINMENT)",
    bytes: hex(`04 ${HEAD}`),
    msg: { object: "K_SET_GO", ...TARGET, mode: CxlKeyMode.CONTAINMENT },
  },
  {
    title: "K_SET_STOP",
    bytes: hex("05 0000 03 00 82 02"),
    msg: { object: "K_SET_STOP", ...TARGET, mode: 0 },
  },
  { title: "K_GOSTOP_ACK", bytes: hex(`06 ${HEAD}`), msg: { object: "K_GOSTOP_ACK", ...TARGET } },
  {
    title: "GET_KEY",
    bytes: hex("07 0000 03 00 80 02"),
    msg: { object: "GET_KEY", ...TARGET, direction: 0, mode: 0 },
  },
  {
    title: "GET_KEY_ACK",
    bytes: Buffer.concat([hex(`08 ${HEAD}`), KEY, CXL_DEFAULT_IV]),
    msg: { object: "GET_KEY_ACK", ...TARGET, key: KEY, iv: CXL_DEFAULT_IV },
  },
];

describe("CXL IDE-KM codec: hand-built messages", () => {
  it.each(CASES)("$title decodes and encodes byte for byte", ({ bytes, msg }) => {
    expect(decodeCxlIdeKm(bytes)).toEqual(msg);
    expect(encodeCxlIdeKm(msg)).toEqual(bytes);
  });

  it.each(CASES)(
    "$title: every truncation is a DecodeError (QUERY_RESP: but a shorter register list)",
    ({ bytes }) => {
      expectCutsRejected(bytes);
    },
  );

  it.each(CASES)("$title: a byte more is a DecodeError", ({ bytes, msg }) => {
    const e = decodeError(() => decodeCxlIdeKm(Buffer.concat([bytes, hex("00")])));
    // QUERY_RESP's registers are checked as a whole, from their first byte.
    const [field, offset] = msg.object === "QUERY_RESP" ? ["ideRegisters", 8] : ["trailing", bytes.length];
    expect([e.field, e.offset]).toEqual([`cxl_ide_km.${msg.object}.${field}`, offset]);
  });

  it("the sizes are libspdm's: QUERY 3, QUERY_RESP 8 + 4n, KEY_PROG and GET_KEY_ACK 51, the others 7", () => {
    expect(Object.fromEntries(CASES.map((c) => [c.title.split(" ")[0], c.bytes.length]))).toEqual({
      QUERY: 3,
      QUERY_RESP: 8,
      KEY_PROG: 51,
      KP_ACK: 7,
      K_SET_GO: 7,
      K_SET_STOP: 7,
      K_GOSTOP_ACK: 7,
      GET_KEY: 7,
      GET_KEY_ACK: 51,
    });
  });

  it("QUERY_RESP: a tenth register, or a part of one, is a DecodeError; encoding a tenth a RangeError", () => {
    const resp = CASES[1]!;
    const ten = decodeError(() => decodeCxlIdeKm(Buffer.concat([resp.bytes, hex("00000000")])));
    expect([ten.field, ten.reason]).toEqual(["cxl_ide_km.QUERY_RESP.ideRegisters", "10 DWs, at most 9"]);
    const part = decodeError(() => decodeCxlIdeKm(hex("01 00 00 00 00 00 00 01 0000")));
    expect([part.field, part.offset]).toEqual(["cxl_ide_km.QUERY_RESP.ideRegisters", 8]);
    const msg = resp.msg as Extract<CxlIdeKmMessage, { object: "QUERY_RESP" }>;
    expect(() => encodeCxlIdeKm({ ...msg, ideRegisters: Array(10).fill(0) })).toThrow(RangeError);
  });

  it("reads direction, mode and sub-stream out of KeySubStream, ignoring reserved bits 0 and 2", () => {
    expect(decodeCxlIdeKm(hex("04 0000 00 00 8f 00"))).toMatchObject({ direction: 1, mode: 1, subStream: 8 });
    expect(decodeCxlIdeKm(hex("04 0000 00 00 85 00"))).toMatchObject({ direction: 0, mode: 0, subStream: 8 });
  });

  it("rejects an unknown Object ID, and refuses out-of-range KeySubStream parts and wrong key or IV sizes", () => {
    const e = decodeError(() => decodeCxlIdeKm(hex("09 0000 00 00 80 00")));
    expect([e.field, e.offset]).toEqual(["cxl_ide_km.objectId", 0]);
    expect(() => encodeCxlIdeKm({ object: "K_SET_GO", ...TARGET, direction: 2 })).toThrow(RangeError);
    expect(() => encodeCxlIdeKm({ object: "K_SET_GO", ...TARGET, mode: 2 })).toThrow(RangeError);
    expect(() => encodeCxlIdeKm({ object: "K_SET_GO", ...TARGET, subStream: 16 })).toThrow(RangeError);
    expect(() => encodeCxlIdeKm({ object: "KEY_PROG", ...TARGET, key: KEY, iv: IV.subarray(4) })).toThrow(
      /iv: 8 bytes, must be 12/,
    );
  });

  it("the key target of a KEY_PROG of any length from 7 bytes on", () => {
    const prog = CASES[3]!.bytes;
    for (const n of [7, 20, 50, 52])
      expect(decodeCxlKeyTarget(Buffer.concat([prog, Buffer.alloc(1)]).subarray(0, n))).toEqual(TARGET);
    expect(decodeError(() => decodeCxlKeyTarget(prog.subarray(0, 6))).field).toBe(
      "cxl_ide_km.keyTarget.portIndex",
    );
  });
});

describe("CXL IDE-KM messages of spdm13_app", () => {
  const recorded = readDecoded("spdm13_app")
    .messages.filter((m) => m.vdm?.family === "CXL" && m.vdm.protocol === "IDE_KM")
    .map((m) => {
      const spdm = decodeSpdm(m.plain);
      if (spdm.code !== "VENDOR_DEFINED_REQUEST" && spdm.code !== "VENDOR_DEFINED_RESPONSE")
        throw new Error(spdm.code);
      return decodePciSigVdm(spdm).message;
    });

  it("all 32: every truncation is a DecodeError (QUERY_RESP: but a shorter register list)", () => {
    expect(recorded).toHaveLength(32);
    for (const bytes of recorded) expectCutsRejected(bytes);
  });
});

// ---- properties ---------------------------------------------------------------------------------

const u8 = fc.integer({ min: 0, max: 0xff });
const bit = fc.integer({ min: 0, max: 1 });
const targetArb = fc.record({
  streamId: u8,
  direction: bit,
  mode: bit,
  subStream: fc.integer({ min: 0, max: 15 }),
  portIndex: u8,
});
const keyed = fc.constantFrom("K_SET_GO", "K_SET_STOP", "K_GOSTOP_ACK", "GET_KEY") as fc.Arbitrary<
  "K_SET_GO" | "K_SET_STOP" | "K_GOSTOP_ACK" | "GET_KEY"
>;
const messageArb: fc.Arbitrary<CxlIdeKmMessage> = fc.oneof(
  u8.map((portIndex): CxlIdeKmMessage => ({ object: "QUERY", portIndex })),
  fc
    .record({
      ...queryRespHeadArb,
      caps: u8,
      ideRegisters: fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { maxLength: 9 }),
    })
    .map((m): CxlIdeKmMessage => ({ object: "QUERY_RESP", ...m })),
  fc
    .tuple(
      targetArb,
      bytesArb(32),
      bytesArb(12),
      fc.constantFrom("KEY_PROG" as const, "GET_KEY_ACK" as const),
    )
    .map(([t, key, iv, object]): CxlIdeKmMessage => ({ object, ...t, key, iv })),
  fc.tuple(targetArb, u8).map(([t, status]): CxlIdeKmMessage => ({ object: "KP_ACK", ...t, status })),
  fc.tuple(targetArb, keyed).map(([t, object]): CxlIdeKmMessage => ({ object, ...t })),
);

objectCodecProperties("CXL IDE-KM codec properties", messageArb, decodeCxlIdeKm, encodeCxlIdeKm, 10, 80);
