/**
 * Known answers for public-key mode: DMTF's pair with `--slot_id 0xFF` (test/fixtures/vectors/
 * spdm14_public_key.txt, see its README). Every plain SPDM message decodes and re-encodes byte for
 * byte, and the signatures of DMTF's responder verify over the transcripts as public-key.ts builds
 * them: CertChainHash and TH's Hash(CT) are the hash of the key's SPKI. The key is DMTF's sample
 * P-384 responder key, the leaf key of the slot 0 chain in the spdm13_keyex recording.
 */
import { describe, expect, it } from "vitest";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import type { KnownMessageName, MessageOf } from "../../protocol/spdm/messages.js";
import { leafPublicKey } from "../../src/crypto/cert-chain.js";
import { hash, publicKeyDer } from "../../src/crypto/suites.js";
import { PUBLIC_KEY_SLOT } from "../../src/spdm/public-key.js";
import { type SigningContextName, verifyTranscript } from "../../src/spdm/signing.js";
import { sessionTranscriptPrefix } from "../../src/spdm/transcript.js";
import { certChains, PUBLIC_KEY_CAPTURE, rawMessages, readDecoded, VCA_NAMES } from "../vectors.js";

const SUITE = { version: 0x14, hash: "SHA_384", asym: "ECDSA_P384" } as const;
const sampleChain = certChains(readDecoded("spdm13_keyex").messages).get(0)!;
const key = leafPublicKey("SHA_384", sampleChain);
const spki = publicKeyDer(key);
const messages = rawMessages(PUBLIC_KEY_CAPTURE);
const bytes = (i: number) => messages[i]!.frame.body.subarray(0, messages[i]!.byteLength);
const at = <N extends KnownMessageName>(code: N) => {
  const i = messages.findIndex((m) => m.message.code === code);
  return { i, message: messages[i]!.message as MessageOf<N> };
};
/** A: GET_VERSION … ALGORITHMS. */
const vca = Buffer.concat(VCA_NAMES.map((_, i) => bytes(i)));
/** A signed response's bytes without its signature (and what follows it). */
const signedPart = (i: number, signature: Buffer, after = 0) =>
  bytes(i).subarray(0, messages[i]!.byteLength - signature.length - after);
const verifies = (context: SigningContextName, transcript: Buffer, signature: Buffer) =>
  verifyTranscript(SUITE, key, context, transcript, signature);

describe("DMTF's pair in public-key mode (spdm14_public_key)", () => {
  it("every SPDM message decodes and re-encodes to the same bytes", () => {
    const codes = messages.map(({ frame, message, byteLength }, i) => {
      expect(frame.body.length - byteLength, `frame ${frame.index}`).toBeLessThan(4);
      expect(encodeSpdm(message), `frame ${frame.index} ${message.code}`).toEqual(bytes(i));
      return message.code;
    });
    expect(codes).toEqual([
      ...VCA_NAMES,
      "CHALLENGE",
      "CHALLENGE_AUTH",
      "GET_MEASUREMENTS",
      "MEASUREMENTS",
      "KEY_EXCHANGE",
      "KEY_EXCHANGE_RSP",
      "FINISH",
      "FINISH_RSP",
    ]);
  });

  it("CHALLENGE names slot 0xFF; CHALLENGE_AUTH says 0xF, no slot mask, Hash(SPKI), signed over M1", () => {
    const challenge = at("CHALLENGE");
    const auth = at("CHALLENGE_AUTH");
    expect(challenge.message).toMatchObject({ slotId: PUBLIC_KEY_SLOT });
    expect(auth.message).toMatchObject({ attributes: 0x0f, slotMask: 0 });
    expect(auth.message.certChainHash).toEqual(hash("SHA_384", spki));
    const m1 = Buffer.concat([vca, bytes(challenge.i), signedPart(auth.i, auth.message.signature)]);
    expect(verifies("CHALLENGE_AUTH", m1, auth.message.signature)).toBe(true);
  });

  it("MEASUREMENTS is signed for SlotIDParam 0xF over L1 = A ‖ GET_MEASUREMENTS ‖ MEASUREMENTS", () => {
    const get = at("GET_MEASUREMENTS");
    const meas = at("MEASUREMENTS");
    expect(get.message.slotIdParam).toBe(0xf);
    expect(meas.message.slotIdParam & 0xf).toBe(0xf);
    const l1 = Buffer.concat([vca, bytes(get.i), signedPart(meas.i, meas.message.signature)]);
    expect(verifies("MEASUREMENTS", l1, meas.message.signature)).toBe(true);
  });

  it("KEY_EXCHANGE_RSP is signed over A ‖ Hash(SPKI) ‖ KEY_EXCHANGE ‖ KEY_EXCHANGE_RSP, not over a chain's TH", () => {
    const ke = at("KEY_EXCHANGE");
    const rsp = at("KEY_EXCHANGE_RSP");
    expect(ke.message.slotId).toBe(PUBLIC_KEY_SLOT);
    const { signature, responderVerifyData } = rsp.message;
    const rest = Buffer.concat([bytes(ke.i), signedPart(rsp.i, signature, responderVerifyData.length)]);
    const th = (certChain: Buffer) =>
      Buffer.concat([sessionTranscriptPrefix(SUITE, { vca, certChain }), rest]);
    expect(verifies("KEY_EXCHANGE_RSP", th(spki), signature)).toBe(true);
    expect(verifies("KEY_EXCHANGE_RSP", th(sampleChain), signature)).toBe(false);
  });
});
