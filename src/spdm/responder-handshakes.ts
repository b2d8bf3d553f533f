/**
 * The session handshakes (DSP0274 KEY_EXCHANGE / FINISH and PSK_EXCHANGE / PSK_FINISH; DSP0277
 * for the secured-message version): each starts a SecureSession (session.ts), which keeps its
 * transcript and keys, and ends with the switch to data keys once the completing response is out.
 *
 * KEY_EXCHANGE uses ECDHE and signs with a slot's key; with a requester chain provisioned (only
 * then do we advertise MUT_AUTH_CAP) and MUT_AUTH_CAP from the requester, it asks for mutual
 * authentication without encapsulation, and FINISH then carries the requester's signature. In the
 * encapsulated modes (W_ENCAP, DIGESTS) it asks WITH_ENCAP_REQUEST / WITH_GET_DIGESTS and arms the
 * flow (responder-encap.ts) that fetches and verifies the requester's chain before FINISH. PSK_EXCHANGE uses the pre-shared key; PSK_FINISH
 * follows only when we send a ResponderContext (PSK_CAP 10b).
 */
import { randomBytes } from "node:crypto";
import {
  decodeSecuredMessageOpaque,
  encodeVersionSelection,
  SecuredMessageVersion,
} from "../../protocol/secured.js";
import { encodeSpdm, finishOpaque } from "../../protocol/spdm/codec.js";
import {
  FINISH_SIGNATURE_INCLUDED,
  MutAuthRequested,
  OPAQUE_DATA_FMT_MASK,
  OtherParams,
  RANDOM_DATA_SIZE,
  RequesterCapability,
  ResponderCapability,
  SessionPolicy,
  SpdmVersion,
  versionName,
} from "../../protocol/spdm/codes.js";
import type { Finish, KeyExchange, PskExchange, PskFinish } from "../../protocol/spdm/messages.js";
import { hex32 } from "../bits.js";
import { encodeCertChain } from "../crypto/cert-chain.js";
import { dheKeyPair, hash } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import { check, EMPTY, type Exchange, fail, inSession, type ResponderContext } from "./responder-context.js";
import { measurementSummary } from "./responder-measurements.js";
import { SecureSession } from "./session.js";
import { verifyTranscript } from "./signing.js";
import { sessionTranscriptPrefix } from "./transcript.js";

export type HandshakeContext = Pick<
  ResponderContext,
  "config" | "log" | "connection" | "transcript" | "sessions" | "encap"
>;

/** DSP0277 versions we speak, most preferred first; libspdm offers and selects the same. */
const SECURED_VERSIONS = [SecuredMessageVersion.V1_2, SecuredMessageVersion.V1_1, SecuredMessageVersion.V1_0];
/** PSK_EXCHANGE_RSP ResponderContext size: libspdm's LIBSPDM_PSK_CONTEXT_LENGTH. */
const PSK_CONTEXT_SIZE = 64;

/**
 * What KEY_EXCHANGE and PSK_EXCHANGE share, checked in libspdm's order before a session exists:
 * the capabilities and algorithms, the policy, the DSP0277 version the requester's opaque data
 * offers (our selection goes back in ours), and a free RspSessionID.
 */
function sessionStart(
  { config, connection, sessions }: Pick<HandshakeContext, "config" | "connection" | "sessions">,
  version: number,
  policy: number,
  requestOpaque: Buffer,
) {
  const c = connection.negotiated;
  const R = RequesterCapability;
  const S = ResponderCapability;
  // Records are encrypted and MACed; libspdm insists on MAC, and MAC-only records are not implemented.
  check(connection.both(R.ENCRYPT_CAP, S.ENCRYPT_CAP) && connection.both(R.MAC_CAP, S.MAC_CAP));
  // 1.2+: only opaque data format 1 carries the version elements.
  check(
    version < SpdmVersion.V1_2 || (c.otherParams & OPAQUE_DATA_FMT_MASK) === OtherParams.OPAQUE_DATA_FMT_1,
  );
  // EVENT_ALL asks for events we cannot send (no EVENT_CAP).
  check(version < SpdmVersion.V1_3 || (policy & SessionPolicy.EVENT_ALL) === 0);
  const { hash: h, aead } = c;
  check(h !== undefined && aead !== undefined);
  // No opaque data from the requester: none back, and no version selected (libspdm does the same).
  let securedMessageVersion: number | undefined;
  if (requestOpaque.length > 0) {
    const { supported } = decodeSecuredMessageOpaque(version, requestOpaque);
    securedMessageVersion = SECURED_VERSIONS.find((v) => supported?.includes(v));
    check(securedMessageVersion !== undefined);
  }
  const rspSessionId = sessions.allocate();
  if (rspSessionId === undefined) fail("SessionLimitExceeded");
  return {
    suite: { version, hash: h, aead },
    rspSessionId,
    securedMessageVersion,
    opaqueData:
      securedMessageVersion === undefined ? EMPTY : encodeVersionSelection(version, securedMessageVersion),
    heartbeatPeriod: connection.both(R.HBEAT_CAP, S.HBEAT_CAP) ? config.heartbeatPeriod : 0,
  };
}

export function keyExchange(c: HandshakeContext, m: KeyExchange, request: Buffer): Buffer {
  const { connection } = c;
  const { dhe: dheAlgo, slots } = connection.negotiated;
  // Slot 0xFF exists in public-key mode only (its "chain" the key's SPKI); else InvalidRequest, as for an empty slot.
  const slot = slots.get(m.slotId);
  check(slot !== undefined && dheAlgo !== undefined);
  const summary = measurementSummary(c, m.measurementSummaryHashType);
  const start = sessionStart(c, m.version, m.sessionPolicy, m.opaqueData);
  const requesterChain = mutualAuthChain(c, m.version);
  const encapMode = requesterChain ? undefined : encapMutualAuth(c, m.version);
  const dhe = dheKeyPair(dheAlgo);
  const dheSecret = dhe.sharedSecret(m.exchangeData); // not a point on the curve: DecodeError → InvalidRequest
  const session = new SecureSession({
    role: "responder",
    kind: "KEY_EX",
    suite: start.suite,
    reqSessionId: m.reqSessionId,
    rspSessionId: start.rspSessionId,
    transcriptPrefix: sessionTranscriptPrefix(start.suite, {
      vca: c.transcript.vca,
      digests: connection.negotiated.multiKeyConn ? c.transcript.digests : undefined,
      certChain: slot.chain,
    }),
    handshakeInTheClear: connection.handshakeInTheClear,
    mutualAuth: requesterChain !== undefined || encapMode !== undefined,
    heartbeatPeriod: start.heartbeatPeriod,
    securedMessageVersion: start.securedMessageVersion,
    keyLog: c.config.keyLog,
  });
  const unsigned = encodeSpdm({
    code: "KEY_EXCHANGE_RSP",
    version: m.version,
    heartbeatPeriod: start.heartbeatPeriod,
    rspSessionId: start.rspSessionId,
    // Without encapsulation the requester signs with the chain we hold, which we call slot 0 (0xF:
    // the public key we hold); with it we fetch the chain of its slot 0 first.
    mutAuthRequested: requesterChain ? MutAuthRequested.REQUESTED : encapMode ? ENCAP_REQUESTS[encapMode] : 0,
    reqSlotIdParam: requesterChain ? requesterSlot(c) & 0xf : 0,
    randomData: randomBytes(RANDOM_DATA_SIZE),
    exchangeData: dhe.exchangeData,
    measurementSummaryHash: summary,
    opaqueData: start.opaqueData,
    signature: EMPTY,
    responderVerifyData: EMPTY,
  });
  // TH: A ‖ Hash(CT) ‖ KEY_EXCHANGE ‖ KEY_EXCHANGE_RSP up to the signature, which signs exactly that.
  session.addTranscript(request, unsigned);
  const signature = connection.sign("KEY_EXCHANGE_RSP", m.slotId, session.transcript);
  session.addTranscript(signature);
  session.deriveHandshakeKeys({ dheSecret });
  dheSecret.fill(0);
  const verify = session.handshakeInTheClear ? EMPTY : session.verifyData("response");
  session.addTranscript(verify);
  // Mutual authentication: TH goes on with Hash(requester chain or public key) before FINISH (libspdm's TH for FINISH).
  if (requesterChain) session.addTranscript(hash(start.suite.hash, requesterChain));
  c.sessions.add(session);
  // The flow adds Hash(requester chain) to TH once it has verified the chain.
  if (encapMode) c.encap.arm(c, "session-auth", session, encapMode === "DIGESTS");
  return Buffer.concat([unsigned, signature, verify]);
}

/** The requester slot FINISH signs with: 0xFF for a provisioned public key, else the chain we call slot 0. */
const requesterSlot = ({ config }: Pick<HandshakeContext, "config">): number =>
  config.mutualAuth?.publicKeyDer ? PUBLIC_KEY_SLOT : 0;

/**
 * The requester's SPDM cert chain (negotiated hash), or its provisioned public key's SPKI, when this
 * session is mutually authenticated: what TH hashes.
 * Mutual authentication needs MUT_AUTH_CAP on both sides; when it is required, a requester
 * without it gets libspdm's ERROR for that (InvalidPolicy at 1.3, Unspecified before).
 */
function mutualAuthChain(
  { config, log, connection }: Pick<HandshakeContext, "config" | "log" | "connection">,
  version: number,
): Buffer | undefined {
  const identity = config.mutualAuth;
  if (!identity) return undefined;
  if (!connection.both(RequesterCapability.MUT_AUTH_CAP, ResponderCapability.MUT_AUTH_CAP)) {
    if (!identity.required) return undefined;
    log.info("KEY_EXCHANGE from a requester without MUT_AUTH_CAP; mutual authentication is required");
    fail(version >= SpdmVersion.V1_3 ? "InvalidPolicy" : "Unspecified");
  }
  return identity.publicKeyDer ?? encodeCertChain(connection.negotiated.hash!, identity.certsDer);
}

/** KEY_EXCHANGE_RSP MutAuthRequested for the encapsulated modes. */
const ENCAP_REQUESTS = {
  W_ENCAP: MutAuthRequested.WITH_ENCAP_REQUEST,
  DIGESTS: MutAuthRequested.WITH_GET_DIGESTS,
} as const;

/**
 * The encapsulated mode of this session's mutual authentication, if any: it needs MUT_AUTH_CAP and
 * ENCAP_CAP on both sides; when it is required, a requester without them gets libspdm's ERROR.
 */
function encapMutualAuth(
  { config, log, connection }: Pick<HandshakeContext, "config" | "log" | "connection">,
  version: number,
): "W_ENCAP" | "DIGESTS" | undefined {
  const auth = config.encapAuth;
  if (!auth?.session) return undefined;
  const R = RequesterCapability;
  const S = ResponderCapability;
  if (connection.both(R.MUT_AUTH_CAP, S.MUT_AUTH_CAP) && connection.both(R.ENCAP_CAP, S.ENCAP_CAP))
    return auth.session;
  if (!auth.required) return undefined;
  log.info(
    "KEY_EXCHANGE from a requester without MUT_AUTH_CAP and ENCAP_CAP; mutual authentication is required",
  );
  fail(version >= SpdmVersion.V1_3 ? "InvalidPolicy" : "Unspecified");
}

export function finish(
  c: Pick<HandshakeContext, "config" | "log" | "connection" | "sessions" | "encap">,
  m: Finish,
  request: Buffer,
  x: Exchange,
): Buffer {
  // In the clear FINISH names no session: it completes the last KEY_EXCHANGE (libspdm's latest_session_id).
  const session = x.session ?? c.sessions.awaitingFinish;
  check(session !== undefined, "UnexpectedRequest");
  // A signature comes exactly when KEY_EXCHANGE_RSP asked for one, for the slot it named (libspdm: InvalidRequest).
  const signed = (m.attributes & FINISH_SIGNATURE_INCLUDED) !== 0;
  check(signed === session.mutualAuth && (!signed || m.reqSlotId === requesterSlot(c)));
  if (signed) verifyFinishSignature(c, session, request, m, x);
  acceptRequesterVerifyData(c, session, request, m.requesterVerifyData, x);
  const header = encodeSpdm({
    code: "FINISH_RSP",
    version: m.version,
    opaqueData: finishOpaque(m.version),
    responderVerifyData: EMPTY,
  });
  session.addTranscript(header);
  // In the clear the handshake keys protected nothing, so FINISH_RSP proves the key itself.
  const verify = session.handshakeInTheClear ? session.verifyData("response") : EMPTY;
  session.addTranscript(verify);
  x.after.push(() => establish(c, session));
  return Buffer.concat([header, verify]);
}

/**
 * The requester's FINISH signature over TH ‖ FINISH up to the signature, by the provisioned
 * chain's leaf with ReqBaseAsymAlg. A wrong one is ERROR DecryptError (libspdm), and the session
 * ends once that ERROR is out.
 */
function verifyFinishSignature(
  {
    config,
    log,
    connection,
    sessions,
    encap,
  }: Pick<HandshakeContext, "config" | "log" | "connection" | "sessions" | "encap">,
  session: SecureSession,
  request: Buffer,
  m: Finish,
  x: Exchange,
): void {
  const { version, hash: h, reqAsym } = connection.negotiated;
  // Encapsulated mutual authentication: the leaf of the chain the flow fetched; FINISH before the
  // flow verified it is out of order.
  const key = config.encapAuth?.session ? encap.peerKey(session) : config.mutualAuth?.publicKey;
  check(key !== undefined, "UnexpectedRequest");
  if (!h || !reqAsym) throw new Error("a mutual-authentication FINISH without its algorithms");
  const signedPart = request.subarray(0, request.length - m.signature.length - m.requesterVerifyData.length);
  const transcript = Buffer.concat([session.transcript, signedPart]);
  if (!verifyTranscript({ version, hash: h, asym: reqAsym }, key, "FINISH", transcript, m.signature)) {
    log.warn({ sessionId: hex32(session.sessionId) }, "FINISH signature does not verify");
    x.after.push(() => sessions.end(session, "FINISH signature does not verify"));
    fail("DecryptError");
  }
}

export function pskExchange(c: HandshakeContext, m: PskExchange, request: Buffer, x: Exchange): Buffer {
  const psk = c.connection.psk(m.pskHint);
  if (!psk) {
    c.log.info({ hint: m.pskHint.toString("hex") }, "PSK_EXCHANGE names an unknown PSK hint");
    fail("InvalidRequest");
  }
  const summary = measurementSummary(c, m.measurementSummaryHashType);
  const start = sessionStart(c, m.version, m.sessionPolicy, m.opaqueData);
  // PSK_CAP 10b: a ResponderContext, and PSK_FINISH to confirm it; 01b: neither.
  const withContext = (c.connection.advertised & ResponderCapability.PSK_CAP_RESPONDER_WITH_CONTEXT) !== 0;
  const session = new SecureSession({
    role: "responder",
    kind: "PSK",
    suite: start.suite,
    pskHint: m.pskHint,
    reqSessionId: m.reqSessionId,
    rspSessionId: start.rspSessionId,
    transcriptPrefix: sessionTranscriptPrefix(start.suite, { vca: c.transcript.vca }),
    heartbeatPeriod: start.heartbeatPeriod,
    securedMessageVersion: start.securedMessageVersion,
    keyLog: c.config.keyLog,
  });
  const unverified = encodeSpdm({
    code: "PSK_EXCHANGE_RSP",
    version: m.version,
    heartbeatPeriod: start.heartbeatPeriod,
    rspSessionId: start.rspSessionId,
    measurementSummaryHash: summary,
    responderContext: withContext ? randomBytes(PSK_CONTEXT_SIZE) : EMPTY,
    opaqueData: start.opaqueData,
    responderVerifyData: EMPTY,
  });
  session.addTranscript(request, unverified);
  session.deriveHandshakeKeys({ psk });
  const verify = session.verifyData("response");
  session.addTranscript(verify);
  c.sessions.add(session);
  // Without PSK_FINISH the data keys follow right away, from TH2 = A ‖ PSK_EXCHANGE ‖ PSK_EXCHANGE_RSP.
  if (!withContext) x.after.push(() => establish(c, session));
  return Buffer.concat([unverified, verify]);
}

export function pskFinish(
  c: Pick<HandshakeContext, "log" | "sessions">,
  m: PskFinish,
  request: Buffer,
  x: Exchange,
): Buffer {
  const session = inSession(x);
  acceptRequesterVerifyData(c, session, request, m.requesterVerifyData, x);
  const response = encodeSpdm({
    code: "PSK_FINISH_RSP",
    version: m.version,
    opaqueData: finishOpaque(m.version),
  });
  session.addTranscript(response);
  x.after.push(() => establish(c, session));
  return response;
}

/**
 * FINISH / PSK_FINISH: the message up to RequesterVerifyData into TH, then the verify data checked
 * and added. A wrong one is ERROR DecryptError (libspdm); the handshake cannot go on after it, so
 * the session ends once that ERROR is out.
 */
function acceptRequesterVerifyData(
  { log, sessions }: Pick<HandshakeContext, "log" | "sessions">,
  session: SecureSession,
  request: Buffer,
  verifyData: Buffer,
  x: Exchange,
): void {
  session.addTranscript(request.subarray(0, request.length - verifyData.length));
  if (!session.verifyDataMatches("request", verifyData)) {
    log.warn({ sessionId: hex32(session.sessionId) }, "RequesterVerifyData does not match");
    x.after.push(() => sessions.end(session, "RequesterVerifyData does not match"));
    fail("DecryptError");
  }
  session.addTranscript(verifyData);
}

/** TH2 reached and the response that completes it sent: data keys from here on. */
function establish({ log }: Pick<HandshakeContext, "log">, session: SecureSession): void {
  session.establish();
  log.info(
    {
      sessionId: hex32(session.sessionId),
      kind: session.kind,
      heartbeatPeriod: session.heartbeatPeriod,
      securedMessageVersion: session.securedMessageVersion && versionName(session.securedMessageVersion),
    },
    "session established",
  );
}
