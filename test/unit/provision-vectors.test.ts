/**
 * Known answers for the provisioning codecs: spdm13_provision.txt records DMTF's requester and
 * responder exchanging MEASUREMENT_EXTENSION_LOG, ENDPOINT_INFO (signed), KEY_PAIR_INFO and
 * SET_KEY_PAIR_INFO out of session (test/fixtures/vectors/README.md). Every SPDM message in it
 * decodes, with the context the negotiation and its request give, and encodes back byte for byte.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import { type DecodeContext, negotiatedContext } from "../../protocol/spdm/context.js";
import type { MessageOf, SpdmMessage } from "../../protocol/spdm/messages.js";
import { ENDPOINT_INFO_SIGNATURE_REQUESTED } from "../../protocol/spdm/provision.js";
import { VECTORS_DIR } from "../vectors.js";

const NORMAL = 1;
const DOE_CMA_SPDM = 1;

/** The SPDM messages of the recording's DOE objects (CMA/SPDM only), padding included, in order. */
function spdmObjects(): Buffer[] {
  const lines = readFileSync(join(VECTORS_DIR, "spdm13_provision.txt"), "utf8").split("\n");
  const out: Buffer[] = [];
  for (const line of lines) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const frame = Buffer.from(line.slice(4), "hex");
    if (frame.readUInt32BE(0) !== NORMAL) continue;
    const doe = frame.subarray(12);
    if (doe[2] !== DOE_CMA_SPDM) continue;
    const dwords = doe.readUInt32LE(4) & 0x3ffff;
    out.push(doe.subarray(8, dwords * 4));
  }
  return out;
}

describe("provisioning codecs against DMTF's recording (spdm13_provision)", () => {
  it("decodes every message and encodes it back byte for byte", () => {
    let ctx: DecodeContext = {};
    const vca: Partial<Record<string, SpdmMessage>> = {};
    let lastRequest: SpdmMessage | undefined;
    const names: string[] = [];
    for (const object of spdmObjects()) {
      const extra: DecodeContext =
        lastRequest?.code === "GET_ENDPOINT_INFO"
          ? {
              endpointInfoSignatureRequested:
                (lastRequest.attributes & ENDPOINT_INFO_SIGNATURE_REQUESTED) !== 0,
            }
          : {};
      const { message, byteLength } = decodeSpdmWithLength(object, { ...ctx, ...extra });
      expect(encodeSpdm(message), message.code).toEqual(object.subarray(0, byteLength));
      names.push(message.code);
      if (message.code.startsWith("GET_") || message.code.startsWith("SET_")) lastRequest = message;
      if (["GET_CAPABILITIES", "CAPABILITIES", "NEGOTIATE_ALGORITHMS"].includes(message.code))
        vca[message.code] = message;
      if (message.code === "ALGORITHMS")
        ctx = negotiatedContext({
          algorithms: message,
          getCapabilities: vca["GET_CAPABILITIES"] as MessageOf<"GET_CAPABILITIES">,
          capabilities: vca["CAPABILITIES"] as MessageOf<"CAPABILITIES">,
          negotiateAlgorithms: vca["NEGOTIATE_ALGORITHMS"] as MessageOf<"NEGOTIATE_ALGORITHMS">,
        });
    }
    for (const name of [
      "GET_MEASUREMENT_EXTENSION_LOG",
      "MEASUREMENT_EXTENSION_LOG",
      "GET_ENDPOINT_INFO",
      "ENDPOINT_INFO",
      "GET_KEY_PAIR_INFO",
      "KEY_PAIR_INFO",
      "SET_KEY_PAIR_INFO",
      "SET_KEY_PAIR_INFO_ACK",
    ])
      expect(names).toContain(name);
  });
});
