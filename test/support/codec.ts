/** Helpers the codec tests share: catching a DecodeError, and cutting a message at every offset. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** The DecodeError `fn` throws; fails the test if it throws anything else or nothing. */
export function decodeError(fn: () => unknown): DecodeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DecodeError);
    return e as DecodeError;
  }
  throw new Error("expected a DecodeError, nothing was thrown");
}

/** Every proper prefix of `bytes` fails to decode with a DecodeError whose field starts with `prefix`. */
export function expectTruncationsRejected(
  bytes: Buffer,
  decode: (b: Buffer) => unknown,
  prefix: string,
): void {
  for (let n = 0; n < bytes.length; n++) {
    const e = decodeError(() => decode(bytes.subarray(0, n)));
    expect(e.field.startsWith(prefix), `${e.field} at length ${n}`).toBe(true);
    expect(e.offset).toBeLessThanOrEqual(n);
  }
}

/** `decode(bytes)`, or undefined when it throws DecodeError (anything else fails the test). */
export function decodeOrUndefined<T>(decode: (b: Uint8Array) => T, bytes: Uint8Array): T | undefined {
  try {
    return decode(bytes);
  } catch (e) {
    if (e instanceof DecodeError) return undefined;
    throw e;
  }
}

/**
 * Arbitrary bytes either throw DecodeError or decode to a value that survives a round trip.
 * Reserved bits come back as zero, so the values are compared first, then the re-encoded bytes.
 */
export function expectDecodeStable<T>(
  decode: (b: Uint8Array) => T,
  encode: (v: T) => Buffer,
  bytes: Uint8Array,
): void {
  const first = decodeOrUndefined(decode, bytes);
  if (first === undefined) return;
  const again = encode(first);
  expect(decode(again)).toEqual(first);
  expect(encode(decode(again))).toEqual(again);
}

/**
 * The two properties of a codec whose messages start with an Object ID byte (PCIe and CXL IDE-KM):
 * every generated message round-trips, and random bytes behind each ID up to `maxObjectId` either
 * throw DecodeError or decode stably.
 */
export function objectCodecProperties<M>(
  title: string,
  messages: fc.Arbitrary<M>,
  decode: (b: Uint8Array) => M,
  encode: (m: M) => Buffer,
  maxObjectId: number,
  maxBody: number,
): void {
  describe(title, () => {
    it("every message encodes and decodes back to itself", () => {
      fc.assert(
        fc.property(messages, (msg) => {
          expect(decode(encode(msg))).toEqual(msg);
        }),
        { numRuns: 2000 },
      );
    });

    it("random bytes behind each Object ID either decode or throw DecodeError, and decoding is stable", () => {
      const objectIdArb = fc.integer({ min: 0, max: maxObjectId });
      fc.assert(
        fc.property(objectIdArb, fc.uint8Array({ maxLength: maxBody }), (id, body) => {
          expectDecodeStable(decode, encode, Buffer.concat([Uint8Array.of(id), body]));
        }),
        { numRuns: 5000 },
      );
    });
  });
}

const u8 = fc.integer({ min: 0, max: 0xff });
/** QUERY_RESP's first fields, in PCIe and CXL IDE-KM alike. */
export const queryRespHeadArb = { portIndex: u8, devFuncNum: u8, busNum: u8, segment: u8, maxPortIndex: u8 };
/** `n` random bytes. */
export const bytesArb = (n: number) =>
  fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b));
