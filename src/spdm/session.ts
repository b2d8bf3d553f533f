/**
 * One SPDM secure session (DSP0274 KEY_EXCHANGE / PSK_EXCHANGE, DSP0277 records), the same object
 * for both roles. It owns everything a session is: its ID, its state (one lifecycle table), the TH
 * transcript, the handshake and data keys of each direction with their sequence numbers, record
 * seal/open, KEY_UPDATE (one rule table), the heartbeat period and the per-session M log.
 *
 * What it deliberately does not do: build or parse SPDM messages, verify signatures, or talk to a
 * transport. The role's code does that and tells the session what happened, at the points both
 * roles share (DSP0274 §12 transcripts and keys, DSP0277 records, DSP0274 KEY_UPDATE):
 *
 *   KEY_EX: new SecureSession({transcriptPrefix: A ‖ [D] ‖ Hash(CT)}) → addTranscript(KE, KR up to
 *           and including the signature) → deriveHandshakeKeys({dheSecret}) → [ResponderVerifyData
 *           = verifyData("response"), addTranscript it] → addTranscript(FINISH header) →
 *           verifyData("request") → addTranscript(it) → FINISH record (handshake keys, unless in the
 *           clear) → addTranscript(FINISH_RSP [+ verify data in the clear]) → establish().
 *           Mutual authentication (no encapsulation): after KEY_EXCHANGE_RSP, addTranscript(Hash(the
 *           requester's SPDM cert chain)); the FINISH header is signed over TH, and the signature
 *           goes into TH before RequesterVerifyData.
 *   PSK:    prefix A → addTranscript(PSK_EXCHANGE, PSK_EXCHANGE_RSP without verify data) →
 *           deriveHandshakeKeys({psk}) → … → PSK_FINISH/PSK_FINISH_RSP as FINISH → establish();
 *           without a responder context there is no PSK_FINISH: establish() right away.
 *   KEY_UPDATE: the request is sealed/opened with the old keys; then both roles call
 *           keyUpdate(op) before the ACK is sealed/opened; an ERROR instead of the ACK → the
 *           requester calls abandonKeyUpdate(). A KEY_UPDATE the responder sends (encapsulated)
 *           is keyUpdate(op, "responder"): its UpdateKey replaces the response key instead.
 *
 * Failures are SessionError with a `kind`. A record that does not authenticate (tampered, replayed,
 * reordered — over DOE the sequence number is implicit, so a wrong one is an authentication
 * failure) ends the session, as DSP0277 requires; a record for another session ID does not.
 */

import { timingSafeEqual } from "node:crypto";
import { composeSessionId, decodeSecuredRecord } from "../../protocol/secured.js";
import { KeyUpdateOperation, nameOf } from "../../protocol/spdm/codes.js";
import { hex32 } from "../bits.js";
import { AEAD, type AeadAlgo, hash } from "../crypto/suites.js";
import {
  type Direction,
  deriveDataKeys,
  deriveHandshakeKeys,
  type HandshakeKeys,
  type KeyScheduleSuite,
  type SessionSecretInput,
  type TrafficKeys,
  updateTrafficKeys,
  verifyData,
} from "./key-schedule.js";
import { AuthError, decryptRecord, encryptRecord } from "./secured-record.js";
import type { MeasurementLog } from "./transcript.js";

export type SessionRole = "requester" | "responder";
export type SessionKind = "KEY_EX" | "PSK";
export type SessionState = "handshaking" | "established" | "ended";
/** Told each session's secret when the session is established (`--keylog`, keylog.ts). */
export type KeyLog = (sessionId: number, input: SessionSecretInput) => void;

export type SessionErrorKind =
  /** The operation is not allowed in the session's state. */
  | "state"
  /** The record did not authenticate (tag, ciphertext, AAD, key or sequence number); the session ended. */
  | "auth"
  /** The record carries another session's ID; this session is untouched. */
  | "session-id"
  /** The record is not a well-formed DSP0277 record; the session ended. */
  | "malformed"
  /** A sequence number would exceed the limit; the session ended (DSP0277 forbids reusing one). */
  | "sequence"
  /** KEY_UPDATE out of order: Update* while one awaits VerifyNewKey, VerifyNewKey without one, unknown op. */
  | "key-update";

export class SessionError extends Error {
  override readonly name = "SessionError";
  constructor(
    readonly kind: SessionErrorKind,
    readonly sessionId: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`session ${hex32(sessionId)}: ${message}`, options);
  }
}

/** The direction each role sends with; it receives with the other. */
const SENDS: Record<SessionRole, Direction> = { requester: "request", responder: "response" };
const RECEIVES: Record<SessionRole, Direction> = { requester: "response", responder: "request" };

/**
 * The lifecycle: which states each operation is allowed in and the state it leads to (none =
 * unchanged). Handshake keys exist only between deriveHandshakeKeys and establish, which `record`
 * checks separately.
 */
const LIFECYCLE = {
  transcript: { from: ["handshaking"] },
  deriveHandshakeKeys: { from: ["handshaking"] },
  verifyData: { from: ["handshaking"] },
  establish: { from: ["handshaking"], to: "established" },
  record: { from: ["handshaking", "established"] },
  keyUpdate: { from: ["established"] },
  end: { from: ["handshaking", "established", "ended"], to: "ended" },
} as const satisfies Record<string, { from: readonly SessionState[]; to?: SessionState }>;
type Operation = keyof typeof LIFECYCLE;

/**
 * KEY_UPDATE (DSP0274 KEY_UPDATE/KEY_UPDATE_ACK): the directions whose key each operation replaces,
 * applied by both roles between the request and its ACK. The request therefore always travels under
 * the old request key, and the ACK under the response key *after* the update: the new one for
 * UpdateAllKeys, the unchanged one for UpdateKey. Replaced keys stay as backups until VerifyNewKey
 * (`verifies`), so a peer that never saw the update can still be understood.
 */
const KEY_UPDATE_RULES: Readonly<Record<number, { update: readonly Direction[]; verifies: boolean }>> = {
  [KeyUpdateOperation.UpdateKey]: { update: ["request"], verifies: false },
  [KeyUpdateOperation.UpdateAllKeys]: { update: ["request", "response"], verifies: false },
  [KeyUpdateOperation.VerifyNewKey]: { update: [], verifies: true },
};

/**
 * KEY_UPDATE the responder sends through encapsulation: UpdateKey replaces the response key, and
 * both roles switch right away (libspdm: the requester on the request, the responder as it builds
 * VerifyNewKey, whose ACK is the first record under the new key).
 */
const RESPONDER_KEY_UPDATE_RULES: typeof KEY_UPDATE_RULES = {
  ...KEY_UPDATE_RULES,
  [KeyUpdateOperation.UpdateKey]: { update: ["response"], verifies: false },
};

/** DSP0277 sequence numbers are u64; libspdm 1e16c60f's default limit is the largest. */
const SEQ_LIMIT_DEFAULT = (1n << 64n) - 1n;

interface DirectionState {
  keys: TrafficKeys;
  /** Sequence number of the next record under `keys`. */
  seq: bigint;
  /** The keys replaced by a KEY_UPDATE not yet verified, with their sequence number. */
  backup?: { keys: TrafficKeys; seq: bigint };
}

export interface SecureSessionOptions {
  role: SessionRole;
  kind: SessionKind;
  /** Negotiated SPDM version, BaseHash and AEAD. */
  suite: KeyScheduleSuite;
  /** PSK: the hint PSK_EXCHANGE named the key by (what a device may tell sessions apart by). */
  pskHint?: Buffer;
  reqSessionId: number;
  rspSessionId: number;
  /** Where TH starts (sessionTranscriptPrefix). */
  transcriptPrefix: Uint8Array;
  /** HANDSHAKE_IN_THE_CLEAR set on both sides (KEY_EX): FINISH/FINISH_RSP travel as plain SPDM. */
  handshakeInTheClear?: boolean;
  /**
   * KEY_EXCHANGE_RSP asked for mutual authentication without encapsulation (MutAuthRequested bit 0):
   * the role puts Hash(requester cert chain) into TH after KEY_EXCHANGE_RSP, and FINISH is signed.
   */
  mutualAuth?: boolean;
  /** KEY_EXCHANGE_RSP / PSK_EXCHANGE_RSP Param1, seconds; 0 = no heartbeat. */
  heartbeatPeriod?: number;
  /** DSP0277 version selected in the opaque data (SecuredMessageVersion), for reports. */
  securedMessageVersion?: number;
  /** Highest sequence number a key may use (tests lower it). */
  maxSequenceNumber?: bigint;
  /** Clock for the heartbeat, ms. */
  now?: () => number;
  keyLog?: KeyLog;
}

export class SecureSession {
  readonly role: SessionRole;
  readonly kind: SessionKind;
  readonly suite: KeyScheduleSuite;
  readonly reqSessionId: number;
  readonly rspSessionId: number;
  readonly sessionId: number;
  readonly handshakeInTheClear: boolean;
  readonly mutualAuth: boolean;
  readonly heartbeatPeriod: number;
  readonly securedMessageVersion: number | undefined;
  readonly pskHint: Buffer | undefined;
  /** This session's GET_MEASUREMENTS log (libspdm keeps M per session). */
  readonly measurementLog: MeasurementLog = [];
  /** Why the session ended, once it has. */
  endReason?: string;

  private currentState: SessionState = "handshaking";
  private th: Buffer[];
  private handshake?: HandshakeKeys;
  private dirs?: Record<Direction, DirectionState>;
  private pendingUpdate?: number;
  private exportMaster?: Buffer;
  private readonly maxSeq: bigint;
  private readonly now: () => number;
  private lastActivity: number;
  private readonly keyLog: KeyLog | undefined;
  /** A copy of the DHE secret or PSK, kept from TH1 to establish() only when there is a key log. */
  private loggedSecret?: SessionSecretInput;

  constructor(o: SecureSessionOptions) {
    if (!(o.suite.aead in AEAD)) throw new RangeError(`AEAD ${o.suite.aead} is not supported`);
    this.role = o.role;
    this.kind = o.kind;
    this.suite = o.suite;
    this.reqSessionId = o.reqSessionId;
    this.rspSessionId = o.rspSessionId;
    this.sessionId = composeSessionId(o.reqSessionId, o.rspSessionId);
    this.handshakeInTheClear = o.kind === "KEY_EX" && (o.handshakeInTheClear ?? false);
    this.mutualAuth = o.kind === "KEY_EX" && (o.mutualAuth ?? false);
    this.heartbeatPeriod = o.heartbeatPeriod ?? 0;
    this.securedMessageVersion = o.securedMessageVersion;
    this.pskHint = o.kind === "PSK" ? o.pskHint : undefined;
    this.th = [Buffer.from(o.transcriptPrefix)];
    this.maxSeq = o.maxSequenceNumber ?? SEQ_LIMIT_DEFAULT;
    this.now = o.now ?? Date.now;
    this.lastActivity = this.now();
    this.keyLog = o.keyLog;
  }

  get state(): SessionState {
    return this.currentState;
  }

  get aead(): AeadAlgo {
    return this.suite.aead;
  }

  // ---- handshake --------------------------------------------------------------------------------

  /** Appends handshake messages (or parts of them) to TH. */
  addTranscript(...parts: Uint8Array[]): void {
    this.require("transcript");
    for (const p of parts) this.th.push(Buffer.from(p));
  }

  /** TH so far. */
  get transcript(): Buffer {
    this.th = [Buffer.concat(this.th)];
    return this.th[0]!;
  }

  /** TH1 is reached: handshake secrets, finished keys and handshake AEAD keys from Hash(TH). */
  deriveHandshakeKeys(input: SessionSecretInput): void {
    this.require("deriveHandshakeKeys");
    if (this.handshake) throw this.error("state", "handshake keys are already derived");
    if ("psk" in input !== (this.kind === "PSK"))
      throw this.error(
        "state",
        `a ${this.kind} session takes ${this.kind === "PSK" ? "a PSK" : "a DHE secret"}`,
      );
    this.handshake = deriveHandshakeKeys(this.suite, input, this.transcriptHash());
    if (this.keyLog)
      this.loggedSecret =
        "psk" in input ? { psk: Buffer.from(input.psk) } : { dheSecret: Buffer.from(input.dheSecret) };
    this.dirs = {
      request: { keys: this.handshake.request, seq: 0n },
      response: { keys: this.handshake.response, seq: 0n },
    };
  }

  /** ResponderVerifyData ("response") or RequesterVerifyData ("request") over TH so far. */
  verifyData(signer: Direction): Buffer {
    this.require("verifyData");
    if (!this.handshake) throw this.error("state", "verify data needs the handshake keys");
    return verifyData(this.suite, this.handshake[signer].finishedKey, this.transcript);
  }

  /** Whether a received verify data is the expected one (constant time). */
  verifyDataMatches(signer: Direction, received: Uint8Array): boolean {
    const expected = this.verifyData(signer);
    return received.length === expected.length && timingSafeEqual(received, expected);
  }

  /** TH2 is reached: data keys from Hash(TH), sequence numbers from 0, handshake keys dropped. */
  establish(): void {
    this.require("establish");
    if (!this.handshake) throw this.error("state", "establish needs the handshake keys");
    const data = deriveDataKeys(this.suite, this.handshake.handshakeSecret, this.transcriptHash());
    this.exportMaster = data.exportMasterSecret;
    this.wipeHandshake();
    this.dirs = { request: { keys: data.request, seq: 0n }, response: { keys: data.response, seq: 0n } };
    this.th = [];
    this.transition("establish");
    if (this.loggedSecret) this.keyLog?.(this.sessionId, this.loggedSecret);
    this.wipeLoggedSecret();
  }

  /** The export master secret (for protocols that derive their own keys from the session). */
  get exportMasterSecret(): Buffer {
    if (!this.exportMaster || this.currentState !== "established")
      throw this.error("state", "the export master secret exists while the session is established");
    return this.exportMaster;
  }

  // ---- records ----------------------------------------------------------------------------------

  /** The DSP0277 record carrying `message` in this role's sending direction (DOE adds the padding). */
  seal(message: Uint8Array): Buffer {
    const d = this.recordKeys(SENDS[this.role]);
    const record = encryptRecord({ aead: this.aead, ...d.keys }, this.sessionId, d.seq, message);
    d.seq++;
    this.lastActivity = this.now();
    return record;
  }

  /**
   * The SPDM message in a DOE type-2 payload from the peer. A record that fails under the current
   * key but authenticates under a KEY_UPDATE backup means the peer never applied the update: the
   * update is rolled back (libspdm does the same) and the message returned.
   */
  open(payload: Uint8Array): Buffer {
    const d = this.recordKeys(RECEIVES[this.role]);
    // The session ID is looked at before anything else: a record for another session must not end this one.
    if (payload.length >= 4) {
      const id = Buffer.from(payload.buffer, payload.byteOffset, 4).readUInt32LE(0);
      if (id !== this.sessionId) throw this.error("session-id", `record is for session ${hex32(id)}`);
    }
    try {
      decodeSecuredRecord(payload);
    } catch (e) {
      throw this.terminate("malformed", `malformed record: ${(e as Error).message}`, e);
    }
    const attempt = (s: { keys: TrafficKeys; seq: bigint }) => {
      try {
        return decryptRecord({ aead: this.aead, ...s.keys }, s.seq, payload).message;
      } catch (e) {
        if (e instanceof AuthError) return undefined;
        throw e;
      }
    };
    const current = attempt(d);
    if (current) {
      d.seq++;
      this.lastActivity = this.now();
      return current;
    }
    const old = d.backup && attempt(d.backup);
    if (!old) {
      throw this.terminate(
        "auth",
        `record fails authentication as ${RECEIVES[this.role]} record ${d.seq} (tampered, replayed, out of order or under other keys)`,
      );
    }
    d.backup!.seq++;
    this.abandonKeyUpdate();
    this.lastActivity = this.now();
    return old;
  }

  // ---- KEY_UPDATE -------------------------------------------------------------------------------

  /**
   * Applies KEY_UPDATE `operation` (Param1); both roles call it after the request record and before
   * the ACK record. SessionError "key-update" for an operation out of order — the responder answers
   * that with ERROR InvalidRequest.
   */
  keyUpdate(operation: number, initiator: SessionRole = "requester"): void {
    this.require("keyUpdate");
    const rule =
      initiator === "requester" ? KEY_UPDATE_RULES[operation] : RESPONDER_KEY_UPDATE_RULES[operation];
    const name = nameOf(KeyUpdateOperation, operation) ?? `operation ${operation}`;
    if (!rule) throw this.error("key-update", `KEY_UPDATE ${name} is not an operation`);
    if (rule.verifies) {
      if (this.pendingUpdate === undefined)
        throw this.error("key-update", "VerifyNewKey without a key update");
      for (const d of Object.values(this.dirs!)) {
        wipe(d.backup?.keys);
        d.backup = undefined;
      }
      this.pendingUpdate = undefined;
      return;
    }
    if (this.pendingUpdate !== undefined) {
      const pending = nameOf(KeyUpdateOperation, this.pendingUpdate);
      throw this.error("key-update", `${name} while ${pending} awaits VerifyNewKey`);
    }
    for (const dir of rule.update) {
      const d = this.dirs![dir];
      d.backup = { keys: d.keys, seq: d.seq };
      d.keys = updateTrafficKeys(this.suite, d.keys);
      d.seq = 0n;
    }
    this.pendingUpdate = operation;
  }

  /** Restores the keys a pending KEY_UPDATE replaced (the peer answered with an ERROR, or never saw it). */
  abandonKeyUpdate(): void {
    for (const d of Object.values(this.dirs ?? {})) {
      if (!d.backup) continue;
      wipe(d.keys);
      d.keys = d.backup.keys;
      d.seq = d.backup.seq;
      d.backup = undefined;
    }
    this.pendingUpdate = undefined;
  }

  /** The KEY_UPDATE operation awaiting VerifyNewKey, if any. */
  get keyUpdatePending(): number | undefined {
    return this.pendingUpdate;
  }

  /** Current traffic keys and next sequence number of a direction (copies; for tests and logs). */
  trafficState(dir: Direction): { secret: Buffer; key: Buffer; iv: Buffer; seq: bigint } | undefined {
    const d = this.dirs?.[dir];
    if (!d) return undefined;
    const { secret, key, iv } = d.keys;
    return { secret: Buffer.from(secret), key: Buffer.from(key), iv: Buffer.from(iv), seq: d.seq };
  }

  // ---- heartbeat, end ---------------------------------------------------------------------------

  /** DSP0274: a responder may end the session when nothing arrived for twice the heartbeat period. */
  heartbeatOverdue(nowMs = this.now()): boolean {
    return this.heartbeatPeriod > 0 && nowMs - this.lastActivity > 2 * this.heartbeatPeriod * 1000;
  }

  /** Ends the session (END_SESSION done, connection closed, or a failure) and wipes its keys. */
  end(reason = "ended"): void {
    this.require("end");
    if (this.currentState === "ended") return;
    this.endReason = reason;
    this.wipeHandshake();
    this.wipeLoggedSecret();
    for (const d of Object.values(this.dirs ?? {})) {
      wipe(d.keys);
      wipe(d.backup?.keys);
    }
    this.dirs = undefined;
    this.exportMaster?.fill(0);
    this.th = [];
    this.transition("end");
  }

  // ---- internals --------------------------------------------------------------------------------

  private transcriptHash(): Buffer {
    return hash(this.suite.hash, this.transcript);
  }

  private recordKeys(dir: Direction): DirectionState {
    this.require("record");
    const d = this.dirs?.[dir];
    if (!d) throw this.error("state", "records need keys: derive the handshake keys first");
    if (d.seq > this.maxSeq)
      throw this.terminate("sequence", `${dir} sequence number ${d.seq} exceeds ${this.maxSeq}`);
    return d;
  }

  private require(op: Operation): void {
    const allowed: readonly SessionState[] = LIFECYCLE[op].from;
    if (!allowed.includes(this.currentState))
      throw this.error(
        "state",
        `${op} is not allowed while ${this.currentState}${this.endReason ? ` (${this.endReason})` : ""}`,
      );
  }

  private transition(op: Operation): void {
    const to = (LIFECYCLE[op] as { to?: SessionState }).to;
    if (to) this.currentState = to;
  }

  private wipeHandshake(): void {
    if (!this.handshake) return;
    const { handshakeSecret, request, response } = this.handshake;
    handshakeSecret.fill(0);
    for (const k of [request, response]) {
      wipe(k);
      k.finishedKey.fill(0);
    }
    this.handshake = undefined;
  }

  private wipeLoggedSecret(): void {
    const s = this.loggedSecret;
    if (s) ("psk" in s ? s.psk : s.dheSecret).fill(0);
    this.loggedSecret = undefined;
  }

  private error(kind: SessionErrorKind, message: string, cause?: unknown): SessionError {
    return new SessionError(kind, this.sessionId, message, cause === undefined ? undefined : { cause });
  }

  /** Ends the session because of `kind` and returns the error to throw. */
  private terminate(kind: SessionErrorKind, message: string, cause?: unknown): SessionError {
    const e = this.error(kind, `${message}; session terminated`, cause);
    this.end(`${kind}: ${message}`);
    return e;
  }
}

/** Key material no longer needed is zeroed, so a leaked object holds nothing. */
function wipe(k: TrafficKeys | undefined): void {
  k?.secret.fill(0);
  k?.key.fill(0);
  k?.iv.fill(0);
}
