/**
 * The connection steps of a requester run, sequenced as spdm_requester_emu's --exe_conn does them
 * (spdm-emu 85436d53): VCA, then GET_DIGESTS, GET_CERTIFICATE for each wanted slot, CHALLENGE and
 * the measurements as configured, timed, and summed up in a report of what was verified.
 */
import { X509Certificate } from "node:crypto";
import {
  bitNames,
  MeasurementSummaryHashType,
  nameOf,
  RequesterCapability,
  ResponderCapability,
  versionName,
} from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { hash } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT } from "../spdm/public-key.js";
import type { SpdmRequester } from "../spdm/requester.js";
import { getCertificateChain, getDigests } from "../spdm/requester-certificates.js";
import { challenge } from "../spdm/requester-challenge.js";
import { getMeasurements, type MeasurementsResult } from "../spdm/requester-measurements.js";
import { CONNECTION_STEPS } from "../spdm/requester-options.js";
import { type ProvisionSummary, runProvisionSteps } from "../spdm/requester-provision.js";
import { algorithmNames, negotiate } from "../spdm/requester-vca.js";

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
  /** Slot 0xFF: the provisioned public key the responder signed with, Hash(its SPKI) with the negotiated hash, hex. */
  publicKeyDigest?: string;
  /** Slots fetched besides `slot`, with their leaf subjects. */
  otherSlots: { slot: number; leafSubject: string }[];
  challenge: {
    measurementSummaryHashType: string;
    measurementSummaryHash: string | undefined;
    /** Whether the summary hash was recomputed from the measurement blocks. */
    summaryHashChecked: boolean;
    /** The responder's encapsulated requests, when CHALLENGE_AUTH asked for basic mutual authentication. */
    basicMutualAuth?: string[];
  };
  measurements: MeasurementsResult;
  /** The provisioning steps asked for (none by default). */
  provisioning: ProvisionSummary;
  exchanges: number;
  timingsMs: { vca: number; certificates: number; challenge: number; measurements: number; total: number };
}

/** authenticate()'s summary: the certificate and challenge parts are there when their steps ran. */
export type ConnectionSummary = Omit<RequesterSummary, "certificateChain" | "challenge"> &
  Partial<Pick<RequesterSummary, "certificateChain" | "challenge">>;

/** Milliseconds between two performance.now() readings, to a tenth. */
export const msBetween = (from: number, to: number) => Math.round((to - from) * 10) / 10;

/** VCA, then the requester's configured connection steps (spdm-emu's --exe_conn). */
export async function authenticate(r: SpdmRequester): Promise<ConnectionSummary> {
  const o = r.options;
  const steps = new Set(o.connectionSteps);
  const t = [performance.now()];
  const lap = () => {
    t.push(performance.now());
    return msBetween(t.at(-2)!, t.at(-1)!);
  };
  await negotiate(r);
  const vca = lap();
  // Slot 0xFF: the provisioned public key stands in for the certificates (spdm-emu fetches none).
  const chains = o.slotId !== PUBLIC_KEY_SLOT;
  if (chains && steps.has("DIGEST")) await getDigests(r);
  if (chains && steps.has("CERT"))
    for (const slot of [o.slotId, ...o.extraSlots]) await getCertificateChain(r, slot);
  const certificates = lap();
  if (steps.has("CHAL")) await challenge(r);
  const challengeMs = lap();
  const measurements = steps.has("MEAS")
    ? await getMeasurements(r)
    : { mode: "NONE" as const, reason: "not requested" };
  const measurementsMs = lap();
  const provisioning = await runProvisionSteps(r);
  return summarize(r, measurements, provisioning, {
    vca,
    certificates,
    challenge: challengeMs,
    measurements: measurementsMs,
    total: msBetween(t[0]!, t.at(-1)!),
  });
}

/**
 * The whole flow (every connection step); resolves with what was verified, rejects with
 * SpdmRequesterError.
 */
export async function authenticateAll(r: SpdmRequester): Promise<RequesterSummary> {
  const missing = CONNECTION_STEPS.filter((step) => !r.options.connectionSteps.includes(step));
  if (missing.length > 0)
    throw new RangeError(`authenticateAll() needs every connection step; ${missing} is off`);
  return (await authenticate(r)) as RequesterSummary;
}

function summarize(
  r: SpdmRequester,
  measurements: MeasurementsResult,
  provisioning: ProvisionSummary,
  timingsMs: RequesterSummary["timingsMs"],
): ConnectionSummary {
  const { slotId, extraSlots, trustRoot } = r.options;
  const main = r.chains.get(slotId);
  const type = r.summaryHashType();
  const publicKey = slotId === PUBLIC_KEY_SLOT ? r.peerKey(slotId) : undefined;
  return {
    version: versionName(r.version),
    requesterCapabilities: bitNames(RequesterCapability, r.sentCapabilities),
    responderCapabilities: bitNames(ResponderCapability, r.rsp!.flags),
    algorithms: algorithmNames(r.alg!),
    slot: slotId,
    provisionedSlots: [...r.digests.keys()],
    certificateChain: main && {
      bytes: main.bytes.length,
      certificates: main.chain.certs.length,
      rootSubject: main.chain.certs[0]!.subject,
      leafSubject: main.chain.certs.at(-1)!.subject,
      leafDigest: hash(r.suite!.hash, main.chain.certsDer.at(-1)!).toString("hex"),
      trustAnchor: trustRoot && new X509Certificate(trustRoot).subject,
    },
    publicKeyDigest: publicKey && hash(r.suite!.hash, publicKey.bytes).toString("hex"),
    otherSlots: extraSlots.flatMap((slot) => {
      const leaf = r.chains.get(slot)?.chain.certs.at(-1);
      return leaf ? [{ slot, leafSubject: leaf.subject }] : [];
    }),
    challenge: r.challenged
      ? {
          measurementSummaryHashType: nameOf(MeasurementSummaryHashType, type) ?? hex(type),
          measurementSummaryHash: r.summaryHash?.toString("hex"),
          summaryHashChecked: r.summaryHashChecked,
          basicMutualAuth: r.basicMutualAuth?.requests,
        }
      : undefined,
    measurements,
    provisioning,
    exchanges: r.counts.exchanges,
    timingsMs,
  };
}
