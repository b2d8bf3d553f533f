/**
 * The requester's side of DSP0274's encapsulated request flow: the responder sends its own requests
 * (GET_DIGESTS, GET_CERTIFICATE, CHALLENGE, KEY_UPDATE, GET_ENDPOINT_INFO) in ENCAPSULATED_REQUEST
 * and ENCAPSULATED_RESPONSE_ACK, and we answer each, from our chain and key, in
 * DELIVER_ENCAPSULATED_RESPONSE. It runs after KEY_EXCHANGE_RSP asked for mutual authentication
 * with encapsulation (inside the handshake), after CHALLENGE_AUTH asked for basic mutual
 * authentication (outside any session), for a responder-initiated KEY_UPDATE (in a session), and
 * for the responder's GET_ENDPOINT_INFO (libspdm's sample EPInfo, signed on request with our key
 * over A ‖ GET_ENDPOINT_INFO ‖ ENDPOINT_INFO without the signature, as
 * libspdm_req_encap_endpoint_info.c).
 * What we send and check follows libspdm's libspdm_encapsulated_request and its req_encap_* files.
 *
 * The flow (EXPECTS: what each state awaits; AFTER_ACK: where an ACK leads): Start →
 * GET_ENCAPSULATED_REQUEST → Answering (a request in hand) → DELIVER_ENCAPSULATED_RESPONSE → ACK →
 * Answering again (PRESENT) or Done (ABSENT, or REQ_SLOT_NUMBER naming the slot FINISH signs with). WITH_GET_DIGESTS starts in Answering with an
 * implied GET_DIGESTS whose RequestID is 0.
 *
 * On a multi-key connection of ours (MULTI_KEY_CONN_REQ, 1.3) our DIGESTS names slot 0's key pair,
 * certificate model and key usage and CERTIFICATE its model, as libspdm's requester with
 * spdm-emu's settings; DIGESTS, when it is the flow's first answer in a session, is the EncapD that
 * TH for FINISH holds before Hash(our chain) (libspdm's message_encap_d).
 */
import type { KeyObject } from "node:crypto";
import { decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  AlgType,
  CapabilityField,
  CertificateModel,
  KeyUpdateOperation,
  KeyUsage,
  NONCE_SIZE,
  RequesterCapability,
  SpdmErrorCode,
  type SpdmErrorName,
  SpdmVersion,
  spdmCodeLabel,
} from "../../protocol/spdm/codes.js";
import {
  EncapPayloadType,
  type EncapsulatedRequest,
  type EncapsulatedResponseAck,
} from "../../protocol/spdm/encap.js";
import type { SpdmMessage } from "../../protocol/spdm/messages.js";
import {
  ENDPOINT_INFO_SIGNATURE_REQUESTED,
  ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER,
  SAMPLE_ENDPOINT_INFO,
} from "../../protocol/spdm/provision.js";
import { byBit, hex } from "../bits.js";
import { encodeCertChain } from "../crypto/cert-chain.js";
import { ASYM, type AsymAlgo, hash, keyFits, publicKeyDer } from "../crypto/suites.js";
import { certificateAsk, certificatePortion } from "./certificate-portion.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import { expectResponse, fail, type RequesterConnection, type SpdmRequester } from "./requester.js";
import { selection } from "./requester-handshake.js";
import { type SecureSession, SessionError } from "./session.js";
import { type SigningSuite, signTranscript } from "./signing.js";

/** Our identity as the responder asks for it: the SPDM chain (negotiated hash), ReqBaseAsym suite, key. */
export interface RequesterSigner {
  chain: Buffer;
  suite: SigningSuite & { asym: AsymAlgo };
  key: KeyObject;
}

/** The chain is provisioned in slot 0 only (as spdm_requester_emu's). */
const OUR_SLOT = 0;
/** libspdm answers encapsulated GET_CERTIFICATE in portions of at most LIBSPDM_MAX_CERT_CHAIN_BLOCK_LEN. */
const MAX_PORTION = 1024;
/** Slot 0's key pair on a multi-key connection of ours: a device certificate for these usages (spdm-emu's requester). */
const OUR_KEY_PAIR = {
  id: 1,
  certificateInfo: CertificateModel.DeviceCert,
  keyUsage:
    KeyUsage.KEY_EX_USE | KeyUsage.CHALLENGE_USE | KeyUsage.MEASUREMENT_USE | KeyUsage.ENDPOINT_INFO_USE,
} as const;

/** Our signer for mutual authentication, or a failure saying what is missing (`what` asked for it). */
export function requesterSigner(c: RequesterConnection, what: string): RequesterSigner {
  const id = c.requesterIdentity;
  if (!id)
    fail(
      "session",
      `${what} asks for mutual authentication; give the requester certificate chain and key (--req-cert-chain, --req-key)`,
    );
  const bit = selection(c, AlgType.REQ_BASE_ASYM_ALG);
  const asym = byBit(ASYM, bit) as AsymAlgo | undefined;
  if (!asym || !keyFits(asym, id.privateKey))
    fail(
      "negotiation",
      `ALGORITHMS ReqBaseAsymAlg ${hex(bit)} is not an algorithm the requester key signs with`,
    );
  return {
    // What TH hashes: our chain, or our provisioned public key's SPKI.
    chain: id.publicKey ? publicKeyDer(id.privateKey) : encodeCertChain(c.suite.hash, id.certsDer),
    suite: { version: c.version, hash: c.suite.hash, asym },
    key: id.privateKey,
  };
}

/** How a flow starts: by asking (GET_ENCAPSULATED_REQUEST), or with the GET_DIGESTS KEY_EXCHANGE_RSP implies. */
export type EncapStart = "GET_ENCAPSULATED_REQUEST" | "WITH_GET_DIGESTS";

type FlowState = "Start" | "Answering" | "Done";
/** What each state expects back: GET_ENCAPSULATED_REQUEST (Start) and DELIVER_ENCAPSULATED_RESPONSE (Answering). */
const EXPECTS = {
  Start: "ENCAPSULATED_REQUEST",
  Answering: "ENCAPSULATED_RESPONSE_ACK",
} as const satisfies Record<Exclude<FlowState, "Done">, string>;
/** ENCAPSULATED_RESPONSE_ACK PayloadType → the next state. */
const AFTER_ACK: Record<number, FlowState> = {
  [EncapPayloadType.ABSENT]: "Done",
  [EncapPayloadType.PRESENT]: "Answering",
  [EncapPayloadType.REQ_SLOT_NUMBER]: "Done",
};

export interface EncapOutcome {
  /** The requests the responder sent, by name, in order. */
  requests: string[];
  /** REQ_SLOT_NUMBER's slot, when the last ACK carried one. */
  reqSlot?: number;
  /** Whether we answered a GET_ENDPOINT_INFO, and signed. */
  endpointInfo?: { signed: boolean };
  /** EncapD: our DIGESTS when it was the first answer, on a multi-key connection of ours. */
  encapDigests?: Buffer;
}

/**
 * Runs one encapsulated flow to its end. `session`: the session it belongs to (sent through it
 * unless `plain`, which a handshake in the clear asks for); none for basic mutual authentication.
 * `signer` answers GET_DIGESTS, GET_CERTIFICATE and CHALLENGE; without one they get ERROR.
 */
export async function encapsulatedFlow(
  r: SpdmRequester,
  start: EncapStart,
  o: { session?: SecureSession; plain?: boolean; signer?: RequesterSigner },
): Promise<EncapOutcome> {
  const c = r.connection;
  const answers = new EncapAnswers(r, c, o.signer, o.session);
  const send = (m: SpdmMessage) =>
    o.session && !o.plain ? r.inSession(o.session, () => r.exchange(m)) : r.exchange(m);
  const outcome: EncapOutcome = { requests: [] };
  let state: FlowState = start === "WITH_GET_DIGESTS" ? "Answering" : "Start";
  let requestId = 0;
  let pending: Buffer = encodeSpdm({ code: "GET_DIGESTS", version: c.version });
  while (state !== "Done") {
    const message: SpdmMessage =
      state === "Start"
        ? { code: "GET_ENCAPSULATED_REQUEST", version: c.version }
        : {
            code: "DELIVER_ENCAPSULATED_RESPONSE",
            version: c.version,
            requestId,
            encapsulatedResponse: answers.answer(pending, outcome),
          };
    const reply = await send(message);
    const m: EncapsulatedRequest | EncapsulatedResponseAck = expectResponse(reply, EXPECTS[state]);
    if (m.code === "ENCAPSULATED_REQUEST") {
      requestId = m.requestId;
      pending = m.encapsulatedRequest;
      if (pending.length === 0) fail("malformed", "ENCAPSULATED_REQUEST carries no request");
      state = "Answering";
    } else if (m.code === "ENCAPSULATED_RESPONSE_ACK") {
      if (c.version >= SpdmVersion.V1_2 && m.ackRequestId !== requestId)
        fail(
          "session",
          `ENCAPSULATED_RESPONSE_ACK acknowledges RequestID ${m.ackRequestId}, we sent ${requestId}`,
        );
      const next: FlowState | undefined = AFTER_ACK[m.payloadType];
      if (next === undefined) fail("malformed", `ENCAPSULATED_RESPONSE_ACK PayloadType ${m.payloadType}`);
      if (m.payloadType === EncapPayloadType.REQ_SLOT_NUMBER) {
        if (m.payload.length < 1) fail("malformed", "ENCAPSULATED_RESPONSE_ACK names no requester slot");
        outcome.reqSlot = m.payload[0]! & 0xf;
      }
      if (next === "Answering") {
        requestId = m.requestId;
        pending = m.payload;
      }
      state = next;
    }
  }
  return outcome;
}

/** Our answers to the responder's requests, with the mutual-authentication transcripts they build. */
class EncapAnswers {
  /** libspdm's message_mut_b: the encapsulated certificate exchanges an encapsulated CHALLENGE signs over. */
  private readonly mutB: Buffer[] = [];

  constructor(
    private readonly r: SpdmRequester,
    private readonly c: RequesterConnection,
    private readonly signer: RequesterSigner | undefined,
    private readonly session: SecureSession | undefined,
  ) {}

  /** The response to one encapsulated request (ERROR for what we refuse); never throws for its content. */
  answer(request: Buffer, outcome: EncapOutcome): Buffer {
    const code = request[1] ?? 0;
    outcome.requests.push(spdmCodeLabel(code));
    let m: SpdmMessage;
    let exact: Buffer;
    try {
      const d = decodeSpdmWithLength(request);
      m = d.message;
      exact = request.subarray(0, d.byteLength);
    } catch {
      return this.error("InvalidRequest");
    }
    if (m.version !== this.c.version) return this.error("VersionMismatch");
    switch (m.code) {
      case "GET_DIGESTS":
        return this.digests(exact, outcome);
      case "GET_CERTIFICATE":
        return this.certificate(m, exact);
      case "CHALLENGE":
        return this.challengeAuth(m, exact);
      case "KEY_UPDATE":
        return this.keyUpdate(m);
      case "GET_ENDPOINT_INFO":
        return this.endpointInfo(m, exact, outcome);
      default:
        return this.error("UnsupportedRequest", code);
    }
  }

  private error(name: SpdmErrorName, data = 0): Buffer {
    return encodeSpdm({
      code: "ERROR",
      version: this.c.version,
      errorCode: SpdmErrorCode[name],
      errorData: data,
    });
  }

  /** Our public key is provisioned (PUB_KEY_ID_CAP): no chain to read, CHALLENGE names slot 0xFF. */
  private get provisioned(): boolean {
    return this.c.requesterIdentity?.publicKey === true;
  }

  private digests(request: Buffer, outcome: EncapOutcome): Buffer {
    if (!this.signer || this.provisioned) return this.error("UnsupportedRequest", request[1]);
    const multiKey = this.multiKey;
    const response = encodeSpdm({
      code: "DIGESTS",
      version: this.c.version,
      supportedSlotMask: this.c.version >= SpdmVersion.V1_3 ? 1 << OUR_SLOT : 0,
      provisionedSlotMask: 1 << OUR_SLOT,
      digests: [hash(this.signer.suite.hash, this.signer.chain)],
      ...(multiKey && {
        keyPairIds: [OUR_KEY_PAIR.id],
        certificateInfos: [OUR_KEY_PAIR.certificateInfo],
        keyUsageMasks: [OUR_KEY_PAIR.keyUsage],
      }),
    });
    this.mutB.push(request, response);
    if (multiKey && this.session && outcome.requests.length === 1) outcome.encapDigests = response;
    return response;
  }

  /** MULTI_KEY_CONN_REQ: the responder selected our multi-key connection (1.3). */
  private get multiKey(): boolean {
    return this.c.version >= SpdmVersion.V1_3 && this.c.ctx.multiKeyConnReq === true;
  }

  private certificate(m: Extract<SpdmMessage, { code: "GET_CERTIFICATE" }>, request: Buffer): Buffer {
    if (!this.signer || this.provisioned) return this.error("UnsupportedRequest", request[1]);
    const { chain } = this.signer;
    const ask = certificateAsk(m);
    // LargeCertChain only when we advertised LARGE_RESP_CAP (as libspdm's requester).
    if (ask.large && (this.c.requesterFlags & RequesterCapability.LARGE_RESP_CAP) === 0)
      return this.error("UnsupportedRequest", request[1]);
    if (ask.slot !== OUR_SLOT || ask.offset >= chain.length) return this.error("InvalidRequest");
    const model = this.multiKey ? OUR_KEY_PAIR.certificateInfo : 0;
    const response = certificatePortion(m.version, ask, chain, MAX_PORTION, model);
    this.mutB.push(request, response);
    return response;
  }

  /** CHALLENGE_AUTH signed over M1 = A ‖ mut B ‖ CHALLENGE ‖ CHALLENGE_AUTH up to the signature. */
  private challengeAuth(m: Extract<SpdmMessage, { code: "CHALLENGE" }>, request: Buffer): Buffer {
    const signer = this.signer;
    if (!signer) return this.error("UnsupportedRequest", request[1]);
    // We have no measurements: libspdm's requester refuses a summary hash.
    const slot = this.provisioned ? PUBLIC_KEY_SLOT : OUR_SLOT;
    if (m.slotId !== slot || m.measurementSummaryHashType !== 0) return this.error("InvalidRequest");
    const unsigned = encodeSpdm({
      code: "CHALLENGE_AUTH",
      version: m.version,
      attributes: slot & 0xf,
      // The provisioned key has no slot mask; its "chain" hash is its SPKI's (signer.chain).
      slotMask: this.provisioned ? 0 : 1 << OUR_SLOT,
      certChainHash: hash(signer.suite.hash, signer.chain),
      nonce: this.c.random(NONCE_SIZE),
      measurementSummaryHash: Buffer.alloc(0),
      opaqueData: Buffer.alloc(0),
      requesterContext: m.requesterContext,
      signature: Buffer.alloc(0),
    });
    const m1 = Buffer.concat([this.r.transcript.vca, ...this.mutB, request, unsigned]);
    this.mutB.length = 0;
    return Buffer.concat([unsigned, signTranscript(signer.suite, signer.key, "MUT_CHALLENGE_AUTH", m1)]);
  }

  /** ENDPOINT_INFO with libspdm's checks, in their order (libspdm_get_encap_response_endpoint_info). */
  private endpointInfo(
    m: Extract<SpdmMessage, { code: "GET_ENDPOINT_INFO" }>,
    request: Buffer,
    outcome: EncapOutcome,
  ): Buffer {
    const ours = this.c.requesterFlags;
    if (m.version < SpdmVersion.V1_3) return this.error("UnsupportedRequest", request[1]);
    if (this.session && this.session.state !== "established") return this.error("InvalidRequest");
    if ((ours & CapabilityField.EP_INFO_CAP) === 0) return this.error("UnsupportedRequest", request[1]);
    if (m.subCode !== ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER) return this.error("InvalidRequest");
    const signed = (m.attributes & ENDPOINT_INFO_SIGNATURE_REQUESTED) !== 0;
    if (signed && (ours & RequesterCapability.EP_INFO_CAP_SIG) === 0)
      return this.error("UnsupportedRequest", request[1]);
    const signer = this.signer;
    // Our one chain is in slot 0; we have no provisioned public key (slot 0xF).
    if (signed && ((m.slotId & 0xf) !== OUR_SLOT || !signer)) return this.error("InvalidRequest");
    const unsigned = encodeSpdm({
      code: "ENDPOINT_INFO",
      version: m.version,
      slotId: signed ? OUR_SLOT : 0,
      nonce: signed ? this.c.random(NONCE_SIZE) : undefined,
      epInfo: SAMPLE_ENDPOINT_INFO,
      signature: Buffer.alloc(0),
    });
    outcome.endpointInfo = { signed };
    if (!signed) return unsigned;
    const il = Buffer.concat([this.r.transcript.vca, request, unsigned]);
    return Buffer.concat([unsigned, signTranscript(signer!.suite, signer!.key, "MUT_ENDPOINT_INFO", il)]);
  }

  /** The responder updates its own (response) key: UpdateKey now, VerifyNewKey drops the old one. */
  private keyUpdate(m: Extract<SpdmMessage, { code: "KEY_UPDATE" }>): Buffer {
    const s = this.session;
    if (s?.state !== "established")
      return this.error(this.c.version >= SpdmVersion.V1_2 ? "SessionRequired" : "Unspecified");
    // libspdm's requester lets the responder update only its own key.
    if (m.operation === KeyUpdateOperation.UpdateAllKeys) return this.error("InvalidRequest");
    try {
      s.keyUpdate(m.operation, "responder");
    } catch (e) {
      if (e instanceof SessionError && e.kind === "key-update") return this.error("InvalidRequest");
      throw e;
    }
    return encodeSpdm({ code: "KEY_UPDATE_ACK", version: m.version, operation: m.operation, tag: m.tag });
  }
}
