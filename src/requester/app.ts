/**
 * The APP step of a session run (`doe-emu requester --app`), as spdm_requester_emu's APP step does
 * it over PCI DOE (spdm-emu 85436d53 spdm_requester_pci_doe.c): PCI IDE-KM QUERY, then KEY_PROG +
 * K_SET_GO for each RX/TX × PR/NPR/CPL key with fresh random keys; with the keys in "go", the whole
 * TDISP cycle on one TDI (version, capabilities, lock, report, start, stop, the state after each);
 * then K_SET_STOP for the six keys.
 */
import {
  IDE_KM_KEY_BYTES,
  IdeDirection,
  IdeSubStream,
  KeySet,
  type KeyTarget,
} from "../../protocol/ide-km.js";
import type { DeviceInterfaceReport } from "../../protocol/tdisp.js";
import type { SpdmRequester } from "../spdm/requester.js";
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

export const APP_PROTOCOLS = ["IDE_KM", "TDISP"] as const;
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
  return out;
}
