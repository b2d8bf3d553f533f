/**
 * DSP0274 KEY_EXCHANGE from the requester side: ECDHE, the responder's signature over TH1 with the
 * slot's verified leaf key, its verify data unless the handshake is in the clear, then FINISH —
 * signed by us when the responder asks for mutual authentication and we hold a requester chain and
 * key, after the encapsulated flow in which the responder fetches our chain when it asks for one.
 */
import { DecodeError } from "../../protocol/errors.js";
import { encodeSupportedVersions } from "../../protocol/secured.js";
import {
  AlgType,
  bitNames,
  DheNamedGroup,
  MutAuthRequested,
  RANDOM_DATA_SIZE,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
} from "../../protocol/spdm/codes.js";
import { byBit, hex, isOneHotOrZero } from "../bits.js";
import { DHE, type DheAlgo, dheKeyPair, hash } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT_PARAM, slotOfParam } from "./public-key.js";
import { expectResponse, fail, type RequesterConnection } from "./requester.js";
import { type EncapStart, encapsulatedFlow, requesterSigner } from "./requester-encap.js";
import {
  acceptVerifyData,
  both,
  checkHeartbeat,
  finish,
  type Handshake,
  type MutualAuth,
  selectedVersion,
  selection,
} from "./requester-handshake.js";
import { SecureSession } from "./session.js";
import { verifyTranscript } from "./signing.js";
import { sessionTranscriptPrefix } from "./transcript.js";

/** KEY_EXCHANGE, then FINISH. */
export const keyExchange: Handshake = async (r, c, o, suite, held) => {
  const slot = c.slotId;
  const chain = c.chain(slot);
  if (!chain)
    fail("session", `KEY_EXCHANGE needs slot ${slot}'s certificate chain: run DIGEST and CERT first`);
  const dheBit = selection(c, AlgType.DHE);
  const dhe = byBit(DHE, dheBit) as DheAlgo | undefined;
  if (!dhe)
    fail(
      "negotiation",
      `ALGORITHMS selected DHE ${bitNames(DheNamedGroup, dheBit).join("") || "none"}; this requester does ECDHE on SECP_256_R1, SECP_384_R1 and SECP_521_R1 only`,
    );
  const type = o.measurementSummaryHashType ?? c.measurementSummaryHashType;
  const keyPair = dheKeyPair(dhe);
  const reply = await r.exchange(
    {
      code: "KEY_EXCHANGE",
      version: c.version,
      measurementSummaryHashType: type,
      slotId: slot,
      reqSessionId: o.reqSessionId,
      sessionPolicy: c.version >= 0x12 ? o.sessionPolicy : 0,
      randomData: c.random(RANDOM_DATA_SIZE),
      exchangeData: keyPair.exchangeData,
      opaqueData: encodeSupportedVersions(c.version, o.securedMessageVersions),
    },
    { measurementSummaryHashType: type },
  );
  const kr = expectResponse(reply, "KEY_EXCHANGE_RSP");
  checkHeartbeat(c, reply, kr.heartbeatPeriod);
  const mutual = mutualAuthRequest(c, kr.mutAuthRequested, kr.reqSlotIdParam);
  const session = new SecureSession({
    role: "requester",
    kind: "KEY_EX",
    suite,
    reqSessionId: o.reqSessionId,
    rspSessionId: kr.rspSessionId,
    transcriptPrefix: sessionTranscriptPrefix(suite, {
      vca: c.vca,
      digests: c.digests,
      certChain: chain.bytes,
    }),
    handshakeInTheClear: c.ctx.handshakeInTheClear ?? false,
    mutualAuth: mutual !== undefined,
    heartbeatPeriod: kr.heartbeatPeriod,
    securedMessageVersion: selectedVersion(c, reply, kr.opaqueData, o.securedMessageVersions),
    keyLog: r.options.keyLog,
  });
  held.session = session;
  // TH1 takes KEY_EXCHANGE_RSP through the signature; the signature covers what precedes it.
  const signatureAt = reply.bytes.length - kr.responderVerifyData.length - kr.signature.length;
  session.addTranscript(reply.requestBytes, reply.bytes.subarray(0, signatureAt));
  if (!verifyTranscript(c.suite, chain.leafKey, "KEY_EXCHANGE_RSP", session.transcript, kr.signature))
    fail(
      "signature",
      `KEY_EXCHANGE_RSP signature does not verify over TH (${c.suite.asym}, ${c.suite.hash}, slot ${slot})`,
    );
  session.addTranscript(kr.signature);
  let dheSecret: Buffer;
  try {
    dheSecret = keyPair.sharedSecret(kr.exchangeData);
  } catch (e) {
    if (e instanceof DecodeError) fail("session", `KEY_EXCHANGE_RSP ${e.message}`, e);
    throw e;
  }
  session.deriveHandshakeKeys({ dheSecret });
  dheSecret.fill(0);
  if (!session.handshakeInTheClear)
    acceptVerifyData(session, kr.responderVerifyData, "KEY_EXCHANGE_RSP ResponderVerifyData");
  let encapsulated: string[] | undefined;
  let encapDigests: Buffer | undefined;
  if (mutual?.encap) {
    // The responder fetches our chain (its messages are in no TH) and names the slot FINISH signs with.
    const flow = await encapsulatedFlow(r, mutual.encap, {
      session,
      plain: session.handshakeInTheClear,
      signer: mutual,
    });
    mutual.slot = flow.reqSlot ?? mutual.slot;
    encapsulated = flow.requests;
    encapDigests = flow.encapDigests;
  }
  // Mutual: TH for FINISH goes on with [EncapD, on our multi-key connection] ‖ Hash(our chain).
  if (mutual) session.addTranscript(encapDigests ?? Buffer.alloc(0), hash(c.suite.hash, mutual.chain));
  await finish(r, c, session, "FINISH", mutual);
  return {
    session,
    measurementSummaryHashType: type,
    measurementSummaryHash: kr.measurementSummaryHash,
    mutualAuth: mutual && { slot: mutual.slot, reqAsym: mutual.suite.asym, encapsulated },
  };
};

/**
 * MutAuthRequested of KEY_EXCHANGE_RSP checked as libspdm 1e16c60f's requester does: none, or one
 * of its three bits with MUT_AUTH_CAP on both sides (and ENCAP_CAP for the encapsulated ones) and a
 * slot 0–7. Bit 0: we sign FINISH; bit 1: the responder first asks for our chain through
 * encapsulated requests (GET_ENCAPSULATED_REQUEST); bit 2: likewise, starting with the GET_DIGESTS
 * the response implies.
 */
function mutualAuthRequest(
  c: RequesterConnection,
  requested: number,
  slotParam: number,
): (MutualAuth & { encap?: EncapStart }) | undefined {
  const what = `KEY_EXCHANGE_RSP MutAuthRequested ${hex(requested)}`;
  const bits = requested & 0x7;
  if (bits === 0) return undefined;
  if (!isOneHotOrZero(bits)) fail("session", `${what} sets more than one mode`);
  const encap: EncapStart | undefined =
    bits === MutAuthRequested.WITH_ENCAP_REQUEST
      ? "GET_ENCAPSULATED_REQUEST"
      : bits === MutAuthRequested.WITH_GET_DIGESTS
        ? "WITH_GET_DIGESTS"
        : undefined;
  const signer = requesterSigner(c, what);
  if (!both(c, Req.MUT_AUTH_CAP, Rsp.MUT_AUTH_CAP))
    fail("session", `${what} asks for mutual authentication without MUT_AUTH_CAP on both sides`);
  if (encap && !both(c, Req.ENCAP_CAP, Rsp.ENCAP_CAP))
    fail("session", `${what} asks for encapsulated requests without ENCAP_CAP on both sides`);
  // libspdm: with our public key provisioned, ReqSlotIDParam is 0xF and no encapsulated flow is allowed.
  const provisioned = c.requesterIdentity?.publicKey === true;
  if (provisioned && encap)
    fail("session", `${what} asks for encapsulated requests, but our public key is provisioned`);
  const slot = slotParam & 0xf;
  if (provisioned ? slot !== PUBLIC_KEY_SLOT_PARAM : slot > 7)
    fail("session", `${what} names requester slot ${hex(slot)}`);
  return { slot: slotOfParam(slot), ...signer, encap };
}
