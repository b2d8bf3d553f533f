/**
 * The APP step of a session run (`doe-emu requester --app`), as spdm_requester_emu's APP step does
 * it over PCI DOE (spdm-emu 85436d53 spdm_requester_pci_doe.c): PCI IDE-KM QUERY, then KEY_PROG +
 * K_SET_GO for each RX/TX × PR/NPR/CPL key with fresh random keys; with the keys in "go", the whole
 * TDISP cycle on one TDI (version, capabilities, lock, report, start, stop, the state after each);
 * then K_SET_STOP for the six keys; then CXL TSP (A.6/A.7 of spdm_requester_pci_doe.c's flow): version and
 * capabilities, and in the connection's first TSP run (PRIMARY) the configuration with key material
 * for each secondary session the target offers, its report, the lock, TE state in and out, then one
 * nested PSK session per key (hint SECONDARY_SESSION_<i>_PSK) that reads the configuration and
 * changes TE state again while the primary session stays up.
 */

import {
  ConfigurationFeature,
  SECONDARY_SESSION_KEY_BYTES,
  secondarySessionPskHint,
  type TspCapabilities,
} from "../../protocol/cxl-tsp.js";
import {
  IDE_KM_KEY_BYTES,
  IdeDirection,
  IdeSubStream,
  KeySet,
  type KeyTarget,
} from "../../protocol/ide-km.js";
import type { DeviceInterfaceReport } from "../../protocol/tdisp.js";
import { hex32 } from "../bits.js";
import type { SpdmRequester } from "../spdm/requester.js";
import {
  DMTF_TE_RANGE,
  type TspTarget,
  tspCapabilities,
  tspConfiguration,
  tspLock,
  tspReport,
  tspSetConfiguration,
  tspTeState,
  tspVersion,
} from "../spdm/requester-cxl-tsp.js";
import { SESSION_DEFAULTS } from "../spdm/requester-handshake.js";
import { ideKmKeyProg, ideKmKSet, ideKmQuery, keyLabel } from "../spdm/requester-ide-km.js";
import { endSession, openSession } from "../spdm/requester-session.js";
import {
  tdispCapabilities,
  tdispLock,
  tdispReport,
  tdispStart,
  tdispState,
  tdispStop,
  tdispVersion,
} from "../spdm/requester-tdisp.js";
import type { SecureSession } from "../spdm/session.js";

export const APP_PROTOCOLS = ["IDE_KM", "TDISP", "CXL_TSP"] as const;
export type AppProtocol = (typeof APP_PROTOCOLS)[number];

export interface AppOptions {
  protocols: readonly AppProtocol[];
  /** IDE-KM PortIndex; DMTF's requester uses 1. */
  portIndex?: number;
  /** TDISP INTERFACE_ID FunctionID; DMTF's requester always sends 0xBEEF. */
  functionId?: number;
}

export const APP_DEFAULTS = { portIndex: 1, functionId: 0xbeef } as const;

export interface AppSummary {
  ideKm?: {
    portIndex: number;
    maxPortIndex: number;
    ideCapability: number;
    /** The keys programmed, started and stopped, e.g. "K0 RX PR stream 0 port 1". */
    keys: string[];
  };
  tdisp?: {
    functionId: number;
    versions: number[];
    lockFlags: number;
    report: DeviceInterfaceReport;
    reportBytes: number;
    reportPortions: number;
    /** The TDI states seen, in order. */
    states: string[];
  };
  cxlTsp?: {
    /** PRIMARY: the connection's first TSP run, which configures and locks; OTHER: any later one. */
    role: "PRIMARY" | "OTHER";
    versions: number[];
    capabilities: TspCapabilities;
    /** PRIMARY: CurrentTSPState before and after the lock, the report, and the secondary sessions. */
    states?: number[];
    reportBytes?: number;
    reportPortions?: number;
    secondarySessions?: { sessionId: string; states: number[] }[];
  };
}

/** Requester connections whose TSP target has been configured: later runs are OTHER (DMTF's process-wide flag). */
const tspConfigured = new WeakSet<SpdmRequester>();

/** DMTF's order: RX PR, NPR, CPL, then TX; key set 0, stream 0 unless told. */
export const keyTargets = (portIndex: number, streamId = 0): KeyTarget[] =>
  [IdeDirection.RX, IdeDirection.TX].flatMap((direction) =>
    [IdeSubStream.PR, IdeSubStream.NPR, IdeSubStream.CPL].map((subStream) => ({
      streamId,
      keySet: KeySet.K0,
      direction,
      subStream,
      portIndex,
    })),
  );

/** IFV DW0 = 0, DW1 = 1, as DMTF's requester programs it. */
const IFV = Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]); // IDE_KM_IFV_BYTES

/** KEY_PROG with fresh random keys, then K_SET_GO, for each of `targets`. */
export async function ideKmStart(
  r: SpdmRequester,
  s: SecureSession,
  targets: readonly KeyTarget[],
): Promise<void> {
  for (const t of targets) {
    await ideKmKeyProg(r, s, t, r.connection.random(IDE_KM_KEY_BYTES), IFV);
    await ideKmKSet(r, s, "K_SET_GO", t);
  }
}

/** K_SET_STOP for each of `targets`. */
export async function ideKmStop(
  r: SpdmRequester,
  s: SecureSession,
  targets: readonly KeyTarget[],
): Promise<void> {
  for (const t of targets) await ideKmKSet(r, s, "K_SET_STOP", t);
}

/** Runs `o.protocols` in session `s`; the first failure (SpdmRequesterError) ends the step. */
export async function runApp(r: SpdmRequester, s: SecureSession, o: AppOptions): Promise<AppSummary> {
  const out: AppSummary = {};
  const portIndex = o.portIndex ?? APP_DEFAULTS.portIndex;
  const targets = keyTargets(portIndex);
  const ideKm = o.protocols.includes("IDE_KM");
  if (ideKm) {
    const q = await ideKmQuery(r, s, portIndex);
    await ideKmStart(r, s, targets);
    out.ideKm = {
      portIndex,
      maxPortIndex: q.maxPortIndex,
      ideCapability: q.ideCapability,
      keys: targets.map(keyLabel),
    };
  }
  if (o.protocols.includes("TDISP")) {
    const t = { r, s, functionId: o.functionId ?? APP_DEFAULTS.functionId };
    const states: string[] = [];
    const state = async (expected: "CONFIG_UNLOCKED" | "CONFIG_LOCKED" | "RUN") => {
      await tdispState(t, expected);
      states.push(expected);
    };
    const versions = await tdispVersion(t);
    const caps = await tdispCapabilities(t);
    await state("CONFIG_UNLOCKED");
    // DMTF's requester asks for every lock flag the device supports.
    const lockFlags = caps.lockInterfaceFlagsSupported;
    const nonce = await tdispLock(t, lockFlags);
    await state("CONFIG_LOCKED");
    const report = await tdispReport(t);
    await tdispStart(t, nonce);
    await state("RUN");
    await tdispStop(t);
    await state("CONFIG_UNLOCKED");
    out.tdisp = {
      functionId: t.functionId,
      versions,
      lockFlags,
      report: report.report,
      reportBytes: report.bytes,
      reportPortions: report.portions,
      states,
    };
  }
  if (o.protocols.includes("CXL_TSP")) out.cxlTsp = await cxlTsp(r, s);
  if (ideKm) await ideKmStop(r, s, targets);
  return out;
}

/**
 * What the PRIMARY and SECONDARY sessions both do once configured: read the configuration and its
 * report back (the PRIMARY session locks in between), then TE state in and out.
 */
async function tspUse(
  t: TspTarget,
  afterReport?: () => Promise<void>,
): Promise<{ states: number[]; reportBytes: number; reportPortions: number }> {
  const states = [await tspConfiguration(t, true)];
  const report = await tspReport(t);
  await afterReport?.();
  states.push(await tspConfiguration(t, false));
  await tspTeState(t, 1, [DMTF_TE_RANGE]);
  await tspTeState(t, 0, [DMTF_TE_RANGE]);
  return { states, reportBytes: report.bytes.length, reportPortions: report.portions };
}

async function cxlTsp(r: SpdmRequester, s: SecureSession): Promise<NonNullable<AppSummary["cxlTsp"]>> {
  const t = { r, s };
  const versions = await tspVersion(t);
  const capabilities = await tspCapabilities(t);
  if (tspConfigured.has(r)) return { role: "OTHER", versions, capabilities };
  const additional =
    capabilities.configurationFeaturesSupported & ConfigurationFeature.ADDITIONAL_SPDM_SESSIONS;
  const keys = Array.from({ length: additional ? capabilities.numberOfSecondarySessions : 0 }, () =>
    r.connection.random(SECONDARY_SESSION_KEY_BYTES),
  );
  await tspSetConfiguration(t, keys);
  const primary = await tspUse(t, () => tspLock(t));
  const secondarySessions = [];
  for (const [i, psk] of keys.entries()) {
    // In the clear while the primary session stays up; libspdm's next free ReqSessionID.
    const opened = await openSession(r, {
      kind: "PSK",
      psk,
      pskHint: secondarySessionPskHint(i),
      reqSessionId: s.reqSessionId - 1 - i,
    });
    const s2 = opened.session;
    try {
      await tspVersion({ r, s: s2 });
      await tspCapabilities({ r, s: s2 });
      const used = await tspUse({ r, s: s2 });
      await endSession(r, s2, SESSION_DEFAULTS.endSessionAttributes);
      secondarySessions.push({ sessionId: hex32(s2.sessionId), states: used.states });
    } catch (e) {
      s2.end(`failed: ${(e as Error).message}`);
      throw e;
    }
  }
  tspConfigured.add(r);
  return { role: "PRIMARY", versions, capabilities, ...primary, secondarySessions };
}
