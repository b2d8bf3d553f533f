/**
 * Known answers for the provisioning codecs: spdm13_provision.txt records DMTF's requester and
 * responder exchanging MEASUREMENT_EXTENSION_LOG, ENDPOINT_INFO (signed), KEY_PAIR_INFO and
 * SET_KEY_PAIR_INFO out of session, spdm13_csr.txt GET_CSR / CSR and SET_CERTIFICATE /
 * SET_CERTIFICATE_RSP, which DMTF's requester sends in the clear while a KEY_EXCHANGE session is up
 * (test/fixtures/vectors/README.md). Every SPDM message in them decodes, with the context the
 * negotiation and its request give, and encodes back byte for byte; spdm13_csr's secured records
 * (END_SESSION and its ACK) decrypt with the recorded session keys and do the same. spdm13_provision
 * also holds the responder's encapsulated GET_ENDPOINT_INFO after OOB_ENCAP_ENDPOINT_INFO and the
 * requester's signed ENDPOINT_INFO: both re-encode byte for byte, and libspdm's signature verifies
 * over A ‖ GET_ENDPOINT_INFO ‖ ENDPOINT_INFO with the requester-endpoint_info context (what our
 * device checks, and our requester signs), with the key of DMTF's sample requester chain as
 * spdm13_basic_mut_auth's encapsulated CERTIFICATEs carry it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import { AlgType, SpdmCode } from "../../protocol/spdm/codes.js";
import { type DecodeContext, negotiatedContext } from "../../protocol/spdm/context.js";
import type { MessageOf, SpdmMessage } from "../../protocol/spdm/messages.js";
import { ENDPOINT_INFO_SIGNATURE_REQUESTED } from "../../protocol/spdm/provision.js";
import { byBit } from "../../src/bits.js";
import { decodeCertChain } from "../../src/crypto/cert-chain.js";
import { ASYM, type AsymAlgo } from "../../src/crypto/suites.js";
import { algStructSel } from "../../src/spdm/requester-vca.js";
import { decryptRecord } from "../../src/spdm/secured-record.js";
import { verifyTranscript } from "../../src/spdm/signing.js";
import { readSecrets, secret, VECTORS_DIR } from "../vectors.js";

const NORMAL = 1;
const DOE_CMA_SPDM = 1;
const DOE_SECURED_SPDM = 2;

interface SpdmObject {
  /** The SPDM message, DOE padding included (decrypted for a secured record). */
  spdm: Buffer;
  dir: "C2S" | "S2C";
  secured: boolean;
}

/** The SPDM messages of a recording's DOE objects (CMA/SPDM and secured), in order. */
function spdmObjects(capture: string, keys?: Map<string, Buffer>): SpdmObject[] {
  const lines = readFileSync(join(VECTORS_DIR, `${capture}.txt`), "utf8").split("\n");
  const out: SpdmObject[] = [];
  // Each KEY_EXCHANGE_RSP starts the next recorded session; its data-phase records count from 0.
  let session = 0;
  const seq = { C2S: 0, S2C: 0 };
  for (const line of lines) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const dir = line.slice(0, 3) as "C2S" | "S2C";
    const frame = Buffer.from(line.slice(4), "hex");
    if (frame.readUInt32BE(0) !== NORMAL) continue;
    const doe = frame.subarray(12);
    const object = doe.subarray(8, (doe.readUInt32LE(4) & 0x3ffff) * 4);
    if (doe[2] === DOE_CMA_SPDM) {
      if (object[1] === SpdmCode.KEY_EXCHANGE_RSP) [session, seq.C2S, seq.S2C] = [session + 1, 0, 0];
      out.push({ spdm: object, dir, secured: false });
    } else if (doe[2] === DOE_SECURED_SPDM && keys) {
      const side = dir === "C2S" ? "request" : "response";
      const key = (name: string) => secret(keys, `session${session}.${side}_data_${name}`);
      const { message } = decryptRecord(
        { aead: "AES_256_GCM", key: key("key"), iv: key("iv") },
        seq[dir]++,
        object,
      );
      out.push({ spdm: message, dir, secured: true });
    }
  }
  return out;
}

/** Decodes each message with the context negotiation and its request give; each must encode back byte for byte. */
function decodeEach(objects: readonly SpdmObject[]): SpdmMessage[] {
  let ctx: DecodeContext = {};
  const vca: Partial<Record<string, SpdmMessage>> = {};
  let lastRequest: SpdmMessage | undefined;
  const messages: SpdmMessage[] = [];
  for (const { spdm } of objects) {
    const extra: DecodeContext =
      lastRequest?.code === "GET_ENDPOINT_INFO"
        ? {
            endpointInfoSignatureRequested:
              (lastRequest.attributes & ENDPOINT_INFO_SIGNATURE_REQUESTED) !== 0,
          }
        : lastRequest?.code === "KEY_EXCHANGE"
          ? { measurementSummaryHashType: lastRequest.measurementSummaryHashType }
          : {};
    const { message, byteLength } = decodeSpdmWithLength(spdm, { ...ctx, ...extra });
    expect(encodeSpdm(message), message.code).toEqual(spdm.subarray(0, byteLength));
    messages.push(message);
    if (/^(GET_|SET_|KEY_EXCHANGE$)/.test(message.code)) lastRequest = message;
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
  return messages;
}

describe("provisioning codecs against DMTF's recordings", () => {
  it("spdm13_provision: decodes every message and encodes it back byte for byte", () => {
    const names = decodeEach(spdmObjects("spdm13_provision")).map((m) => m.code);
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

  it("spdm13_csr: GET_CSR, CSR, SET_CERTIFICATE and SET_CERTIFICATE_RSP (twice), and the secured END_SESSION, byte for byte", () => {
    const objects = spdmObjects("spdm13_csr", readSecrets("spdm13_csr"));
    const messages = decodeEach(objects);
    const names = messages.map((m) => m.code);
    for (const name of ["GET_CSR", "CSR", "SET_CERTIFICATE", "SET_CERTIFICATE_RSP"])
      expect(names.filter((n) => n === name)).toHaveLength(2);
    expect(messages.filter((_, i) => objects[i]!.secured).map((m) => m.code)).toEqual([
      "END_SESSION",
      "END_SESSION_ACK",
      "END_SESSION",
      "END_SESSION_ACK",
    ]);
    // The CSR is DER (a SEQUENCE), and SET_CERTIFICATE carries an SPDM chain whose Length is its size.
    const csr = messages.find((m) => m.code === "CSR") as MessageOf<"CSR">;
    expect(csr.csr[0]).toBe(0x30);
    const set = messages.find((m) => m.code === "SET_CERTIFICATE") as MessageOf<"SET_CERTIFICATE">;
    expect(set.certChain?.readUInt16LE(0)).toBe(set.certChain?.length);
  });

  it("spdm13_provision: the encapsulated GET_ENDPOINT_INFO and the requester's signed ENDPOINT_INFO, byte for byte; the signature verifies", () => {
    const messages = decodeEach(spdmObjects("spdm13_provision"));
    const codes = messages.map((m) => m.code);
    const vcaStart = codes.lastIndexOf("GET_VERSION");
    const algIndex = codes.indexOf("ALGORITHMS", vcaStart);
    const vcaMessages = messages.slice(vcaStart, algIndex + 1);
    const vca = Buffer.concat(vcaMessages.map((m) => encodeSpdm(m)));
    const of = <N extends SpdmMessage["code"]>(code: N) =>
      vcaMessages.find((m) => m.code === code) as Extract<SpdmMessage, { code: N }>;
    const alg = of("ALGORITHMS");
    const ctx = negotiatedContext({
      algorithms: alg,
      getCapabilities: of("GET_CAPABILITIES"),
      capabilities: of("CAPABILITIES"),
      negotiateAlgorithms: of("NEGOTIATE_ALGORITHMS"),
    });
    const exact = (bytes: Buffer, c: DecodeContext) => {
      const { message, byteLength } = decodeSpdmWithLength(bytes, c);
      const own = bytes.subarray(0, byteLength);
      expect(encodeSpdm(message)).toEqual(own);
      return { message, bytes: own };
    };
    const encap = messages.find(
      (m) => m.code === "ENCAPSULATED_REQUEST" && m.encapsulatedRequest[1] === SpdmCode.GET_ENDPOINT_INFO,
    ) as MessageOf<"ENCAPSULATED_REQUEST">;
    const request = exact(encap.encapsulatedRequest, ctx);
    const get = request.message as MessageOf<"GET_ENDPOINT_INFO">;
    expect(get).toMatchObject({ subCode: 1, slotId: 0, attributes: ENDPOINT_INFO_SIGNATURE_REQUESTED });
    const deliver = messages[messages.indexOf(encap) + 1] as MessageOf<"DELIVER_ENCAPSULATED_RESPONSE">;
    expect(deliver.requestId).toBe(encap.requestId);
    const response = exact(deliver.encapsulatedResponse, {
      ...ctx,
      asymSignatureSize: ctx.reqAsymSignatureSize,
      endpointInfoSignatureRequested: true,
    });
    const info = response.message as MessageOf<"ENDPOINT_INFO">;
    expect(info.slotId).toBe(0);
    expect(messages[messages.indexOf(encap) + 2]).toMatchObject({
      code: "ENCAPSULATED_RESPONSE_ACK",
      payloadType: 0,
      ackRequestId: encap.requestId,
    });
    // The requester's leaf key: spdm13_basic_mut_auth's encapsulated CERTIFICATEs (same sample chain, same ReqBaseAsym).
    const certificates = spdmObjects("spdm13_basic_mut_auth")
      .filter(
        (o) => o.spdm[1] === SpdmCode.DELIVER_ENCAPSULATED_RESPONSE && o.spdm[5] === SpdmCode.CERTIFICATE,
      )
      .map((o) => (decodeSpdmWithLength(o.spdm.subarray(4)).message as MessageOf<"CERTIFICATE">).certChain);
    const key = decodeCertChain("SHA_384", Buffer.concat(certificates)).certs.at(-1)!.publicKey;
    const asym = byBit(ASYM, algStructSel(alg.algStructs, AlgType.REQ_BASE_ASYM_ALG)) as AsymAlgo;
    const il = Buffer.concat([vca, request.bytes, response.bytes.subarray(0, -info.signature.length)]);
    const suite = { version: alg.version, hash: "SHA_384" as const, asym };
    expect(verifyTranscript(suite, key, "MUT_ENDPOINT_INFO", il, info.signature)).toBe(true);
    // The same bytes under the responder's context do not verify: the context is part of what is signed.
    expect(verifyTranscript(suite, key, "ENDPOINT_INFO", il, info.signature)).toBe(false);
  });
});
