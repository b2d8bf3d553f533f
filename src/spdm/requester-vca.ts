/**
 * VCA from the requester side (DSP0274 GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS): the
 * highest common version, the capabilities sent as that version defines them, an algorithm offer
 * built as libspdm 1e16c60f's requester builds it, and every ALGORITHMS selection checked against it.
 */
import {
  AlgType,
  bitNames,
  CapabilityField,
  OPAQUE_DATA_FMT_MASK,
  OtherParams,
  RequesterCapability,
  ResponderCapability,
  versionFromEntry,
  versionName,
} from "../../protocol/spdm/codes.js";
import { negotiatedContext } from "../../protocol/spdm/context.js";
import type {
  Algorithms,
  AlgStruct,
  Capabilities,
  GetCapabilities,
  NegotiateAlgorithms,
} from "../../protocol/spdm/messages.js";
import { byBit, hex, isOneHotOrZero } from "../bits.js";
import { ASYM, type AsymAlgo, HASH, type HashAlgo } from "../crypto/suites.js";
import {
  AEAD_NAMES,
  ASYM_NAMES,
  DHE_NAMES,
  HASH_NAMES,
  KEY_SCHEDULE_NAMES,
  MEASUREMENT_HASH_NAMES,
  MEASUREMENT_SPEC_NAMES,
  type Names,
  OTHER_PARAM_NAMES,
} from "./names.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import { expectResponse, fail, type SpdmRequester } from "./requester.js";
import type { ResolvedOptions } from "./requester-options.js";

/** Requester capability bits each version defines; libspdm 1e16c60f drops the others before sending. */
const REQUESTER_CAPS_SINCE: readonly [version: number, mask: number][] = [
  [0x14, 0x8ec3_f7c6],
  [0x13, 0x0ec3_f7c6],
  [0x12, 0x0003_f7c6],
  [0x11, 0x0001_f7c6],
];

/** The algorithm a struct table of type `type` holds (0 when there is none). */
export const algStructSel = (tables: readonly AlgStruct[], type: number) =>
  tables.find((t) => t.algType === type)?.algSupported ?? 0;
const struct = (type: number) => ({
  selected: (a: Algorithms) => algStructSel(a.algStructs, type),
  offered: (n: NegotiateAlgorithms) => algStructSel(n.algStructs, type),
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
  offered: (n: NegotiateAlgorithms, o: ResolvedOptions) => number;
  required: boolean | "measurements";
}[] = [
  {
    label: "BaseHash",
    field: "BaseHashSel",
    names: HASH_NAMES,
    selected: (a) => a.baseHashSel,
    offered: (n) => n.baseHashAlgo,
    required: true,
  },
  {
    label: "BaseAsym",
    field: "BaseAsymSel",
    names: ASYM_NAMES,
    selected: (a) => a.baseAsymSel,
    offered: (n) => n.baseAsymAlgo,
    required: true,
  },
  {
    label: "MeasurementSpec",
    field: "MeasurementSpecificationSel",
    names: MEASUREMENT_SPEC_NAMES,
    selected: (a) => a.measurementSpecificationSel,
    offered: (n) => n.measurementSpecification,
    required: "measurements",
  },
  {
    label: "MeasurementHash",
    field: "MeasurementHashAlgo",
    names: MEASUREMENT_HASH_NAMES,
    selected: (a) => a.measurementHashAlgo,
    offered: (_n, o) => o.measurementHashAlgo,
    required: "measurements",
  },
  { label: "DHE", field: "DHE", names: DHE_NAMES, ...struct(AlgType.DHE) },
  { label: "AEAD", field: "AEAD", names: AEAD_NAMES, ...struct(AlgType.AEAD) },
  {
    label: "ReqBaseAsym",
    field: "ReqBaseAsymAlg",
    names: ASYM_NAMES,
    ...struct(AlgType.REQ_BASE_ASYM_ALG),
  },
  { label: "KeySchedule", field: "KeySchedule", names: KEY_SCHEDULE_NAMES, ...struct(AlgType.KEY_SCHEDULE) },
];

/** The selections ALGORITHMS made, by label (e.g. BaseHash: "SHA_384"), for reports. */
export function algorithmNames(alg: Algorithms): Record<string, string> {
  return Object.fromEntries(
    [
      ...SELECTIONS,
      { label: "OtherParams", names: OTHER_PARAM_NAMES, selected: (a: Algorithms) => a.otherParamsSelection },
    ]
      .filter(({ selected }) => selected(alg) !== 0)
      .map(({ label, names, selected }) => [label, bitNames(names, selected(alg)).join(",")]),
  );
}

/** GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS; the requester then holds the connection's state. */
export async function negotiate(r: SpdmRequester): Promise<void> {
  const o = r.options;
  const vr = await r.exchange({ code: "GET_VERSION", version: 0x10 });
  const versions = expectResponse(vr, "VERSION").versionNumberEntries.map(versionFromEntry);
  r.transcript.addVca(vr.requestBytes, vr.bytes);
  const common = o.versions.filter((v) => versions.includes(v));
  if (common.length === 0) {
    fail(
      "negotiation",
      `no common SPDM version: responder offers ${versions.map(versionName).join(", ")}, we offer ${o.versions.map(versionName).join(", ")}`,
    );
  }
  r.version = Math.max(...common);

  const v = r.version;
  r.sentCapabilities =
    (o.capabilities & (REQUESTER_CAPS_SINCE.find(([since]) => v >= since)?.[1] ?? 0)) >>> 0;
  const getCaps: GetCapabilities = { code: "GET_CAPABILITIES", version: v, attributes: 0 };
  if (v >= 0x11) Object.assign(getCaps, { ctExponent: o.ctExponent, extFlags: 0, flags: r.sentCapabilities });
  if (v >= 0x12)
    Object.assign(getCaps, { dataTransferSize: o.dataTransferSize, maxSpdmMsgSize: o.maxSpdmMsgSize });
  const cr = await r.exchange(getCaps);
  const rsp = expectResponse(cr, "CAPABILITIES");
  r.transcript.addVca(cr.requestBytes, cr.bytes);
  r.rsp = rsp;
  const steps = o.connectionSteps;
  // Slot 0xFF: a responder whose public key we hold (PUB_KEY_ID_CAP) has no certificates to read.
  const publicKey = o.slotId === PUBLIC_KEY_SLOT;
  const needs = [
    ["CERT_CAP", !publicKey && (steps.includes("DIGEST") || steps.includes("CERT"))],
    ["PUB_KEY_ID_CAP", publicKey],
    ["CHAL_CAP", steps.includes("CHAL")],
  ] as const;
  for (const [cap, needed] of needs) {
    if (needed && !(rsp.flags & ResponderCapability[cap]))
      fail("negotiation", `responder lacks ${cap} (CAPABILITIES flags ${hex(rsp.flags)})`);
  }

  const neg = negotiateAlgorithmsRequest(v, o, rsp);
  const ar = await r.exchange(neg);
  const alg = expectResponse(ar, "ALGORITHMS");
  checkAlgorithms(o, neg, alg, rsp);
  r.transcript.addVca(ar.requestBytes, ar.bytes);
  r.alg = alg;
  r.ctx = negotiatedContext({
    algorithms: alg,
    getCapabilities: getCaps,
    capabilities: rsp,
    negotiateAlgorithms: neg,
  });
  r.suite = {
    version: v,
    hash: byBit(HASH, alg.baseHashSel) as HashAlgo,
    asym: byBit(ASYM, alg.baseAsymSel) as AsymAlgo,
  };
}

/**
 * As libspdm 1e16c60f builds it: struct tables for what is offered (1.1+), opaque formats 1.2+, MEL
 * and multi-key 1.3.
 */
function negotiateAlgorithmsRequest(v: number, o: ResolvedOptions, rsp: Capabilities): NegotiateAlgorithms {
  const tables: [number, number][] = [
    [AlgType.DHE, o.dheNamedGroup],
    [AlgType.AEAD, o.aeadCipherSuite],
    [AlgType.REQ_BASE_ASYM_ALG, o.reqBaseAsymAlg],
    [AlgType.KEY_SCHEDULE, o.keySchedule],
  ];
  let other = 0;
  if (v >= 0x13) {
    const multiKey = rsp.flags & CapabilityField.MULTI_KEY_CAP;
    if (multiKey === CapabilityField.MULTI_KEY_CAP)
      fail("negotiation", "CAPABILITIES sets both MULTI_KEY_CAP values");
    const multiKeyConn =
      multiKey === ResponderCapability.MULTI_KEY_CAP_ONLY ||
      (multiKey === ResponderCapability.MULTI_KEY_CAP_NEG &&
        (o.otherParamsSupport & OtherParams.MULTI_KEY_CONN) !== 0);
    other =
      (o.otherParamsSupport & ~OtherParams.MULTI_KEY_CONN) | (multiKeyConn ? OtherParams.MULTI_KEY_CONN : 0);
  } else if (v >= 0x12) other = o.otherParamsSupport & OPAQUE_DATA_FMT_MASK;
  return {
    code: "NEGOTIATE_ALGORITHMS",
    version: v,
    measurementSpecification: o.measurementSpecification,
    otherParamsSupport: other,
    baseAsymAlgo: o.baseAsymAlgo,
    baseHashAlgo: o.baseHashAlgo,
    melSpecification: v >= 0x13 ? o.melSpecification : 0,
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

function checkAlgorithms(
  o: ResolvedOptions,
  neg: NegotiateAlgorithms,
  alg: Algorithms,
  rsp: Capabilities,
): void {
  const measCap = (rsp.flags & CapabilityField.MEAS_CAP) !== 0;
  for (const { field, names, selected, offered, required } of SELECTIONS) {
    const sel = selected(alg);
    // Measurement fields are the responder's to fill only with MEAS_CAP; the hash is ours to accept.
    const ours = required === "measurements" && !measCap ? 0 : offered(neg, o);
    if (!isOneHotOrZero(sel))
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
  // 1.3 MULTI_KEY_CONN in the selection is the requester's multi-key connection (libspdm's
  // multi_key_conn_req): it needs our MULTI_KEY_CAP, and MULTI_KEY_CAP "only" needs it.
  const reqMultiKey = neg.version >= 0x13 ? o.capabilities & CapabilityField.MULTI_KEY_CAP : 0;
  const selected = neg.version >= 0x13 && (alg.otherParamsSelection & OtherParams.MULTI_KEY_CONN) !== 0;
  if (selected ? reqMultiKey === 0 : reqMultiKey === RequesterCapability.MULTI_KEY_CAP_ONLY)
    fail(
      "negotiation",
      `ALGORITHMS ${selected ? "selects" : "does not select"} our multi-key connection (our MULTI_KEY_CAP ${hex(reqMultiKey)})`,
    );
  const other = neg.version >= 0x13 ? OtherParams.MULTI_KEY_CONN : 0;
  const extraOther = alg.otherParamsSelection & ~neg.otherParamsSupport & ~other;
  if (extraOther !== 0 || !isOneHotOrZero(alg.otherParamsSelection & OPAQUE_DATA_FMT_MASK))
    fail(
      "negotiation",
      `ALGORITHMS OtherParamsSelection ${hex(alg.otherParamsSelection)} does not fit what we offered (${hex(neg.otherParamsSupport)})`,
    );
}
