/**
 * The SPDM requester (host side) over any transport that carries one SPDM request to one response.
 * This class holds the connection's state and the one funnel every request takes (`exchange`:
 * Busy, ResponseNotReady → RESPOND_IF_READY, LargeResponse → CHUNK_GET, transcript resets); the
 * messages are functions of their own modules, one family each, as libspdm 1e16c60f's requester
 * library has one file per message:
 *
 *   requester-options.ts       the options, their defaults and checks
 *   requester-vca.ts           GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS
 *   requester-certificates.ts  GET_DIGESTS, GET_CERTIFICATE and chain verification
 *   requester-challenge.ts     CHALLENGE
 *   requester-encap.ts         the responder's encapsulated requests (mutual authentication, KEY_UPDATE)
 *   requester-measurements.ts  GET_MEASUREMENTS and the measurement summary hash
 *   requester-handshake.ts     what both session handshakes share, FINISH / PSK_FINISH
 *   requester-key-exchange.ts  KEY_EXCHANGE (with mutual authentication)
 *   requester-psk.ts           PSK_EXCHANGE
 *   requester-session.ts       opening a session; HEARTBEAT, KEY_UPDATE, END_SESSION inside it
 *   requester-pcisig.ts        PCI-SIG VENDOR_DEFINED_REQUESTs inside a session
 *   requester-ide-km.ts        PCI IDE-KM QUERY, KEY_PROG, K_SET_GO, K_SET_STOP
 *   requester-tdisp.ts         TDISP version, capabilities, state, lock, report, start, stop
 *
 * Everything the responder sends is verified against DSP0274 (1.0–1.4). Requests and defaults mirror
 * DMTF's spdm_requester_emu (spdm-emu 85436d53), so our transcripts are byte for byte what DMTF's
 * responder signs, and a recorded spdm-emu run replays through this class; the order the steps run
 * in is src/requester's. Transcripts (A/B/C/M and their resets) follow libspdm 1e16c60f's rules
 * through Transcript. Every failure is an SpdmRequesterError whose `reason` says exactly what did
 * not hold.
 *
 * Sessions: `inSession` routes `exchange` through a SecureSession (DOE type 2), so digests,
 * certificates and measurements run unchanged inside a session.
 */
import type { KeyObject } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import { type DecodedSpdm, decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  CapabilityField,
  CHUNK_LAST,
  MeasurementSummaryHashType,
  OPAQUE_DATA_FMT_MASK,
  RequesterCapability,
  ResponderCapability,
  SpdmCode,
  SpdmErrorCode,
  SpdmRequestCode,
  spdmCodeLabel,
  spdmErrorLabel,
  versionName,
} from "../../protocol/spdm/codes.js";
import type { DecodeContext } from "../../protocol/spdm/context.js";
import type {
  Algorithms,
  Capabilities,
  ErrorMessage,
  KnownMessageName,
  MessageOf,
  SpdmMessage,
} from "../../protocol/spdm/messages.js";
import { hex } from "../bits.js";
import type { CertChain } from "../crypto/cert-chain.js";
import { publicKeyDer } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import type { EncapOutcome } from "./requester-encap.js";
import { type ResolvedOptions, resolveOptions, type SpdmRequesterOptions } from "./requester-options.js";
import { type SecureSession, SessionError } from "./session.js";
import { type SigningContextName, type SigningSuite, verifyTranscript } from "./signing.js";
import { Transcript } from "./transcript.js";

/** One SPDM request in, one SPDM response out (a DOE transport may add 0–3 zero bytes after it). */
export interface SpdmTransport {
  send(request: Buffer): Promise<Buffer>;
  /** One secured record in, one out (DOE type 2); needed for sessions only. */
  sendSecured?(record: Buffer): Promise<Buffer>;
  /** Asks the device, out of band, for a KEY_UPDATE through encapsulation (spdm-emu's OOB_ENCAP_KEY_UPDATE). */
  requestEncapKeyUpdate?(sessionId: number): Promise<void>;
  /** Asks the device, out of band, for a GET_ENDPOINT_INFO through encapsulation (OOB_ENCAP_ENDPOINT_INFO). */
  requestEncapEndpointInfo?(): Promise<void>;
}

export type SpdmFailure =
  | "transport"
  | "malformed"
  | "unexpected-response"
  | "error-response"
  | "negotiation"
  | "certificate"
  | "challenge"
  | "signature"
  | "measurements"
  | "session";

/** Why a requester run failed: `kind` for code, `reason` (the message) for people. */
export class SpdmRequesterError extends Error {
  override readonly name = "SpdmRequesterError";
  constructor(
    readonly kind: SpdmFailure,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}

/** Throws the SpdmRequesterError; a function declaration, so TypeScript sees that it never returns. */
export function fail(kind: SpdmFailure, reason: string, cause?: unknown): never {
  throw new SpdmRequesterError(kind, reason, cause === undefined ? undefined : { cause });
}

/** What session establishment (requester-session.ts) needs from the negotiated connection. */
export interface RequesterConnection {
  version: number;
  suite: SigningSuite;
  algorithms: Algorithms;
  ctx: DecodeContext;
  requesterFlags: number;
  responderFlags: number;
  /** A: the VCA messages. */
  vca: Buffer;
  /** D, when the connection is a 1.3 multi-key one (it then enters KEY_EXCHANGE's TH). */
  digests: Buffer | undefined;
  slotId: number;
  /** The slot's verified chain, if GET_CERTIFICATE fetched it (slot 0xFF: the provisioned public key). */
  chain(slot: number): PeerKey | undefined;
  /** The configured MeasurementSummaryHashType, None when the responder has no MEAS_CAP. */
  measurementSummaryHashType: number;
  random(size: number): Buffer;
  /** Our certificate chain and key for mutual authentication, if given (no chain: our public key is provisioned, slot 0xFF). */
  requesterIdentity:
    | { certsDer: readonly Uint8Array[]; privateKey: KeyObject; publicKey: boolean }
    | undefined;
}

/** What the transcripts hash for a responder slot (its SPDM chain, or the provisioned key's SPKI), and the key that signs for it. */
export interface PeerKey {
  bytes: Buffer;
  leafKey: KeyObject;
}

export interface Reply {
  requestBytes: Buffer;
  /** The exact response (transport padding cut off). */
  bytes: Buffer;
  message: SpdmMessage;
}

type DecodedReply = Omit<Reply, "requestBytes">;

/** A slot's certificate chain as GET_CERTIFICATE fetched and verified it. */
export interface SlotChain {
  bytes: Buffer;
  chain: CertChain;
  leafKey: KeyObject;
}

const MAX_OPAQUE_DATA = 1024;

/**
 * The requester's state. The message modules read it and record what their responses established;
 * nothing else should write it.
 */
export class SpdmRequester {
  /** The options over REQUESTER_DEFAULTS. */
  readonly options: ResolvedOptions;
  readonly transcript = new Transcript();
  // Set by negotiate() (requester-vca.ts); GET_VERSION/VERSION always travel as 1.0.
  version = 0x10;
  ctx: DecodeContext = {};
  /** GET_CAPABILITIES Flags as sent. */
  sentCapabilities = 0;
  rsp?: Capabilities;
  alg?: Algorithms;
  suite?: SigningSuite;
  /** DIGESTS by slot (requester-certificates.ts). */
  readonly digests = new Map<number, Buffer>();
  /** Verified chains by slot (requester-certificates.ts). */
  readonly chains = new Map<number, SlotChain>();
  // Set by challenge() (requester-challenge.ts).
  challenged = false;
  summaryHash?: Buffer;
  /** The encapsulated requests of basic mutual authentication, when CHALLENGE_AUTH asked for it. */
  basicMutualAuth?: EncapOutcome;
  /** Whether getMeasurements() recomputed CHALLENGE_AUTH's summary hash (requester-measurements.ts). */
  summaryHashChecked = false;
  /** The measurement blocks the last getMeasurements() read, for summary hashes. */
  lastRecord?: Buffer;
  /** The session requests go through; only inSession sets it. */
  channel?: SecureSession;
  private exchanges = 0;
  private securedExchanges = 0;

  constructor(
    private readonly transport: SpdmTransport,
    options: SpdmRequesterOptions = {},
  ) {
    this.options = resolveOptions(options);
  }

  /** What session establishment needs; after negotiate(). */
  get connection(): RequesterConnection {
    if (!this.alg || !this.suite || !this.rsp) throw new Error("the connection is not negotiated yet");
    const o = this.options;
    return {
      version: this.version,
      suite: this.suite,
      algorithms: this.alg,
      ctx: this.ctx,
      requesterFlags: this.sentCapabilities,
      responderFlags: this.rsp.flags,
      vca: this.transcript.vca,
      digests: this.ctx.multiKeyConn ? this.transcript.digests : undefined,
      slotId: o.slotId,
      chain: (slot) => this.peerKey(slot),
      measurementSummaryHashType: this.summaryHashType(),
      random: (size) => this.random(size),
      requesterIdentity: o.requesterKey && {
        certsDer: o.requesterCertChain ?? [],
        privateKey: o.requesterKey,
        publicKey: o.requesterPublicKey ?? false,
      },
    };
  }

  /** The key that signs for `slot`: the provisioned public key for 0xFF, else the verified chain's leaf. */
  peerKey(slot: number): PeerKey | undefined {
    const provisioned = this.options.responderPublicKey;
    if (slot === PUBLIC_KEY_SLOT)
      return provisioned && { bytes: publicKeyDer(provisioned), leafKey: provisioned };
    return this.chains.get(slot);
  }

  /** Runs `body` with every request going through `session` (DOE type 2). */
  async inSession<T>(session: SecureSession, body: () => Promise<T>): Promise<T> {
    const outer = this.channel;
    this.channel = session;
    try {
      return await body();
    } finally {
      this.channel = outer;
    }
  }

  /** The transport's out-of-band request for a responder-initiated KEY_UPDATE in `session`. */
  async requestEncapKeyUpdate(session: SecureSession): Promise<void> {
    if (!this.transport.requestEncapKeyUpdate)
      fail("session", "the transport cannot ask the responder for a key update (OOB_ENCAP_KEY_UPDATE)");
    try {
      await this.transport.requestEncapKeyUpdate(session.sessionId);
    } catch (e) {
      fail("transport", `OOB_ENCAP_KEY_UPDATE: ${(e as Error).message}`, e);
    }
  }

  /** Whether the transport can ask for the responder's encapsulated GET_ENDPOINT_INFO. */
  get canRequestEncapEndpointInfo(): boolean {
    return this.transport.requestEncapEndpointInfo !== undefined;
  }

  /** The transport's out-of-band request for the responder's encapsulated GET_ENDPOINT_INFO. */
  async requestEncapEndpointInfo(): Promise<void> {
    try {
      await this.transport.requestEncapEndpointInfo!();
    } catch (e) {
      fail("transport", `OOB_ENCAP_ENDPOINT_INFO: ${(e as Error).message}`, e);
    }
  }

  /** Requests sent so far, and how many of them went through a session. */
  get counts(): { exchanges: number; secured: number } {
    return { exchanges: this.exchanges, secured: this.securedExchanges };
  }

  /** The responder's MEAS_CAP field (0: no measurements). */
  measCap(): number {
    return this.rsp!.flags & CapabilityField.MEAS_CAP;
  }

  /** The configured MeasurementSummaryHashType, None when the responder has no MEAS_CAP. */
  summaryHashType(): number {
    return this.measCap() === 0 ? MeasurementSummaryHashType.None : this.options.measurementSummaryHashType;
  }

  random(size: number): Buffer {
    const b = this.options.randomBytes(size);
    if (b.length !== size) throw new RangeError(`randomBytes(${size}) gave ${b.length} bytes`);
    return b;
  }

  // ---- checks shared by the messages ----------------------------------------------------------

  verifySignature(
    message: SigningContextName,
    transcript: string,
    key: KeyObject,
    data: Buffer,
    signature: Buffer,
  ): void {
    const s = this.suite!;
    if (!verifyTranscript(s, key, message, data, signature)) {
      fail(
        "signature",
        `${message} signature does not verify over ${transcript} (${s.asym}, ${s.hash}, SPDM ${versionName(s.version)})`,
      );
    }
  }

  checkOpaque(message: string, opaque: Buffer): void {
    if (opaque.length > MAX_OPAQUE_DATA)
      fail("malformed", `${message} OpaqueDataLength ${opaque.length} exceeds ${MAX_OPAQUE_DATA}`);
    if (
      this.version >= 0x12 &&
      opaque.length > 0 &&
      (this.alg!.otherParamsSelection & OPAQUE_DATA_FMT_MASK) === 0
    )
      fail("malformed", `${message} carries opaque data, but no opaque data format was selected`);
  }

  // ---- message exchange -----------------------------------------------------------------------

  /**
   * Sends one request and returns its final response: ResponseNotReady is followed by
   * RESPOND_IF_READY, LargeResponse by CHUNK_GET, Busy by a re-send (each bounded). Other ERRORs are
   * returned for the caller to judge. Applies the transcript reset rules for the request first.
   * Inside inSession() everything goes through the session.
   */
  async exchange(request: SpdmMessage, extra: DecodeContext = {}): Promise<Reply> {
    const requestBytes = encodeSpdm(request);
    const code = SpdmCode[request.code as KnownMessageName];
    const ctx = { ...this.ctx, ...extra };
    this.transcript.onRequest(code, this.channel?.measurementLog);
    for (let busy = 0; ; busy++) {
      let reply = await this.roundTrip(requestBytes, ctx);
      for (let round = 0; isError(reply, SpdmErrorCode.ResponseNotReady); round++) {
        if (round === this.options.notReadyRetries)
          fail("error-response", `${request.code} still not ready after ${round} RESPOND_IF_READY`);
        reply = await this.respondIfReady(request.code, code, reply.message as ErrorMessage, ctx);
      }
      if (isError(reply, SpdmErrorCode.LargeResponse))
        reply = await this.chunkGet(request.code, reply.message as ErrorMessage, ctx);
      // libspdm 1e16c60f drops the measurement log on any ERROR to GET_MEASUREMENTS except ResponseNotReady.
      if (reply.message.code === "ERROR" && code === SpdmRequestCode.GET_MEASUREMENTS)
        this.transcript.resetMeasurements(this.channel?.measurementLog);
      if (isError(reply, SpdmErrorCode.Busy) && busy < this.options.busyRetries) {
        // Back off: a device busy again is given twice as long each time.
        await this.options.sleep(this.options.busyDelayMs * 2 ** busy);
        continue;
      }
      return { requestBytes, ...reply };
    }
  }

  private async respondIfReady(name: string, code: number, error: ErrorMessage, ctx: DecodeContext) {
    const rnr = error.responseNotReady!;
    if (rnr.requestCode !== code)
      fail("malformed", `ResponseNotReady to ${name} names request ${spdmCodeLabel(rnr.requestCode)}`);
    // The hint is 2^RDTExponent µs; a responder may not stall us longer than maxNotReadyWaitMs.
    await this.options.sleep(Math.min(2 ** rnr.rdtExponent / 1000, this.options.maxNotReadyWaitMs));
    const request = encodeSpdm({
      code: "RESPOND_IF_READY",
      version: this.version,
      requestCode: code,
      token: rnr.token,
    });
    return this.roundTrip(request, ctx);
  }

  private async chunkGet(name: string, error: ErrorMessage, ctx: DecodeContext) {
    const bothChunk =
      (this.sentCapabilities & RequesterCapability.CHUNK_CAP) !== 0 &&
      ((this.rsp?.flags ?? 0) & ResponderCapability.CHUNK_CAP) !== 0;
    if (this.version < 0x12 || !bothChunk)
      fail(
        "error-response",
        `responder answered ${name} with ERROR LargeResponse, but CHUNK_CAP was not negotiated`,
      );
    const handle = error.largeResponseHandle!;
    const chunks: Buffer[] = [];
    let size = 0;
    let got = 0;
    for (let seq = 0; ; seq++) {
      if (seq >= (this.version >= 0x14 ? 2 ** 32 : 0x10000))
        fail("malformed", `CHUNK_RESPONSE sequence for ${name} does not end`);
      const r = await this.roundTrip(
        encodeSpdm({ code: "CHUNK_GET", version: this.version, handle, chunkSeqNo: seq }),
        {},
      );
      const c = expectResponse({ requestBytes: Buffer.alloc(0), ...r }, "CHUNK_RESPONSE", "CHUNK_GET");
      if (c.handle !== handle || c.chunkSeqNo !== seq)
        fail(
          "malformed",
          `CHUNK_RESPONSE is handle ${c.handle} seq ${c.chunkSeqNo}, we asked handle ${handle} seq ${seq}`,
        );
      if (seq === 0) size = c.largeMessageSize!;
      got += c.chunk.length;
      chunks.push(c.chunk);
      if (got > size || size > this.options.maxSpdmMsgSize)
        fail(
          "malformed",
          `chunked ${name} response exceeds its LargeMessageSize ${size} (or our MaxSPDMmsgSize)`,
        );
      if (c.attributes & CHUNK_LAST) break;
    }
    if (got !== size)
      fail("malformed", `chunked ${name} response is ${got} bytes, LargeMessageSize says ${size}`);
    return this.decode(Buffer.concat(chunks), ctx);
  }

  private async roundTrip(request: Buffer, ctx: DecodeContext): Promise<DecodedReply> {
    this.exchanges++;
    const name = spdmCodeLabel(request[1]!);
    let payload: Buffer;
    try {
      payload = this.channel
        ? await this.securedRoundTrip(this.channel, request)
        : await this.transport.send(request);
    } catch (e) {
      if (e instanceof SpdmRequesterError) throw e;
      if (e instanceof SessionError) fail("session", `${name}: ${e.message}`, e);
      fail("transport", `${name}: ${(e as Error).message}`, e);
    }
    return this.decode(payload, ctx);
  }

  /**
   * One request/response inside a session: seal, send as DOE type 2, open. KEY_UPDATE changes keys
   * between the request and its ACK (the rule is SecureSession.keyUpdate's); an answer other than
   * the ACK means the responder did not update, so neither do we.
   */
  private async securedRoundTrip(session: SecureSession, request: Buffer): Promise<Buffer> {
    if (!this.transport.sendSecured)
      fail("session", "the transport cannot carry secured messages (DOE type 2)");
    const record = session.seal(request);
    const keyUpdate = request[1] === SpdmRequestCode.KEY_UPDATE ? request[2] : undefined;
    if (keyUpdate !== undefined) session.keyUpdate(keyUpdate);
    this.securedExchanges++;
    const response = session.open(await this.transport.sendSecured(record));
    if (keyUpdate !== undefined && response[1] !== SpdmCode.KEY_UPDATE_ACK) session.abandonKeyUpdate();
    return response;
  }

  private decode(payload: Buffer, ctx: DecodeContext): DecodedReply {
    const expected = this.version;
    if (payload.length >= 4 && payload[0] !== expected) {
      fail(
        "unexpected-response",
        `${spdmCodeLabel(payload[1]!)} carries SPDM version ${versionName(payload[0]!)}, expected ${versionName(expected)}`,
      );
    }
    let d: DecodedSpdm;
    try {
      d = decodeSpdmWithLength(payload, ctx);
    } catch (e) {
      if (e instanceof DecodeError)
        fail("malformed", `malformed ${spdmCodeLabel(payload[1] ?? 0)}: ${e.message}`, e);
      throw e;
    }
    return { message: d.message, bytes: payload.subarray(0, d.byteLength) };
  }
}

function isError(reply: DecodedReply, code: number): boolean {
  return reply.message.code === "ERROR" && reply.message.errorCode === code;
}

/** The response as `name`, or an SpdmRequesterError saying what came instead. */
export function expectResponse<N extends KnownMessageName>(
  reply: Reply,
  name: N,
  requestName?: string,
): MessageOf<N> {
  const m = reply.message;
  if (m.code === name) return m as MessageOf<N>;
  const req = requestName ?? spdmCodeLabel(reply.requestBytes[1] ?? 0);
  if (m.code === "ERROR") {
    const data = m.errorData === 0 ? "" : ` (ErrorData ${hex(m.errorData)})`;
    fail("error-response", `responder answered ${req} with ERROR ${spdmErrorLabel(m.errorCode)}${data}`);
  }
  const got = m.code === "UNKNOWN" ? spdmCodeLabel(m.requestResponseCode) : m.code;
  fail("unexpected-response", `responder answered ${req} with ${got}, expected ${name}`);
}

/** The signed part of a response whose last field is the signature. */
export function withoutSignature(bytes: Buffer, signature: Buffer): Buffer {
  return bytes.subarray(0, bytes.length - signature.length);
}
