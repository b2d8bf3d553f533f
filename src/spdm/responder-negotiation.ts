/**
 * Connection setup (DSP0274 GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS): the VCA part
 * of the transcript, what the requester can do, and the algorithms the connection uses, with the
 * certificate slots that serve them.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  AlgType,
  CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS,
  CapabilityField,
  KeyScheduleAlgo,
  MeasurementSpecification,
  MelSpecification,
  OtherParams,
  RequesterCapability,
  ResponderCapability,
  SpdmVersion,
  versionEntry,
} from "../../protocol/spdm/codes.js";
import type {
  AlgorithmsRequestFields,
  GetCapabilities,
  NegotiateAlgorithms,
} from "../../protocol/spdm/messages.js";
import { byBit, fieldOf, maskOf } from "../bits.js";
import { encodeCertChain } from "../crypto/cert-chain.js";
import { AEAD, ASYM, type AsymAlgo, DHE, HASH, type HashAlgo, hash } from "../crypto/suites.js";
import { check, MIN_DATA_TRANSFER_SIZE, type ResponderContext, type SlotInUse } from "./responder-context.js";
import { measurementHashFor } from "./responder-measurements.js";
import { publicKeySlots, servesAsym } from "./responder-public-key.js";
import type { ResponderConfig } from "./responder-settings.js";

export type NegotiationContext = Pick<ResponderContext, "config" | "slots" | "connection" | "transcript">;

const MAX_CT_EXPONENT = 31;
/** Opaque data formats we can select, preferred first; we send no opaque data in any of them. */
const OPAQUE_FORMATS = [OtherParams.OPAQUE_DATA_FMT_1, OtherParams.OPAQUE_DATA_FMT_0];
/** The response capability bits each version defines (libspdm's *_MASK); others are not sent. */
const FLAGS_IN_VERSION: Readonly<Record<number, number>> = {
  [SpdmVersion.V1_0]: 0x3f,
  [SpdmVersion.V1_1]: 0x1_ffff,
  [SpdmVersion.V1_2]: 0x3f_ffff,
  [SpdmVersion.V1_3]: 0x3fff_ffff,
  [SpdmVersion.V1_4]: 0xffff_ffff,
};
/** Capabilities that put a key to use: the connection then needs a base hash and asym algorithm. */
const KEY_CAPS =
  ResponderCapability.CERT_CAP | ResponderCapability.CHAL_CAP | ResponderCapability.MEAS_CAP_SIG;
/** Any session capability: sessions need a base hash for the key schedule. */
export const SESSION_CAPS = ResponderCapability.KEY_EX_CAP | CapabilityField.PSK_CAP;
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

/** First of `preferred` that `offered` has, else 0 (what ALGORITHMS sends for "none"). */
const pick = (preferred: readonly number[], offered: number) =>
  preferred.find((b) => (offered & b) !== 0) ?? 0;

/** Our preferences for each struct table, by AlgType. */
const structTables = (c: ResponderConfig): Readonly<Record<number, readonly number[]>> => ({
  [AlgType.DHE]: c.dhe,
  [AlgType.AEAD]: c.aead,
  [AlgType.REQ_BASE_ASYM_ALG]: c.reqAsym,
  [AlgType.KEY_SCHEDULE]: c.keySchedule,
});

/** Our preferences for a struct table, none when no capability of `ours` uses it. */
const structPreferences = (c: ResponderConfig, type: number, ours: number): readonly number[] =>
  ours & (STRUCT_USED_BY[type] ?? 0) ? (structTables(c)[type] ?? []) : [];

/** Reserved values and contradictions a requester's flags must not have (libspdm's checks, in short). */
function requesterFlagsValid(flags: number, version: number): boolean {
  const R = RequesterCapability;
  if (fieldOf(flags, CapabilityField.PSK_CAP) > 1) return false;
  if ((flags & R.CERT_CAP) !== 0 && (flags & R.PUB_KEY_ID_CAP) !== 0) return false;
  if (version < SpdmVersion.V1_3) return true;
  return (
    fieldOf(flags, CapabilityField.EP_INFO_CAP) !== 3 && fieldOf(flags, CapabilityField.MULTI_KEY_CAP) !== 3
  );
}

/** VERSION; the dispatcher has ended the last connection (its transcripts, sessions and transfers). */
export function getVersion(c: Pick<NegotiationContext, "config" | "transcript">, request: Buffer): Buffer {
  const response = encodeSpdm({
    code: "VERSION",
    version: SpdmVersion.V1_0,
    versionNumberEntries: c.config.versions.map((v) => versionEntry(v)),
  });
  c.transcript.addVca(request, response);
  return response;
}

export function getCapabilities(c: NegotiationContext, m: GetCapabilities, request: Buffer): Buffer {
  const { config } = c;
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
  const ours = (config.flags & (FLAGS_IN_VERSION[version] ?? 0)) >>> 0;
  const withAlgorithms = wantsAlgorithms && (ours & ResponderCapability.CHUNK_CAP) !== 0;
  const v12 = version >= SpdmVersion.V1_2;
  const response = encodeSpdm({
    code: "CAPABILITIES",
    version,
    attributes: withAlgorithms ? CAPABILITIES_PARAM1_SUPPORTED_ALGORITHMS : 0,
    ctExponent: config.ctExponent,
    extFlags: 0,
    flags: ours,
    dataTransferSize: v12 ? config.dataTransferSize : undefined,
    maxSpdmMsgSize: v12 ? config.maxSpdmMsgSize : undefined,
    supportedAlgorithms: withAlgorithms ? supportedAlgorithms(c, ours) : undefined,
  });
  c.connection.peer = {
    version,
    flags,
    dataTransferSize: m.dataTransferSize,
    maxSpdmMsgSize: m.maxSpdmMsgSize,
    ours,
  };
  c.transcript.addVca(request, response);
  return response;
}

/** The 1.3 Supported Algorithms block: everything we would select from with flags `ours`. */
function supportedAlgorithms(
  keys: Pick<NegotiationContext, "config" | "slots">,
  ours: number,
): AlgorithmsRequestFields {
  const c = keys.config;
  return {
    measurementSpecification: c.flags & CapabilityField.MEAS_CAP ? MeasurementSpecification.DMTF : 0,
    otherParamsSupport: maskOf(OPAQUE_FORMATS),
    baseAsymAlgo: maskOf(c.asym.filter((a) => servesAsym(keys, a)).map((a) => ASYM[a].bit)),
    baseHashAlgo: maskOf(c.hash.map((h) => HASH[h].bit)),
    melSpecification: c.flags & ResponderCapability.MEL_CAP ? MelSpecification.DMTF : 0,
    extAsym: [],
    extHash: [],
    algStructs: Object.keys(structTables(c))
      .map((type) => ({
        algType: Number(type),
        algSupported: maskOf(structPreferences(c, Number(type), ours)),
        extAlgs: [],
      }))
      .filter((t) => t.algSupported !== 0),
  };
}

export async function negotiateAlgorithms(
  c: NegotiationContext,
  m: NegotiateAlgorithms,
  request: Buffer,
): Promise<Buffer> {
  const { config } = c;
  const { version } = m;
  const peer = c.connection.peer!;
  const v11 = version >= SpdmVersion.V1_1;
  const tables = m.algStructs;
  const extCount = m.extAsym.length + m.extHash.length + tables.reduce((n, t) => n + t.extAlgs.length, 0);
  check(request.length <= (v11 ? 0x80 : 0x40) && extCount <= (v11 ? 20 : 8));
  check(
    tables.every(
      (t, i) =>
        t.algType >= AlgType.DHE &&
        // 1.4 adds the PQC tables (ReqPqcAsymAlg, KEM), which we answer with 0 (nothing selected).
        t.algType <= (version >= SpdmVersion.V1_4 ? AlgType.KEM_ALG : AlgType.KEY_SCHEDULE) &&
        t.algSupported !== 0 &&
        (i === 0 || t.algType > tables[i - 1]!.algType),
    ),
  );
  // MULTI_KEY_CONN asks for our multi-key connection: refused without MULTI_KEY_CAP, required by
  // MULTI_KEY_CAP "only" (libspdm's checks).
  const ourMultiKey = peer.ours & CapabilityField.MULTI_KEY_CAP;
  const multiKeyConn =
    version >= SpdmVersion.V1_3 && (m.otherParamsSupport & OtherParams.MULTI_KEY_CONN) !== 0;
  if (version >= SpdmVersion.V1_3)
    check(multiKeyConn ? ourMultiKey !== 0 : ourMultiKey !== ResponderCapability.MULTI_KEY_CAP_ONLY);
  const measurementSpec =
    (peer.ours & CapabilityField.MEAS_CAP) !== 0 && m.measurementSpecification & MeasurementSpecification.DMTF
      ? MeasurementSpecification.DMTF
      : 0;
  const hashAlg = config.hash.find((h) => (m.baseHashAlgo & HASH[h].bit) !== 0);
  const asym = config.asym.find((a) => (m.baseAsymAlgo & ASYM[a].bit) !== 0 && servesAsym(c, a));
  // As libspdm: when a key is to be used, no common hash or asym algorithm is an invalid request;
  // sessions need a hash for their key schedule even without a key (PSK).
  if ((peer.ours & KEY_CAPS) !== 0) check(hashAlg !== undefined && asym !== undefined);
  if ((peer.ours & SESSION_CAPS) !== 0) check(hashAlg !== undefined);
  const measurementHash = measurementSpec ? measurementHashFor(config, hashAlg) : 0;
  const melSpec =
    version >= SpdmVersion.V1_3 && peer.ours & ResponderCapability.MEL_CAP
      ? m.melSpecification & MelSpecification.DMTF
      : 0;
  // 1.3: the bit tells the requester to use its multi-key connection: always for MULTI_KEY_CAP
  // "only", and for "negotiated" when we are a multi-key device ourselves (libspdm decides it from
  // its own OtherParamsSupport MULTI_KEY_CONN, which spdm-emu's responder sets).
  const requesterCap = peer.flags & CapabilityField.MULTI_KEY_CAP;
  const requesterMultiKey =
    version >= SpdmVersion.V1_3 &&
    (requesterCap === RequesterCapability.MULTI_KEY_CAP_ONLY ||
      (requesterCap === RequesterCapability.MULTI_KEY_CAP_NEG && ourMultiKey !== 0));
  const otherParams =
    version >= SpdmVersion.V1_2
      ? pick(OPAQUE_FORMATS, m.otherParamsSupport) | (requesterMultiKey ? OtherParams.MULTI_KEY_CONN : 0)
      : 0;
  // One answer per table asked about, in its order: our preferred of what it offers, or 0.
  const algStructs = tables.map((t) => ({
    algType: t.algType,
    algSupported: pick(structPreferences(config, t.algType, peer.ours), t.algSupported),
    extAlgs: [],
  }));
  const selected = (type: number) => algStructs.find((t) => t.algType === type)?.algSupported ?? 0;
  const dhe = byBit(DHE, selected(AlgType.DHE));
  const aead = byBit(AEAD, selected(AlgType.AEAD));
  const reqAsym = byBit(ASYM, selected(AlgType.REQ_BASE_ASYM_ALG));
  // libspdm's checks: what both sides' capabilities will use must have been agreed on.
  const both = (req: number, rsp: number) => c.connection.both(req, rsp);
  const R = RequesterCapability;
  const S = ResponderCapability;
  if (both(R.KEY_EX_CAP, S.KEY_EX_CAP)) check(dhe !== undefined);
  if (both(R.ENCRYPT_CAP, S.ENCRYPT_CAP) || both(R.MAC_CAP, S.MAC_CAP)) check(aead !== undefined);
  if (both(R.MUT_AUTH_CAP, S.MUT_AUTH_CAP)) check(reqAsym !== undefined);
  if (both(R.KEY_EX_CAP, S.KEY_EX_CAP) || both(R.PSK_CAP, CapabilityField.PSK_CAP))
    check(selected(AlgType.KEY_SCHEDULE) === KeyScheduleAlgo.SPDM);
  const slots =
    hashAlg && asym
      ? ((await publicKeySlots(c, hashAlg, asym)) ?? (await provision(c, hashAlg, asym)))
      : new Map<number, SlotInUse>();
  const response = encodeSpdm({
    code: "ALGORITHMS",
    version,
    measurementSpecificationSel: measurementSpec,
    otherParamsSelection: otherParams,
    measurementHashAlgo: measurementHash,
    baseAsymSel: asym ? ASYM[asym].bit : 0,
    baseHashSel: hashAlg ? HASH[hashAlg].bit : 0,
    melSpecificationSel: melSpec,
    extAsymSel: [],
    extHashSel: [],
    algStructs,
  });
  c.connection.selection = {
    version,
    hash: hashAlg,
    asym,
    measurementSpec,
    measurementHash,
    melSpec,
    slots,
    dhe,
    aead,
    reqAsym,
    otherParams,
    multiKeyConn,
    decode: {
      hashSize: hashAlg && HASH[hashAlg].size,
      dheExchangeSize: dhe && DHE[dhe].exchangeSize,
      reqAsymSignatureSize: reqAsym && ASYM[reqAsym].sigSize,
      multiKeyConnReq: requesterMultiKey,
    },
  };
  c.transcript.addVca(request, response);
  return response;
}

/** The slots serving `asym`, each with its SPDM certificate chain for hash `h`. */
async function provision(
  c: Pick<NegotiationContext, "slots">,
  h: HashAlgo,
  asym: AsymAlgo,
): Promise<Map<number, SlotInUse>> {
  const keys = await c.slots.forAsym(asym);
  return new Map(
    [...keys].map(([slot, k]) => {
      const chain = encodeCertChain(h, k.certsDer);
      return [slot, { chain, digest: hash(h, chain), privateKey: k.privateKey }];
    }),
  );
}
