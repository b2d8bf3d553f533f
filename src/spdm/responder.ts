/**
 * The SPDM 1.0–1.4 responder (DSP0274) of one DOE mailbox. A DOE mailbox is one SPDM endpoint,
 * so its socket endpoint and its config-space registers reach the same responder. Plain requests
 * (DOE type 1) come through handle(), DSP0277 records (DOE type 2) through handleSecured();
 * SecureSession (session.ts) does a session's keys, transcript and records, responder-sessions.ts
 * the table of sessions.
 *
 * This file holds the state, the one transition table (RULES) and the dispatch. Each message
 * family has a module, as libspdm's responder has a file per message: responder-negotiation,
 * -authentication, -measurements, -handshakes, -in-session, -chunking, -not-ready, -encap (our
 * encapsulated requests to the requester) and -vendor (VENDOR_DEFINED_REQUEST, answered by the
 * device's handler), with what they share in responder-context.
 *
 * handle() never throws: whatever a request does wrong becomes the ERROR DSP0274 names and the
 * connection carries on. While a chunked transfer is under way only its own messages and
 * GET_VERSION are expected (UnexpectedRequest, the transfer survives); otherwise the checks run
 * in this order, before the body is looked at:
 *   not implemented (VENDOR_DEFINED too when the device has no handler), capability not
 *   advertised (for session requests: by either side, as libspdm checks), or newer than the
 *   negotiated version → UnsupportedRequest (Param2 = the request code);
 *   SPDMVersion other than the negotiated one (1.0 for GET_VERSION) → VersionMismatch;
 *   not expected in this state → UnexpectedRequest;
 *   a session request outside a session → SessionRequired (UnexpectedRequest before 1.2, which has
 *   no such code), and a request inside a session that it does not belong to → UnexpectedRequest;
 * then a body that does not decode, or a field out of range → InvalidRequest.
 * Transcripts follow libspdm (transcript.ts), since DMTF's requester verifies exactly that.
 */
import { decodeSpdmWithLength } from "../../protocol/spdm/codec.js";
import {
  CapabilityField,
  RequesterCapability,
  ResponderCapability,
  SpdmCode,
  SpdmErrorCode,
  SpdmRequestCode,
  SpdmVersion,
  spdmCodeLabel,
  spdmErrorLabel,
  versionName,
} from "../../protocol/spdm/codes.js";
import type { KnownMessageName, MessageOf } from "../../protocol/spdm/messages.js";
import { hex32 } from "../bits.js";
import { type Logger, silentLogger, WarnLimiter } from "../log.js";
import { Provisioning } from "./provisioning.js";
import { challenge, getCertificate, getDigests } from "./responder-authentication.js";
import { ChunkTransfers } from "./responder-chunking.js";
import {
  ANY_CHANNEL,
  ANYWHERE,
  type Channel,
  Connection,
  check,
  type Exchange,
  errorFor,
  errorMessage,
  fail,
  HANDSHAKE,
  IN_SESSION,
  PLAIN,
  type ResponderContext,
  SpdmError,
} from "./responder-context.js";
import { EncapFlows } from "./responder-encap.js";
import { finish, keyExchange, pskExchange, pskFinish } from "./responder-handshakes.js";
import { endSession, heartbeat, keyUpdate } from "./responder-in-session.js";
import { getMeasurements } from "./responder-measurements.js";
import { getCapabilities, getVersion, negotiateAlgorithms, SESSION_CAPS } from "./responder-negotiation.js";
import { NotReady } from "./responder-not-ready.js";
import {
  getCsr,
  getEndpointInfo,
  getKeyPairInfo,
  getMeasurementExtensionLog,
  setCertificate,
  setKeyPairInfo,
} from "./responder-provision.js";
import { ResponderSessions } from "./responder-sessions.js";
import type { ResponderConfig } from "./responder-settings.js";
import type { CertificateSlots } from "./responder-slots.js";
import { type VendorDefinedHandler, vendorDefined } from "./responder-vendor.js";
import { encryptRecord } from "./secured-record.js";
import { type SecureSession, SessionError, type SessionKind } from "./session.js";
import { Transcript } from "./transcript.js";

export const ResponderState = {
  /** Nothing yet, or only requests that failed: GET_VERSION must come first. */
  NotStarted: "NotStarted",
  AfterVersion: "AfterVersion",
  /** Version and both sides' capabilities known. */
  AfterCapabilities: "AfterCapabilities",
  /** Algorithms negotiated and the certificate slots for them ready. */
  Negotiated: "Negotiated",
} as const;
export type ResponderState = (typeof ResponderState)[keyof typeof ResponderState];
const { NotStarted, AfterVersion, AfterCapabilities, Negotiated } = ResponderState;

const label = (m: Buffer) =>
  m[1] === SpdmCode.ERROR ? `ERROR ${spdmErrorLabel(m[2] ?? 0)}` : spdmCodeLabel(m[1] ?? 0);

interface Rule<N extends KnownMessageName = KnownMessageName> {
  /** States in which the request is expected; in any other it is UnexpectedRequest. */
  states: readonly ResponderState[];
  /** The state after a successful response; unchanged when absent. */
  next?: ResponderState;
  /** First version defining the request: UnsupportedRequest in an older connection. */
  since?: number;
  /** Capability bits of which we must advertise one, else UnsupportedRequest. */
  cap?: number;
  /** Requester capability bits of which it must have advertised one (libspdm checks both sides). */
  peerCap?: number;
  /** Whether this responder serves the request at all (default yes), else UnsupportedRequest. */
  served?: (r: SpdmResponder) => boolean;
  /** Where the request is accepted (default ANYWHERE); FINISH's depends on HANDSHAKE_IN_THE_CLEAR. */
  in?: readonly Channel[] | ((r: SpdmResponder) => readonly Channel[]);
  /** The kind of session a session request belongs to (FINISH: KEY_EX, PSK_FINISH: PSK). */
  kind?: SessionKind;
  /** Flow control (chunks, RESPOND_IF_READY): no transcript effect. */
  flow?: boolean;
  // Method syntax on purpose: each rule narrows the message type, the table holds them all.
  handle(r: SpdmResponder, m: MessageOf<N>, request: Buffer, x: Exchange): Buffer | Promise<Buffer>;
}

/** The rule table keyed by request code; each rule's handler is typed by its message. */
function byCode(table: { [N in KnownMessageName]?: Rule<N> }): ReadonlyMap<number, Rule> {
  return new Map(
    Object.entries(table).map(([name, rule]) => [SpdmCode[name as KnownMessageName], rule as Rule]),
  );
}

export class SpdmResponder {
  /** The transition table: request → the states accepting it, the state it leads to, its handler. */
  private static readonly RULES = byCode({
    GET_VERSION: {
      states: [NotStarted, AfterVersion, AfterCapabilities, Negotiated],
      next: AfterVersion,
      in: PLAIN,
      handle: (r, _m, q) => r.newConnection(q),
    },
    GET_CAPABILITIES: {
      states: [AfterVersion],
      next: AfterCapabilities,
      in: PLAIN,
      handle: (r, m, q) => getCapabilities(r.ctx, m, q),
    },
    NEGOTIATE_ALGORITHMS: {
      states: [AfterCapabilities],
      next: Negotiated,
      in: PLAIN,
      handle: (r, m, q) => negotiateAlgorithms(r.ctx, m, q),
    },
    GET_DIGESTS: {
      states: [Negotiated],
      cap: ResponderCapability.CERT_CAP,
      handle: (r, m, q, x) => getDigests(r.ctx, m, q, x),
    },
    GET_CERTIFICATE: {
      states: [Negotiated],
      cap: ResponderCapability.CERT_CAP,
      handle: (r, m, q, x) => getCertificate(r.ctx, m, q, x),
    },
    CHALLENGE: {
      states: [Negotiated],
      cap: ResponderCapability.CHAL_CAP,
      in: PLAIN,
      handle: (r, m, q) => challenge(r.ctx, m, q),
    },
    GET_MEASUREMENTS: {
      states: [Negotiated],
      cap: CapabilityField.MEAS_CAP,
      handle: (r, m, q, x) => getMeasurements(r.ctx, m, q, x),
    },
    CHUNK_SEND: {
      states: [AfterCapabilities, Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CHUNK_CAP,
      in: ANY_CHANNEL,
      flow: true,
      handle: (r, m, q, x) => r.chunks.send(m, q, (whole) => r.respondToChunked(whole, m.version, x)),
    },
    CHUNK_GET: {
      states: [AfterCapabilities, Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CHUNK_CAP,
      in: ANY_CHANNEL,
      flow: true,
      handle: (r, m) => r.chunks.get(m),
    },
    // Only requests of a negotiated connection are ever held back (NOT_READY_REQUESTS); the one
    // held back may have come in a session, handshake included.
    RESPOND_IF_READY: {
      states: [Negotiated],
      in: ANY_CHANNEL,
      flow: true,
      handle: (r, m, _q, x) => r.notReady.respondIfReady(m, x.session, (held) => r.respond(held, x, true)),
    },
    KEY_EXCHANGE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.KEY_EX_CAP,
      peerCap: RequesterCapability.KEY_EX_CAP,
      in: PLAIN,
      handle: (r, m, q) => keyExchange(r.ctx, m, q),
    },
    FINISH: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.KEY_EX_CAP,
      peerCap: RequesterCapability.KEY_EX_CAP,
      in: (r) => (r.ctx.connection.handshakeInTheClear ? PLAIN : HANDSHAKE),
      kind: "KEY_EX",
      handle: (r, m, q, x) => finish(r.ctx, m, q, x),
    },
    PSK_EXCHANGE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: CapabilityField.PSK_CAP,
      peerCap: RequesterCapability.PSK_CAP,
      in: PLAIN,
      handle: (r, m, q, x) => pskExchange(r.ctx, m, q, x),
    },
    PSK_FINISH: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.PSK_CAP_RESPONDER_WITH_CONTEXT,
      peerCap: RequesterCapability.PSK_CAP,
      in: HANDSHAKE,
      kind: "PSK",
      handle: (r, m, q, x) => pskFinish(r.ctx, m, q, x),
    },
    HEARTBEAT: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.HBEAT_CAP,
      peerCap: RequesterCapability.HBEAT_CAP,
      in: IN_SESSION,
      handle: (_r, m, _q, x) => heartbeat(m, x),
    },
    KEY_UPDATE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.KEY_UPD_CAP,
      peerCap: RequesterCapability.KEY_UPD_CAP,
      in: IN_SESSION,
      handle: (_r, m, _q, x) => keyUpdate(m, x),
    },
    END_SESSION: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: SESSION_CAPS,
      in: IN_SESSION,
      handle: (r, m, _q, x) => endSession(r.ctx, m, x),
    },
    GET_MEASUREMENT_EXTENSION_LOG: {
      states: [Negotiated],
      since: SpdmVersion.V1_3,
      cap: ResponderCapability.MEL_CAP,
      handle: (r, m) => getMeasurementExtensionLog(r.ctx, m),
    },
    GET_CSR: {
      states: [Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CSR_CAP,
      handle: (r, m, q) => getCsr(r.ctx, m, q),
    },
    SET_CERTIFICATE: {
      states: [Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.SET_CERT_CAP,
      handle: (r, m) => setCertificate(r.ctx, m),
    },
    GET_KEY_PAIR_INFO: {
      states: [Negotiated],
      since: SpdmVersion.V1_3,
      cap: ResponderCapability.GET_KEY_PAIR_INFO_CAP,
      handle: (r, m) => getKeyPairInfo(r.ctx, m),
    },
    SET_KEY_PAIR_INFO: {
      states: [Negotiated],
      since: SpdmVersion.V1_3,
      cap: ResponderCapability.SET_KEY_PAIR_INFO_CAP,
      handle: (r, m) => setKeyPairInfo(r.ctx, m),
    },
    GET_ENDPOINT_INFO: {
      states: [Negotiated],
      since: SpdmVersion.V1_3,
      cap: CapabilityField.EP_INFO_CAP,
      handle: (r, m, q) => getEndpointInfo(r.ctx, m, q),
    },
    // Our own requests to the requester; a handshake's flow travels as FINISH does.
    GET_ENCAPSULATED_REQUEST: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.ENCAP_CAP,
      peerCap: RequesterCapability.ENCAP_CAP,
      in: ANY_CHANNEL,
      handle: (r, m, _q, x) => r.ctx.encap.getRequest(r.ctx, m, x),
    },
    DELIVER_ENCAPSULATED_RESPONSE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.ENCAP_CAP,
      peerCap: RequesterCapability.ENCAP_CAP,
      in: ANY_CHANNEL,
      handle: (r, m, _q, x) =>
        r.ctx.encap.deliver(r.ctx, m, x, (s) => r.ctx.sessions.end(s, "encapsulated flow failed")),
    },
    // IDE-KM, TDISP and the like, when the device has a handler: in a session unless let in the clear.
    VENDOR_DEFINED_REQUEST: {
      states: [Negotiated],
      served: (r) => r.vendor !== undefined,
      in: (r) => (r.config.vendorDefinedInClear ? ANYWHERE : IN_SESSION),
      handle: (r, m, _q, x) => vendorDefined(r.vendor!, r.ctx.connection, m, x),
    },
  });

  private current: ResponderState = NotStarted;
  /** The parts the handler families are given (each takes the few it needs). */
  private readonly ctx: ResponderContext;
  private readonly chunks: ChunkTransfers;
  private readonly notReady: NotReady;
  private readonly strays = new WarnLimiter();
  private readonly connectionListeners = new Set<() => void>();

  constructor(
    private readonly config: ResponderConfig,
    slots: CertificateSlots,
    private readonly log: Logger = silentLogger,
    /** The device's answer to VENDOR_DEFINED_REQUEST; none: every one is UnsupportedRequest. */
    private readonly vendor?: VendorDefinedHandler,
  ) {
    const connection = new Connection(config);
    const sessions = new ResponderSessions(config.sessionLimit, log);
    const provisioning = config.provisioning ?? new Provisioning(slots);
    const encap = new EncapFlows(log);
    this.ctx = {
      config,
      slots,
      log,
      connection,
      transcript: new Transcript(),
      sessions,
      provisioning,
      encap,
    };
    this.chunks = new ChunkTransfers(connection, config);
    this.notReady = new NotReady(config.notReady, connection);
  }

  get state(): ResponderState {
    return this.current;
  }

  /** Sessions open (handshaking or established). */
  get sessionCount(): number {
    return this.ctx.sessions.size;
  }

  /** Tells `listener` the ID of every session that ends, however it ends; returns the way to stop. */
  onSessionEnd(listener: (sessionId: number) => void): () => void {
    return this.ctx.sessions.onEnd(listener);
  }

  /** Tells `listener` whenever GET_VERSION starts a new SPDM connection; returns the way to stop. */
  onNewConnection(listener: () => void): () => void {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  }

  /**
   * spdm-emu's OOB_ENCAP_KEY_UPDATE: our next encapsulated request in established session
   * `sessionId` is KEY_UPDATE. False (logged) when there is no such session or no ENCAP_CAP and
   * KEY_UPD_CAP on both sides.
   */
  requestKeyUpdate(sessionId: number): boolean {
    const session = this.ctx.sessions.get(sessionId);
    const { connection } = this.ctx;
    const R = RequesterCapability;
    const S = ResponderCapability;
    if (
      session?.state !== "established" ||
      !connection.both(R.ENCAP_CAP, S.ENCAP_CAP) ||
      !connection.both(R.KEY_UPD_CAP, S.KEY_UPD_CAP)
    ) {
      this.log.warn(
        { sessionId: hex32(sessionId) },
        "OOB_ENCAP_KEY_UPDATE: no such session, or no ENCAP_CAP/KEY_UPD_CAP",
      );
      return false;
    }
    this.ctx.encap.arm(this.ctx, "key-update", session);
    return true;
  }

  /**
   * spdm-emu's OOB_ENCAP_ENDPOINT_INFO: our next encapsulated request, in or out of a session, is
   * GET_ENDPOINT_INFO. False (logged) before a 1.3+ connection with ENCAP_CAP on both sides whose
   * requester advertises EP_INFO_CAP.
   */
  requestEndpointInfo(): boolean {
    const { connection } = this.ctx;
    const peer = connection.peer;
    if (
      this.current !== Negotiated ||
      peer === undefined ||
      peer.version < SpdmVersion.V1_3 ||
      !connection.both(RequesterCapability.ENCAP_CAP, ResponderCapability.ENCAP_CAP) ||
      (peer.flags & CapabilityField.EP_INFO_CAP) === 0
    ) {
      this.log.warn("OOB_ENCAP_ENDPOINT_INFO: no 1.3 connection, or no ENCAP_CAP/EP_INFO_CAP");
      return false;
    }
    this.ctx.encap.armEndpointInfo(this.ctx);
    return true;
  }

  /** Ends every session, e.g. when nobody is connected to the mailbox any more. */
  endSessions(reason: string): void {
    this.ctx.sessions.endAll(reason);
  }

  /**
   * One SPDM request (DOE type 1 payload, padding allowed) in, one SPDM response out. Never throws.
   * `holdBack`: answer ResponseNotReady first, as for a request the settings hold back.
   */
  async handle(request: Buffer, holdBack = false): Promise<Buffer> {
    this.ctx.sessions.sweep();
    const x: Exchange = { after: [], holdBack };
    const response = this.chunks.fit(await this.respond(request, x));
    for (const step of x.after) step();
    this.logExchange(request, response);
    return response;
  }

  /**
   * One DSP0277 record (DOE type 2 payload) in; the sealed response out, or undefined for no
   * response object. Never throws, and never answers in plaintext:
   *   - a record for no session we have: no response (libspdm drops it too: there are no keys to
   *     answer with, and a secured request never gets a plaintext answer);
   *   - a record that does not authenticate or decode, or whose sequence number is not the next
   *     (over DOE it is implicit, so the tag fails): the session is terminated (DSP0277) and, as
   *     libspdm does by default, ERROR DecryptError goes back sealed under the session's response
   *     key as it was before the record.
   */
  async handleSecured(payload: Buffer): Promise<Buffer | undefined> {
    this.ctx.sessions.sweep();
    const sessionId = payload.length >= 4 ? payload.readUInt32LE(0) : undefined;
    const session = sessionId === undefined ? undefined : this.ctx.sessions.get(sessionId);
    if (!session) {
      // Anyone can send these: rate-limited.
      this.strays.warn(
        this.log,
        { sessionId: sessionId === undefined ? null : hex32(sessionId), bytes: payload.length },
        "secured record for no open session; no response",
      );
      return undefined;
    }
    // A record that fails ends the session and wipes its keys, yet the DecryptError goes out under
    // the response key it had: keep a copy (SecureSession answers for itself only on success).
    const replyKeys = session.trafficState("response");
    let request: Buffer;
    try {
      request = session.open(payload);
    } catch (e) {
      const err = e instanceof Error ? e.message : String(e);
      const kind = e instanceof SessionError ? e.kind : undefined;
      this.ctx.sessions.end(session, err);
      this.log.warn(
        { sessionId: hex32(session.sessionId), kind, err },
        "secured record rejected; session terminated",
      );
      if (kind === undefined || !replyKeys) return undefined;
      const version = this.ctx.connection.peer?.version ?? SpdmVersion.V1_1;
      const error = errorMessage(new SpdmError(SpdmErrorCode.DecryptError), version);
      return encryptRecord({ aead: session.aead, ...replyKeys }, session.sessionId, replyKeys.seq, error);
    }
    const x: Exchange = { session, after: [] };
    const response = this.chunks.fit(await this.respond(request, x));
    this.logExchange(request, response, session);
    try {
      const sealed = session.seal(response);
      for (const step of x.after) step();
      return sealed;
    } catch (e) {
      this.ctx.sessions.end(session, (e as Error).message);
      this.log.warn(
        { sessionId: hex32(session.sessionId), err: (e as Error).message },
        "cannot seal the response; session terminated",
      );
      return undefined;
    }
  }

  private logExchange(request: Buffer, response: Buffer, session?: SecureSession): void {
    if (!this.log.isLevelEnabled("debug")) return;
    this.log.debug(
      {
        version: versionName(request[0] ?? 0),
        req: label(request),
        rsp: label(response),
        bytes: [request.length, response.length],
        ...(session && { sessionId: hex32(session.sessionId) }),
      },
      session ? "SPDM exchange in session" : "SPDM exchange",
    );
  }

  // ---- dispatch -------------------------------------------------------------------------------

  /** `replay`: the request held back, now answered for RESPOND_IF_READY. */
  private async respond(request: Buffer, x: Exchange, replay = false): Promise<Buffer> {
    const version = request[0] ?? 0;
    const code = request[1] ?? 0;
    if (code !== SpdmRequestCode.RESPOND_IF_READY) this.notReady.drop();
    try {
      check(request.length >= 4);
      const rule = this.admit(code, version, x);
      const { message, byteLength } = decodeSpdmWithLength(request, this.ctx.connection.selection?.decode);
      const body = request.subarray(0, byteLength);
      // Reset rules apply to any well-formed request, whatever its answer: libspdm's requester
      // applies them when it sends. Inside a session the session's M log is the one reset.
      if (!rule.flow) this.ctx.transcript.onRequest(code, x.session?.measurementLog);
      if (!replay && (x.holdBack || this.notReady.holdsBack(code)))
        return this.notReady.holdBack(code, body, x.session);
      const response = await rule.handle(this, message as MessageOf<KnownMessageName>, body, x);
      if (rule.next) this.current = rule.next;
      return response;
    } catch (e) {
      return errorFor(this.ctx, e, { code, version, awaitingCapabilities: this.current === AfterVersion }, x);
    }
  }

  /** GET_VERSION: a new connection. onRequest() has reset the transcripts; the rest goes too, sessions included. */
  private newConnection(request: Buffer): Buffer {
    this.ctx.sessions.endAll("GET_VERSION");
    this.ctx.connection.reset();
    this.ctx.encap.reset();
    this.chunks.reset();
    for (const listener of this.connectionListeners) listener();
    return getVersion(this.ctx, request);
  }

  /** The request a CHUNK_SEND transfer carried. Flow control cannot itself arrive in chunks (libspdm: InvalidRequest). */
  private async respondToChunked(whole: Buffer, version: number, x: Exchange): Promise<Buffer> {
    if (SpdmResponder.RULES.get(whole[1] ?? 0)?.flow)
      return errorMessage(new SpdmError(SpdmErrorCode.InvalidRequest), version);
    return this.respond(whole, x);
  }

  /** The rule for a request, or the ERROR that refuses it (see the file comment for the order). */
  private admit(code: number, version: number, x: Exchange): Rule {
    // A chunked transfer admits only its own messages and GET_VERSION, and outlives the refusal.
    const transfer = this.chunks.underWay ?? code;
    if (code !== transfer && code !== SpdmRequestCode.GET_VERSION) fail("UnexpectedRequest");
    const rule = SpdmResponder.RULES.get(code);
    const { peer, advertised } = this.ctx.connection;
    if (
      !rule ||
      (rule.since !== undefined && peer !== undefined && peer.version < rule.since) ||
      (rule.cap !== undefined && (advertised & rule.cap) === 0) ||
      (rule.peerCap !== undefined && peer !== undefined && (peer.flags & rule.peerCap) === 0) ||
      (rule.served !== undefined && !rule.served(this))
    ) {
      fail("UnsupportedRequest", code);
    }
    if (!this.versionAccepted(code, version)) fail("VersionMismatch");
    if (!rule.states.includes(this.current)) fail("UnexpectedRequest");
    const channels = typeof rule.in === "function" ? rule.in(this) : (rule.in ?? ANYWHERE);
    const channel: Channel = x.session ? (x.session.state as Channel) : "plain";
    if (!channels.includes(channel) || (rule.kind && x.session && x.session.kind !== rule.kind)) {
      this.log.info(
        { req: spdmCodeLabel(code), sessionId: x.session ? hex32(x.session.sessionId) : null, channel },
        channel === "plain" ? "session request outside a session" : "request does not belong in this session",
      );
      fail(channel === "plain" && version >= SpdmVersion.V1_2 ? "SessionRequired" : "UnexpectedRequest");
    }
    return rule;
  }

  private versionAccepted(code: number, version: number): boolean {
    if (code === SpdmRequestCode.GET_VERSION) return version === SpdmVersion.V1_0;
    const { peer } = this.ctx.connection;
    if (peer) return version === peer.version;
    if (code === SpdmRequestCode.GET_CAPABILITIES) return this.config.versions.includes(version);
    return true; // nothing negotiated yet: the state check answers
  }
}
