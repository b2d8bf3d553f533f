/**
 * Secure sessions from the requester side (PROTOCOL-FACTS 3.11–3.14, 4, 5), on a negotiated
 * SpdmRequester: KEY_EXCHANGE/FINISH (ECDHE, the responder's signature over TH1 and its verify
 * data; mutual authentication without encapsulation when the responder asks for it and we hold a
 * requester chain and key) or PSK_EXCHANGE/PSK_FINISH open a SecureSession; requests then go
 * through it with `requester.inSession`. Message contents and defaults follow libspdm's requester
 * and spdm_requester_emu (spdm-emu 85436d53), so DMTF's responder sees what its own requester sends.
 *
 * `runSession` is the `doe-emu requester --session` flow: open, GET_DIGESTS/GET_CERTIFICATE and the
 * measurements in the session, KEY_UPDATE UpdateKey and UpdateAllKeys (each with VerifyNewKey),
 * HEARTBEAT, END_SESSION. Failures are SpdmRequesterError, like the rest of the requester.
 */
import { DecodeError } from "../../protocol/errors.js";
import { decodeSecuredMessageOpaque, encodeSupportedVersions } from "../../protocol/secured.js";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  AeadCipherSuite,
  AlgType,
  bitNames,
  CapabilityField,
  DheNamedGroup,
  END_SESSION_PRESERVE_NEGOTIATED_STATE_CLEAR,
  FINISH_SIGNATURE_INCLUDED,
  KeyScheduleAlgo,
  KeyUpdateOperation,
  MeasurementSummaryHashType,
  MutAuthRequested,
  nameOf,
  RANDOM_DATA_SIZE,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  SessionPolicy,
  versionName,
} from "../../protocol/spdm/codes.js";
import type { Finish, PskFinish } from "../../protocol/spdm/messages.js";
import { encodeCertChain } from "../crypto/cert-chain.js";
import {
  AEAD,
  type AeadAlgo,
  ASYM,
  type AsymAlgo,
  DHE,
  type DheAlgo,
  dheKeyPair,
  HASH,
  hash,
  keyFits,
} from "../crypto/suites.js";
import type { KeyScheduleSuite } from "./key-schedule.js";
import {
  expectResponse,
  fail,
  type Reply,
  type RequesterConnection,
  type RequesterSummary,
  type SpdmRequester,
} from "./requester.js";
import { SecureSession, type SessionKind, sessionTranscriptPrefix } from "./session.js";
import { signTranscript, verifyTranscript } from "./signing.js";

/** libspdm's sample PSK and hint (LIBSPDM_TEST_PSK_DATA_STRING / _HINT_STRING, NUL included). */
export const DMTF_TEST_PSK = Buffer.from("TestPskData\0", "latin1");
export const DMTF_TEST_PSK_HINT = Buffer.from("TestPskHint\0", "latin1");

export interface SessionRequestOptions {
  kind: SessionKind;
  /** PSK_EXCHANGE: the pre-shared key and the hint naming it. */
  psk?: Uint8Array;
  pskHint?: Uint8Array;
  /** KEY_EXCHANGE / PSK_EXCHANGE Param1; default the requester's measurementSummaryHashType. */
  measurementSummaryHashType?: number;
  /** SessionPolicy (1.2+); spdm-emu sends TERMINATION_RUNTIME_UPDATE. */
  sessionPolicy?: number;
  /** ReqSessionID; libspdm hands out 0xFFFF first. */
  reqSessionId?: number;
  /** DSP0277 versions offered (SecuredMessageVersion); libspdm offers 1.0–1.2. */
  securedMessageVersions?: readonly number[];
  /** END_SESSION Param1; spdm-emu sends PRESERVE_NEGOTIATED_STATE_CLEAR. */
  endSessionAttributes?: number;
  /** PSK_EXCHANGE RequesterContext size; libspdm's LIBSPDM_PSK_CONTEXT_LENGTH is 64. */
  pskContextSize?: number;
}

type Options = Required<Omit<SessionRequestOptions, "measurementSummaryHashType">> &
  Pick<SessionRequestOptions, "measurementSummaryHashType">;

export const SESSION_DEFAULTS: Omit<Options, "kind" | "measurementSummaryHashType"> = {
  psk: DMTF_TEST_PSK,
  pskHint: DMTF_TEST_PSK_HINT,
  sessionPolicy: SessionPolicy.TERMINATION_RUNTIME_UPDATE,
  reqSessionId: 0xffff,
  securedMessageVersions: [0x10, 0x11, 0x12],
  endSessionAttributes: END_SESSION_PRESERVE_NEGOTIATED_STATE_CLEAR,
  pskContextSize: 64,
};

/** An established session with what its handshake said. */
export interface OpenedSession {
  session: SecureSession;
  /** MeasurementSummaryHashType asked for, and the hash KEY_EXCHANGE_RSP / PSK_EXCHANGE_RSP carried (empty for none). */
  measurementSummaryHashType: number;
  measurementSummaryHash: Buffer;
  /** PSK: whether PSK_FINISH was needed (the responder keeps a context: PSK_CAP 10b). */
  pskFinish?: boolean;
  /** KEY_EX: the requester signed FINISH (mutual authentication) with this slot and algorithm. */
  mutualAuth?: { slot: number; reqAsym: string };
}

export interface SessionSummary {
  kind: SessionKind;
  sessionId: string;
  securedMessageVersion: string;
  /** KEY_EX: "in the clear" when both set HANDSHAKE_IN_THE_CLEAR, else FINISH went under handshake keys. */
  handshake: "in the clear" | "encrypted";
  dhe?: string;
  aead: string;
  heartbeatPeriod: number;
  pskFinish?: boolean;
  /** KEY_EX with mutual authentication: the slot and ReqBaseAsymAlg FINISH was signed with. */
  mutualAuth?: { slot: number; reqAsym: string };
  measurementSummaryHash: { type: string; value?: string; checked: boolean };
  /** The in-session steps done, in order, and those skipped with the reason. */
  steps: string[];
  skipped: string[];
  measurements: RequesterSummary["measurements"];
  /** Records sent and answered in the session (FINISH in the clear is not one). */
  securedRoundTrips: number;
  timingsMs: { handshake: number; inSession: number; total: number };
}

/** Capabilities both sides need for a kind of session, as libspdm checks before sending. */
const NEEDS: Record<SessionKind, readonly (readonly [name: string, requester: number, responder: number])[]> =
  {
    KEY_EX: [
      ["KEY_EX_CAP", Req.KEY_EX_CAP, Rsp.KEY_EX_CAP],
      ["ENCRYPT_CAP", Req.ENCRYPT_CAP, Rsp.ENCRYPT_CAP],
      ["MAC_CAP", Req.MAC_CAP, Rsp.MAC_CAP],
    ],
    PSK: [
      ["PSK_CAP", Req.PSK_CAP, CapabilityField.PSK_CAP],
      ["ENCRYPT_CAP", Req.ENCRYPT_CAP, Rsp.ENCRYPT_CAP],
      ["MAC_CAP", Req.MAC_CAP, Rsp.MAC_CAP],
    ],
  };

const both = (c: RequesterConnection, requester: number, responder: number) =>
  (c.requesterFlags & requester) !== 0 && (c.responderFlags & responder) !== 0;
const selection = (c: RequesterConnection, type: number) =>
  c.algorithms.algStructs.find((t) => t.algType === type)?.algSupported ?? 0;
const byBit = <T extends Record<string, { bit: number }>>(table: T, bit: number) =>
  (Object.keys(table) as (keyof T & string)[]).find((k) => table[k]!.bit === bit);
const hex = (n: number) => `0x${n.toString(16)}`;

/** The session's key-schedule suite, or a failure naming what is missing. */
function sessionSuite(c: RequesterConnection, kind: SessionKind): KeyScheduleSuite {
  if (c.version < 0x11) fail("session", `SPDM ${versionName(c.version)} has no sessions (1.1+)`);
  for (const [name, requester, responder] of NEEDS[kind]) {
    if (!both(c, requester, responder))
      fail(
        "session",
        `${kind} session needs ${name} on both sides (requester ${hex(c.requesterFlags)}, responder ${hex(c.responderFlags)})`,
      );
  }
  const aeadBit = selection(c, AlgType.AEAD);
  const aead = byBit(AEAD, aeadBit) as AeadAlgo | undefined;
  if (!aead)
    fail(
      "negotiation",
      `ALGORITHMS selected AEAD ${bitNames(AeadCipherSuite, aeadBit).join("") || "none"}; sessions need AES_128_GCM, AES_256_GCM or CHACHA20_POLY1305`,
    );
  if (selection(c, AlgType.KEY_SCHEDULE) !== KeyScheduleAlgo.SPDM)
    fail("negotiation", "ALGORITHMS selected no SPDM key schedule");
  return { version: c.version, hash: c.suite.hash, aead };
}

/** The DSP0277 version the response's opaque data selects; it must be one we offered. */
function selectedVersion(
  c: RequesterConnection,
  reply: Reply,
  opaque: Buffer,
  offered: readonly number[],
): number {
  const what = `${reply.message.code} OpaqueData`;
  let selected: number | undefined;
  try {
    selected = decodeSecuredMessageOpaque(c.version, opaque).selected;
  } catch (e) {
    if (e instanceof DecodeError) fail("malformed", `${what}: ${e.message}`, e);
    throw e;
  }
  if (selected === undefined) fail("session", `${what} selects no secured-message version`);
  if (!offered.includes(selected))
    fail(
      "session",
      `${what} selects secured-message version ${versionName(selected)}, we offered ${offered.map(versionName).join(", ")}`,
    );
  return selected;
}

/** Checks a received verify data against TH so far, then puts it into TH. */
function acceptVerifyData(s: SecureSession, received: Buffer, what: string, hint = ""): void {
  if (!s.verifyDataMatches("response", received))
    fail("session", `${what} does not match the HMAC over TH${hint}`);
  s.addTranscript(received);
}

function checkHeartbeat(c: RequesterConnection, reply: Reply, period: number): void {
  if (period !== 0 && !both(c, Req.HBEAT_CAP, Rsp.HBEAT_CAP))
    fail(
      "session",
      `${reply.message.code} asks for a heartbeat every ${period} s without HBEAT_CAP on both sides`,
    );
}

/**
 * FINISH or PSK_FINISH: its header into TH, RequesterVerifyData = HMAC over TH, sent under the
 * handshake keys (or in the clear); then FINISH_RSP's verify data when in the clear; data keys.
 */
async function finish(
  r: SpdmRequester,
  c: RequesterConnection,
  s: SecureSession,
  code: "FINISH" | "PSK_FINISH",
  mutual?: MutualAuth,
) {
  const H = HASH[c.suite.hash].size;
  const message: Finish | PskFinish =
    code === "FINISH"
      ? {
          code,
          version: c.version,
          attributes: mutual ? FINISH_SIGNATURE_INCLUDED : 0,
          reqSlotId: mutual?.slot ?? 0,
          signature: Buffer.alloc(mutual ? ASYM[mutual.suite.asym].sigSize : 0),
          requesterVerifyData: Buffer.alloc(H),
        }
      : { code, version: c.version, requesterVerifyData: Buffer.alloc(H) };
  const signature = "signature" in message ? message.signature : Buffer.alloc(0);
  s.addTranscript(encodeSpdm(message).subarray(0, -H - signature.length));
  // Mutual authentication: the requester signs TH up to here (the FINISH header), and the signature joins TH.
  if (mutual && "signature" in message) {
    message.signature = signTranscript(mutual.suite, mutual.key, "FINISH", s.transcript);
    s.addTranscript(message.signature);
  }
  message.requesterVerifyData = s.verifyData("request");
  s.addTranscript(message.requesterVerifyData);
  const send = () => r.exchange(message);
  const reply = s.handshakeInTheClear ? await send() : await r.inSession(s, send);
  const rsp = expectResponse(reply, code === "FINISH" ? "FINISH_RSP" : "PSK_FINISH_RSP");
  const verify = "responderVerifyData" in rsp ? rsp.responderVerifyData : Buffer.alloc(0);
  s.addTranscript(reply.bytes.subarray(0, reply.bytes.length - verify.length));
  if (verify.length > 0) acceptVerifyData(s, verify, "FINISH_RSP ResponderVerifyData");
  s.establish();
}

/** What KEY_EXCHANGE_RSP's mutual authentication request needs from us. */
interface MutualAuth {
  /** ReqSlotIDParam, FINISH's Param2. */
  slot: number;
  /** Our SPDM cert chain with the negotiated hash; its hash joins TH after KEY_EXCHANGE_RSP. */
  chain: Buffer;
  suite: { version: number; hash: RequesterConnection["suite"]["hash"]; asym: AsymAlgo };
  key: NonNullable<RequesterConnection["requesterIdentity"]>["privateKey"];
}

/**
 * MutAuthRequested of KEY_EXCHANGE_RSP checked as libspdm's requester does: none, or bit 0 alone
 * (the requester signs FINISH) with MUT_AUTH_CAP on both sides and a slot 0–7; the encapsulated
 * flows (bits 1, 2) are not implemented.
 */
function mutualAuthRequest(c: RequesterConnection, requested: number, slotParam: number) {
  const what = `KEY_EXCHANGE_RSP MutAuthRequested ${hex(requested)}`;
  if ((requested & 0x7) === 0) return undefined;
  if ((requested & (MutAuthRequested.WITH_ENCAP_REQUEST | MutAuthRequested.WITH_GET_DIGESTS)) !== 0)
    fail("session", `${what}: encapsulated mutual authentication is not supported`);
  const id = c.requesterIdentity;
  if (!id)
    fail(
      "session",
      `${what} asks for mutual authentication; give the requester certificate chain and key (--req-cert-chain, --req-key)`,
    );
  if (!both(c, Req.MUT_AUTH_CAP, Rsp.MUT_AUTH_CAP))
    fail("session", `${what} asks for mutual authentication without MUT_AUTH_CAP on both sides`);
  const slot = slotParam & 0xf;
  if (slot > 7) fail("session", `${what} names requester slot ${slot}`);
  const bit = selection(c, AlgType.REQ_BASE_ASYM_ALG);
  const asym = byBit(ASYM, bit) as AsymAlgo | undefined;
  if (!asym || !keyFits(asym, id.privateKey))
    fail(
      "negotiation",
      `ALGORITHMS ReqBaseAsymAlg ${hex(bit)} is not an algorithm the requester key signs with`,
    );
  return {
    slot,
    chain: encodeCertChain(c.suite.hash, id.certsDer),
    suite: { version: c.version, hash: c.suite.hash, asym },
    key: id.privateKey,
  } satisfies MutualAuth;
}

/** Where an opening function leaves its session as soon as it exists, so a failure can end it. */
type Holder = { session?: SecureSession };

async function keyExchange(
  r: SpdmRequester,
  c: RequesterConnection,
  o: Options,
  suite: KeyScheduleSuite,
  held: Holder,
) {
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
  if (mutual) session.addTranscript(hash(c.suite.hash, mutual.chain));
  await finish(r, c, session, "FINISH", mutual);
  return {
    session,
    measurementSummaryHashType: type,
    measurementSummaryHash: kr.measurementSummaryHash,
    mutualAuth: mutual && { slot: mutual.slot, reqAsym: mutual.suite.asym },
  };
}

async function pskExchange(
  r: SpdmRequester,
  c: RequesterConnection,
  o: Options,
  suite: KeyScheduleSuite,
  held: Holder,
) {
  const H = HASH[c.suite.hash].size;
  const type = o.measurementSummaryHashType ?? c.measurementSummaryHashType;
  const reply = await r.exchange(
    {
      code: "PSK_EXCHANGE",
      version: c.version,
      measurementSummaryHashType: type,
      sessionPolicy: c.version >= 0x12 ? o.sessionPolicy : 0,
      reqSessionId: o.reqSessionId,
      pskHint: Buffer.from(o.pskHint),
      requesterContext: c.random(o.pskContextSize),
      opaqueData: encodeSupportedVersions(c.version, o.securedMessageVersions),
    },
    { measurementSummaryHashType: type },
  );
  const pr = expectResponse(reply, "PSK_EXCHANGE_RSP");
  checkHeartbeat(c, reply, pr.heartbeatPeriod);
  // PSK_CAP 10b: the responder keeps a context, which PSK_FINISH then confirms; 01b: neither.
  const withContext = (c.responderFlags & CapabilityField.PSK_CAP) === Rsp.PSK_CAP_RESPONDER_WITH_CONTEXT;
  if (withContext !== pr.responderContext.length > 0)
    fail(
      "session",
      `PSK_EXCHANGE_RSP carries a ${pr.responderContext.length}-byte ResponderContext, but PSK_CAP says ${withContext ? "it keeps one" : "none"}`,
    );
  const session = new SecureSession({
    role: "requester",
    kind: "PSK",
    suite,
    reqSessionId: o.reqSessionId,
    rspSessionId: pr.rspSessionId,
    transcriptPrefix: sessionTranscriptPrefix(suite, { vca: c.vca }),
    heartbeatPeriod: pr.heartbeatPeriod,
    securedMessageVersion: selectedVersion(c, reply, pr.opaqueData, o.securedMessageVersions),
  });
  held.session = session;
  session.addTranscript(reply.requestBytes, reply.bytes.subarray(0, -H));
  session.deriveHandshakeKeys({ psk: o.psk });
  acceptVerifyData(
    session,
    pr.responderVerifyData,
    "PSK_EXCHANGE_RSP ResponderVerifyData",
    " (a different PSK?)",
  );
  if (withContext) await finish(r, c, session, "PSK_FINISH");
  else session.establish();
  return {
    session,
    measurementSummaryHashType: type,
    measurementSummaryHash: pr.measurementSummaryHash,
    pskFinish: withContext,
  };
}

/** KEY_EXCHANGE/FINISH or PSK_EXCHANGE[/PSK_FINISH] on a negotiated requester; resolves established. */
export async function openSession(r: SpdmRequester, options: SessionRequestOptions): Promise<OpenedSession> {
  const o: Options = { ...SESSION_DEFAULTS, ...definedOnly(options), kind: options.kind };
  const c = r.connection;
  const suite = sessionSuite(c, o.kind);
  const open = o.kind === "KEY_EX" ? keyExchange : pskExchange;
  const held: Holder = {};
  try {
    return await open(r, c, o, suite, held);
  } catch (e) {
    // A half-open session is of no use to anyone: end it, which wipes its keys.
    held.session?.end(`handshake failed: ${(e as Error).message}`);
    throw e;
  }
}

export async function heartbeat(r: SpdmRequester, s: SecureSession): Promise<void> {
  const reply = await r.inSession(s, () => r.exchange({ code: "HEARTBEAT", version: r.connection.version }));
  expectResponse(reply, "HEARTBEAT_ACK");
}

/** KEY_UPDATE `operation` (UpdateKey or UpdateAllKeys) and then VerifyNewKey, each ACK checked. */
export async function keyUpdate(r: SpdmRequester, s: SecureSession, operation: number): Promise<void> {
  const c = r.connection;
  for (const op of [operation, KeyUpdateOperation.VerifyNewKey]) {
    const tag = c.random(1)[0]!;
    const reply = await r.inSession(s, () =>
      r.exchange({ code: "KEY_UPDATE", version: c.version, operation: op, tag }),
    );
    const ack = expectResponse(reply, "KEY_UPDATE_ACK");
    if (ack.operation !== op || ack.tag !== tag)
      fail(
        "session",
        `KEY_UPDATE_ACK echoes operation ${ack.operation} tag ${hex(ack.tag)}, we sent ${op} tag ${hex(tag)}`,
      );
  }
}

export async function endSession(r: SpdmRequester, s: SecureSession, attributes: number): Promise<void> {
  const reply = await r.inSession(s, () =>
    r.exchange({ code: "END_SESSION", version: r.connection.version, attributes }),
  );
  expectResponse(reply, "END_SESSION_ACK");
  s.end("END_SESSION");
}

/** One in-session step of runSession: its label and when it is skipped. */
interface Step {
  label: string;
  skip: (c: RequesterConnection) => string | undefined;
  run: (r: SpdmRequester, s: SecureSession) => Promise<unknown>;
}

const needsBoth = (cap: string, requester: number, responder: number) => (c: RequesterConnection) =>
  both(c, requester, responder) ? undefined : `${cap} is not set on both sides`;

/** The flow of runSession after the handshake (measurements are separate: they feed the summary). */
const LATER_STEPS: readonly Step[] = [
  ...[KeyUpdateOperation.UpdateKey, KeyUpdateOperation.UpdateAllKeys].map((op) => ({
    label: `KEY_UPDATE ${nameOf(KeyUpdateOperation, op)}+VerifyNewKey`,
    skip: needsBoth("KEY_UPD_CAP", Req.KEY_UPD_CAP, Rsp.KEY_UPD_CAP),
    run: (r: SpdmRequester, s: SecureSession) => keyUpdate(r, s, op),
  })),
  {
    label: "HEARTBEAT",
    skip: needsBoth("HBEAT_CAP", Req.HBEAT_CAP, Rsp.HBEAT_CAP),
    run: heartbeat,
  },
];

/**
 * `doe-emu requester --session`: open the session, then inside it GET_DIGESTS + GET_CERTIFICATE
 * (when the responder has CERT_CAP), the measurements (their summary hash checked against the
 * handshake's), both key updates, a heartbeat, END_SESSION.
 */
export async function runSession(r: SpdmRequester, options: SessionRequestOptions): Promise<SessionSummary> {
  const t0 = performance.now();
  const before = r.counts.secured;
  const opened = await openSession(r, options);
  const s = opened.session;
  const t1 = performance.now();
  const c = r.connection;
  const steps: string[] = [];
  const skipped: string[] = [];
  let measurements: RequesterSummary["measurements"];
  try {
    if (c.responderFlags & Rsp.CERT_CAP) {
      await r.inSession(s, async () => {
        await r.getDigests();
        await r.getCertificateChain(c.slotId);
      });
      steps.push("GET_DIGESTS", "GET_CERTIFICATE");
    } else skipped.push("GET_DIGESTS/GET_CERTIFICATE: the responder has no CERT_CAP");
    measurements = await r.inSession(s, () => r.getMeasurements());
    if (measurements.mode !== "NONE") steps.push("GET_MEASUREMENTS");
    for (const step of LATER_STEPS) {
      const why = step.skip(c);
      if (why) skipped.push(`${step.label}: ${why}`);
      else {
        await step.run(r, s);
        steps.push(step.label);
      }
    }
  } catch (e) {
    s.end(`failed: ${(e as Error).message}`);
    throw e;
  }
  const match = r.summaryHashMatches(opened.measurementSummaryHash, opened.measurementSummaryHashType);
  if (match === false)
    fail(
      "measurements",
      `the session's MeasurementSummaryHash is not the hash of the measurement blocks read in it`,
    );
  await endSession(r, s, options.endSessionAttributes ?? SESSION_DEFAULTS.endSessionAttributes);
  steps.push("END_SESSION");
  const t2 = performance.now();
  const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
  const type = opened.measurementSummaryHashType;
  return {
    kind: s.kind,
    sessionId: `0x${s.sessionId.toString(16).padStart(8, "0")}`,
    securedMessageVersion: versionName(s.securedMessageVersion ?? 0),
    handshake: s.kind === "KEY_EX" && s.handshakeInTheClear ? "in the clear" : "encrypted",
    dhe: s.kind === "KEY_EX" ? bitNames(DheNamedGroup, selection(c, AlgType.DHE)).join("") : undefined,
    aead: bitNames(AeadCipherSuite, selection(c, AlgType.AEAD)).join(""),
    heartbeatPeriod: s.heartbeatPeriod,
    pskFinish: opened.pskFinish,
    mutualAuth: opened.mutualAuth,
    measurementSummaryHash: {
      type: nameOf(MeasurementSummaryHashType, type) ?? hex(type),
      value: opened.measurementSummaryHash.length ? opened.measurementSummaryHash.toString("hex") : undefined,
      checked: match === true,
    },
    steps,
    skipped,
    measurements,
    securedRoundTrips: r.counts.secured - before,
    timingsMs: { handshake: ms(t0, t1), inSession: ms(t1, t2), total: ms(t0, t2) },
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
