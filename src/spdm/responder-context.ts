/**
 * What the responder's message handlers share (responder.ts dispatches to them): the ERROR a
 * handler answers with, the exchange a request travels in, the SPDM connection as far as it has
 * been set up, and the responder's parts, of which each handler family takes only those it needs.
 */
import type { KeyObject } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  RequesterCapability,
  ResponderCapability,
  SpdmErrorCode,
  type SpdmErrorName,
  SpdmRequestCode,
  SpdmVersion,
  spdmCodeLabel,
  spdmErrorLabel,
} from "../../protocol/spdm/codes.js";
import type { DecodeContext } from "../../protocol/spdm/context.js";
import type { ErrorMessage } from "../../protocol/spdm/messages.js";
import type { AeadAlgo, AsymAlgo, DheAlgo, HashAlgo } from "../crypto/suites.js";
import type { Logger } from "../log.js";
import type { Provisioning } from "./provisioning.js";
import type { EncapFlows } from "./responder-encap.js";
import type { ResponderSessions } from "./responder-sessions.js";
import type { ResponderConfig } from "./responder-settings.js";
import type { CertificateSlots } from "./responder-slots.js";
import type { SecureSession, SessionState } from "./session.js";
import { type SigningContextName, signTranscript } from "./signing.js";
import type { Transcript } from "./transcript.js";

export const EMPTY = Buffer.alloc(0);
/** DSP0274's smallest DataTransferSize; a large message is one that does not fit it. */
export const MIN_DATA_TRANSFER_SIZE = 42;

/** An ERROR to answer with; thrown by the checks and handlers, caught by the dispatcher. */
export class SpdmError extends Error {
  constructor(
    readonly errorCode: number,
    readonly errorData = 0,
    /** Extended error data (DataTooLarge's size). */
    readonly extended: Pick<ErrorMessage, "dataSize"> = {},
  ) {
    // An answer, not a fault: no stack trace. Capturing one was half the cost of an ERROR, and
    // DMTF's requester draws hundreds per flow (it asks for every measurement index in turn).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(spdmErrorLabel(errorCode));
    Error.stackTraceLimit = limit;
  }
}

export function fail(name: SpdmErrorName, data = 0, extended: Pick<ErrorMessage, "dataSize"> = {}): never {
  throw new SpdmError(SpdmErrorCode[name], data, extended);
}

export function check(ok: boolean, name: SpdmErrorName = "InvalidRequest"): asserts ok {
  if (!ok) fail(name);
}

export function errorMessage(e: SpdmError, version: number): Buffer {
  return encodeSpdm({
    code: "ERROR",
    version,
    errorCode: e.errorCode,
    errorData: e.errorData,
    ...e.extended,
  });
}

/**
 * The ERROR answering a failed request: its own SpdmError, InvalidRequest for a body that does not
 * decode, Unspecified (logged) for anything else. `awaitingCapabilities`: the responder's state is
 * AfterVersion, where libspdm adopts a GET_CAPABILITIES' version before checking the rest of it.
 */
export function errorFor(
  c: Pick<ResponderContext, "config" | "connection" | "log" | "transcript">,
  e: unknown,
  request: { code: number; version: number; awaitingCapabilities: boolean },
  x: Exchange,
): Buffer {
  const { code, version } = request;
  let error: SpdmError;
  if (e instanceof SpdmError) error = e;
  else if (e instanceof DecodeError) {
    c.log.debug({ req: spdmCodeLabel(code), err: e.message }, "malformed SPDM request");
    error = new SpdmError(SpdmErrorCode.InvalidRequest);
  } else {
    c.log.error(
      { req: spdmCodeLabel(code), err: e instanceof Error ? e.stack : String(e) },
      "SPDM request failed",
    );
    error = new SpdmError(SpdmErrorCode.Unspecified);
  }
  // libspdm's requester drops its measurement log on such an ERROR; ours must match it.
  if (code === SpdmRequestCode.GET_MEASUREMENTS) c.transcript.resetMeasurements(x.session?.measurementLog);
  // ERROR carries the negotiated version; before that 1.0, except for GET_CAPABILITIES in its turn.
  const acceptable =
    code === SpdmRequestCode.GET_CAPABILITIES &&
    request.awaitingCapabilities &&
    c.config.versions.includes(version);
  const errorVersion =
    code === SpdmRequestCode.GET_VERSION
      ? SpdmVersion.V1_0
      : (c.connection.peer?.version ?? (acceptable ? version : SpdmVersion.V1_0));
  return errorMessage(error, errorVersion);
}

/** One request on its way through the responder. */
export interface Exchange {
  /** The session the request arrived in (DOE type 2), if any; its response is sealed in it. */
  session?: SecureSession;
  /**
   * What must happen only once the response is sealed or sent: the switch to data keys after
   * FINISH_RSP, the end of a session after END_SESSION_ACK or a bad verify data.
   */
  after: (() => void)[];
  /** Answer ResponseNotReady first, whatever the settings say (an injected fault). */
  holdBack?: boolean;
}

/**
 * Where a request may arrive: as plain SPDM (DOE type 1), or inside a session (DOE type 2) in the
 * given state. Default: plain or in an established session.
 */
export type Channel = "plain" | Exclude<SessionState, "ended">;
export const ANYWHERE: readonly Channel[] = ["plain", "established"];
export const PLAIN: readonly Channel[] = ["plain"];
export const IN_SESSION: readonly Channel[] = ["established"];
export const HANDSHAKE: readonly Channel[] = ["handshaking"];
/** Chunks carry whatever the channel carries, FINISH and PSK_FINISH included; the inner request is admitted on its own. */
export const ANY_CHANNEL: readonly Channel[] = ["plain", "handshaking", "established"];

/** The session a session request arrived in (the dispatcher has made sure there is one). */
export function inSession(x: Exchange): SecureSession {
  if (!x.session) throw new Error("a session request outside a session got past admission");
  return x.session;
}

/** What the requester told us in GET_CAPABILITIES, and what we answered. */
export interface Peer {
  version: number;
  /** RequesterCapability bits (none at 1.0). */
  flags: number;
  /** 1.2+ */
  dataTransferSize?: number;
  maxSpdmMsgSize?: number;
  /** Our flags as sent for this version. */
  ours: number;
}

export interface SlotInUse {
  /** The SPDM certificate chain for the negotiated hash (its RootHash depends on it). */
  chain: Buffer;
  digest: Buffer;
  privateKey: KeyObject;
}

/** What NEGOTIATE_ALGORITHMS selected, and the slots serving it. */
export interface Selection {
  version: number;
  /** Absent only when no capability needs them (no CERT, CHAL or MEAS_SIG). */
  hash?: HashAlgo;
  asym?: AsymAlgo;
  measurementSpec: number;
  /** MeasurementHashAlgo bit, 0 without a measurement specification. */
  measurementHash: number;
  /** MELSpecificationSel (1.3), 0 without MEL_CAP. */
  melSpec: number;
  /** The slots serving the negotiated asym algorithm, lowest first. */
  slots: Map<number, SlotInUse>;
  /** Struct-table selections (none without a capability using them). */
  dhe?: DheAlgo;
  aead?: AeadAlgo;
  /** ReqBaseAsymAlg, selected when both sides advertise MUT_AUTH_CAP. */
  reqAsym?: AsymAlgo;
  /** OtherParamsSelection (1.2+): the opaque data format. */
  otherParams: number;
  /**
   * A 1.3 multi-key connection for our keys: DIGESTS carries each slot's KeyPairID, certificate
   * model and key usage, CERTIFICATE its certificate model, and the first DIGESTS enters TH.
   */
  multiKeyConn: boolean;
  /** What request decoding needs: H for verify data, D for ExchangeData. */
  decode: DecodeContext;
}

/** The SPDM connection as far as it has been set up; GET_VERSION starts a new one. */
export class Connection {
  peer: Peer | undefined;
  selection: Selection | undefined;
  /**
   * Pre-shared keys the device provisioned in this connection, by hint (hex): CXL TSP's secondary
   * session keys, which SET_TARGET_CONFIGURATION carries. They go with the connection.
   */
  readonly psks = new Map<string, Buffer>();

  constructor(private readonly config: ResponderConfig) {}

  reset(): void {
    this.peer = undefined;
    this.selection = undefined;
    this.psks.clear();
  }

  /** The key PSK_EXCHANGE's hint names: one provisioned in this connection, else the configured one. */
  psk(hint: Buffer): Buffer | undefined {
    const provisioned = this.psks.get(hint.toString("hex"));
    if (provisioned) return provisioned;
    // An empty hint means the one PSK we hold (as libspdm's sample).
    return hint.length === 0 || hint.equals(this.config.pskHint) ? this.config.psk : undefined;
  }

  /** The selection, for handlers of requests that are admitted only once it exists. */
  get negotiated(): Selection {
    if (!this.selection) throw new Error("no negotiated connection");
    return this.selection;
  }

  /** Our capability flags as the requester sees them. */
  get advertised(): number {
    return this.peer?.ours ?? this.config.flags;
  }

  /** The requester set one of `req` in GET_CAPABILITIES and we sent one of `rsp` in CAPABILITIES. */
  both(req: number, rsp: number): boolean {
    const p = this.peer;
    return !!p && (p.flags & req) !== 0 && (p.ours & rsp) !== 0;
  }

  /** Both sides chunk (1.2+). */
  get chunking(): boolean {
    const p = this.peer;
    return !!p && p.version >= SpdmVersion.V1_2 && (p.flags & p.ours & ResponderCapability.CHUNK_CAP) !== 0;
  }

  /** Largest message one transfer carries: the requester's DataTransferSize and ours. */
  get sendLimit(): number {
    return Math.min(this.peer?.dataTransferSize ?? Number.POSITIVE_INFINITY, this.config.dataTransferSize);
  }

  /** HANDSHAKE_IN_THE_CLEAR set on both sides: FINISH and FINISH_RSP travel as plain SPDM. */
  get handshakeInTheClear(): boolean {
    return this.both(
      RequesterCapability.HANDSHAKE_IN_THE_CLEAR_CAP,
      ResponderCapability.HANDSHAKE_IN_THE_CLEAR_CAP,
    );
  }

  /** A signature over `transcript` by the key of `slotId`, with the negotiated algorithms. */
  sign(context: SigningContextName, slotId: number, transcript: Buffer): Buffer {
    const { version, hash: h, asym, slots } = this.negotiated;
    const slot = slots.get(slotId);
    if (!h || !asym || !slot) throw new Error(`cannot sign with slot ${slotId}`);
    return signTranscript({ version, hash: h, asym }, slot.privateKey, context, transcript);
  }
}

/**
 * The parts of one responder. Each handler family takes the few it needs (a Pick of this), so
 * that its signature says what of the responder's state it reads and changes.
 */
export interface ResponderContext {
  readonly config: ResponderConfig;
  readonly slots: CertificateSlots;
  readonly log: Logger;
  readonly connection: Connection;
  /** The connection's transcripts (VCA, B, C, M); a session's own are in its SecureSession. */
  readonly transcript: Transcript;
  readonly sessions: ResponderSessions;
  /** Installed slots and key pairs (the device's, shared by its functions). */
  readonly provisioning: Provisioning;
  /** Our encapsulated requests to the requester (mutual authentication, our KEY_UPDATE). */
  readonly encap: EncapFlows;
}
