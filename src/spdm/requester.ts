/**
 * The SPDM requester (host side): VCA → GET_DIGESTS → GET_CERTIFICATE → CHALLENGE →
 * GET_MEASUREMENTS over any transport that carries one SPDM request to one response, verifying
 * everything the responder sends (PROTOCOL-FACTS 3.3–3.16). The request flow and its defaults
 * mirror DMTF's spdm_requester_emu (spdm-emu 85436d53 / libspdm), so our transcripts are byte for
 * byte what DMTF's responder signs, and a recorded spdm-emu run replays through this class.
 *
 * Transcripts follow libspdm's rules through Transcript (A/B/C/M and their resets). Every failure is
 * an SpdmRequesterError whose `reason` says exactly what did not hold.
 *
 * Sessions: requester-session.ts opens a SecureSession on this requester; `inSession` then routes
 * `exchange` — the one funnel every request takes — through it (DOE type 2), so digests,
 * certificates and measurements run unchanged inside a session.
 */
import { randomBytes as cryptoRandomBytes, type KeyObject, X509Certificate } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import { type DecodedSpdm, decodeSpdmWithLength, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  AeadCipherSuite,
  AlgType,
  BaseAsymAlgo,
  BaseHashAlgo,
  bitNames,
  CapabilityField,
  CHUNK_LAST,
  DheNamedGroup,
  DmtfMeasurementType,
  KeyScheduleAlgo,
  MeasurementHashAlgo,
  MeasurementOperation,
  MeasurementSpecification,
  MeasurementSummaryHashType,
  NONCE_SIZE,
  nameOf,
  OPAQUE_DATA_FMT_MASK,
  OtherParams,
  REQUESTER_CONTEXT_SIZE,
  ReqBaseAsymAlg,
  RequesterCapability,
  ResponderCapability,
  SpdmCode,
  SpdmErrorCode,
  SpdmRequestCode,
  spdmCodeLabel,
  spdmErrorLabel,
  versionFromEntry,
  versionName,
} from "../../protocol/spdm/codes.js";
import { type DecodeContext, negotiatedContext } from "../../protocol/spdm/context.js";
import { decodeMeasurementRecord, type MeasurementBlock } from "../../protocol/spdm/measurements.js";
import type {
  Algorithms,
  Capabilities,
  ErrorMessage,
  GetCapabilities,
  KnownMessageName,
  MessageOf,
  NegotiateAlgorithms,
  SpdmMessage,
} from "../../protocol/spdm/messages.js";
import { type CertChain, decodeCertChain } from "../crypto/cert-chain.js";
import { ASYM, type AsymAlgo, HASH, type HashAlgo, hash, keyFits } from "../crypto/suites.js";
import { CertChainError, verifyCertChain } from "../crypto/verify-chain.js";
import { type SecureSession, SessionError } from "./session.js";
import { type SigningContextName, type SigningSuite, verifyTranscript } from "./signing.js";
import { Transcript } from "./transcript.js";

/** One SPDM request in, one SPDM response out (a DOE transport may add 0–3 zero bytes after it). */
export interface SpdmTransport {
  send(request: Buffer): Promise<Buffer>;
  /** One secured record in, one out (DOE type 2); needed for sessions only. */
  sendSecured?(record: Buffer): Promise<Buffer>;
}

/** spdm-emu's --exe_conn steps after VCA, which always runs. */
export const CONNECTION_STEPS = ["DIGEST", "CERT", "CHAL", "MEAS"] as const;
export type ConnectionStep = (typeof CONNECTION_STEPS)[number];
/** The step each one builds on: CERT checks chains against DIGESTS, CHAL signs over the chain. */
const STEP_NEEDS: Record<ConnectionStep, ConnectionStep | undefined> = {
  DIGEST: undefined,
  CERT: "DIGEST",
  CHAL: "CERT",
  MEAS: undefined,
};

export type MeasurementMode = "ONE_BY_ONE" | "ALL";

export interface SpdmRequesterOptions {
  /** SPDMVersion bytes offered; the highest one VERSION also lists is used. Default 1.0–1.3. */
  versions?: readonly number[];
  /** GET_CAPABILITIES Flags (RequesterCapability); bits the negotiated version lacks are dropped. */
  capabilities?: number;
  ctExponent?: number;
  dataTransferSize?: number;
  maxSpdmMsgSize?: number;
  baseHashAlgo?: number;
  baseAsymAlgo?: number;
  measurementSpecification?: number;
  /**
   * MeasurementHashAlgo bits we accept. NEGOTIATE_ALGORITHMS has no such field (the responder picks),
   * so this is checked against ALGORITHMS, as spdm-emu's --meas_hash is a local setting.
   */
  measurementHashAlgo?: number;
  dheNamedGroup?: number;
  aeadCipherSuite?: number;
  reqBaseAsymAlg?: number;
  keySchedule?: number;
  otherParamsSupport?: number;
  melSpecification?: number;
  /** Slot challenged and used for measurements (0–7). */
  slotId?: number;
  /** More slots whose chains are fetched and verified before CHALLENGE (spdm-emu fetches its highest other slot). */
  extraSlots?: readonly number[];
  /** CHALLENGE Param2: MeasurementSummaryHashType (spdm-emu default ALL). */
  measurementSummaryHashType?: number;
  /** spdm-emu --meas_op: ONE_BY_ONE (its default) or ALL. */
  measurementMode?: MeasurementMode;
  /** GET_CERTIFICATE Length per request; libspdm asks 0xFFFF (the responder caps it), older libspdm 1024. */
  certPortionLength?: number;
  /** DER of the root certificate the chain must end in; without it only the chain's own consistency is checked. */
  trustRoot?: Uint8Array;
  /** Source of nonces and RequesterContexts (nonce first, then context, per request). */
  randomBytes?: (size: number) => Buffer;
  /** Re-sends after ERROR Busy. */
  busyRetries?: number;
  busyDelayMs?: number;
  /** RESPOND_IF_READY rounds after ERROR ResponseNotReady, and the longest wait honoured per round. */
  notReadyRetries?: number;
  maxNotReadyWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Time certificate validity is checked at; default now. */
  now?: () => Date;
  /** Steps run by authenticate() after VCA (spdm-emu --exe_conn); run() needs all of them. */
  connectionSteps?: readonly ConnectionStep[];
  /**
   * Our identity for mutual authentication (KEY_EXCHANGE_RSP MutAuthRequested bit 0; no
   * encapsulation): DER certificates, root first, and the leaf's private key. Given both, MUT_AUTH_CAP
   * is offered, and ReqBaseAsymAlg defaults to the algorithms the key fits.
   */
  requesterCertChain?: readonly Uint8Array[];
  requesterKey?: KeyObject;
}

/**
 * spdm-emu's requester defaults (spdm_emu_common/key.c), except: capabilities (what we implement:
 * no encapsulation, multi-key or large responses; MUT_AUTH_CAP only with a requester chain and
 * key, see SpdmRequesterOptions), versions (no 1.4: the
 * codecs stop at 1.3) and the 1024-byte certificate portions.
 */
export const REQUESTER_DEFAULTS = {
  versions: [0x10, 0x11, 0x12, 0x13],
  capabilities:
    RequesterCapability.CERT_CAP |
    RequesterCapability.CHAL_CAP |
    RequesterCapability.CHUNK_CAP |
    RequesterCapability.ENCRYPT_CAP |
    RequesterCapability.MAC_CAP |
    RequesterCapability.KEY_EX_CAP |
    RequesterCapability.PSK_CAP |
    RequesterCapability.HBEAT_CAP |
    RequesterCapability.KEY_UPD_CAP |
    RequesterCapability.HANDSHAKE_IN_THE_CLEAR_CAP,
  ctExponent: 0,
  dataTransferSize: 0x1200,
  maxSpdmMsgSize: 0x28000,
  baseHashAlgo: BaseHashAlgo.SHA_384 | BaseHashAlgo.SHA_256,
  baseAsymAlgo: BaseAsymAlgo.ECDSA_P384 | BaseAsymAlgo.ECDSA_P256,
  measurementSpecification: MeasurementSpecification.DMTF,
  measurementHashAlgo:
    MeasurementHashAlgo.SHA_512 | MeasurementHashAlgo.SHA_384 | MeasurementHashAlgo.SHA_256,
  dheNamedGroup:
    DheNamedGroup.SECP_384_R1 |
    DheNamedGroup.SECP_256_R1 |
    DheNamedGroup.FFDHE_3072 |
    DheNamedGroup.FFDHE_2048,
  aeadCipherSuite: AeadCipherSuite.AES_256_GCM | AeadCipherSuite.CHACHA20_POLY1305,
  reqBaseAsymAlg:
    ReqBaseAsymAlg.RSAPSS_3072 |
    ReqBaseAsymAlg.RSAPSS_2048 |
    ReqBaseAsymAlg.RSASSA_3072 |
    ReqBaseAsymAlg.RSASSA_2048,
  keySchedule: KeyScheduleAlgo.SPDM,
  otherParamsSupport: OtherParams.OPAQUE_DATA_FMT_1 | OtherParams.MULTI_KEY_CONN,
  melSpecification: 0x01,
  slotId: 0,
  extraSlots: [] as readonly number[],
  measurementSummaryHashType: MeasurementSummaryHashType.All,
  measurementMode: "ONE_BY_ONE" as MeasurementMode,
  certPortionLength: 1024,
  busyRetries: 3,
  busyDelayMs: 100,
  notReadyRetries: 3,
  maxNotReadyWaitMs: 10_000,
  connectionSteps: CONNECTION_STEPS as readonly ConnectionStep[],
} satisfies Omit<
  SpdmRequesterOptions,
  "trustRoot" | "randomBytes" | "sleep" | "now" | "requesterCertChain" | "requesterKey"
>;

/** Requester capability bits each version defines; libspdm drops the others before sending. */
const REQUESTER_CAPS_SINCE: readonly [version: number, mask: number][] = [
  [0x13, 0x0ec3_f7c6],
  [0x12, 0x0003_f7c6],
  [0x11, 0x0001_f7c6],
];

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

export interface MeasurementSummary {
  index: number;
  /** DMTF value type name, e.g. "ImmutableRom", or the number for other specifications/types. */
  type: string;
  /** "digest" or "raw" (raw bit stream). */
  form: "digest" | "raw";
  value: string;
}

export interface RequesterSummary {
  version: string;
  requesterCapabilities: string[];
  responderCapabilities: string[];
  algorithms: Record<string, string>;
  slot: number;
  provisionedSlots: number[];
  certificateChain: {
    bytes: number;
    certificates: number;
    rootSubject: string;
    leafSubject: string;
    /** Hash(leaf DER) with the negotiated hash, hex. */
    leafDigest: string;
    /** Subject of the trust root the chain was verified against; undefined when none was given. */
    trustAnchor: string | undefined;
  };
  /** Slots fetched besides `slot`, with their leaf subjects. */
  otherSlots: { slot: number; leafSubject: string }[];
  challenge: {
    measurementSummaryHashType: string;
    measurementSummaryHash: string | undefined;
    /** Whether the summary hash was recomputed from the measurement blocks. */
    summaryHashChecked: boolean;
  };
  measurements:
    | { mode: MeasurementMode; signed: boolean; blocks: MeasurementSummary[]; unsignedReason?: string }
    | { mode: "NONE"; reason: string };
  exchanges: number;
  timingsMs: { vca: number; certificates: number; challenge: number; measurements: number; total: number };
}

/** authenticate()'s summary: the certificate and challenge parts are there when their steps ran. */
export type ConnectionSummary = Omit<RequesterSummary, "certificateChain" | "challenge"> &
  Partial<Pick<RequesterSummary, "certificateChain" | "challenge">>;

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
  /** The slot's verified chain, if GET_CERTIFICATE fetched it. */
  chain(slot: number): { bytes: Buffer; leafKey: KeyObject } | undefined;
  /** The configured MeasurementSummaryHashType, None when the responder has no MEAS_CAP. */
  measurementSummaryHashType: number;
  random(size: number): Buffer;
  /** Our certificate chain and key for mutual authentication, if given. */
  requesterIdentity: { certsDer: readonly Uint8Array[]; privateKey: KeyObject } | undefined;
}

export interface Reply {
  requestBytes: Buffer;
  /** The exact response (transport padding cut off). */
  bytes: Buffer;
  message: SpdmMessage;
}

interface SlotChain {
  bytes: Buffer;
  chain: CertChain;
  leafKey: KeyObject;
}

const isOneHot0 = (x: number) => (x & (x - 1)) === 0;
const hex = (n: number) => `0x${n.toString(16)}`;
const bits = (mask: number) => [...Array(8).keys()].filter((i) => (mask >> i) & 1);
/** The suites.ts entry whose SPDM bit is `bit`. */
const suiteByBit = <T extends Record<string, { bit: number }>>(table: T, bit: number) =>
  (Object.keys(table) as (keyof T & string)[]).find((k) => table[k]!.bit === bit);
const SUPPORTED_HASH_BITS = Object.values(HASH).reduce((m, h) => m | h.bit, 0);
const SUPPORTED_ASYM_BITS = Object.values(ASYM).reduce((m, a) => m | a.bit, 0);
const MAX_OPAQUE_DATA = 1024;

type Names = Readonly<Record<string, number>>;
type Opts = Pick<Required<SpdmRequesterOptions>, "measurementHashAlgo">;
const structSel = (tables: { algType: number; algSupported: number }[], type: number) =>
  tables.find((t) => t.algType === type)?.algSupported ?? 0;
const struct = (type: number) => ({
  selected: (a: Algorithms) => structSel(a.algStructs, type),
  offered: (n: NegotiateAlgorithms) => structSel(n.algStructs, type),
  required: false as const,
});

/**
 * The one-of-many selections of ALGORITHMS: the summary label, the field name for messages, the
 * names, the selection, what we offered (or accept), and whether a selection is required.
 */
const SELECTIONS: {
  label: string;
  field: string;
  names: Names;
  selected: (a: Algorithms) => number;
  offered: (n: NegotiateAlgorithms, o: Opts) => number;
  required: boolean | "measurements";
}[] = [
  {
    label: "BaseHash",
    field: "BaseHashSel",
    names: BaseHashAlgo,
    selected: (a) => a.baseHashSel,
    offered: (n) => n.baseHashAlgo,
    required: true,
  },
  {
    label: "BaseAsym",
    field: "BaseAsymSel",
    names: BaseAsymAlgo,
    selected: (a) => a.baseAsymSel,
    offered: (n) => n.baseAsymAlgo,
    required: true,
  },
  {
    label: "MeasurementSpec",
    field: "MeasurementSpecificationSel",
    names: MeasurementSpecification,
    selected: (a) => a.measurementSpecificationSel,
    offered: (n) => n.measurementSpecification,
    required: "measurements",
  },
  {
    label: "MeasurementHash",
    field: "MeasurementHashAlgo",
    names: MeasurementHashAlgo,
    selected: (a) => a.measurementHashAlgo,
    offered: (_n, o) => o.measurementHashAlgo,
    required: "measurements",
  },
  { label: "DHE", field: "DHE", names: DheNamedGroup, ...struct(AlgType.DHE) },
  { label: "AEAD", field: "AEAD", names: AeadCipherSuite, ...struct(AlgType.AEAD) },
  {
    label: "ReqBaseAsym",
    field: "ReqBaseAsymAlg",
    names: ReqBaseAsymAlg,
    ...struct(AlgType.REQ_BASE_ASYM_ALG),
  },
  { label: "KeySchedule", field: "KeySchedule", names: KeyScheduleAlgo, ...struct(AlgType.KEY_SCHEDULE) },
];

export class SpdmRequester {
  private readonly o: Required<Omit<SpdmRequesterOptions, OptionalOption>> &
    Pick<SpdmRequesterOptions, OptionalOption>;
  private readonly transcript = new Transcript();
  private version = 0x10;
  private ctx: DecodeContext = {};
  private sentCapabilities = 0;
  private rsp?: Capabilities;
  private alg?: Algorithms;
  private suite?: SigningSuite;
  private readonly digests = new Map<number, Buffer>();
  private readonly chains = new Map<number, SlotChain>();
  private summaryHash?: Buffer;
  private summaryHashChecked = false;
  private challenged = false;
  /** The measurement blocks the last getMeasurements() read, for summary hashes. */
  private lastRecord?: Buffer;
  private exchanges = 0;
  private securedExchanges = 0;
  /** The session requests go through (inSession), if any. */
  private channel?: SecureSession;

  constructor(
    private readonly transport: SpdmTransport,
    options: SpdmRequesterOptions = {},
  ) {
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.o = {
      randomBytes: cryptoRandomBytes,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      ...REQUESTER_DEFAULTS,
      ...defined,
      ...mutualAuthOffer(options),
    };
    const { baseHashAlgo, baseAsymAlgo, slotId, extraSlots, certPortionLength } = this.o;
    // Offer only what suites.ts can verify.
    const offers: [string, Names, number, number][] = [
      ["BaseHashAlgo", BaseHashAlgo, baseHashAlgo, SUPPORTED_HASH_BITS],
      ["BaseAsymAlgo", BaseAsymAlgo, baseAsymAlgo, SUPPORTED_ASYM_BITS],
    ];
    for (const [field, names, offered, supported] of offers) {
      if (offered === 0 || (offered & ~supported) !== 0)
        throw new RangeError(
          `${field} ${bitNames(names, offered & ~supported).join(",") || "(none)"} is not supported; choose from ${bitNames(names, supported).join(",")}`,
        );
    }
    for (const s of [slotId, ...extraSlots])
      if (!Number.isInteger(s) || s < 0 || s > 7) throw new RangeError(`slot ${s} is not 0–7`);
    if (!(certPortionLength >= 1 && certPortionLength <= 0xffff))
      throw new RangeError(`certificate portion length ${certPortionLength} is not 1–65535`);
    for (const step of this.o.connectionSteps) {
      const need = STEP_NEEDS[step];
      if (need && !this.o.connectionSteps.includes(need))
        throw new RangeError(`connection step ${step} needs ${need}`);
    }
  }

  /** The whole flow (every connection step); resolves with what was verified, rejects with SpdmRequesterError. */
  async run(): Promise<RequesterSummary> {
    const missing = CONNECTION_STEPS.filter((step) => !this.o.connectionSteps.includes(step));
    if (missing.length > 0) throw new RangeError(`run() needs every connection step; ${missing} is off`);
    return (await this.authenticate()) as RequesterSummary;
  }

  /** VCA, then the configured connection steps (spdm-emu's --exe_conn). */
  async authenticate(): Promise<ConnectionSummary> {
    const steps = new Set(this.o.connectionSteps);
    const t = [performance.now()];
    const lap = () => {
      t.push(performance.now());
      return Math.round((t.at(-1)! - t.at(-2)!) * 10) / 10;
    };
    await this.negotiate();
    const vca = lap();
    if (steps.has("DIGEST")) await this.getDigests();
    if (steps.has("CERT"))
      for (const slot of [this.o.slotId, ...this.o.extraSlots]) await this.getCertificateChain(slot);
    const certificates = lap();
    if (steps.has("CHAL")) await this.challenge();
    const challenge = lap();
    const measurements = steps.has("MEAS")
      ? await this.getMeasurements()
      : { mode: "NONE" as const, reason: "not requested" };
    const measurementsMs = lap();
    const total = Math.round((t.at(-1)! - t[0]!) * 10) / 10;
    return this.summarize(measurements, {
      vca,
      certificates,
      challenge,
      measurements: measurementsMs,
      total,
    });
  }

  /** What session establishment needs; after negotiate(). */
  get connection(): RequesterConnection {
    if (!this.alg || !this.suite || !this.rsp) throw new Error("the connection is not negotiated yet");
    const type = this.measCap() === 0 ? MeasurementSummaryHashType.None : this.o.measurementSummaryHashType;
    return {
      version: this.version,
      suite: this.suite,
      algorithms: this.alg,
      ctx: this.ctx,
      requesterFlags: this.sentCapabilities,
      responderFlags: this.rsp.flags,
      vca: this.transcript.vca,
      digests: this.ctx.multiKeyConn ? this.transcript.digests : undefined,
      slotId: this.o.slotId,
      chain: (slot) => this.chains.get(slot),
      measurementSummaryHashType: type,
      random: (size) => this.random(size),
      requesterIdentity: this.o.requesterKey && {
        certsDer: this.o.requesterCertChain ?? [],
        privateKey: this.o.requesterKey,
      },
    };
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

  /** Requests sent so far, and how many of them went through a session. */
  get counts(): { exchanges: number; secured: number } {
    return { exchanges: this.exchanges, secured: this.securedExchanges };
  }

  // ---- VCA ------------------------------------------------------------------------------------

  async negotiate(): Promise<void> {
    const vr = await this.exchange({ code: "GET_VERSION", version: 0x10 });
    const versions = expectResponse(vr, "VERSION").versionNumberEntries.map(versionFromEntry);
    this.transcript.addVca(vr.requestBytes, vr.bytes);
    const common = this.o.versions.filter((v) => versions.includes(v));
    if (common.length === 0) {
      fail(
        "negotiation",
        `no common SPDM version: responder offers ${versions.map(versionName).join(", ")}, we offer ${this.o.versions.map(versionName).join(", ")}`,
      );
    }
    this.version = Math.max(...common);

    const v = this.version;
    this.sentCapabilities =
      this.o.capabilities & (REQUESTER_CAPS_SINCE.find(([since]) => v >= since)?.[1] ?? 0);
    const getCaps: GetCapabilities = { code: "GET_CAPABILITIES", version: v, attributes: 0 };
    if (v >= 0x11)
      Object.assign(getCaps, { ctExponent: this.o.ctExponent, extFlags: 0, flags: this.sentCapabilities });
    if (v >= 0x12)
      Object.assign(getCaps, {
        dataTransferSize: this.o.dataTransferSize,
        maxSpdmMsgSize: this.o.maxSpdmMsgSize,
      });
    const cr = await this.exchange(getCaps);
    const rsp = expectResponse(cr, "CAPABILITIES");
    this.transcript.addVca(cr.requestBytes, cr.bytes);
    this.rsp = rsp;
    const steps = this.o.connectionSteps;
    const needs = [
      ["CERT_CAP", steps.includes("DIGEST") || steps.includes("CERT")],
      ["CHAL_CAP", steps.includes("CHAL")],
    ] as const;
    for (const [cap, needed] of needs) {
      if (needed && !(rsp.flags & ResponderCapability[cap]))
        fail("negotiation", `responder lacks ${cap} (CAPABILITIES flags ${hex(rsp.flags)})`);
    }

    const neg = this.negotiateAlgorithmsRequest(rsp);
    const ar = await this.exchange(neg);
    const alg = expectResponse(ar, "ALGORITHMS");
    this.checkAlgorithms(neg, alg, rsp);
    this.transcript.addVca(ar.requestBytes, ar.bytes);
    this.alg = alg;
    this.ctx = negotiatedContext({
      algorithms: alg,
      getCapabilities: getCaps,
      capabilities: rsp,
      negotiateAlgorithms: neg,
    });
    this.suite = {
      version: v,
      hash: suiteByBit(HASH, alg.baseHashSel) as HashAlgo,
      asym: suiteByBit(ASYM, alg.baseAsymSel) as AsymAlgo,
    };
  }

  /** As libspdm builds it: struct tables for what is offered (1.1+), opaque formats 1.2+, MEL and multi-key 1.3. */
  private negotiateAlgorithmsRequest(rsp: Capabilities): NegotiateAlgorithms {
    const v = this.version;
    const tables: [number, number][] = [
      [AlgType.DHE, this.o.dheNamedGroup],
      [AlgType.AEAD, this.o.aeadCipherSuite],
      [AlgType.REQ_BASE_ASYM_ALG, this.o.reqBaseAsymAlg],
      [AlgType.KEY_SCHEDULE, this.o.keySchedule],
    ];
    let other = 0;
    if (v >= 0x13) {
      const multiKey = rsp.flags & CapabilityField.MULTI_KEY_CAP;
      if (multiKey === CapabilityField.MULTI_KEY_CAP)
        fail("negotiation", "CAPABILITIES sets both MULTI_KEY_CAP values");
      const multiKeyConn =
        multiKey === ResponderCapability.MULTI_KEY_CAP_ONLY ||
        (multiKey === ResponderCapability.MULTI_KEY_CAP_NEG &&
          (this.o.otherParamsSupport & OtherParams.MULTI_KEY_CONN) !== 0);
      other =
        (this.o.otherParamsSupport & ~OtherParams.MULTI_KEY_CONN) |
        (multiKeyConn ? OtherParams.MULTI_KEY_CONN : 0);
    } else if (v >= 0x12) other = this.o.otherParamsSupport & OPAQUE_DATA_FMT_MASK;
    return {
      code: "NEGOTIATE_ALGORITHMS",
      version: v,
      measurementSpecification: this.o.measurementSpecification,
      otherParamsSupport: other,
      baseAsymAlgo: this.o.baseAsymAlgo,
      baseHashAlgo: this.o.baseHashAlgo,
      melSpecification: v >= 0x13 ? this.o.melSpecification : 0,
      extAsym: [],
      extHash: [],
      algStructs:
        v >= 0x11
          ? tables
              .filter(([, bits]) => bits !== 0)
              .map(([algType, algSupported]) => ({ algType, algSupported, extAlgs: [] }))
          : [],
    };
  }

  private checkAlgorithms(neg: NegotiateAlgorithms, alg: Algorithms, rsp: Capabilities): void {
    const measCap = (rsp.flags & CapabilityField.MEAS_CAP) !== 0;
    for (const { field, names, selected, offered, required } of SELECTIONS) {
      const sel = selected(alg);
      // Measurement fields are the responder's to fill only with MEAS_CAP; the hash is ours to accept.
      const ours = required === "measurements" && !measCap ? 0 : offered(neg, this.o);
      if (!isOneHot0(sel))
        fail("negotiation", `ALGORITHMS ${field} selects several algorithms (${hex(sel)})`);
      if (sel === 0 && (required === true || (required === "measurements" && measCap)))
        fail("negotiation", `ALGORITHMS selects no ${field}`);
      if (sel !== 0 && (sel & ours) === 0) {
        fail(
          "negotiation",
          `ALGORITHMS ${field} selects ${bitNames(names, sel).join("")}, which we did not offer (we offer ${bitNames(names, ours).join(",") || "none"})`,
        );
      }
    }
    if (alg.extAsymSel.length + alg.extHashSel.length > 0)
      fail("negotiation", "ALGORITHMS selects extended algorithms, which we did not offer");
    const extraOther = alg.otherParamsSelection & ~neg.otherParamsSupport;
    if (extraOther !== 0 || !isOneHot0(alg.otherParamsSelection & OPAQUE_DATA_FMT_MASK))
      fail(
        "negotiation",
        `ALGORITHMS OtherParamsSelection ${hex(alg.otherParamsSelection)} does not fit what we offered (${hex(neg.otherParamsSupport)})`,
      );
  }

  // ---- certificates ---------------------------------------------------------------------------

  async getDigests(): Promise<void> {
    const r = await this.exchange({ code: "GET_DIGESTS", version: this.version });
    const d = expectResponse(r, "DIGESTS");
    // Inside a session libspdm keeps digests and certificates out of B, and D is the first DIGESTS outside.
    if (!this.channel) {
      this.transcript.addCertificateExchange(r.requestBytes, r.bytes);
      this.transcript.noteDigests(r.bytes);
    }
    this.digests.clear();
    for (const [i, slot] of bits(d.provisionedSlotMask).entries()) this.digests.set(slot, d.digests[i]!);
    for (const slot of [this.o.slotId, ...this.o.extraSlots]) {
      if (!this.digests.has(slot))
        fail(
          "certificate",
          `slot ${slot} is not provisioned (DIGESTS slot mask ${hex(d.provisionedSlotMask)})`,
        );
    }
  }

  /** Fetches a slot's chain portion by portion, RemainderLength-driven, then verifies it. */
  async getCertificateChain(slot: number): Promise<SlotChain> {
    const portions: Buffer[] = [];
    let offset = 0;
    let total = 0;
    let remainder = 0;
    do {
      const length = offset === 0 ? this.o.certPortionLength : Math.min(this.o.certPortionLength, remainder);
      const r = await this.exchange({
        code: "GET_CERTIFICATE",
        version: this.version,
        slotId: slot,
        attributes: 0,
        offset,
        length,
      });
      const c = expectResponse(r, "CERTIFICATE");
      const at = `CERTIFICATE (slot ${slot}, offset ${offset})`;
      if ((c.slotId & 0xf) !== slot) fail("certificate", `${at} is for slot ${c.slotId & 0xf}`);
      if (c.certChain.length === 0 || c.certChain.length > length)
        fail("certificate", `${at} carries ${c.certChain.length} bytes, we asked for 1–${length}`);
      if (offset === 0) total = c.certChain.length + c.remainderLength;
      else if (offset + c.certChain.length + c.remainderLength !== total) {
        fail(
          "certificate",
          `${at}: PortionLength ${c.certChain.length} + RemainderLength ${c.remainderLength} does not add up to the ${total} bytes announced`,
        );
      }
      if (total > 0xffff) fail("certificate", `${at} announces a ${total}-byte chain, more than 65535`);
      this.checkCertificateModel(slot, c.attributes);
      if (!this.channel) this.transcript.addCertificateExchange(r.requestBytes, r.bytes);
      portions.push(c.certChain);
      offset += c.certChain.length;
      remainder = c.remainderLength;
    } while (remainder !== 0);
    const entry = await this.verifyChain(slot, Buffer.concat(portions));
    this.chains.set(slot, entry);
    return entry;
  }

  /** 1.3 CERTIFICATE Param2 certificate model: none without multi-key; ≤ generic, and not generic on slot 0, with it (libspdm). */
  private checkCertificateModel(slot: number, attributes: number): void {
    if (this.version < 0x13) return;
    const model = attributes & 0x7;
    const ok = this.ctx.multiKeyConn ? model <= 3 && !(slot === 0 && model === 3) : model === 0;
    if (!ok) fail("certificate", `CERTIFICATE (slot ${slot}) names certificate model ${model}`);
  }

  private async verifyChain(slot: number, bytes: Buffer): Promise<SlotChain> {
    const { hash: h, asym } = this.suite!;
    const what = `slot ${slot} certificate chain`;
    let chain: CertChain;
    try {
      chain = decodeCertChain(h, bytes);
    } catch (e) {
      if (e instanceof DecodeError) fail("certificate", `${what} is malformed: ${e.message}`, e);
      throw e;
    }
    if (!hash(h, bytes).equals(this.digests.get(slot)!))
      fail(
        "certificate",
        `${what} does not match its DIGESTS digest (${h} of the ${bytes.length}-byte chain)`,
      );
    try {
      await verifyCertChain(chain.certsDer, this.o.trustRoot, { asym, now: this.o.now?.() });
    } catch (e) {
      if (e instanceof CertChainError) fail("certificate", `${what}: ${e.message}`, e);
      throw e;
    }
    return { bytes, chain, leafKey: chain.certs.at(-1)!.publicKey };
  }

  // ---- CHALLENGE ------------------------------------------------------------------------------

  async challenge(): Promise<void> {
    const slot = this.o.slotId;
    const { bytes: chainBytes, leafKey } = this.chains.get(slot)!;
    const type = this.measCap() === 0 ? MeasurementSummaryHashType.None : this.o.measurementSummaryHashType;
    const nonce = this.random(NONCE_SIZE);
    const requesterContext = this.version >= 0x13 ? this.random(REQUESTER_CONTEXT_SIZE) : undefined;
    const r = await this.exchange(
      {
        code: "CHALLENGE",
        version: this.version,
        slotId: slot,
        measurementSummaryHashType: type,
        nonce,
        requesterContext,
      },
      { measurementSummaryHashType: type },
    );
    const a = expectResponse(r, "CHALLENGE_AUTH");
    const bad = (reason: string) => fail("challenge", `CHALLENGE_AUTH ${reason}`);
    if ((a.attributes & 0xf) !== slot) bad(`is for slot ${a.attributes & 0xf}, we challenged slot ${slot}`);
    if (a.attributes & 0x80) bad("asks for basic mutual authentication, which this requester does not do");
    if (!((a.slotMask >> slot) & 1)) bad(`slot mask ${hex(a.slotMask)} lacks slot ${slot}`);
    if (!a.certChainHash.equals(hash(this.suite!.hash, chainBytes)))
      bad(`CertChainHash is not the ${this.suite!.hash} of slot ${slot}'s certificate chain`);
    this.checkOpaque("CHALLENGE_AUTH", a.opaqueData);
    // CHALLENGE_AUTH's Nonce is the responder's own: our nonce's freshness is proven by M1, which
    // holds our CHALLENGE; what is echoed (1.3) is the RequesterContext.
    if (requesterContext && !a.requesterContext?.equals(requesterContext))
      bad("does not echo our RequesterContext");
    const m1 = this.transcript.challenge(r.requestBytes, withoutSignature(r.bytes, a.signature));
    this.verifySignature("CHALLENGE_AUTH", "M1", leafKey, m1, a.signature);
    this.transcript.markAuthenticated();
    this.challenged = true;
    this.summaryHash = type === MeasurementSummaryHashType.None ? undefined : a.measurementSummaryHash;
  }

  // ---- measurements ---------------------------------------------------------------------------

  private measCap(): number {
    return this.rsp!.flags & CapabilityField.MEAS_CAP;
  }

  /**
   * spdm-emu's measurement loop (spdm_requester_measurement.c). ONE_BY_ONE: count; scan indices
   * 1..0xFE (absent ones answer InvalidRequest) asking for a signature on the last one expected;
   * read the found indices again — the signature flag stays set, so each is signed on its own and
   * no ERROR between them resets L1. ALL: count, then all blocks in one signed response.
   */
  async getMeasurements(): Promise<RequesterSummary["measurements"]> {
    const cap = this.measCap();
    if (cap === 0) return { mode: "NONE", reason: "the responder has no MEAS_CAP" };
    // Signatures need the slot's leaf key: without GET_CERTIFICATE (e.g. a PSK-only run) ask for none.
    const haveKey = this.chains.has(this.o.slotId);
    const signed = cap === ResponderCapability.MEAS_CAP_SIG && haveKey;
    const unsignedReason =
      cap !== ResponderCapability.MEAS_CAP_SIG
        ? "the responder has MEAS_CAP_NO_SIG"
        : haveKey
          ? undefined
          : `no certificate chain for slot ${this.o.slotId} to verify signatures with`;
    const count = (await this.measure(MeasurementOperation.TotalNumber, false))!.message
      .totalMeasurementIndices;
    let records: Buffer[];
    if (this.o.measurementMode === "ALL") {
      const all = (await this.measure(MeasurementOperation.All, signed))!;
      if (all.message.numberOfBlocks !== count)
        fail(
          "measurements",
          `MEASUREMENTS holds ${all.message.numberOfBlocks} blocks, the responder counted ${count}`,
        );
      records = [all.message.measurementRecord];
    } else {
      const found: number[] = [];
      let sign = false;
      for (let index = 1; index < MeasurementOperation.All && found.length < count; index++) {
        if (found.length === count - 1) sign = signed;
        if (await this.measure(index, sign, true)) found.push(index);
      }
      if (found.length !== count)
        fail(
          "measurements",
          `the responder counted ${count} measurement indices, indices 1–254 hold ${found.length}`,
        );
      records = [];
      for (const index of found) records.push((await this.measure(index, sign))!.message.measurementRecord);
    }
    const record = Buffer.concat(records);
    const blocks = decodeMeasurementRecord(record);
    this.lastRecord = record;
    // CHALLENGE_AUTH's summary hash is about the connection; a session checks its own (requester-session.ts).
    if (!this.channel) {
      const match = this.summaryHashMatches(this.summaryHash, this.o.measurementSummaryHashType);
      if (match === false)
        fail(
          "measurements",
          "CHALLENGE_AUTH MeasurementSummaryHash is not the hash of the measurement blocks MEASUREMENTS returned",
        );
      this.summaryHashChecked = match === true;
    }
    const summary = { mode: this.o.measurementMode, signed, blocks: blocks.map(describeBlock) };
    return unsignedReason ? { ...summary, unsignedReason } : summary;
  }

  /** One GET_MEASUREMENTS; with `absentOk`, ERROR InvalidRequest (no such index) gives undefined. */
  private async measure(operation: number, sign: boolean, absentOk = false) {
    const v = this.version;
    const nonce = sign ? this.random(NONCE_SIZE) : undefined;
    const requesterContext = v >= 0x13 ? this.random(REQUESTER_CONTEXT_SIZE) : undefined;
    const r = await this.exchange(
      {
        code: "GET_MEASUREMENTS",
        version: v,
        attributes: sign ? 1 : 0,
        operation,
        nonce,
        slotIdParam: sign && v >= 0x11 ? this.o.slotId : undefined,
        requesterContext,
      },
      { measurementSignatureRequested: sign },
    );
    if (absentOk && r.message.code === "ERROR" && r.message.errorCode === SpdmErrorCode.InvalidRequest)
      return undefined;
    const m = expectResponse(r, "MEASUREMENTS");
    const what = `MEASUREMENTS for operation ${hex(operation)}`;
    const bad = (reason: string) => fail("measurements", `${what} ${reason}`);
    const blocks = decodeMeasurementRecord(m.measurementRecord);
    if (operation === MeasurementOperation.TotalNumber) {
      if (m.numberOfBlocks !== 0) bad(`holds ${m.numberOfBlocks} blocks, a count holds none`);
    } else if (operation === MeasurementOperation.All) {
      if (m.numberOfBlocks === 0 || m.numberOfBlocks === 0xff) bad(`holds ${m.numberOfBlocks} blocks`);
    } else if (blocks.length !== 1 || blocks[0]!.index !== operation) {
      bad(`holds blocks ${blocks.map((b) => b.index).join(",") || "none"}, not block ${operation}`);
    }
    for (const b of blocks) {
      if (b.measurementSpecification !== this.alg!.measurementSpecificationSel)
        bad(
          `block ${b.index} uses measurement specification ${hex(b.measurementSpecification)}, not the selected ${hex(this.alg!.measurementSpecificationSel)}`,
        );
    }
    this.checkOpaque("MEASUREMENTS", m.opaqueData);
    if (requesterContext && !m.requesterContext?.equals(requesterContext))
      bad("does not echo our RequesterContext");
    const l1 = this.transcript.measurements(
      v,
      r.requestBytes,
      withoutSignature(r.bytes, m.signature),
      sign,
      this.channel?.measurementLog,
    );
    if (sign) {
      if (v >= 0x11 && (m.slotIdParam & 0xf) !== this.o.slotId)
        bad(`is signed for slot ${m.slotIdParam & 0xf}`);
      this.verifySignature("MEASUREMENTS", "L1", this.chains.get(this.o.slotId)!.leafKey, l1!, m.signature);
    }
    return { message: m, blocks };
  }

  /**
   * Whether a MeasurementSummaryHash of type ALL is the Hash of every measurement block in index order
   * (libspdm and DSP0274), over the blocks the last getMeasurements() read. Undefined when it cannot
   * be told: no hash, type TCB (which blocks count is device policy), or no blocks read yet.
   */
  summaryHashMatches(summaryHash: Buffer | undefined, type: number): boolean | undefined {
    if (!summaryHash?.length || type !== MeasurementSummaryHashType.All || !this.lastRecord?.length)
      return undefined;
    return hash(this.suite!.hash, this.lastRecord).equals(summaryHash);
  }

  // ---- shared checks --------------------------------------------------------------------------

  private verifySignature(
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

  private checkOpaque(message: string, opaque: Buffer): void {
    if (opaque.length > MAX_OPAQUE_DATA)
      fail("malformed", `${message} OpaqueDataLength ${opaque.length} exceeds ${MAX_OPAQUE_DATA}`);
    if (
      this.version >= 0x12 &&
      opaque.length > 0 &&
      (this.alg!.otherParamsSelection & OPAQUE_DATA_FMT_MASK) === 0
    )
      fail("malformed", `${message} carries opaque data, but no opaque data format was selected`);
  }

  private random(size: number): Buffer {
    const b = this.o.randomBytes(size);
    if (b.length !== size) throw new RangeError(`randomBytes(${size}) gave ${b.length} bytes`);
    return b;
  }

  // ---- message exchange -----------------------------------------------------------------------

  /**
   * Sends one request and returns its final response: ResponseNotReady is followed by
   * RESPOND_IF_READY, LargeResponse by CHUNK_GET, Busy by a re-send (each bounded). Other ERRORs are
   * returned for the caller to judge. Applies the transcript reset rules for the request first.
   * Inside inSession() everything goes through the session; session flows (requester-session.ts)
   * call this directly.
   */
  async exchange(request: SpdmMessage, extra: DecodeContext = {}): Promise<Reply> {
    const requestBytes = encodeSpdm(request);
    const code = SpdmCode[request.code as KnownMessageName];
    const ctx = { ...this.ctx, ...extra };
    this.transcript.onRequest(code, this.channel?.measurementLog);
    for (let busy = 0; ; busy++) {
      let reply = await this.roundTrip(requestBytes, ctx);
      for (let round = 0; isError(reply, SpdmErrorCode.ResponseNotReady); round++) {
        if (round === this.o.notReadyRetries)
          fail("error-response", `${request.code} still not ready after ${round} RESPOND_IF_READY`);
        reply = await this.respondIfReady(request.code, code, reply.message as ErrorMessage, ctx);
      }
      if (isError(reply, SpdmErrorCode.LargeResponse))
        reply = await this.chunkGet(request.code, reply.message as ErrorMessage, ctx);
      // libspdm drops the measurement log on any ERROR to GET_MEASUREMENTS except ResponseNotReady.
      if (reply.message.code === "ERROR" && code === SpdmRequestCode.GET_MEASUREMENTS)
        this.transcript.resetMeasurements(this.channel?.measurementLog);
      if (isError(reply, SpdmErrorCode.Busy) && busy < this.o.busyRetries) {
        await this.o.sleep(this.o.busyDelayMs);
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
    await this.o.sleep(Math.min(2 ** rnr.rdtExponent / 1000, this.o.maxNotReadyWaitMs));
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
      if (seq > 0xffff) fail("malformed", `CHUNK_RESPONSE sequence for ${name} does not end`);
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
      if (got > size || size > this.o.maxSpdmMsgSize)
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
    // this.version is 1.0 until VERSION is in (GET_VERSION/VERSION always travel as 1.0).
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

  // ---- summary --------------------------------------------------------------------------------

  private summarize(
    measurements: RequesterSummary["measurements"],
    timingsMs: RequesterSummary["timingsMs"],
  ): ConnectionSummary {
    const alg = this.alg!;
    const algorithms = Object.fromEntries(
      [
        ...SELECTIONS,
        { label: "OtherParams", names: OtherParams, selected: (a: Algorithms) => a.otherParamsSelection },
      ]
        .filter(({ selected }) => selected(alg) !== 0)
        .map(({ label, names, selected }) => [label, bitNames(names, selected(alg)).join(",")]),
    );
    const { slotId } = this.o;
    const main = this.chains.get(slotId);
    const type = this.measCap() === 0 ? MeasurementSummaryHashType.None : this.o.measurementSummaryHashType;
    return {
      version: versionName(this.version),
      requesterCapabilities: bitNames(RequesterCapability, this.sentCapabilities),
      responderCapabilities: bitNames(ResponderCapability, this.rsp!.flags),
      algorithms,
      slot: slotId,
      provisionedSlots: [...this.digests.keys()],
      certificateChain: main && {
        bytes: main.bytes.length,
        certificates: main.chain.certs.length,
        rootSubject: main.chain.certs[0]!.subject,
        leafSubject: main.chain.certs.at(-1)!.subject,
        leafDigest: hash(this.suite!.hash, main.chain.certsDer.at(-1)!).toString("hex"),
        trustAnchor: this.o.trustRoot && new X509Certificate(this.o.trustRoot).subject,
      },
      otherSlots: this.o.extraSlots.flatMap((slot) => {
        const leaf = this.chains.get(slot)?.chain.certs.at(-1);
        return leaf ? [{ slot, leafSubject: leaf.subject }] : [];
      }),
      challenge: this.challenged
        ? {
            measurementSummaryHashType: nameOf(MeasurementSummaryHashType, type) ?? hex(type),
            measurementSummaryHash: this.summaryHash?.toString("hex"),
            summaryHashChecked: this.summaryHashChecked,
          }
        : undefined,
      measurements,
      exchanges: this.exchanges,
      timingsMs,
    };
  }
}

type DecodedReply = Omit<Reply, "requestBytes">;
type OptionalOption = "trustRoot" | "now" | "requesterCertChain" | "requesterKey";

/**
 * With a requester chain and key: MUT_AUTH_CAP added to the capabilities, and ReqBaseAsymAlg (unless
 * given) every algorithm the key fits; an offer the key cannot sign with is refused here.
 */
function mutualAuthOffer(o: SpdmRequesterOptions): Partial<SpdmRequesterOptions> {
  const { requesterCertChain: chain, requesterKey: key } = o;
  if (!chain !== !key)
    throw new RangeError("mutual authentication needs both the requester chain and its key");
  if (!chain || !key) return {};
  if (chain.length === 0) throw new RangeError("the requester certificate chain is empty");
  const fitting = (Object.keys(ASYM) as AsymAlgo[])
    .filter((a) => keyFits(a, key))
    .reduce((m, a) => m | ASYM[a].bit, 0);
  const reqBaseAsymAlg = o.reqBaseAsymAlg ?? fitting;
  if ((reqBaseAsymAlg & fitting) === 0)
    throw new RangeError(
      `ReqBaseAsymAlg ${bitNames(ReqBaseAsymAlg, reqBaseAsymAlg).join(",") || "(none)"} has no algorithm the requester key signs with (${bitNames(ReqBaseAsymAlg, fitting).join(",") || "none"})`,
    );
  return {
    capabilities: (o.capabilities ?? REQUESTER_DEFAULTS.capabilities) | RequesterCapability.MUT_AUTH_CAP,
    reqBaseAsymAlg,
  };
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
function withoutSignature(bytes: Buffer, signature: Buffer): Buffer {
  return bytes.subarray(0, bytes.length - signature.length);
}

function describeBlock(b: MeasurementBlock): MeasurementSummary {
  if (!b.dmtf)
    return {
      index: b.index,
      type: `spec ${hex(b.measurementSpecification)}`,
      form: "raw",
      value: b.measurement.toString("hex"),
    };
  return {
    index: b.index,
    type: nameOf(DmtfMeasurementType, b.dmtf.type) ?? String(b.dmtf.type),
    form: b.dmtf.rawBitStream ? "raw" : "digest",
    value: b.dmtf.value.toString("hex"),
  };
}
