/**
 * A passive observer of one DOE conversation (a capture's records, in wire order), as DMTF
 * spdm_dump reads one: DOE discovery, SPDM in the clear and secured records, each named with its
 * key fields. It follows the connection like a third party holding the session secrets: A (VCA)
 * and D, the certificate chains, each KEY_EXCHANGE / PSK_EXCHANGE, and so TH1/TH2; given the DHE
 * secret or PSK of a session (a key log, `--psk`) it derives the same keys both ends did and opens
 * both directions' records. Each session is two SecureSessions fed the same transcript: one in the
 * responder's role (it opens requests), one in the requester's (it opens responses), so key
 * updates and sequence numbers follow the same rules as the real ends.
 *
 * Direction: a clear SPDM message says it (bit 7 of its code); discovery and secured records
 * alternate, request first, as DOE is strictly request/response, and a secured record that opens
 * only under the other direction's keys says so. Not followed: mutual authentication (the
 * requester's chain is not on the wire, so such sessions' data keys stay unknown), chunking,
 * encapsulated requests.
 */

import { decodeCxlIdeKm } from "../../protocol/cxl-ide-km.js";
import { decodeTsp } from "../../protocol/cxl-tsp.js";
import {
  type DoeHeader,
  DoeType,
  decodeDiscoveryRequest,
  decodeDiscoveryResponse,
  decodeDoeHeader,
} from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import { decodeIdeKm } from "../../protocol/ide-km.js";
import { decodePciSigVdm, type PciSigProtocol } from "../../protocol/pcisig-vdm.js";
import { composeSessionId, decodeSecuredRecord } from "../../protocol/secured.js";
import { decodeSpdmWithLength } from "../../protocol/spdm/codec.js";
import {
  AlgType,
  CapabilityField,
  isRequestCode,
  ResponderCapability,
  spdmErrorLabel,
} from "../../protocol/spdm/codes.js";
import { type DecodeContext, negotiatedContext } from "../../protocol/spdm/context.js";
import type {
  Algorithms,
  Capabilities,
  GetCapabilities,
  KeyExchange,
  KeyExchangeRsp,
  NegotiateAlgorithms,
  PskExchange,
  PskExchangeRsp,
  SpdmMessage,
} from "../../protocol/spdm/messages.js";
import { decodeTdisp } from "../../protocol/tdisp.js";
import { byBit } from "../bits.js";
import { AEAD, type AeadAlgo, HASH, type HashAlgo } from "../crypto/suites.js";
import { certificateAsk } from "./certificate-portion.js";
import type { KeyScheduleSuite, SessionSecretInput } from "./key-schedule.js";
import type { KeyEntry } from "./keylog.js";
import { decryptRecord } from "./secured-record.js";
import { SecureSession, SessionError } from "./session.js";
import { sessionTranscriptPrefix, Transcript } from "./transcript.js";

export type Direction = "request" | "response";
export type Fields = Record<string, string | number | boolean>;

export interface ObservedSpdm {
  version: number;
  name: string;
  fields: Fields;
  message: SpdmMessage;
  /** The exact message (no DOE padding; decrypted for a secured record). */
  bytes: Buffer;
}

export interface ObservedObject {
  direction: Direction | undefined;
  doe: DoeHeader | undefined;
  protocol: "DOE_DISCOVERY" | "SPDM" | "SECURED_SPDM" | "UNKNOWN";
  discovery?: Fields;
  secured?: { sessionId: number; seq?: number; decrypted: boolean };
  spdm?: ObservedSpdm;
  /** What a vendor-defined message carries (IDE-KM, TDISP, CXL IDE-KM, CXL TSP). */
  inner?: { protocol: string; name: string; fields: Fields };
  /** Why the object is not (fully) decoded. */
  error?: string;
}

interface ObservedSession {
  /** Opens requests (responder role) and responses (requester role); absent without the secret. */
  ends?: Record<Direction, SecureSession>;
  missing?: string;
}

const OTHER: Record<Direction, Direction> = { request: "response", response: "request" };
/** The codec of each protocol a vendor-defined message carries; IDE-KM's messages are objects, the others' have codes. */
const INNER: Record<PciSigProtocol, (b: Buffer) => { object: string } | { code: string }> = {
  IDE_KM: decodeIdeKm,
  TDISP: decodeTdisp,
  CXL_IDE_KM: decodeCxlIdeKm,
  CXL_TSP: decodeTsp,
};
const VCA_RESPONSES = new Set(["VERSION", "CAPABILITIES", "ALGORITHMS"]);

/** Scalar fields by name; byte strings as their length, lists as their count. */
function fieldsOf(m: object, skip: readonly string[] = ["code", "version", "object"]): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(m)) {
    if (skip.includes(k) || v === undefined) continue;
    if (typeof v === "number" || typeof v === "boolean" || typeof v === "string") out[k] = v;
    else if (Buffer.isBuffer(v)) out[k] = `${v.length}B`;
    else if (Array.isArray(v)) out[k] = `[${v.length}]`;
  }
  return out;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class DoeObserver {
  private next: Direction = "request";
  private transcript = new Transcript();
  private vca: {
    getCapabilities?: GetCapabilities;
    capabilities?: Capabilities;
    negotiateAlgorithms?: NegotiateAlgorithms;
    algorithms?: Algorithms;
  } = {};
  private ctx: DecodeContext = {};
  private suite: KeyScheduleSuite | undefined;
  /** The last request in the clear and in each session: its response is decoded and tracked with it. */
  private pending: { message: SpdmMessage; bytes: Buffer } | undefined;
  private readonly sessionPending = new Map<number, { message: SpdmMessage; bytes: Buffer }>();
  private readonly chains = new Map<number, Buffer>();
  private readonly partial = new Map<number, Buffer[]>();
  private readonly sessions = new Map<number, ObservedSession>();
  private readonly used = new Set<KeyEntry>();

  constructor(private readonly keys: readonly KeyEntry[] = []) {}

  /** One whole DOE object, as a capture record holds it. */
  observe(object: Buffer): ObservedObject {
    let doe: DoeHeader;
    try {
      doe = decodeDoeHeader(object);
    } catch (e) {
      return this.advance({ direction: this.next, doe: undefined, protocol: "UNKNOWN", error: message(e) });
    }
    const payload = object.subarray(8);
    const base = { direction: this.next, doe };
    if (doe.vendorId !== 1)
      return this.advance({ ...base, protocol: "UNKNOWN", error: "not a PCI-SIG object" });
    try {
      switch (doe.type) {
        case DoeType.DISCOVERY:
          return this.advance({
            ...base,
            protocol: "DOE_DISCOVERY",
            discovery: fieldsOf(
              this.next === "request" ? decodeDiscoveryRequest(payload) : decodeDiscoveryResponse(payload),
            ),
          });
        case DoeType.CMA_SPDM:
          return this.advance(this.clear(doe, payload));
        case DoeType.SECURED_CMA_SPDM:
          return this.advance(this.secured(doe, payload));
        default:
          return this.advance({ ...base, protocol: "UNKNOWN", error: `DOE type ${doe.type} is not known` });
      }
    } catch (e) {
      if (!(e instanceof DecodeError || e instanceof SessionError)) throw e;
      const protocol = doe.type === DoeType.SECURED_CMA_SPDM ? "SECURED_SPDM" : "SPDM";
      return this.advance({ ...base, protocol, error: message(e) });
    }
  }

  private advance(o: ObservedObject): ObservedObject {
    this.next = OTHER[o.direction ?? this.next];
    return o;
  }

  // ---- SPDM in the clear ------------------------------------------------------------------------

  private clear(doe: DoeHeader, payload: Buffer): ObservedObject {
    const code = payload[1] ?? 0;
    const direction: Direction = isRequestCode(code) ? "request" : "response";
    const spdm = this.decode(payload, direction, this.pending?.message);
    const o: ObservedObject = { direction, doe, protocol: "SPDM", spdm };
    this.withInner(o);
    if (direction === "request") {
      this.transcript.onRequest(code);
      if (spdm.name === "GET_VERSION") this.newConnection();
      this.pending = { message: spdm.message, bytes: spdm.bytes };
      // HANDSHAKE_IN_THE_CLEAR: FINISH itself travels in the clear.
      if (spdm.name === "FINISH") this.handshakeMessage(this.handshaking(), spdm);
    } else {
      this.trackResponse(spdm);
    }
    return o;
  }

  private newConnection(): void {
    this.vca = {};
    this.ctx = {};
    this.suite = undefined;
    this.chains.clear();
    this.partial.clear();
    for (const s of this.sessions.values())
      for (const end of Object.values(s.ends ?? {})) end.end("GET_VERSION");
    this.sessions.clear();
  }

  /** Decodes with the context the negotiation and the request give. */
  private decode(bytes: Buffer, direction: Direction, request: SpdmMessage | undefined): ObservedSpdm {
    const ctx: DecodeContext = { ...this.ctx };
    if (direction === "response" && request) {
      if ("measurementSummaryHashType" in request)
        ctx.measurementSummaryHashType = request.measurementSummaryHashType;
      if (request.code === "GET_MEASUREMENTS")
        ctx.measurementSignatureRequested = (request.attributes & 1) !== 0;
    }
    const d = decodeSpdmWithLength(bytes, ctx);
    const m = d.message;
    const fields = fieldsOf(m);
    if (m.code === "ERROR") fields["errorCode"] = spdmErrorLabel(m.errorCode);
    return { version: m.version, name: m.code, fields, message: m, bytes: bytes.subarray(0, d.byteLength) };
  }

  private withInner(o: ObservedObject): void {
    const m = o.spdm?.message;
    if (m?.code !== "VENDOR_DEFINED_REQUEST" && m?.code !== "VENDOR_DEFINED_RESPONSE") return;
    try {
      const vdm = decodePciSigVdm(m);
      const inner = INNER[vdm.protocol](vdm.message);
      const name = "object" in inner ? inner.object : inner.code;
      o.inner = { protocol: vdm.protocol, name, fields: fieldsOf(inner) };
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      o.inner = { protocol: "VDM", name: "?", fields: { standardId: m.standardId, reason: e.reason } };
    }
  }

  /** What a response in the clear changes: VCA, D, certificate chains, a new session. */
  private trackResponse(spdm: ObservedSpdm): void {
    const req = this.pending;
    this.pending = undefined;
    const m = spdm.message;
    if (req && VCA_RESPONSES.has(m.code)) {
      this.transcript.addVca(req.bytes, spdm.bytes);
      if (m.code === "CAPABILITIES" && req.message.code === "GET_CAPABILITIES") {
        this.vca.getCapabilities = req.message;
        this.vca.capabilities = m;
      }
      if (m.code === "ALGORITHMS" && req.message.code === "NEGOTIATE_ALGORITHMS") {
        this.vca.negotiateAlgorithms = req.message;
        this.vca.algorithms = m;
        this.negotiated(m);
      }
    }
    if (m.code === "DIGESTS") this.transcript.noteDigests(spdm.bytes);
    if (m.code === "CERTIFICATE" && req?.message.code === "GET_CERTIFICATE") {
      // The 16-bit or the 1.4 LargeCertChain form: the slot is Param1's low bits, the offset the form's.
      const { slot, offset } = certificateAsk(req.message);
      if (offset === 0) this.partial.set(slot, []);
      const parts = this.partial.get(slot) ?? [];
      parts.push(m.certChain);
      this.partial.set(slot, parts);
      if (m.remainderLength === 0) this.chains.set(slot, Buffer.concat(parts));
    }
    if ((m.code === "KEY_EXCHANGE_RSP" || m.code === "PSK_EXCHANGE_RSP") && req)
      this.startSession(req.message as KeyExchange | PskExchange, req.bytes, m, spdm.bytes);
    if (m.code === "FINISH_RSP") this.handshakeMessage(this.handshaking(), spdm, true);
  }

  private negotiated(alg: Algorithms): void {
    this.ctx = negotiatedContext({ ...this.vca, algorithms: alg });
    const aeadBit = alg.algStructs.find((t) => t.algType === AlgType.AEAD)?.algSupported ?? 0;
    const hash = byBit(HASH, alg.baseHashSel) as HashAlgo | undefined;
    const aead = byBit(AEAD, aeadBit) as AeadAlgo | undefined;
    this.suite = hash && aead ? { version: alg.version, hash, aead } : undefined;
  }

  // ---- sessions ---------------------------------------------------------------------------------

  private takeKey(kind: "PSK" | "KEY_EX", sessionId: number): SessionSecretInput | undefined {
    const ofKind = this.keys.filter((k) => !this.used.has(k) && "psk" in k.input === (kind === "PSK"));
    const entry =
      ofKind.find((k) => k.sessionId === sessionId) ?? ofKind.find((k) => k.sessionId === undefined);
    if (entry) this.used.add(entry);
    return entry?.input;
  }

  private startSession(
    req: KeyExchange | PskExchange,
    reqBytes: Buffer,
    rsp: KeyExchangeRsp | PskExchangeRsp,
    rspBytes: Buffer,
  ): void {
    const kind = req.code === "KEY_EXCHANGE" ? "KEY_EX" : "PSK";
    const sessionId = composeSessionId(req.reqSessionId, rsp.rspSessionId);
    const session: ObservedSession = {};
    this.sessions.set(sessionId, session);
    const suite = this.suite;
    const chain = req.code === "KEY_EXCHANGE" ? this.chains.get(req.slotId) : undefined;
    const input = this.takeKey(kind, sessionId);
    if (!suite) session.missing = "no VCA (algorithms) in the capture before the session";
    else if (req.code === "KEY_EXCHANGE" && !chain)
      session.missing = `no certificate chain of slot ${req.slotId} in the capture`;
    else if (!input)
      session.missing = kind === "PSK" ? "no PSK (--keylog or --psk)" : "no DHE secret (--keylog)";
    if (session.missing || !suite || !input) return;
    if (rsp.code === "KEY_EXCHANGE_RSP" && (rsp.mutAuthRequested & 1) !== 0)
      session.missing = "mutual authentication: the requester's chain is not in the capture";
    const end = (role: "requester" | "responder") =>
      new SecureSession({
        role,
        kind,
        suite,
        reqSessionId: req.reqSessionId,
        rspSessionId: rsp.rspSessionId,
        transcriptPrefix: sessionTranscriptPrefix(suite, {
          vca: this.transcript.vca,
          digests: this.ctx.multiKeyConn ? this.transcript.digests : undefined,
          certChain: chain,
        }),
        handshakeInTheClear: this.ctx.handshakeInTheClear,
      });
    session.ends = { request: end("responder"), response: end("requester") };
    const verify = rsp.responderVerifyData;
    for (const s of Object.values(session.ends)) {
      s.addTranscript(reqBytes, rspBytes.subarray(0, rspBytes.length - verify.length));
      s.deriveHandshakeKeys(input);
      s.addTranscript(verify);
    }
    // PSK_CAP without a responder context: no PSK_FINISH, the data keys follow at once.
    const flags = this.vca.capabilities?.flags ?? 0;
    if (
      kind === "PSK" &&
      (flags & CapabilityField.PSK_CAP) !== ResponderCapability.PSK_CAP_RESPONDER_WITH_CONTEXT
    )
      for (const s of Object.values(session.ends)) s.establish();
  }

  /** The session whose handshake is under way (HANDSHAKE_IN_THE_CLEAR FINISH/FINISH_RSP). */
  private handshaking(): ObservedSession | undefined {
    return [...this.sessions.values()].find((s) => s.ends?.request.state === "handshaking");
  }

  /** FINISH / PSK_FINISH and their responses go into TH; the response completes TH2. */
  private handshakeMessage(s: ObservedSession | undefined, spdm: ObservedSpdm, last = false): void {
    if (!s?.ends) return;
    for (const end of Object.values(s.ends)) {
      if (end.state !== "handshaking") return;
      end.addTranscript(spdm.bytes);
      if (last) end.establish();
    }
  }

  private secured(doe: DoeHeader, payload: Buffer): ObservedObject {
    const { sessionId } = decodeSecuredRecord(payload);
    const s = this.sessions.get(sessionId);
    const o: ObservedObject = {
      direction: this.next,
      doe,
      protocol: "SECURED_SPDM",
      secured: { sessionId, decrypted: false },
    };
    if (!s) return { ...o, error: "no KEY_EXCHANGE/PSK_EXCHANGE of this session in the capture" };
    if (!s.ends) return { ...o, error: s.missing };
    const direction = ([this.next, OTHER[this.next]] as const).find((d) => this.opens(s, d, payload));
    if (!direction)
      return { ...o, error: `does not decrypt with the session's keys${s.missing ? ` (${s.missing})` : ""}` };
    const seq = Number(s.ends[direction].trafficState(direction)!.seq);
    const plain = s.ends[direction].open(payload);
    const spdm = this.decode(plain, direction, this.sessionPending.get(sessionId)?.message);
    const out: ObservedObject = { ...o, direction, secured: { sessionId, seq, decrypted: true }, spdm };
    this.withInner(out);
    this.trackSecured(sessionId, s, direction, spdm);
    return out;
  }

  /** Whether `payload` opens under the keys of `direction` now (without touching the session). */
  private opens(s: ObservedSession, direction: Direction, payload: Buffer): boolean {
    const end = s.ends![direction];
    const keys = end.state === "ended" ? undefined : end.trafficState(direction);
    if (!keys) return false;
    try {
      decryptRecord({ aead: end.aead, key: keys.key, iv: keys.iv }, keys.seq, payload);
      return true;
    } catch {
      return false;
    }
  }

  private trackSecured(
    sessionId: number,
    s: ObservedSession,
    direction: Direction,
    spdm: ObservedSpdm,
  ): void {
    const ends = Object.values(s.ends!);
    const m = spdm.message;
    if (direction === "request") {
      this.sessionPending.set(sessionId, { message: m, bytes: spdm.bytes });
      if (m.code === "FINISH" || m.code === "PSK_FINISH") this.handshakeMessage(s, spdm);
      // Both ends switch keys between KEY_UPDATE and its ACK.
      if (m.code === "KEY_UPDATE") for (const end of ends) end.keyUpdate(m.operation);
      return;
    }
    const req = this.sessionPending.get(sessionId);
    this.sessionPending.delete(sessionId);
    // A session opened inside another (a CXL TSP secondary PSK session) starts the same way.
    if ((m.code === "KEY_EXCHANGE_RSP" || m.code === "PSK_EXCHANGE_RSP") && req)
      this.startSession(req.message as KeyExchange | PskExchange, req.bytes, m, spdm.bytes);
    if (m.code === "FINISH_RSP" || m.code === "PSK_FINISH_RSP") this.handshakeMessage(s, spdm, true);
    if (m.code === "ERROR" && ends[0]!.keyUpdatePending !== undefined)
      for (const end of ends) end.abandonKeyUpdate();
    if (m.code === "END_SESSION_ACK") {
      for (const end of ends) end.end("END_SESSION");
      this.sessions.delete(sessionId);
    }
  }
}
