/**
 * Secure sessions of the SPDM responder, driven with real crypto by a requester written here from
 * DSP0274 (KEY_EXCHANGE … END_SESSION, §12) and DSP0277 on top of a requester-role SecureSession
 * (the machinery both roles share): KEY_EXCHANGE/FINISH and PSK_EXCHANGE/PSK_FINISH for every DHE ×
 * AEAD × hash, in and out of the clear, at 1.1–1.3; HEARTBEAT, KEY_UPDATE, END_SESSION and
 * measurements in a session; concurrent sessions; what tampered records and misplaced requests get;
 * and, on a device, the rule that sessions end when the function's last peer leaves.
 */
import { randomBytes } from "node:crypto";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { DoeType, decodeDoeObject, encodeDoeObject, PCI_SIG_VENDOR_ID } from "../../protocol/doe.js";
import {
  decodeSecuredMessageOpaque,
  decodeSecuredRecord,
  encodeSupportedVersions,
} from "../../protocol/secured.js";
import { SocketCommand, TransportType } from "../../protocol/socket.js";
import {
  AlgType,
  type DecodeContext,
  decodeSpdm,
  decodeSpdmWithLength,
  encodeSpdm,
  KeyUpdateOperation,
  MeasurementSummaryHashType,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  SpdmErrorCode,
  type SpdmErrorName,
  type SpdmMessage,
  SpdmRequestCode,
} from "../../protocol/spdm/index.js";
import type { MessageOf } from "../../protocol/spdm/messages.js";
import { encodeCertChain, leafPublicKey } from "../../src/crypto/cert-chain.js";
import {
  AEAD,
  type AeadAlgo,
  DHE,
  type DheAlgo,
  dheKeyPair,
  HASH,
  type HashAlgo,
  hash,
} from "../../src/crypto/suites.js";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { silentLogger } from "../../src/log.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, type SpdmSettings, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots, type SlotKey } from "../../src/spdm/responder-slots.js";
import type { VendorDefinedHandler } from "../../src/spdm/responder-vendor.js";
import { SecureSession } from "../../src/spdm/session.js";
import { verifyTranscript } from "../../src/spdm/signing.js";
import { sessionTranscriptPrefix } from "../../src/spdm/transcript.js";
import { logLines } from "../support/log-lines.js";
import { RawPeer } from "../support/raw-peer.js";
import { FIVE_MEASUREMENTS } from "../support/spdm-shapes.js";

const [V11, V12, V13] = [0x11, 0x12, 0x13];
const EMPTY = Buffer.alloc(0);
const PSK = Buffer.from("TestPskData\0", "latin1");
const PSK_HINT = Buffer.from("TestPskHint\0", "latin1");
const ASYM = "ECDSA_P384";
const BASE_FLAGS =
  Req.CERT_CAP | Req.CHAL_CAP | Req.ENCRYPT_CAP | Req.MAC_CAP | Req.KEY_EX_CAP | Req.PSK_CAP | Req.HBEAT_CAP;
const SETTINGS = spdmSettingsSchema.parse({
  hash: ["SHA_384", "SHA_256", "SHA_512"],
  slots: [{ slot: 0, generate: true }],
  measurements: FIVE_MEASUREMENTS,
});
const SLOTS = CertificateSlots.fromSettings(SETTINGS.slots);
let keys: Map<number, SlotKey>;
beforeAll(async () => {
  keys = await SLOTS.forAsym(ASYM);
});

function responder(overrides: Partial<SpdmSettings> = {}): SpdmResponder {
  return new SpdmResponder(responderConfig({ ...SETTINGS, ...overrides }), SLOTS);
}

/** Carries one plain SPDM message or one DSP0277 record to the device and back. */
interface Transport {
  plain(request: Buffer): Promise<Buffer>;
  /** undefined: no response object. */
  secured(record: Buffer): Promise<Buffer | undefined>;
}

const direct = (r: SpdmResponder): Transport => ({
  plain: (q) => r.handle(q),
  secured: (q) => r.handleSecured(q),
});

interface HostOptions {
  version?: number;
  hash?: HashAlgo;
  dhe?: DheAlgo;
  aead?: AeadAlgo;
  /** The requester's HANDSHAKE_IN_THE_CLEAR_CAP (the responder advertises it by default). */
  inTheClear?: boolean;
  /** The requester's KEY_UPD_CAP (default on). */
  keyUpdate?: boolean;
  /** The HeartbeatPeriod the responder must announce (default its default, 60 s). */
  heartbeatPeriod?: number;
}

/** A requester written from DSP0274/DSP0277: keeps A, builds the session messages, checks every answer. */
class Host {
  readonly A: Buffer[] = [];
  ctx: DecodeContext = {};
  readonly version: number;
  readonly hash: HashAlgo;
  readonly dhe: DheAlgo;
  readonly aead: AeadAlgo;
  readonly flags: number;
  responderFlags = 0;
  /** The responder's chain for slot 0, when fetched from it (fetchChain). */
  private fetched: Buffer | undefined;

  constructor(
    readonly t: Transport,
    private readonly o: HostOptions = {},
  ) {
    this.version = o.version ?? V12;
    this.hash = o.hash ?? "SHA_384";
    this.dhe = o.dhe ?? "SECP_384_R1";
    this.aead = o.aead ?? "AES_256_GCM";
    this.flags =
      BASE_FLAGS |
      (o.inTheClear === false ? 0 : Req.HANDSHAKE_IN_THE_CLEAR_CAP) |
      (o.keyUpdate === false ? 0 : Req.KEY_UPD_CAP) |
      (this.version >= V12 ? Req.CHUNK_CAP : 0);
  }

  get inTheClear(): boolean {
    return (this.flags & this.responderFlags & Req.HANDSHAKE_IN_THE_CLEAR_CAP) !== 0;
  }

  /** The exact message at the start of a (possibly DOE-padded) response. */
  exact(rsp: Buffer, ctx: DecodeContext = {}): Buffer {
    return rsp.subarray(0, decodeSpdmWithLength(rsp, { ...this.ctx, ...ctx }).byteLength);
  }

  decode<N extends SpdmMessage["code"]>(code: N, rsp: Buffer, ctx: DecodeContext = {}): MessageOf<N> {
    const m = decodeSpdm(rsp, { ...this.ctx, ...ctx, trailing: "any" });
    expect(m.code, m.code === "ERROR" ? `ERROR 0x${m.errorCode.toString(16)}` : m.code).toBe(code);
    return m as MessageOf<N>;
  }

  async vca(): Promise<this> {
    const v = this.version;
    const pair = async (m: SpdmMessage) => {
      const q = encodeSpdm(m);
      const r = this.exact(await this.t.plain(q));
      this.A.push(q, r);
      return r;
    };
    await pair({ code: "GET_VERSION", version: 0x10 });
    const caps = this.decode(
      "CAPABILITIES",
      await pair({
        code: "GET_CAPABILITIES",
        version: v,
        attributes: 0,
        ctExponent: 0,
        extFlags: 0,
        flags: this.flags,
        ...(v >= V12 && { dataTransferSize: 4096, maxSpdmMsgSize: 4096 }),
      }),
    );
    this.responderFlags = caps.flags;
    const alg = this.decode(
      "ALGORITHMS",
      await pair({
        code: "NEGOTIATE_ALGORITHMS",
        version: v,
        measurementSpecification: 1,
        otherParamsSupport: v >= V12 ? 0x2 : 0,
        baseAsymAlgo: 0x80, // ECDSA P-384
        baseHashAlgo: HASH[this.hash].bit,
        melSpecification: 0,
        extAsym: [],
        extHash: [],
        algStructs: [
          { algType: AlgType.DHE, algSupported: DHE[this.dhe].bit, extAlgs: [] },
          { algType: AlgType.AEAD, algSupported: AEAD[this.aead].bit, extAlgs: [] },
          { algType: AlgType.KEY_SCHEDULE, algSupported: 0x1, extAlgs: [] },
        ],
      }),
    );
    expect(alg.algStructs.map((t) => t.algSupported)).toEqual([DHE[this.dhe].bit, AEAD[this.aead].bit, 1]);
    this.ctx = {
      hashSize: HASH[this.hash].size,
      asymSignatureSize: 96,
      dheExchangeSize: DHE[this.dhe].exchangeSize,
      handshakeInTheClear: this.inTheClear,
      measurementSummaryHashType: 0,
    };
    return this;
  }

  get suite() {
    return { version: this.version, hash: this.hash, aead: this.aead };
  }

  /** Slot 0's chain: fetched from the responder, or the one this file generated. */
  chain(): Buffer {
    return this.fetched ?? encodeCertChain(this.hash, keys.get(0)!.certsDer);
  }

  /** GET_CERTIFICATE for slot 0 (whole, in one portion), for a device whose identity this file did not make. */
  async fetchChain(): Promise<this> {
    const q = encodeSpdm({
      code: "GET_CERTIFICATE",
      version: this.version,
      slotId: 0,
      attributes: 0,
      offset: 0,
      length: 0xffff,
    });
    const c = this.decode("CERTIFICATE", await this.t.plain(q));
    expect(c.remainderLength).toBe(0);
    this.fetched = c.certChain;
    return this;
  }

  /** KEY_EXCHANGE and FINISH (in the clear or under the handshake keys); the established session. */
  async keyExchange(o: { reqSessionId?: number } = {}): Promise<SecureSession> {
    const s = await this.keyExchangeOnly(o.reqSessionId ?? 0xffff);
    const fr = await this.finish(s);
    const f = this.decode("FINISH_RSP", fr);
    s.addTranscript(fr.subarray(0, 4));
    if (this.inTheClear) {
      expect(s.verifyDataMatches("response", f.responderVerifyData)).toBe(true);
      s.addTranscript(f.responderVerifyData);
    }
    s.establish();
    return s;
  }

  /** KEY_EXCHANGE alone, everything in KEY_EXCHANGE_RSP checked: the session, handshaking. */
  async keyExchangeOnly(reqSessionId: number): Promise<SecureSession> {
    const dhe = dheKeyPair(this.dhe);
    const ke = encodeSpdm({
      code: "KEY_EXCHANGE",
      version: this.version,
      measurementSummaryHashType: 0,
      slotId: 0,
      reqSessionId,
      sessionPolicy: 0,
      randomData: randomBytes(32),
      exchangeData: dhe.exchangeData,
      opaqueData: encodeSupportedVersions(this.version, [0x10, 0x11, 0x12]),
    });
    const kr = this.exact(await this.t.plain(ke));
    const m = this.decode("KEY_EXCHANGE_RSP", kr);
    expect(m).toMatchObject({
      mutAuthRequested: 0,
      reqSlotIdParam: 0,
      heartbeatPeriod: this.o.heartbeatPeriod ?? 60,
    });
    expect(decodeSecuredMessageOpaque(this.version, m.opaqueData).selected).toBe(0x12);
    const s = new SecureSession({
      role: "requester",
      kind: "KEY_EX",
      suite: this.suite,
      reqSessionId,
      rspSessionId: m.rspSessionId,
      transcriptPrefix: sessionTranscriptPrefix(this.suite, {
        vca: Buffer.concat(this.A),
        certChain: this.chain(),
      }),
      handshakeInTheClear: this.inTheClear,
      heartbeatPeriod: m.heartbeatPeriod,
    });
    const sigAt = kr.length - m.signature.length - m.responderVerifyData.length;
    s.addTranscript(ke, kr.subarray(0, sigAt));
    const key = leafPublicKey(this.hash, this.chain());
    const suite = { version: this.version, hash: this.hash, asym: ASYM } as const;
    expect(verifyTranscript(suite, key, "KEY_EXCHANGE_RSP", s.transcript, m.signature)).toBe(true);
    s.addTranscript(m.signature);
    s.deriveHandshakeKeys({ dheSecret: dhe.sharedSecret(m.exchangeData) });
    expect(m.responderVerifyData.length).toBe(this.inTheClear ? 0 : HASH[this.hash].size);
    if (!this.inTheClear) {
      expect(s.verifyDataMatches("response", m.responderVerifyData)).toBe(true);
      s.addTranscript(m.responderVerifyData);
    }
    return s;
  }

  /** FINISH, in the clear or under the handshake keys (a wrong RequesterVerifyData if asked); its answer. */
  async finish(s: SecureSession, wrongVerifyData = false): Promise<Buffer> {
    const head = encodeSpdm({
      code: "FINISH",
      version: this.version,
      attributes: 0,
      reqSlotId: 0,
      signature: EMPTY,
      requesterVerifyData: EMPTY,
    });
    s.addTranscript(head);
    const rvd = wrongVerifyData ? Buffer.alloc(HASH[this.hash].size, 0xaa) : s.verifyData("request");
    s.addTranscript(rvd);
    const finish = Buffer.concat([head, rvd]);
    return this.inTheClear ? this.exact(await this.t.plain(finish)) : this.inSession(s, finish);
  }

  /** PSK_EXCHANGE, and PSK_FINISH when the responder sent a context; the established session. */
  async psk(o: { reqSessionId?: number; hint?: Buffer } = {}): Promise<SecureSession> {
    const reqSessionId = o.reqSessionId ?? 0xffff;
    const pe = encodeSpdm({
      code: "PSK_EXCHANGE",
      version: this.version,
      measurementSummaryHashType: 0,
      sessionPolicy: 0,
      reqSessionId,
      pskHint: o.hint ?? PSK_HINT,
      requesterContext: randomBytes(64),
      opaqueData: encodeSupportedVersions(this.version, [0x10, 0x11, 0x12]),
    });
    const pr = this.exact(await this.t.plain(pe));
    const m = this.decode("PSK_EXCHANGE_RSP", pr);
    expect(decodeSecuredMessageOpaque(this.version, m.opaqueData).selected).toBe(0x12);
    const s = new SecureSession({
      role: "requester",
      kind: "PSK",
      suite: this.suite,
      reqSessionId,
      rspSessionId: m.rspSessionId,
      transcriptPrefix: sessionTranscriptPrefix(this.suite, { vca: Buffer.concat(this.A) }),
      heartbeatPeriod: m.heartbeatPeriod,
    });
    s.addTranscript(pe, pr.subarray(0, pr.length - m.responderVerifyData.length));
    s.deriveHandshakeKeys({ psk: PSK });
    expect(s.verifyDataMatches("response", m.responderVerifyData)).toBe(true);
    s.addTranscript(m.responderVerifyData);
    const withContext = (this.responderFlags & Rsp.PSK_CAP_RESPONDER_WITH_CONTEXT) !== 0;
    expect(m.responderContext.length).toBe(withContext ? 64 : 0);
    if (withContext) {
      const head = encodeSpdm({ code: "PSK_FINISH", version: this.version, requesterVerifyData: EMPTY });
      s.addTranscript(head);
      const rvd = s.verifyData("request");
      s.addTranscript(rvd);
      const fr = await this.inSession(s, Buffer.concat([head, rvd]));
      this.decode("PSK_FINISH_RSP", fr);
      s.addTranscript(fr);
    }
    s.establish();
    return s;
  }

  /** One request in the session; the response must come back sealed in it. */
  async inSession(s: SecureSession, request: SpdmMessage | Buffer): Promise<Buffer> {
    const rsp = await this.t.secured(s.seal(Buffer.isBuffer(request) ? request : encodeSpdm(request)));
    expect(rsp, "a sealed response").toBeDefined();
    expect(decodeSecuredRecord(rsp!).sessionId).toBe(s.sessionId);
    return s.open(rsp!);
  }

  heartbeat(s: SecureSession): Promise<Buffer> {
    return this.inSession(s, { code: "HEARTBEAT", version: this.version });
  }

  /** KEY_UPDATE as the requester does it: its own keys switch between the request and the ACK. */
  async keyUpdate(s: SecureSession, operation: number, tag = 7): Promise<Buffer> {
    const rec = s.seal(encodeSpdm({ code: "KEY_UPDATE", version: this.version, operation, tag }));
    const rsp = await this.t.secured(rec);
    s.keyUpdate(operation);
    const ack = s.open(rsp!);
    expect(this.decode("KEY_UPDATE_ACK", ack)).toMatchObject({ operation, tag });
    return ack;
  }

  async endSession(s: SecureSession): Promise<void> {
    this.decode(
      "END_SESSION_ACK",
      await this.inSession(s, { code: "END_SESSION", version: this.version, attributes: 0 }),
    );
    s.end("END_SESSION");
  }
}

function expectError(rsp: Buffer, name: SpdmErrorName, data = 0): void {
  expect(decodeSpdm(rsp, { trailing: "any" })).toMatchObject({
    code: "ERROR",
    errorCode: SpdmErrorCode[name],
    errorData: data,
  });
}

/** Signed GET_MEASUREMENTS in the session: L1 = A ‖ the session's own M log (libspdm). */
async function measureInSession(h: Host, s: SecureSession): Promise<void> {
  const context = h.version >= V13 ? { requesterContext: randomBytes(8) } : {};
  const count = encodeSpdm({
    code: "GET_MEASUREMENTS",
    version: h.version,
    attributes: 0,
    operation: 0,
    ...context,
  });
  const countRsp = await h.inSession(s, count);
  // A plain exchange in between goes to the connection's M, not the session's.
  await h.t.plain(count);
  const signed = encodeSpdm({
    code: "GET_MEASUREMENTS",
    version: h.version,
    attributes: 1,
    operation: 0xff,
    nonce: randomBytes(32),
    slotIdParam: 0,
    ...context,
  });
  const rsp = await h.inSession(s, signed);
  const m = h.decode("MEASUREMENTS", rsp, { measurementSignatureRequested: true });
  expect(m.numberOfBlocks).toBe(5);
  const l1 = Buffer.concat([
    ...(h.version >= V12 ? h.A : []),
    count,
    countRsp,
    signed,
    rsp.subarray(0, rsp.length - m.signature.length),
  ]);
  const key = leafPublicKey(h.hash, h.chain());
  const suite = { version: h.version, hash: h.hash, asym: ASYM } as const;
  expect(verifyTranscript(suite, key, "MEASUREMENTS", l1, m.signature)).toBe(true);
}

describe("SPDM responder sessions: every DHE × AEAD × hash", () => {
  const combos = (["SHA_256", "SHA_384", "SHA_512"] as const).flatMap((h) =>
    (Object.keys(DHE) as DheAlgo[]).flatMap((d) =>
      (Object.keys(AEAD) as AeadAlgo[]).map((a) => [h, d, a] as const),
    ),
  );
  it.each(combos.map(([h, d, a], i) => [h, d, a, i % 2 === 0] as const))(
    "%s, %s, %s (FINISH in the clear: %s): KEY_EX and PSK, heartbeat, signed measurements, END_SESSION",
    async (h, d, a, inTheClear) => {
      const r = responder();
      const host = await new Host(direct(r), { hash: h, dhe: d, aead: a, inTheClear }).vca();
      for (const open of [() => host.keyExchange(), () => host.psk()]) {
        const s = await open();
        expect(s.sessionId).toBe(0xffffffff);
        host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
        await measureInSession(host, s);
        await host.endSession(s);
        expect(r.sessionCount).toBe(0);
      }
    },
  );

  it.each([
    [V11, true],
    [V11, false],
    [V13, true],
    [V13, false],
  ])(
    "SPDM %s (FINISH in the clear: %s): KEY_EX and PSK sessions with DSP0277 1.2",
    async (version, inTheClear) => {
      const host = await new Host(direct(responder()), { version, inTheClear }).vca();
      for (const s of [await host.keyExchange(), await host.psk({ reqSessionId: 0x1234 })]) {
        host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
        await measureInSession(host, s);
      }
    },
  );

  it("PSK without a responder context (PSK_CAP 01b): no PSK_FINISH, data keys right away", async () => {
    const caps: SpdmSettings["capabilities"] = [
      "CERT",
      "CHAL",
      "MEAS_SIG",
      "ENCRYPT",
      "MAC",
      "KEY_EX",
      "PSK",
      "HBEAT",
    ];
    const host = await new Host(direct(responder({ capabilities: caps }))).vca();
    expect(host.responderFlags & Rsp.PSK_CAP_RESPONDER).toBeTruthy();
    const s = await host.psk();
    host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
    // PSK_FINISH is then not supported at all.
    const finish = encodeSpdm({ code: "PSK_FINISH", version: V12, requesterVerifyData: Buffer.alloc(48) });
    expectError(await host.inSession(s, finish), "UnsupportedRequest", 0xe7);
  });

  it("KEY_EXCHANGE_RSP carries the measurement summary hash asked for", async () => {
    const r = responder();
    const host = await new Host(direct(r)).vca();
    const all = host.decode(
      "MEASUREMENTS",
      await host.t.plain(
        encodeSpdm({ code: "GET_MEASUREMENTS", version: V12, attributes: 0, operation: 0xff }),
      ),
      { measurementSignatureRequested: false },
    );
    const expected = hash(host.hash, all.measurementRecord);
    const dhe = dheKeyPair(host.dhe);
    const rsp = await host.t.plain(
      encodeSpdm({
        code: "KEY_EXCHANGE",
        version: V12,
        measurementSummaryHashType: MeasurementSummaryHashType.All,
        slotId: 0,
        reqSessionId: 1,
        sessionPolicy: 0,
        randomData: randomBytes(32),
        exchangeData: dhe.exchangeData,
        opaqueData: encodeSupportedVersions(V12, [0x12]),
      }),
    );
    const m = host.decode("KEY_EXCHANGE_RSP", rsp, { measurementSummaryHashType: 0xff });
    expect(m.measurementSummaryHash).toEqual(expected);
  });
});

describe("SPDM responder sessions: inside a session", () => {
  it("KEY_UPDATE mid-stream: UpdateKey and UpdateAllKeys switch keys at the right message", async () => {
    const host = await new Host(direct(responder())).vca();
    const s = await host.keyExchange();
    const before = { req: s.trafficState("request")!, rsp: s.trafficState("response")! };
    host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
    // UpdateKey: new request key; the ACK still under the old response key.
    await host.keyUpdate(s, KeyUpdateOperation.UpdateKey);
    expect(s.trafficState("request")!.key.equals(before.req.key)).toBe(false);
    expect(s.trafficState("response")!.key.equals(before.rsp.key)).toBe(true);
    // A second update before VerifyNewKey: InvalidRequest, keys unchanged on both sides.
    expectError(
      await host.inSession(s, {
        code: "KEY_UPDATE",
        version: V12,
        operation: KeyUpdateOperation.UpdateAllKeys,
        tag: 1,
      }),
      "InvalidRequest",
    );
    await host.keyUpdate(s, KeyUpdateOperation.VerifyNewKey);
    host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
    // UpdateAllKeys: the ACK already under the new response key (s.open would fail otherwise).
    const rspKey = s.trafficState("response")!.key;
    await host.keyUpdate(s, KeyUpdateOperation.UpdateAllKeys);
    expect(s.trafficState("response")!.key.equals(rspKey)).toBe(false);
    await measureInSession(host, s);
    await host.keyUpdate(s, KeyUpdateOperation.VerifyNewKey);
    // VerifyNewKey with nothing to verify, and unknown operations: InvalidRequest.
    for (const operation of [KeyUpdateOperation.VerifyNewKey, 0, 4])
      expectError(
        await host.inSession(s, { code: "KEY_UPDATE", version: V12, operation, tag: 0 }),
        "InvalidRequest",
      );
    host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
  });

  it("VENDOR_DEFINED_REQUEST reaches the device's handler in a session only; one it does not serve is UnsupportedRequest", async () => {
    const seen: (number | undefined)[] = [];
    const handler: VendorDefinedHandler = (q, ctx) => {
      seen.push(ctx.sessionId);
      return q.standardId === 3 ? { ...q, payload: Buffer.concat([q.payload, Buffer.from("!")]) } : undefined;
    };
    const r = new SpdmResponder(responderConfig(SETTINGS), SLOTS, silentLogger, handler);
    const host = await new Host(direct(r)).vca();
    const vdm = (standardId: number) =>
      ({
        code: "VENDOR_DEFINED_REQUEST",
        version: V12,
        standardId,
        vendorId: Buffer.from([1, 0]),
        payload: Buffer.from([1, 2, 3]),
      }) as const;
    expectError(await r.handle(encodeSpdm(vdm(3))), "SessionRequired");
    const s = await host.keyExchange();
    expect(decodeSpdm(await host.inSession(s, vdm(3)))).toMatchObject({
      code: "VENDOR_DEFINED_RESPONSE",
      standardId: 3,
      payload: Buffer.from([1, 2, 3, 0x21]),
    });
    expectError(
      await host.inSession(s, vdm(4)),
      "UnsupportedRequest",
      SpdmRequestCode.VENDOR_DEFINED_REQUEST,
    );
    expect(seen).toEqual([s.sessionId, s.sessionId]);
    // A device with no handler refuses them all.
    const plain = await new Host(direct(responder())).vca();
    const t = await plain.keyExchange();
    expectError(
      await plain.inSession(t, vdm(3)),
      "UnsupportedRequest",
      SpdmRequestCode.VENDOR_DEFINED_REQUEST,
    );
  });

  it("two concurrent sessions on one device, interleaved, one ended while the other goes on", async () => {
    const r = responder();
    const host = await new Host(direct(r)).vca();
    const a = await host.keyExchange({ reqSessionId: 0xffff });
    const b = await host.psk({ reqSessionId: 0xffff });
    expect([a.sessionId, b.sessionId]).toEqual([0xffffffff, 0xfffeffff]);
    expect(r.sessionCount).toBe(2);
    host.decode("HEARTBEAT_ACK", await host.heartbeat(a));
    host.decode("HEARTBEAT_ACK", await host.heartbeat(b));
    await host.keyUpdate(a, KeyUpdateOperation.UpdateAllKeys);
    await measureInSession(host, b);
    await host.keyUpdate(a, KeyUpdateOperation.VerifyNewKey);
    await measureInSession(host, a);
    await host.endSession(a);
    expect(r.sessionCount).toBe(1);
    host.decode("HEARTBEAT_ACK", await host.heartbeat(b));
  });

  it("END_SESSION, then a new session; the old session ID gets no response", async () => {
    const r = responder();
    const host = await new Host(direct(r)).vca();
    const first = await host.keyExchange();
    const end = first.seal(encodeSpdm({ code: "END_SESSION", version: V12, attributes: 0 }));
    host.decode("END_SESSION_ACK", first.open((await r.handleSecured(end))!));
    first.end("END_SESSION");
    expect(r.sessionCount).toBe(0);
    expect(await r.handleSecured(end)).toBeUndefined();
    const second = await host.keyExchange();
    expect(second.sessionId).toBe(first.sessionId); // RspSessionID 0xFFFF is free again
    host.decode("HEARTBEAT_ACK", await host.heartbeat(second));
  });

  it("SessionLimitExceeded beyond the description's limit", async () => {
    const r = responder({ sessionLimit: 2 });
    const host = await new Host(direct(r)).vca();
    const a = await host.keyExchange({ reqSessionId: 1 });
    await host.psk({ reqSessionId: 2 });
    const pe = encodeSpdm({
      code: "PSK_EXCHANGE",
      version: V12,
      measurementSummaryHashType: 0,
      sessionPolicy: 0,
      reqSessionId: 3,
      pskHint: PSK_HINT,
      requesterContext: randomBytes(64),
      opaqueData: encodeSupportedVersions(V12, [0x12]),
    });
    expectError(await r.handle(pe), "SessionLimitExceeded");
    await host.endSession(a);
    await host.psk({ reqSessionId: 3 });
  });

  it("certificates in a session stay out of B; GET_VERSION ends every session", async () => {
    const r = responder();
    const host = await new Host(direct(r)).vca();
    const s = await host.keyExchange();
    const getDigests = encodeSpdm({ code: "GET_DIGESTS", version: V12 });
    const digests = host.exact(await host.t.plain(getDigests));
    host.decode(
      "CERTIFICATE",
      await host.inSession(s, {
        code: "GET_CERTIFICATE",
        version: V12,
        slotId: 0,
        attributes: 0,
        offset: 0,
        length: 0x400,
      }),
    );
    const challenge = encodeSpdm({
      code: "CHALLENGE",
      version: V12,
      slotId: 0,
      measurementSummaryHashType: 0,
      nonce: randomBytes(32),
    });
    const auth = await host.t.plain(challenge);
    const m = host.decode("CHALLENGE_AUTH", auth);
    const m1 = Buffer.concat([
      ...host.A,
      getDigests,
      digests,
      challenge,
      auth.subarray(0, auth.length - m.signature.length),
    ]);
    const key = leafPublicKey(host.hash, host.chain());
    expect(
      verifyTranscript({ version: V12, hash: host.hash, asym: ASYM }, key, "CHALLENGE_AUTH", m1, m.signature),
    ).toBe(true);
    // GET_VERSION inside the session is unexpected; outside it restarts everything.
    expectError(await host.inSession(s, { code: "GET_VERSION", version: 0x10 }), "UnexpectedRequest");
    await r.handle(encodeSpdm({ code: "GET_VERSION", version: 0x10 }));
    expect(r.sessionCount).toBe(0);
  });

  describe("with a fake clock", () => {
    afterEach(() => vi.useRealTimers());
    it("a session silent for twice its heartbeat period is ended", async () => {
      vi.useFakeTimers({ toFake: ["Date"] });
      const r = responder({ heartbeatPeriod: 5 });
      const host = await new Host(direct(r), { heartbeatPeriod: 5 }).vca();
      const s = await host.keyExchange();
      vi.setSystemTime(Date.now() + 9_000);
      host.decode("HEARTBEAT_ACK", await host.heartbeat(s)); // within 2 × 5 s: alive, and the clock restarts
      vi.setSystemTime(Date.now() + 10_500);
      await r.handle(encodeSpdm({ code: "GET_DIGESTS", version: V12 }));
      expect(r.sessionCount).toBe(0);
      expect(await r.handleSecured(s.seal(encodeSpdm({ code: "HEARTBEAT", version: V12 })))).toBeUndefined();
    });
  });
});

describe("SPDM responder sessions: errors", () => {
  /** An established KEY_EX session, its host and its responder. */
  async function established(inTheClear = true) {
    const r = responder();
    const host = await new Host(direct(r), { inTheClear }).vca();
    const s = await host.keyExchange();
    return { r, host, s };
  }
  const heartbeat = encodeSpdm({ code: "HEARTBEAT", version: V12 });

  /** The response to a bad record: ERROR DecryptError sealed in the session (never plaintext), then no session. */
  async function expectDecryptErrorAndEnd(r: SpdmResponder, s: SecureSession, bad: Buffer): Promise<void> {
    const rsp = await r.handleSecured(bad);
    expect(rsp).toBeDefined();
    expect(decodeSecuredRecord(rsp!).sessionId).toBe(s.sessionId);
    expectError(s.open(rsp!), "DecryptError");
    expect(r.sessionCount).toBe(0);
    expect(await r.handleSecured(s.seal(heartbeat))).toBeUndefined();
  }

  it("a flipped ciphertext byte: DecryptError in the session, and the session is terminated", async () => {
    const { r, s } = await established();
    const rec = s.seal(heartbeat);
    rec[8]! ^= 0x01;
    await expectDecryptErrorAndEnd(r, s, rec);
  });

  it("a flipped tag byte: the same", async () => {
    const { r, s } = await established();
    const rec = s.seal(heartbeat);
    rec[rec.length - 1]! ^= 0x80;
    await expectDecryptErrorAndEnd(r, s, rec);
  });

  it("a wrong Length field: the same", async () => {
    const { r, s } = await established();
    const rec = s.seal(heartbeat);
    rec.writeUInt16LE(rec.readUInt16LE(4) + 1, 4);
    await expectDecryptErrorAndEnd(r, s, Buffer.concat([rec, Buffer.alloc(1)]));
  });

  it("a replayed record (sequence number already used): the same", async () => {
    const { r, host, s } = await established();
    const rec = s.seal(heartbeat);
    host.decode("HEARTBEAT_ACK", s.open((await r.handleSecured(rec))!));
    await expectDecryptErrorAndEnd(r, s, rec);
  });

  it("a record ahead of its turn (sequence number skipped): the same", async () => {
    const { r, s } = await established(false);
    s.seal(heartbeat); // seq n, never sent
    await expectDecryptErrorAndEnd(r, s, s.seal(heartbeat));
  });

  it("an unknown session ID: no response at all, and the session is untouched", async () => {
    const { r, host, s } = await established();
    const rec = s.seal(heartbeat);
    const other = Buffer.from(rec);
    other.writeUInt32LE(0x12345678, 0);
    expect(await r.handleSecured(other)).toBeUndefined();
    expect(await r.handleSecured(Buffer.from([1, 2, 3]))).toBeUndefined();
    expect(r.sessionCount).toBe(1);
    host.decode("HEARTBEAT_ACK", s.open((await r.handleSecured(rec))!));
  });

  it("FINISH with a wrong RequesterVerifyData: DecryptError (in the clear, or sealed), and the handshake is over", async () => {
    for (const inTheClear of [true, false]) {
      const r = responder();
      const host = await new Host(direct(r), { inTheClear }).vca();
      const s = await host.keyExchangeOnly(9);
      expectError(await host.finish(s, true), "DecryptError");
      expect(r.sessionCount).toBe(0);
    }
  });

  it("session-only requests outside a session: SessionRequired (1.2+), UnexpectedRequest at 1.1", async () => {
    for (const version of [V11, V12]) {
      const r = responder();
      await new Host(direct(r), { version, inTheClear: false }).vca();
      const expected = version >= V12 ? "SessionRequired" : "UnexpectedRequest";
      const requests: SpdmMessage[] = [
        { code: "HEARTBEAT", version },
        { code: "KEY_UPDATE", version, operation: 1, tag: 0 },
        { code: "END_SESSION", version, attributes: 0 },
        { code: "PSK_FINISH", version, requesterVerifyData: Buffer.alloc(48) },
        {
          code: "FINISH",
          version,
          attributes: 0,
          reqSlotId: 0,
          signature: EMPTY,
          requesterVerifyData: Buffer.alloc(48),
        },
      ];
      for (const q of requests) expectError(await r.handle(encodeSpdm(q)), expected);
    }
  });

  it("requests that do not belong in the session's state or kind: UnexpectedRequest, sealed", async () => {
    const r = responder();
    const host = await new Host(direct(r), { inTheClear: false }).vca();
    const s = await host.psk();
    const wrong: SpdmMessage[] = [
      {
        code: "KEY_EXCHANGE",
        version: V12,
        measurementSummaryHashType: 0,
        slotId: 0,
        reqSessionId: 1,
        sessionPolicy: 0,
        randomData: Buffer.alloc(32),
        exchangeData: Buffer.alloc(96),
        opaqueData: EMPTY,
      },
      { code: "CHALLENGE", version: V12, slotId: 0, measurementSummaryHashType: 0, nonce: Buffer.alloc(32) },
      { code: "PSK_FINISH", version: V12, requesterVerifyData: Buffer.alloc(48) }, // established already
      {
        code: "FINISH",
        version: V12,
        attributes: 0,
        reqSlotId: 0,
        signature: EMPTY,
        requesterVerifyData: Buffer.alloc(48),
      },
    ];
    for (const q of wrong) expectError(await host.inSession(s, q), "UnexpectedRequest");
    host.decode("HEARTBEAT_ACK", await host.heartbeat(s));
  });

  it("RESPOND_IF_READY from another session, or from the other side of one: UnexpectedRequest, the request dropped", async () => {
    const notReady = { requests: ["GET_DIGESTS" as const], rdtExponent: 10, rdtm: 2, delayMs: 0 };
    const r = responder({ notReady });
    const host = await new Host(direct(r)).vca();
    const a = await host.keyExchange({ reqSessionId: 1 });
    const b = await host.psk({ reqSessionId: 2 });
    const getDigests = encodeSpdm({ code: "GET_DIGESTS", version: V12 });
    const ready = (token: number) =>
      encodeSpdm({ code: "RESPOND_IF_READY", version: V12, requestCode: 0x81, token });
    const tokenOf = (rsp: Buffer) => {
      const m = decodeSpdm(rsp) as MessageOf<"ERROR">;
      expect(m.errorCode).toBe(SpdmErrorCode.ResponseNotReady);
      return m.responseNotReady!.token;
    };
    // Held back in session a: asked for from session b, then from outside any session.
    let token = tokenOf(await host.inSession(a, getDigests));
    expectError(await host.inSession(b, ready(token)), "UnexpectedRequest");
    expectError(await host.inSession(a, ready(token)), "InvalidRequest"); // nothing pending any more
    token = tokenOf(await host.inSession(a, getDigests));
    expectError(await r.handle(ready(token)), "UnexpectedRequest");
    // Held back outside a session: asked for from inside one.
    token = tokenOf(await r.handle(getDigests));
    expectError(await host.inSession(a, ready(token)), "UnexpectedRequest");
    // Asked for where it came: served there.
    token = tokenOf(await host.inSession(b, getDigests));
    host.decode("DIGESTS", await host.inSession(b, ready(token)));
  });

  it("a requester without KEY_UPD_CAP or the right hint: UnsupportedRequest, InvalidRequest", async () => {
    const r = responder();
    const host = await new Host(direct(r), { keyUpdate: false }).vca();
    const s = await host.keyExchange();
    expectError(
      await host.inSession(s, { code: "KEY_UPDATE", version: V12, operation: 1, tag: 0 }),
      "UnsupportedRequest",
      0xe9,
    );
    const pskExchange = (pskHint: Buffer) =>
      encodeSpdm({
        code: "PSK_EXCHANGE",
        version: V12,
        measurementSummaryHashType: 0,
        sessionPolicy: 0,
        reqSessionId: 5,
        pskHint,
        requesterContext: randomBytes(64),
        opaqueData: encodeSupportedVersions(V12, [0x12]),
      });
    expectError(await r.handle(pskExchange(Buffer.from("OtherHint\0"))), "InvalidRequest");
    expect(r.sessionCount).toBe(1);
    await host.psk({ hint: EMPTY, reqSessionId: 5 }); // no hint: the one PSK there is
  });
});

describe("SPDM responder sessions on a device", () => {
  /** DOE objects over a raw socket connection to a mailbox endpoint. */
  const overSocket = (p: RawPeer): Transport => {
    const roundTrip = async (type: number, payload: Buffer) => {
      p.sendFrame(
        SocketCommand.NORMAL,
        TransportType.PCI_DOE,
        encodeDoeObject({ vendorId: PCI_SIG_VENDOR_ID, type, payload }),
      );
      const f = await p.recv();
      return f.payload.length === 0 ? undefined : decodeDoeObject(f.payload).payload;
    };
    return {
      plain: async (q) => (await roundTrip(DoeType.CMA_SPDM, q))!,
      secured: (q) => roundTrip(DoeType.SECURED_CMA_SPDM, q),
    };
  };

  it("sessions outlive one of several connections, and end when the mailbox's last one closes", async () => {
    const lines = logLines("info");
    const device = await startDevice({ description: parseDescription({}), port: 0, log: lines.log });
    const { port } = device.mailboxes[0]!.endpoint;
    /** Closes a peer; resolves once the device has run its connection's close listeners. */
    const hangUp = async (p: RawPeer) => {
      const handled = lines.next("disconnected");
      p.close();
      await handled;
    };
    const peers: RawPeer[] = [];
    try {
      const [p1, p2] = [await RawPeer.connect(port), await RawPeer.connect(port)];
      peers.push(p1, p2);
      const host = await (await new Host(overSocket(p1)).vca()).fetchChain();
      const s = await host.keyExchange();
      const viaP2 = new Host(overSocket(p2));
      await hangUp(p1);
      viaP2.decode("HEARTBEAT_ACK", await viaP2.inSession(s, { code: "HEARTBEAT", version: V12 }));
      await hangUp(p2);
      const p3 = await RawPeer.connect(port);
      peers.push(p3);
      expect(
        await overSocket(p3).secured(s.seal(encodeSpdm({ code: "HEARTBEAT", version: V12 }))),
      ).toBeUndefined();
    } finally {
      for (const p of peers) p.close();
      await device.stop();
    }
  });
});
