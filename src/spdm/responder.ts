/**
 * The SPDM 1.0–1.3 responder of one DOE mailbox (PROTOCOL-FACTS 3). A DOE mailbox is one SPDM
 * endpoint, so its socket endpoint and its config-space registers reach the same responder.
 * It answers connection setup (GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS), GET_DIGESTS,
 * GET_CERTIFICATE, CHALLENGE, GET_MEASUREMENTS, chunked transfers (CHUNK_SEND / CHUNK_GET) and
 * secure sessions (PROTOCOL-FACTS 3.11–3.14, 4, 5): KEY_EXCHANGE/FINISH with ECDHE (mutual
 * authentication without encapsulation when the settings provision a requester chain; MUT_AUTH_CAP
 * is advertised only then), PSK_EXCHANGE/PSK_FINISH, and inside a
 * session HEARTBEAT, KEY_UPDATE, END_SESSION and the certificate and measurement requests. Plain
 * requests (DOE type 1) come through handle(), DSP0277 records (DOE type 2) through handleSecured();
 * SecureSession (session.ts) does the keys, transcript and records, responder-sessions.ts the table.
 *
 * handle() never throws: whatever a request does wrong becomes the ERROR DSP0274 names and the
 * connection carries on. While a chunked transfer is under way only its own messages and
 * GET_VERSION are expected (UnexpectedRequest, the transfer survives); otherwise the checks run
 * in this order, before the body is looked at:
 *   not implemented, capability not advertised (for session requests: by either side, as libspdm
 *   checks), or newer than the negotiated version → UnsupportedRequest (Param2 = the request code);
 *   SPDMVersion other than the negotiated one (1.0 for GET_VERSION) → VersionMismatch;
 *   not expected in this state → UnexpectedRequest;
 *   a session request outside a session → SessionRequired (UnexpectedRequest before 1.2, which has
 *   no such code), and a request inside a session that it does not belong to → UnexpectedRequest;
 * then a body that does not decode, or a field out of range → InvalidRequest.
 *
 * Transcripts follow libspdm (transcript.ts), since DMTF's requester verifies exactly that. A
 * response larger than one transfer to the requester is logged whole and then sent by CHUNK_GET.
 * With `notReady` settings, chosen requests are first answered with ResponseNotReady and served
 * again by RESPOND_IF_READY (see holdBack()); otherwise RESPOND_IF_READY finds nothing pending.
 */
import { type KeyObject, randomBytes } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import {
  decodeSecuredMessageOpaque,
  encodeVersionSelection,
  SecuredMessageVersion,
} from "../../protocol/secured.js";
import { decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  AlgType,
  CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS,
  CapabilityField,
  CHUNK_EARLY_ERROR_DETECTED,
  CHUNK_LAST,
  DMTF_VALUE_TYPE_RAW_BIT_STREAM,
  DmtfMeasurementType,
  FINISH_SIGNATURE_INCLUDED,
  KeyScheduleAlgo,
  MeasurementAttribute,
  MeasurementHashAlgo,
  MeasurementOperation,
  MeasurementSpecification,
  MeasurementSummaryHashType,
  MutAuthRequested,
  NONCE_SIZE,
  OPAQUE_DATA_FMT_MASK,
  OtherParams,
  RANDOM_DATA_SIZE,
  RequesterCapability,
  ResponderCapability,
  SessionPolicy,
  SpdmCode,
  SpdmErrorCode,
  type SpdmErrorName,
  SpdmRequestCode,
  SpdmVersion,
  spdmCodeLabel,
  spdmErrorLabel,
  versionEntry,
  versionName,
} from "../../protocol/spdm/codes.js";
import type { DecodeContext } from "../../protocol/spdm/context.js";
import {
  dmtfMeasurementBlock,
  encodeMeasurementRecord,
  type MeasurementBlock,
} from "../../protocol/spdm/measurements.js";
import type {
  AlgorithmsRequestFields,
  Challenge,
  ChunkGet,
  ChunkSend,
  EndSession,
  Finish,
  GetCapabilities,
  GetCertificate,
  GetDigests,
  GetMeasurements,
  KeyExchange,
  KeyUpdate,
  KnownMessageName,
  MessageOf,
  NegotiateAlgorithms,
  PskExchange,
  PskFinish,
  RespondIfReady,
} from "../../protocol/spdm/messages.js";
import { hex32 } from "../bits.js";
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
  type HashAlgo,
  hash,
} from "../crypto/suites.js";
import { type Logger, silentLogger } from "../log.js";
import { ResponderSessions } from "./responder-sessions.js";
import type { ResponderConfig } from "./responder-settings.js";
import type { CertificateSlots } from "./responder-slots.js";
import { encryptRecord } from "./secured-record.js";
import {
  SecureSession,
  SessionError,
  type SessionKind,
  type SessionState,
  sessionTranscriptPrefix,
} from "./session.js";
import { type SigningContextName, signTranscript, verifyTranscript } from "./signing.js";
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

const EMPTY = Buffer.alloc(0);
const MIN_DATA_TRANSFER_SIZE = 42;
const MAX_CT_EXPONENT = 31;
const CERTIFICATE_HEADER = 8;
const CHUNK_HEADER = 12;
const LARGE_MESSAGE_SIZE_FIELD = 4;
const CHUNK_SEND_ACK_HEADER = 6;
/** GET_CERTIFICATE Param2 bit 0 (1.3): only the slot's size is asked for. */
const SLOT_SIZE_REQUESTED = 0x1;
/** Opaque data formats we can select, preferred first; we send no opaque data in any of them. */
const OPAQUE_FORMATS = [OtherParams.OPAQUE_DATA_FMT_1, OtherParams.OPAQUE_DATA_FMT_0];
/** The response capability bits each version defines (libspdm's *_MASK); others are not sent. */
const FLAGS_IN_VERSION: Readonly<Record<number, number>> = {
  [SpdmVersion.V1_0]: 0x3f,
  [SpdmVersion.V1_1]: 0x1_ffff,
  [SpdmVersion.V1_2]: 0x3f_ffff,
  [SpdmVersion.V1_3]: 0x3fff_ffff,
};
/** Capabilities that put a key to use: the connection then needs a base hash and asym algorithm. */
const KEY_CAPS =
  ResponderCapability.CERT_CAP | ResponderCapability.CHAL_CAP | ResponderCapability.MEAS_CAP_SIG;
/**
 * The capability that puts each struct table's algorithm to use. Without one advertised we select
 * nothing for the table (DSP0274; DMTF's SPDM-Responder-Validator checks it): the preferences wait
 * for sessions (KEY_EX/PSK) and mutual authentication to be advertised.
 */
const STRUCT_USED_BY: Readonly<Record<number, number>> = {
  [AlgType.DHE]: ResponderCapability.KEY_EX_CAP,
  [AlgType.AEAD]: ResponderCapability.KEY_EX_CAP | CapabilityField.PSK_CAP,
  [AlgType.REQ_BASE_ASYM_ALG]: ResponderCapability.MUT_AUTH_CAP,
  [AlgType.KEY_SCHEDULE]: ResponderCapability.KEY_EX_CAP | CapabilityField.PSK_CAP,
};
const MEASUREMENT_HASH: Readonly<Record<number, HashAlgo>> = {
  [MeasurementHashAlgo.SHA_256]: "SHA-256",
  [MeasurementHashAlgo.SHA_384]: "SHA-384",
  [MeasurementHashAlgo.SHA_512]: "SHA-512",
  [MeasurementHashAlgo.SHA3_256]: "SHA3-256",
  [MeasurementHashAlgo.SHA3_384]: "SHA3-384",
  [MeasurementHashAlgo.SHA3_512]: "SHA3-512",
};

/** DSP0277 versions we speak, most preferred first; libspdm offers and selects the same. */
const SECURED_VERSIONS = [SecuredMessageVersion.V1_2, SecuredMessageVersion.V1_1, SecuredMessageVersion.V1_0];
/** PSK_EXCHANGE_RSP ResponderContext size: libspdm's LIBSPDM_PSK_CONTEXT_LENGTH. */
const PSK_CONTEXT_SIZE = 64;
/** Any session capability: needed for END_SESSION, and a base hash for the key schedule. */
const SESSION_CAPS = ResponderCapability.KEY_EX_CAP | CapabilityField.PSK_CAP;

/**
 * Where a request may arrive: as plain SPDM (DOE type 1), or inside a session (DOE type 2) in the
 * given state. Default: plain or in an established session.
 */
type Channel = "plain" | Exclude<SessionState, "ended">;
const ANYWHERE: readonly Channel[] = ["plain", "established"];
const PLAIN: readonly Channel[] = ["plain"];
const IN_SESSION: readonly Channel[] = ["established"];
const HANDSHAKE: readonly Channel[] = ["handshaking"];
/** Chunks carry whatever the channel carries, FINISH and PSK_FINISH included; the inner request is admitted on its own. */
const ANY_CHANNEL: readonly Channel[] = ["plain", "handshaking", "established"];

/** One request on its way through the responder. */
interface Exchange {
  /** The session the request arrived in (DOE type 2), if any; its response is sealed in it. */
  session?: SecureSession;
  /**
   * What must happen only once the response is sealed or sent: the switch to data keys after
   * FINISH_RSP, the end of a session after END_SESSION_ACK or a bad verify data.
   */
  after: (() => void)[];
}

/** An ERROR to answer with; thrown by the checks and handlers, caught in respond(). */
class SpdmError extends Error {
  constructor(
    readonly errorCode: number,
    readonly errorData = 0,
  ) {
    super(spdmErrorLabel(errorCode));
  }
}

function fail(name: SpdmErrorName, data = 0): never {
  throw new SpdmError(SpdmErrorCode[name], data);
}

function check(ok: boolean, name: SpdmErrorName = "InvalidRequest"): asserts ok {
  if (!ok) fail(name);
}

/** First of `preferred` that `offered` has, else 0 (what ALGORITHMS sends for "none"). */
const pick = (preferred: readonly number[], offered: number) =>
  preferred.find((b) => (offered & b) !== 0) ?? 0;
const bits = (xs: readonly number[]) => xs.reduce((a, b) => a | b, 0);
/** The algorithm of a suites.ts table whose bit is `bit`, if any. */
const byBit = <T extends Record<string, { bit: number }>>(table: T, bit: number) =>
  (Object.keys(table) as (keyof T & string)[]).find((k) => bit !== 0 && table[k]!.bit === bit);
const slotMask = (slots: ReadonlyMap<number, unknown>) => bits([...slots.keys()].map((s) => 1 << s));
const field = (flags: number, mask: number) => (flags & mask) / (mask & -mask);

/** Reserved values and contradictions a requester's flags must not have (libspdm's checks, in short). */
function requesterFlagsValid(flags: number, version: number): boolean {
  const R = RequesterCapability;
  if (field(flags, CapabilityField.PSK_CAP) > 1) return false;
  if ((flags & R.CERT_CAP) !== 0 && (flags & R.PUB_KEY_ID_CAP) !== 0) return false;
  if (version < SpdmVersion.V1_3) return true;
  return field(flags, CapabilityField.EP_INFO_CAP) !== 3 && field(flags, CapabilityField.MULTI_KEY_CAP) !== 3;
}

const label = (m: Buffer) =>
  m[1] === SpdmCode.ERROR ? `ERROR ${spdmErrorLabel(m[2] ?? 0)}` : spdmCodeLabel(m[1] ?? 0);

/** What the requester told us in GET_CAPABILITIES, and what we answered. */
interface Peer {
  version: number;
  /** RequesterCapability bits (none at 1.0). */
  flags: number;
  /** 1.2+ */
  dataTransferSize?: number;
  maxSpdmMsgSize?: number;
  /** Our flags as sent for this version. */
  ours: number;
}

interface SlotInUse {
  /** The SPDM certificate chain for the negotiated hash (its RootHash depends on it). */
  chain: Buffer;
  digest: Buffer;
  privateKey: KeyObject;
}

interface Connection {
  version: number;
  /** Absent only when no capability needs them (no CERT, CHAL or MEAS_SIG). */
  hash?: HashAlgo;
  asym?: AsymAlgo;
  measurementSpec: number;
  /** MeasurementHashAlgo bit, 0 without a measurement specification. */
  measurementHash: number;
  /** The slots serving the negotiated asym algorithm, lowest first. */
  slots: Map<number, SlotInUse>;
  /** Struct-table selections (none without a capability using them). */
  dhe?: DheAlgo;
  aead?: AeadAlgo;
  /** ReqBaseAsymAlg, selected when both sides advertise MUT_AUTH_CAP. */
  reqAsym?: AsymAlgo;
  /** OtherParamsSelection (1.2+): the opaque data format. */
  otherParams: number;
  /** What request decoding needs: H for verify data, D for ExchangeData. */
  decode: DecodeContext;
}

/** A response waiting to be fetched by CHUNK_GET. */
interface LargeResponse {
  handle: number;
  seq: number;
  message: Buffer;
  sent: number;
}

/** A request answered with ResponseNotReady, and what RESPOND_IF_READY must name to get its response. */
interface PendingRequest {
  code: number;
  token: number;
  request: Buffer;
  /** The session it came in, if any: RESPOND_IF_READY must come there too. */
  session: SecureSession | undefined;
  /** performance.now() from which it is answered. */
  readyAt: number;
}

/** A request arriving by CHUNK_SEND. */
interface LargeRequest {
  handle: number;
  seq: number;
  size: number;
  parts: Buffer[];
  received: number;
}

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
      handle: (r, _m, request) => r.getVersion(request),
    },
    GET_CAPABILITIES: {
      states: [AfterVersion],
      next: AfterCapabilities,
      in: PLAIN,
      handle: (r, m, q) => r.getCapabilities(m, q),
    },
    NEGOTIATE_ALGORITHMS: {
      states: [AfterCapabilities],
      next: Negotiated,
      in: PLAIN,
      handle: (r, m, q) => r.negotiateAlgorithms(m, q),
    },
    GET_DIGESTS: {
      states: [Negotiated],
      cap: ResponderCapability.CERT_CAP,
      handle: (r, m, q, x) => r.getDigests(m, q, x),
    },
    GET_CERTIFICATE: {
      states: [Negotiated],
      cap: ResponderCapability.CERT_CAP,
      handle: (r, m, q, x) => r.getCertificate(m, q, x),
    },
    CHALLENGE: {
      states: [Negotiated],
      cap: ResponderCapability.CHAL_CAP,
      in: PLAIN,
      handle: (r, m, q) => r.challenge(m, q),
    },
    GET_MEASUREMENTS: {
      states: [Negotiated],
      cap: CapabilityField.MEAS_CAP,
      handle: (r, m, q, x) => r.getMeasurements(m, q, x),
    },
    CHUNK_SEND: {
      states: [AfterCapabilities, Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CHUNK_CAP,
      in: ANY_CHANNEL,
      flow: true,
      handle: (r, m, q, x) => r.chunkSend(m, q, x),
    },
    CHUNK_GET: {
      states: [AfterCapabilities, Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CHUNK_CAP,
      in: ANY_CHANNEL,
      flow: true,
      handle: (r, m) => r.chunkGet(m),
    },
    // Only requests of a negotiated connection are ever held back (NOT_READY_REQUESTS); the one
    // held back may have come in a session, handshake included.
    RESPOND_IF_READY: {
      states: [Negotiated],
      in: ANY_CHANNEL,
      flow: true,
      handle: (r, m, _q, x) => r.respondIfReady(m, x),
    },
    KEY_EXCHANGE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.KEY_EX_CAP,
      peerCap: RequesterCapability.KEY_EX_CAP,
      in: PLAIN,
      handle: (r, m, q) => r.keyExchange(m, q),
    },
    FINISH: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.KEY_EX_CAP,
      peerCap: RequesterCapability.KEY_EX_CAP,
      in: (r) => (r.handshakeInTheClear ? PLAIN : HANDSHAKE),
      kind: "KEY_EX",
      handle: (r, m, q, x) => r.finish(m, q, x),
    },
    PSK_EXCHANGE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: CapabilityField.PSK_CAP,
      peerCap: RequesterCapability.PSK_CAP,
      in: PLAIN,
      handle: (r, m, q, x) => r.pskExchange(m, q, x),
    },
    PSK_FINISH: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.PSK_CAP_RESPONDER_WITH_CONTEXT,
      peerCap: RequesterCapability.PSK_CAP,
      in: HANDSHAKE,
      kind: "PSK",
      handle: (r, m, q, x) => r.pskFinish(m, q, x),
    },
    HEARTBEAT: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.HBEAT_CAP,
      peerCap: RequesterCapability.HBEAT_CAP,
      in: IN_SESSION,
      handle: (r, m, _q, x) => r.heartbeat(m.version, x),
    },
    KEY_UPDATE: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: ResponderCapability.KEY_UPD_CAP,
      peerCap: RequesterCapability.KEY_UPD_CAP,
      in: IN_SESSION,
      handle: (r, m, _q, x) => r.keyUpdate(m, x),
    },
    END_SESSION: {
      states: [Negotiated],
      since: SpdmVersion.V1_1,
      cap: SESSION_CAPS,
      in: IN_SESSION,
      handle: (r, m, _q, x) => r.endSession(m, x),
    },
  });

  private current: ResponderState = NotStarted;
  private peer: Peer | undefined;
  private connection: Connection | undefined;
  private readonly transcript = new Transcript();
  private largeResponse: LargeResponse | undefined;
  private largeRequest: LargeRequest | undefined;
  private lastHandle = 0;
  /** The request held back by ResponseNotReady, until RESPOND_IF_READY fetches it. */
  private pending: PendingRequest | undefined;
  private lastToken = 0;
  private readonly structs: Readonly<Record<number, readonly number[]>>;
  private readonly sessions: ResponderSessions;

  constructor(
    private readonly config: ResponderConfig,
    private readonly slots: CertificateSlots,
    private readonly log: Logger = silentLogger,
  ) {
    this.structs = {
      [AlgType.DHE]: config.dhe,
      [AlgType.AEAD]: config.aead,
      [AlgType.REQ_BASE_ASYM_ALG]: config.reqAsym,
      [AlgType.KEY_SCHEDULE]: config.keySchedule,
    };
    this.sessions = new ResponderSessions(config.sessionLimit, log);
  }

  get state(): ResponderState {
    return this.current;
  }

  /** Sessions open (handshaking or established). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Ends every session, e.g. when nobody is connected to the mailbox any more. */
  endSessions(reason: string): void {
    this.sessions.endAll(reason);
  }

  /** One SPDM request (DOE type 1 payload, padding allowed) in, one SPDM response out. Never throws. */
  async handle(request: Buffer): Promise<Buffer> {
    this.sessions.sweep();
    const x: Exchange = { after: [] };
    const response = this.fit(await this.respond(request, x));
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
    this.sessions.sweep();
    const sessionId = payload.length >= 4 ? payload.readUInt32LE(0) : undefined;
    const session = sessionId === undefined ? undefined : this.sessions.get(sessionId);
    if (!session) {
      this.log.warn(
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
      this.sessions.end(session, (e as Error).message);
      this.log.warn(
        { sessionId: hex32(session.sessionId), kind: (e as SessionError).kind, err: (e as Error).message },
        "secured record rejected; session terminated",
      );
      if (!(e instanceof SessionError) || !replyKeys) return undefined;
      const error = this.errorMessage(new SpdmError(SpdmErrorCode.DecryptError), this.peer?.version ?? 0x11);
      return encryptRecord({ aead: session.aead, ...replyKeys }, session.sessionId, replyKeys.seq, error);
    }
    const x: Exchange = { session, after: [] };
    const response = this.fit(await this.respond(request, x));
    this.logExchange(request, response, session);
    try {
      const sealed = session.seal(response);
      for (const step of x.after) step();
      return sealed;
    } catch (e) {
      this.sessions.end(session, (e as Error).message);
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
    // Any other request abandons the one held back: libspdm keeps only the latest request in its
    // cache (libspdm_rsp_handle_response_state.c:35-40), and the requester has moved on.
    if (code !== SpdmRequestCode.RESPOND_IF_READY) this.pending = undefined;
    try {
      check(request.length >= 4);
      const rule = this.admit(code, version, x);
      const { message, byteLength } = decodeSpdmWithLength(request, this.connection?.decode);
      // Reset rules apply to any well-formed request, whatever its answer: libspdm's requester
      // applies them when it sends. Inside a session the session's M log is the one reset.
      if (!rule.flow) this.transcript.onRequest(code, x.session?.measurementLog);
      if (!replay && this.config.notReady?.requests.includes(code))
        return this.holdBack(code, request.subarray(0, byteLength), x);
      const response = await rule.handle(
        this,
        message as MessageOf<KnownMessageName>,
        request.subarray(0, byteLength),
        x,
      );
      if (rule.next) this.current = rule.next;
      return response;
    } catch (e) {
      return this.errorFor(e, code, version, x);
    }
  }

  /**
   * ResponseNotReady instead of the response. Like libspdm, nothing is computed and nothing enters
   * a transcript now: RESPOND_IF_READY runs the kept request as if it came then
   * (libspdm_rsp_respond_if_ready.c:67-70), so request and response are logged together and
   * signatures cover what the requester logs. It answers before errorFor(), which would drop the
   * measurement log (libspdm's requester keeps it on ResponseNotReady). The reset rules
   * (onRequest) have run already; the replay repeats them, which changes nothing.
   */
  private holdBack(code: number, request: Buffer, x: Exchange): Buffer {
    const { delayMs } = this.config.notReady!;
    this.lastToken = (this.lastToken + 1) & 0xff;
    this.pending = {
      code,
      token: this.lastToken,
      request: Buffer.from(request),
      session: x.session,
      readyAt: performance.now() + delayMs,
    };
    return this.notReadyMessage(this.pending);
  }

  private notReadyMessage(p: PendingRequest): Buffer {
    const { rdtExponent, rdtm } = this.config.notReady!;
    return encodeSpdm({
      code: "ERROR",
      version: this.conn.version,
      errorCode: SpdmErrorCode.ResponseNotReady,
      errorData: 0,
      responseNotReady: { rdtExponent, requestCode: p.code, token: p.token, rdtm },
    });
  }

  /**
   * The held-back response. As libspdm: another request code or token, or nothing pending →
   * InvalidRequest, the pending request kept (libspdm_rsp_respond_if_ready.c:44-58); not ready yet
   * → the same ResponseNotReady again (its NOT_READY state, libspdm_rsp_handle_response_state.c:
   * 33-50). A RESPOND_IF_READY from another session (or outside the one) does not name it either.
   */
  private respondIfReady(m: RespondIfReady, x: Exchange): Buffer | Promise<Buffer> {
    const p = this.pending;
    check(p !== undefined && m.requestCode === p.code && m.token === p.token && x.session === p.session);
    if (performance.now() < p.readyAt) return this.notReadyMessage(p);
    return this.respond(p.request, x, true);
  }

  /** The rule for a request, or the ERROR that refuses it (see the file comment for the order). */
  private admit(code: number, version: number, x: Exchange): Rule {
    // A chunked transfer admits only its own messages and GET_VERSION, and outlives the refusal.
    const transfer = this.largeResponse
      ? SpdmRequestCode.CHUNK_GET
      : this.largeRequest
        ? SpdmRequestCode.CHUNK_SEND
        : code;
    if (code !== transfer && code !== SpdmRequestCode.GET_VERSION) fail("UnexpectedRequest");
    const rule = SpdmResponder.RULES.get(code);
    const negotiated = this.peer?.version;
    if (
      !rule ||
      (rule.since !== undefined && negotiated !== undefined && negotiated < rule.since) ||
      (rule.cap !== undefined && (this.advertised & rule.cap) === 0) ||
      (rule.peerCap !== undefined && this.peer !== undefined && (this.peer.flags & rule.peerCap) === 0)
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
    if (this.peer) return version === this.peer.version;
    if (code === SpdmRequestCode.GET_CAPABILITIES) return this.config.versions.includes(version);
    return true; // nothing negotiated yet: the state check answers
  }

  private errorFor(e: unknown, code: number, version: number, x: Exchange): Buffer {
    let error: SpdmError;
    if (e instanceof SpdmError) error = e;
    else if (e instanceof DecodeError) {
      this.log.debug({ req: spdmCodeLabel(code), err: e.message }, "malformed SPDM request");
      error = new SpdmError(SpdmErrorCode.InvalidRequest);
    } else {
      this.log.error({ req: spdmCodeLabel(code), err: (e as Error).stack }, "SPDM request failed");
      error = new SpdmError(SpdmErrorCode.Unspecified);
    }
    // libspdm's requester drops its measurement log on such an ERROR; ours must match it.
    if (code === SpdmRequestCode.GET_MEASUREMENTS)
      this.transcript.resetMeasurements(x.session?.measurementLog);
    // ERROR carries the negotiated version; before that 1.0, except that libspdm adopts the
    // version of a GET_CAPABILITIES in its turn before checking the rest of it.
    const acceptable =
      code === SpdmRequestCode.GET_CAPABILITIES &&
      this.current === AfterVersion &&
      this.config.versions.includes(version);
    const errorVersion =
      code === SpdmRequestCode.GET_VERSION
        ? SpdmVersion.V1_0
        : (this.peer?.version ?? (acceptable ? version : SpdmVersion.V1_0));
    return this.errorMessage(error, errorVersion);
  }

  private errorMessage(e: SpdmError, version: number): Buffer {
    return encodeSpdm({ code: "ERROR", version, errorCode: e.errorCode, errorData: e.errorData });
  }

  /** Our capability flags as the requester sees them. */
  private get advertised(): number {
    return this.peer?.ours ?? this.config.flags;
  }

  private get conn(): Connection {
    if (!this.connection) throw new Error(`no negotiated connection in state ${this.current}`);
    return this.connection;
  }

  /** Both sides chunk (1.2+). */
  private get chunking(): boolean {
    const p = this.peer;
    return !!p && p.version >= SpdmVersion.V1_2 && (p.flags & p.ours & ResponderCapability.CHUNK_CAP) !== 0;
  }

  /** Largest message one transfer carries: the requester's DataTransferSize and ours. */
  private get sendLimit(): number {
    return Math.min(this.peer?.dataTransferSize ?? Number.POSITIVE_INFINITY, this.config.dataTransferSize);
  }

  /**
   * Sizes a response for the requester (1.2+): beyond its MaxSPDMmsgSize → ResponseTooLarge;
   * beyond one transfer with chunking → LargeResponse, the message then goes by CHUNK_GET. A
   * CHUNK_SEND_ACK too large to send loses its ACK part, as with libspdm: only the response to
   * the large request is fetched.
   */
  private fit(response: Buffer): Buffer {
    const peer = this.peer;
    const code = response[1];
    if (peer?.maxSpdmMsgSize === undefined || code === SpdmCode.CHUNK_RESPONSE || code === SpdmCode.ERROR)
      return response;
    const large = code === SpdmCode.CHUNK_SEND_ACK ? response.subarray(CHUNK_SEND_ACK_HEADER) : response;
    const chunkable = (this.sendLimit - CHUNK_HEADER) * 0x10000 - LARGE_MESSAGE_SIZE_FIELD; // u16 ChunkSeqNo
    if (large.length > peer.maxSpdmMsgSize || (this.chunking && large.length > chunkable)) {
      const actualSize = Buffer.alloc(4);
      actualSize.writeUInt32LE(large.length);
      // The codec has no field for ResponseTooLarge's extended data (u32 size, as libspdm sends).
      return Buffer.concat([
        this.errorMessage(new SpdmError(SpdmErrorCode.ResponseTooLarge), peer.version),
        actualSize,
      ]);
    }
    if (response.length <= this.sendLimit || !this.chunking) return response;
    this.lastHandle = (this.lastHandle + 1) & 0xff;
    this.largeResponse = { handle: this.lastHandle, seq: 0, message: Buffer.from(large), sent: 0 };
    return encodeSpdm({
      code: "ERROR",
      version: peer.version,
      errorCode: SpdmErrorCode.LargeResponse,
      errorData: 0,
      largeResponseHandle: this.lastHandle,
    });
  }

  // ---- connection setup ---------------------------------------------------------------------

  private getVersion(request: Buffer): Buffer {
    // onRequest() has reset the transcripts; the rest of the connection goes too, sessions included.
    this.sessions.endAll("GET_VERSION");
    this.peer = undefined;
    this.connection = undefined;
    this.largeResponse = undefined;
    this.largeRequest = undefined;
    const response = encodeSpdm({
      code: "VERSION",
      version: SpdmVersion.V1_0,
      versionNumberEntries: this.config.versions.map((v) => versionEntry(v)),
    });
    this.transcript.addVca(request, response);
    return response;
  }

  private getCapabilities(m: GetCapabilities, request: Buffer): Buffer {
    const { version } = m;
    const flags = m.flags ?? 0;
    check(
      version < SpdmVersion.V1_1 ||
        ((m.ctExponent ?? 0) <= MAX_CT_EXPONENT && requesterFlagsValid(flags, version)),
    );
    const chunkCap = (flags & RequesterCapability.CHUNK_CAP) !== 0;
    if (version >= SpdmVersion.V1_2) {
      const dts = m.dataTransferSize ?? 0;
      const max = m.maxSpdmMsgSize ?? 0;
      check(dts >= MIN_DATA_TRANSFER_SIZE && dts <= max && (chunkCap || dts === max));
    }
    const wantsAlgorithms =
      version >= SpdmVersion.V1_3 && (m.attributes & CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS) !== 0;
    check(!wantsAlgorithms || chunkCap);
    const ours = this.config.flags & (FLAGS_IN_VERSION[version] ?? 0);
    const withAlgorithms = wantsAlgorithms && (ours & ResponderCapability.CHUNK_CAP) !== 0;
    const v12 = version >= SpdmVersion.V1_2;
    const response = encodeSpdm({
      code: "CAPABILITIES",
      version,
      attributes: withAlgorithms ? CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS : 0,
      ctExponent: this.config.ctExponent,
      extFlags: 0,
      flags: ours,
      dataTransferSize: v12 ? this.config.dataTransferSize : undefined,
      maxSpdmMsgSize: v12 ? this.config.maxSpdmMsgSize : undefined,
      supportedAlgorithms: withAlgorithms ? this.supportedAlgorithms(ours) : undefined,
    });
    this.peer = {
      version,
      flags,
      dataTransferSize: m.dataTransferSize,
      maxSpdmMsgSize: m.maxSpdmMsgSize,
      ours,
    };
    this.transcript.addVca(request, response);
    return response;
  }

  /** The 1.3 Supported Algorithms block: everything we would select from with flags `ours`. */
  private supportedAlgorithms(ours: number): AlgorithmsRequestFields {
    const c = this.config;
    return {
      measurementSpecification: c.flags & CapabilityField.MEAS_CAP ? MeasurementSpecification.DMTF : 0,
      otherParamsSupport: bits(OPAQUE_FORMATS),
      baseAsymAlgo: bits(c.asym.filter((a) => this.slots.canServe(a)).map((a) => ASYM[a].bit)),
      baseHashAlgo: bits(c.hash.map((h) => HASH[h].bit)),
      melSpecification: 0,
      extAsym: [],
      extHash: [],
      algStructs: Object.keys(this.structs)
        .map((type) => ({
          algType: Number(type),
          algSupported: bits(this.structPreferences(Number(type), ours)),
          extAlgs: [],
        }))
        .filter((t) => t.algSupported !== 0),
    };
  }

  private async negotiateAlgorithms(m: NegotiateAlgorithms, request: Buffer): Promise<Buffer> {
    const { version } = m;
    const peer = this.peer!;
    const v11 = version >= SpdmVersion.V1_1;
    const tables = m.algStructs;
    const extCount = m.extAsym.length + m.extHash.length + tables.reduce((n, t) => n + t.extAlgs.length, 0);
    check(request.length <= (v11 ? 0x80 : 0x40) && extCount <= (v11 ? 20 : 8));
    check(
      tables.every(
        (t, i) =>
          t.algType >= AlgType.DHE &&
          t.algType <= AlgType.KEY_SCHEDULE &&
          t.algSupported !== 0 &&
          (i === 0 || t.algType > tables[i - 1]!.algType),
      ),
    );
    // MULTI_KEY_CONN would ask for our multi-key connection; we advertise no MULTI_KEY_CAP.
    check(version < SpdmVersion.V1_3 || (m.otherParamsSupport & OtherParams.MULTI_KEY_CONN) === 0);
    const measurementSpec =
      (peer.ours & CapabilityField.MEAS_CAP) !== 0 &&
      m.measurementSpecification & MeasurementSpecification.DMTF
        ? MeasurementSpecification.DMTF
        : 0;
    const hashAlg = this.config.hash.find((h) => (m.baseHashAlgo & HASH[h].bit) !== 0);
    const asym = this.config.asym.find((a) => (m.baseAsymAlgo & ASYM[a].bit) !== 0 && this.slots.canServe(a));
    // As libspdm: when a key is to be used, no common hash or asym algorithm is an invalid request;
    // sessions need a hash for their key schedule even without a key (PSK).
    if ((peer.ours & KEY_CAPS) !== 0) check(hashAlg !== undefined && asym !== undefined);
    if ((peer.ours & SESSION_CAPS) !== 0) check(hashAlg !== undefined);
    const measurementHash = measurementSpec ? this.measurementHashFor(hashAlg) : 0;
    // 1.3: the bit tells the requester to use its multi-key connection, which it can only refuse
    // when it supports nothing else (MULTI_KEY_CAP "only"), as libspdm answers.
    const requesterMultiKey =
      version >= SpdmVersion.V1_3 &&
      (peer.flags & CapabilityField.MULTI_KEY_CAP) === RequesterCapability.MULTI_KEY_CAP_ONLY;
    const otherParams =
      version >= SpdmVersion.V1_2
        ? pick(OPAQUE_FORMATS, m.otherParamsSupport) | (requesterMultiKey ? OtherParams.MULTI_KEY_CONN : 0)
        : 0;
    // One answer per table asked about, in its order: our preferred of what it offers, or 0.
    const algStructs = tables.map((t) => ({
      algType: t.algType,
      algSupported: pick(this.structPreferences(t.algType, peer.ours), t.algSupported),
      extAlgs: [],
    }));
    const selected = (type: number) => algStructs.find((t) => t.algType === type)?.algSupported ?? 0;
    const dhe = byBit(DHE, selected(AlgType.DHE));
    const aead = byBit(AEAD, selected(AlgType.AEAD));
    const reqAsym = byBit(ASYM, selected(AlgType.REQ_BASE_ASYM_ALG));
    // libspdm's checks: what both sides' capabilities will use must have been agreed on.
    const both = (req: number, rsp: number) => (peer.flags & req) !== 0 && (peer.ours & rsp) !== 0;
    const R = RequesterCapability;
    const S = ResponderCapability;
    if (both(R.KEY_EX_CAP, S.KEY_EX_CAP)) check(dhe !== undefined);
    if (both(R.ENCRYPT_CAP, S.ENCRYPT_CAP) || both(R.MAC_CAP, S.MAC_CAP)) check(aead !== undefined);
    if (both(R.MUT_AUTH_CAP, S.MUT_AUTH_CAP)) check(reqAsym !== undefined);
    if (both(R.KEY_EX_CAP, S.KEY_EX_CAP) || both(R.PSK_CAP, CapabilityField.PSK_CAP))
      check(selected(AlgType.KEY_SCHEDULE) === KeyScheduleAlgo.SPDM);
    const slots = hashAlg && asym ? await this.provision(hashAlg, asym) : new Map<number, SlotInUse>();
    const response = encodeSpdm({
      code: "ALGORITHMS",
      version,
      measurementSpecificationSel: measurementSpec,
      otherParamsSelection: otherParams,
      measurementHashAlgo: measurementHash,
      baseAsymSel: asym ? ASYM[asym].bit : 0,
      baseHashSel: hashAlg ? HASH[hashAlg].bit : 0,
      melSpecificationSel: 0,
      extAsymSel: [],
      extHashSel: [],
      algStructs,
    });
    this.connection = {
      version,
      hash: hashAlg,
      asym,
      measurementSpec,
      measurementHash,
      slots,
      dhe,
      aead,
      reqAsym,
      otherParams,
      decode: {
        hashSize: hashAlg && HASH[hashAlg].size,
        dheExchangeSize: dhe && DHE[dhe].exchangeSize,
        reqAsymSignatureSize: reqAsym && ASYM[reqAsym].sigSize,
      },
    };
    this.transcript.addVca(request, response);
    return response;
  }

  /** Our preferences for a struct table, none when no capability of `ours` uses it. */
  private structPreferences(type: number, ours: number): readonly number[] {
    return ours & (STRUCT_USED_BY[type] ?? 0) ? (this.structs[type] ?? []) : [];
  }

  /** Measurement hash: the negotiated base hash when configured, else our first choice. */
  private measurementHashFor(base: HashAlgo | undefined): number {
    const prefs = this.config.measurementHash;
    return prefs.find((b) => MEASUREMENT_HASH[b] === base) ?? prefs[0] ?? 0;
  }

  private async provision(h: HashAlgo, asym: AsymAlgo): Promise<Map<number, SlotInUse>> {
    const keys = await this.slots.forAsym(asym);
    return new Map(
      [...keys].map(([slot, k]) => {
        const chain = encodeCertChain(h, k.certsDer);
        return [slot, { chain, digest: hash(h, chain), privateKey: k.privateKey }];
      }),
    );
  }

  // ---- certificates and authentication ------------------------------------------------------

  private getDigests(m: GetDigests, request: Buffer, x: Exchange): Buffer {
    const { slots } = this.conn;
    check(slots.size > 0, "Unspecified");
    const response = encodeSpdm({
      code: "DIGESTS",
      version: m.version,
      supportedSlotMask: m.version >= SpdmVersion.V1_3 ? this.slots.supportedMask : 0,
      provisionedSlotMask: slotMask(slots),
      digests: [...slots.values()].map((s) => s.digest),
    });
    // libspdm keeps in-session certificate traffic out of B: no CHALLENGE signs over it.
    if (!x.session) this.transcript.addCertificateExchange(request, response);
    return response;
  }

  private getCertificate(m: GetCertificate, request: Buffer, x: Exchange): Buffer {
    const slotId = m.slotId & 0xf;
    const slot = this.conn.slots.get(slotId);
    check(slot !== undefined);
    const { chain } = slot;
    const sizeOnly = m.version >= SpdmVersion.V1_3 && (m.attributes & SLOT_SIZE_REQUESTED) !== 0;
    const offset = sizeOnly ? 0 : m.offset;
    check(offset < chain.length);
    // Without chunking a portion must fit one transfer; with it, CHUNK_GET carries any length.
    const room = this.chunking ? Number.POSITIVE_INFINITY : this.sendLimit - CERTIFICATE_HEADER;
    const length = sizeOnly ? 0 : Math.min(m.length, room, chain.length - offset);
    const response = encodeSpdm({
      code: "CERTIFICATE",
      version: m.version,
      slotId,
      attributes: 0,
      remainderLength: sizeOnly ? chain.length : chain.length - offset - length,
      certChain: chain.subarray(offset, offset + length),
    });
    if (!x.session) this.transcript.addCertificateExchange(request, response);
    return response;
  }

  private challenge(m: Challenge, request: Buffer): Buffer {
    // Slot 0xFF (a provisioned public key instead of a chain) is not supported: InvalidRequest.
    const slot = this.conn.slots.get(m.slotId);
    check(slot !== undefined);
    const unsigned = encodeSpdm({
      code: "CHALLENGE_AUTH",
      version: m.version,
      attributes: m.slotId,
      slotMask: slotMask(this.conn.slots),
      certChainHash: slot.digest,
      nonce: randomBytes(NONCE_SIZE),
      measurementSummaryHash: this.measurementSummary(m.measurementSummaryHashType),
      opaqueData: EMPTY,
      requesterContext: m.requesterContext,
      signature: EMPTY,
    });
    const m1 = this.transcript.challenge(request, unsigned);
    const signature = this.sign("CHALLENGE_AUTH", m.slotId, m1);
    this.transcript.markAuthenticated();
    return Buffer.concat([unsigned, signature]);
  }

  private sign(context: SigningContextName, slotId: number, transcript: Buffer): Buffer {
    const { version, hash: h, asym, slots } = this.conn;
    const slot = slots.get(slotId);
    if (!h || !asym || !slot) throw new Error(`cannot sign with slot ${slotId}`);
    return signTranscript({ version, hash: h, asym }, slot.privateKey, context, transcript);
  }

  // ---- measurements -------------------------------------------------------------------------

  /** The measurement blocks: digests of the values with the measurement hash, unless raw. */
  private measurementBlocks(rawRequested: boolean): MeasurementBlock[] {
    const alg = MEASUREMENT_HASH[this.conn.measurementHash]; // none when raw bit streams only
    return this.config.measurements.map(({ index, type, value, raw }) =>
      raw || rawRequested || !alg
        ? dmtfMeasurementBlock(index, type | DMTF_VALUE_TYPE_RAW_BIT_STREAM, value)
        : dmtfMeasurementBlock(index, type, hash(alg, value)),
    );
  }

  /**
   * Hash (base hash) of the concatenated measurement blocks: all, or the TCB ones, which are the
   * immutable-ROM blocks, as in libspdm's sample device.
   */
  private measurementSummary(type: number): Buffer {
    const T = MeasurementSummaryHashType;
    check(type === T.None || type === T.Tcb || type === T.All);
    if (type === T.None) return EMPTY;
    const { measurementSpec, hash: h } = this.conn;
    check(measurementSpec !== 0 && h !== undefined);
    const blocks = this.measurementBlocks(false).filter(
      (b) => type === T.All || b.dmtf?.type === DmtfMeasurementType.ImmutableRom,
    );
    return hash(h, encodeMeasurementRecord(blocks));
  }

  private getMeasurements(m: GetMeasurements, request: Buffer, x: Exchange): Buffer {
    const { version, operation } = m;
    check(this.conn.measurementSpec !== 0, "UnexpectedRequest");
    const signed = (m.attributes & MeasurementAttribute.SIGNATURE_REQUESTED) !== 0;
    // 1.0 has no SlotIDParam: slot 0 signs. 0xF (a provisioned public key) is not supported.
    const slotId = signed && version >= SpdmVersion.V1_1 ? (m.slotIdParam ?? 0) & 0xf : 0;
    check(
      !signed || ((this.peer!.ours & ResponderCapability.MEAS_CAP_SIG) !== 0 && this.conn.slots.has(slotId)),
    );
    const rawRequested =
      version >= SpdmVersion.V1_2 && (m.attributes & MeasurementAttribute.RAW_BIT_STREAM_REQUESTED) !== 0;
    const all = this.measurementBlocks(rawRequested);
    const count = operation === MeasurementOperation.TotalNumber;
    const blocks = count
      ? []
      : operation === MeasurementOperation.All
        ? all
        : all.filter((b) => b.index === operation);
    check(count || blocks.length > 0);
    const unsigned = encodeSpdm({
      code: "MEASUREMENTS",
      version,
      totalMeasurementIndices: count ? all.length : 0,
      // Content-changed bits (1.2) stay 00: no change detection.
      slotIdParam: signed ? slotId : 0,
      numberOfBlocks: blocks.length,
      measurementRecord: encodeMeasurementRecord(blocks),
      nonce: randomBytes(NONCE_SIZE),
      opaqueData: EMPTY,
      requesterContext: m.requesterContext,
      signature: EMPTY,
    });
    // Inside a session the M log is the session's (libspdm), so L1 = A ‖ that session's M.
    const l1 = this.transcript.measurements(version, request, unsigned, signed, x.session?.measurementLog);
    return l1 ? Buffer.concat([unsigned, this.sign("MEASUREMENTS", slotId, l1)]) : unsigned;
  }

  // ---- secure sessions (1.1+) ---------------------------------------------------------------

  /** HANDSHAKE_IN_THE_CLEAR set on both sides: FINISH and FINISH_RSP travel as plain SPDM. */
  private get handshakeInTheClear(): boolean {
    return this.both(
      RequesterCapability.HANDSHAKE_IN_THE_CLEAR_CAP,
      ResponderCapability.HANDSHAKE_IN_THE_CLEAR_CAP,
    );
  }

  /** The requester set one of `req` in GET_CAPABILITIES and we sent one of `rsp` in CAPABILITIES. */
  private both(req: number, rsp: number): boolean {
    const p = this.peer;
    return !!p && (p.flags & req) !== 0 && (p.ours & rsp) !== 0;
  }

  /** The session a session request arrived in (admit() has made sure there is one). */
  private inSession(x: Exchange): SecureSession {
    if (!x.session) throw new Error("a session request outside a session got past admit()");
    return x.session;
  }

  /**
   * What KEY_EXCHANGE and PSK_EXCHANGE share, checked in libspdm's order before a session exists:
   * the capabilities and algorithms, the policy, the DSP0277 version the requester's opaque data
   * offers (our selection goes back in ours), and a free RspSessionID.
   */
  private sessionStart(version: number, policy: number, requestOpaque: Buffer) {
    const c = this.conn;
    const R = RequesterCapability;
    const S = ResponderCapability;
    // Records are encrypted and MACed; libspdm insists on MAC, and MAC-only records are not implemented.
    check(this.both(R.ENCRYPT_CAP, S.ENCRYPT_CAP) && this.both(R.MAC_CAP, S.MAC_CAP));
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
    const rspSessionId = this.sessions.allocate();
    if (rspSessionId === undefined) fail("SessionLimitExceeded");
    return {
      suite: { version, hash: h, aead },
      rspSessionId,
      securedMessageVersion,
      opaqueData:
        securedMessageVersion === undefined ? EMPTY : encodeVersionSelection(version, securedMessageVersion),
      heartbeatPeriod: this.both(R.HBEAT_CAP, S.HBEAT_CAP) ? this.config.heartbeatPeriod : 0,
    };
  }

  private keyExchange(m: KeyExchange, request: Buffer): Buffer {
    const c = this.conn;
    // Slot 0xFF (a provisioned public key) is not supported: InvalidRequest, as for an empty slot.
    const slot = c.slots.get(m.slotId);
    check(slot !== undefined && c.dhe !== undefined);
    const summary = this.measurementSummary(m.measurementSummaryHashType);
    const start = this.sessionStart(m.version, m.sessionPolicy, m.opaqueData);
    const requesterChain = this.mutualAuthChain(m.version);
    const dhe = dheKeyPair(c.dhe);
    const dheSecret = dhe.sharedSecret(m.exchangeData); // not a point on the curve: DecodeError → InvalidRequest
    const session = new SecureSession({
      role: "responder",
      kind: "KEY_EX",
      suite: start.suite,
      reqSessionId: m.reqSessionId,
      rspSessionId: start.rspSessionId,
      transcriptPrefix: sessionTranscriptPrefix(start.suite, {
        vca: this.transcript.vca,
        certChain: slot.chain,
      }),
      handshakeInTheClear: this.handshakeInTheClear,
      mutualAuth: requesterChain !== undefined,
      heartbeatPeriod: start.heartbeatPeriod,
      securedMessageVersion: start.securedMessageVersion,
    });
    const unsigned = encodeSpdm({
      code: "KEY_EXCHANGE_RSP",
      version: m.version,
      heartbeatPeriod: start.heartbeatPeriod,
      rspSessionId: start.rspSessionId,
      // Without encapsulation the requester signs with the chain we hold, which we call slot 0.
      mutAuthRequested: requesterChain ? MutAuthRequested.REQUESTED : 0,
      reqSlotIdParam: 0,
      randomData: randomBytes(RANDOM_DATA_SIZE),
      exchangeData: dhe.exchangeData,
      measurementSummaryHash: summary,
      opaqueData: start.opaqueData,
      signature: EMPTY,
      responderVerifyData: EMPTY,
    });
    // TH: A ‖ Hash(CT) ‖ KEY_EXCHANGE ‖ KEY_EXCHANGE_RSP up to the signature, which signs exactly that.
    session.addTranscript(request, unsigned);
    const signature = this.sign("KEY_EXCHANGE_RSP", m.slotId, session.transcript);
    session.addTranscript(signature);
    session.deriveHandshakeKeys({ dheSecret });
    dheSecret.fill(0);
    const verify = session.handshakeInTheClear ? EMPTY : session.verifyData("response");
    session.addTranscript(verify);
    // Mutual authentication: TH goes on with Hash(requester chain) before FINISH (libspdm's TH for FINISH).
    if (requesterChain) session.addTranscript(hash(start.suite.hash, requesterChain));
    this.sessions.add(session);
    return Buffer.concat([unsigned, signature, verify]);
  }

  /**
   * The requester's SPDM cert chain (negotiated hash) when this session is mutually authenticated.
   * Mutual authentication needs MUT_AUTH_CAP on both sides; when it is required, a requester
   * without it gets libspdm's ERROR for that (InvalidPolicy at 1.3, Unspecified before).
   */
  private mutualAuthChain(version: number): Buffer | undefined {
    const identity = this.config.mutualAuth;
    if (!identity) return undefined;
    if (!this.both(RequesterCapability.MUT_AUTH_CAP, ResponderCapability.MUT_AUTH_CAP)) {
      if (!identity.required) return undefined;
      this.log.info("KEY_EXCHANGE from a requester without MUT_AUTH_CAP; mutual authentication is required");
      fail(version >= SpdmVersion.V1_3 ? "InvalidPolicy" : "Unspecified");
    }
    return encodeCertChain(this.conn.hash!, identity.certsDer);
  }

  private finish(m: Finish, request: Buffer, x: Exchange): Buffer {
    // In the clear FINISH names no session: it completes the last KEY_EXCHANGE (libspdm's latest_session_id).
    const session = x.session ?? this.sessions.awaitingFinish;
    check(session !== undefined, "UnexpectedRequest");
    // A signature comes exactly when KEY_EXCHANGE_RSP asked for one, for the slot it named (libspdm: InvalidRequest).
    const signed = (m.attributes & FINISH_SIGNATURE_INCLUDED) !== 0;
    check(signed === session.mutualAuth && (!signed || m.reqSlotId === 0));
    if (signed) this.verifyFinishSignature(session, request, m, x);
    this.acceptRequesterVerifyData(session, request, m.requesterVerifyData, x);
    const header = encodeSpdm({ code: "FINISH_RSP", version: m.version, responderVerifyData: EMPTY });
    session.addTranscript(header);
    // In the clear the handshake keys protected nothing, so FINISH_RSP proves the key itself.
    const verify = session.handshakeInTheClear ? session.verifyData("response") : EMPTY;
    session.addTranscript(verify);
    x.after.push(() => this.establish(session));
    return Buffer.concat([header, verify]);
  }

  /**
   * The requester's FINISH signature over TH ‖ FINISH up to the signature, by the provisioned
   * chain's leaf with ReqBaseAsymAlg. A wrong one is ERROR DecryptError (libspdm), and the session
   * ends once that ERROR is out.
   */
  private verifyFinishSignature(session: SecureSession, request: Buffer, m: Finish, x: Exchange): void {
    const { version, hash: h, reqAsym } = this.conn;
    const key = this.config.mutualAuth?.publicKey;
    if (!h || !reqAsym || !key)
      throw new Error("a mutual-authentication FINISH without its algorithms or key");
    const signedPart = request.subarray(
      0,
      request.length - m.signature.length - m.requesterVerifyData.length,
    );
    const transcript = Buffer.concat([session.transcript, signedPart]);
    if (!verifyTranscript({ version, hash: h, asym: reqAsym }, key, "FINISH", transcript, m.signature)) {
      this.log.warn({ sessionId: hex32(session.sessionId) }, "FINISH signature does not verify");
      x.after.push(() => this.sessions.end(session, "FINISH signature does not verify"));
      fail("DecryptError");
    }
  }

  private pskExchange(m: PskExchange, request: Buffer, x: Exchange): Buffer {
    const { psk, pskHint } = this.config;
    // An empty hint means the one PSK we hold (as libspdm's sample); any other hint names a key we lack.
    if (m.pskHint.length > 0 && !m.pskHint.equals(pskHint)) {
      this.log.info({ hint: m.pskHint.toString("hex") }, "PSK_EXCHANGE names an unknown PSK hint");
      fail("InvalidRequest");
    }
    const summary = this.measurementSummary(m.measurementSummaryHashType);
    const start = this.sessionStart(m.version, m.sessionPolicy, m.opaqueData);
    // PSK_CAP 10b: a ResponderContext, and PSK_FINISH to confirm it; 01b: neither.
    const withContext = (this.advertised & ResponderCapability.PSK_CAP_RESPONDER_WITH_CONTEXT) !== 0;
    const session = new SecureSession({
      role: "responder",
      kind: "PSK",
      suite: start.suite,
      reqSessionId: m.reqSessionId,
      rspSessionId: start.rspSessionId,
      transcriptPrefix: sessionTranscriptPrefix(start.suite, { vca: this.transcript.vca }),
      heartbeatPeriod: start.heartbeatPeriod,
      securedMessageVersion: start.securedMessageVersion,
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
    this.sessions.add(session);
    // Without PSK_FINISH the data keys follow right away, from TH2 = A ‖ PSK_EXCHANGE ‖ PSK_EXCHANGE_RSP.
    if (!withContext) x.after.push(() => this.establish(session));
    return Buffer.concat([unverified, verify]);
  }

  private pskFinish(m: PskFinish, request: Buffer, x: Exchange): Buffer {
    const session = this.inSession(x);
    this.acceptRequesterVerifyData(session, request, m.requesterVerifyData, x);
    const response = encodeSpdm({ code: "PSK_FINISH_RSP", version: m.version });
    session.addTranscript(response);
    x.after.push(() => this.establish(session));
    return response;
  }

  /**
   * FINISH / PSK_FINISH: the message up to RequesterVerifyData into TH, then the verify data checked
   * and added. A wrong one is ERROR DecryptError (libspdm); the handshake cannot go on after it, so
   * the session ends once that ERROR is out.
   */
  private acceptRequesterVerifyData(
    session: SecureSession,
    request: Buffer,
    verifyData: Buffer,
    x: Exchange,
  ): void {
    session.addTranscript(request.subarray(0, request.length - verifyData.length));
    if (!session.verifyDataMatches("request", verifyData)) {
      this.log.warn({ sessionId: hex32(session.sessionId) }, "RequesterVerifyData does not match");
      x.after.push(() => this.sessions.end(session, "RequesterVerifyData does not match"));
      fail("DecryptError");
    }
    session.addTranscript(verifyData);
  }

  /** TH2 reached and the response that completes it sent: data keys from here on. */
  private establish(session: SecureSession): void {
    session.establish();
    this.log.info(
      {
        sessionId: hex32(session.sessionId),
        kind: session.kind,
        heartbeatPeriod: session.heartbeatPeriod,
        securedMessageVersion: session.securedMessageVersion && versionName(session.securedMessageVersion),
      },
      "session established",
    );
  }

  private heartbeat(version: number, x: Exchange): Buffer {
    // libspdm: a session without a heartbeat period does not expect HEARTBEAT.
    check(this.inSession(x).heartbeatPeriod !== 0, "UnexpectedRequest");
    return encodeSpdm({ code: "HEARTBEAT_ACK", version });
  }

  private keyUpdate(m: KeyUpdate, x: Exchange): Buffer {
    // Applied before the ACK is sealed: UpdateAllKeys's ACK already goes under the new response key,
    // UpdateKey's under the old one; VerifyNewKey drops the backups (session.ts KEY_UPDATE_RULES).
    try {
      this.inSession(x).keyUpdate(m.operation);
    } catch (e) {
      // An unknown operation, Update* before the last one was verified, VerifyNewKey with nothing to verify.
      if (e instanceof SessionError && e.kind === "key-update") fail("InvalidRequest");
      throw e;
    }
    return encodeSpdm({ code: "KEY_UPDATE_ACK", version: m.version, operation: m.operation, tag: m.tag });
  }

  private endSession(m: EndSession, x: Exchange): Buffer {
    // Param1 bit 0 asks to forget the negotiated state we would cache: we cache none (no CACHE_CAP).
    const session = this.inSession(x);
    x.after.push(() => this.sessions.end(session, "END_SESSION"));
    return encodeSpdm({ code: "END_SESSION_ACK", version: m.version });
  }

  // ---- chunking (1.2+) ----------------------------------------------------------------------

  private chunkGet(m: ChunkGet): Buffer {
    check(this.chunking, "UnexpectedRequest");
    const t = this.largeResponse;
    check(t !== undefined, "UnexpectedRequest");
    check(m.handle === t.handle && m.chunkSeqNo === t.seq);
    const first = t.seq === 0;
    const room = this.sendLimit - CHUNK_HEADER - (first ? LARGE_MESSAGE_SIZE_FIELD : 0);
    const chunk = t.message.subarray(t.sent, t.sent + room);
    t.sent += chunk.length;
    const last = t.sent === t.message.length;
    const response = encodeSpdm({
      code: "CHUNK_RESPONSE",
      version: m.version,
      attributes: last ? CHUNK_LAST : 0,
      handle: t.handle,
      chunkSeqNo: t.seq,
      largeMessageSize: first ? t.message.length : undefined,
      chunk,
    });
    t.seq++;
    if (last) this.largeResponse = undefined;
    return response;
  }

  private async chunkSend(m: ChunkSend, request: Buffer, x: Exchange): Promise<Buffer> {
    check(this.chunking, "UnexpectedRequest");
    const ack = (attributes: number, response?: Buffer) =>
      encodeSpdm({
        code: "CHUNK_SEND_ACK",
        version: m.version,
        attributes,
        handle: m.handle,
        chunkSeqNo: m.chunkSeqNo,
        response,
      });
    let whole: Buffer | undefined;
    try {
      whole = this.acceptChunk(m, request.length);
    } catch (e) {
      if (!(e instanceof SpdmError)) throw e;
      // The transfer ends; the ERROR rides in the ACK.
      this.largeRequest = undefined;
      return ack(CHUNK_EARLY_ERROR_DETECTED, this.errorMessage(e, m.version));
    }
    if (!whole) return ack(0);
    // Flow control cannot itself arrive in chunks (libspdm: InvalidRequest).
    const inner = SpdmResponder.RULES.get(whole[1] ?? 0);
    const response = inner?.flow
      ? this.errorMessage(new SpdmError(SpdmErrorCode.InvalidRequest), m.version)
      : await this.respond(whole, x);
    return ack(0, response);
  }

  /** Takes one CHUNK_SEND; the whole request after the last. SpdmError when a chunk does not fit the transfer. */
  private acceptChunk(m: ChunkSend, size: number): Buffer | undefined {
    const last = (m.attributes & CHUNK_LAST) !== 0;
    check(size <= this.config.dataTransferSize);
    let t = this.largeRequest;
    if (!t) {
      const total = m.largeMessageSize ?? 0;
      // A large message is one that does not fit a transfer, so chunk 0 is never the last.
      check(
        m.chunkSeqNo === 0 && total > MIN_DATA_TRANSFER_SIZE && total <= this.config.maxSpdmMsgSize && !last,
      );
      t = { handle: m.handle, seq: 0, size: total, parts: [], received: 0 };
      this.largeRequest = t;
    } else {
      check(m.handle === t.handle && m.chunkSeqNo === t.seq + 1); // a wrapped ChunkSeqNo never matches
      t.seq = m.chunkSeqNo;
    }
    const received = t.received + m.chunk.length;
    check(received <= t.size && (!last || received === t.size));
    t.parts.push(m.chunk);
    t.received = received;
    if (!last) return undefined;
    this.largeRequest = undefined;
    return Buffer.concat(t.parts);
  }
}
