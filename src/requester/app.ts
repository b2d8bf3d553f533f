/**
 * The APP step of a session run (`doe-emu requester --app`), as spdm_requester_emu's APP step does
 * it over PCI DOE (spdm-emu 85436d53 spdm_requester_pci_doe.c): PCI IDE-KM QUERY, then KEY_PROG +
 * K_SET_GO for each RX/TX × PR/NPR/CPL key with fresh random keys; with the keys in "go", the whole
 * TDISP cycle on one TDI (version, capabilities, lock, report, start, stop, the state after each);
 * then K_SET_STOP for the six keys. Then CXL IDE-KM: QUERY, GET_KEY when the port generates keys or
 * IVs, KEY_PROG RX and TX, K_SET_GO RX and TX, and (after what runs inside CXL IDE, CXL TSP in DMTF's
 * order) K_SET_STOP RX and TX when the port announces K_SET_STOP.
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
  IDE_KM_KEY_BYTES,
  IdeDirection,
  IdeSubStream,
  KeySet,
  type KeyTarget,
} from "../../protocol/ide-km.js";
import type { DeviceInterfaceReport } from "../../protocol/tdisp.js";
import type { SpdmRequester } from "../spdm/requester.js";
import {
  cxlIdeKmGetKey,
  cxlIdeKmKeyProg,
  cxlIdeKmKSet,
  cxlIdeKmQuery,
  cxlKeyLabel,
} from "../spdm/requester-cxl-ide-km.js";
import { ideKmKeyProg, ideKmKSet, ideKmQuery, keyLabel } from "../spdm/requester-ide-km.js";
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

export const APP_PROTOCOLS = ["IDE_KM", "TDISP", "CXL_IDE_KM"] as const;
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
}

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
      reportBytes: report.bytes,
      reportPortions: report.portions,
      states,
    };
  }
  if (ideKm) await ideKmStop(r, s, targets);
  if (o.protocols.includes("CXL_IDE_KM")) {
    const cxl = await cxlIdeKmStart(r, s, o.cxlPortIndex ?? APP_DEFAULTS.cxlPortIndex);
    // CXL TSP runs here in DMTF's order, with the CXL IDE keys going.
    out.cxlIdeKm = await cxlIdeKmStop(r, s, cxl);
  }
  return out;
}
