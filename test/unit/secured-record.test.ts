/**
 * DSP0277 records over DOE: every recorded secured record decrypts to the recorded message and
 * re-encrypts to the same wire bytes; tampering fails with AuthError; the codec only throws DecodeError.
 */
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import { decodeAppData, decodeSecuredRecord, encodeSecuredHeader } from "../../protocol/secured.js";
import { AEAD, type AeadAlgo } from "../../src/crypto/suites.js";
import {
  AuthError,
  decryptRecord,
  encryptRecord,
  type RecordKeys,
  recordNonce,
} from "../../src/spdm/secured-record.js";
import { type Frame, readDecoded, readSecrets, SESSION_CAPTURES, secret } from "../vectors.js";

const DOE_HEADER = 8;

interface Recorded {
  frame: Frame & { secured: NonNullable<Frame["secured"]>; plain: Buffer; wire: Buffer };
  keys: RecordKeys;
}

function recordedRecords(capture: (typeof SESSION_CAPTURES)[number]): Recorded[] {
  const { frames, negotiated } = readDecoded(capture);
  const secrets = readSecrets(capture);
  const type2 = frames.filter((f) => f.doeType === 2);
  const complete = type2.filter((f): f is Recorded["frame"] => !!f.secured && !!f.plain && !!f.wire);
  if (complete.length !== type2.length)
    throw new Error(`${capture}: a type-2 frame lacks SECURED/plain/wire`);
  return complete.map((frame) => ({
    frame,
    keys: {
      aead: negotiated.aead,
      key: secret(secrets, `${frame.secured.keys}_key`),
      iv: secret(secrets, `${frame.secured.keys}_iv`),
    },
  }));
}

// Secured records per capture (the SECURED lines of test/fixtures/vectors/<capture>_decoded.txt).
const RECORDS: Record<string, number> = {
  spdm12_keyex: 1068,
  spdm13_keyex: 1068,
  spdm12_psk: 10,
  spdm13_psk: 10,
  spdm13_app: 196,
};

const payloadOf = (r: Recorded) => r.frame.wire.subarray(DOE_HEADER);

describe.each(SESSION_CAPTURES)("recorded records of %s", (capture) => {
  const records = recordedRecords(capture);

  it("decrypt to the recorded SPDM messages", () => {
    expect(records.length).toBe(RECORDS[capture]);
    for (const r of records) {
      const { secured, plain, index } = r.frame;
      const rec = decodeSecuredRecord(payloadOf(r));
      expect([rec.sealed.length, rec.padding], `frame ${index}`).toEqual([secured.len16, secured.pad]);
      const out = decryptRecord(r.keys, secured.seq, payloadOf(r));
      expect(out.sessionId, `frame ${index}`).toBe(secured.sessionId);
      expect(out.message.toString("hex"), `frame ${index}`).toBe(plain.toString("hex"));
    }
  });

  it("re-encrypt to the recorded wire bytes (DOE padding is zeros)", () => {
    for (const r of records) {
      const { secured, plain, index } = r.frame;
      const record = encryptRecord(r.keys, secured.sessionId, secured.seq, plain);
      const padded = Buffer.concat([record, Buffer.alloc(secured.pad)]);
      expect(padded.toString("hex"), `frame ${index}`).toBe(payloadOf(r).toString("hex"));
    }
  });
});

describe("tampering", () => {
  // A recorded PSK_FINISH (52-byte message) and its keys.
  const r = recordedRecords("spdm13_psk")[0]!;
  const seq = r.frame.secured.seq;
  const good = () => Buffer.from(payloadOf(r));
  const flip = (at: number) => {
    const b = good();
    b[at]! ^= 0x01;
    return b;
  };
  const last = good().length - 1 - r.frame.secured.pad;

  it.each([
    ["the tag", last],
    ["the ciphertext", 8],
    ["the session id", 0],
  ])("flipping a bit of %s fails with AuthError", (_what, at) => {
    expect(() => decryptRecord(r.keys, seq, good())).not.toThrow();
    expect(() => decryptRecord(r.keys, seq, flip(at))).toThrow(AuthError);
  });

  it("a shorter Length (record then ends in padding) fails with AuthError", () => {
    const b = good();
    b.writeUInt16LE(b.readUInt16LE(4) - 1, 4);
    expect(() => decryptRecord(r.keys, seq, b)).toThrow(AuthError);
  });

  it("a longer Length than the payload, or a truncated record, is a DecodeError", () => {
    const b = good();
    b.writeUInt16LE(b.length, 4);
    expect(() => decryptRecord(r.keys, seq, b)).toThrow(DecodeError);
    expect(() => decryptRecord(r.keys, seq, good().subarray(0, 20))).toThrow(DecodeError);
  });

  it("the wrong sequence number, key or IV fails with AuthError", () => {
    expect(() => decryptRecord(r.keys, seq + 1, good())).toThrow(AuthError);
    expect(() => decryptRecord({ ...r.keys, key: randomBytes(32) }, seq, good())).toThrow(AuthError);
    expect(() => decryptRecord({ ...r.keys, iv: randomBytes(12) }, seq, good())).toThrow(AuthError);
  });

  it("AuthError is not a DecodeError", () => {
    expect(() => decryptRecord(r.keys, seq, flip(last))).not.toThrow(DecodeError);
  });
});

describe("nonce", () => {
  it("XORs the little-endian 64-bit sequence number into IV bytes 0-7", () => {
    const iv = Buffer.from("000102030405060708090a0b", "hex");
    expect(recordNonce(iv, 0).toString("hex")).toBe("000102030405060708090a0b");
    expect(recordNonce(iv, 0x0102).toString("hex")).toBe("020002030405060708090a0b");
    expect(recordNonce(iv, (1n << 64n) - 1n).toString("hex")).toBe("fffefdfcfbfaf9f808090a0b");
    expect(() => recordNonce(iv, 1n << 64n)).toThrow(RangeError);
    expect(() => recordNonce(iv, -1)).toThrow(RangeError);
  });
});

describe.each(Object.keys(AEAD) as AeadAlgo[])("round trip with %s", (aead) => {
  const keys: RecordKeys = { aead, key: randomBytes(AEAD[aead].keySize), iv: randomBytes(12) };

  it.each([0, 1, 4, 333, 0xffff - 18])("a %i-byte message", (size) => {
    const message = randomBytes(size);
    const record = encryptRecord(keys, 0xfffefffe, 7, message);
    expect(record.readUInt32LE(0)).toBe(0xfffefffe);
    expect(record.readUInt16LE(4)).toBe(2 + size + 16);
    const padded = Buffer.concat([record, Buffer.alloc((4 - (record.length % 4)) % 4)]);
    expect(decryptRecord(keys, 7, padded)).toEqual({ sessionId: 0xfffefffe, message });
    expect(() => decryptRecord(keys, 8, padded)).toThrow(AuthError);
  });

  it("refuses a message whose record Length would not fit in 16 bits", () => {
    expect(() => encryptRecord(keys, 1, 0, Buffer.alloc(0xffff - 17))).toThrow(RangeError);
  });
});

describe("decoders on arbitrary bytes", () => {
  const onlyDecodeError = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
    }
  };
  // Random bytes, and records whose Length is near the real size so the deeper checks run too.
  const payloads = fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc
      .tuple(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.uint8Array({ maxLength: 64 }),
        fc.integer({ min: -3, max: 5 }),
      )
      .map(([sid, body, delta]) =>
        Buffer.concat([encodeSecuredHeader(sid, Math.max(0, body.length + delta)), body]),
      ),
  );

  it("decodeSecuredRecord and decodeAppData throw nothing but DecodeError", () => {
    fc.assert(
      fc.property(payloads, (p) => {
        onlyDecodeError(() => decodeSecuredRecord(p));
        onlyDecodeError(() => decodeAppData(p));
      }),
    );
  });

  it("decryptRecord throws nothing but DecodeError or AuthError", () => {
    const keys: RecordKeys = { aead: "AES_256_GCM", key: randomBytes(32), iv: randomBytes(12) };
    fc.assert(
      fc.property(payloads, (p) => {
        try {
          decryptRecord(keys, 0, p);
        } catch (e) {
          if (!(e instanceof DecodeError || e instanceof AuthError)) throw e;
        }
      }),
    );
  });
});
