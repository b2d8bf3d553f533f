/**
 * The TSM's bind step (PCIe r6.1 §11.3, the Linux PCI TSM "bind"): over the TDEV's held session
 * (connect.ts), addressed to the TDI's routing ID as INTERFACE_ID FunctionID, LOCK_INTERFACE_REQUEST
 * with the connected IDE stream as default stream and the host's MMIO_REPORTING_OFFSET, the whole
 * device interface report fetched and verified against what the host's scan assigned (scan.ts),
 * then START_INTERFACE_REQUEST with the lock's nonce: the TDI runs. A TDISP_ERROR or a report that
 * does not verify stops the interface again (best effort) and fails with BindError. Unbind is
 * STOP_INTERFACE_REQUEST, skipped when the TDI is already CONFIG_UNLOCKED (an FLR unlocked it).
 */
import { createHash } from "node:crypto";
import { Msix, msixPbaBytes } from "../../protocol/pci.js";
import {
  type DeviceInterfaceReport,
  InterfaceInfo,
  LockInterfaceFlag,
  MmioRangeAttribute,
  type TdiState,
} from "../../protocol/tdisp.js";
import { hex } from "../bits.js";
import { VdmErrorResponse } from "../spdm/requester-pcisig.js";
import {
  type TdispTarget,
  tdispGetState,
  tdispLock,
  tdispReport,
  tdispStart,
  tdispStop,
} from "../spdm/requester-tdisp.js";
import { CONNECT_STREAM_ID, type TdevLink } from "./connect.js";
import type { AssignedBar, MsixInfo } from "./scan.js";

export type TdispStateName = keyof typeof TdiState;

/**
 * Where the host asks the device to report MMIO: an offset no BAR is assigned at, so that a device
 * reporting raw BAR addresses (ignoring the offset) fails verification.
 */
export const HOST_MMIO_REPORTING_OFFSET = 0x8000_0000_0000n;
/** The host asks for no firmware update while the TDI is locked; the report must say so. */
export const BIND_LOCK_FLAGS = LockInterfaceFlag.NO_FW_UPDATE;

const PAGE_SHIFT = 12n;
const PAGE = 1n << PAGE_SHIFT;

/** What a function's report is checked against: its BARs as assigned, its MSI-X capability. */
export interface BindFunction {
  rid: number;
  bars: readonly AssignedBar[];
  msix?: MsixInfo;
}

/** What a successful bind leaves: the report as received, decoded, and its digest. */
export interface BindEvidence {
  report: DeviceInterfaceReport;
  reportBytes: Buffer;
  /** SHA-256 of the report bytes, hex. */
  reportDigest: string;
  mmioReportingOffset: bigint;
}

export class BindError extends Error {
  override readonly name = "BindError";
  constructor(
    message: string,
    /** The TDISP_ERROR's name, or what in the report does not verify. */
    readonly detail: { tdispError: string } | { mismatch: string },
  ) {
    super(message);
  }
}

/** A page span [from, to) of 4 KiB pages. */
interface Span {
  from: bigint;
  to: bigint;
}

const pageSpan = (start: bigint, bytes: bigint): Span => ({
  from: start >> PAGE_SHIFT,
  to: (start + bytes + PAGE - 1n) >> PAGE_SHIFT,
});

/**
 * Checks a report's MMIO ranges against the function as the host set it up: every range lies in
 * one assigned BAR (address + offset, in 4 KiB pages), no two overlap, every assigned BAR is
 * covered whole, and a range carries the MSI-X table (PBA) attribute exactly when it lies in the
 * table's (PBA's) pages, as the MSI-X capability places them; a range straddling them fails. The
 * report must also show the lock's NO_FW_UPDATE. Returns what does not verify, or undefined.
 */
export function verifyReport(
  report: DeviceInterfaceReport,
  fn: BindFunction,
  offset: bigint,
): string | undefined {
  if (!(report.interfaceInfo & InterfaceInfo.NO_FW_UPDATE))
    return `INTERFACE_INFO ${hex(report.interfaceInfo)} lacks NO_FW_UPDATE, which the lock asked for`;
  const bars = fn.bars
    .filter((b) => b.address !== undefined)
    .map((b) => ({ bar: b, span: pageSpan(b.address! + offset, b.size), pages: 0n }));
  const msix = fn.msix;
  const marks = msix
    ? [
        {
          place: msix.table,
          bytes: msix.vectors * Msix.ENTRY_SIZE,
          attribute: MmioRangeAttribute.MSIX_TABLE,
        },
        { place: msix.pba, bytes: msixPbaBytes(msix.vectors), attribute: MmioRangeAttribute.MSIX_PBA },
      ]
    : [];
  const ranges = report.mmioRanges
    .map((r, i) => ({ r, i, span: { from: r.firstPage, to: r.firstPage + BigInt(r.numberOfPages) } }))
    .sort((a, b) => (a.span.from < b.span.from ? -1 : a.span.from > b.span.from ? 1 : 0));
  let previous: Span | undefined;
  for (const { r, i, span } of ranges) {
    const what = `MMIO range ${i} (pages ${hex(span.from)}..${hex(span.to)})`;
    const home = bars.find((b) => span.from >= b.span.from && span.to <= b.span.to);
    if (r.numberOfPages === 0 || !home) return `${what} is not within a BAR the host assigned`;
    if (previous && span.from < previous.to) return `${what} overlaps another range`;
    previous = span;
    home.pages += span.to - span.from;
    for (const m of marks) {
      const at =
        m.place.bar === home.bar.index
          ? pageSpan(home.bar.address! + offset + BigInt(m.place.offset), BigInt(m.bytes))
          : undefined;
      const inside = at !== undefined && span.from >= at.from && span.to <= at.to;
      const apart = at === undefined || span.to <= at.from || span.from >= at.to;
      const flagged = (r.rangeAttributes & m.attribute) !== 0;
      const name = m.attribute === MmioRangeAttribute.MSIX_TABLE ? "MSI-X table" : "MSI-X PBA";
      if (!inside && !apart) return `${what} straddles the ${name} of BAR ${home.bar.index}`;
      if (flagged !== inside)
        return `${what} ${flagged ? "is" : "is not"} flagged ${name}, but ${inside ? "holds" : "does not hold"} it`;
    }
    // No MSI-X capability: no range may claim to hold its structures.
    const msixBits = MmioRangeAttribute.MSIX_TABLE | MmioRangeAttribute.MSIX_PBA;
    if (!msix && r.rangeAttributes & msixBits)
      return `${what} is flagged MSI-X, but the function has no MSI-X`;
  }
  for (const b of bars)
    if (b.pages !== b.span.to - b.span.from)
      return `BAR ${b.bar.index} at ${hex(b.bar.address!)} is not covered whole by the report's ranges`;
  return undefined;
}

/** `f` with a TDISP target for the TDI at `rid` on the link's session, queued like every exchange. */
function onTdi<T>(link: TdevLink, rid: number, f: (t: TdispTarget) => Promise<T>): Promise<T> {
  return link.withSession((r, s) => f({ r, s, functionId: rid }));
}

/** A TDISP_ERROR as a BindError; anything else as it is. */
function asBindError(e: unknown, what: string): unknown {
  if (e instanceof VdmErrorResponse)
    return new BindError(`${what}: ${e.message}`, { tdispError: e.errorName });
  return e;
}

/** Lock, report, verify, start; on a failure, STOP (best effort) before rejecting. */
export async function lockAndStart(link: TdevLink, fn: BindFunction): Promise<BindEvidence> {
  const offset = HOST_MMIO_REPORTING_OFFSET;
  return onTdi(link, fn.rid, async (t) => {
    try {
      const nonce = await tdispLock(t, BIND_LOCK_FLAGS, {
        defaultStreamId: CONNECT_STREAM_ID,
        mmioReportingOffset: offset,
      });
      const { report, bytes: raw } = await tdispReport(t);
      const mismatch = verifyReport(report, fn, offset);
      if (mismatch)
        throw new BindError(`the device interface report does not verify: ${mismatch}`, { mismatch });
      await tdispStart(t, nonce);
      return {
        report,
        reportBytes: raw,
        reportDigest: createHash("sha256").update(raw).digest("hex"),
        mmioReportingOffset: offset,
      };
    } catch (e) {
      // Whoever locked it (a refused lock may mean another party did), the host leaves it stopped.
      await tdispStop(t).catch(() => undefined);
      throw asBindError(e, "bind");
    }
  });
}

/** STOP_INTERFACE_REQUEST unless the TDI is CONFIG_UNLOCKED already (STOP is refused there). */
export function stopInterface(link: TdevLink, rid: number): Promise<void> {
  return onTdi(link, rid, async (t) => {
    try {
      if ((await tdispGetState(t)) !== "CONFIG_UNLOCKED") await tdispStop(t);
    } catch (e) {
      throw asBindError(e, "unbind");
    }
  });
}

/** The TDI's live state (GET_DEVICE_INTERFACE_STATE). */
export function interfaceState(link: TdevLink, rid: number): Promise<TdispStateName> {
  return onTdi(link, rid, tdispGetState);
}
