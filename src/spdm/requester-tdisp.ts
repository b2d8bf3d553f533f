/**
 * TDISP from the requester side (PCIe r6.1 chapter 11; codec protocol/tdisp.ts), one function per
 * exchange, each inside an established session and addressed to one INTERFACE_ID FunctionID.
 * Every answer must be TDISP 1.0, the expected response and for the same FunctionID; a TDISP_ERROR
 * fails with its error name and the step.
 */
import { nameOf } from "../../protocol/spdm/codes.js";
import {
  type DeviceInterfaceReport,
  decodeDeviceInterfaceReport,
  decodeTdisp,
  encodeTdisp,
  TDISP_VERSION_1_0,
  TdiState,
  TdispErrorCode,
  type TdispMessage,
  type TdispMessageName,
  type TdispMessageOf,
} from "../../protocol/tdisp.js";
import { hex } from "../bits.js";
import { fail, type SpdmRequester } from "./requester.js";
import { type Answers, ask as askFor, decodeOrFail, readPortions } from "./requester-pcisig.js";
import type { SecureSession } from "./session.js";

/** The session and the TDI (INTERFACE_ID FunctionID) the requests go to. */
export interface TdispTarget {
  r: SpdmRequester;
  s: SecureSession;
  functionId: number;
}

/** Report portions asked for, and the largest report accepted, as DMTF's requester (pci_tdisp_common_lib.h). */
export const REPORT_PORTION_BYTES = 0x40;
export const MAX_REPORT_BYTES = 0x1000;
/** LOCK_INTERFACE_REQUEST MMIO_REPORTING_OFFSET, DMTF's requester's value. */
export const MMIO_REPORTING_OFFSET = 0xd000_0000n;

/** LOCK_INTERFACE_REQUEST fields beyond the flags; DMTF's requester's values when absent. */
export interface LockOptions {
  defaultStreamId?: number;
  mmioReportingOffset?: bigint;
}

type Body<M> = M extends TdispMessage ? Omit<M, "version" | "functionId"> : never;

const ANSWERS: Answers<TdispMessage> = {
  protocol: "TDISP",
  decode: decodeTdisp,
  version: TDISP_VERSION_1_0,
  error: (m) => {
    if (m.code !== "TDISP_ERROR") return undefined;
    const name = nameOf(TdispErrorCode, m.errorCode) ?? hex(m.errorCode);
    return { name, text: `TDISP_ERROR ${name} (ErrorData ${hex(m.errorData)})` };
  },
};

async function ask<N extends TdispMessageName>(
  t: TdispTarget,
  request: Body<TdispMessage>,
  expected: N,
): Promise<TdispMessageOf<N>> {
  const step = request.code;
  const message = encodeTdisp({
    ...request,
    version: TDISP_VERSION_1_0,
    functionId: t.functionId,
  } as TdispMessage);
  const m = await askFor(t.r, t.s, ANSWERS, message, step, expected);
  if (m.functionId !== t.functionId)
    fail(
      "unexpected-response",
      `TDISP ${step}: ${expected} is for FunctionID ${hex(m.functionId)}, we sent ${hex(t.functionId)}`,
    );
  return m as TdispMessageOf<N>;
}

export async function tdispVersion(t: TdispTarget): Promise<number[]> {
  const m = await ask(t, { code: "GET_TDISP_VERSION" }, "TDISP_VERSION");
  if (!m.versions.includes(TDISP_VERSION_1_0))
    fail("negotiation", `TDISP GET_TDISP_VERSION: versions ${m.versions.map(hex).join(",")} lack 1.0`);
  return m.versions;
}

export function tdispCapabilities(t: TdispTarget): Promise<TdispMessageOf<"TDISP_CAPABILITIES">> {
  return ask(t, { code: "GET_TDISP_CAPABILITIES", tsmCaps: 0 }, "TDISP_CAPABILITIES");
}

/** GET_DEVICE_INTERFACE_STATE: the TDI's state by name; a state TDISP 1.0 does not define fails. */
export async function tdispGetState(t: TdispTarget): Promise<keyof typeof TdiState> {
  const m = await ask(t, { code: "GET_DEVICE_INTERFACE_STATE" }, "DEVICE_INTERFACE_STATE");
  const name = nameOf(TdiState, m.tdiState);
  if (name === undefined)
    fail("unexpected-response", `TDISP GET_DEVICE_INTERFACE_STATE: unknown TDI state ${hex(m.tdiState)}`);
  return name;
}

/** GET_DEVICE_INTERFACE_STATE; the TDI must be in `expected` (a TdiState name). */
export async function tdispState(t: TdispTarget, expected: keyof typeof TdiState): Promise<void> {
  const state = await tdispGetState(t);
  if (state !== expected)
    fail(
      "unexpected-response",
      `TDISP GET_DEVICE_INTERFACE_STATE: the TDI is ${state}, expected ${expected}`,
    );
}

/** LOCK_INTERFACE_REQUEST with `flags`, no P2P, the stream and MMIO offset of `o`; resolves the start nonce. */
export async function tdispLock(t: TdispTarget, flags: number, o: LockOptions = {}): Promise<Buffer> {
  const m = await ask(
    t,
    {
      code: "LOCK_INTERFACE_REQUEST",
      flags,
      defaultStreamId: o.defaultStreamId ?? 0,
      mmioReportingOffset: o.mmioReportingOffset ?? MMIO_REPORTING_OFFSET,
      bindP2pAddressMask: 0n,
    },
    "LOCK_INTERFACE_RESPONSE",
  );
  return m.startInterfaceNonce;
}

/**
 * GET_DEVICE_INTERFACE_REPORT in portions until RemainderLength is 0, checked as DMTF's requester
 * does: its bytes (as tspReport gives them), their decoding and the number of portions.
 */
export async function tdispReport(
  t: TdispTarget,
): Promise<{ report: DeviceInterfaceReport; bytes: Buffer; portions: number }> {
  const { bytes, portions } = await readPortions(
    (offset, length) =>
      ask(t, { code: "GET_DEVICE_INTERFACE_REPORT", offset, length }, "DEVICE_INTERFACE_REPORT"),
    REPORT_PORTION_BYTES,
    MAX_REPORT_BYTES,
    "TDISP GET_DEVICE_INTERFACE_REPORT",
  );
  const report = decodeOrFail(decodeDeviceInterfaceReport, bytes, "TDISP device interface report");
  return { report, bytes, portions };
}

export async function tdispStart(t: TdispTarget, nonce: Buffer): Promise<void> {
  await ask(t, { code: "START_INTERFACE_REQUEST", startInterfaceNonce: nonce }, "START_INTERFACE_RESPONSE");
}

export async function tdispStop(t: TdispTarget): Promise<void> {
  await ask(t, { code: "STOP_INTERFACE_REQUEST" }, "STOP_INTERFACE_RESPONSE");
}
