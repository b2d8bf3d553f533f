/**
 * The APP step of a session run (`doe-emu requester --app`), as spdm_requester_emu's APP step does
 * it over PCI DOE (spdm-emu 85436d53 spdm_requester_pci_doe.c): PCI IDE-KM QUERY, then KEY_PROG +
 * K_SET_GO for each RX/TX × PR/NPR/CPL key with fresh random keys; with the keys in "go", the whole
 * TDISP cycle on one TDI (version, capabilities, lock, report, start, stop, the state after each);
 * then K_SET_STOP for the six keys. Then CXL IDE-KM: QUERY, GET_KEY when the port generates keys or
 * IVs, KEY_PROG RX and TX, K_SET_GO RX and TX, and (after what runs inside CXL IDE, CXL TSP in DMTF's
 * order) K_SET_STOP RX and TX when the port announces K_SET_STOP. CXL TSP, inside CXL IDE: version and
 * capabilities, and in the connection's first TSP run (PRIMARY) the configuration with key material
 * for each secondary session the target offers, its report, the lock, TE state in and out, then one
 * nested PSK session per key (hint SECONDARY_SESSION_<i>_PSK) that reads the configuration and
 * changes TE state again while the primary session stays up.
 */

import {
  CXL_DEFAULT_IV,
  CXL_IDE_KM_KEY_BYTES,
  CXL_SUB_STREAM,
  CxlDirection,
  CxlIdeKmCaps,
  CxlIvMode,
  CxlKeyMode,
  type CxlKeyTarget,
} from "../../protocol/cxl-ide-km.js";
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
  cxlIdeKmGetKey,
  cxlIdeKmKeyProg,
  cxlIdeKmKSet,
  cxlIdeKmQuery,
  cxlKeyLabel,
} from "../spdm/requester-cxl-ide-km.js";
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
  type TdispTarget,
  tdispCapabilities,
  tdispLock,
  tdispReport,
  tdispStart,
  tdispState,
  tdispStop,
  tdispVersion,
} from "../spdm/requester-tdisp.js";
import type { SecureSession } from "../spdm/session.js";

export const APP_PROTOCOLS = ["IDE_KM", "TDISP", "CXL_IDE_KM", "CXL_TSP"] as const;
export type AppProtocol = (typeof APP_PROTOCOLS)[number];

export interface AppOptions {
  protocols: readonly AppProtocol[];
  /** IDE-KM PortIndex; DMTF's requester uses 1. */
  portIndex?: number;
  /** TDISP INTERFACE_ID FunctionID; DMTF's requester always sends 0xBEEF. */
  functionId?: number;
  /** CXL IDE-KM PortIndex; DMTF's requester uses 0. */
  cxlPortIndex?: number;
}

export const APP_DEFAULTS = { portIndex: 1, functionId: 0xbeef, cxlPortIndex: 0 } as const;

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
  cxlIdeKm?: {
    portIndex: number;
    maxPortIndex: number;
    /** QUERY_RESP Caps (CxlIdeKmCaps). */
    caps: number;
    ideRegisters: number[];
    /** Whether GET_KEY ran (the port generates keys or IVs). */
    getKey: boolean;
    /** The keys programmed and started, e.g. "RX mode 1 sub-stream 8 stream 0 port 0". */
    keys: string[];
    /** Whether K_SET_STOP stopped them (the port announces K_SET_STOP). */
    stopped: boolean;
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

/** The TDI states a bind cycle passes through, in order. */
export type BindState = "CONFIG_LOCKED" | "RUN" | "CONFIG_UNLOCKED";

/**
 * Binds the TDI and unbinds it again: LOCK_INTERFACE_REQUEST with `lockFlags`, the whole report,
 * START with the lock's nonce, STOP; `reached` after each state change (runApp checks the state there).
 */
export async function tdispBindCycle(
  t: TdispTarget,
  lockFlags: number,
  reached?: (state: BindState) => Promise<void>,
): Promise<Awaited<ReturnType<typeof tdispReport>>> {
  const nonce = await tdispLock(t, lockFlags);
  await reached?.("CONFIG_LOCKED");
  const report = await tdispReport(t);
  await tdispStart(t, nonce);
  await reached?.("RUN");
  await tdispStop(t);
  await reached?.("CONFIG_UNLOCKED");
  return report;
}

type CxlIdeKmSummary = NonNullable<AppSummary["cxlIdeKm"]>;

/** DMTF's CXL key: stream 0, CXL's sub-stream. */
const cxlKey = (portIndex: number, direction: number, mode = 0): CxlKeyTarget => ({
  streamId: 0,
  direction,
  mode,
  subStream: CXL_SUB_STREAM,
  portIndex,
});

/**
 * CXL IDE-KM up to K_SET_GO, as DMTF's requester: the RX key and IV are the ones GET_KEY returned
 * when the port generates them, else a random key and CXL_DEFAULT_IV; an IV other than that goes
 * with IV_DEFAULT set, as DMTF's does. TX gets a random key and CXL_DEFAULT_IV.
 */
export async function cxlIdeKmStart(
  r: SpdmRequester,
  s: SecureSession,
  portIndex: number,
): Promise<CxlIdeKmSummary> {
  const q = await cxlIdeKmQuery(r, s, portIndex);
  const key = (direction: number, mode = 0) => cxlKey(portIndex, direction, mode);
  const getKey = (q.caps & (CxlIdeKmCaps.IV_GEN | CxlIdeKmCaps.KEY_GEN)) !== 0;
  const got = getKey ? await cxlIdeKmGetKey(r, s, key(CxlDirection.RX)) : undefined;
  const rxKey = got && q.caps & CxlIdeKmCaps.KEY_GEN ? got.key : r.connection.random(CXL_IDE_KM_KEY_BYTES);
  const rxIv = got && q.caps & CxlIdeKmCaps.IV_GEN ? got.iv : CXL_DEFAULT_IV;
  const rx = key(
    CxlDirection.RX,
    rxIv.readUInt32LE(0) === CXL_DEFAULT_IV.readUInt32LE(0) ? CxlIvMode.INITIAL : CxlIvMode.DEFAULT,
  );
  const tx = key(CxlDirection.TX, CxlIvMode.INITIAL);
  await cxlIdeKmKeyProg(r, s, rx, rxKey, rxIv);
  await cxlIdeKmKeyProg(r, s, tx, r.connection.random(CXL_IDE_KM_KEY_BYTES), CXL_DEFAULT_IV);
  const going = [key(CxlDirection.RX, CxlKeyMode.SKID), key(CxlDirection.TX, CxlKeyMode.SKID)];
  for (const t of going) await cxlIdeKmKSet(r, s, "K_SET_GO", t);
  return {
    portIndex,
    maxPortIndex: q.maxPortIndex,
    caps: q.caps,
    ideRegisters: q.ideRegisters,
    getKey,
    keys: [rx, tx].map(cxlKeyLabel),
    stopped: false,
  };
}

/** K_SET_STOP RX and TX when the port announces K_SET_STOP (DMTF's requester skips it otherwise). */
export async function cxlIdeKmStop(
  r: SpdmRequester,
  s: SecureSession,
  started: CxlIdeKmSummary,
): Promise<CxlIdeKmSummary> {
  if (!(started.caps & CxlIdeKmCaps.K_SET_STOP)) return started;
  for (const direction of [CxlDirection.RX, CxlDirection.TX])
    await cxlIdeKmKSet(r, s, "K_SET_STOP", cxlKey(started.portIndex, direction));
  return { ...started, stopped: true };
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
    const state = async (expected: BindState) => {
      await tdispState(t, expected);
      states.push(expected);
    };
    const versions = await tdispVersion(t);
    const caps = await tdispCapabilities(t);
    await state("CONFIG_UNLOCKED");
    // DMTF's requester asks for every lock flag the device supports.
    const lockFlags = caps.lockInterfaceFlagsSupported;
    const report = await tdispBindCycle(t, lockFlags, state);
    out.tdisp = {
      functionId: t.functionId,
      versions,
      lockFlags,
      report: report.report,
      reportBytes: report.bytes.length,
      reportPortions: report.portions,
      states,
    };
  }
  if (ideKm) await ideKmStop(r, s, targets);
  const cxlIde = o.protocols.includes("CXL_IDE_KM")
    ? await cxlIdeKmStart(r, s, o.cxlPortIndex ?? APP_DEFAULTS.cxlPortIndex)
    : undefined;
  // CXL TSP runs with the CXL IDE keys going, in DMTF's order.
  if (o.protocols.includes("CXL_TSP")) out.cxlTsp = await cxlTsp(r, s);
  if (cxlIde) out.cxlIdeKm = await cxlIdeKmStop(r, s, cxlIde);
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
