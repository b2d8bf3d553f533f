import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DOE_MAX_BYTES,
  decodeDiscoveryRequest,
  decodeDiscoveryResponse,
  decodeDoeHeader,
  decodeDoeObject,
  encodeDiscoveryRequest,
  encodeDiscoveryResponse,
  encodeDoeObject,
  parseProtocolId,
  protocolId,
} from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("DOE data object header (PCIe r6.0 §6.30.1)", () => {
  it("encodes GET_VERSION in a CMA object byte for byte", () => {
    const obj = encodeDoeObject({ vendorId: 1, type: 1, payload: hex("10840000") });
    expect(obj).toEqual(hex("01000100 03000000 10840000"));
  });

  it("decodes a VERSION answer (length 5 DW)", () => {
    const wire = hex("01000100 05000000 1004000000030010 00110012");
    const obj = decodeDoeObject(wire);
    expect(obj.vendorId).toBe(1);
    expect(obj.type).toBe(1);
    expect(obj.payload).toEqual(hex("10040000000300100011 0012"));
  });

  it("zero-pads the payload to a DW multiple", () => {
    expect(encodeDoeObject({ vendorId: 0x1e98, type: 2, payload: hex("aabbccddee") })).toEqual(
      hex("981e0200 04000000 aabbccdd ee000000"),
    );
  });

  it("writes length 0 for a 1 MiB object and reads it back as 2^18 DW", () => {
    const obj = encodeDoeObject({ vendorId: 1, type: 1, payload: Buffer.alloc(DOE_MAX_BYTES - 8, 7) });
    expect(obj.length).toBe(DOE_MAX_BYTES);
    expect(obj.readUInt32LE(4)).toBe(0);
    expect(decodeDoeHeader(obj).lengthDw).toBe(1 << 18);
    expect(decodeDoeObject(obj).payload.length).toBe(DOE_MAX_BYTES - 8);
  });

  it("refuses to encode more than 1 MiB", () => {
    expect(() => encodeDoeObject({ vendorId: 1, type: 1, payload: Buffer.alloc(DOE_MAX_BYTES - 7) })).toThrow(
      RangeError,
    );
  });

  it.each([
    ["reserved byte set", "01000101 03000000 00000000", "doe.reserved", 3],
    ["length reserved bits set", "01000000 03000400 00000000", "doe.length", 4],
    ["length 1 DW", "01000000 01000000", "doe.length", 4],
    ["length says 4 DW, 3 given", "01000000 04000000 00000000", "doe.length", 4],
    ["length says 2 DW, 3 given", "01000000 02000000 00000000", "doe.length", 4],
    ["truncated header", "010000", "doe.header", 0],
  ])("rejects %s with a DecodeError naming the field", (_name, wire, field, offset) => {
    const err = (() => {
      try {
        decodeDoeObject(hex(wire));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).field).toBe(field);
    expect((err as DecodeError).offset).toBe(offset);
  });

  it("round-trips any payload", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xff }),
        fc.uint8Array({ maxLength: 64 }),
        (v, t, p) => {
          const obj = decodeDoeObject(encodeDoeObject({ vendorId: v, type: t, payload: Buffer.from(p) }));
          expect(obj.vendorId).toBe(v);
          expect(obj.type).toBe(t);
          expect(obj.payload.subarray(0, p.length)).toEqual(Buffer.from(p));
          expect(obj.payload.length).toBe(Math.ceil(p.length / 4) * 4);
        },
      ),
    );
  });

  it("only ever throws DecodeError on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        try {
          decodeDoeObject(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("DOE discovery (PCIe r6.0 §6.30.1.1)", () => {
  it("encodes the index-1 request", () => {
    const obj = encodeDoeObject({
      vendorId: 1,
      type: 0,
      payload: encodeDiscoveryRequest({ index: 1, version: 0 }),
    });
    expect(obj).toEqual(hex("01000000 03000000 01000000"));
  });

  it("decodes the index-1 answer: vendor 0001, type 01, next 02", () => {
    const obj = decodeDoeObject(hex("01000000 03000000 01000102"));
    expect(decodeDiscoveryResponse(obj.payload)).toEqual({ vendorId: 1, type: 1, nextIndex: 2 });
  });

  it("round-trips requests and responses", () => {
    expect(decodeDiscoveryRequest(encodeDiscoveryRequest({ index: 7, version: 2 }))).toEqual({
      index: 7,
      version: 2,
    });
    const rsp = { vendorId: 0x1e98, type: 2, nextIndex: 0 };
    expect(decodeDiscoveryResponse(encodeDiscoveryResponse(rsp))).toEqual(rsp);
  });

  it("requires exactly one DW of payload", () => {
    expect(() => decodeDiscoveryRequest(hex("0100"))).toThrow(DecodeError);
    expect(() => decodeDiscoveryResponse(hex("0100000000000000"))).toThrow(DecodeError);
  });
});

describe("protocol ids", () => {
  it("formats and parses VVVV:TT", () => {
    expect(protocolId({ vendorId: 1, type: 2 })).toBe("0001:02");
    expect(parseProtocolId("1E98:02")).toEqual({ vendorId: 0x1e98, type: 2 });
    expect(parseProtocolId("1:2")).toBeUndefined();
  });
});
