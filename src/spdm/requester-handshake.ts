/**
 * What the requester's two session handshakes (DSP0274 KEY_EXCHANGE/FINISH, PSK_EXCHANGE/PSK_FINISH;
 * DSP0277 for the records) share: their options and defaults, the capability and algorithm checks
 * before the first message, the secured-message version the response selects, the responder's
 * verify data, and the FINISH / PSK_FINISH that ends both. Message contents and defaults follow
 * libspdm 1e16c60f's requester and spdm_requester_emu (spdm-emu 85436d53), so DMTF's responder sees
 * what its own requester sends.
 */

import { DecodeError } from "../../protocol/errors.js";
import { decodeSecuredMessageOpaque } from "../../protocol/secured.js";
import { encodeSpdm, finishOpaque } from "../../protocol/spdm/codec.js";
import {
  AeadCipherSuite,
  AlgType,
  bitNames,
  CapabilityField,
  END_SESSION_PRESERVE_NEGOTIATED_STATE_CLEAR,
  FINISH_SIGNATURE_INCLUDED,
  KeyScheduleAlgo,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  SessionPolicy,
  versionName,
} from "../../protocol/spdm/codes.js";
import type { Finish, PskFinish } from "../../protocol/spdm/messages.js";
import { byBit, hex } from "../bits.js";
import { AEAD, type AeadAlgo, ASYM, type AsymAlgo, HASH } from "../crypto/suites.js";
import type { KeyScheduleSuite } from "./key-schedule.js";
import { DMTF_TEST_PSK, DMTF_TEST_PSK_HINT } from "./names.js";
import {
  expectResponse,
  fail,
  type Reply,
  type RequesterConnection,
  type SpdmRequester,
} from "./requester.js";
import { algStructSel } from "./requester-vca.js";
import type { SecureSession, SessionKind } from "./session.js";
import { signTranscript } from "./signing.js";

export interface SessionRequestOptions {
  kind: SessionKind;
  /** PSK_EXCHANGE: the pre-shared key and the hint naming it. */
  psk?: Uint8Array;
  pskHint?: Uint8Array;
  /** KEY_EXCHANGE / PSK_EXCHANGE Param1; default the requester's measurementSummaryHashType. */
  measurementSummaryHashType?: number;
  /** SessionPolicy (1.2+); spdm-emu sends TERMINATION_RUNTIME_UPDATE. */
  sessionPolicy?: number;
  /** ReqSessionID; libspdm 1e16c60f hands out 0xFFFF first. */
  reqSessionId?: number;
  /** DSP0277 versions offered (SecuredMessageVersion); libspdm 1e16c60f offers 1.0–1.2. */
  securedMessageVersions?: readonly number[];
  /** END_SESSION Param1; spdm-emu sends PRESERVE_NEGOTIATED_STATE_CLEAR. */
  endSessionAttributes?: number;
  /** PSK_EXCHANGE RequesterContext size; libspdm 1e16c60f's LIBSPDM_PSK_CONTEXT_LENGTH is 64. */
  pskContextSize?: number;
  /** Also have the responder update its key through encapsulation (spdm-emu's `--key_upd RSP`). */
  responderKeyUpdate?: boolean;
}

/** The session options over SESSION_DEFAULTS. */
export type SessionOptions = Required<Omit<SessionRequestOptions, "measurementSummaryHashType">> &
  Pick<SessionRequestOptions, "measurementSummaryHashType">;

export const SESSION_DEFAULTS: Omit<SessionOptions, "kind" | "measurementSummaryHashType"> = {
  psk: DMTF_TEST_PSK,
  pskHint: DMTF_TEST_PSK_HINT,
  sessionPolicy: SessionPolicy.TERMINATION_RUNTIME_UPDATE,
  reqSessionId: 0xffff,
  securedMessageVersions: [0x10, 0x11, 0x12],
  endSessionAttributes: END_SESSION_PRESERVE_NEGOTIATED_STATE_CLEAR,
  pskContextSize: 64,
  responderKeyUpdate: false,
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
  mutualAuth?: { slot: number; reqAsym: string; encapsulated?: string[] };
}

/** Where a handshake leaves its session as soon as it exists, so that a failure can end it. */
export type Holder = { session?: SecureSession };

/** KEY_EXCHANGE/FINISH or PSK_EXCHANGE[/PSK_FINISH] on a connection that has sessionSuite's `suite`. */
export type Handshake = (
  r: SpdmRequester,
  c: RequesterConnection,
  o: SessionOptions,
  suite: KeyScheduleSuite,
  held: Holder,
) => Promise<OpenedSession>;

/** Capabilities both sides need for a kind of session, as libspdm 1e16c60f checks before sending. */
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

/** Whether we sent the requester capability and the responder has the responder one. */
export const both = (c: RequesterConnection, requester: number, responder: number) =>
  (c.requesterFlags & requester) !== 0 && (c.responderFlags & responder) !== 0;
/** The algorithm ALGORITHMS selected in its struct table of type `type` (0 for none). */
export const selection = (c: RequesterConnection, type: number) =>
  algStructSel(c.algorithms.algStructs, type);

/** The session's key-schedule suite, or a failure naming what is missing. */
export function sessionSuite(c: RequesterConnection, kind: SessionKind): KeyScheduleSuite {
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
export function selectedVersion(
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
export function acceptVerifyData(s: SecureSession, received: Buffer, what: string, hint = ""): void {
  if (!s.verifyDataMatches("response", received))
    fail("session", `${what} does not match the HMAC over TH${hint}`);
  s.addTranscript(received);
}

export function checkHeartbeat(c: RequesterConnection, reply: Reply, period: number): void {
  if (period !== 0 && !both(c, Req.HBEAT_CAP, Rsp.HBEAT_CAP))
    fail(
      "session",
      `${reply.message.code} asks for a heartbeat every ${period} s without HBEAT_CAP on both sides`,
    );
}

/** What KEY_EXCHANGE_RSP's mutual authentication request needs from us. */
export interface MutualAuth {
  /** ReqSlotIDParam, FINISH's Param2. */
  slot: number;
  /** Our SPDM cert chain with the negotiated hash; its hash joins TH after KEY_EXCHANGE_RSP. */
  chain: Buffer;
  suite: { version: number; hash: RequesterConnection["suite"]["hash"]; asym: AsymAlgo };
  key: NonNullable<RequesterConnection["requesterIdentity"]>["privateKey"];
}

/**
 * FINISH or PSK_FINISH: its header into TH, RequesterVerifyData = HMAC over TH, sent under the
 * handshake keys (or in the clear); then FINISH_RSP's verify data when in the clear; data keys.
 */
export async function finish(
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
          opaqueData: finishOpaque(c.version),
          signature: Buffer.alloc(mutual ? ASYM[mutual.suite.asym].sigSize : 0),
          requesterVerifyData: Buffer.alloc(H),
        }
      : {
          code,
          version: c.version,
          opaqueData: finishOpaque(c.version),
          requesterVerifyData: Buffer.alloc(H),
        };
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
