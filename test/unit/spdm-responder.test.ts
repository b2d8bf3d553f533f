/**
 * The SPDM responder driven directly with encoded requests and real crypto. Transcripts are rebuilt
 * here from the bytes exchanged (DSP0274 / libspdm rules: A = VCA, B = digests and certificates, M =
 * measurements), never read from the responder, and signatures checked with verifyTranscript.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  DoeType,
  decodeDoeObject,
  encodeDiscoveryRequest,
  encodeDoeObject,
  PCI_SIG_VENDOR_ID,
} from "../../protocol/doe.js";
import { Doe, DoeCtrl, DoeStatus } from "../../protocol/pci.js";
import {
  AlgType,
  BaseAsymAlgo,
  BaseHashAlgo,
  CHUNK_EARLY_ERROR_DETECTED,
  CHUNK_LAST,
  type DecodeContext,
  DheNamedGroup,
  decodeMeasurementRecord,
  decodeSpdm,
  decodeSpdmWithLength,
  encodeSpdm,
  MeasurementHashAlgo,
  negotiatedContext,
  RequesterCapability,
  ResponderCapability,
  SpdmErrorCode,
  type SpdmErrorName,
  type SpdmMessage,
} from "../../protocol/spdm/index.js";
import type { Algorithms, MessageOf } from "../../protocol/spdm/messages.js";
import { decodeCertChain, encodeCertChain, leafPublicKey } from "../../src/crypto/cert-chain.js";
import { type HashAlgo, hash } from "../../src/crypto/suites.js";
import {
  DescriptionError,
  defaultDescription,
  loadDescription,
  parseDescription,
} from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { silentLogger } from "../../src/log.js";
import { ResponderState, SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, type SpdmSettings, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots, type SlotKey } from "../../src/spdm/responder-slots.js";
import { type SigningContextName, verifyTranscript } from "../../src/spdm/signing.js";
import { RawPeer } from "../support/raw-peer.js";
import { FIVE_MEASUREMENTS } from "../support/spdm-shapes.js";

const V10 = 0x10;
const V11 = 0x11;
const V12 = 0x12;
const V13 = 0x13;
const VERSIONS: [string, number][] = [
  ["1.0", V10],
  ["1.1", V11],
  ["1.2", V12],
  ["1.3", V13],
];
const CTX8 = Buffer.from("0102030405060708", "hex");
const NONCE = Buffer.alloc(32, 0x5a);
const REQ_FLAGS = RequesterCapability.CERT_CAP | RequesterCapability.CHAL_CAP | RequesterCapability.CHUNK_CAP;

/** GET_CAPABILITIES as a requester sends it at `version` (1.1+ fields, 1.2+ sizes). */
function getCapabilities(
  version: number,
  o: { flags?: number; dts?: number; max?: number; attributes?: number } = {},
): MessageOf<"GET_CAPABILITIES"> {
  const dts = o.dts ?? 4096;
  return {
    code: "GET_CAPABILITIES",
    version,
    attributes: o.attributes ?? 0,
    ...(version >= V11 && { ctExponent: 0, extFlags: 0, flags: o.flags ?? REQ_FLAGS }),
    ...(version >= V12 && { dataTransferSize: dts, maxSpdmMsgSize: o.max ?? dts }),
  };
}

// One generated identity for the whole file: chains are generated per asym algorithm on first use.
const SETTINGS = spdmSettingsSchema.parse({
  slots: [
    { slot: 0, generate: true },
    { slot: 2, generate: true },
  ],
  measurements: FIVE_MEASUREMENTS,
});
const SLOTS = CertificateSlots.fromSettings(SETTINGS.slots);
let keys: Map<number, SlotKey>;
beforeAll(async () => {
  keys = await SLOTS.forAsym("ECDSA_P384");
});

function responder(overrides: Partial<SpdmSettings> = {}): SpdmResponder {
  return new SpdmResponder(responderConfig({ ...SETTINGS, ...overrides }), SLOTS);
}

interface PeerOptions {
  version: number;
  /** The requester's DataTransferSize (1.2+); MaxSPDMmsgSize is 64 KiB with chunking. */
  dts?: number;
  flags?: number;
  /** The responder's DataTransferSize, for CHUNK_SEND. */
  responderDts?: number;
  asym?: number;
  hash?: number;
}

/**
 * A requester written from DSP0274 (with CHUNK_SEND/CHUNK_GET) that keeps its own transcripts.
 * `call` sends one logical request and returns its logical response, chunking both ways as needed.
 */
class Peer {
  readonly A: Buffer[] = [];
  B: Buffer[] = [];
  M: Buffer[] = [];
  ctx: DecodeContext = {};
  algorithms!: Algorithms;
  readonly version: number;
  private readonly dts: number;
  private readonly responderDts: number;

  constructor(
    readonly r: SpdmResponder,
    private readonly opts: PeerOptions,
  ) {
    this.version = opts.version;
    this.dts = opts.dts ?? 4096;
    this.responderDts = opts.responderDts ?? 4096;
  }

  send(m: SpdmMessage | Buffer): Promise<Buffer> {
    return this.r.handle(Buffer.isBuffer(m) ? m : encodeSpdm(m));
  }

  async call(m: SpdmMessage | Buffer): Promise<Buffer> {
    const req = Buffer.isBuffer(m) ? m : encodeSpdm(m);
    let rsp =
      req.length > Math.min(this.dts, this.responderDts) ? await this.chunkSend(req) : await this.send(req);
    if (rsp[1] === 0x7f && rsp[2] === SpdmErrorCode.LargeResponse) rsp = await this.chunkGet(rsp[4]!);
    return rsp;
  }

  private async chunkSend(req: Buffer): Promise<Buffer> {
    const room = Math.min(this.dts, this.responderDts) - 12;
    let seq = 0;
    for (let off = 0; ; seq++) {
      const size = Math.min(room - (seq === 0 ? 4 : 0), req.length - off);
      const last = off + size === req.length;
      const rsp = await this.send({
        code: "CHUNK_SEND",
        version: this.version,
        attributes: last ? CHUNK_LAST : 0,
        handle: 7,
        chunkSeqNo: seq,
        largeMessageSize: seq === 0 ? req.length : undefined,
        chunk: req.subarray(off, off + size),
      });
      off += size;
      if (rsp[1] === 0x7f) return rsp; // LargeResponse instead of the ACK
      const ack = decodeSpdm(rsp, { ...this.ctx, trailing: "any" }) as MessageOf<"CHUNK_SEND_ACK">;
      expect(ack).toMatchObject({ code: "CHUNK_SEND_ACK", handle: 7, chunkSeqNo: seq, attributes: 0 });
      if (last) return ack.response!;
    }
  }

  async chunkGet(handle: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let total = 0;
    for (let seq = 0; ; seq++) {
      const rsp = await this.send({ code: "CHUNK_GET", version: this.version, handle, chunkSeqNo: seq });
      expect(rsp.length).toBeLessThanOrEqual(this.dts);
      const c = decodeSpdm(rsp) as MessageOf<"CHUNK_RESPONSE">;
      expect(c).toMatchObject({ code: "CHUNK_RESPONSE", handle, chunkSeqNo: seq });
      if (seq === 0) total = c.largeMessageSize!;
      parts.push(c.chunk);
      if (c.attributes & CHUNK_LAST) break;
    }
    const whole = Buffer.concat(parts);
    expect(whole.length).toBe(total);
    return whole;
  }

  /** GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS; A collects them. */
  async vca(): Promise<void> {
    const { version: v } = this;
    const pair = async (m: SpdmMessage) => {
      const req = encodeSpdm(m);
      const rsp = await this.call(req);
      this.A.push(req, rsp);
      return rsp;
    };
    const ver = decodeSpdm(await pair({ code: "GET_VERSION", version: V10 }));
    expect(ver).toMatchObject({
      code: "VERSION",
      versionNumberEntries: [0x1000, 0x1100, 0x1200, 0x1300, 0x1400],
    });
    const getCaps = getCapabilities(v, {
      flags: this.opts.flags,
      dts: this.dts,
      max: this.dts === 4096 ? 4096 : 65536,
    });
    const capabilities = decodeSpdm(await pair(getCaps)) as MessageOf<"CAPABILITIES">;
    expect(capabilities.code).toBe("CAPABILITIES");
    const negotiateAlgorithms = this.negotiate();
    this.algorithms = decodeSpdm(await pair(negotiateAlgorithms)) as Algorithms;
    expect(this.algorithms.code).toBe("ALGORITHMS");
    this.ctx = negotiatedContext({
      algorithms: this.algorithms,
      getCapabilities: getCaps,
      capabilities,
      negotiateAlgorithms,
    });
  }

  negotiate(): MessageOf<"NEGOTIATE_ALGORITHMS"> {
    const v = this.version;
    return {
      code: "NEGOTIATE_ALGORITHMS",
      version: v,
      measurementSpecification: 1,
      otherParamsSupport: v >= V12 ? 0x2 : 0,
      baseAsymAlgo: this.opts.asym ?? BaseAsymAlgo.ECDSA_P384 | BaseAsymAlgo.ECDSA_P256,
      baseHashAlgo: this.opts.hash ?? BaseHashAlgo.SHA_384 | BaseHashAlgo.SHA_256,
      melSpecification: 0,
      extAsym: [],
      extHash: [],
      algStructs:
        v >= V11
          ? [
              {
                algType: AlgType.DHE,
                algSupported: DheNamedGroup.SECP_256_R1 | DheNamedGroup.SECP_384_R1,
                extAlgs: [],
              },
              { algType: AlgType.AEAD, algSupported: 0x3, extAlgs: [] },
              { algType: AlgType.REQ_BASE_ASYM_ALG, algSupported: BaseAsymAlgo.RSAPSS_3072, extAlgs: [] },
              { algType: AlgType.KEY_SCHEDULE, algSupported: 0x1, extAlgs: [] },
            ]
          : [],
    };
  }

  decode<N extends SpdmMessage["code"]>(code: N, rsp: Buffer, ctx: DecodeContext = {}): MessageOf<N> {
    const m = decodeSpdm(rsp, { ...this.ctx, ...ctx });
    expect(m.code).toBe(code);
    return m as MessageOf<N>;
  }

  get suite() {
    const hashes: Record<number, HashAlgo> = { 1: "SHA_256", 2: "SHA_384", 4: "SHA_512" };
    const asyms: Record<number, "ECDSA_P256" | "ECDSA_P384"> = { 16: "ECDSA_P256", 128: "ECDSA_P384" };
    return {
      version: this.version,
      hash: hashes[this.algorithms.baseHashSel]!,
      asym: asyms[this.algorithms.baseAsymSel]!,
    };
  }
}

function expectError(rsp: Buffer, name: SpdmErrorName, data = 0, version?: number): void {
  const m = decodeSpdm(rsp, { trailing: "any" });
  expect(m).toMatchObject({ code: "ERROR", errorCode: SpdmErrorCode[name], errorData: data });
  if (version !== undefined) expect(m.version).toBe(version);
}

async function negotiated(opts: PeerOptions, r = responder()): Promise<Peer> {
  const p = new Peer(r, opts);
  await p.vca();
  expect(r.state).toBe(ResponderState.Negotiated);
  return p;
}

const chainFor = (h: HashAlgo, slot = 0) => encodeCertChain(h, keys.get(slot)!.certsDer);
const verify = (p: Peer, context: SigningContextName, transcript: Buffer, signature: Buffer) =>
  verifyTranscript(
    p.suite,
    leafPublicKey(p.suite.hash, chainFor(p.suite.hash)),
    context,
    transcript,
    signature,
  );

describe("SPDM responder: connection setup", () => {
  it.each(VERSIONS)(
    "negotiates SPDM %s with the capabilities and algorithms of that version",
    async (_name, v) => {
      const r = responder();
      expect(r.state).toBe(ResponderState.NotStarted);
      const p = new Peer(r, { version: v });
      await p.vca();
      expect(r.state).toBe(ResponderState.Negotiated);
      const caps = decodeSpdm(p.A[3]!) as MessageOf<"CAPABILITIES">;
      const base = ResponderCapability.CERT_CAP | ResponderCapability.CHAL_CAP;
      expect(caps.flags & base).toBe(base);
      expect(caps.flags & ResponderCapability.MEAS_CAP_SIG).toBeTruthy();
      // CHUNK_CAP exists from 1.2 only; DataTransferSize and MaxSPDMmsgSize too.
      expect((caps.flags & ResponderCapability.CHUNK_CAP) !== 0).toBe(v >= V12);
      expect(caps.dataTransferSize).toBe(v >= V12 ? 4096 : undefined);
      expect(caps.maxSpdmMsgSize).toBe(v >= V12 ? 65536 : undefined);
      // Session capabilities exist from 1.1; never MUT_AUTH (not implemented).
      const sessionCaps = ResponderCapability.KEY_EX_CAP | ResponderCapability.ENCRYPT_CAP;
      expect(caps.flags & sessionCaps).toBe(v >= V11 ? sessionCaps : 0);
      expect(caps.flags & ResponderCapability.MUT_AUTH_CAP).toBe(0);
      const a = p.algorithms;
      expect(a).toMatchObject({
        version: v,
        baseHashSel: BaseHashAlgo.SHA_384,
        baseAsymSel: BaseAsymAlgo.ECDSA_P384,
        measurementSpecificationSel: 1,
        measurementHashAlgo: MeasurementHashAlgo.SHA_384,
        otherParamsSelection: v >= V12 ? 0x2 : 0,
      });
      // One answer per table asked about; ReqBaseAsymAlg stays unselected without MUT_AUTH_CAP.
      expect(a.algStructs.map((t) => [t.algType, t.algSupported])).toEqual(
        v >= V11
          ? [
              [AlgType.DHE, DheNamedGroup.SECP_384_R1],
              [AlgType.AEAD, 0x2],
              [AlgType.REQ_BASE_ASYM_ALG, 0],
              [AlgType.KEY_SCHEDULE, 0x1],
            ]
          : [],
      );
    },
  );

  it("selects struct-table algorithms by preference once a capability uses them", async () => {
    const config = responderConfig(SETTINGS);
    config.flags |= ResponderCapability.KEY_EX_CAP | ResponderCapability.MUT_AUTH_CAP;
    config.aead = [0x1, 0x2]; // AES-128-GCM before AES-256-GCM
    const p = await negotiated({ version: V12 }, new SpdmResponder(config, SLOTS));
    expect(p.algorithms.algStructs).toEqual([
      { algType: AlgType.DHE, algSupported: DheNamedGroup.SECP_384_R1, extAlgs: [] },
      { algType: AlgType.AEAD, algSupported: 0x1, extAlgs: [] },
      { algType: AlgType.REQ_BASE_ASYM_ALG, algSupported: BaseAsymAlgo.RSAPSS_3072, extAlgs: [] },
      { algType: AlgType.KEY_SCHEDULE, algSupported: 0x1, extAlgs: [] },
    ]);
  });

  it("selects in the responder's preference order, and only asym algorithms a slot can serve", async () => {
    const p = await negotiated(
      { version: V12 },
      responder({ hash: ["SHA_256", "SHA_384"], asym: ["ECDSA_P256"] }),
    );
    expect(p.algorithms).toMatchObject({
      baseHashSel: BaseHashAlgo.SHA_256,
      baseAsymSel: BaseAsymAlgo.ECDSA_P256,
    });
    // Measurement hash follows the base hash when configured.
    expect(p.algorithms.measurementHashAlgo).toBe(MeasurementHashAlgo.SHA_256);
  });

  it("answers the 1.3 Supported Algorithms block when asked, with chunking on both sides", async () => {
    const r = responder();
    await r.handle(encodeSpdm({ code: "GET_VERSION", version: V10 }));
    const rsp = await r.handle(encodeSpdm(getCapabilities(V13, { attributes: 1, max: 65536 })));
    const caps = decodeSpdm(rsp) as MessageOf<"CAPABILITIES">;
    expect(caps.supportedAlgorithms).toMatchObject({
      measurementSpecification: 1,
      baseHashAlgo: BaseHashAlgo.SHA_256 | BaseHashAlgo.SHA_384 | BaseHashAlgo.SHA_512,
    });
    // DHE, AEAD and KeySchedule for the sessions; no ReqBaseAsymAlg without MUT_AUTH_CAP.
    expect(caps.supportedAlgorithms!.algStructs.map((t) => t.algType)).toEqual([
      AlgType.DHE,
      AlgType.AEAD,
      AlgType.KEY_SCHEDULE,
    ]);
  });

  it("GET_VERSION restarts the connection from any state", async () => {
    const p = await negotiated({ version: V12 });
    expect(decodeSpdm(await p.send({ code: "GET_VERSION", version: V10 })).code).toBe("VERSION");
    expect(p.r.state).toBe(ResponderState.AfterVersion);
    expectError(await p.send({ code: "GET_DIGESTS", version: V12 }), "UnexpectedRequest");
  });
});

describe("SPDM responder: errors, after which the connection still works", () => {
  const getDigests = (v: number): SpdmMessage => ({ code: "GET_DIGESTS", version: v });

  it("UnexpectedRequest for requests out of order", async () => {
    const r = responder();
    const p = new Peer(r, { version: V12 });
    const caps = getCapabilities(V12);
    for (const m of [caps, p.negotiate(), getDigests(V12)])
      expectError(await p.send(m), "UnexpectedRequest", 0, V10);
    expect(r.state).toBe(ResponderState.NotStarted);
    await p.send({ code: "GET_VERSION", version: V10 });
    expectError(await p.send(p.negotiate()), "UnexpectedRequest");
    await p.send(caps);
    expectError(await p.send(caps), "UnexpectedRequest", 0, V12);
    expect(r.state).toBe(ResponderState.AfterCapabilities);
    expect(decodeSpdm(await p.send(p.negotiate())).code).toBe("ALGORITHMS");
    for (const m of [caps, p.negotiate()]) expectError(await p.send(m), "UnexpectedRequest", 0, V12);
    // Nothing is pending (libspdm: InvalidRequest), and no large response is waiting.
    expectError(
      await p.send({ code: "RESPOND_IF_READY", version: V12, requestCode: 0x81, token: 0 }),
      "InvalidRequest",
    );
    expectError(
      await p.send({ code: "CHUNK_GET", version: V12, handle: 0, chunkSeqNo: 0 }),
      "UnexpectedRequest",
    );
    expect(decodeSpdm(await p.send(getDigests(V12)), { hashSize: 48 }).code).toBe("DIGESTS");
  });

  it("InvalidRequest for bad lengths and fields", async () => {
    const p = await negotiated({ version: V13 });
    const certReq = encodeSpdm({
      code: "GET_CERTIFICATE",
      version: V13,
      slotId: 0,
      attributes: 0,
      offset: 0,
      length: 100,
    });
    const challenge = encodeSpdm({
      code: "CHALLENGE",
      version: V13,
      slotId: 0,
      measurementSummaryHashType: 0,
      nonce: NONCE,
      requesterContext: CTX8,
    });
    const meas = (operation: number): SpdmMessage => ({
      code: "GET_MEASUREMENTS",
      version: V13,
      attributes: 0,
      operation,
      requesterContext: CTX8,
    });
    const bad: [string, Buffer | SpdmMessage][] = [
      ["a truncated GET_CERTIFICATE", certReq.subarray(0, 6)],
      ["a CHALLENGE without its 1.3 RequesterContext", challenge.subarray(0, 36)],
      ["non-zero bytes after a message", Buffer.concat([encodeSpdm(getDigests(V13)), Buffer.of(1)])],
      ["a header cut short", Buffer.of(V13, 0x81)],
      [
        "an unprovisioned slot",
        { code: "GET_CERTIFICATE", version: V13, slotId: 3, attributes: 0, offset: 0, length: 10 },
      ],
      [
        "an offset past the chain",
        { code: "GET_CERTIFICATE", version: V13, slotId: 0, attributes: 0, offset: 0xfff0, length: 10 },
      ],
      [
        "summary hash type 2",
        { ...(decodeSpdm(challenge) as MessageOf<"CHALLENGE">), measurementSummaryHashType: 2 },
      ],
      [
        "CHALLENGE of slot 0xFF (no provisioned public key)",
        { ...(decodeSpdm(challenge) as MessageOf<"CHALLENGE">), slotId: 0xff },
      ],
      ["a measurement index that does not exist", meas(9)],
    ];
    for (const [what, m] of bad) {
      const rsp = await p.send(m);
      expect(decodeSpdm(rsp, { trailing: "any" }), what).toMatchObject({
        code: "ERROR",
        errorCode: SpdmErrorCode.InvalidRequest,
      });
      expect(decodeSpdm(await p.send(certReq), p.ctx).code, `after ${what}`).toBe("CERTIFICATE");
    }
  });

  it("InvalidRequest for bad VCA fields, then the VCA completes", async () => {
    const r = responder();
    const p = new Peer(r, { version: V12 });
    await p.send({ code: "GET_VERSION", version: V10 });
    const caps = (dts: number, max: number, flags = REQ_FLAGS) =>
      encodeSpdm(getCapabilities(V12, { dts, max, flags }));
    expectError(await p.send(caps(41, 4096)), "InvalidRequest", 0, V12);
    expectError(await p.send(caps(4096, 1024)), "InvalidRequest");
    expectError(await p.send(caps(1024, 4096, RequesterCapability.CERT_CAP)), "InvalidRequest"); // no CHUNK: DTS = max
    expectError(await p.send(caps(4096, 4096, REQ_FLAGS | (3 << 10))), "InvalidRequest"); // reserved PSK_CAP
    expect(r.state).toBe(ResponderState.AfterVersion);
    await p.send(caps(4096, 4096));
    const neg = encodeSpdm(p.negotiate());
    const wrongLength = Buffer.from(neg);
    wrongLength.writeUInt16LE(neg.length + 4, 4);
    const unordered = encodeSpdm({ ...p.negotiate(), algStructs: [...p.negotiate().algStructs].reverse() });
    const noCommonAsym = encodeSpdm({ ...p.negotiate(), baseAsymAlgo: BaseAsymAlgo.SM2_P256 });
    for (const m of [wrongLength, unordered, noCommonAsym]) expectError(await p.send(m), "InvalidRequest");
    expect(decodeSpdm(await p.send(neg)).code).toBe("ALGORITHMS");
  });

  it("UnsupportedRequest, with Param2 = the request code, for what is not implemented or not advertised", async () => {
    const p = await negotiated({ version: V11 });
    const unsupported: [number, Buffer][] = [
      [0xe4, Buffer.from("11e40000", "hex")], // KEY_EXCHANGE (no KEY_EX_CAP)
      [0xe6, Buffer.from("11e60000", "hex")], // PSK_EXCHANGE
      [0xfe, Buffer.from("11fe0000", "hex")], // VENDOR_DEFINED_REQUEST
      [0x87, Buffer.from("11870000", "hex")], // GET_ENDPOINT_INFO (1.3)
      [0x86, Buffer.from("11860000000000", "hex")], // CHUNK_GET is 1.2+
      [0x01, Buffer.from("11010000", "hex")], // a response code
      [0x42, Buffer.from("11420000", "hex")], // no such code
    ];
    for (const [code, req] of unsupported) expectError(await p.send(req), "UnsupportedRequest", code, V11);
    // A capability not advertised: CHALLENGE without CHAL_CAP.
    const q = await negotiated({ version: V12 }, responder({ capabilities: ["CERT", "MEAS_SIG"] }));
    const challenge: SpdmMessage = {
      code: "CHALLENGE",
      version: V12,
      slotId: 0,
      measurementSummaryHashType: 0,
      nonce: NONCE,
    };
    expectError(await q.send(challenge), "UnsupportedRequest", 0x83);
    expect(q.decode("DIGESTS", await q.send(getDigests(V12))).digests).toHaveLength(2);
  });

  it("VersionMismatch for a wrong SPDMVersion", async () => {
    const r = responder();
    const p = new Peer(r, { version: V12 });
    expectError(await p.send({ code: "GET_VERSION", version: V11 }), "VersionMismatch", 0, V10);
    await p.send({ code: "GET_VERSION", version: V10 });
    const caps = (v: number) => encodeSpdm(getCapabilities(v));
    expectError(await p.send(caps(0x15)), "VersionMismatch", 0, V10);
    const only12 = responder({ versions: ["1.2"] });
    await only12.handle(encodeSpdm({ code: "GET_VERSION", version: V10 }));
    expectError(await only12.handle(caps(V13)), "VersionMismatch");
    await p.send(caps(V12));
    expectError(await p.send({ ...p.negotiate(), version: V13 }), "VersionMismatch", 0, V12);
    await p.send(p.negotiate());
    expectError(await p.send(getDigests(V11)), "VersionMismatch", 0, V12);
    expectError(await p.send({ code: "GET_VERSION", version: V12 }), "VersionMismatch", 0, V10);
    expect(p.r.state).toBe(ResponderState.Negotiated);
    expect(decodeSpdm(await p.send(getDigests(V12)), { hashSize: 48 }).code).toBe("DIGESTS");
  });

  it("never throws and always answers, whatever the bytes", async () => {
    const p = await negotiated({ version: V12 });
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 80 }), async (bytes) => {
        const rsp = await p.r.handle(Buffer.from(bytes));
        expect(rsp.length).toBeGreaterThanOrEqual(4);
      }),
      { numRuns: 300 },
    );
    const q = new Peer(p.r, { version: V13 });
    await q.vca();
  });
});

describe("SPDM responder: certificates and CHALLENGE", () => {
  it("serves DIGESTS of every provisioned slot and each chain in portions with the right RemainderLength", async () => {
    const p = await negotiated({ version: V13 });
    const digests = p.decode("DIGESTS", await p.send({ code: "GET_DIGESTS", version: V13 }));
    expect(digests.provisionedSlotMask).toBe(0b101);
    expect(digests.supportedSlotMask).toBe(0b101);
    expect(digests.digests).toEqual([
      hash("SHA_384", chainFor("SHA_384", 0)),
      hash("SHA_384", chainFor("SHA_384", 2)),
    ]);
    for (const slot of [0, 2]) {
      const chain = chainFor("SHA_384", slot);
      const parts: Buffer[] = [];
      for (let offset = 0; offset < chain.length; ) {
        const c = p.decode(
          "CERTIFICATE",
          await p.send({
            code: "GET_CERTIFICATE",
            version: V13,
            slotId: slot,
            attributes: 0,
            offset,
            length: 300,
          }),
        );
        expect(c.slotId).toBe(slot);
        expect(c.certChain.length).toBe(Math.min(300, chain.length - offset));
        offset += c.certChain.length;
        expect(c.remainderLength).toBe(chain.length - offset);
        parts.push(c.certChain);
      }
      expect(Buffer.concat(parts)).toEqual(chain);
      expect(decodeCertChain("SHA_384", Buffer.concat(parts)).certsDer).toHaveLength(3);
    }
    const size = p.decode(
      "CERTIFICATE",
      await p.send({ code: "GET_CERTIFICATE", version: V13, slotId: 0, attributes: 1, offset: 0, length: 0 }),
    );
    expect(size).toMatchObject({ remainderLength: chainFor("SHA_384").length, certChain: Buffer.alloc(0) });
  });

  it("builds the chain for the negotiated hash (RootHash)", async () => {
    const p = await negotiated(
      { version: V12, hash: BaseHashAlgo.SHA_256 },
      responder({ hash: ["SHA_256"] }),
    );
    const c = p.decode(
      "CERTIFICATE",
      await p.send({
        code: "GET_CERTIFICATE",
        version: V12,
        slotId: 0,
        attributes: 0,
        offset: 0,
        length: 0xffff,
      }),
    );
    expect(c.certChain).toEqual(chainFor("SHA_256"));
  });

  it.each([
    ["1.0", V10, 0x00],
    ["1.1", V11, 0x01],
    ["1.2", V12, 0xff],
    ["1.3", V13, 0x01],
    ["1.3", V13, 0xff],
  ])("signs CHALLENGE_AUTH (SPDM %s, summary type %i) over M1 = A ‖ B ‖ C", async (_name, v, summaryType) => {
    const p = await negotiated({ version: v });
    const b: Buffer[] = [];
    const exchange = async (m: SpdmMessage) => {
      const req = encodeSpdm(m);
      const rsp = await p.send(req);
      b.push(req, rsp);
    };
    await exchange({ code: "GET_DIGESTS", version: v });
    await exchange({
      code: "GET_CERTIFICATE",
      version: v,
      slotId: 0,
      attributes: 0,
      offset: 0,
      length: 0x400,
    });
    await exchange({
      code: "GET_CERTIFICATE",
      version: v,
      slotId: 0,
      attributes: 0,
      offset: 0x400,
      length: 0x400,
    });
    const req = encodeSpdm({
      code: "CHALLENGE",
      version: v,
      slotId: 0,
      measurementSummaryHashType: summaryType,
      nonce: NONCE,
      requesterContext: v >= V13 ? CTX8 : undefined,
    });
    const rsp = await p.send(req);
    const auth = p.decode("CHALLENGE_AUTH", rsp, { measurementSummaryHashType: summaryType });
    expect(auth).toMatchObject({
      attributes: 0,
      slotMask: 0b101,
      certChainHash: hash("SHA_384", chainFor("SHA_384")),
    });
    if (v >= V13) expect(auth.requesterContext).toEqual(CTX8);
    const m1 = Buffer.concat([...p.A, ...b, req, rsp.subarray(0, rsp.length - auth.signature.length)]);
    expect(verify(p, "CHALLENGE_AUTH", m1, auth.signature)).toBe(true);
    expect(
      verify(p, "CHALLENGE_AUTH", Buffer.concat([...p.A, req, rsp.subarray(0, -96)]), auth.signature),
    ).toBe(false);

    // The summary hash covers the measurement blocks (all, or the immutable-ROM ones for TCB).
    const all = p.decode(
      "MEASUREMENTS",
      await p.send({
        code: "GET_MEASUREMENTS",
        version: v,
        attributes: 0,
        operation: 0xff,
        requesterContext: v >= V13 ? CTX8 : undefined,
      }),
      { measurementSignatureRequested: false },
    );
    const blocks = decodeMeasurementRecord(all.measurementRecord);
    const wanted = summaryType === 0xff ? blocks : blocks.filter((x) => x.dmtf?.type === 0);
    const record = Buffer.concat(
      wanted.map((x) =>
        Buffer.concat([
          Buffer.of(x.index, x.measurementSpecification, x.measurement.length, 0),
          x.measurement,
        ]),
      ),
    );
    expect(auth.measurementSummaryHash).toEqual(
      summaryType === 0 ? Buffer.alloc(0) : hash("SHA_384", record),
    );
  });

  it("starts B afresh after a CHALLENGE", async () => {
    const p = await negotiated({ version: V12 });
    const challenge = encodeSpdm({
      code: "CHALLENGE",
      version: V12,
      slotId: 2,
      measurementSummaryHashType: 0,
      nonce: NONCE,
    });
    await p.send({ code: "GET_DIGESTS", version: V12 });
    await p.send(challenge);
    const rsp = await p.send(challenge);
    const auth = p.decode("CHALLENGE_AUTH", rsp, { measurementSummaryHashType: 0 });
    expect(auth.attributes).toBe(2);
    const key = leafPublicKey("SHA_384", chainFor("SHA_384", 2));
    const m1 = Buffer.concat([...p.A, challenge, rsp.subarray(0, -96)]);
    expect(verifyTranscript(p.suite, key, "CHALLENGE_AUTH", m1, auth.signature)).toBe(true);
  });
});

describe("SPDM responder: measurements", () => {
  const meas = (v: number, attributes: number, operation: number, slotIdParam = 0): SpdmMessage => ({
    code: "GET_MEASUREMENTS",
    version: v,
    attributes,
    operation,
    nonce: attributes & 1 ? NONCE : undefined,
    slotIdParam: attributes & 1 && v >= V11 ? slotIdParam : undefined,
    requesterContext: v >= V13 ? CTX8 : undefined,
  });

  it("answers the count, all blocks, one index, and raw bit streams", async () => {
    const p = await negotiated({ version: V12 });
    const ctx = { measurementSignatureRequested: false };
    const count = p.decode("MEASUREMENTS", await p.send(meas(V12, 0, 0)), ctx);
    expect(count).toMatchObject({
      totalMeasurementIndices: 5,
      numberOfBlocks: 0,
      measurementRecord: Buffer.alloc(0),
    });
    const all = p.decode("MEASUREMENTS", await p.send(meas(V12, 0, 0xff)), ctx);
    const blocks = decodeMeasurementRecord(all.measurementRecord, {
      numberOfBlocks: 5,
      measurementHashSize: 48,
    });
    expect(blocks.map((b) => [b.index, b.dmtf!.type, b.dmtf!.rawBitStream])).toEqual([
      [1, 0, false],
      [2, 1, false],
      [3, 2, false],
      [4, 3, false],
      [5, 6, true],
    ]);
    expect(blocks[4]!.dmtf!.value.toString()).toBe("1.0.0");
    const one = p.decode("MEASUREMENTS", await p.send(meas(V12, 0, 2)), ctx);
    const [fw] = decodeMeasurementRecord(one.measurementRecord, { numberOfBlocks: 1 });
    expect(fw!.dmtf!.value).toEqual(hash("SHA_384", Buffer.from("doe-emu device firmware 1.0.0")));
    const raw = p.decode("MEASUREMENTS", await p.send(meas(V12, 2, 2)), ctx);
    const [rawFw] = decodeMeasurementRecord(raw.measurementRecord);
    expect(rawFw!.dmtf).toMatchObject({
      rawBitStream: true,
      value: Buffer.from("doe-emu device firmware 1.0.0"),
    });
  });

  it("serves every DMTF measurement kind of examples/dmtf-sample.json; a hash-extended one is always a digest", async () => {
    const file = fileURLToPath(new URL("../../examples/dmtf-sample.json", import.meta.url));
    const { measurements } = loadDescription(file).spdm;
    const p = await negotiated({ version: V13 }, responder({ measurements }));
    const ctx = { measurementSignatureRequested: false };
    for (const attributes of [0, 2]) {
      const all = p.decode("MEASUREMENTS", await p.send(meas(V13, attributes, 0xff)), ctx);
      const blocks = decodeMeasurementRecord(all.measurementRecord, {
        numberOfBlocks: all.numberOfBlocks,
        measurementHashSize: 48,
      });
      const raw = attributes === 2;
      expect(blocks.map((b) => [b.index, b.dmtf!.type, b.dmtf!.rawBitStream])).toEqual([
        [1, 0, raw],
        [2, 1, raw],
        [3, 2, raw],
        [4, 3, raw],
        [5, 6, true],
        [6, 9, true],
        [0x10, 7, true],
        [0x11, 8, false],
        [0xfd, 4, true],
        [0xfe, 5, true],
      ]);
      const extended = hash(
        "SHA_384",
        Buffer.alloc(48),
        hash("SHA_384", Buffer.from("doe-emu boot log: ROM, Boot FW, 1.0.3.10")),
      );
      expect(blocks[7]!.dmtf!.value).toEqual(extended);
      expect(blocks[9]!.dmtf!.value.toString("hex")).toBe("3f000000040000001f00000011000000");
    }
  });

  it.each(VERSIONS)(
    "signs L1 (SPDM %s) over the unsigned exchanges since the last signature",
    async (_name, v) => {
      const p = await negotiated({ version: v });
      const log: Buffer[] = [];
      const unsigned = async (m: SpdmMessage) => {
        const req = encodeSpdm(m);
        log.push(req, await p.send(req));
      };
      const signed = async (slot: number) => {
        const req = encodeSpdm(meas(v, 1, 0xff, slot));
        const rsp = await p.send(req);
        const m = p.decode("MEASUREMENTS", rsp, { measurementSignatureRequested: true });
        if (v >= V13) expect(m.requesterContext).toEqual(CTX8);
        const l1 = Buffer.concat([...(v >= V12 ? p.A : []), ...log, req, rsp.subarray(0, -96)]);
        log.length = 0;
        return { m, l1 };
      };
      await unsigned(meas(v, 0, 0));
      await unsigned(meas(v, 0, 1));
      const first = await signed(0);
      expect(first.m.slotIdParam).toBe(0);
      expect(verify(p, "MEASUREMENTS", first.l1, first.m.signature)).toBe(true);
      // The log restarts after a signature, and an ERROR in between drops it too.
      await unsigned(meas(v, 0, 3));
      expectError(await p.send(meas(v, 0, 0x77)), "InvalidRequest");
      log.length = 0;
      const second = await signed(v >= V11 ? 2 : 0);
      const key = leafPublicKey("SHA_384", chainFor("SHA_384", v >= V11 ? 2 : 0));
      expect(verifyTranscript(p.suite, key, "MEASUREMENTS", second.l1, second.m.signature)).toBe(true);
    },
  );
});

describe("SPDM responder: chunking (1.2+)", () => {
  it("sends a large CERTIFICATE as LargeResponse + CHUNK_GET, and logs it whole", async () => {
    const p = await negotiated({ version: V12, dts: 64 });
    const chain = chainFor("SHA_384");
    const req = encodeSpdm({
      code: "GET_CERTIFICATE",
      version: V12,
      slotId: 0,
      attributes: 0,
      offset: 0,
      length: 0xffff,
    });
    const first = await p.send(req);
    expectError(first, "LargeResponse");
    const handle = first[4]!;
    // The transfer admits only CHUNK_GET (and GET_VERSION), and survives a refusal.
    expectError(await p.send({ code: "GET_DIGESTS", version: V12 }), "UnexpectedRequest");
    expectError(await p.send({ code: "CHUNK_GET", version: V12, handle, chunkSeqNo: 1 }), "InvalidRequest");
    const rsp = await p.chunkGet(handle);
    const cert = p.decode("CERTIFICATE", rsp);
    expect(cert).toMatchObject({ remainderLength: 0, certChain: chain });
    // B holds the whole CERTIFICATE, as the requester reassembled it.
    const challenge = encodeSpdm({
      code: "CHALLENGE",
      version: V12,
      slotId: 0,
      measurementSummaryHashType: 0,
      nonce: NONCE,
    });
    const auth = await p.call(challenge);
    const m = p.decode("CHALLENGE_AUTH", auth, { measurementSummaryHashType: 0 });
    expect(
      verify(
        p,
        "CHALLENGE_AUTH",
        Buffer.concat([...p.A, req, rsp, challenge, auth.subarray(0, -96)]),
        m.signature,
      ),
    ).toBe(true);
  });

  it("takes large requests by CHUNK_SEND and answers large ones by CHUNK_GET (both sides at DataTransferSize 42)", async () => {
    const r = responder({ dataTransferSize: 42 });
    const p = new Peer(r, { version: V13, dts: 42, responderDts: 42 });
    await p.vca(); // NEGOTIATE_ALGORITHMS (48 bytes) goes by CHUNK_SEND, ALGORITHMS (52) by CHUNK_GET
    expect(r.state).toBe(ResponderState.Negotiated);
    const req = encodeSpdm({
      code: "GET_MEASUREMENTS",
      version: V13,
      attributes: 1,
      operation: 0xff,
      nonce: NONCE,
      slotIdParam: 0,
      requesterContext: CTX8,
    });
    expect(req.length).toBeGreaterThan(42);
    const rsp = await p.call(req);
    const m = p.decode("MEASUREMENTS", rsp, { measurementSignatureRequested: true });
    expect(m.numberOfBlocks).toBe(5);
    expect(verify(p, "MEASUREMENTS", Buffer.concat([...p.A, req, rsp.subarray(0, -96)]), m.signature)).toBe(
      true,
    );
  });

  it("answers a chunk out of sequence with EarlyErrorDetected and an ERROR in the ACK", async () => {
    const p = await negotiated({ version: V12 });
    const chunk = (seq: number, attributes = 0): SpdmMessage => ({
      code: "CHUNK_SEND",
      version: V12,
      attributes,
      handle: 3,
      chunkSeqNo: seq,
      largeMessageSize: seq === 0 ? 100 : undefined,
      chunk: Buffer.alloc(20),
    });
    const ack = p.decode("CHUNK_SEND_ACK", await p.send(chunk(0)), { trailing: "any" });
    expect(ack).toMatchObject({ attributes: 0, handle: 3, chunkSeqNo: 0 });
    const early = p.decode("CHUNK_SEND_ACK", await p.send(chunk(2)), { trailing: "any" });
    expect(early.attributes & CHUNK_EARLY_ERROR_DETECTED).toBeTruthy();
    expectError(early.response!, "InvalidRequest");
    expect(
      decodeSpdmWithLength(await p.send({ code: "GET_DIGESTS", version: V12 }), p.ctx).message.code,
    ).toBe("DIGESTS");
  });
});

describe("SPDM responder: one per DOE mailbox", () => {
  it("serves the socket endpoint and the config-space DOE registers from the same connection state", async () => {
    const device = await startDevice({ description: defaultDescription(), port: 0, log: silentLogger });
    const peer = await RawPeer.connect(device.mailboxes[0]!.endpoint.port);
    try {
      const cma = (spdm: Buffer) =>
        encodeDoeObject({ vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM, payload: spdm });
      // GET_VERSION over the socket (NORMAL frame, transport PCI_DOE)...
      peer.sendFrame(1, 2, cma(encodeSpdm({ code: "GET_VERSION", version: V10 })));
      expect(decodeSpdm(decodeDoeObject((await peer.recv()).payload).payload).code).toBe("VERSION");
      // ...then GET_CAPABILITIES through the registers is in order: same responder.
      const { rid, doeCapOffset: cap } = device.model.identity().mailboxes[0]!;
      const request = cma(encodeSpdm(getCapabilities(V12)));
      for (let i = 0; i < request.length; i += 4)
        device.model.configWrite(rid, cap + Doe.WRITE, 4, request.readUInt32LE(i));
      device.model.configWrite(rid, cap + Doe.CTRL, 4, DoeCtrl.GO);
      // The mailbox takes one object at a time: once an object sent after it over the socket is
      // answered, the registers hold this one's response.
      peer.sendFrame(
        1,
        2,
        encodeDoeObject({
          vendorId: PCI_SIG_VENDOR_ID,
          type: DoeType.DISCOVERY,
          payload: encodeDiscoveryRequest({ index: 0, version: 0 }),
        }),
      );
      await peer.recv();
      expect(device.model.configRead(rid, cap + Doe.STATUS, 4)).toBe(DoeStatus.DATA_OBJECT_READY);
      const dws: Buffer[] = [];
      while (device.model.configRead(rid, cap + Doe.STATUS, 4) & DoeStatus.DATA_OBJECT_READY) {
        const dw = Buffer.alloc(4);
        dw.writeUInt32LE(device.model.configRead(rid, cap + Doe.READ, 4) >>> 0);
        dws.push(dw);
        device.model.configWrite(rid, cap + Doe.READ, 4, 0);
      }
      const response = Buffer.concat(dws);
      expect(decodeSpdm(decodeDoeObject(response).payload).code).toBe("CAPABILITIES");
    } finally {
      peer.close();
      await device.stop();
    }
  });
});

describe("device description: the spdm section", () => {
  it("defaults to SPDM 1.0–1.4 with DMTF's sample slots (0, 1, 4, generated) and measurements", () => {
    const { spdm } = defaultDescription();
    expect(spdm.slots.map((s) => [s.slot, "generate" in s])).toEqual([
      [0, true],
      [1, true],
      [4, true],
    ]);
    const c = responderConfig(spdm);
    expect(c).toMatchObject({
      versions: [V10, V11, V12, V13, 0x14],
      dataTransferSize: 4096,
      maxSpdmMsgSize: 65536,
    });
    expect(c.asym[0]).toBe("ECDSA_P384");
    expect(c.measurements.map((m) => m.index)).toEqual([1, 2, 3, 4, 0x10, 0x11, 0xfd, 0xfe]);
  });

  it.each([
    [{ spdm: { capabilities: ["MUT_AUTH"] } }, "spdm.capabilities[0]"],
    [
      { spdm: { capabilities: ["CERT", "KEY_EX"] } },
      "spdm.capabilities: KEY_EX and PSK need ENCRYPT and MAC",
    ],
    [{ spdm: { capabilities: ["CERT"] } }, "spdm.capabilities: CERT needs CHAL or MEAS_SIG"],
    [{ spdm: { capabilities: ["CHAL", "MEAS_SIG"] } }, "spdm.capabilities: CHAL and MEAS_SIG need CERT"],
    [{ spdm: { hash: ["MD5"] } }, "spdm.hash[0]"],
    [{ spdm: { dataTransferSize: 41 } }, "spdm.dataTransferSize"],
    [
      {
        spdm: {
          slots: [
            { slot: 0, generate: true },
            { slot: 0, generate: true },
          ],
        },
      },
      "spdm.slots[1].slot: slot 0 appears twice",
    ],
    [{ spdm: { measurements: [{ index: 1, type: "Firmware", value: "x" }] } }, "spdm.measurements[0].type"],
  ])("rejects %j naming the field", (value, message) => {
    expect(() => parseDescription(value)).toThrow(DescriptionError);
    expect(() => parseDescription(value)).toThrow(message);
  });

  it("reads slot files relative to the description", () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-spdm-"));
    const file = join(dir, "dev.json");
    writeFileSync(
      file,
      JSON.stringify({ spdm: { slots: [{ slot: 1, certChain: "c.der", privateKey: "k/key.pem" }] } }),
    );
    expect(loadDescription(file).spdm.slots).toEqual([
      { slot: 1, certChain: join(dir, "c.der"), privateKey: join(dir, "k/key.pem") },
    ]);
  });
});

describe("SPDM responder: ResponseNotReady and RESPOND_IF_READY", () => {
  afterEach(() => vi.useRealTimers());
  const slow = (delayMs = 0) =>
    responder({
      notReady: { requests: ["CHALLENGE", "GET_MEASUREMENTS"], rdtExponent: 12, rdtm: 3, delayMs },
    });
  const challenge = encodeSpdm({
    code: "CHALLENGE",
    version: V12,
    slotId: 0,
    measurementSummaryHashType: 0,
    nonce: NONCE,
  });
  const signedMeasurements = encodeSpdm({
    code: "GET_MEASUREMENTS",
    version: V12,
    attributes: 1,
    operation: 1,
    nonce: NONCE,
    slotIdParam: 0,
  });
  const ready = (requestCode: number, token: number): SpdmMessage => ({
    code: "RESPOND_IF_READY",
    version: V12,
    requestCode,
    token,
  });
  /** The ResponseNotReady extended data, checked against the settings above. */
  const notReady = (rsp: Buffer, requestCode: number) => {
    const m = decodeSpdm(rsp) as MessageOf<"ERROR">;
    expect(m).toMatchObject({ code: "ERROR", errorCode: SpdmErrorCode.ResponseNotReady, errorData: 0 });
    expect(m.responseNotReady).toMatchObject({ rdtExponent: 12, requestCode, rdtm: 3 });
    return m.responseNotReady!.token;
  };

  it("holds the response back until RESPOND_IF_READY names request and token", async () => {
    const p = await negotiated({ version: V12 }, slow());
    const token = notReady(await p.send(challenge), 0x83);
    // Another code or token is InvalidRequest, and the response stays pending.
    expectError(await p.send(ready(0x83, (token + 1) & 0xff)), "InvalidRequest");
    expectError(await p.send(ready(0xe0, token)), "InvalidRequest");
    const rsp = await p.send(ready(0x83, token));
    const auth = p.decode("CHALLENGE_AUTH", rsp, { measurementSummaryHashType: 0 });
    // M1 holds the CHALLENGE once, with its real response: no trace of the detour.
    const m1 = Buffer.concat([...p.A, challenge, rsp.subarray(0, -auth.signature.length)]);
    expect(verify(p, "CHALLENGE_AUTH", m1, auth.signature)).toBe(true);
    // Delivered, it is gone.
    expectError(await p.send(ready(0x83, token)), "InvalidRequest");
  });

  it("keeps the measurement log across ResponseNotReady and signs L1 over the real exchange", async () => {
    const p = await negotiated({ version: V12 }, slow());
    const unsigned = encodeSpdm({ code: "GET_MEASUREMENTS", version: V12, attributes: 0, operation: 0 });
    // Each GET_MEASUREMENTS is held back; the log must collect both, as libspdm's requester's does.
    const first = await p.send(ready(0xe0, notReady(await p.send(unsigned), 0xe0)));
    p.decode("MEASUREMENTS", first, { measurementSignatureRequested: false });
    const token = notReady(await p.send(signedMeasurements), 0xe0);
    const rsp = await p.send(ready(0xe0, token));
    const m = p.decode("MEASUREMENTS", rsp, { measurementSignatureRequested: true });
    const l1 = Buffer.concat([...p.A, unsigned, first, signedMeasurements, rsp.subarray(0, -96)]);
    expect(verify(p, "MEASUREMENTS", l1, m.signature)).toBe(true);
  });

  it("drops the pending response when another request comes in between", async () => {
    const p = await negotiated({ version: V12 }, slow());
    const token = notReady(await p.send(challenge), 0x83);
    p.decode("DIGESTS", await p.send({ code: "GET_DIGESTS", version: V12 }), { hashSize: 48 });
    expectError(await p.send(ready(0x83, token)), "InvalidRequest");
  });

  it("answers ResponseNotReady again until delayMs have passed", async () => {
    vi.useFakeTimers({ toFake: ["performance"] }); // the responder's clock, moved only by the test
    const p = await negotiated({ version: V12 }, slow(50));
    const token = notReady(await p.send(challenge), 0x83);
    expect(notReady(await p.send(ready(0x83, token)), 0x83)).toBe(token);
    vi.advanceTimersByTime(49);
    expect(notReady(await p.send(ready(0x83, token)), 0x83)).toBe(token);
    vi.advanceTimersByTime(1);
    p.decode("CHALLENGE_AUTH", await p.send(ready(0x83, token)), { measurementSummaryHashType: 0 });
  });

  it("is off by default, and cannot hold back GET_VERSION", async () => {
    const p = await negotiated({ version: V12 });
    p.decode("CHALLENGE_AUTH", await p.send(challenge), { measurementSummaryHashType: 0 });
    expect(spdmSettingsSchema.safeParse({ notReady: { requests: ["GET_VERSION"] } }).success).toBe(false);
  });
});
