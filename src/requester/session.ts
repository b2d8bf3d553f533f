/**
 * The session steps of a requester run (`doe-emu requester --session`), sequenced as
 * spdm_requester_emu's --exe_session does them (spdm-emu 85436d53): open the session, then inside
 * it the APP step when asked (app.ts: PCI IDE-KM, TDISP, CXL IDE-KM), GET_DIGESTS + GET_CERTIFICATE, the measurements (their summary hash checked against the
 * handshake's), KEY_UPDATE UpdateKey and UpdateAllKeys (each with VerifyNewKey), when asked the
 * responder's own KEY_UPDATE through encapsulation, HEARTBEAT and END_SESSION, each skipped when a capability it needs is missing.
 */
import {
  AeadCipherSuite,
  AlgType,
  bitNames,
  DheNamedGroup,
  KeyUpdateOperation,
  MeasurementSummaryHashType,
  nameOf,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  versionName,
} from "../../protocol/spdm/codes.js";
import { hex, hex32 } from "../bits.js";
import { fail, type RequesterConnection, type SpdmRequester } from "../spdm/requester.js";
import { getCertificateChain, getDigests } from "../spdm/requester-certificates.js";
import {
  both,
  SESSION_DEFAULTS,
  type SessionRequestOptions,
  selection,
} from "../spdm/requester-handshake.js";
import {
  getMeasurements,
  type MeasurementsResult,
  summaryHashMatches,
} from "../spdm/requester-measurements.js";
import {
  endSession,
  heartbeat,
  keyUpdate,
  openSession,
  responderKeyUpdate,
} from "../spdm/requester-session.js";
import type { SecureSession, SessionKind } from "../spdm/session.js";
import { type AppOptions, type AppSummary, runApp } from "./app.js";
import { msBetween } from "./connection.js";

export interface SessionSummary {
  kind: SessionKind;
  sessionId: string;
  securedMessageVersion: string;
  /** KEY_EX: "in the clear" when both set HANDSHAKE_IN_THE_CLEAR, else FINISH went under handshake keys. */
  handshake: "in the clear" | "encrypted";
  dhe?: string;
  aead: string;
  heartbeatPeriod: number;
  pskFinish?: boolean;
  /** KEY_EX with mutual authentication: the slot and ReqBaseAsymAlg FINISH was signed with. */
  mutualAuth?: { slot: number; reqAsym: string; encapsulated?: string[] };
  measurementSummaryHash: { type: string; value?: string; checked: boolean };
  /** The in-session steps done, in order, and those skipped with the reason. */
  steps: string[];
  skipped: string[];
  measurements: MeasurementsResult;
  /** What the APP step (--app) did, when it ran. */
  app?: AppSummary;
  /** Records sent and answered in the session (FINISH in the clear is not one). */
  securedRoundTrips: number;
  timingsMs: { handshake: number; inSession: number; total: number };
}

/** One in-session step of runSession: its label and when it is skipped. */
interface Step {
  label: string;
  /** Steps run only when the options ask for them (neither run nor listed as skipped otherwise). */
  asked?: (o: SessionRequestOptions) => boolean;
  skip: (c: RequesterConnection) => string | undefined;
  run: (r: SpdmRequester, s: SecureSession) => Promise<unknown>;
}

const needsBoth = (cap: string, requester: number, responder: number) => (c: RequesterConnection) =>
  both(c, requester, responder) ? undefined : `${cap} is not set on both sides`;

/** The flow of runSession after the measurements (which are separate: they feed the summary). */
const LATER_STEPS: readonly Step[] = [
  ...[KeyUpdateOperation.UpdateKey, KeyUpdateOperation.UpdateAllKeys].map((op) => ({
    label: `KEY_UPDATE ${nameOf(KeyUpdateOperation, op)}+VerifyNewKey`,
    skip: needsBoth("KEY_UPD_CAP", Req.KEY_UPD_CAP, Rsp.KEY_UPD_CAP),
    run: (r: SpdmRequester, s: SecureSession) => keyUpdate(r, s, op),
  })),
  {
    label: "KEY_UPDATE by the responder (encapsulated)",
    asked: (o) => o.responderKeyUpdate === true,
    skip: (c) =>
      needsBoth("KEY_UPD_CAP", Req.KEY_UPD_CAP, Rsp.KEY_UPD_CAP)(c) ??
      needsBoth("ENCAP_CAP", Req.ENCAP_CAP, Rsp.ENCAP_CAP)(c),
    run: responderKeyUpdate,
  },
  {
    label: "HEARTBEAT",
    skip: needsBoth("HBEAT_CAP", Req.HBEAT_CAP, Rsp.HBEAT_CAP),
    run: heartbeat,
  },
];

/**
 * `doe-emu requester --session`: open the session, then inside it GET_DIGESTS + GET_CERTIFICATE
 * (when the responder has CERT_CAP), the measurements (their summary hash checked against the
 * handshake's), both key updates (and the responder's, when asked), a heartbeat, END_SESSION.
 */
export async function runSession(
  r: SpdmRequester,
  options: SessionRequestOptions,
  appOptions?: AppOptions,
): Promise<SessionSummary> {
  const t0 = performance.now();
  const before = r.counts.secured;
  const opened = await openSession(r, options);
  const s = opened.session;
  const t1 = performance.now();
  const c = r.connection;
  const steps: string[] = [];
  const skipped: string[] = [];
  let measurements: MeasurementsResult;
  let app: AppSummary | undefined;
  try {
    // First in the session, as spdm_requester_emu runs its APP step.
    if (appOptions?.protocols.length) {
      app = await runApp(r, s, appOptions);
      steps.push(...appOptions.protocols.map((p) => `APP ${p}`));
    }
    if (c.responderFlags & Rsp.CERT_CAP) {
      await r.inSession(s, async () => {
        await getDigests(r);
        await getCertificateChain(r, c.slotId);
      });
      steps.push("GET_DIGESTS", "GET_CERTIFICATE");
    } else skipped.push("GET_DIGESTS/GET_CERTIFICATE: the responder has no CERT_CAP");
    measurements = await r.inSession(s, () => getMeasurements(r));
    if (measurements.mode !== "NONE") steps.push("GET_MEASUREMENTS");
    for (const step of LATER_STEPS.filter((t) => t.asked?.(options) ?? true)) {
      const why = step.skip(c);
      if (why) skipped.push(`${step.label}: ${why}`);
      else {
        await step.run(r, s);
        steps.push(step.label);
      }
    }
  } catch (e) {
    s.end(`failed: ${(e as Error).message}`);
    throw e;
  }
  const match = summaryHashMatches(r, opened.measurementSummaryHash, opened.measurementSummaryHashType);
  if (match === false)
    fail(
      "measurements",
      `the session's MeasurementSummaryHash is not the hash of the measurement blocks read in it`,
    );
  await endSession(r, s, options.endSessionAttributes ?? SESSION_DEFAULTS.endSessionAttributes);
  steps.push("END_SESSION");
  const t2 = performance.now();
  const type = opened.measurementSummaryHashType;
  return {
    kind: s.kind,
    sessionId: hex32(s.sessionId),
    securedMessageVersion: versionName(s.securedMessageVersion ?? 0),
    handshake: s.kind === "KEY_EX" && s.handshakeInTheClear ? "in the clear" : "encrypted",
    dhe: s.kind === "KEY_EX" ? bitNames(DheNamedGroup, selection(c, AlgType.DHE)).join("") : undefined,
    aead: bitNames(AeadCipherSuite, selection(c, AlgType.AEAD)).join(""),
    heartbeatPeriod: s.heartbeatPeriod,
    pskFinish: opened.pskFinish,
    mutualAuth: opened.mutualAuth,
    measurementSummaryHash: {
      type: nameOf(MeasurementSummaryHashType, type) ?? hex(type),
      value: opened.measurementSummaryHash.length ? opened.measurementSummaryHash.toString("hex") : undefined,
      checked: match === true,
    },
    steps,
    skipped,
    measurements,
    app,
    securedRoundTrips: r.counts.secured - before,
    timingsMs: { handshake: msBetween(t0, t1), inSession: msBetween(t1, t2), total: msBetween(t0, t2) },
  };
}
