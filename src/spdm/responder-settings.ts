/**
 * The `spdm` section of a device description (docs/ARCHITECTURE.md) and its translation
 * into the numbers the responder works with. Names follow spdm-emu's command-line flags
 * (`--hash SHA_384`, `--asym ECDSA_P384`, `--dhe SECP_384_R1`, ...), so one vocabulary serves both.
 * Every field has a default: `{}` is a working SPDM 1.0–1.4 responder that looks like DMTF's sample
 * one (spdm_responder_emu): generated certificate chains in slots 0, 1 and 4, its eight
 * measurement blocks, and secure sessions (KEY_EXCHANGE with the handshake in the clear when the
 * requester agrees, PSK_EXCHANGE with DMTF's test PSK and a responder context, heartbeat, key
 * update) as spdm_responder_emu offers them, mutual authentication aside (it is on with
 * `mutualAuth`, which also advertises MUT_AUTH_CAP, and ENCAP_CAP for the modes that fetch the
 * requester's chain through encapsulated requests).
 *
 * Only capabilities the responder implements can be named (MUT_AUTH cannot; ENCAP alone allows the
 * responder-initiated KEY_UPDATE; MULTI_KEY_NEG / MULTI_KEY_ONLY, off by default, offer a 1.3
 * multi-key connection; the provisioning ones, MEL, CSR, SET_CERT,
 * EP_INFO_*, *_KEY_PAIR_INFO, are off by default); the
 * algorithm lists are preference orders (first = most preferred) over what src/crypto/suites.ts
 * implements, which has no FFDHE: DHE is ECDHE only.
 */
import { type KeyObject, X509Certificate } from "node:crypto";
import { resolve } from "node:path";
import * as z from "zod";
import {
  DMTF_VALUE_TYPE_RAW_BIT_STREAM,
  DmtfMeasurementType,
  ResponderCapability,
  SpdmRequestCode,
} from "../../protocol/spdm/codes.js";
import { encodeDmtfMel, SAMPLE_ENDPOINT_INFO } from "../../protocol/spdm/provision.js";
import {
  CertFileError,
  loadCertChainFile,
  loadPrivateKeyFile,
  loadPublicKeyFile,
} from "../crypto/cert-files.js";
import {
  AEAD,
  ASYM,
  type AsymAlgo,
  DHE,
  HASH,
  type HashAlgo,
  keyFits,
  publicKeyDer,
} from "../crypto/suites.js";
import {
  DMTF_TEST_PSK,
  DMTF_TEST_PSK_HINT,
  KEY_SCHEDULE_NAMES,
  MEASUREMENT_HASH_NAMES,
  RESPONDER_CAPABILITY_NAMES,
  VERSION_NAMES,
} from "./names.js";
import type { Provisioning } from "./provisioning.js";
import { CERTIFICATE_CAPABILITIES } from "./public-key.js";
import type { KeyLog } from "./session.js";

// ---- names ------------------------------------------------------------------------------------

const { GET_DIGESTS, GET_CERTIFICATE, CHALLENGE, GET_MEASUREMENTS, KEY_EXCHANGE, PSK_EXCHANGE } =
  SpdmRequestCode;
/** Measurement hashes we compute: a raw bit stream, or a hash the suites implement. */
const MEASUREMENT_HASHES = Object.fromEntries(
  Object.entries(MEASUREMENT_HASH_NAMES).filter(([n]) => n === "RAW_BIT" || n in HASH),
) as Pick<typeof MEASUREMENT_HASH_NAMES, "RAW_BIT" | keyof typeof HASH>;

/** The requests a `notReady` device may hold back. */
export const NOT_READY_REQUESTS = {
  GET_DIGESTS,
  GET_CERTIFICATE,
  CHALLENGE,
  GET_MEASUREMENTS,
  KEY_EXCHANGE,
  PSK_EXCHANGE,
};

/** ResponseNotReady timing when the description gives none (a fault injected at run time). */
export const NOT_READY_DEFAULTS = { rdtExponent: 10, rdtm: 2, delayMs: 0 };

/** A zod enum over the keys of a name table. */
const names = <T extends object>(table: T) =>
  z.enum(Object.keys(table) as [keyof T & string, ...(keyof T & string)[]]);
const list = <T extends object>(table: T, defaults: (keyof T & string)[]) =>
  z.array(names(table)).min(1).default(defaults);
const int = (min: number, max: number) => z.number().int().min(min).max(max);
const HEX = /^0x([0-9a-f]{2})*$/i;
/** Bytes given as hex with a "0x" prefix, or as UTF-8 text. */
const bytesOf = (value: string) =>
  HEX.test(value) ? Buffer.from(value.slice(2), "hex") : Buffer.from(value, "utf8");

// ---- schema -----------------------------------------------------------------------------------

const slotSchema = z.union([
  z.strictObject({
    slot: int(0, 7),
    /** DER-concatenated or PEM certificates, root first. */
    certChain: z.string().min(1),
    /** The leaf's private key: PEM or DER, PKCS#8 or SEC1 (or PKCS#1 for RSA). */
    privateKey: z.string().min(1),
  }),
  z.strictObject({
    slot: int(0, 7),
    /** A chain generated for whichever asym algorithm a connection negotiates (see responder-slots.ts). */
    generate: z.literal(true),
    commonName: z.string().min(1).optional(),
  }),
]);

const measurementSchema = z
  .strictObject({
    index: int(1, 0xfe),
    type: names(DmtfMeasurementType),
    /**
     * The measured bytes: UTF-8 text, or hex with a "0x" prefix (SecureVersionNumber: a u64 LE;
     * DeviceMode: four u32 LE; HashExtend: what is extended into a zero digest, see measurements).
     */
    value: z.string(),
    /** Always reported as a raw bit stream (e.g. a version string); otherwise as a digest unless raw is requested. */
    raw: z.boolean().default(false),
  })
  .refine((m) => !(m.raw && m.type === "HashExtend"), {
    message: "a HashExtend measurement is always a digest",
    path: ["raw"],
  });

/**
 * The blocks spdm_responder_emu reports (libspdm's sample device, meas.c): ROM, firmware and
 * configuration digests, a secure version number, a hash-extended block, a manifest and the
 * device mode; our own values.
 */
export const DEFAULT_MEASUREMENTS: z.output<typeof measurementSchema>[] = [
  { index: 1, type: "ImmutableRom", value: "doe-emu boot ROM 1.0", raw: false },
  { index: 2, type: "MutableFirmware", value: "doe-emu device firmware 1.0.0", raw: false },
  { index: 3, type: "HardwareConfig", value: "doe-emu hardware configuration: 1 PF, TEE-IO", raw: false },
  { index: 4, type: "FirmwareConfig", value: "doe-emu firmware configuration: defaults", raw: false },
  { index: 16, type: "SecureVersionNumber", value: "0x0700000000000000", raw: true },
  { index: 17, type: "HashExtend", value: "doe-emu boot log: ROM, Boot FW, 1.0.3.10", raw: false },
  {
    index: 253,
    type: "Manifest",
    value: "doe-emu manifest: ROM 1, firmware 2, configuration 3-4",
    raw: true,
  },
  { index: 254, type: "DeviceMode", value: "0x3f000000040000001f00000011000000", raw: true },
];

/**
 * spdm_responder_emu's populated slots (0, 1 and 4), generated: each chain is made the first time
 * a connection negotiates its asym algorithm, so start-up makes none.
 */
export const DEFAULT_SLOTS: z.output<typeof slotSchema>[] = [
  { slot: 0, generate: true },
  { slot: 1, generate: true, commonName: "doe-emu slot 1" },
  { slot: 4, generate: true, commonName: "doe-emu slot 4" },
];

/** One MEL entry (DMTF MEL format): an extension of measurement `index` by this value. */
const melEntrySchema = z.strictObject({
  index: int(1, 0xfe),
  type: names(DmtfMeasurementType),
  /** UTF-8 text, or hex with a "0x" prefix. */
  value: z.string(),
  /** Raw bit stream (bit 7 of the value type), as DMTF's sample entries. */
  raw: z.boolean().default(true),
});

/** spdm-emu's sample MEL (libspdm's sample device, meas.c): two informational entries and a version. */
export const DEFAULT_MEL: z.output<typeof melEntrySchema>[] = [
  { index: 0xef, type: "Informational", value: "doe-emu ROM", raw: true },
  { index: 0xef, type: "Informational", value: "doe-emu boot firmware", raw: true },
  { index: 0xef, type: "Version", value: "0x0a030001", raw: true },
];

const DEFAULT_ENDPOINT_INFO = `0x${SAMPLE_ENDPOINT_INFO.toString("hex")}`;

const DTS_MAX = 1 << 20; // a DOE object holds at most 2^18 DW

/** The capabilities a device offers when its description names none (spdm_responder_emu's, as far as implemented). */
export const DEFAULT_CAPABILITIES = [
  "CERT",
  "CHAL",
  "MEAS_SIG",
  "MEAS_FRESH",
  "CHUNK",
  "ENCRYPT",
  "MAC",
  "KEY_EX",
  "PSK_WITH_CONTEXT",
  "HBEAT",
  "KEY_UPD",
  "HANDSHAKE_IN_CLEAR",
  "LARGE_RESP",
] as const;

export const spdmSettingsSchema = z
  .strictObject({
    versions: list(VERSION_NAMES, ["1.0", "1.1", "1.2", "1.3", "1.4"]),
    capabilities: z.array(names(RESPONDER_CAPABILITY_NAMES)).default([...DEFAULT_CAPABILITIES]),
    /** Crypto timeout 2^ctExponent µs. */
    ctExponent: int(0, 31).default(16),
    /** Largest single message we receive (and send). */
    dataTransferSize: int(42, DTS_MAX).default(4096),
    /** Largest assembled message with chunking; default 65536 with CHUNK, else dataTransferSize. */
    maxSpdmMsgSize: int(42, DTS_MAX).optional(),
    hash: list(HASH, ["SHA_384", "SHA_256", "SHA_512"]),
    asym: list(ASYM, [
      "ECDSA_P384",
      "ECDSA_P256",
      "ECDSA_P521",
      "RSAPSS_3072",
      "RSAPSS_2048",
      "RSAPSS_4096",
      "RSASSA_3072",
      "RSASSA_2048",
      "RSASSA_4096",
      "EDDSA_25519",
      "EDDSA_448",
    ]),
    /** The negotiated base hash when listed here, else the first entry. */
    measurementHash: list(MEASUREMENT_HASHES, ["SHA_384", "SHA_256", "SHA_512"]),
    dhe: list(DHE, ["SECP_384_R1", "SECP_256_R1", "SECP_521_R1", "FFDHE_3072", "FFDHE_2048", "FFDHE_4096"]),
    aead: list(AEAD, ["AES_256_GCM", "CHACHA20_POLY1305", "AES_128_GCM"]),
    reqAsym: list(ASYM, [
      "ECDSA_P384",
      "ECDSA_P256",
      "RSAPSS_3072",
      "RSAPSS_2048",
      "RSASSA_3072",
      "RSASSA_2048",
    ]),
    keySchedule: list(KEY_SCHEDULE_NAMES, ["HMAC_HASH"]),
    slots: z.array(slotSchema).max(8).default(DEFAULT_SLOTS),
    measurements: z.array(measurementSchema).max(0xfe).default(DEFAULT_MEASUREMENTS),
    /** The measurement extension log GET_MEASUREMENT_EXTENSION_LOG returns (with the MEL capability). */
    mel: z.array(melEntrySchema).default(DEFAULT_MEL),
    /** ENDPOINT_INFO's EPInfo for the device class identifier sub-code: hex with a "0x" prefix. */
    endpointInfo: z.string().regex(HEX).default(DEFAULT_ENDPOINT_INFO),
    /**
     * KEY_EXCHANGE_RSP / PSK_EXCHANGE_RSP HeartbeatPeriod in seconds (0: none, and HEARTBEAT is
     * then unexpected); a session silent for twice this long is ended.
     */
    heartbeatPeriod: int(0, 0xff).default(60),
    /**
     * Concurrent sessions per mailbox (LIBSPDM_MAX_SESSION_COUNT of libspdm 1e16c60f is 4);
     * SessionLimitExceeded beyond.
     */
    sessionLimit: int(1, 0xffff).default(4),
    /** Accept VENDOR_DEFINED_REQUEST (IDE-KM, TDISP) outside a secure session too. */
    vendorDefinedInClear: z.boolean().default(false),
    /** The pre-shared key of PSK_EXCHANGE and the hint naming it: text, or hex with a "0x" prefix. */
    psk: z
      .string()
      .min(1)
      .default(`0x${DMTF_TEST_PSK.toString("hex")}`),
    pskHint: z.string().default(`0x${DMTF_TEST_PSK_HINT.toString("hex")}`),
    /**
     * Mutual authentication of KEY_EXCHANGE sessions without encapsulated requests (spdm-emu's
     * `--mut_auth WO_ENCAP`), off when absent: MUT_AUTH_CAP is advertised, KEY_EXCHANGE_RSP asks
     * for it (MutAuthRequested bit 0, ReqSlotIDParam 0) and FINISH must carry the requester's
     * signature by the leaf of this provisioned chain. A requester without MUT_AUTH_CAP gets no
     * KEY_EXCHANGE session (libspdm's "mandatory" mutual authentication), or with `required: false`
     * one without mutual authentication.
     */
    mutualAuth: z
      .strictObject({
        /**
         * How KEY_EXCHANGE sessions authenticate the requester, as spdm-emu's `--mut_auth`: WO_ENCAP
         * (the provisioned requesterCertChain signs FINISH), W_ENCAP / DIGESTS (KEY_EXCHANGE_RSP
         * asks WITH_ENCAP_REQUEST / WITH_GET_DIGESTS: we fetch the requester's chain through
         * encapsulated GET_DIGESTS and GET_CERTIFICATE, verify it against trustRoot(s), and its
         * leaf signs FINISH), or NO.
         */
        mode: z.enum(["WO_ENCAP", "W_ENCAP", "DIGESTS", "NO"]).default("WO_ENCAP"),
        /**
         * spdm-emu's `--basic_mut_auth`: BASIC sets CHALLENGE_AUTH's BasicMutAuthReq; we then fetch
         * the requester's chain and CHALLENGE it through encapsulated requests.
         */
        basic: z.enum(["BASIC", "NO"]).default("NO"),
        /** The requester's certificate chain (WO_ENCAP): DER-concatenated or PEM certificates, root first. */
        requesterCertChain: z.string().min(1).optional(),
        /**
         * Instead of a chain, the requester's public key provisioned out of band (WO_ENCAP, the
         * requester's PUB_KEY_ID_CAP, spdm-emu's `--req_slot_id 0xFF`): a DER SubjectPublicKeyInfo
         * or PEM file. KEY_EXCHANGE_RSP names it with ReqSlotIDParam 0xF, FINISH with 0xFF.
         */
        requesterPublicKey: z.string().min(1).optional(),
        /** A root certificate (DER or PEM) the chain must start at or be issued by. */
        trustRoot: z.string().min(1).optional(),
        /** More roots a fetched requester chain may verify against (W_ENCAP, DIGESTS, BASIC). */
        trustRoots: z.array(z.string().min(1)).optional(),
        required: z.boolean().default(true),
      })
      .optional(),
    /**
     * Public-key mode (DSP0274 PUB_KEY_ID_CAP, spdm-emu's `--slot_id 0xFF`), off when absent: the
     * requester holds our public key out of band. PUB_KEY_ID_CAP is advertised instead of CERT_CAP
     * (and the capabilities that need certificates), and CHALLENGE, KEY_EXCHANGE and signed
     * GET_MEASUREMENTS name the key as slot 0xFF. The key is `privateKey` (PEM or DER), else
     * slot 0's.
     */
    publicKey: z.strictObject({ privateKey: z.string().min(1).optional() }).optional(),
    /**
     * A slow device, off when absent: the listed requests are first answered with ERROR
     * ResponseNotReady (RDT hint 2^rdtExponent µs × rdtm), and their response goes out for the
     * RESPOND_IF_READY that names them, once delayMs have passed (before that: ResponseNotReady
     * again). Only NOT_READY_REQUESTS can be listed: not VCA, flow control, or the requests
     * inside a handshake or of session upkeep.
     */
    notReady: z
      .strictObject({
        requests: z.array(names(NOT_READY_REQUESTS)).min(1),
        rdtExponent: int(0, 31).default(NOT_READY_DEFAULTS.rdtExponent),
        // libspdm's requester refuses RDTM ≤ 1 (libspdm 1e16c60f libspdm_req_handle_error_response.c:188).
        rdtm: int(2, 0xff).default(NOT_READY_DEFAULTS.rdtm),
        delayMs: z.number().min(0).default(NOT_READY_DEFAULTS.delayMs),
      })
      .optional(),
  })
  .superRefine((s, ctx) => {
    const issue = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: "custom", path, message });
    const has = (c: keyof typeof RESPONDER_CAPABILITY_NAMES) => s.capabilities.includes(c);
    // What libspdm's requester rejects in CAPABILITIES (libspdm 1e16c60f validate_responder_capability).
    if (has("MEAS_SIG") && has("MEAS_NO_SIG"))
      issue(["capabilities"], "MEAS_SIG and MEAS_NO_SIG exclude each other");
    // A key: certificates, or the public key of public-key mode.
    const key = has("CERT") || s.publicKey !== undefined;
    if ((has("CHAL") || has("MEAS_SIG")) && !key) issue(["capabilities"], "CHAL and MEAS_SIG need CERT");
    if (has("KEY_EX") && !key) issue(["capabilities"], "KEY_EX needs CERT");
    if (s.publicKey && s.publicKey.privateKey === undefined && !s.slots.some((x) => x.slot === 0))
      issue(["publicKey", "privateKey"], "is needed without slot 0 (whose key it defaults to)");
    if (has("MULTI_KEY_ONLY") && has("MULTI_KEY_NEG"))
      issue(["capabilities"], "MULTI_KEY_ONLY and MULTI_KEY_NEG exclude each other");
    // DSP0274 1.3 (and libspdm's requester checks it).
    if ((has("MULTI_KEY_ONLY") || has("MULTI_KEY_NEG")) && !(has("GET_KEY_PAIR_INFO") && has("CERT")))
      issue(["capabilities"], "MULTI_KEY_ONLY and MULTI_KEY_NEG need GET_KEY_PAIR_INFO and CERT");
    if (has("CERT_INSTALL_RESET") && !(has("CSR") || has("SET_CERT")))
      issue(["capabilities"], "CERT_INSTALL_RESET needs CSR or SET_CERT");
    if (has("SET_KEY_PAIR_RESET") && !has("SET_KEY_PAIR_INFO"))
      issue(["capabilities"], "SET_KEY_PAIR_RESET needs SET_KEY_PAIR_INFO");
    const m = s.mutualAuth;
    if (m && m.mode !== "NO" && !has("KEY_EX"))
      issue(["mutualAuth"], "needs KEY_EX (it is for KEY_EXCHANGE sessions)");
    const provisioned = [m?.requesterCertChain, m?.requesterPublicKey].filter((f) => f !== undefined).length;
    if (m?.mode === "WO_ENCAP" && provisioned !== 1)
      issue(
        ["mutualAuth", "requesterCertChain"],
        "WO_ENCAP needs the requester's chain or (requesterPublicKey) its public key provisioned, one of them",
      );
    // libspdm: a requester's provisioned public key rules the encapsulated session flows out (BASIC
    // then challenges slot 0xFF, fetching nothing).
    if (m?.requesterPublicKey !== undefined && m.mode !== "WO_ENCAP")
      issue(["mutualAuth", "requesterPublicKey"], "is for WO_ENCAP");
    if (m && fetchesChain(m) && !m.requesterPublicKey && m.trustRoot === undefined && !m.trustRoots?.length)
      issue(["mutualAuth", "trustRoot"], `${m.mode}/${m.basic} needs a trustRoot for the chain it fetches`);
    if (m?.basic === "BASIC" && !has("CHAL")) issue(["mutualAuth", "basic"], "BASIC needs CHAL");
    if (has("CERT") && !has("CHAL") && !has("MEAS_SIG") && !has("KEY_EX"))
      issue(["capabilities"], "CERT needs CHAL or MEAS_SIG (or KEY_EX)");
    const sessions = has("KEY_EX") || has("PSK") || has("PSK_WITH_CONTEXT");
    if (has("PSK") && has("PSK_WITH_CONTEXT"))
      issue(["capabilities"], "PSK and PSK_WITH_CONTEXT exclude each other");
    // Only encrypt+MAC records are implemented (no MAC-only sessions).
    if (sessions && !(has("ENCRYPT") && has("MAC")))
      issue(["capabilities"], "KEY_EX and PSK need ENCRYPT and MAC");
    for (const c of ["ENCRYPT", "MAC", "HBEAT", "KEY_UPD", "HANDSHAKE_IN_CLEAR"] as const)
      if (has(c) && !sessions) issue(["capabilities"], `${c} needs KEY_EX, PSK or PSK_WITH_CONTEXT`);
    if (has("HANDSHAKE_IN_CLEAR") && !has("KEY_EX"))
      issue(["capabilities"], "HANDSHAKE_IN_CLEAR needs KEY_EX");
    for (const key of ["psk", "pskHint"] as const)
      if (/^0x/i.test(s[key]) && !HEX.test(s[key])) issue([key], "is not 0x-prefixed hex bytes");
    if (bytesOf(s.psk).length === 0) issue(["psk"], "must not be empty");
    if (has("MEAS_FRESH") && !has("MEAS_SIG") && !has("MEAS_NO_SIG"))
      issue(["capabilities"], "MEAS_FRESH needs MEAS_SIG or MEAS_NO_SIG");
    if (has("CERT") && s.slots.length === 0) issue(["slots"], "CERT needs at least one slot");
    if (has("MEL") && !has("MEAS_SIG") && !has("MEAS_NO_SIG"))
      issue(["capabilities"], "MEL needs MEAS_SIG or MEAS_NO_SIG");
    for (const c of ["CSR", "SET_CERT", "EP_INFO_SIG", "GET_KEY_PAIR_INFO", "SET_KEY_PAIR_INFO"] as const)
      if (has(c) && !has("CERT")) issue(["capabilities"], `${c} needs CERT`);
    if (has("EP_INFO_SIG") && has("EP_INFO_NO_SIG"))
      issue(["capabilities"], "EP_INFO_SIG and EP_INFO_NO_SIG exclude each other");
    if (s.maxSpdmMsgSize !== undefined && s.maxSpdmMsgSize < s.dataTransferSize)
      issue(["maxSpdmMsgSize"], "must be at least dataTransferSize");
    if (!has("CHUNK") && s.maxSpdmMsgSize !== undefined && s.maxSpdmMsgSize !== s.dataTransferSize)
      issue(["maxSpdmMsgSize"], "must equal dataTransferSize without CHUNK");
    const seen = (key: "slot" | "index", items: { slot?: number; index?: number }[], path: string) =>
      items.forEach((x, i) => {
        if (items.findIndex((y) => y[key] === x[key]) !== i)
          issue([path, i, key], `${key} ${x[key]} appears twice`);
      });
    seen("slot", s.slots, "slots");
    seen("index", s.measurements, "measurements");
  });

export type SpdmSettings = z.output<typeof spdmSettingsSchema>;

/** Whether mutual authentication fetches the requester's chain (encapsulated requests). */
function fetchesChain(m: { mode: string; basic: string }): boolean {
  return m.mode === "W_ENCAP" || m.mode === "DIGESTS" || m.basic === "BASIC";
}
export type SlotSettings = SpdmSettings["slots"][number];

// ---- the numbers --------------------------------------------------------------------------------

export interface MeasurementSource {
  index: number;
  /** DmtfMeasurementType value. */
  type: number;
  value: Buffer;
  raw: boolean;
}

/** What the responder negotiates with; algorithm lists are preference orders. */
export interface ResponderConfig {
  /** Header version bytes, ascending. */
  versions: number[];
  /** ResponderCapability bits (masked per negotiated version when sent). */
  flags: number;
  ctExponent: number;
  dataTransferSize: number;
  maxSpdmMsgSize: number;
  hash: HashAlgo[];
  asym: AsymAlgo[];
  /** MeasurementHashAlgo bits. */
  measurementHash: number[];
  /** AlgSupported bits of the DHE, AEAD, ReqBaseAsymAlg and KeySchedule struct tables. */
  dhe: number[];
  aead: number[];
  reqAsym: number[];
  keySchedule: number[];
  /** By ascending index. */
  measurements: MeasurementSource[];
  /** The DMTF MEL, encoded. */
  mel: Buffer;
  endpointInfo: Buffer;
  /** Seconds; 0 = none. */
  heartbeatPeriod: number;
  sessionLimit: number;
  vendorDefinedInClear: boolean;
  psk: Buffer;
  pskHint: Buffer;
  /** Mutual authentication (KEY_EXCHANGE without encapsulation) is on: the requester's identity. */
  mutualAuth?: RequesterIdentity;
  /** Public-key mode: the key slot 0xFF signs with (absent: slot 0's). */
  publicKey?: { privateKey?: KeyObject };
  /** Mutual authentication through encapsulated requests (responder-encap.ts). */
  encapAuth?: EncapAuth;
  /** ResponseNotReady for these request codes, with this hint, ready after delayMs. */
  notReady?: { requests: number[]; rdtExponent: number; rdtm: number; delayMs: number };
  /** Where each established session's secret goes (`--keylog`). */
  keyLog?: KeyLog;
  /** The device's provisioned state (one per device); a responder without it keeps its own in memory. */
  provisioning?: Provisioning;
}

/** The requester certificate chain (or public key) provisioned for mutual authentication. */
export interface RequesterIdentity {
  /** DER certificates, root first (the SPDM chain of the negotiated hash is built from them); none for a public key. */
  certsDer: Buffer[];
  /** The leaf's key (or the provisioned one), which signs FINISH. */
  publicKey: KeyObject;
  /** A provisioned public key (requester slot 0xFF): its SPKI DER, which TH hashes instead of a chain. */
  publicKeyDer?: Buffer;
  /** A requester without MUT_AUTH_CAP gets no KEY_EXCHANGE session (else one without mutual authentication). */
  required: boolean;
}

/** Mutual authentication in which we fetch the requester's chain and verify it against trustRoots. */
export interface EncapAuth {
  /** KEY_EXCHANGE_RSP MutAuthRequested: WITH_ENCAP_REQUEST or WITH_GET_DIGESTS; none: no session mutual auth. */
  session?: "W_ENCAP" | "DIGESTS";
  /** CHALLENGE_AUTH sets BasicMutAuthReq. */
  basic: boolean;
  /** DER root certificates. */
  trustRoots: Buffer[];
  /** As RequesterIdentity.required. */
  required: boolean;
}

/**
 * Loads `mutualAuth`'s chain (and checks it against its trust root), so a bad file stops the device
 * at start-up; the ReqBaseAsymAlg preferences shrink to what its leaf key can sign with.
 */
function requesterIdentity(m: NonNullable<SpdmSettings["mutualAuth"]>, reqAsym: AsymAlgo[]) {
  if (m.mode !== "WO_ENCAP") return undefined;
  if (m.requesterPublicKey !== undefined)
    return requesterPublicKey(m.requesterPublicKey, m.required, reqAsym);
  if (m.requesterCertChain === undefined) return undefined;
  const certsDer = loadCertChainFile(m.requesterCertChain);
  const root = new X509Certificate(certsDer[0]!);
  if (m.trustRoot !== undefined) {
    const trust = new X509Certificate(loadCertChainFile(m.trustRoot)[0]!);
    if (!root.raw.equals(trust.raw) && !(root.checkIssued(trust) && root.verify(trust.publicKey)))
      throw new CertFileError(m.requesterCertChain, `its root is neither ${m.trustRoot} nor issued by it`);
  }
  const publicKey = new X509Certificate(certsDer.at(-1)!).publicKey;
  const fitting = fittingReqAsym(m.requesterCertChain, "its leaf key", publicKey, reqAsym);
  return { identity: { certsDer, publicKey, required: m.required }, reqAsym: fitting };
}

/** A requester public key provisioned from `file` (requester slot 0xFF). */
function requesterPublicKey(file: string, required: boolean, reqAsym: AsymAlgo[]) {
  const publicKey = loadPublicKeyFile(file);
  const fitting = fittingReqAsym(file, "its key", publicKey, reqAsym);
  return {
    identity: { certsDer: [], publicKey, publicKeyDer: publicKeyDer(publicKey), required },
    reqAsym: fitting,
  };
}

/** The ReqBaseAsymAlg preferences `key` can sign with; none is an error naming `file`. */
function fittingReqAsym(file: string, what: string, key: KeyObject, reqAsym: AsymAlgo[]): AsymAlgo[] {
  const fitting = reqAsym.filter((a) => keyFits(a, key));
  if (fitting.length === 0)
    throw new CertFileError(
      file,
      `${what} fits none of the reqAsym algorithms configured (${reqAsym.join(", ")})`,
    );
  return fitting;
}

export function responderConfig(s: SpdmSettings): ResponderConfig {
  const chunk = s.capabilities.includes("CHUNK");
  const { reqAsym } = s;
  const mutual = s.mutualAuth && requesterIdentity(s.mutualAuth, reqAsym);
  const encapAuth = s.mutualAuth && encapAuthOf(s.mutualAuth);
  return {
    versions: [...new Set(s.versions.map((v) => VERSION_NAMES[v]))].sort((a, b) => a - b),
    // Unsigned: bit 31 is LARGE_RESP_CAP. Public-key mode: PUB_KEY_ID_CAP for the certificate ones.
    flags:
      (((s.capabilities.reduce((f, c) => f | RESPONDER_CAPABILITY_NAMES[c], 0) |
        (mutual || encapAuth ? ResponderCapability.MUT_AUTH_CAP : 0) |
        (encapAuth ? ResponderCapability.ENCAP_CAP : 0)) &
        ~(s.publicKey ? CERTIFICATE_CAPABILITIES : 0)) |
        (s.publicKey ? ResponderCapability.PUB_KEY_ID_CAP : 0)) >>>
      0,
    ctExponent: s.ctExponent,
    dataTransferSize: s.dataTransferSize,
    maxSpdmMsgSize: s.maxSpdmMsgSize ?? (chunk ? Math.max(65536, s.dataTransferSize) : s.dataTransferSize),
    hash: s.hash,
    asym: s.asym,
    measurementHash: s.measurementHash.map((n) => MEASUREMENT_HASHES[n]),
    dhe: s.dhe.map((n) => DHE[n].bit),
    aead: s.aead.map((n) => AEAD[n].bit),
    reqAsym: (mutual?.reqAsym ?? reqAsym).map((a) => ASYM[a].bit),
    keySchedule: s.keySchedule.map((n) => KEY_SCHEDULE_NAMES[n]),
    measurements: [...s.measurements]
      .sort((a, b) => a.index - b.index)
      .map((m) => ({
        index: m.index,
        type: DmtfMeasurementType[m.type],
        value: bytesOf(m.value),
        raw: m.raw,
      })),
    mel: encodeDmtfMel(
      s.mel.map((e, i) => ({
        melIndex: i + 1,
        measurementIndex: e.index,
        valueType: DmtfMeasurementType[e.type] | (e.raw ? DMTF_VALUE_TYPE_RAW_BIT_STREAM : 0),
        value: bytesOf(e.value),
      })),
    ),
    endpointInfo: bytesOf(s.endpointInfo),
    heartbeatPeriod: s.heartbeatPeriod,
    sessionLimit: s.sessionLimit,
    vendorDefinedInClear: s.vendorDefinedInClear,
    psk: bytesOf(s.psk),
    pskHint: bytesOf(s.pskHint),
    mutualAuth: mutual?.identity,
    publicKey: s.publicKey && {
      privateKey:
        s.publicKey.privateKey === undefined ? undefined : loadPrivateKeyFile(s.publicKey.privateKey),
    },
    encapAuth,
    notReady: s.notReady && {
      ...s.notReady,
      requests: s.notReady.requests.map((n) => NOT_READY_REQUESTS[n]),
    },
  };
}

/** The encapsulated mutual authentication `m` asks for, its roots loaded; undefined when none. */
function encapAuthOf(m: NonNullable<SpdmSettings["mutualAuth"]>): EncapAuth | undefined {
  if (!fetchesChain(m)) return undefined;
  const files = [...(m.trustRoot === undefined ? [] : [m.trustRoot]), ...(m.trustRoots ?? [])];
  return {
    session: m.mode === "W_ENCAP" || m.mode === "DIGESTS" ? m.mode : undefined,
    basic: m.basic === "BASIC",
    trustRoots: files.map((f) => loadCertChainFile(f)[0]!),
    required: m.required,
  };
}

/** Slot file paths made absolute against `base` (a description's directory, or the working directory). */
export function resolveSlotPaths(s: SpdmSettings, base: string): SpdmSettings {
  const slots = s.slots.map((slot) =>
    "generate" in slot
      ? slot
      : { ...slot, certChain: resolve(base, slot.certChain), privateKey: resolve(base, slot.privateKey) },
  );
  const optional = (f: string | undefined) => (f === undefined ? undefined : resolve(base, f));
  const m = s.mutualAuth;
  const mutualAuth = m && {
    ...m,
    requesterCertChain: optional(m.requesterCertChain),
    requesterPublicKey: optional(m.requesterPublicKey),
    trustRoot: optional(m.trustRoot),
    trustRoots: m.trustRoots?.map((f) => resolve(base, f)),
  };
  const publicKey = s.publicKey && { privateKey: optional(s.publicKey.privateKey) };
  return { ...s, slots, mutualAuth, publicKey };
}

/** `s` with mutual authentication against the requester chain in `file` (relative to the working directory). */
export function withMutualAuth(s: SpdmSettings, file: string): SpdmSettings {
  const r = spdmSettingsSchema.safeParse({ ...s, mutualAuth: { ...s.mutualAuth, requesterCertChain: file } });
  if (!r.success)
    throw new Error(`mutual authentication: ${r.error.issues.map((i) => i.message).join("; ")}`);
  return resolveSlotPaths(r.data, ".");
}

/** `s` with another PSK (e.g. the device's `--psk`), checked as the description's would be. */
export function withPsk(s: SpdmSettings, psk: string): SpdmSettings {
  const r = spdmSettingsSchema.safeParse({ ...s, psk });
  if (!r.success)
    throw new Error(`PSK ${JSON.stringify(psk)}: ${r.error.issues.map((i) => i.message).join("; ")}`);
  return r.data;
}

/** `s` with `slot` loaded from files (paths relative to the working directory), e.g. from CLI flags. */
export function withSlotFiles(
  s: SpdmSettings,
  slot: number,
  certChain: string,
  privateKey: string,
): SpdmSettings {
  const loaded = { slot, certChain: resolve(certChain), privateKey: resolve(privateKey) };
  return { ...s, slots: [...s.slots.filter((x) => x.slot !== slot), loaded] };
}
