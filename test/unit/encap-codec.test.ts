import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import { decodeSpdm, encodeSpdm, type SpdmMessage } from "../../protocol/spdm/index.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Written from DSP0274's tables (1.1–1.3 "Encapsulated request flow"), independent of the encoders.
const CASES: [string, Buffer, SpdmMessage][] = [
  ["GET_ENCAPSULATED_REQUEST", hex("12 ea 00 00"), { code: "GET_ENCAPSULATED_REQUEST", version: 0x12 }],
  [
    "ENCAPSULATED_REQUEST carrying GET_DIGESTS",
    hex("13 6a 05 00 13 81 00 00"),
    { code: "ENCAPSULATED_REQUEST", version: 0x13, requestId: 5, encapsulatedRequest: hex("13810000") },
  ],
  [
    "DELIVER_ENCAPSULATED_RESPONSE",
    hex("11 eb 07 00 11 01 02 03"),
    {
      code: "DELIVER_ENCAPSULATED_RESPONSE",
      version: 0x11,
      requestId: 7,
      encapsulatedResponse: hex("11010203"),
    },
  ],
  [
    "1.1 ENCAPSULATED_RESPONSE_ACK (no AckRequestID)",
    hex("11 6b 02 01 11 82 00 00"),
    {
      code: "ENCAPSULATED_RESPONSE_ACK",
      version: 0x11,
      requestId: 2,
      payloadType: 1,
      payload: hex("11820000"),
    },
  ],
  [
    "1.3 ENCAPSULATED_RESPONSE_ACK with the requester's slot",
    hex("13 6b 00 02 03 000000 01"),
    {
      code: "ENCAPSULATED_RESPONSE_ACK",
      version: 0x13,
      requestId: 0,
      payloadType: 2,
      ackRequestId: 3,
      payload: hex("01"),
    },
  ],
  [
    "1.2 ENCAPSULATED_RESPONSE_ACK, nothing more",
    hex("12 6b 00 00 04 000000"),
    {
      code: "ENCAPSULATED_RESPONSE_ACK",
      version: 0x12,
      requestId: 0,
      payloadType: 0,
      ackRequestId: 4,
      payload: Buffer.alloc(0),
    },
  ],
];

describe("encapsulated-request codecs", () => {
  it.each(CASES)("%s decodes and re-encodes byte for byte", (_title, bytes, msg) => {
    expect(decodeSpdm(bytes)).toEqual(msg);
    expect(encodeSpdm(msg)).toEqual(bytes);
  });

  it("rejects truncated messages, naming the field", () => {
    expect(() => decodeSpdm(hex("12 ea 00"))).toThrow(DecodeError);
    expect(() => decodeSpdm(hex("12 6a 05"))).toThrow(DecodeError);
    // 1.2+ ACK needs AckRequestID and its 3 reserved bytes.
    expect(() => decodeSpdm(hex("12 6b 00 00 04 00"))).toThrow(/ackRequestId|reserved/);
    expect(decodeSpdm(hex("11 6b 00 00"))).toMatchObject({ payloadType: 0, payload: Buffer.alloc(0) });
  });
});
