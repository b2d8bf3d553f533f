/**
 * The SPDM 1.0–1.3 responder of one DOE mailbox (PROTOCOL-FACTS 3). A DOE mailbox is one SPDM
 * endpoint, so its socket endpoint and its config-space registers reach the same responder.
 * It answers connection setup (GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS), GET_DIGESTS,
 * GET_CERTIFICATE, CHALLENGE, GET_MEASUREMENTS and chunked transfers (CHUNK_SEND / CHUNK_GET).
 * Secured sessions are not here: KEY_EX/PSK/ENCRYPT/MAC are not advertised.
 *
 * handle() never throws: whatever a request does wrong becomes the ERROR DSP0274 names and the
 * connection carries on. While a chunked transfer is under way only its own messages and
 * GET_VERSION are expected (UnexpectedRequest, the transfer survives); otherwise the checks run
 * in this order, before the body is looked at:
 *   not implemented, capability not advertised, or newer than the negotiated version
 *     → UnsupportedRequest (Param2 = the request code);
 *   SPDMVersion other than the negotiated one (1.0 for GET_VERSION) → VersionMismatch;
 *   not expected in this state → UnexpectedRequest;
 * then a body that does not decode, or a field out of range → InvalidRequest.
 *
 * Transcripts follow libspdm (transcript.ts), since DMTF's requester verifies exactly that. A
 * response larger than one transfer to the requester is logged whole and then sent by CHUNK_GET.
 * ResponseNotReady is never sent (every answer is computed at once), so RESPOND_IF_READY is
 * always unexpected.
 */
import { type KeyObject, randomBytes } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import { decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  AlgType,
  CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS,
  CapabilityField,
  CHUNK_EARLY_ERROR_DETECTED,
  CHUNK_LAST,
  DMTF_VALUE_TYPE_RAW_BIT_STREAM,
  DmtfMeasurementType,
  MeasurementAttribute,
  MeasurementHashAlgo,
  MeasurementOperation,
  MeasurementSpecification,
  MeasurementSummaryHashType,
  NONCE_SIZE,
  OtherParams,
  RequesterCapability,
  ResponderCapability,
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
  GetCapabilities,
  GetCertificate,
  GetDigests,
  GetMeasurements,
  KnownMessageName,
  MessageOf,
  NegotiateAlgorithms,
} from "../../protocol/spdm/messages.js";
import { encodeCertChain } from "../crypto/cert-chain.js";
import { ASYM, type AsymAlgo, HASH, type HashAlgo, hash } from "../crypto/suites.js";
import { type Logger, silentLogger } from "../log.js";
import type { ResponderConfig } from "./responder-settings.js";
import type { CertificateSlots } from "./responder-slots.js";
import { type SigningContextName, signTranscript } from "./signing.js";
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
}

/** A response waiting to be fetched by CHUNK_GET. */
interface LargeResponse {
  handle: number;
  seq: number;
  message: Buffer;
  sent: number;
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
  /** Flow control (chunks, RESPOND_IF_READY): no transcript effect. */
  flow?: boolean;
  // Method syntax on purpose: each rule narrows the message type, the table holds them all.
  handle(r: SpdmResponder, m: MessageOf<N>, request: Buffer): Buffer | Promise<Buffer>;
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
      handle: (r, _m, request) => r.getVersion(request),
    },
    GET_CAPABILITIES: {
      states: [AfterVersion],
      next: AfterCapabilities,
      handle: (r, m, q) => r.getCapabilities(m, q),
    },
    NEGOTIATE_ALGORITHMS: {
      states: [AfterCapabilities],
      next: Negotiated,
      handle: (r, m, q) => r.negotiateAlgorithms(m, q),
    },
    GET_DIGESTS: {
      states: [Negotiated],
      cap: ResponderCapability.CERT_CAP,
      handle: (r, m, q) => r.getDigests(m, q),
    },
    GET_CERTIFICATE: {
      states: [Negotiated],
      cap: ResponderCapability.CERT_CAP,
      handle: (r, m, q) => r.getCertificate(m, q),
    },
    CHALLENGE: {
      states: [Negotiated],
      cap: ResponderCapability.CHAL_CAP,
      handle: (r, m, q) => r.challenge(m, q),
    },
    GET_MEASUREMENTS: {
      states: [Negotiated],
      cap: CapabilityField.MEAS_CAP,
      handle: (r, m, q) => r.getMeasurements(m, q),
    },
    CHUNK_SEND: {
      states: [AfterCapabilities, Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CHUNK_CAP,
      flow: true,
      handle: (r, m, q) => r.chunkSend(m, q),
    },
    CHUNK_GET: {
      states: [AfterCapabilities, Negotiated],
      since: SpdmVersion.V1_2,
      cap: ResponderCapability.CHUNK_CAP,
      flow: true,
      handle: (r, m) => r.chunkGet(m),
    },
    // Without ResponseNotReady nothing is ever pending.
    RESPOND_IF_READY: { states: [], flow: true, handle: () => fail("UnexpectedRequest") },
  });

  private current: ResponderState = NotStarted;
  private peer: Peer | undefined;
  private connection: Connection | undefined;
  private readonly transcript = new Transcript();
  private largeResponse: LargeResponse | undefined;
  private largeRequest: LargeRequest | undefined;
  private lastHandle = 0;
  private readonly structs: Readonly<Record<number, readonly number[]>>;

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
  }

  get state(): ResponderState {
    return this.current;
  }

  /** One SPDM request (DOE padding allowed) in, one SPDM response out. Never throws. */
  async handle(request: Buffer): Promise<Buffer> {
    const response = this.fit(await this.respond(request));
    if (this.log.isLevelEnabled("debug")) {
      this.log.debug(
        {
          version: versionName(request[0] ?? 0),
          req: label(request),
          rsp: label(response),
          bytes: [request.length, response.length],
        },
        "SPDM exchange",
      );
    }
    return response;
  }

  // ---- dispatch -------------------------------------------------------------------------------

  private async respond(request: Buffer): Promise<Buffer> {
    const version = request[0] ?? 0;
    const code = request[1] ?? 0;
    try {
      check(request.length >= 4);
      const rule = this.admit(code, version);
      const { message, byteLength } = decodeSpdmWithLength(request);
      // Reset rules apply to any well-formed request, whatever its answer: libspdm's requester
      // applies them when it sends.
      if (!rule.flow) this.transcript.onRequest(code);
      const response = await rule.handle(
        this,
        message as MessageOf<KnownMessageName>,
        request.subarray(0, byteLength),
      );
      if (rule.next) this.current = rule.next;
      return response;
    } catch (e) {
      return this.errorFor(e, code, version);
    }
  }

  /** The rule for a request, or the ERROR that refuses it (see the file comment for the order). */
  private admit(code: number, version: number): Rule {
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
      (rule.cap !== undefined && (this.advertised & rule.cap) === 0)
    ) {
      fail("UnsupportedRequest", code);
    }
    if (!this.versionAccepted(code, version)) fail("VersionMismatch");
    if (!rule.states.includes(this.current)) fail("UnexpectedRequest");
    return rule;
  }

  private versionAccepted(code: number, version: number): boolean {
    if (code === SpdmRequestCode.GET_VERSION) return version === SpdmVersion.V1_0;
    if (this.peer) return version === this.peer.version;
    if (code === SpdmRequestCode.GET_CAPABILITIES) return this.config.versions.includes(version);
    return true; // nothing negotiated yet: the state check answers
  }

  private errorFor(e: unknown, code: number, version: number): Buffer {
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
    if (code === SpdmRequestCode.GET_MEASUREMENTS) this.transcript.resetMeasurements();
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
    // onRequest() has reset the transcripts; the rest of the connection goes too.
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
    // As libspdm: when a key is to be used, no common hash or asym algorithm is an invalid request.
    if ((peer.ours & KEY_CAPS) !== 0) check(hashAlg !== undefined && asym !== undefined);
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
      // One answer per table asked about, in its order: our preferred of what it offers, or 0.
      algStructs: tables.map((t) => ({
        algType: t.algType,
        algSupported: pick(this.structPreferences(t.algType, peer.ours), t.algSupported),
        extAlgs: [],
      })),
    });
    this.connection = { version, hash: hashAlg, asym, measurementSpec, measurementHash, slots };
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

  private getDigests(m: GetDigests, request: Buffer): Buffer {
    const { slots } = this.conn;
    check(slots.size > 0, "Unspecified");
    const response = encodeSpdm({
      code: "DIGESTS",
      version: m.version,
      supportedSlotMask: m.version >= SpdmVersion.V1_3 ? this.slots.supportedMask : 0,
      provisionedSlotMask: slotMask(slots),
      digests: [...slots.values()].map((s) => s.digest),
    });
    this.transcript.addCertificateExchange(request, response);
    return response;
  }

  private getCertificate(m: GetCertificate, request: Buffer): Buffer {
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
    this.transcript.addCertificateExchange(request, response);
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

  private getMeasurements(m: GetMeasurements, request: Buffer): Buffer {
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
    const l1 = this.transcript.measurements(version, request, unsigned, signed);
    return l1 ? Buffer.concat([unsigned, this.sign("MEASUREMENTS", slotId, l1)]) : unsigned;
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

  private async chunkSend(m: ChunkSend, request: Buffer): Promise<Buffer> {
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
      : await this.respond(whole);
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
