/**
 * The secure sessions of one responder (one DOE mailbox): allocation up to the description's
 * limit, lookup by session ID for DOE type-2 records, and the end of each session.
 *
 * Lifetime rule. DOE state belongs to the mailbox, not to a TCP connection (the host's bouncer, the
 * host itself and a requester may each hold their own), and so does the SPDM connection a session
 * lives in. A session therefore ends on END_SESSION, on GET_VERSION (a new SPDM connection, as
 * libspdm 1e16c60f resets its context), on a record that fails (DSP0277), after twice its heartbeat
 * period without a record (checked whenever the mailbox gets a request), or when the function's
 * last peer leaves (device.ts, SessionUsers) — never merely because one of several connections
 * closed.
 */
import { hex32 } from "../bits.js";
import type { Logger } from "../log.js";
import type { SecureSession } from "./session.js";

/** libspdm hands out RspSessionIDs 0xFFFF, 0xFFFE, ... by free slot; so do we. */
const FIRST_RSP_SESSION_ID = 0xffff;

export class ResponderSessions {
  private readonly live = new Map<number, SecureSession>();
  /** The last KEY_EXCHANGE session: FINISH in the clear carries no session ID (libspdm's latest_session_id). */
  private latestKeyEx: SecureSession | undefined;
  private readonly endListeners = new Set<(sessionId: number) => void>();

  constructor(
    readonly limit: number,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.live.size;
  }

  get(sessionId: number): SecureSession | undefined {
    return this.live.get(sessionId);
  }

  /** A free RspSessionID, or undefined at the limit (SessionLimitExceeded). */
  allocate(): number | undefined {
    if (this.live.size >= this.limit) return undefined;
    const used = new Set([...this.live.values()].map((s) => s.rspSessionId));
    for (let id = FIRST_RSP_SESSION_ID; id > FIRST_RSP_SESSION_ID - this.limit; id--)
      if (!used.has(id)) return id;
    return undefined;
  }

  add(session: SecureSession): void {
    this.live.set(session.sessionId, session);
    if (session.kind === "KEY_EX") this.latestKeyEx = session;
    this.log.info(
      { sessionId: hex32(session.sessionId), kind: session.kind, aead: session.aead },
      "session handshake started",
    );
  }

  /** The KEY_EXCHANGE session a FINISH in the clear completes, if it still awaits one. */
  get awaitingFinish(): SecureSession | undefined {
    const s = this.latestKeyEx;
    return s && s.state === "handshaking" && this.live.get(s.sessionId) === s ? s : undefined;
  }

  /** Ends a session (wiping its keys) and forgets it. */
  end(session: SecureSession, reason: string): void {
    if (this.live.get(session.sessionId) === session) this.live.delete(session.sessionId);
    if (session.state !== "ended") session.end(reason);
    this.log.info({ sessionId: hex32(session.sessionId), reason }, "session ended");
    for (const listener of this.endListeners) listener(session.sessionId);
  }

  /** Tells `listener` the ID of every session that ends; returns the way to stop. */
  onEnd(listener: (sessionId: number) => void): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  endAll(reason: string): void {
    for (const s of [...this.live.values()]) this.end(s, reason);
  }

  /** Ends the sessions whose heartbeat is overdue (DSP0274: twice the period without a message). */
  sweep(): void {
    for (const s of this.live.values())
      if (s.heartbeatOverdue())
        this.end(s, `no message for twice the heartbeat period of ${s.heartbeatPeriod} s`);
  }
}
