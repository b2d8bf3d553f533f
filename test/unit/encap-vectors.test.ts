/**
 * Known answers for the encapsulated-request codecs: the recording of DMTF's pair with basic mutual
 * authentication (test/fixtures/vectors/spdm13_basic_mut_auth.txt, provenance in its README): after
 * CHALLENGE_AUTH asks for it, the responder's GET_DIGESTS, GET_CERTIFICATE and CHALLENGE travel in
 * ENCAPSULATED_REQUEST / ENCAPSULATED_RESPONSE_ACK and the requester's answers in
 * DELIVER_ENCAPSULATED_RESPONSE. Every SPDM message, and every message they carry, decodes and
 * re-encodes byte for byte.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeDoeObject } from "../../protocol/doe.js";
import type { DecodeContext, SpdmMessage } from "../../protocol/spdm/index.js";
import { decodeSpdmWithLength, encodeSpdm, negotiatedContext } from "../../protocol/spdm/index.js";
import { VECTORS_DIR } from "../vectors.js";

const NORMAL = 1;
const CMA_SPDM = 1;

/** The SPDM messages of the recording's cleartext CMA/SPDM objects, with their DOE bodies. */
function spdmBodies(file: string): Buffer[] {
  return readFileSync(join(VECTORS_DIR, file), "utf8")
    .split("\n")
    .filter((l) => /^(C2S|S2C) /.test(l))
    .map((l) => Buffer.from(l.slice(4), "hex"))
    .filter((f) => f.readUInt32BE(0) === NORMAL && f.length > 12)
    .map((f) => decodeDoeObject(f.subarray(12)))
    .filter((o) => o.type === CMA_SPDM)
    .map((o) => o.payload);
}

describe("encapsulated requests: DMTF spdm-emu recording with basic mutual authentication", () => {
  it("every message and every carried message decodes and re-encodes to the same bytes", () => {
    let ctx: DecodeContext = {};
    const vca: Record<string, SpdmMessage> = {};
    let lastRequest: SpdmMessage | undefined;
    let lastEncapRequest: SpdmMessage | undefined;
    const names: string[] = [];
    const inner: string[] = [];
    const roundTrip = (bytes: Buffer, c: DecodeContext) => {
      const { message, byteLength } = decodeSpdmWithLength(bytes, c);
      expect(encodeSpdm(message)).toEqual(bytes.subarray(0, byteLength));
      return message;
    };
    for (const body of spdmBodies("spdm13_basic_mut_auth.txt")) {
      const summary =
        lastRequest?.code === "CHALLENGE"
          ? { measurementSummaryHashType: lastRequest.measurementSummaryHashType }
          : {};
      const m = roundTrip(body, { ...ctx, ...((body[1]! & 0x80) === 0 ? summary : {}) });
      names.push(m.code);
      if ((body[1]! & 0x80) !== 0) lastRequest = m;
      vca[m.code] = m;
      if (m.code === "ALGORITHMS")
        ctx = negotiatedContext({
          algorithms: m,
          getCapabilities: vca["GET_CAPABILITIES"] as never,
          capabilities: vca["CAPABILITIES"] as never,
          negotiateAlgorithms: vca["NEGOTIATE_ALGORITHMS"] as never,
        });
      // The requester's CHALLENGE_AUTH is signed with ReqBaseAsym, and carries no summary hash.
      const requesterSide = {
        ...ctx,
        asymSignatureSize: ctx.reqAsymSignatureSize,
        measurementSummaryHashType: 0,
      };
      const carried =
        m.code === "ENCAPSULATED_REQUEST"
          ? m.encapsulatedRequest
          : m.code === "ENCAPSULATED_RESPONSE_ACK" && m.payloadType === 1
            ? m.payload
            : undefined;
      if (carried) lastEncapRequest = roundTrip(carried, ctx);
      if (m.code === "DELIVER_ENCAPSULATED_RESPONSE") roundTrip(m.encapsulatedResponse, requesterSide);
      if (carried) inner.push(lastEncapRequest!.code);
    }
    expect(names.filter((n) => /ENCAP/.test(n))).toEqual([
      "GET_ENCAPSULATED_REQUEST",
      "ENCAPSULATED_REQUEST",
      ...Array(inner.length - 1)
        .fill(["DELIVER_ENCAPSULATED_RESPONSE", "ENCAPSULATED_RESPONSE_ACK"])
        .flat(),
      "DELIVER_ENCAPSULATED_RESPONSE",
      "ENCAPSULATED_RESPONSE_ACK",
    ]);
    expect(inner[0]).toBe("GET_DIGESTS");
    expect(inner.at(-1)).toBe("CHALLENGE");
    expect(inner.slice(1, -1).every((n) => n === "GET_CERTIFICATE")).toBe(true);
  });
});
