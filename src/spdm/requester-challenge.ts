/**
 * DSP0274 CHALLENGE from the requester side: the responder proves it holds the slot's private key
 * by signing M1 (VCA, the certificate messages, our CHALLENGE with its nonce, and CHALLENGE_AUTH
 * up to the signature). When CHALLENGE_AUTH asks for basic mutual authentication, the responder
 * then challenges us through encapsulated requests (requester-encap.ts).
 */
import {
  MeasurementSummaryHashType,
  NONCE_SIZE,
  REQUESTER_CONTEXT_SIZE,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
} from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { hash } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import {
  expectResponse,
  fail,
  type RequesterConnection,
  type SpdmRequester,
  withoutSignature,
} from "./requester.js";
import { encapsulatedFlow, type RequesterSigner, requesterSigner } from "./requester-encap.js";
import { both } from "./requester-handshake.js";

/** CHALLENGE_AUTH Param1 bit 7: BasicMutAuthReq. */
const BASIC_MUT_AUTH_REQ = 0x80;

/** CHALLENGE the configured slot, whose chain GET_CERTIFICATE must have verified (or slot 0xFF, the provisioned key). */
export async function challenge(r: SpdmRequester): Promise<void> {
  const slot = r.options.slotId;
  const { bytes: chainBytes, leafKey } = r.peerKey(slot)!;
  const publicKey = slot === PUBLIC_KEY_SLOT;
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
  if ((a.attributes & 0xf) !== (slot & 0xf))
    bad(`is for slot ${a.attributes & 0xf}, we challenged slot ${hex(slot)}`);
  // BasicMutAuthReq: the responder authenticates us next, through encapsulated requests.
  const signer = (a.attributes & BASIC_MUT_AUTH_REQ) !== 0 ? basicMutualAuth(r.connection, bad) : undefined;
  // The provisioned key has no place in the slot mask (libspdm does not look at it then).
  if (!publicKey && !((a.slotMask >> slot) & 1)) bad(`slot mask ${hex(a.slotMask)} lacks slot ${slot}`);
  const h = r.suite!.hash;
  if (!a.certChainHash.equals(hash(h, chainBytes)))
    bad(
      `CertChainHash is not the ${h} of ${publicKey ? "the provisioned public key" : `slot ${slot}'s certificate chain`}`,
    );
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
  if (signer) r.basicMutualAuth = await encapsulatedFlow(r, "GET_ENCAPSULATED_REQUEST", { signer });
}

/** CHALLENGE_AUTH bit 7 (deprecated in 1.2): allowed with MUT_AUTH_CAP and ENCAP_CAP on both sides. */
function basicMutualAuth(c: RequesterConnection, bad: (reason: string) => never): RequesterSigner {
  const what = "asks for basic mutual authentication";
  if (!both(c, Req.MUT_AUTH_CAP, Rsp.MUT_AUTH_CAP)) bad(`${what} without MUT_AUTH_CAP on both sides`);
  if (!both(c, Req.ENCAP_CAP, Rsp.ENCAP_CAP)) bad(`${what} without ENCAP_CAP on both sides`);
  return requesterSigner(c, "CHALLENGE_AUTH");
}
