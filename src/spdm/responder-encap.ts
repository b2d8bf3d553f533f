/**
 * The responder's own requests to the requester (DSP0274 encapsulated request flow): the requester
 * fetches each with GET_ENCAPSULATED_REQUEST (the first) or DELIVER_ENCAPSULATED_RESPONSE (which
 * answers the previous one), and ENCAPSULATED_REQUEST / ENCAPSULATED_RESPONSE_ACK carry it. As in
 * libspdm (libspdm_rsp_encap_*.c) one flow runs at a time, armed by what needs it:
 *
 *   session-auth  KEY_EXCHANGE_RSP asked for mutual authentication WITH_ENCAP_REQUEST (or
 *                 WITH_GET_DIGESTS: the GET_DIGESTS counts as sent, RequestID 0): GET_DIGESTS,
 *                 GET_CERTIFICATE until the chain is whole; the chain is verified against the
 *                 configured roots, Hash(chain) joins TH, and FINISH must be signed by its leaf.
 *   basic-auth    CHALLENGE_AUTH asked for basic mutual authentication (Param1 bit 7): the same,
 *                 then CHALLENGE, whose CHALLENGE_AUTH must verify over A ‖ mut B ‖ mut C; with
 *                 the requester's public key provisioned, CHALLENGE to slot 0xFF alone (libspdm).
 *   key-update    spdm-emu's OOB_ENCAP_KEY_UPDATE for an established session: KEY_UPDATE UpdateKey
 *                 (our response key), then VerifyNewKey, whose ACK is the first under the new key.
 *   endpoint-info spdm-emu's OOB_ENCAP_ENDPOINT_INFO (libspdm_rsp_encap_get_endpoint_info.c): in
 *                 whichever channel GET_ENCAPSULATED_REQUEST comes (plain, or an established
 *                 session, as libspdm takes the last request's), GET_ENDPOINT_INFO for the
 *                 requester's slot 0, a signature requested when it advertises EP_INFO_CAP_SIG and we
 *                 have its key: the chain verified earlier in this connection, else the provisioned
 *                 WO_ENCAP chain, else one fetched first (GET_DIGESTS, GET_CERTIFICATE, checked
 *                 against the trust roots). The signature must verify over
 *                 A ‖ GET_ENDPOINT_INFO ‖ ENDPOINT_INFO without it (libspdm's IL with message_encap_e).
 *
 * States and the one transition table (STEPS): Idle → Armed (a flow waits for
 * GET_ENCAPSULATED_REQUEST) → the request sent (Digests, Certificate, Challenge, UpdateKey,
 * VerifyNewKey, EndpointInfo), each of which the delivered response moves to the next one or back to Idle (the
 * ACK then carries nothing more). A response that fails a check ends the flow with an ERROR, and a
 * session being authenticated with it.
 */
import { type KeyObject, randomBytes } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import { decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  KeyUpdateOperation,
  NONCE_SIZE,
  REQUESTER_CONTEXT_SIZE,
  RequesterCapability,
  SpdmVersion,
  spdmCodeLabel,
  spdmErrorLabel,
} from "../../protocol/spdm/codes.js";
import type { DeliverEncapsulatedResponse, GetEncapsulatedRequest } from "../../protocol/spdm/encap.js";
import { EncapPayloadType } from "../../protocol/spdm/encap.js";
import type { SpdmMessage } from "../../protocol/spdm/messages.js";
import {
  ENDPOINT_INFO_SIGNATURE_REQUESTED,
  ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER,
} from "../../protocol/spdm/provision.js";
import { hex32 } from "../bits.js";
import { decodeCertChain } from "../crypto/cert-chain.js";
import { ASYM, hash, keyFits } from "../crypto/suites.js";
import { CertChainError, verifyCertChain } from "../crypto/verify-chain.js";
import type { Logger } from "../log.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import { check, EMPTY, type Exchange, fail, type ResponderContext } from "./responder-context.js";
import type { SecureSession } from "./session.js";
import { verifyTranscript } from "./signing.js";

export type EncapFlowKind = "session-auth" | "basic-auth" | "key-update" | "endpoint-info";
type Sent = "Digests" | "Certificate" | "Challenge" | "UpdateKey" | "VerifyNewKey" | "EndpointInfo";
export type EncapState = "Idle" | "Armed" | Sent;

/** The requester slot whose chain we fetch (libspdm's req_slot_id 0). */
const REQ_SLOT = 0;
/** GET_CERTIFICATE Length per request: libspdm's LIBSPDM_MAX_CERT_CHAIN_BLOCK_LEN. */
const PORTION = 1024;

/** One flow under way. */
interface Flow {
  kind: EncapFlowKind;
  /** The session it belongs to (none for basic-auth). */
  session?: SecureSession;
  requestId: number;
  /** The request last sent, exactly. */
  request: Buffer;
  /** libspdm's message_mut_b: the certificate exchanges an encapsulated CHALLENGE signs over. */
  mutB: Buffer[];
  digest?: Buffer;
  /** EncapD: the requester's DIGESTS on its multi-key connection, for TH. */
  encapDigests?: Buffer;
  portions: Buffer[];
  /** The requester's verified SPDM chain and leaf key (or its provisioned public key's SPKI and the key). */
  peer?: { chain: Buffer; key: KeyObject };
  /** endpoint-info: the key ENDPOINT_INFO's signature must verify with; none: no signature asked. */
  signer?: KeyObject;
  /** The requester slot CHALLENGE names: REQ_SLOT, or 0xFF for a provisioned public key. */
  slot: number;
  /** Its first request. */
  first: Sent;
}

type Ctx = Pick<ResponderContext, "config" | "log" | "connection" | "transcript">;

interface Step {
  /** The request this state sends. */
  request(c: Ctx, f: Flow): SpdmMessage;
  /** Checks the response to it; the state it leads to. */
  accept(c: Ctx, f: Flow, response: SpdmMessage, bytes: Buffer): EncapState | Promise<EncapState>;
}

/** The transition table. */
const STEPS: Record<Sent, Step> = {
  Digests: {
    request: (c) => ({ code: "GET_DIGESTS", version: version(c) }),
    accept(c, f, r, bytes) {
      const m = expect(r, "DIGESTS");
      const index = slotIndex(m.provisionedSlotMask, REQ_SLOT);
      if (index === undefined) reject(`the requester's DIGESTS has no slot ${REQ_SLOT}`);
      f.digest = m.digests[index];
      f.mutB.push(f.request, bytes);
      // EncapD (libspdm's message_encap_d): the first encapsulated response of a session flow.
      if (f.session && c.connection.negotiated.decode.multiKeyConnReq && f.mutB.length === 2)
        f.encapDigests = bytes;
      return "Certificate";
    },
  },
  Certificate: {
    request: (c, f) => ({
      code: "GET_CERTIFICATE",
      version: version(c),
      slotId: REQ_SLOT,
      attributes: 0,
      offset: f.portions.reduce((n, p) => n + p.length, 0),
      length: PORTION,
    }),
    async accept(c, f, r, bytes) {
      const m = expect(r, "CERTIFICATE");
      if ((m.slotId & 0xf) !== REQ_SLOT || m.certChain.length === 0 || m.certChain.length > PORTION)
        reject(`the requester's CERTIFICATE is for slot ${m.slotId} with ${m.certChain.length} bytes`);
      f.portions.push(m.certChain);
      f.mutB.push(f.request, bytes);
      if (m.remainderLength > 0) return "Certificate";
      f.peer = await verifyPeerChain(c, f, Buffer.concat(f.portions));
      if (f.kind === "basic-auth") return "Challenge";
      if (f.kind === "endpoint-info") {
        f.signer = f.peer.key;
        return "EndpointInfo";
      }
      // TH for FINISH: … KEY_EXCHANGE_RSP ‖ [EncapD] ‖ Hash(the requester's chain) ‖ FINISH.
      f.session!.addTranscript(f.encapDigests ?? EMPTY, hash(c.connection.negotiated.hash!, f.peer.chain));
      return "Idle";
    },
  },
  Challenge: {
    request: (c, f) => ({
      code: "CHALLENGE",
      version: version(c),
      slotId: f.slot,
      measurementSummaryHashType: 0,
      nonce: randomBytes(NONCE_SIZE),
      requesterContext: version(c) >= SpdmVersion.V1_3 ? randomBytes(REQUESTER_CONTEXT_SIZE) : undefined,
    }),
    accept(c, f, r, bytes) {
      const m = expect(r, "CHALLENGE_AUTH");
      const { chain, key } = f.peer!;
      const { hash: h, reqAsym } = c.connection.negotiated;
      const sent = decodeSpdmWithLength(f.request).message as Extract<SpdmMessage, { code: "CHALLENGE" }>;
      if ((m.attributes & 0xf) !== (f.slot & 0xf) || !m.certChainHash.equals(hash(h!, chain)))
        reject("the requester's CHALLENGE_AUTH names another slot or chain");
      if (sent.requesterContext && !m.requesterContext?.equals(sent.requesterContext))
        reject("the requester's CHALLENGE_AUTH does not echo our RequesterContext");
      const unsigned = bytes.subarray(0, bytes.length - m.signature.length);
      const m1 = Buffer.concat([c.transcript.vca, ...f.mutB, f.request, unsigned]);
      const suite = { version: version(c), hash: h!, asym: reqAsym! };
      if (!verifyTranscript(suite, key, "MUT_CHALLENGE_AUTH", m1, m.signature))
        reject("the requester's CHALLENGE_AUTH signature does not verify");
      return "Idle";
    },
  },
  UpdateKey: {
    request: (c) => keyUpdateRequest(c, KeyUpdateOperation.UpdateKey),
    accept(_c, f, r) {
      acknowledged(f, r);
      // From the next record on we send under the new key (the ACK carrying VerifyNewKey included).
      f.session!.keyUpdate(KeyUpdateOperation.UpdateKey, "responder");
      return "VerifyNewKey";
    },
  },
  VerifyNewKey: {
    request: (c) => keyUpdateRequest(c, KeyUpdateOperation.VerifyNewKey),
    accept(_c, f, r) {
      acknowledged(f, r);
      f.session!.keyUpdate(KeyUpdateOperation.VerifyNewKey, "responder");
      return "Idle";
    },
  },
  EndpointInfo: {
    request: (c, f) => ({
      code: "GET_ENDPOINT_INFO",
      version: version(c),
      subCode: ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER,
      slotId: REQ_SLOT,
      attributes: f.signer ? ENDPOINT_INFO_SIGNATURE_REQUESTED : 0,
      nonce: f.signer ? randomBytes(NONCE_SIZE) : undefined,
    }),
    accept(c, f, r, bytes) {
      const m = expect(r, "ENDPOINT_INFO");
      // Signed, the slot we named; unsigned, slot 0 (libspdm's checks, both REQ_SLOT here).
      if ((m.slotId & 0xf) !== REQ_SLOT) reject(`the requester's ENDPOINT_INFO names slot ${m.slotId & 0xf}`);
      if (f.signer) {
        const { hash: h, reqAsym } = c.connection.negotiated;
        const il = Buffer.concat([
          c.transcript.vca,
          f.request,
          bytes.subarray(0, bytes.length - m.signature.length),
        ]);
        const suite = { version: version(c), hash: h!, asym: reqAsym! };
        if (!verifyTranscript(suite, f.signer, "MUT_ENDPOINT_INFO", il, m.signature))
          reject("the requester's ENDPOINT_INFO signature does not verify");
      }
      const sessionId = f.session && hex32(f.session.sessionId);
      c.log.info(
        { bytes: m.epInfo.length, signed: f.signer !== undefined, sessionId },
        "requester's ENDPOINT_INFO",
      );
      return "Idle";
    },
  },
};

/** The first request of each kind of flow. */
const FIRST: Record<EncapFlowKind, Sent> = {
  "session-auth": "Digests",
  "basic-auth": "Digests",
  "key-update": "UpdateKey",
  "endpoint-info": "EndpointInfo",
};

/** A response that fails a check: the flow ends, and the request answering it gets this. */
class EncapRejected extends Error {}
function reject(reason: string): never {
  throw new EncapRejected(reason);
}

const version = (c: Ctx) => c.connection.negotiated.version;

function expect<N extends SpdmMessage["code"]>(m: SpdmMessage, name: N): Extract<SpdmMessage, { code: N }> {
  if (m.code !== name) {
    const got =
      m.code === "ERROR"
        ? `ERROR ${spdmErrorLabel(m.errorCode)}`
        : m.code === "UNKNOWN"
          ? "an unknown message"
          : m.code;
    reject(`expected ${name} from the requester, got ${got}`);
  }
  return m as Extract<SpdmMessage, { code: N }>;
}

/** The digest's position for `slot` in a DIGESTS whose slot mask is `mask` (lowest slot first). */
function slotIndex(mask: number, slot: number): number | undefined {
  if (!((mask >> slot) & 1)) return undefined;
  return (mask & ((1 << slot) - 1)).toString(2).replaceAll("0", "").length;
}

function keyUpdateRequest(c: Ctx, operation: number): SpdmMessage {
  return { code: "KEY_UPDATE", version: version(c), operation, tag: randomBytes(1)[0]! };
}

function acknowledged(f: Flow, r: SpdmMessage): void {
  const m = expect(r, "KEY_UPDATE_ACK");
  if (m.operation !== f.request[2] || m.tag !== f.request[3])
    reject("the requester's KEY_UPDATE_ACK does not echo our KEY_UPDATE");
}

/** The fetched chain: its DIGESTS digest, its RootHash and format, its roots and the ReqBaseAsym key. */
async function verifyPeerChain(c: Ctx, f: Flow, chain: Buffer) {
  const { hash: h, reqAsym } = c.connection.negotiated;
  if (!f.digest?.equals(hash(h!, chain))) reject("the requester's chain does not match its DIGESTS digest");
  let certsDer: Buffer[];
  try {
    certsDer = decodeCertChain(h!, chain).certsDer;
  } catch (e) {
    if (e instanceof DecodeError) reject(`the requester's chain is malformed: ${e.message}`);
    throw e;
  }
  const roots = c.config.encapAuth?.trustRoots ?? [];
  const problems: string[] = [];
  for (const root of roots) {
    try {
      await verifyCertChain(certsDer, root, { asym: reqAsym, role: "requester" });
      const key = decodeCertChain(h!, chain).certs.at(-1)!.publicKey;
      if (!reqAsym || !keyFits(reqAsym, key)) reject(`the requester's leaf key is not ${reqAsym}`);
      return { chain, key };
    } catch (e) {
      if (!(e instanceof CertChainError)) throw e;
      problems.push(e.message);
    }
  }
  reject(
    `the requester's chain does not verify against a trusted root: ${problems.join("; ") || "none configured"}`,
  );
}

/** The flows of one responder (one at a time, as libspdm's encap context). */
export class EncapFlows {
  private flow: Flow | undefined;
  private state: EncapState = "Idle";
  private nextRequestId = 1;
  /** The requester's chain and key as a flow of this connection verified them (endpoint-info reuses them). */
  private verified: Flow["peer"];
  /** The requester key each encapsulated-auth session's FINISH must be signed with. */
  private readonly peerKeys = new WeakMap<SecureSession, KeyObject>();

  constructor(private readonly log: Logger) {}

  get current(): EncapState {
    return this.state;
  }

  /** A new SPDM connection: nothing under way, nothing known of the requester. */
  reset(): void {
    this.idle();
    this.verified = undefined;
  }

  private idle(): void {
    this.flow = undefined;
    this.state = "Idle";
  }

  /**
   * Arms a flow (replacing one under way). `digestsSent`: WITH_GET_DIGESTS, whose KEY_EXCHANGE_RSP
   * stands for the GET_DIGESTS with RequestID 0.
   */
  arm(c: Ctx, kind: EncapFlowKind, session?: SecureSession, digestsSent = false): void {
    this.flow = {
      kind,
      session,
      requestId: 0,
      request: EMPTY,
      mutB: [],
      portions: [],
      slot: REQ_SLOT,
      first: FIRST[kind],
    };
    // A provisioned requester public key: nothing to fetch, CHALLENGE names slot 0xFF.
    const provisioned = c.config.mutualAuth;
    if (kind === "basic-auth" && provisioned?.publicKeyDer)
      Object.assign(this.flow, {
        peer: { chain: provisioned.publicKeyDer, key: provisioned.publicKey },
        slot: PUBLIC_KEY_SLOT,
        first: "Challenge",
      });
    this.state = "Armed";
    if (digestsSent) {
      this.flow.request = encodeSpdm(STEPS.Digests.request(c, this.flow));
      this.state = "Digests";
    }
    this.log.info({ kind, sessionId: session && hex32(session.sessionId) }, "encapsulated flow armed");
  }

  /**
   * spdm-emu's OOB_ENCAP_ENDPOINT_INFO: arms GET_ENDPOINT_INFO, signed when the requester offers
   * EP_INFO_CAP_SIG and we know its key or can fetch its chain and verify it (see the file comment).
   */
  armEndpointInfo(c: Ctx): void {
    const { connection, config } = c;
    const sig =
      (connection.peer!.flags & RequesterCapability.EP_INFO_CAP_SIG) !== 0 &&
      connection.negotiated.reqAsym !== undefined;
    const known = this.verified?.key ?? config.mutualAuth?.publicKey;
    this.arm(c, "endpoint-info");
    if (sig && known) this.flow!.signer = known;
    else if (sig && config.encapAuth?.trustRoots.length) this.flow!.first = "Digests";
  }

  /** The key FINISH of `session` must be signed with, once its flow verified the requester's chain. */
  peerKey(session: SecureSession): KeyObject | undefined {
    return this.peerKeys.get(session);
  }

  /** GET_ENCAPSULATED_REQUEST: the armed flow's first request, if it belongs where this came from. */
  getRequest(c: Ctx, m: GetEncapsulatedRequest, x: Exchange): Buffer {
    const f = this.flow;
    if (!f || this.state !== "Armed" || !this.belongs(f, x))
      fail(m.version >= SpdmVersion.V1_3 ? "NoPendingRequests" : "UnexpectedRequest");
    if (f.kind === "endpoint-info") f.session = x.session;
    return this.send(c, f, f.first, m.version);
  }

  /** DELIVER_ENCAPSULATED_RESPONSE: the response to our last request; the next one or the end. */
  async deliver(c: Ctx, m: DeliverEncapsulatedResponse, x: Exchange, end: (s: SecureSession) => void) {
    const f = this.flow;
    const state = this.state;
    check(
      f !== undefined && state !== "Idle" && state !== "Armed" && this.belongs(f, x),
      "UnexpectedRequest",
    );
    check(m.requestId === f.requestId);
    let next: EncapState;
    try {
      // Responses decode with the requester's algorithms: CHALLENGE_AUTH is signed with ReqBaseAsym.
      const { reqAsym } = c.connection.negotiated;
      const ctx = {
        ...c.connection.negotiated.decode,
        asymSignatureSize: reqAsym && ASYM[reqAsym].sigSize,
        measurementSummaryHashType: 0,
        // The requester's DIGESTS has the multi-key arrays on its multi-key connection.
        multiKeyConn: c.connection.negotiated.decode.multiKeyConnReq === true,
        endpointInfoSignatureRequested: f.signer !== undefined,
      };
      const { message, byteLength } = decodeSpdmWithLength(m.encapsulatedResponse, ctx);
      next = await STEPS[state].accept(c, f, message, m.encapsulatedResponse.subarray(0, byteLength));
    } catch (e) {
      if (!(e instanceof EncapRejected || e instanceof DecodeError)) throw e;
      this.log.warn(
        { kind: f.kind, state, req: spdmCodeLabel(f.request[1] ?? 0), err: e.message },
        "encapsulated flow failed",
      );
      this.idle();
      // The session fails with what it authenticates; the endpoint information authenticates nothing.
      if (f.session && f.kind !== "endpoint-info") x.after.push(() => end(f.session!));
      fail("InvalidRequest");
    }
    if (next === "Idle") {
      if (f.kind === "session-auth" && f.peer) this.peerKeys.set(f.session!, f.peer.key);
      if (f.peer) this.verified = f.peer;
      this.log.info({ kind: f.kind }, "encapsulated flow done");
      this.idle();
      return this.ack(m, 0, EncapPayloadType.ABSENT, EMPTY);
    }
    return this.send(c, f, next as Sent, m.version, m);
  }

  /**
   * The flow is for the channel the request came in: its session (or plain, for a handshake in the
   * clear). endpoint-info's is the one its first request is fetched in: plain or an established session.
   */
  private belongs(f: Flow, x: Exchange): boolean {
    if (f.kind === "endpoint-info")
      return this.state === "Armed" ? x.session?.state !== "handshaking" : x.session === f.session;
    if (!f.session) return x.session === undefined;
    return x.session === f.session || (x.session === undefined && f.session.handshakeInTheClear);
  }

  /** Sends `state`'s request: in ENCAPSULATED_REQUEST, or in the ACK of `delivered`. */
  private send(c: Ctx, f: Flow, state: Sent, v: number, delivered?: DeliverEncapsulatedResponse): Buffer {
    f.request = encodeSpdm(STEPS[state].request(c, f));
    f.requestId = this.nextRequestId;
    this.nextRequestId = (this.nextRequestId % 0xff) + 1;
    this.state = state;
    if (!delivered)
      return encodeSpdm({
        code: "ENCAPSULATED_REQUEST",
        version: v,
        requestId: f.requestId,
        encapsulatedRequest: f.request,
      });
    return this.ack(delivered, f.requestId, EncapPayloadType.PRESENT, f.request);
  }

  private ack(
    delivered: DeliverEncapsulatedResponse,
    requestId: number,
    payloadType: number,
    payload: Buffer,
  ) {
    return encodeSpdm({
      code: "ENCAPSULATED_RESPONSE_ACK",
      version: delivered.version,
      requestId,
      payloadType,
      ackRequestId: delivered.version >= SpdmVersion.V1_2 ? delivered.requestId : undefined,
      payload,
    });
  }
}
