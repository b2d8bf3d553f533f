import { describe, expect, it } from "vitest";
import { decodeSpdm, encodeSpdm } from "../../protocol/spdm/codec.js";
import type { DecodeContext } from "../../protocol/spdm/context.js";
import type { SpdmMessage } from "../../protocol/spdm/messages.js";
import { encodeDmtfMel, KeyPairOperation, SET_CERTIFICATE_ERASE } from "../../protocol/spdm/provision.js";
import { expectTruncationsRejected, hex } from "../support/codec.js";

const bytes = (n: number, fill = 0xab) => Buffer.alloc(n, fill);
/** A 1.2 SPDM chain of 4 + 48 + 3 bytes: Length, reserved, root hash, one (fake) DER body. */
const chain = (() => {
  const c = Buffer.concat([Buffer.alloc(4), bytes(48), hex("300100")]);
  c.writeUInt16LE(c.length, 0);
  return c;
})();

const cases: [string, SpdmMessage, DecodeContext?][] = [
  [
    "GET_MEASUREMENT_EXTENSION_LOG",
    { code: "GET_MEASUREMENT_EXTENSION_LOG", version: 0x13, offset: 16, length: 0x400 },
  ],
  [
    "MEASUREMENT_EXTENSION_LOG",
    { code: "MEASUREMENT_EXTENSION_LOG", version: 0x13, remainderLength: 5, mel: bytes(20) },
  ],
  [
    "GET_CSR",
    {
      code: "GET_CSR",
      version: 0x13,
      keyPairId: 1,
      attributes: 1,
      requesterInfo: bytes(3),
      opaqueData: bytes(2, 1),
    },
  ],
  ["CSR", { code: "CSR", version: 0x12, csr: bytes(70) }],
  [
    "SET_CERTIFICATE",
    { code: "SET_CERTIFICATE", version: 0x12, attributes: 1, keyPairId: 0, certChain: chain },
  ],
  [
    "SET_CERTIFICATE erase",
    { code: "SET_CERTIFICATE", version: 0x13, attributes: SET_CERTIFICATE_ERASE | 2, keyPairId: 3 },
  ],
  ["SET_CERTIFICATE_RSP", { code: "SET_CERTIFICATE_RSP", version: 0x12, slotId: 1 }],
  ["GET_KEY_PAIR_INFO", { code: "GET_KEY_PAIR_INFO", version: 0x13, keyPairId: 2 }],
  [
    "KEY_PAIR_INFO",
    {
      code: "KEY_PAIR_INFO",
      version: 0x13,
      totalKeyPairs: 3,
      keyPairId: 2,
      capabilities: 0x3f,
      keyUsageCapabilities: 0xf,
      currentKeyUsage: 0x7,
      asymAlgoCapabilities: 0x38,
      currentAsymAlgo: 0x10,
      assocCertSlotMask: 0x4,
      publicKeyInfo: bytes(24),
    },
  ],
  [
    "KEY_PAIR_INFO 1.4",
    {
      code: "KEY_PAIR_INFO",
      version: 0x14,
      totalKeyPairs: 1,
      keyPairId: 1,
      capabilities: 0,
      keyUsageCapabilities: 1,
      currentKeyUsage: 1,
      asymAlgoCapabilities: 8,
      currentAsymAlgo: 8,
      assocCertSlotMask: 1,
      publicKeyInfo: bytes(5),
      pqcAsymAlgoCapabilities: bytes(4, 0),
      currentPqcAsymAlgo: bytes(4, 0),
    },
  ],
  [
    "SET_KEY_PAIR_INFO change",
    {
      code: "SET_KEY_PAIR_INFO",
      version: 0x13,
      operation: KeyPairOperation.Change,
      keyPairId: 1,
      desiredKeyUsage: 3,
      desiredAsymAlgo: 0x10,
      desiredAssocCertSlotMask: 1,
    },
  ],
  [
    "SET_KEY_PAIR_INFO erase",
    { code: "SET_KEY_PAIR_INFO", version: 0x13, operation: KeyPairOperation.Erase, keyPairId: 1 },
  ],
  ["SET_KEY_PAIR_INFO_ACK", { code: "SET_KEY_PAIR_INFO_ACK", version: 0x13 }],
  ["GET_ENDPOINT_INFO", { code: "GET_ENDPOINT_INFO", version: 0x13, subCode: 1, slotId: 0, attributes: 0 }],
  [
    "GET_ENDPOINT_INFO signed",
    { code: "GET_ENDPOINT_INFO", version: 0x13, subCode: 1, slotId: 2, attributes: 1, nonce: bytes(32) },
  ],
  [
    "ENDPOINT_INFO",
    { code: "ENDPOINT_INFO", version: 0x13, slotId: 0, epInfo: bytes(9), signature: Buffer.alloc(0) },
    { endpointInfoSignatureRequested: false },
  ],
  [
    "ENDPOINT_INFO signed",
    {
      code: "ENDPOINT_INFO",
      version: 0x13,
      slotId: 1,
      nonce: bytes(32, 1),
      epInfo: bytes(9),
      signature: bytes(96, 2),
    },
    { endpointInfoSignatureRequested: true, asymSignatureSize: 96 },
  ],
];

describe("provisioning message codecs", () => {
  it.each(cases)("%s round-trips and rejects every truncation", (_name, msg, ctx) => {
    const encoded = encodeSpdm(msg);
    expect(decodeSpdm(encoded, ctx)).toEqual(msg);
    expect(encodeSpdm(decodeSpdm(encoded, ctx))).toEqual(encoded);
    expectTruncationsRejected(encoded, (b) => decodeSpdm(b, { ...ctx, trailing: "none" }), "");
  });

  it("lays GET_CSR and MEASUREMENT_EXTENSION_LOG out as libspdm does", () => {
    expect(
      encodeSpdm({
        code: "GET_CSR",
        version: 0x13,
        keyPairId: 1,
        attributes: 1,
        requesterInfo: Buffer.alloc(0),
        opaqueData: Buffer.alloc(0),
      }),
    ).toEqual(hex("13ed 0101 0000 0000"));
    expect(
      encodeSpdm({ code: "MEASUREMENT_EXTENSION_LOG", version: 0x13, remainderLength: 2, mel: hex("aabb") }),
    ).toEqual(hex("136f 0000 02000000 02000000 aabb"));
  });

  it("SET_CERTIFICATE's chain ends at its Length; DOE padding after it is not part of it", () => {
    const encoded = encodeSpdm({
      code: "SET_CERTIFICATE",
      version: 0x12,
      attributes: 0,
      keyPairId: 0,
      certChain: chain,
    });
    const padded = Buffer.concat([encoded, Buffer.alloc(3)]);
    expect(decodeSpdm(padded)).toMatchObject({ certChain: chain });
  });

  it("encodes the DMTF MEL header and entries", () => {
    const mel = encodeDmtfMel([{ melIndex: 0, measurementIndex: 4, valueType: 0x84, value: hex("0102") }]);
    expect(mel).toEqual(hex("01000000 0d000000 0000000000000000 00000000 04 000000 84 0200 0102"));
  });
});
