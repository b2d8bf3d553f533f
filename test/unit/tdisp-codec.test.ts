/**
 * TDISP codec (PCIe r6.1 chapter 11): hand-built messages and device interface reports against the
 * spec's byte layouts, truncation, malformed input and round-trip properties. The recorded messages
 * are checked in pcisig-vdm-codec.test.ts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type DeviceInterfaceReport,
  decodeDeviceInterfaceReport,
  decodeTdisp,
  decodeTdispHeader,
  encodeDeviceInterfaceReport,
  encodeTdisp,
  InterfaceInfo,
  LockInterfaceFlag,
  MmioRangeAttribute,
  TdiState,
  TdispCode,
  TdispErrorCode,
  type TdispMessage,
  type TdispMessageName,
} from "../../protocol/tdisp.js";
import {
  decodeError,
  decodeOrUndefined,
  expectDecodeStable,
  expectTruncationsRejected,
  hex,
} from "../support/codec.js";

/** Segment 1 valid, bus 1, device 1, function 0: FunctionID 0x01010108. */
const FUNCTION_ID = 0x0101_0108;
const header = (code: number) => `10 ${code.toString(16).padStart(2, "0")} 0000 08010101 0000000000000000`;
const head = { version: 0x10, functionId: FUNCTION_ID };
const NONCE = Buffer.from([...Array(32).keys()].map((i) => 0x40 + i));
const REQ_MSGS = hex("fe07 0000 0000 0000 0000 0000 0000 0000");

type Case = { title: string; bytes: Buffer; msg: TdispMessage };
const tdisp = (msg: TdispMessage, body: string | Buffer = ""): Case => ({
  title: msg.code,
  bytes: Buffer.concat([hex(header(TdispCode[msg.code])), typeof body === "string" ? hex(body) : body]),
  msg,
});

const CASES: Case[] = [
  tdisp({ code: "GET_TDISP_VERSION", ...head }),
  tdisp({ code: "TDISP_VERSION", ...head, versions: [0x10, 0x11] }, "02 10 11"),
  tdisp({ code: "GET_TDISP_CAPABILITIES", ...head, tsmCaps: 0 }, "00000000"),
  tdisp(
    {
      code: "TDISP_CAPABILITIES",
      ...head,
      dsmCaps: 0x1,
      reqMsgsSupported: REQ_MSGS,
      lockInterfaceFlagsSupported: 0x1f,
      devAddrWidth: 52,
      numReqThis: 1,
      numReqAll: 4,
    },
    Buffer.concat([hex("01000000"), REQ_MSGS, hex("1f00 000000 34 01 04")]),
  ),
  tdisp(
    {
      code: "LOCK_INTERFACE_REQUEST",
      ...head,
      flags: LockInterfaceFlag.NO_FW_UPDATE | LockInterfaceFlag.LOCK_MSIX | LockInterfaceFlag.BIND_P2P,
      defaultStreamId: 3,
      mmioReportingOffset: 0x1_d000_0000n,
      bindP2pAddressMask: 0xffff_0000_0000_0000n,
    },
    "0d00 03 00 000000d001000000 000000000000ffff",
  ),
  tdisp({ code: "LOCK_INTERFACE_RESPONSE", ...head, startInterfaceNonce: NONCE }, NONCE),
  tdisp({ code: "GET_DEVICE_INTERFACE_REPORT", ...head, offset: 0x40, length: 0x24 }, "4000 2400"),
  tdisp(
    { code: "DEVICE_INTERFACE_REPORT", ...head, portion: hex("0102030405"), remainderLength: 7 },
    "0500 0700 0102030405",
  ),
  tdisp({ code: "GET_DEVICE_INTERFACE_STATE", ...head }),
  tdisp({ code: "DEVICE_INTERFACE_STATE", ...head, tdiState: TdiState.RUN }, "02"),
  tdisp({ code: "START_INTERFACE_REQUEST", ...head, startInterfaceNonce: NONCE }, NONCE),
  tdisp({ code: "START_INTERFACE_RESPONSE", ...head }),
  tdisp({ code: "STOP_INTERFACE_REQUEST", ...head }),
  tdisp({ code: "STOP_INTERFACE_RESPONSE", ...head }),
  tdisp({ code: "BIND_P2P_STREAM_REQUEST", ...head, p2pStreamId: 7 }, "07"),
  tdisp({ code: "BIND_P2P_STREAM_RESPONSE", ...head }),
  tdisp({ code: "UNBIND_P2P_STREAM_REQUEST", ...head, p2pStreamId: 7 }, "07"),
  tdisp({ code: "UNBIND_P2P_STREAM_RESPONSE", ...head }),
  tdisp(
    {
      code: "SET_MMIO_ATTRIBUTE_REQUEST",
      ...head,
      mmioRange: {
        firstPage: 0x1_2345_6789n,
        numberOfPages: 16,
        rangeAttributes: MmioRangeAttribute.IS_NON_TEE_MEM | MmioRangeAttribute.IS_MEM_ATTR_UPDATABLE,
        rangeId: 9,
      },
    },
    "8967452301000000 10000000 0c00 0900",
  ),
  tdisp({ code: "SET_MMIO_ATTRIBUTE_RESPONSE", ...head }),
  tdisp(
    { code: "TDISP_ERROR", ...head, errorCode: TdispErrorCode.InvalidNonce, errorData: 0 },
    "02010000 00000000",
  ),
];

/** Extended error data runs to the end, so truncating it still decodes: kept out of the truncation cases. */
const VENDOR_ERROR = tdisp(
  {
    code: "TDISP_ERROR",
    ...head,
    errorCode: TdispErrorCode.VendorSpecificError,
    errorData: 0x8b,
    extendedErrorData: hex("00 02 0100 aabb"),
  },
  "ff000000 8b000000 00 02 0100 aabb",
);

describe("TDISP codec: hand-built messages", () => {
  it("has a case for every message with a codec", () => {
    const names = Object.keys(TdispCode).filter((n) => !n.startsWith("VDM_"));
    expect(new Set(CASES.map((c) => c.msg.code))).toEqual(new Set(names));
  });

  it.each([...CASES, VENDOR_ERROR])("$title decodes and encodes byte for byte", ({ bytes, msg }) => {
    expect(decodeTdisp(bytes)).toEqual(msg);
    expect(encodeTdisp(msg)).toEqual(bytes);
  });

  it.each(CASES)("$title: every truncation is a DecodeError", ({ bytes }) => {
    expectTruncationsRejected(bytes, decodeTdisp, "tdisp.");
  });

  it.each(CASES.filter((c) => c.msg.code !== "TDISP_ERROR"))(
    "$title: a byte more is a DecodeError",
    ({ bytes, msg }) => {
      const e = decodeError(() => decodeTdisp(Buffer.concat([bytes, hex("00")])));
      expect([e.field, e.offset]).toEqual([`tdisp.${msg.code}.trailing`, bytes.length]);
    },
  );

  it("reads the header alone, for answering what does not decode", () => {
    const bytes = hex(`${header(0x8b)} 00 02 0100`);
    expect(decodeTdispHeader(bytes)).toEqual({ version: 0x10, messageType: 0x8b, functionId: FUNCTION_ID });
    const e = decodeError(() => decodeTdisp(bytes));
    expect([e.field, e.offset, e.reason]).toEqual([
      "tdisp.header.messageType",
      1,
      "0x8b: VDM_REQUEST has no codec",
    ]);
    expect(decodeError(() => decodeTdisp(hex(header(0x90)))).reason).toBe("0x90: unknown");
  });

  it("ignores the reserved header bytes and writes them as zero", () => {
    const bytes = hex(`10 85 abcd 08010101 ffffffffffffffff`);
    const m = decodeTdisp(bytes);
    expect(m).toEqual({ code: "GET_DEVICE_INTERFACE_STATE", ...head });
    expect(encodeTdisp(m)).toEqual(hex(header(0x85)));
  });

  it("names the field a portion overruns", () => {
    const e = decodeError(() => decodeTdisp(hex(`${header(0x04)} 0600 0000 0102030405`)));
    expect([e.field, e.offset]).toEqual(["tdisp.DEVICE_INTERFACE_REPORT.portion", 20]);
  });

  it("refuses nonces of the wrong size and values that do not fit", () => {
    const start = CASES.find((c) => c.msg.code === "START_INTERFACE_REQUEST")!.msg;
    expect(() => encodeTdisp({ ...start, startInterfaceNonce: NONCE.subarray(1) } as TdispMessage)).toThrow(
      RangeError,
    );
    const lock = CASES.find((c) => c.msg.code === "LOCK_INTERFACE_REQUEST")!.msg;
    expect(() => encodeTdisp({ ...lock, mmioReportingOffset: 1n << 64n } as TdispMessage)).toThrow(
      RangeError,
    );
    expect(() => encodeTdisp({ ...lock, functionId: -1 })).toThrow(RangeError);
  });

  it("copies nonces and portions instead of aliasing the input", () => {
    for (const c of CASES.filter((k) =>
      ["LOCK_INTERFACE_RESPONSE", "DEVICE_INTERFACE_REPORT"].includes(k.msg.code),
    )) {
      const bytes = Buffer.from(c.bytes);
      const m = decodeTdisp(bytes);
      bytes.fill(0xee);
      expect(m).toEqual(c.msg);
    }
  });
});

/** MSI-X table and PBA in one 4 KiB page each, a 16-page TEE range, 3 bytes of device info. */
const REPORT: DeviceInterfaceReport = {
  interfaceInfo: InterfaceInfo.DMA_WITHOUT_PASID | InterfaceInfo.ATS_SUPPORTED,
  msixMessageControl: 0x8003,
  lnrControl: 0,
  tphControl: 0x0000_0100,
  mmioRanges: [
    { firstPage: 0xd0000n, numberOfPages: 16, rangeAttributes: 0, rangeId: 0 },
    { firstPage: 0xd0010n, numberOfPages: 1, rangeAttributes: MmioRangeAttribute.MSIX_TABLE, rangeId: 1 },
    { firstPage: 0xd0011n, numberOfPages: 1, rangeAttributes: MmioRangeAttribute.MSIX_PBA, rangeId: 1 },
  ],
  deviceSpecificInfo: hex("616263"),
};
const REPORT_BYTES = hex(
  "0a00 0000 0380 0000 00010000 03000000" +
    "00000d0000000000 10000000 0000 0000" +
    "10000d0000000000 01000000 0100 0100" +
    "11000d0000000000 01000000 0200 0100" +
    "03000000 616263",
);

describe("TDISP device interface report", () => {
  it("decodes and encodes byte for byte", () => {
    expect(decodeDeviceInterfaceReport(REPORT_BYTES)).toEqual(REPORT);
    expect(encodeDeviceInterfaceReport(REPORT)).toEqual(REPORT_BYTES);
  });

  it("every truncation is a DecodeError, and so is a byte more", () => {
    expectTruncationsRejected(REPORT_BYTES, decodeDeviceInterfaceReport, "tdisp.report.");
    const e = decodeError(() => decodeDeviceInterfaceReport(Buffer.concat([REPORT_BYTES, hex("00")])));
    expect([e.field, e.offset]).toEqual(["tdisp.report.trailing", REPORT_BYTES.length]);
  });

  it("checks MMIO_RANGE_COUNT against the bytes left before reading a range", () => {
    const e = decodeError(() =>
      decodeDeviceInterfaceReport(hex("0000 0000 0000 0000 00000000 ffffffff 00000000")),
    );
    expect([e.field, e.offset, e.reason]).toEqual([
      "tdisp.report.mmioRanges",
      16,
      "4294967295 entries need 68719476720 bytes, 4 left",
    ]);
  });

  it("copies the device-specific info instead of aliasing the input", () => {
    const bytes = Buffer.from(REPORT_BYTES);
    const r = decodeDeviceInterfaceReport(bytes);
    bytes.fill(0xee);
    expect(r).toEqual(REPORT);
  });
});

// ---- properties ---------------------------------------------------------------------------------

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytesArb = (min: number, max = min) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));
const mmioRangeArb = fc.record({ firstPage: u64, numberOfPages: u32, rangeAttributes: u16, rangeId: u16 });

const BODIES: { [K in TdispMessageName]: fc.Arbitrary<object> } = {
  GET_TDISP_VERSION: fc.constant({}),
  TDISP_VERSION: fc.record({ versions: fc.array(u8, { maxLength: 8 }) }),
  GET_TDISP_CAPABILITIES: fc.record({ tsmCaps: u32 }),
  TDISP_CAPABILITIES: fc.record({
    dsmCaps: u32,
    reqMsgsSupported: bytesArb(16),
    lockInterfaceFlagsSupported: u16,
    devAddrWidth: u8,
    numReqThis: u8,
    numReqAll: u8,
  }),
  LOCK_INTERFACE_REQUEST: fc.record({
    flags: u16,
    defaultStreamId: u8,
    mmioReportingOffset: u64,
    bindP2pAddressMask: u64,
  }),
  LOCK_INTERFACE_RESPONSE: fc.record({ startInterfaceNonce: bytesArb(32) }),
  GET_DEVICE_INTERFACE_REPORT: fc.record({ offset: u16, length: u16 }),
  DEVICE_INTERFACE_REPORT: fc.record({ portion: bytesArb(0, 80), remainderLength: u16 }),
  GET_DEVICE_INTERFACE_STATE: fc.constant({}),
  DEVICE_INTERFACE_STATE: fc.record({ tdiState: u8 }),
  START_INTERFACE_REQUEST: fc.record({ startInterfaceNonce: bytesArb(32) }),
  START_INTERFACE_RESPONSE: fc.constant({}),
  STOP_INTERFACE_REQUEST: fc.constant({}),
  STOP_INTERFACE_RESPONSE: fc.constant({}),
  BIND_P2P_STREAM_REQUEST: fc.record({ p2pStreamId: u8 }),
  BIND_P2P_STREAM_RESPONSE: fc.constant({}),
  UNBIND_P2P_STREAM_REQUEST: fc.record({ p2pStreamId: u8 }),
  UNBIND_P2P_STREAM_RESPONSE: fc.constant({}),
  SET_MMIO_ATTRIBUTE_REQUEST: fc.record({ mmioRange: mmioRangeArb }),
  SET_MMIO_ATTRIBUTE_RESPONSE: fc.constant({}),
  TDISP_ERROR: fc.record(
    { errorCode: u32, errorData: u32, extendedErrorData: bytesArb(1, 16) },
    { requiredKeys: ["errorCode", "errorData"] },
  ),
};
const messageArb = fc
  .constantFrom(...(Object.keys(BODIES) as TdispMessageName[]))
  .chain((code) =>
    fc
      .tuple(u8, u32, BODIES[code])
      .map(([version, functionId, body]) => ({ code, version, functionId, ...body })),
  ) as fc.Arbitrary<TdispMessage>;
const reportArb: fc.Arbitrary<DeviceInterfaceReport> = fc.record({
  interfaceInfo: u16,
  msixMessageControl: u16,
  lnrControl: u16,
  tphControl: u32,
  mmioRanges: fc.array(mmioRangeArb, { maxLength: 6 }),
  deviceSpecificInfo: bytesArb(0, 40),
});

describe("TDISP codec properties", () => {
  it("every message encodes and decodes back to itself", () => {
    fc.assert(
      fc.property(messageArb, (msg) => {
        expect(decodeTdisp(encodeTdisp(msg))).toEqual(msg);
      }),
      { numRuns: 2000 },
    );
  });

  it("every report encodes and decodes back to itself", () => {
    fc.assert(
      fc.property(reportArb, (report) => {
        expect(decodeDeviceInterfaceReport(encodeDeviceInterfaceReport(report))).toEqual(report);
      }),
    );
  });

  it("random bodies behind each code either decode or throw DecodeError, and decoding is stable", () => {
    const codeArb = fc.constantFrom(...Object.values(TdispCode), 0x00, 0x90);
    fc.assert(
      fc.property(codeArb, bytesArb(2), u32, bytesArb(0, 120), (code, reserved, functionId, body) => {
        const h = Buffer.alloc(16);
        h.writeUInt8(0x10, 0);
        h.writeUInt8(code, 1);
        reserved.copy(h, 2);
        h.writeUInt32LE(functionId, 4);
        expectDecodeStable(decodeTdisp, encodeTdisp, Buffer.concat([h, body]));
      }),
      { numRuns: 5000 },
    );
  });

  it("random reports either decode or throw DecodeError", () => {
    fc.assert(
      fc.property(bytesArb(0, 120), (bytes) => {
        const r = decodeOrUndefined(decodeDeviceInterfaceReport, bytes);
        if (r)
          expect(encodeDeviceInterfaceReport(r)).toEqual(
            Buffer.concat([bytes.subarray(0, 2), hex("0000"), bytes.subarray(4)]),
          );
      }),
      { numRuns: 3000 },
    );
  });
});
