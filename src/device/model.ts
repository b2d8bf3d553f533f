/**
 * A device as its control endpoint sees it: one config space per function, addressed by routing ID,
 * each with one DOE capability per mailbox, and the identity that tells a host which mailbox
 * endpoint sits behind each DOE capability. VFs answer at the routing IDs their PF's SR-IOV
 * registers give, for as long as those registers enable them.
 * For the device's own protocols (TDISP, IDE_KM) it also tells what the host programmed: each
 * function's BARs, its IDE streams, and every config write that changed either (onConfigChange).
 */
import { checkConfigAccess, type DeviceIdentity, type MailboxIdentity } from "../../protocol/control.js";
import {
  allOnes,
  Header,
  Ide,
  ideCapabilityBytes,
  routingId,
  Sriov,
  SriovCtrl,
  vfIndexAt,
  vfRoutingId,
} from "../../protocol/pci.js";
import { type Logger, silentLogger } from "../log.js";
import type { Endpoint } from "../net/framed.js";
import { BarArray, type BarState } from "./bars.js";
import {
  type ConfigChange,
  type ConfigSpace,
  functionConfigSpace,
  readVfBars,
  type SriovDescription,
  vfConfigSpace,
} from "./config-space.js";
import type { DeviceDescription, FunctionDescription } from "./description.js";
import { DoeRegisters } from "./doe-registers.js";
import type { FaultSet } from "./faults.js";
import type { IdeStream } from "./ide.js";
import type { Mailbox } from "./mailbox.js";

/** A PF with SR-IOV: where its capability sits, so its registers can be read. */
interface SriovPf {
  rid: number;
  fn: FunctionDescription;
  sriov: SriovDescription;
  space: ConfigSpace;
  base: number;
}

interface Pf {
  fn: FunctionDescription;
  space: ConfigSpace;
  ideStreams: readonly IdeStream[];
  ideOffset: number | undefined;
}

export type ConfigChangeListener = (rid: number, change: ConfigChange) => void;

export class DeviceModel {
  private readonly pfs = new Map<number, Pf>();
  private readonly sriovPfs: SriovPf[] = [];
  private readonly listeners = new Set<ConfigChangeListener>();
  /** VF config spaces, made on first access; dropped when found disabled, so re-enabling resets them. */
  private readonly vfSpaces = new Map<number, ConfigSpace>();
  private readonly mailboxIds: MailboxIdentity[] = [];

  /** `mailboxes` and `endpoints` are indexed [function index][mailbox index], as in the description. */
  constructor(
    readonly description: DeviceDescription,
    mailboxes: readonly (readonly Mailbox[])[],
    endpoints: readonly (readonly Endpoint[])[],
    log: Logger = silentLogger,
    /** The device's fault rules, for its DOE registers. */
    faults?: FaultSet,
  ) {
    const { bus, device, functions } = description;
    functions.forEach((fn, fi) => {
      const fnMailboxes = mailboxes[fi] ?? [];
      const fnEndpoints = endpoints[fi] ?? [];
      if (fnMailboxes.length !== fn.mailboxes.length || fnEndpoints.length !== fn.mailboxes.length) {
        throw new Error(
          `function ${fn.function} describes ${fn.mailboxes.length} mailboxes, got ${fnMailboxes.length} mailboxes and ${fnEndpoints.length} endpoints`,
        );
      }
      const rid = routingId(bus, device, fn.function);
      const registers = fnMailboxes.map(
        (m, mi) =>
          new DoeRegisters(m, log.child({ rid, mailbox: mi }), faults && { set: faults, rid, mailbox: mi }),
      );
      const { space, doeOffsets, sriovOffset, ideStreams, ideOffset } = functionConfigSpace(
        fn,
        functions.length > 1,
        registers,
      );
      this.pfs.set(rid, { fn, space, ideStreams, ideOffset });
      space.onChange((change) => this.emit(rid, change));
      if (fn.sriov && sriovOffset !== undefined)
        this.sriovPfs.push({ rid, fn, sriov: fn.sriov, space, base: sriovOffset });
      doeOffsets.forEach((doeCapOffset, mi) => {
        const { host, port } = fnEndpoints[mi]!;
        this.mailboxIds.push({ rid, doeCapOffset, mailbox: mi, host, port });
      });
    });
  }

  /** Routing IDs of the functions that exist now: PFs in description order, then enabled VFs. */
  get routingIds(): number[] {
    const vfs = this.sriovPfs.flatMap((pf) => {
      const s = this.placement(pf);
      if (!s.enabled) return [];
      return Array.from({ length: s.numVfs }, (_, vf) =>
        vfRoutingId(pf.rid, s.firstVfOffset, s.vfStride, vf),
      );
    });
    return [...this.pfs.keys(), ...vfs.filter((rid) => rid <= 0xffff)];
  }

  /** Throws ControlError for an illegal access; a missing function reads as all ones, as on PCI. */
  configRead(rid: number, offset: number, width: number): number {
    checkConfigAccess(offset, width);
    return this.spaceAt(rid)?.read(offset, width) ?? allOnes(width);
  }

  /** `count` consecutive configRead()s of `width` bytes from `offset`, little-endian into `into` at `at`. */
  configReadInto(rid: number, offset: number, width: number, count: number, into: Buffer, at: number): void {
    checkConfigAccess(offset, width);
    checkConfigAccess(offset + (count - 1) * width, width);
    const space = this.spaceAt(rid);
    if (space) space.readInto(offset, width, count, into, at);
    else into.fill(0xff, at, at + count * width);
  }

  /** Throws ControlError for an illegal access; a write to a missing function goes nowhere. */
  configWrite(rid: number, offset: number, width: number, value: number, writer?: string): void {
    checkConfigAccess(offset, width);
    this.spaceAt(rid)?.write(offset, width, value, writer);
  }

  /**
   * Tells `listener` of every config write that changes a PF's BARs, Memory Space Enable, MSI-X
   * control, SR-IOV settings or VF BARs, or an IDE stream's Control register, and of every Function
   * Level Reset of a PF or VF (ConfigChange), with the function's routing ID. Returns the way to stop.
   */
  onConfigChange(listener: ConfigChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The memory BARs of the function at `rid` as the host programmed them. An enabled VF has no BARs
   * of its own: each of its PF's VF BARs gives it the slice at VF BAR address + VF index × size.
   * None for a function that does not exist.
   */
  bars(rid: number): BarState[] {
    const pf = this.pfs.get(rid);
    if (pf) return new BarArray(pf.space, Header.BAR0, pf.fn.bars).read((bar) => bar.size);
    const at = this.vfAt(rid);
    if (!at) return [];
    return readVfBars(at.pf.space, at.pf.base, at.pf.sriov).map((bar) => ({
      ...bar,
      address: bar.address + BigInt(at.vf) * BigInt(bar.size),
    }));
  }

  /** The IDE streams of the function at `rid`, Link IDE streams first; none without an IDE capability. */
  ideStreams(rid: number): readonly IdeStream[] {
    return this.pfs.get(rid)?.ideStreams ?? [];
  }

  /**
   * The IDE capability's registers of the function at `rid` as DWs, from IDE Capability to the
   * capability's end (what IDE_KM QUERY_RESP carries); none without an IDE capability.
   */
  ideRegisters(rid: number): number[] {
    const pf = this.pfs.get(rid);
    if (!pf?.fn.ide || pf.ideOffset === undefined) return [];
    const { linkStreams, selectiveStreams, addressBlocks } = pf.fn.ide;
    const first = pf.ideOffset + Ide.CAP;
    const count =
      (pf.ideOffset + ideCapabilityBytes(linkStreams, selectiveStreams, addressBlocks) - first) / 4;
    return Array.from({ length: count }, (_, i) => pf.space.read(first + 4 * i, 4));
  }

  private emit(rid: number, change: ConfigChange): void {
    for (const listener of this.listeners) listener(rid, change);
  }

  private spaceAt(rid: number): ConfigSpace | undefined {
    const pf = this.pfs.get(rid);
    if (pf) return pf.space;
    const at = this.vfAt(rid);
    if (!at) {
      this.vfSpaces.delete(rid);
      return undefined;
    }
    let space = this.vfSpaces.get(rid);
    if (!space) {
      space = vfConfigSpace(at.pf.fn, at.pf.space.read(at.pf.base + Sriov.VF_DID, 2));
      space.onChange((change) => this.emit(rid, change));
      this.vfSpaces.set(rid, space);
    }
    return space;
  }

  /** The PF and index of the enabled VF at `rid`, if one is there. */
  private vfAt(rid: number): { pf: SriovPf; vf: number } | undefined {
    for (const pf of this.sriovPfs) {
      const vf = vfIndexAt(rid, pf.rid, this.placement(pf));
      if (vf !== undefined) return { pf, vf };
    }
    return undefined;
  }

  private placement(pf: SriovPf) {
    const reg = (off: number) => pf.space.read(pf.base + off, 2);
    return {
      enabled: (reg(Sriov.CTRL) & SriovCtrl.VFE) !== 0,
      // NumVFs above TotalVFs is undefined in the spec; the device offers no more than TotalVFs.
      numVfs: Math.min(reg(Sriov.NUM_VF), reg(Sriov.TOTAL_VF)),
      firstVfOffset: reg(Sriov.VF_OFFSET),
      vfStride: reg(Sriov.VF_STRIDE),
    };
  }

  identity(): DeviceIdentity {
    return {
      name: this.description.name,
      bus: this.description.bus,
      mailboxes: this.mailboxIds.map((m) => ({ ...m })),
    };
  }
}
