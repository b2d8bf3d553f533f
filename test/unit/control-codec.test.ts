import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ControlCommand,
  type ControlError,
  ControlErrorCode,
  type ControlMessage,
  checkConfigAccess,
  type DeviceIdentity,
  decodeControlFrame,
  encodeControlFrame,
} from "../../protocol/control.js";
import { DecodeError } from "../../protocol/errors.js";
import { decodeFrame, encodeFrame } from "../../protocol/socket.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const wire = (tag: number, msg: ControlMessage) => encodeFrame(encodeControlFrame(tag, msg));
const fromWire = (bytes: Buffer) => decodeControlFrame(decodeFrame(bytes));

const IDENTITY: DeviceIdentity = {
  name: "dev",
  bus: 1,
  mailboxes: [{ rid: 0x0100, doeCapOffset: 0x100, mailbox: 0, host: "127.0.0.1", port: 2323 }],
};
// name str8 "dev" | bus 01 | count 0001 | rid 0100 | cap 0100 | index 00 | port 0913 | host str8 "127.0.0.1"
const IDENTITY_BYTES = "03 646576 01 0100 0001 0001 00 1309 09 3132372e302e302e31";

describe("control wire codec: byte vectors", () => {
  const vectors: [string, number, ControlMessage, string][] = [
    [
      "CFG_READ",
      7,
      { kind: "cfgRead", rid: 0x0108, offset: 0x100, width: 4 },
      "00004301 00000007 00000005 0801 0001 04",
    ],
    [
      "CFG_WRITE",
      0x12345678,
      { kind: "cfgWrite", rid: 0x0100, offset: 0x04, width: 2, value: 0x0006 },
      "00004302 12345678 00000009 0001 0400 02 06000000",
    ],
    [
      "CFG_BATCH",
      2,
      {
        kind: "cfgBatch",
        accesses: [
          { op: "read", rid: 0x0100, offset: 0, width: 4, count: 2 },
          { op: "write", rid: 0x0100, offset: 0x04, width: 2, value: 0x0006 },
        ],
      },
      "00004308 00000002 0000001a 0200 00 0001 0000 04 0200 00000000 01 0001 0400 02 0100 06000000",
    ],
    [
      "CFG_BATCH_RSP",
      2,
      { kind: "cfgBatchRsp", data: hex("361b00de") },
      "00004388 00000002 00000004 361b00de",
    ],
    ["CFG_READ_RSP", 7, { kind: "cfgReadRsp", value: 0xffffffff }, "00004381 00000007 00000004 ffffffff"],
    ["CFG_WRITE_RSP", 9, { kind: "cfgWriteRsp" }, "00004382 00000009 00000000"],
    ["IDENTITY", 1, { kind: "identity" }, "00004303 00000001 00000000"],
    [
      "IDENTITY_RSP",
      1,
      { kind: "identityRsp", identity: IDENTITY },
      `00004383 00000001 00000018 ${IDENTITY_BYTES}`,
    ],
    [
      "ANNOUNCE",
      0,
      { kind: "announce", control: { host: "h", port: 0x1234 }, identity: IDENTITY },
      `00004304 00000000 0000001c 01 68 3412 ${IDENTITY_BYTES}`,
    ],
    [
      "FAULT_ADD",
      4,
      { kind: "faultAdd", rule: { kind: "close" } },
      "00004305 00000004 00000012 1000 7b226b696e64223a22636c6f7365227d",
    ],
    ["FAULT_ADD_RSP", 4, { kind: "faultAddRsp", id: 7 }, "00004385 00000004 00000004 07000000"],
    ["FAULT_LIST", 5, { kind: "faultList" }, "00004306 00000005 00000000"],
    [
      "FAULT_LIST_RSP",
      5,
      { kind: "faultListRsp", rules: [{ kind: "close", id: 1, injected: 2 }] },
      "00004386 00000005 00000028 2600 5b7b226b696e64223a22636c6f7365222c226964223a312c22696e6a6563746564223a327d5d",
    ],
    ["FAULT_CLEAR", 6, { kind: "faultClear" }, "00004307 00000006 00000000"],
    ["FAULT_CLEAR_RSP", 6, { kind: "faultClearRsp", cleared: 3 }, "00004387 00000006 00000002 0300"],
    [
      "ERROR",
      3,
      { kind: "error", code: ControlErrorCode.MISALIGNED, message: "bad" },
      "000043ff 00000003 00000007 0400 0300 626164",
    ],
  ];

  for (const [name, tag, msg, bytes] of vectors) {
    it(`${name} encodes and decodes`, () => {
      expect(wire(tag, msg)).toEqual(hex(bytes));
      const frame = decodeFrame(hex(bytes));
      expect(frame.transport).toBe(tag);
      expect(decodeControlFrame(frame)).toEqual(msg);
    });
  }

  it("replies are their request opcode | 0x80", () => {
    expect(ControlCommand.CFG_READ_RSP).toBe(ControlCommand.CFG_READ | 0x80);
    expect(ControlCommand.CFG_WRITE_RSP).toBe(ControlCommand.CFG_WRITE | 0x80);
    expect(ControlCommand.IDENTITY_RSP).toBe(ControlCommand.IDENTITY | 0x80);
    expect(ControlCommand.FAULT_ADD_RSP).toBe(ControlCommand.FAULT_ADD | 0x80);
    expect(ControlCommand.FAULT_LIST_RSP).toBe(ControlCommand.FAULT_LIST | 0x80);
    expect(ControlCommand.FAULT_CLEAR_RSP).toBe(ControlCommand.FAULT_CLEAR | 0x80);
    expect(ControlCommand.CFG_BATCH_RSP).toBe(ControlCommand.CFG_BATCH | 0x80);
  });
});

describe("control wire codec: rejects", () => {
  const bad: [string, string, string][] = [
    ["a short CFG_READ", "00004301 00000001 00000004 0001 0000", "cfgRead"],
    ["a CFG_READ with a trailing byte", "00004301 00000001 00000006 0001 0000 04 00", "cfgRead"],
    ["an IDENTITY with a body", "00004303 00000001 00000001 00", "identity"],
    ["an unknown opcode", "00000001 00000001 00000000", "control.command"],
    [
      "a mailbox count the body cannot hold",
      "00004383 00000001 00000007 03 646576 01 ffff",
      "identity.count",
    ],
    [
      "a truncated host string",
      "00004383 00000001 0000000d 00 01 0100 0001 0001 00 1309 09 31",
      "identity.mailboxes[0].host",
    ],
    ["invalid UTF-8 in a name", "00004383 00000001 00000006 02 c328 01 0000", "identity.name"],
    ["trailing bytes after an identity", "00004383 00000001 00000006 00 01 0000 ff ff", "identityRsp"],
    ["an ERROR whose text overruns", "000043ff 00000001 00000005 0100 0900 41", "error.text"],
    ["a FAULT_ADD rule that is not JSON", "00004305 00000001 00000003 0100 7b", "faultAdd.rule"],
    ["a FAULT_ADD rule that is not an object", "00004305 00000001 00000004 0200 5b5d", "faultAdd.rule"],
    ["a FAULT_LIST_RSP that is not a list", "00004386 00000001 00000004 0200 7b7d", "faultListRsp.rules"],
    ["a FAULT_CLEAR with a body", "00004307 00000001 00000001 00", "faultClear"],
  ];
  for (const [what, bytes, field] of bad) {
    it(`rejects ${what}`, () => {
      let caught: unknown;
      try {
        fromWire(hex(bytes));
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(DecodeError);
      expect((caught as DecodeError).field).toBe(field);
    });
  }

  it("refuses to encode a string longer than its length prefix", () => {
    expect(() => wire(0, { kind: "identityRsp", identity: { ...IDENTITY, name: "x".repeat(256) } })).toThrow(
      RangeError,
    );
  });
});

describe("checkConfigAccess", () => {
  const codeOf = (offset: number, width: number) => {
    try {
      checkConfigAccess(offset, width);
      return 0;
    } catch (e) {
      return (e as ControlError).code;
    }
  };
  it("accepts aligned 1/2/4-byte accesses inside 4 KiB", () => {
    expect([codeOf(0, 1), codeOf(0xfff, 1), codeOf(0xffe, 2), codeOf(0xffc, 4)]).toEqual([0, 0, 0, 0]);
  });
  it("names what is wrong", () => {
    expect(codeOf(0, 3)).toBe(ControlErrorCode.BAD_WIDTH);
    expect(codeOf(2, 4)).toBe(ControlErrorCode.MISALIGNED);
    expect(codeOf(0x1000, 1)).toBe(ControlErrorCode.OUT_OF_RANGE);
    expect(codeOf(0x1000, 4)).toBe(ControlErrorCode.OUT_OF_RANGE);
  });
});

const text = (maxBytes: number) => fc.string({ maxLength: maxBytes / 4 });
const address = fc.record({ host: text(255), port: fc.integer({ min: 0, max: 0xffff }) });
const identity = fc.record({
  name: text(255),
  bus: fc.integer({ min: 0, max: 0xff }),
  mailboxes: fc.array(
    fc.record({
      rid: fc.integer({ min: 0, max: 0xffff }),
      doeCapOffset: fc.integer({ min: 0, max: 0xffff }),
      mailbox: fc.integer({ min: 0, max: 0xff }),
      host: text(255),
      port: fc.integer({ min: 0, max: 0xffff }),
    }),
    { maxLength: 8 },
  ),
});
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const message: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({
    kind: fc.constant("cfgRead" as const),
    rid: u16,
    offset: u16,
    width: fc.integer({ min: 0, max: 0xff }),
  }),
  fc.record({ kind: fc.constant("cfgReadRsp" as const), value: u32 }),
  fc.record({
    kind: fc.constant("cfgWrite" as const),
    rid: u16,
    offset: u16,
    width: fc.integer({ min: 0, max: 0xff }),
    value: u32,
  }),
  fc.record({ kind: fc.constant("cfgWriteRsp" as const) }),
  fc.record({ kind: fc.constant("identity" as const) }),
  fc.record({ kind: fc.constant("identityRsp" as const), identity }),
  fc.record({ kind: fc.constant("announce" as const), control: address, identity }),
  fc.record({ kind: fc.constant("error" as const), code: u16, message: text(0xffff) }),
);

describe("control wire codec: properties", () => {
  it("round-trips every message and tag", () => {
    fc.assert(
      fc.property(u32, message, (tag, msg) => {
        const frame = decodeFrame(wire(tag, msg));
        expect(frame.transport).toBe(tag);
        expect(decodeControlFrame(frame)).toEqual(msg);
      }),
    );
  });

  it("random bodies under any opcode only ever throw DecodeError", () => {
    const command = fc.oneof(fc.constantFrom(...Object.values(ControlCommand)), u32);
    fc.assert(
      fc.property(command, u32, fc.uint8Array({ maxLength: 80 }), (cmd, tag, bytes) => {
        try {
          decodeControlFrame({ command: cmd, transport: tag, payload: Buffer.from(bytes) });
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("a truncated encoding never decodes", () => {
    fc.assert(
      fc.property(message, fc.nat(), (msg, cut) => {
        const frame = encodeControlFrame(0, msg);
        fc.pre(frame.payload.length > 0);
        const short = { ...frame, payload: frame.payload.subarray(0, cut % frame.payload.length) };
        expect(() => decodeControlFrame(short)).toThrow(DecodeError);
      }),
    );
  });
});
