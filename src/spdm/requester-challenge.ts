/**
 * DSP0274 CHALLENGE from the requester side: the responder proves it holds the slot's private key
 * by signing M1 (VCA, the certificate messages, our CHALLENGE with its nonce, and CHALLENGE_AUTH
 * up to the signature).
 */
import { MeasurementSummaryHashType, NONCE_SIZE, REQUESTER_CONTEXT_SIZE } from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { hash } from "../crypto/suites.js";
import { expectResponse, fail, type SpdmRequester, withoutSignature } from "./requester.js";

/** CHALLENGE the configured slot, whose chain GET_CERTIFICATE must have verified. */
export async function challenge(r: SpdmRequester): Promise<void> {
  const slot = r.options.slotId;
  const { bytes: chainBytes, leafKey } = r.chains.get(slot)!;
  const type = r.summaryHashType();
  const nonce = r.random(NONCE_SIZE);
  const requesterContext = r.version >= 0x13 ? r.random(REQUESTER_CONTEXT_SIZE) : undefined;
  const reply = await r.exchange(
    {
      code: "CHALLENGE",
      version: r.version,
      slotId: slot,
      measurementSummaryHashType: type,
      nonce,
      requesterContext,
    },
    { measurementSummaryHashType: type },
  );
  const a = expectResponse(reply, "CHALLENGE_AUTH");
  const bad = (reason: string) => fail("challenge", `CHALLENGE_AUTH ${reason}`);
  if ((a.attributes & 0xf) !== slot) bad(`is for slot ${a.attributes & 0xf}, we challenged slot ${slot}`);
  if (a.attributes & 0x80) bad("asks for basic mutual authentication, which this requester does not do");
  if (!((a.slotMask >> slot) & 1)) bad(`slot mask ${hex(a.slotMask)} lacks slot ${slot}`);
  const h = r.suite!.hash;
  if (!a.certChainHash.equals(hash(h, chainBytes)))
    bad(`CertChainHash is not the ${h} of slot ${slot}'s certificate chain`);
  r.checkOpaque("CHALLENGE_AUTH", a.opaqueData);
  // CHALLENGE_AUTH's Nonce is the responder's own: our nonce's freshness is proven by M1, which
  // holds our CHALLENGE; what is echoed (1.3) is the RequesterContext.
  if (requesterContext && !a.requesterContext?.equals(requesterContext))
    bad("does not echo our RequesterContext");
  const m1 = r.transcript.challenge(reply.requestBytes, withoutSignature(reply.bytes, a.signature));
  r.verifySignature("CHALLENGE_AUTH", "M1", leafKey, m1, a.signature);
  r.transcript.markAuthenticated();
  r.challenged = true;
  r.summaryHash = type === MeasurementSummaryHashType.None ? undefined : a.measurementSummaryHash;
}
