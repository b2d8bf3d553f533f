/**
 * The device's TDISP responder (PCIe r6.1 chapter 11; message codecs in protocol/tdisp.ts): one TDI
 * per function the host rules give one (docs/ARCHITECTURE.md, Host rules): each TEE-IO endpoint PF
 * that is PF0 of an SR-IOV device or has no SR-IOV, and each enabled VF when function 0 has a TDI.
 * The engine is device-wide, as a device's security manager is: a request reaching any TDEV
 * function's SPDM responder may name any of the device's TDIs by INTERFACE_ID FunctionID (its
 * routing ID, or an alias from the description's `tdisp.functionIdAliases`).
 *
 * Each TDI follows the one table TDI_TRANSITIONS. What locking means here: while CONFIG_LOCKED or
 * RUN, a config change the model reports for the function (BAR, Memory Space Enable, MSI-X, IDE
 * stream; for a PF also SR-IOV and VF BARs, which move its VFs too) and the end of the SPDM session
 * the TDI was locked in move it to ERROR; a Function Level Reset returns it to CONFIG_UNLOCKED (a
 * PF's FLR takes its VFs along). Requests about a locked TDI from another session are served, as
 * spdm-emu 85436d53 does; the specification's rule binding them to the locking session is not
 * enforced.
 */
import { randomBytes } from "node:crypto";
import { DecodeError } from "../../protocol/errors.js";
import {
  CAP_LIST_NEXT,
  CapId,
  formatRoutingId,
  Header,
  Msix,
  MsixFlags,
  msixPbaBytes,
  msixPlace,
  PciExpType,
  PORT_TYPES,
  parseRoutingId,
  routingId,
  Status,
  vfRoutingId,
} from "../../protocol/pci.js";
import {
  type DeviceInterfaceReport,
  decodeTdisp,
  decodeTdispHeader,
  encodeDeviceInterfaceReport,
  encodeTdisp,
  InterfaceInfo,
  LockInterfaceFlag,
  type LockInterfaceRequest,
  type MmioRange,
  MmioRangeAttribute,
  REQ_MSGS_SUPPORTED_BYTES,
  START_INTERFACE_NONCE_BYTES,
  TDISP_HEADER_BYTES,
  TDISP_VERSION_1_0,
  TdiState,
  TdispCode,
  TdispErrorCode,
  type TdispMessage,
  type TdispMessageName,
} from "../../protocol/tdisp.js";
import { hex32 } from "../bits.js";
import type { Logger } from "../log.js";
import type { VendorRequestContext } from "../spdm/responder-vendor.js";
import type { BarState } from "./bars.js";
import type { ConfigChange } from "./config-space.js";
import type { DeviceModel } from "./model.js";
import { decodeOrRefuse } from "./pcisig-vdm.js";

export type TdiStateName = keyof typeof TdiState;

/** The requests a TDI's state decides, and the device's own events. */
export type TdiTrigger =
  | "GET_TDISP_VERSION"
  | "GET_TDISP_CAPABILITIES"
  | "GET_DEVICE_INTERFACE_STATE"
  | "LOCK_INTERFACE_REQUEST"
  | "GET_DEVICE_INTERFACE_REPORT"
  | "START_INTERFACE_REQUEST"
  | "STOP_INTERFACE_REQUEST"
  | "configChange"
  | "sessionEnd"
  | "fault"
  | "flr";

const STAY = {
  CONFIG_UNLOCKED: "CONFIG_UNLOCKED",
  CONFIG_LOCKED: "CONFIG_LOCKED",
  RUN: "RUN",
  ERROR: "ERROR",
} as const;

/**
 * The TDI state machine (PCIe r6.1 §11.3): for each trigger, the states it is legal in and the state
 * it leads to. A request in a state it does not list gets TDISP_ERROR InvalidInterfaceState; an
 * event in a state it does not list changes nothing. STOP from CONFIG_UNLOCKED is refused, as in
 * spdm-emu 85436d53; the report exists only while the TDI is locked.
 */
export const TDI_TRANSITIONS: Readonly<Record<TdiTrigger, Partial<Record<TdiStateName, TdiStateName>>>> = {
  GET_TDISP_VERSION: STAY,
  GET_TDISP_CAPABILITIES: STAY,
  GET_DEVICE_INTERFACE_STATE: STAY,
  LOCK_INTERFACE_REQUEST: { CONFIG_UNLOCKED: "CONFIG_LOCKED" },
  GET_DEVICE_INTERFACE_REPORT: { CONFIG_LOCKED: "CONFIG_LOCKED", RUN: "RUN" },
  START_INTERFACE_REQUEST: { CONFIG_LOCKED: "RUN" },
  STOP_INTERFACE_REQUEST: {
    CONFIG_LOCKED: "CONFIG_UNLOCKED",
    RUN: "CONFIG_UNLOCKED",
    ERROR: "CONFIG_UNLOCKED",
  },
  configChange: { CONFIG_LOCKED: "ERROR", RUN: "ERROR" },
  sessionEnd: { CONFIG_LOCKED: "ERROR", RUN: "ERROR" },
  fault: { CONFIG_LOCKED: "ERROR", RUN: "ERROR" },
  flr: { CONFIG_LOCKED: "CONFIG_UNLOCKED", RUN: "CONFIG_UNLOCKED", ERROR: "CONFIG_UNLOCKED" },
};

/** The requests served; their codes are the bits set in REQ_MSGS_SUPPORTED. */
const SERVED = [
  "GET_TDISP_VERSION",
  "GET_TDISP_CAPABILITIES",
  "LOCK_INTERFACE_REQUEST",
  "GET_DEVICE_INTERFACE_REPORT",
  "GET_DEVICE_INTERFACE_STATE",
  "START_INTERFACE_REQUEST",
  "STOP_INTERFACE_REQUEST",
] as const satisfies readonly TdiTrigger[];
type Served = (typeof SERVED)[number];
const SERVED_CODES = new Map<number, Served>(SERVED.map((name) => [TdispCode[name], name]));

/** The lock flags honoured: no P2P binding, no request redirection (as spdm-emu offers). */
export const LOCK_FLAGS_SUPPORTED =
  LockInterfaceFlag.NO_FW_UPDATE | LockInterfaceFlag.SYSTEM_CACHE_LINE_SIZE | LockInterfaceFlag.LOCK_MSIX;
/** A device's address width for DMA, as spdm-emu reports it. */
const DEV_ADDR_WIDTH = 48;
/** The most report bytes one DEVICE_INTERFACE_REPORT carries: what PayloadLength (u16) leaves. */
export const MAX_REPORT_PORTION = 0xffff - 1 - TDISP_HEADER_BYTES - 4;
const PAGE_SHIFT = 12n;
const PAGE = 1n << PAGE_SHIFT;
/** FunctionID bits that name a routing ID in segment 0: [15:0] and Segment Valid (bit 24) with segment 0. */
const FUNCTION_ID_SEGMENT_VALID = 0x0100_0000;

interface Lock {
  /** The TDEV function whose responder the lock came through, and the session, if any. */
  via: number;
  sessionId: number | undefined;
  nonce: Buffer;
  report: Buffer;
}

interface Tdi {
  state: TdiStateName;
  lock?: Lock;
}

/** Where a TDISP request came from: the SPDM session, and the TDEV function that received it. */
export interface TdispRequestContext extends Pick<VendorRequestContext, "sessionId"> {
  via: number;
}

class TdispRefusal extends Error {
  constructor(
    readonly errorCode: number,
    readonly errorData = 0,
  ) {
    super(`TDISP error 0x${errorCode.toString(16)}`);
  }
}
const refuse = (name: keyof typeof TdispErrorCode, data = 0): never => {
  throw new TdispRefusal(TdispErrorCode[name], data);
};

export class TdispEngine {
  private readonly tdis = new Map<number, Tdi>();
  private readonly pfRids: ReadonlySet<number>;
  /** The PFs with TDIs. */
  private readonly tdiPfs: ReadonlySet<number>;
  /** Every routing ID a VF may take, with its PF. */
  private readonly vfPf = new Map<number, number>();
  private readonly aliases = new Map<number, number>();
  private readonly pf0: number;

  constructor(
    private readonly model: DeviceModel,
    private readonly log: Logger,
    private readonly random: (bytes: number) => Buffer = randomBytes,
  ) {
    const { bus, device, functions, tdisp } = model.description;
    const ridOf = (fn: number) => routingId(bus, device, fn);
    this.pf0 = ridOf(0);
    this.pfRids = new Set(functions.map((f) => ridOf(f.function)));
    this.tdiPfs = new Set(
      functions
        .filter(
          (f) => f.teeIo && PORT_TYPES[f.portType] === PciExpType.ENDPOINT && (!f.sriov || f.function === 0),
        )
        .map((f) => ridOf(f.function)),
    );
    for (const f of functions) {
      if (!f.sriov) continue;
      for (let vf = 0; vf < f.sriov.totalVfs; vf++)
        this.vfPf.set(
          vfRoutingId(ridOf(f.function), f.sriov.firstVfOffset, f.sriov.vfStride, vf),
          ridOf(f.function),
        );
    }
    for (const [alias, target] of Object.entries(tdisp.functionIdAliases))
      this.aliases.set(Number.parseInt(alias.slice(2), 16), parseRoutingId(target)!);
    model.onConfigChange((rid, change) => this.configChanged(rid, change));
  }

  /** Whether the function at `rid` has a TDI now (a VF only while enabled). */
  hasTdi(rid: number): boolean {
    if (this.tdiPfs.has(rid)) return true;
    return this.vfPf.has(rid) && this.tdiPfs.has(this.pf0) && this.model.routingIds.includes(rid);
  }

  /** The TDI state of the function at `rid`; undefined when it has no TDI. */
  state(rid: number): TdiStateName | undefined {
    return this.hasTdi(rid) ? (this.tdis.get(rid)?.state ?? "CONFIG_UNLOCKED") : undefined;
  }

  /** Whether TDISP requests are taken at the function at `rid`: the PFs with a TDI are the TDEVs. */
  servesAt(rid: number): boolean {
    return this.tdiPfs.has(rid);
  }

  /** A session of the TDEV function at `via` ended: the TDIs locked in it go to ERROR. */
  sessionEnded(via: number, sessionId: number): void {
    for (const [rid, tdi] of this.tdis)
      if (tdi.lock?.via === via && tdi.lock.sessionId === sessionId)
        this.move(rid, "sessionEnd", `SPDM session ${hex32(sessionId)} ended`);
  }

  /**
   * An injected fault (tdi-error): the locked or running TDI a TDISP request names goes to ERROR, as
   * a device that detected an error would move it. A request naming no TDI changes nothing.
   */
  injectError(message: Buffer): void {
    try {
      this.move(this.lookup(decodeTdispHeader(message).functionId), "fault", "injected fault");
    } catch (e) {
      if (!(e instanceof TdispRefusal || e instanceof DecodeError)) throw e;
    }
  }

  /** One TDISP request in, its response out: a TDISP_ERROR for anything refused. Never throws. */
  handle(message: Buffer, ctx: TdispRequestContext): Buffer {
    let functionId = 0;
    try {
      const header = decodeOrRefuse(
        () => decodeTdispHeader(message),
        () => refuse("InvalidRequest"),
      );
      functionId = header.functionId;
      if (header.version !== TDISP_VERSION_1_0) refuse("VersionMismatch");
      const name = SERVED_CODES.get(header.messageType);
      if (name === undefined) refuse("UnsupportedRequest", header.messageType);
      const request = decodeOrRefuse(
        () => decodeTdisp(message),
        () => refuse("InvalidRequest"),
      );
      const rid = this.lookup(functionId);
      return encodeTdisp(this.serve(rid, request, ctx));
    } catch (e) {
      if (!(e instanceof TdispRefusal)) throw e;
      return encodeTdisp({
        code: "TDISP_ERROR",
        version: TDISP_VERSION_1_0,
        functionId,
        errorCode: e.errorCode,
        errorData: e.errorData,
      });
    }
  }

  private lookup(functionId: number): number {
    const alias = this.aliases.get(functionId);
    if (alias !== undefined && this.hasTdi(alias)) return alias;
    const rid = functionId & 0xffff;
    const inSegment0 = (functionId & ~0xffff) === 0 || (functionId & ~0xffff) === FUNCTION_ID_SEGMENT_VALID;
    if (!inSegment0 || !this.hasTdi(rid)) refuse("InvalidInterface");
    return rid;
  }

  private serve(rid: number, m: TdispMessage, ctx: TdispRequestContext): TdispMessage {
    const tdi = this.tdi(rid);
    const name = m.code as Served;
    const next = TDI_TRANSITIONS[name][tdi.state];
    if (next === undefined) refuse("InvalidInterfaceState");
    const reply = { version: TDISP_VERSION_1_0, functionId: m.functionId };
    switch (m.code) {
      case "GET_TDISP_VERSION":
        return { ...reply, code: "TDISP_VERSION", versions: [TDISP_VERSION_1_0] };
      case "GET_TDISP_CAPABILITIES":
        return { ...reply, code: "TDISP_CAPABILITIES", ...capabilities() };
      case "GET_DEVICE_INTERFACE_STATE":
        return { ...reply, code: "DEVICE_INTERFACE_STATE", tdiState: TdiState[tdi.state] };
      case "LOCK_INTERFACE_REQUEST": {
        if (m.flags & ~LOCK_FLAGS_SUPPORTED) refuse("InvalidRequest");
        const nonce = this.random(START_INTERFACE_NONCE_BYTES);
        const report = encodeDeviceInterfaceReport(this.report(rid, m));
        this.move(rid, name, "LOCK_INTERFACE_REQUEST", {
          via: ctx.via,
          sessionId: ctx.sessionId,
          nonce,
          report,
        });
        return { ...reply, code: "LOCK_INTERFACE_RESPONSE", startInterfaceNonce: Buffer.from(nonce) };
      }
      case "GET_DEVICE_INTERFACE_REPORT": {
        const report = tdi.lock!.report;
        if (m.length === 0 || m.offset >= report.length) refuse("InvalidRequest");
        const portion = report.subarray(m.offset, m.offset + Math.min(m.length, MAX_REPORT_PORTION));
        const remainderLength = report.length - m.offset - portion.length;
        return { ...reply, code: "DEVICE_INTERFACE_REPORT", portion: Buffer.from(portion), remainderLength };
      }
      case "START_INTERFACE_REQUEST":
        if (!tdi.lock!.nonce.equals(m.startInterfaceNonce)) refuse("InvalidNonce");
        this.move(rid, name, "START_INTERFACE_REQUEST");
        return { ...reply, code: "START_INTERFACE_RESPONSE" };
      case "STOP_INTERFACE_REQUEST":
        this.move(rid, name, "STOP_INTERFACE_REQUEST");
        return { ...reply, code: "STOP_INTERFACE_RESPONSE" };
      default:
        return refuse("UnsupportedRequest", TdispCode[m.code as TdispMessageName]);
    }
  }

  private tdi(rid: number): Tdi {
    let tdi = this.tdis.get(rid);
    if (!tdi) {
      tdi = { state: "CONFIG_UNLOCKED" };
      this.tdis.set(rid, tdi);
    }
    return tdi;
  }

  /** Applies `trigger` to the TDI at `rid` by the table; the lock is kept only while locked. */
  private move(rid: number, trigger: TdiTrigger, reason: string, lock?: Lock): void {
    const tdi = this.tdi(rid);
    const next = TDI_TRANSITIONS[trigger][tdi.state];
    if (next === undefined) return;
    const from = tdi.state;
    tdi.state = next;
    if (lock) tdi.lock = lock;
    if (next === "CONFIG_UNLOCKED" || next === "ERROR") delete tdi.lock;
    if (next !== from)
      this.log.info({ tdi: formatRoutingId(rid), from, to: next, reason }, "TDI state changed");
  }

  private configChanged(rid: number, change: ConfigChange): void {
    const trigger = change.kind === "flr" ? "flr" : "configChange";
    const reason = change.kind === "flr" ? "Function Level Reset" : `config change: ${change.kind}`;
    const affected = [rid];
    // A PF's SR-IOV settings and VF BARs are its VFs' too; its FLR resets them.
    if (this.pfRids.has(rid) && ["sriov", "vfBar", "flr"].includes(change.kind))
      for (const [vf, pf] of this.vfPf) if (pf === rid) affected.push(vf);
    for (const r of affected) if (this.tdis.has(r)) this.move(r, trigger, reason);
  }

  /** The report frozen at lock time, from the BARs as the host programmed them. */
  private report(rid: number, lock: LockInterfaceRequest): DeviceInterfaceReport {
    const msix = this.pfRids.has(rid) ? this.msix(rid) : undefined;
    const lockMsix = (lock.flags & LockInterfaceFlag.LOCK_MSIX) !== 0;
    return {
      interfaceInfo:
        InterfaceInfo.DMA_WITHOUT_PASID |
        (lock.flags & LockInterfaceFlag.NO_FW_UPDATE ? InterfaceInfo.NO_FW_UPDATE : 0),
      msixMessageControl: msix && lockMsix ? msix.control : 0,
      lnrControl: 0,
      tphControl: 0,
      mmioRanges: this.model
        .bars(rid)
        .flatMap((bar) => mmioRanges(bar, lock.mmioReportingOffset, msix?.marks ?? [])),
      deviceSpecificInfo: Buffer.alloc(0),
    };
  }

  /** The PF's MSI-X Message Control and where its table and PBA lie, from its capability. */
  private msix(rid: number): { control: number; marks: MsixMark[] } | undefined {
    const read = (offset: number, width: 1 | 2 | 4) => this.model.configRead(rid, offset, width);
    if (!(read(Header.STATUS, 2) & Status.CAP_LIST)) return undefined;
    for (let at = read(Header.CAPABILITY_LIST, 1) & 0xfc; at !== 0; at = read(at + CAP_LIST_NEXT, 1) & 0xfc) {
      if (read(at, 1) !== CapId.MSIX) continue;
      const control = read(at + Msix.FLAGS, 2);
      const vectors = (control & MsixFlags.QSIZE) + 1;
      const place = (reg: number, bytes: number, attribute: number): MsixMark => {
        const { bar, offset } = msixPlace(read(at + reg, 4));
        return { bar, offset: BigInt(offset), bytes: BigInt(bytes), attribute };
      };
      return {
        control,
        marks: [
          place(Msix.TABLE, vectors * Msix.ENTRY_SIZE, MmioRangeAttribute.MSIX_TABLE),
          place(Msix.PBA, msixPbaBytes(vectors), MmioRangeAttribute.MSIX_PBA),
        ],
      };
    }
    return undefined;
  }
}

/** An MSI-X structure inside a BAR: its bytes there and the range attribute that marks them. */
interface MsixMark {
  bar: number;
  offset: bigint;
  bytes: bigint;
  attribute: number;
}

/**
 * A BAR as report MMIO ranges, in 4 KiB pages at its address + MMIO_REPORTING_OFFSET: the pages
 * holding the MSI-X table or PBA are ranges of their own, flagged, so a TSM can map them apart.
 * Every range of a BAR has the BAR's index as RangeID, which groups them.
 */
export function mmioRanges(bar: BarState, reportingOffset: bigint, marks: readonly MsixMark[]): MmioRange[] {
  const start = bar.address + reportingOffset;
  const first = start >> PAGE_SHIFT;
  const end = (start + BigInt(bar.size) + PAGE - 1n) >> PAGE_SHIFT;
  const mine = marks
    .filter((m) => m.bar === bar.index)
    .map((m) => ({
      from: (start + m.offset) >> PAGE_SHIFT,
      to: (start + m.offset + m.bytes + PAGE - 1n) >> PAGE_SHIFT,
      attribute: m.attribute,
    }));
  const cuts = [...new Set([first, end, ...mine.flatMap((m) => [m.from, m.to])])]
    .filter((p) => p >= first && p <= end)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const ranges: MmioRange[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [from, to] = [cuts[i]!, cuts[i + 1]!];
    const rangeAttributes = mine
      .filter((m) => m.from < to && from < m.to)
      .reduce((bits, m) => bits | m.attribute, 0);
    ranges.push({ firstPage: from, numberOfPages: Number(to - from), rangeAttributes, rangeId: bar.index });
  }
  return ranges;
}

function capabilities() {
  const reqMsgsSupported = Buffer.alloc(REQ_MSGS_SUPPORTED_BYTES);
  for (const code of SERVED_CODES.keys()) {
    const bit = code - 0x80;
    reqMsgsSupported[bit >> 3] = reqMsgsSupported[bit >> 3]! | (1 << (bit & 7));
  }
  return {
    dsmCaps: 0,
    reqMsgsSupported,
    lockInterfaceFlagsSupported: LOCK_FLAGS_SUPPORTED,
    devAddrWidth: DEV_ADDR_WIDTH,
    numReqThis: 1,
    numReqAll: 1,
  };
}
